//! The ReSearch rollout loop (REFERENCE.md §3): generate until `</search>`, EOS or the budget;
//! send every stopped row's query to the retriever in one batch; insert
//! `" <result>\n" + docs + "\n</result>"` with loss mask 0; continue; repeat.

use std::time::Duration;

use burn::tensor::backend::Backend;
use research_engine::{Batch, Engine, EngineError, FinishReason, GenerateOptions, SamplingParams};

use crate::template::{re_search_docs, re_search_result_text};

/// The stop string that hands control to the retriever.
pub const SEARCH_END: &str = "</search>";

/// One retrieved passage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Passage {
    /// The corpus id.
    pub id: String,
    /// `title\ntext`, as in FlashRAG corpora.
    pub contents: String,
}

/// Anything that answers a batch of queries with `k` passages each.
pub trait Retriever {
    /// One list of passages per query, in order.
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String>;
}

/// One batched retriever call, retried `retries` times with exponential backoff from `backoff`;
/// a wrong number of result lists counts as a failure. After the last attempt the error says how
/// many attempts were made and the last message (never a silent empty result).
pub fn search_with_retries(
    retriever: &dyn Retriever,
    queries: &[String],
    k: usize,
    retries: usize,
    backoff: Duration,
) -> Result<Vec<Vec<Passage>>, RolloutError> {
    let attempts = retries + 1;
    let mut message = String::new();
    for attempt in 0..attempts {
        match retriever.search(queries, k) {
            Ok(r) if r.len() == queries.len() => return Ok(r),
            Ok(r) => message = format!("{} result lists for {} queries", r.len(), queries.len()),
            Err(e) => message = e,
        }
        tracing::warn!(attempt = attempt + 1, attempts, %message, "retriever call failed");
        if attempt + 1 < attempts {
            std::thread::sleep(backoff * 2u32.pow(attempt as u32));
        }
    }
    Err(RolloutError::Retriever { attempts, message })
}

/// What can stop a rollout.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// From the generation engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The retriever failed on every attempt.
    #[error("retriever failed {attempts} times; last error: {message}")]
    Retriever {
        /// Attempts made.
        attempts: usize,
        /// The last error.
        message: String,
    },
}

/// Settings of the loop; the defaults are the paper's.
#[derive(Debug, Clone)]
pub struct RolloutConfig {
    /// Response tokens per sample, inserted results included (8192).
    pub response_budget: usize,
    /// Passages per search (5).
    pub top_k: usize,
    /// Most searches per sample; `None` is the reference's "no limit".
    pub max_turns: Option<usize>,
    /// Sampling (rollouts: temperature 1; evaluation: greedy).
    pub sampling: SamplingParams,
    /// EOS ids: 151645 and 151643 for instruct models, 151643 for base models.
    pub eos_ids: Vec<u32>,
    /// Retries of a failed retriever call, with exponential backoff from `backoff`.
    pub retries: usize,
    /// First backoff.
    pub backoff: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            response_budget: 8192,
            top_k: 5,
            max_turns: None,
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

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutFinish {
    /// An EOS token (part of the response, mask 1).
    Eos,
    /// The response budget ran out (possibly inside an inserted result).
    Length,
    /// It asked for another search after `max_turns`.
    MaxTurns,
}

/// One search made by a sample.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchCall {
    /// The query sent.
    pub query: String,
    /// What came back.
    pub passages: Vec<Passage>,
}

/// A finished sample.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rollout {
    /// Prompt ids.
    pub prompt_ids: Vec<u32>,
    /// Response ids: sampled and inserted.
    pub response_ids: Vec<u32>,
    /// 1 on sampled tokens, 0 on inserted ones.
    pub loss_mask: Vec<u8>,
    /// The sampler's log-prob of each response token (0 on inserted ones).
    pub logprobs: Vec<f32>,
    /// The decoded response, special tokens kept, results included.
    pub text: String,
    /// Searches in order.
    pub searches: Vec<SearchCall>,
    /// Why it ended.
    pub finish: RolloutFinish,
}

/// The query of a turn: the text between the last `<search>` and the last `</search>`, stripped;
/// empty when there is no `<search>` before it.
pub fn extract_query(turn: &str) -> String {
    let Some(end) = turn.rfind(SEARCH_END) else {
        return String::new();
    };
    match turn[..end].rfind("<search>") {
        Some(start) => turn[start + "<search>".len()..end].trim().to_string(),
        None => String::new(),
    }
}

