//! The evaluation loop: batches of questions through greedy rollouts, one trace line per question
//! appended as soon as its batch ends (so an interrupted run resumes where it stopped), then a
//! summary.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use research_agent::{
    answer_span, extract_boxed, last_answer_span, re_search_instruct_prompt, re_search_reward, re_search_template,
    score_item, search_r1_chat_prompt, search_r1_prompt, search_r1_reward, ItemMetrics, Metrics, Retriever,
    RolloutBatch, RolloutConfig, RolloutFinish, SearchCall, SearchR1Batch, SearchR1Config, SearchR1Finish,
};
use research_engine::{Engine, SamplingParams};

use crate::dataset::Question;
use crate::judge::{Judge, Judgement};
use crate::EvalError;

/// Which rollout loop (and prompt and reward) a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoopKind {
    /// ReSearch (REFERENCE.md §3): `</search>` stops, `<result>` blocks, `\boxed{}` answers,
    /// the ReSearch reward.
    #[default]
    Research,
    /// Search-R1: 500-token turns cut and re-tokenized, `<information>` blocks, a final answer
    /// turn, `<answer>` answers, exact-match reward (see `research_agent::search_r1`).
    SearchR1,
}

/// Which prompt the model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    /// `re_search_template_sys` through the chat template; EOS 151645 or 151643.
    Instruct,
    /// `re_search_template`, no chat template; EOS 151643.
    Base,
}

/// Settings of a run; defaults follow REFERENCE.md §7.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalConfig {
    /// Prompt style (and EOS ids).
    pub style: PromptStyle,
    /// Questions per batch.
    pub batch_size: usize,
    /// Response budget, inserted results included.
    pub response_budget: usize,
    /// Passages per search.
    pub top_k: usize,
    /// Optional cap on searches (Search-R1: turns before the final one, default 4).
    pub max_turns: Option<usize>,
    /// The loop.
    #[serde(rename = "loop")]
    pub loop_kind: LoopKind,
    /// Search-R1: tokens per turn.
    pub turn_tokens: usize,
    /// Search-R1: tokens kept of each observation.
    pub max_obs_tokens: usize,
    /// Search-R1: rolling context and response cap.
    pub max_context: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            style: PromptStyle::Instruct,
            batch_size: 16,
            response_budget: 8192,
            top_k: 5,
            max_turns: None,
            loop_kind: LoopKind::Research,
            turn_tokens: 500,
            max_obs_tokens: 500,
            max_context: 4096,
        }
    }
}

/// One line of `items.jsonl`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemRecord {
    /// Question id.
    pub id: String,
    /// Question.
    pub question: String,
    /// Accepted answers.
    pub golden_answers: Vec<String>,
    /// The extracted prediction.
    pub prediction: String,
    /// EM, acc, F1, precision, recall of the prediction.
    pub metrics: ItemMetrics,
    /// The training reward of the response, for reference (ReSearch's; Search-R1's EM with
    /// `--loop search-r1`).
    pub reward: f64,
    /// Searches made, with results.
    pub searches: Vec<SearchCallRecord>,
    /// `eos`, `length` or `max_turns` (Search-R1: `answer` or `max_turns`).
    pub finish: String,
    /// The whole response (results included).
    pub response: String,
    /// The LLM judge's verdict, when a judge was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgement: Option<Judgement>,
}

/// A search in a trace.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SearchCallRecord {
    /// Query.
    pub query: String,
    /// Passage ids returned.
    pub ids: Vec<String>,
}

impl From<&SearchCall> for SearchCallRecord {
    fn from(s: &SearchCall) -> Self {
        Self {
            query: s.query.clone(),
            ids: s.passages.iter().map(|p| p.id.clone()).collect(),
        }
    }
}

/// `summary.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Averages over every item in `items.jsonl`.
    pub metrics: Metrics,
    /// Mean searches per question.
    pub searches_per_question: f64,
    /// Share of responses that hit the budget.
    pub truncated: f64,
    /// Where the traces are.
    pub items: PathBuf,
    /// The LLM judge's score, when items carry judgements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSummary>,
}

/// The LLM-judge part of `summary.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JudgeSummary {
    /// The judge model.
    pub model: String,
    /// Items judged.
    pub judged: usize,
    /// Share judged correct.
    pub score: f64,
}

/// The answer a response gives: the content of the last `\boxed{}` in the first
/// `<answer>...</answer>`, else the answer span itself, else the empty string.
pub fn predicted_answer(response: &str) -> String {
    match answer_span(response) {
        Some(span) => extract_boxed(span)
            .map(str::to_string)
            .unwrap_or_else(|_| span.trim().to_string()),
        None => String::new(),
    }
}

