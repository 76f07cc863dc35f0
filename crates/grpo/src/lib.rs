//! The GRPO learner of research-rs, with verl 0.2's semantics as ReSearch uses them
//! (`REFERENCE.md` §5), and the training loop around it.
//!
//! - [`advantage`] — group-normalised outcome advantages.
//! - [`loss`] — PPO-clip policy loss, entropy bonus, low-variance KL, on flattened trained tokens.
//! - [`optim`] — AdamW with accumulation, global norm clipping, f32 masters, savable state.
//! - [`learner`] — log-prob passes and the update over token-budgeted micro-batches.
//! - [`config`] — the TOML configuration, presets (`tiny`, `qwen2.5-7b-instruct`), overrides.
//! - [`checkpoint`] — HF-layout checkpoints with optimizer and trainer state, atomic, resumable.
//! - [`trainer`] — the loop (rollouts with search, rewards, update, validation, metrics).
//! - [`chart`] — `metrics.png`.

pub mod advantage;
pub mod bench;
pub mod chart;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod trainer;

pub use advantage::group_advantages;
pub use config::TrainConfig;
pub use error::{GrpoError, Result};
pub use learner::{micro_batches, Learner, LearnerConfig, Reference, Sample, UpdateStats};
pub use loss::{grpo_loss, LossConfig, LossOutput};
pub use optim::{param_values, AdamW, AdamWConfig, StepStats};
pub use trainer::{RunSummary, StepMetrics, Trainer};
