//! The error type of every model crate (Qwen2, BERT): each variant names the file (and field or
//! tensor) at fault. Nothing in it is specific to one architecture.

use std::path::PathBuf;

/// Anything that can go wrong while reading a checkpoint, a config or a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: not valid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A config field is missing or has the wrong type or value.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field at fault.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A safetensors file is truncated or malformed.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the architecture needs is in none of the weight files.
    #[error("tensor `{name}` is missing from the checkpoint in {dir}")]
    MissingTensor {
        /// The HF tensor name.
        name: String,
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// A tensor has a shape that does not match the config.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    Shape {
        /// The file holding it.
        path: PathBuf,
        /// The HF tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor or requested dtype is not one this crate handles.
    #[error("{context}: unsupported dtype {dtype} (expected one of f32, bf16, f16)")]
    UnsupportedDtype {
        /// Where it was found (a file and tensor, or the command line).
        context: String,
        /// The dtype found.
        dtype: String,
    },
    /// No weights in a checkpoint directory.
    #[error("{dir}: no model.safetensors or model.safetensors.index.json found")]
    NoWeights {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// The tokenizer could not be loaded or used.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Input ids out of the vocabulary, empty input, or input longer than the context.
    #[error("invalid input: {0}")]
    Input(String),
}

/// Result alias with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it concerns: `.map_err(io_err(path))`.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
