//! Where a checkpoint lives: a local directory, or a hub repo id resolved in the local Hugging Face
//! cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). Nothing is
//! downloaded: a missing model is an error that says what to download where.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// A resolved checkpoint directory (holding `config.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir(PathBuf);

fn hub_cache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

impl ModelDir {
    /// Resolves `spec`: an existing directory, or `org/name[@revision]` in the hub cache.
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::checked(path.to_path_buf());
        }
        let (repo, rev) = spec.split_once('@').unwrap_or((spec, "main"));
        let looks_like_repo = repo.split('/').count() == 2 && !repo.starts_with('.') && !repo.starts_with('/');
        if !looks_like_repo {
            return Err(ModelError::Input(format!(
                "model `{spec}`: no such directory (expected a checkpoint directory with config.json, or a hub id like Qwen/Qwen2.5-7B-Instruct)"
            )));
        }
        let cache = hub_cache().unwrap_or_else(|| PathBuf::from("~/.cache/huggingface/hub"));
        let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        let snapshot = std::fs::read_to_string(repo_dir.join("refs").join(rev))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| rev.to_string());
        let dir = repo_dir.join("snapshots").join(snapshot);
        if dir.is_dir() {
            return Self::checked(dir);
        }
        Err(ModelError::Input(format!(
            "model `{spec}` is neither a local directory nor in the Hugging Face cache ({}); this program does not download: \
             fetch it first, e.g. `huggingface-cli download {repo}` on a machine with network access, or pass --model DIR",
            repo_dir.display()
        )))
    }

    fn checked(dir: PathBuf) -> Result<Self> {
        if !dir.join("config.json").is_file() {
            return Err(ModelError::Input(format!(
                "{}: no config.json (expected an HF checkpoint directory)",
                dir.display()
            )));
        }
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}
