//! A batch of sequences decoded together over one KV cache.
//!
//! All rows share one column timeline in the cache (see `research_qwen2::cache`). A step feeds
//! every active row's pending tokens as one chunk of `T` columns, right-aligned so that each row's
//! last pending token sits in the chunk's last column; rows with fewer (or no) pending tokens get
//! holes, which a per-row column mask hides from attention. RoPE positions count real tokens only,
//! so a row's numerics do not depend on its neighbours' lengths.
//!
//! A finished row can be extended with injected tokens (loss mask 0) and resumed: that is how the
//! rollout loop inserts search results after `</search>`.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorCreationOptions, TensorData};
use rand::SeedableRng;
use research_kernels::attention::{causal_rows, AttentionBias, MASKED};
use research_qwen2::KvCache;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::sampling::{sample, SamplingParams};
use crate::stop::StopMatcher;

/// Why a sequence stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// Sampled an EOS id (the EOS token is part of the response).
    Eos,
    /// Generated text completed a stop string (its tokens are part of the response).
    Stop,
    /// The response budget ran out.
    Length,
}

/// Options for a batch.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Response budget per sequence: sampled plus injected tokens.
    pub max_new_tokens: usize,
    /// Token selection.
    pub sampling: SamplingParams,
    /// Stop when the text generated since the last resume contains one of these.
    pub stop_strings: Vec<String>,
    /// Stop on these ids.
    pub eos_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: SamplingParams::default(),
            stop_strings: vec![],
            eos_ids: vec![],
        }
    }
}

/// The state of one row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sequence {
    /// The prompt ids.
    pub prompt: Vec<u32>,
    /// Response ids: sampled and injected, in order.
    pub response: Vec<u32>,
    /// 1 for sampled tokens, 0 for injected ones.
    pub loss_mask: Vec<u8>,
    /// Log-probability of each response token under the model (0 for injected tokens).
    pub logprobs: Vec<f32>,
    /// Why the row last stopped; `None` while active.
    pub finish_reason: Option<FinishReason>,
    /// Which stop string ended the last turn, if any.
    pub stop_string: Option<String>,
    #[serde(skip)]
    pending: Vec<u32>,
    #[serde(skip)]
    forced: std::collections::VecDeque<u32>,
    #[serde(skip)]
    next_position: usize,
    #[serde(skip)]
    matcher: StopMatcher,
}

impl Sequence {
    /// Whether the row is waiting to be stepped.
    pub fn is_active(&self) -> bool {
        self.finish_reason.is_none()
    }

    /// The sampled-or-injected response length.
    pub fn response_len(&self) -> usize {
        self.response.len()
    }
}

/// Sequences decoded together.
pub struct Batch<'e, B: Backend> {
    engine: &'e Engine<B>,
    options: GenerateOptions,
    seqs: Vec<Sequence>,
    cache: KvCache<B>,
    /// `[rows, columns]`: 0 where a row has a real token in that column, MASKED for holes.
    columns: Option<Tensor<B, 2>>,
    rng: rand_chacha::ChaCha8Rng,
}

