use std::path::PathBuf;

/// What can go wrong in the learner and the training loop.
#[derive(Debug, thiserror::Error)]
pub enum GrpoError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// A configuration value is missing or wrong.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The TOML file (or `<command line>`).
        path: PathBuf,
        /// The field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A checkpoint is missing a piece or does not match the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Inconsistent inputs to the learner.
    #[error("{0}")]
    Input(String),
    /// The device failed (e.g. a CUDA error surfaced at a synchronisation).
    #[error("{0}")]
    Device(String),
    /// From the model crates.
    #[error(transparent)]
    Model(#[from] research_qwen2::ModelError),
    /// From the engine.
    #[error(transparent)]
    Engine(#[from] research_engine::EngineError),
    /// From a rollout.
    #[error(transparent)]
    Rollout(#[from] research_agent::RolloutError),
    /// From the datasets.
    #[error(transparent)]
    Eval(#[from] research_eval::EvalError),
}

/// `Result` with [`GrpoError`].
pub type Result<T> = std::result::Result<T, GrpoError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> GrpoError {
    let path = path.into();
    move |e| GrpoError::Io {
        path,
        message: e.to_string(),
    }
}