/// A batch of samples going through the loop.
pub struct RolloutBatch<'e, B: Backend> {
    engine: &'e Engine<B>,
    batch: Batch<'e, B>,
    config: RolloutConfig,
    turn_start: Vec<usize>,
    searches: Vec<Vec<SearchCall>>,
    finish: Vec<Option<RolloutFinish>>,
}

impl<'e, B: Backend> RolloutBatch<'e, B> {
    /// Prompts (already templated and tokenized); repeat a prompt n times for n samples.
    pub fn new(engine: &'e Engine<B>, prompts: Vec<Vec<u32>>, config: RolloutConfig) -> Result<Self, RolloutError> {
        engine.tokenizer()?;
        let n = prompts.len();
        let options = GenerateOptions {
            max_new_tokens: config.response_budget,
            sampling: config.sampling.clone(),
            stop_strings: vec![SEARCH_END.to_string()],
            eos_ids: config.eos_ids.clone(),
        };
        let batch = Batch::new(engine, prompts, options)?;
        Ok(Self {
            engine,
            batch,
            config,
            turn_start: vec![0; n],
            searches: vec![vec![]; n],
            finish: vec![None; n],
        })
    }

    /// Forced decoding of a row (see [`Batch::force`]): how tests script the model.
    pub fn force(&mut self, row: usize, tokens: &[u32]) -> Result<(), RolloutError> {
        Ok(self.batch.force(row, tokens)?)
    }

    fn search(&self, retriever: &dyn Retriever, queries: &[String]) -> Result<Vec<Vec<Passage>>, RolloutError> {
        search_with_retries(
            retriever,
            queries,
            self.config.top_k,
            self.config.retries,
            self.config.backoff,
        )
    }

    /// Runs the loop until every sample ends.
    pub fn run(mut self, retriever: &dyn Retriever) -> Result<Vec<Rollout>, RolloutError> {
        let tok = self.engine.tokenizer()?;
        loop {
            self.batch.run()?;
            let mut rows = vec![];
            let mut queries = vec![];
            for (r, seq) in self.batch.sequences().iter().enumerate() {
                if self.finish[r].is_some() {
                    continue;
                }
                match seq.finish_reason {
                    Some(FinishReason::Eos) => self.finish[r] = Some(RolloutFinish::Eos),
                    Some(FinishReason::Length) | None => self.finish[r] = Some(RolloutFinish::Length),
                    Some(FinishReason::Stop) => {
                        if self.config.max_turns.is_some_and(|m| self.searches[r].len() >= m) {
                            self.finish[r] = Some(RolloutFinish::MaxTurns);
                        } else {
                            rows.push(r);
                            queries.push(extract_query(&tok.decode(&seq.response[self.turn_start[r]..])));
                        }
                    }
                }
            }
            if rows.is_empty() {
                break;
            }
            let results = self.search(retriever, &queries)?;
            for ((r, query), passages) in rows.into_iter().zip(queries).zip(results) {
                let contents: Vec<&str> = passages.iter().map(|p| p.contents.as_str()).collect();
                let ids = tok
                    .encode(&re_search_result_text(&re_search_docs(&contents)))
                    .map_err(EngineError::from)?;
                self.batch.inject(r, &ids)?;
                self.turn_start[r] = self.batch.sequences()[r].response.len();
                self.searches[r].push(SearchCall { query, passages });
            }
        }
        let finish = self.finish;
        let searches = self.searches;
        Ok(self
            .batch
            .into_sequences()
            .into_iter()
            .zip(finish)
            .zip(searches)
            .map(|((s, f), searches)| Rollout {
                text: tok.decode(&s.response),
                prompt_ids: s.prompt,
                response_ids: s.response,
                loss_mask: s.loss_mask,
                logprobs: s.logprobs,
                searches,
                finish: f.unwrap_or(RolloutFinish::Length),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_between_the_last_tags() {
        assert_eq!(
            extract_query("<think>x</think> <search> capital of France </search>"),
            "capital of France"
        );
        assert_eq!(extract_query("<search>a</search> <search> b </search>"), "b");
        assert_eq!(extract_query("no tag </search>"), "");
        assert_eq!(extract_query("<search></search>"), "");
        assert_eq!(extract_query("<search>\n multi\nline \n</search>"), "multi\nline");
    }
}
