//! The evaluation loop: batches of questions through greedy rollouts, one trace line per question
//! appended as soon as its batch ends (so an interrupted run resumes where it stopped), then a
//! summary.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use research_agent::{
    answer_span, extract_boxed, re_search_instruct_prompt, re_search_reward, re_search_template, score_item,
    ItemMetrics, Metrics, Retriever, RolloutBatch, RolloutConfig, RolloutFinish, SearchCall,
};
use research_engine::{Engine, SamplingParams};

use crate::dataset::Question;
use crate::EvalError;

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
    /// Optional cap on searches.
    pub max_turns: Option<usize>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            style: PromptStyle::Instruct,
            batch_size: 16,
            response_budget: 8192,
            top_k: 5,
            max_turns: None,
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
    /// The ReSearch training reward of the response, for reference.
    pub reward: f64,
    /// Searches made, with results.
    pub searches: Vec<SearchCallRecord>,
    /// `eos`, `length` or `max_turns`.
    pub finish: String,
    /// The whole response (results included).
    pub response: String,
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
    let tok = engine.tokenizer().map_err(research_agent::RolloutError::from)?;
    let eos_ids = match config.style {
        PromptStyle::Instruct => vec![151645, 151643],
        PromptStyle::Base => vec![151643],
    };
    let eos_str: &[&str] = match config.style {
        PromptStyle::Instruct => research_agent::INSTRUCT_EOS,
        PromptStyle::Base => research_agent::BASE_EOS,
    };
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
        let prompts = chunk
            .iter()
            .map(|q| {
                let text = match config.style {
                    PromptStyle::Instruct => re_search_instruct_prompt(&q.question),
                    PromptStyle::Base => re_search_template(&q.question),
                };
                tok.encode(&text).map_err(|e| EvalError::Input(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rc = RolloutConfig {
            response_budget: config.response_budget,
            top_k: config.top_k,
            max_turns: config.max_turns,
            sampling: SamplingParams::greedy(),
            eos_ids: eos_ids.clone(),
            ..Default::default()
        };
        let rollouts = RolloutBatch::new(engine, prompts, rc)?.run(retriever)?;
        for (q, r) in chunk.iter().zip(rollouts) {
            let prediction = predicted_answer(&r.text);
            let record = ItemRecord {
                id: q.id.clone(),
                question: q.question.clone(),
                golden_answers: q.golden_answers.clone(),
                metrics: score_item(&prediction, &q.golden_answers),
                prediction,
                reward: re_search_reward(&r.text, &q.golden_answers, eos_str).score,
                searches: r.searches.iter().map(SearchCallRecord::from).collect(),
                finish: match r.finish {
                    RolloutFinish::Eos => "eos",
                    RolloutFinish::Length => "length",
                    RolloutFinish::MaxTurns => "max_turns",
                }
                .into(),
                response: r.text,
            };
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
    let n = done.len().max(1) as f64;
    let summary = Summary {
        metrics: Metrics::from_items(done.iter().map(item_metrics)),
        searches_per_question: done.iter().map(|r| r.searches.len() as f64).sum::<f64>() / n,
        truncated: done.iter().filter(|r| r.finish == "length").count() as f64 / n,
        items: items_path,
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
