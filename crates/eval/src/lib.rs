//! Evaluation for research-rs (REFERENCE.md §7): FlashRAG datasets, greedy ReSearch rollouts with
//! search, a per-item JSONL trace and a summary of EM, F1, acc (Sub-EM), precision and recall.

pub mod dataset;
pub mod run;

pub use dataset::{dataset_file, read_questions, Question, DATASETS};
pub use run::{evaluate, predicted_answer, EvalConfig, ItemRecord, PromptStyle, Summary};

use std::path::PathBuf;

/// What can go wrong during evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, String),
    /// A malformed line.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Input(String),
    /// The rollout failed (engine or retriever).
    #[error(transparent)]
    Rollout(#[from] research_agent::RolloutError),
}
