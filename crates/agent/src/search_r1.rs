//! Search-R1's rollout loop (REFERENCE.md §3, last paragraph), as an alternative to
//! [`crate::rollout`]'s ReSearch loop, on the same engine [`Batch`].
//!
//! Per turn, for every active sample:
//! 1. Generate at most `turn_tokens` (500) tokens from the *rolling context*: the prompt and
//!    everything appended since, cut to its last `max_context` (4096) tokens, positions from 0.
//! 2. Decode without special tokens and cut the text: at the first `</search>` if there is one,
//!    else at the first `</answer>` if there is one, else keep it all. The kept text is
//!    **re-tokenized** (no special tokens added): those ids, not the sampled ones, join the
//!    context and the response (loss mask 1).
//! 3. The action is the first `<search>…</search>` or `<answer>…</answer>` of the kept text
//!    (Python `re.search(r'<(search|answer)>(.*?)</\1>', text, re.DOTALL)`), content stripped.
//!    An answer ends the sample. A search is sent to the retriever (all searches of a turn in one
//!    batched call); `"\n\n<information>{docs}</information>\n\n"` follows with loss mask 0, docs
//!    being [`search_r1_docs`] stripped of surrounding whitespace, the observation's tokens cut to
//!    `max_obs_tokens` (500). Neither tag: [`INVALID_ACTION`] follows instead (mask 0).
//! 4. After `max_turns` such turns the samples still active get one final turn with the same
//!    cut, but no search and no observation.
//!
//! The response is capped at its first `max_context` tokens, as Search-R1 does.
//!
//! Two choices here keep the outcome exact while doing less work:
//! - a turn stops as soon as its text contains `</search>`: the cut is then known, and whatever the
//!   reference would generate after it is discarded there anyway. (It cannot stop at `</answer>`:
//!   a `</search>` later in the same turn takes precedence in the reference's cut.)
//! - each turn is a fresh [`Batch`] over the rolling context, as the reference re-prefills
//!   each turn; nothing is kept from one turn's KV cache to the next.
//!
//! Log-probs: the sampler's, for each re-tokenized id that equals the sampled id at the same place
//! (the usual case); from the first difference on, the turn's tokens were never sampled and get
//! `NaN` (recompute them with the scorer, as a trainer does anyway).

use std::collections::VecDeque;
use std::time::Duration;

use burn::tensor::backend::Backend;
use research_engine::{Batch, Engine, EngineError, GenerateOptions, SamplingParams};

use crate::metrics::is_python_whitespace;
use crate::rollout::{Passage, Retriever, RolloutError, SearchCall, SEARCH_END};
use crate::template::{search_r1_docs, search_r1_observation, search_r1_prompt};

/// The observation after a turn with neither a search nor an answer (Search-R1's text, the
/// Python line continuations joined).
pub const INVALID_ACTION: &str = "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n";

/// Qwen2.5's added tokens marked `"special": true` in `tokenizer.json` (`<|endoftext|>` …
/// `<|video_pad|>`): what `decode(..., skip_special_tokens=True)` drops. The FIM and tool-call
/// tokens are not special and stay.
pub const QWEN2_SPECIAL_IDS: std::ops::RangeInclusive<u32> = 151643..=151656;

/// Qwen2.5's default system message, which its chat template adds when a conversation has none.
const QWEN_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// Search-R1's prompt for a chat model: [`search_r1_prompt`] as the one user message through the
/// Qwen2.5 chat template with the generation prompt (so with Qwen's default system message), as
/// Search-R1's dataset does when the tokenizer has a chat template.
pub fn search_r1_chat_prompt(question: &str) -> String {
    format!(
        "<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        search_r1_prompt(question)
    )
}

