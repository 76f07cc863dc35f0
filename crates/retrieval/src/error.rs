//! The one error type of the retrieval crate. Every variant names the file (and line or field) at
//! fault and what was expected.

use std::path::{Path, PathBuf};

/// What can go wrong reading a corpus, building an index or searching it.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A corpus row is not a FlashRAG passage.
    #[error("{}:{line}: {message}", path.display())]
    Row {
        /// The corpus file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A file of the index is malformed or does not match another.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The index was built from a different encoder or corpus than the one given.
    #[error("{}: {message}", path.display())]
    Mismatch {
        /// The manifest.
        path: PathBuf,
        /// Which field differs, with both values.
        message: String,
    },
    /// From the encoder.
    #[error("encoder: {0}")]
    Encoder(#[from] research_bert::ModelError),
    /// From the backend dispatch.
    #[error(transparent)]
    Engine(#[from] research_engine::EngineError),
    /// From usearch.
    #[error("usearch: {0}")]
    Usearch(String),
    /// A bad argument.
    #[error("{0}")]
    Input(String),
}

/// Result with [`RetrievalError`].
pub type Result<T> = std::result::Result<T, RetrievalError>;

/// An I/O error with its path.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RetrievalError + '_ {
    move |source| RetrievalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A format error with its path.
pub fn format_err(path: &Path, message: impl Into<String>) -> RetrievalError {
    RetrievalError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Turns a usearch exception into [`RetrievalError::Usearch`], saying what was being done.
pub fn usearch_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> RetrievalError + '_ {
    move |e| RetrievalError::Usearch(format!("{what}: {e}"))
}
