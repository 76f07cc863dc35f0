//! Errors of the Qwen2 crate. Every variant names the file (and field or tensor) at fault.
//!
//! The type is shared by all model crates and defined in `research-model-io`; it is re-exported
//! here under its old path.

pub use research_model_io::{ModelError, Result};

pub(crate) use research_model_io::io_err;
