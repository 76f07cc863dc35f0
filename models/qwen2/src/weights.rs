//! Memory-mapped safetensors checkpoints, single-file or sharded (`model.safetensors.index.json`).
//!
//! The loader lives in `research-model-io` (shared with the BERT encoder); this module re-exports
//! it under its old path.

pub use research_model_io::weights::*;
