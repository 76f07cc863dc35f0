//! Checkpoints: the model in the Hugging Face layout (transformers loads the directory as is), the
//! tokenizer files, the optimizer state and the trainer state, written atomically.
//!
//! ```text
//! <out>/checkpoints/step-000010/   model.safetensors, config.json, tokenizer.json, ...,
//!                                  optimizer.safetensors, optimizer.json, trainer_state.json
//! <out>/checkpoints/latest         "step-000010"
//! ```
//! A checkpoint is written into `step-N.partial/` and renamed when complete; `latest` is replaced
//! by rename too, so a crash (even `kill -9`) leaves the previous checkpoint usable.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use research_qwen2::Qwen2Config;

use crate::error::{io_err, GrpoError, Result};
use crate::learner::Learner;

/// Where the run stands, saved with each checkpoint.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed (the next step to run).
    pub step: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// Lines of `metrics.jsonl` written up to this checkpoint.
    pub metrics_lines: usize,
    /// The data seed (a resumed run must keep it for the same data order).
    pub seed: u64,
}

/// Files copied from the tokenizer directory when present (`.zst` ones decompressed).
const TOKENIZER_FILES: [&str; 7] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let plain = from.join(name);
        let zst = from.join(format!("{name}.zst"));
        let src = if plain.exists() {
            plain
        } else if zst.exists() {
            zst
        } else {
            continue;
        };
        let bytes = std::fs::read(&src).map_err(io_err(&src))?;
        let bytes = research_model_io::maybe_unzstd(&src, bytes).map_err(|message| GrpoError::Io {
            path: src.clone(),
            message,
        })?;
        std::fs::write(to.join(name), bytes).map_err(io_err(to.join(name)))?;
    }
    Ok(())
}

/// The directory of the checkpoint after `step` steps.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

/// Writes a checkpoint of `learner` after `state.step` steps and points `latest` at it.
pub fn save_checkpoint<B: AutodiffBackend>(
    out: &Path,
    learner: &Learner<B>,
    model_config: &Qwen2Config,
    tokenizer_dir: &Path,
    state: &TrainerState,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(out, state.step);
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
    learner.inference_model().save_pretrained(model_config, &partial)?;
    copy_tokenizer(tokenizer_dir, &partial)?;
    learner.optimizer.save(&partial.join("optimizer.safetensors"))?;
    let state_path = partial.join("trainer_state.json");
    std::fs::write(&state_path, serde_json::to_string_pretty(state).unwrap_or_default())
        .map_err(io_err(&state_path))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    std::fs::rename(&partial, &dir).map_err(io_err(&dir))?;
    let latest = out.join("checkpoints").join("latest");
    let tmp = latest.with_extension("partial");
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    std::fs::write(&tmp, name + "\n").map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &latest).map_err(io_err(&latest))?;
    Ok(dir)
}

/// The checkpoint `latest` points at, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    let latest = out.join("checkpoints").join("latest");
    if !latest.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest).map_err(io_err(&latest))?;
    let dir = out.join("checkpoints").join(name.trim());
    if !dir.join("trainer_state.json").exists() {
        return Err(GrpoError::Checkpoint {
            path: dir,
            message: format!("{} points here but the checkpoint is incomplete", latest.display()),
        });
    }
    Ok(Some(dir))
}

/// Reads `trainer_state.json` of a checkpoint.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| GrpoError::Checkpoint {
        path,
        message: e.to_string(),
    })
}