/// Settings of the Search-R1 loop; the defaults are Search-R1's.
#[derive(Debug, Clone)]
pub struct SearchR1Config {
    /// Turns that may search before the final answer turn (Search-R1's scripts use 2 to 4).
    pub max_turns: usize,
    /// Tokens generated per turn (`max_response_length`, 500).
    pub turn_tokens: usize,
    /// Tokens kept of each observation (`max_obs_length`, 500).
    pub max_obs_tokens: usize,
    /// Rolling context and response cap (`max_prompt_length`, 4096).
    pub max_context: usize,
    /// Passages per search (3).
    pub top_k: usize,
    /// Sampling; turn `t` uses `seed + t`. Evaluation: greedy.
    pub sampling: SamplingParams,
    /// EOS ids ending a turn's generation.
    pub eos_ids: Vec<u32>,
    /// Retries of a failed retriever call, with exponential backoff from `backoff`.
    pub retries: usize,
    /// First backoff.
    pub backoff: Duration,
}

impl Default for SearchR1Config {
    fn default() -> Self {
        Self {
            max_turns: 4,
            turn_tokens: 500,
            max_obs_tokens: 500,
            max_context: 4096,
            top_k: 3,
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                top_k: 0,
                seed: 0,
            },
            eos_ids: vec![151645, 151643],
            retries: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A turn's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `<search> query </search>`, content stripped.
    Search(String),
    /// `<answer> text </answer>`, content stripped.
    Answer(String),
    /// Neither.
    Invalid,
}

/// The first `<search>…</search>` or `<answer>…</answer>` in `text` (the earliest opening tag
/// that has its closing tag after it; the content up to the first such closing tag).
pub fn parse_action(text: &str) -> Action {
    let mut pos = 0;
    while let Some(off) = text[pos..].find('<') {
        let at = pos + off;
        for (tag, search) in [("search", true), ("answer", false)] {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            if text[at..].starts_with(&open) {
                let start = at + open.len();
                if let Some(end) = text[start..].find(&close) {
                    let content = text[start..start + end].trim_matches(is_python_whitespace).to_string();
                    return if search {
                        Action::Search(content)
                    } else {
                        Action::Answer(content)
                    };
                }
            }
        }
        pos = at + 1;
    }
    Action::Invalid
}

/// Search-R1's cut of a turn's text: up to and including the first `</search>` if there is one,
/// else up to and including the first `</answer>` if there is one, else all of it.
pub fn cut_turn(text: &str) -> &str {
    for tag in [SEARCH_END, "</answer>"] {
        if let Some(i) = text.find(tag) {
            return &text[..i + tag.len()];
        }
    }
    text
}

/// Why a Search-R1 sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchR1Finish {
    /// A turn gave an answer.
    Answer,
    /// The final turn ended without an answer.
    MaxTurns,
}

/// A finished Search-R1 sample.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchR1Rollout {
    /// Prompt ids.
    pub prompt_ids: Vec<u32>,
    /// Response ids: re-tokenized turns and observations, at most `max_context`.
    pub response_ids: Vec<u32>,
    /// 1 on the model's (re-tokenized) tokens, 0 on observations.
    pub loss_mask: Vec<u8>,
    /// The sampler's log-prob where the id was sampled; NaN where re-tokenization changed it; 0 on
    /// observations.
    pub logprobs: Vec<f32>,
    /// The decoded response.
    pub text: String,
    /// Searches in order.
    pub searches: Vec<SearchCall>,
    /// Generation turns taken (final turn included).
    pub turns: usize,
    /// Turns with neither a search nor an answer.
    pub invalid_turns: usize,
    /// Why it ended.
    pub finish: SearchR1Finish,
}

/// A batch of samples going through Search-R1's loop.
pub struct SearchR1Batch<'e, B: Backend> {
    engine: &'e Engine<B>,
    prompts: Vec<Vec<u32>>,
    config: SearchR1Config,
    scripts: Vec<VecDeque<Vec<u32>>>,
}

impl<'e, B: Backend> SearchR1Batch<'e, B> {
    /// Prompts (already templated and tokenized); repeat a prompt n times for n samples.
    pub fn new(engine: &'e Engine<B>, prompts: Vec<Vec<u32>>, config: SearchR1Config) -> Result<Self, RolloutError> {
        engine.tokenizer()?;
        if prompts.is_empty() {
            return Err(EngineError::Input("no prompts given".into()).into());
        }
        if config.max_context == 0 || config.turn_tokens == 0 {
            return Err(EngineError::Input("max_context and turn_tokens must be at least 1".into()).into());
        }
        let n = prompts.len();
        Ok(Self {
            engine,
            prompts,
            config,
            scripts: vec![VecDeque::new(); n],
        })
    }