fn item_metrics(r: &ItemRecord) -> ItemMetrics {
    r.metrics
}

/// Evaluates `questions`, appending to `<out>/items.jsonl` (questions already there are skipped)
/// and writing `<out>/summary.json`.
pub fn evaluate<B: Backend>(
    engine: &Engine<B>,
    retriever: &dyn Retriever,
    questions: &[Question],
    config: &EvalConfig,
    out: &Path,
) -> Result<Summary, EvalError> {
    evaluate_with_judge(engine, retriever, questions, config, out, None)
}

/// Sets each record's judgement, `judge`'s concurrency at a time.
fn judge_records(judge: &Judge, records: &mut [ItemRecord]) -> Result<(), EvalError> {
    let items: Vec<(&str, &[String], &str)> = records
        .iter()
        .map(|r| (r.question.as_str(), r.golden_answers.as_slice(), r.prediction.as_str()))
        .collect();
    let verdicts = judge.judge_all(&items)?;
    for (r, j) in records.iter_mut().zip(verdicts) {
        r.judgement = Some(j);
    }
    Ok(())
}

/// Rollouts of one batch of questions as trace records (prediction, metrics, reward, searches).
fn run_batch<B: Backend>(
    engine: &Engine<B>,
    retriever: &dyn Retriever,
    chunk: &[&Question],
    config: &EvalConfig,
) -> Result<Vec<ItemRecord>, EvalError> {
    let tok = engine.tokenizer().map_err(research_agent::RolloutError::from)?;
    let eos_ids = match config.style {
        PromptStyle::Instruct => vec![151645, 151643],
        PromptStyle::Base => vec![151643],
    };
    let eos_str: &[&str] = match config.style {
        PromptStyle::Instruct => research_agent::INSTRUCT_EOS,
        PromptStyle::Base => research_agent::BASE_EOS,
    };
    let prompts = chunk
        .iter()
        .map(|q| {
            let text = match (config.loop_kind, config.style) {
                (LoopKind::Research, PromptStyle::Instruct) => re_search_instruct_prompt(&q.question),
                (LoopKind::Research, PromptStyle::Base) => re_search_template(&q.question),
                (LoopKind::SearchR1, PromptStyle::Instruct) => search_r1_chat_prompt(&q.question),
                (LoopKind::SearchR1, PromptStyle::Base) => search_r1_prompt(&q.question),
            };
            tok.encode(&text).map_err(|e| EvalError::Input(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record =
        |q: &Question, prediction: String, reward: f64, searches: &[SearchCall], finish: &str, text: String| {
            ItemRecord {
                id: q.id.clone(),
                question: q.question.clone(),
                golden_answers: q.golden_answers.clone(),
                metrics: score_item(&prediction, &q.golden_answers),
                prediction,
                reward,
                searches: searches.iter().map(SearchCallRecord::from).collect(),
                finish: finish.into(),
                response: text,
                judgement: None,
            }
        };
    match config.loop_kind {
        LoopKind::Research => {
            let rc = RolloutConfig {
                response_budget: config.response_budget,
                top_k: config.top_k,
                max_turns: config.max_turns,
                sampling: SamplingParams::greedy(),
                eos_ids,
                ..Default::default()
            };
            let rollouts = RolloutBatch::new(engine, prompts, rc)?.run(retriever)?;
            Ok(chunk
                .iter()
                .zip(rollouts)
                .map(|(&q, r)| {
                    let finish = match r.finish {
                        RolloutFinish::Eos => "eos",
                        RolloutFinish::Length => "length",
                        RolloutFinish::MaxTurns => "max_turns",
                    };
                    let reward = re_search_reward(&r.text, &q.golden_answers, eos_str).score;
                    record(q, predicted_answer(&r.text), reward, &r.searches, finish, r.text)
                })
                .collect())
        }
        LoopKind::SearchR1 => {
            let defaults = SearchR1Config::default();
            let rc = SearchR1Config {
                max_turns: config.max_turns.unwrap_or(defaults.max_turns),
                turn_tokens: config.turn_tokens,
                max_obs_tokens: config.max_obs_tokens,
                max_context: config.max_context,
                top_k: config.top_k,
                sampling: SamplingParams::greedy(),
                eos_ids,
                ..defaults
            };
            let rollouts = SearchR1Batch::new(engine, prompts, rc)?.run(retriever)?;
            Ok(chunk
                .iter()
                .zip(rollouts)
                .map(|(&q, r)| {
                    let finish = match r.finish {
                        SearchR1Finish::Answer => "answer",
                        SearchR1Finish::MaxTurns => "max_turns",
                    };
                    let prediction = last_answer_span(&r.text).unwrap_or_default().to_string();
                    let reward = search_r1_reward(&r.text, &q.golden_answers).score;
                    record(q, prediction, reward, &r.searches, finish, r.text)
                })
                .collect())
        }
    }
}

/// [`evaluate`], and with a judge, each item's verdict in `items.jsonl` and the share judged
/// correct in `summary.json`. Items resumed from an earlier run without a verdict are judged at
/// the end and `items.jsonl` is rewritten.
pub fn evaluate_with_judge<B: Backend>(
    engine: &Engine<B>,
    retriever: &dyn Retriever,
    questions: &[Question],
    config: &EvalConfig,
    out: &Path,
    judge: Option<&Judge>,
) -> Result<Summary, EvalError> {
    let io = |p: &Path, e: std::io::Error| EvalError::Io(p.to_path_buf(), e.to_string());
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let items_path = out.join("items.jsonl");
    let mut done: Vec<ItemRecord> = Vec::new();
    if items_path.exists() {
        let text = std::fs::read_to_string(&items_path).map_err(|e| io(&items_path, e))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let r: ItemRecord = serde_json::from_str(line).map_err(|e| EvalError::Line {
                path: items_path.clone(),
                line: i + 1,
                message: format!("{e} (delete the file to start over)"),
            })?;
            done.push(r);
        }
    }
    let seen: HashSet<String> = done.iter().map(|r| r.id.clone()).collect();
    let todo: Vec<&Question> = questions.iter().filter(|q| !seen.contains(&q.id)).collect();
    if !seen.is_empty() {
        tracing::info!(done = seen.len(), left = todo.len(), "resuming evaluation");
    }
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} questions  {per_sec}  ETA {eta}  {msg}")
            .expect("template"),
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&items_path)
        .map_err(|e| io(&items_path, e))?;
    for chunk in todo.chunks(config.batch_size.max(1)) {
        let mut records = run_batch(engine, retriever, chunk, config)?;
        if let Some(j) = judge {
            judge_records(j, &mut records)?;
        }
        for record in records {
            let line = serde_json::to_string(&record).expect("serialisable");
            writeln!(file, "{line}").map_err(|e| io(&items_path, e))?;
            done.push(record);
        }
        file.flush().map_err(|e| io(&items_path, e))?;
        bar.inc(chunk.len() as u64);
        let m = Metrics::from_items(done.iter().map(item_metrics));
        bar.set_message(format!("EM {:.3} F1 {:.3}", m.em, m.f1));
    }
    bar.finish_and_clear();
    if let Some(j) = judge {
        let mut missing: Vec<usize> = (0..done.len()).filter(|&i| done[i].judgement.is_none()).collect();
        if !missing.is_empty() {
            tracing::info!(items = missing.len(), "judging items from an earlier run");
            let mut records: Vec<ItemRecord> = missing.iter().map(|&i| done[i].clone()).collect();
            judge_records(j, &mut records)?;
            for (i, r) in missing.drain(..).zip(records) {
                done[i] = r;
            }
            let tmp = out.join("items.jsonl.tmp");
            let text: String = done
                .iter()
                .map(|r| serde_json::to_string(r).expect("serialisable") + "\n")
                .collect();
            std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &items_path).map_err(|e| io(&items_path, e))?;
        }
    }
    let judged: Vec<&Judgement> = done.iter().filter_map(|r| r.judgement.as_ref()).collect();
    let n = done.len().max(1) as f64;
    let summary = Summary {
        metrics: Metrics::from_items(done.iter().map(item_metrics)),
        searches_per_question: done.iter().map(|r| r.searches.len() as f64).sum::<f64>() / n,
        truncated: done.iter().filter(|r| r.finish == "length").count() as f64 / n,
        items: items_path,
        judge: judged.first().map(|first| JudgeSummary {
            model: first.model.clone(),
            judged: judged.len(),
            score: judged.iter().filter(|j| j.is_correct()).count() as f64 / judged.len() as f64,
        }),
    };
    let sp = out.join("summary.json");
    std::fs::write(&sp, serde_json::to_string_pretty(&summary).expect("serialisable")).map_err(|e| io(&sp, e))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_is_the_boxed_answer() {
        assert_eq!(
            predicted_answer("<answer> The final answer is \\[ \\boxed{Paris} \\] </answer>"),
            "Paris"
        );
        assert_eq!(predicted_answer("<answer> Paris </answer>"), "Paris");
        assert_eq!(predicted_answer("no answer"), "");
        assert_eq!(
            predicted_answer("<answer>\\boxed{a}</answer><answer>\\boxed{b}</answer>"),
            "a"
        );
    }
}
