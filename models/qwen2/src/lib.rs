//! Qwen2 / Qwen2.5 in burn, numerically equal to HF transformers' `Qwen2ForCausalLM`.
//!
//! - [`Qwen2Config`]: `config.json` as transformers 4.x and 5.x write it.
//! - [`Checkpoint`]: memory-mapped safetensors, single or sharded, decoded into f32/bf16/f16.
//! - [`Qwen2ForCausalLM`]: the model, generic over the burn backend, with HF tensor names.
//! - `save`: [`Qwen2ForCausalLM::save_pretrained`] writes the HF layout back (safetensors + config.json).
//! - [`KvCache`]: the preallocated cache the generation engine drives.
//! - [`Qwen2Tokenizer`] and [`render_chat`]: `tokenizer.json` and the Qwen2.5 chat template.
//! - [`ModelDir`]: finds a checkpoint from a directory or a Hugging Face hub id in the local cache.

pub mod cache;
pub mod config;
pub mod error;
pub mod model;
pub mod save;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use cache::KvCache;
pub use config::Qwen2Config;
pub use error::{ModelError, Result};
pub use model::Qwen2ForCausalLM;
pub use source::ModelDir;
pub use tokenizer::{render_chat, ChatMessage, Qwen2Tokenizer};
pub use weights::{Checkpoint, FloatType};

use burn::tensor::backend::Backend;

/// Reads `config.json` and the weights of a checkpoint directory into a model on `device`.
pub fn load_model<B: Backend>(
    dir: &ModelDir,
    dtype: FloatType,
    device: &B::Device,
) -> Result<(Qwen2Config, Qwen2ForCausalLM<B>)> {
    let mut config = Qwen2Config::from_file(dir.path().join("config.json"))?;
    config.merge_generation_config(&dir.path().join("generation_config.json"))?;
    let ckpt = Checkpoint::open(dir.path())?;
    let model = Qwen2ForCausalLM::load(&config, &ckpt, dtype, device)?;
    Ok((config, model))
}