    /// Scripts the row's next generation turn (forced decoding, see [`Batch::force`]): the turn
    /// emits these tokens, still subject to EOS, the `</search>` stop and the turn budget. Tokens
    /// the turn does not use are dropped with it (like text the reference cuts away); a turn with
    /// no script left samples. This is how tests script a model.
    pub fn script_turn(&mut self, row: usize, tokens: &[u32]) -> Result<(), RolloutError> {
        let rows = self.scripts.len();
        self.scripts
            .get_mut(row)
            .ok_or_else(|| EngineError::Input(format!("no row {row} (batch of {rows})")))?
            .push_back(tokens.to_vec());
        Ok(())
    }

    fn search(&self, retriever: &dyn Retriever, queries: &[String]) -> Result<Vec<Vec<Passage>>, RolloutError> {
        crate::rollout::search_with_retries(
            retriever,
            queries,
            self.config.top_k,
            self.config.retries,
            self.config.backoff,
        )
    }

    /// Runs the loop until every sample answers or the final turn ends.
    pub fn run(mut self, retriever: &dyn Retriever) -> Result<Vec<SearchR1Rollout>, RolloutError> {
        let tok = self.engine.tokenizer()?;
        let cfg = self.config.clone();
        let n = self.prompts.len();
        let mut context = self.prompts.clone();
        let mut response: Vec<Vec<u32>> = vec![vec![]; n];
        let mut mask: Vec<Vec<u8>> = vec![vec![]; n];
        let mut logprobs: Vec<Vec<f32>> = vec![vec![]; n];
        let mut searches: Vec<Vec<SearchCall>> = vec![vec![]; n];
        let mut turns = vec![0usize; n];
        let mut invalid = vec![0usize; n];
        let mut answered = vec![false; n];
        let encode = |text: &str| tok.encode(text).map_err(EngineError::from);

        for turn in 0..=cfg.max_turns {
            let last = turn == cfg.max_turns;
            let rows: Vec<usize> = (0..n).filter(|&r| !answered[r]).collect();
            if rows.is_empty() {
                break;
            }
            let windows = rows
                .iter()
                .map(|&r| context[r][context[r].len().saturating_sub(cfg.max_context)..].to_vec())
                .collect();
            let mut sampling = cfg.sampling.clone();
            sampling.seed = sampling.seed.wrapping_add(turn as u64);
            let options = GenerateOptions {
                max_new_tokens: cfg.turn_tokens,
                sampling,
                stop_strings: vec![SEARCH_END.to_string()],
                eos_ids: cfg.eos_ids.clone(),
            };
            let mut batch = Batch::new(self.engine, windows, options)?;
            for (i, &r) in rows.iter().enumerate() {
                if let Some(script) = self.scripts[r].pop_front() {
                    batch.force(i, &script)?;
                }
            }
            batch.run()?;
            let seqs = batch.into_sequences();

            let mut actions = Vec::with_capacity(rows.len());
            for (seq, &r) in seqs.iter().zip(&rows) {
                let kept: Vec<u32> = seq
                    .response
                    .iter()
                    .copied()
                    .filter(|id| !QWEN2_SPECIAL_IDS.contains(id))
                    .collect();
                let text = tok.decode(&kept);
                let cut = cut_turn(&text);
                let ids = encode(cut)?;
                let same = ids.iter().zip(&seq.response).take_while(|(a, b)| a == b).count();
                logprobs[r].extend((0..ids.len()).map(|k| if k < same { seq.logprobs[k] } else { f32::NAN }));
                mask[r].extend(std::iter::repeat_n(1u8, ids.len()));
                response[r].extend(&ids);
                context[r].extend(&ids);
                turns[r] += 1;
                actions.push(parse_action(cut));
            }

            let mut queries = vec![];
            let mut search_rows = vec![];
            for (action, &r) in actions.iter().zip(&rows) {
                match action {
                    Action::Answer(_) => answered[r] = true,
                    Action::Search(q) if !last => {
                        queries.push(q.clone());
                        search_rows.push(r);
                    }
                    Action::Search(_) => {}
                    Action::Invalid => invalid[r] += 1,
                }
            }
            if last {
                break;
            }
            let results = if queries.is_empty() {
                vec![]
            } else {
                self.search(retriever, &queries)?
            };
            let mut results = search_rows.into_iter().zip(queries).zip(results);
            let mut observe = |r: usize, text: &str| -> Result<(), RolloutError> {
                let mut ids = encode(text)?;
                ids.truncate(cfg.max_obs_tokens);
                mask[r].extend(std::iter::repeat_n(0u8, ids.len()));
                logprobs[r].extend(std::iter::repeat_n(0.0f32, ids.len()));
                response[r].extend(&ids);
                context[r].extend(&ids);
                Ok(())
            };
            for (action, &r) in actions.iter().zip(&rows) {
                match action {
                    Action::Answer(_) => {}
                    Action::Invalid => observe(r, INVALID_ACTION)?,
                    Action::Search(_) => {
                        let ((_, query), passages) = results.next().expect("one result per search");
                        let contents: Vec<&str> = passages.iter().map(|p| p.contents.as_str()).collect();
                        let docs = search_r1_docs(&contents);
                        observe(r, &search_r1_observation(docs.trim_matches(is_python_whitespace)))?;
                        searches[r].push(SearchCall { query, passages });
                    }
                }
            }
        }

        Ok((0..n)
            .map(|r| {
                let cap = response[r].len().min(cfg.max_context);
                let ids = response[r][..cap].to_vec();
                SearchR1Rollout {
                    text: tok.decode(&ids),
                    prompt_ids: self.prompts[r].clone(),
                    response_ids: ids,
                    loss_mask: mask[r][..cap].to_vec(),
                    logprobs: logprobs[r][..cap].to_vec(),
                    searches: std::mem::take(&mut searches[r]),
                    turns: turns[r],
                    invalid_turns: invalid[r],
                    finish: if answered[r] {
                        SearchR1Finish::Answer
                    } else {
                        SearchR1Finish::MaxTurns
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_prefers_search_over_an_earlier_answer() {
        assert_eq!(cut_turn("<search> q </search> more"), "<search> q </search>");
        assert_eq!(cut_turn("<answer> a </answer> x </answer>"), "<answer> a </answer>");
        assert_eq!(
            cut_turn("<answer> a </answer> then <search> q </search> tail"),
            "<answer> a </answer> then <search> q </search>"
        );
        assert_eq!(cut_turn("no tags"), "no tags");
        assert_eq!(cut_turn("</answer>"), "</answer>");
    }

    #[test]
    fn the_action_is_the_first_complete_tag_pair() {
        assert_eq!(parse_action("<search> q\n </search>"), Action::Search("q".into()));
        assert_eq!(
            parse_action("<answer> a </answer> then <search> q </search>"),
            Action::Answer("a".into())
        );
        // An opening tag without its own closing tag is passed over.
        assert_eq!(
            parse_action("<search> open <answer> b </answer>"),
            Action::Answer("b".into())
        );
        assert_eq!(parse_action("<search></search>"), Action::Search(String::new()));
        // Mismatched pair: `<search>` closed by `</answer>` is not an action.
        assert_eq!(parse_action("<search> x </answer>"), Action::Invalid);
        assert_eq!(
            parse_action("<search> a <search> b </search>"),
            Action::Search("a <search> b".into())
        );
        assert_eq!(parse_action(""), Action::Invalid);
    }

    #[test]
    fn invalid_action_text_is_the_joined_python_literal() {
        assert!(INVALID_ACTION.starts_with("\nMy previous action is invalid. If I want to search, "));
        assert!(INVALID_ACTION.contains("</search>. If I want to give the final answer, "));
        assert!(INVALID_ACTION.ends_with("</answer>. Let me try again.\n"));
        assert!(!INVALID_ACTION.contains('\\') && !INVALID_ACTION.contains("  "));
    }
}
