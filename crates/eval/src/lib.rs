//! Evaluation for research-rs (REFERENCE.md §7): FlashRAG datasets, greedy ReSearch rollouts with
//! search, a per-item JSONL trace and a summary of EM, F1, acc (Sub-EM), precision and recall.
//!
//! Also: Search-R1's loop as an alternative ([`LoopKind`]), an optional LLM judge through an
//! OpenAI-compatible endpoint ([`judge`]), and ReSearch's training parquet ([`parquet`], REFERENCE.md §6).

pub mod dataset;
pub mod judge;
pub mod parquet;
pub mod run;

pub use crate::parquet::{read_training_parquet, write_training_jsonl, write_training_parquet, TrainingRow};
pub use dataset::{dataset_file, read_questions, Question, DATASETS};
pub use judge::{Judge, JudgeConfig, Judgement};
pub use run::{
    evaluate, evaluate_with_judge, predicted_answer, EvalConfig, ItemRecord, JudgeSummary, LoopKind, PromptStyle,
    Summary,
};

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
    /// A malformed record of a parquet file.
    #[error("{path}: row {row}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based row.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Input(String),
    /// The LLM judge failed (after its retries, or at once for a client error such as a bad key).
    #[error("LLM judge: {0}")]
    Judge(String),
    /// The rollout failed (engine or retriever).
    #[error(transparent)]
    Rollout(#[from] research_agent::RolloutError),
}
