//! # research-rs
//!
//! Train LLMs to reason with search through reinforcement learning (the ReSearch recipe), in Rust
//! on [burn](https://burn.dev). This facade crate re-exports the public API of the workspace:
//!
//! - [`qwen2`]: Qwen2 / Qwen2.5 in burn (HF `config.json`, safetensors, `tokenizer.json`, chat template);
//! - [`engine`]: batched KV-cache generation, sampling, stop strings, log-probs, backend selection;
//! - [`kernels`]: attention (reference path; fused CUDA kernels with the `cuda` feature);
//! - [`agent`]: prompt templates, the rollout loop with search, rewards and answer metrics;
//! - [`eval`]: FlashRAG datasets and benchmark evaluation.
//! - [`grpo`]: the GRPO learner, checkpoints and the training loop;
//! - [`retrieval`]: corpus store, dense index build (BERT encoder + usearch HNSW) and in-process search.
//!
//! ## Loading a model and generating
//!
//! ```no_run
//! use research::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = research::engine::backend::CpuBackend;
//! let dir = ModelDir::resolve("path/to/Qwen2.5-0.5B-Instruct")?;
//! let engine = Engine::<B>::load(&dir, FloatType::F32, Default::default())?;
//! let tok = engine.tokenizer()?;
//! let prompt = render_chat(&[ChatMessage::new("user", "What is the capital of France?")], true);
//! let ids = tok.encode(&prompt)?;
//! let options = GenerateOptions {
//!     max_new_tokens: 32,
//!     eos_ids: engine.default_eos(),
//!     ..Default::default()
//! };
//! let out = engine.generate(vec![ids], options)?;
//! println!("{}", out[0].text.as_deref().unwrap_or(""));
//! # Ok(())
//! # }
//! ```

pub use research_agent as agent;
pub use research_engine as engine;
pub use research_eval as eval;
pub use research_grpo as grpo;
pub use research_kernels as kernels;
pub use research_qwen2 as qwen2;
pub use research_retrieval as retrieval;

/// Re-exports `burn`, so that users name backends and tensors with the same version.
pub use burn;

/// The names most programs need.
pub mod prelude {
    pub use research_engine::{
        dispatch, BackendKind, Batch, Engine, EngineError, FinishReason, GenerateOptions, Generation, SamplingParams,
        WithBackend,
    };
    pub use research_qwen2::{
        render_chat, ChatMessage, FloatType, ModelDir, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer,
    };
}
