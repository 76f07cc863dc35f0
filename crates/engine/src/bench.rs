//! Generation throughput on random weights of a given shape (no checkpoint needed).

use std::time::Instant;

use burn::tensor::backend::Backend;
use research_qwen2::{FloatType, Qwen2Config, Qwen2ForCausalLM};

use crate::batch::{Batch, GenerateOptions};
use crate::engine::Engine;
use crate::error::Result;

/// One measured configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateBench {
    /// Sequences in the batch.
    pub batch: usize,
    /// Prompt tokens per sequence.
    pub prompt_len: usize,
    /// New tokens per sequence.
    pub new_tokens: usize,
    /// Seconds for the prefill step (prompt forward + first token).
    pub prefill_s: f64,
    /// Seconds for the remaining decode steps.
    pub decode_s: f64,
    /// New tokens per second over the whole run (prefill included), as transformers' `generate` is timed.
    pub new_tokens_per_s: f64,
}

/// Runs greedy generation of exactly `new_tokens` tokens for `batch` random prompts of
/// `prompt_len` tokens, after a short warm-up of the same shapes, and times it.
pub fn generate_throughput<B: Backend>(
    engine: &Engine<B>,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    warmup_tokens: usize,
) -> Result<GenerateBench> {
    let vocab = engine.config.vocab_size as u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..prompt_len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % vocab) as u32
                })
                .collect()
        })
        .collect();
    let opts = |n: usize| GenerateOptions {
        max_new_tokens: n,
        eos_ids: vec![],
        ..Default::default()
    };
    if warmup_tokens > 0 {
        Batch::new(engine, prompts.clone(), opts(warmup_tokens))?.run()?;
    }
    let mut b = Batch::new(engine, prompts, opts(new_tokens))?;
    let start = Instant::now();
    b.step()?;
    let prefill_s = start.elapsed().as_secs_f64();
    b.run()?;
    let total = start.elapsed().as_secs_f64();
    Ok(GenerateBench {
        batch,
        prompt_len,
        new_tokens,
        prefill_s,
        decode_s: total - prefill_s,
        new_tokens_per_s: (batch * new_tokens) as f64 / total,
    })
}

/// An engine with random weights of `config`'s shape (no tokenizer).
pub fn random_engine<B: Backend>(config: Qwen2Config, dtype: FloatType, device: B::Device) -> Engine<B> {
    let model = Qwen2ForCausalLM::random(&config, dtype, 0, &device);
    Engine::new(config, model, None, dtype, device)
}
