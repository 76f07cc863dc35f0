//! Errors of the generation engine.

use research_qwen2::ModelError;

/// What can go wrong while loading, generating or scoring.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// From the model crate (config, weights, tokenizer).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Invalid request: empty prompt, ids outside the vocabulary, too long for the context.
    #[error("invalid input: {0}")]
    Input(String),
    /// Backend not compiled in, or dtype not supported by it.
    #[error("{0}")]
    Backend(String),
}

/// Result alias for this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