impl<'e, B: Backend> Batch<'e, B> {
    /// Starts a batch: checks the prompts and reserves the cache. Nothing runs until [`Batch::step`].
    pub fn new(engine: &'e Engine<B>, prompts: Vec<Vec<u32>>, options: GenerateOptions) -> Result<Self> {
        options.sampling.validate().map_err(EngineError::Input)?;
        if prompts.is_empty() {
            return Err(EngineError::Input("no prompts given".into()));
        }
        let vocab = engine.config.vocab_size;
        let context = engine.config.max_position_embeddings;
        let mut longest = 0;
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(EngineError::Input(format!("prompt {i} is empty")));
            }
            if let Some(&bad) = p.iter().find(|&&id| id as usize >= vocab) {
                return Err(EngineError::Input(format!(
                    "prompt {i}: token id {bad} is outside the vocabulary (size {vocab})"
                )));
            }
            if p.len() + options.max_new_tokens > context {
                return Err(EngineError::Input(format!(
                    "prompt {i} has {} tokens; with max_new_tokens = {} that exceeds the model's context of {context} tokens",
                    p.len(),
                    options.max_new_tokens
                )));
            }
            longest = longest.max(p.len());
        }
        let tokenizer = engine.tokenizer.clone();
        let seqs = prompts
            .into_iter()
            .map(|prompt| Sequence {
                pending: prompt.clone(),
                forced: Default::default(),
                prompt,
                response: vec![],
                loss_mask: vec![],
                logprobs: vec![],
                finish_reason: None,
                stop_string: None,
                next_position: 0,
                matcher: StopMatcher::new(options.stop_strings.clone(), tokenizer.clone()),
            })
            .collect::<Vec<_>>();
        if !options.stop_strings.is_empty() && engine.tokenizer.is_none() {
            return Err(EngineError::Input(
                "stop strings need a tokenizer (none was found beside the model)".into(),
            ));
        }
        // Start with room for up to 1024 new columns; the cache grows (by half) when a batch needs more.
        let capacity = longest + options.max_new_tokens.min(1024);
        let cache = KvCache::new(&engine.config, seqs.len(), capacity, engine.dtype, &engine.device);
        if options.sampling.uses_device_rng() {
            // The backend's generator is process-wide: concurrent sampling batches on one backend
            // share it, so only a batch that samples on the device reseeds it.
            B::seed(&engine.device, options.sampling.seed);
        }
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.sampling.seed);
        Ok(Self {
            engine,
            options,
            seqs,
            cache,
            columns: None,
            rng,
        })
    }

    /// The rows.
    pub fn sequences(&self) -> &[Sequence] {
        &self.seqs
    }

    /// Consumes the batch, returning the rows.
    pub fn into_sequences(self) -> Vec<Sequence> {
        self.seqs
    }

    /// Whether no row is active.
    pub fn is_done(&self) -> bool {
        self.seqs.iter().all(|s| !s.is_active())
    }

    /// Appends `tokens` to a stopped row's response with loss mask 0 and makes it active again.
    /// Tokens past the response budget are dropped and the row finishes with `Length`.
    pub fn inject(&mut self, row: usize, tokens: &[u32]) -> Result<()> {
        let max = self.options.max_new_tokens;
        let vocab = self.engine.config.vocab_size;
        let seq = self
            .seqs
            .get_mut(row)
            .ok_or_else(|| EngineError::Input(format!("no row {row}")))?;
        if seq.is_active() {
            return Err(EngineError::Input(format!(
                "row {row} is still generating; inject after it stops"
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::Input(format!(
                "injected token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let room = max.saturating_sub(seq.response.len());
        let take = tokens.len().min(room);
        seq.response.extend_from_slice(&tokens[..take]);
        seq.loss_mask.extend(std::iter::repeat_n(0u8, take));
        seq.logprobs.extend(std::iter::repeat_n(0.0f32, take));
        // A sampled token is fed to the model at the step after it was sampled, so the row's last
        // sampled token is still pending here and goes in before the injected ones.
        seq.pending.extend_from_slice(&tokens[..take]);
        seq.stop_string = None;
        seq.matcher.reset();
        if take < tokens.len() || seq.response.len() >= max {
            seq.finish_reason = Some(FinishReason::Length);
        } else {
            seq.finish_reason = None;
        }
        Ok(())
    }

    /// Forced decoding: the row's next generated tokens will be `tokens` instead of samples (each
    /// still with the model's log-prob, and still subject to EOS, stop strings and the budget).
    /// Once they are used up the row samples again. This is how tests script a model's output.
    pub fn force(&mut self, row: usize, tokens: &[u32]) -> Result<()> {
        let vocab = self.engine.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::Input(format!(
                "forced token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let seq = self
            .seqs
            .get_mut(row)
            .ok_or_else(|| EngineError::Input(format!("no row {row}")))?;
        seq.forced.extend(tokens);
        Ok(())
    }

    /// Runs until every row stops.
    pub fn run(&mut self) -> Result<()> {
        while !self.is_done() {
            self.step()?;
        }
        Ok(())
    }

    /// One forward pass over every active row's pending tokens, then one sampled token per row.
    pub fn step(&mut self) -> Result<()> {
        let active: Vec<usize> = (0..self.seqs.len()).filter(|&i| self.seqs[i].is_active()).collect();
        if active.is_empty() {
            return Ok(());
        }
        let t = active
            .iter()
            .map(|&i| self.seqs[i].pending.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let rows = self.seqs.len();
        let device = self.engine.device.clone();

        let mut ids = vec![0i64; rows * t];
        let mut pos = vec![0i64; rows * t];
        let mut new_cols = vec![MASKED; rows * t];
        for &r in &active {
            let seq = &mut self.seqs[r];
            let n = seq.pending.len();
            for (k, &tok) in seq.pending.iter().enumerate() {
                let c = t - n + k;
                ids[r * t + c] = tok as i64;
                pos[r * t + c] = (seq.next_position + k) as i64;
                new_cols[r * t + c] = 0.0;
            }
            seq.next_position += n;
            seq.pending.clear();
        }

        let len = self.cache.len();
        if len + t > self.cache.capacity() {
            let want = (len + t).max(self.cache.capacity() * 3 / 2);
            self.cache.reserve(want);
        }
        let f32_opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(DType::F32);
        let new_cols = Tensor::<B, 2>::from_data(TensorData::new(new_cols, [rows, t]), f32_opts());
        let columns = match self.columns.take() {
            Some(c) => Tensor::cat(vec![c, new_cols], 1),
            None => new_cols,
        };
        let keys = len + t;
        let causal = Tensor::<B, 2>::from_data(TensorData::new(causal_rows(t, keys, len), [t, keys]), f32_opts());
        let bias = AttentionBias::new(columns.clone().reshape([rows, 1, 1, keys]) + causal.reshape([1, 1, t, keys]));
        self.columns = Some(columns);

        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, t]), &device);
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::new(pos, [rows, t]), &device);
        let model = &self.engine.model;
        let hidden = model.forward_hidden(ids, pos, &bias, Some(&mut self.cache));
        let last = hidden.narrow(1, t - 1, 1);
        let logits = model.logits(last).reshape([rows, model.vocab_size]);
        let forced: Vec<Option<u32>> = self
            .seqs
            .iter_mut()
            .map(|s| if s.is_active() { s.forced.pop_front() } else { None })
            .collect();
        let (picked, logprobs) = sample(logits, &self.options.sampling, &mut self.rng, &forced);

        let max = self.options.max_new_tokens;
        for &r in &active {
            let seq = &mut self.seqs[r];
            let tok = picked[r];
            seq.response.push(tok);
            seq.loss_mask.push(1);
            seq.logprobs.push(logprobs[r]);
            seq.pending.push(tok);
            if self.options.eos_ids.contains(&tok) {
                seq.finish_reason = Some(FinishReason::Eos);
            } else if let Some(s) = seq.matcher.push(tok) {
                seq.stop_string = Some(s);
                seq.finish_reason = Some(FinishReason::Stop);
            } else if seq.response.len() >= max {
                seq.finish_reason = Some(FinishReason::Length);
            }
        }
        Ok(())
    }
}
