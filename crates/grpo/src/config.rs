//! The training configuration: a TOML file whose defaults are the paper's hyperparameters, named
//! presets, and `section.key=value` overrides from the command line.

use std::path::{Path, PathBuf};

use crate::error::{GrpoError, Result};
use crate::learner::LearnerConfig;
use crate::optim::AdamWConfig;

/// A tiny randomly initialised model (for demos and tests), with a real tokenizer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomModel {
    /// Directory with `tokenizer.json` (or `.zst`); its vocabulary sets the embedding size.
    pub tokenizer: PathBuf,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Seed of the initialisation.
    #[serde(default)]
    pub seed: u64,
}

/// Which model to train and where.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// A checkpoint directory or a hub id in the local HF cache.
    pub path: Option<String>,
    /// Or a random model of a given shape.
    pub random: Option<RandomModel>,
    /// Compute dtype: f32, bf16, f16.
    pub dtype: String,
    /// Backend: cpu, cuda, tch-cpu, tch-cuda.
    pub backend: String,
    /// Gradient checkpointing of the training backend: `off`, or `balanced` (burn's op-level
    /// strategy: memory-bound intermediates are recomputed in the backward pass).
    pub gradient_checkpointing: research_engine::Checkpointing,
    /// Where the frozen reference model of the KL term runs: `device` (the training device, in
    /// the training dtype) or `cpu` (burn-ndarray in f32: frees device memory, costs host time).
    pub reference_device: ReferenceDevice,
}

/// Where the reference model runs (`model.reference_device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceDevice {
    /// The training device.
    #[default]
    Device,
    /// The CPU (needs the `cpu` feature).
    Cpu,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            path: None,
            random: None,
            dtype: "bf16".into(),
            backend: "cuda".into(),
            gradient_checkpointing: research_engine::Checkpointing::Balanced,
            reference_device: ReferenceDevice::Device,
        }
    }
}

/// Prompt style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// `re_search_template_sys` through the chat template; EOS `<|im_end|>` or `<|endoftext|>`.
    Instruct,
    /// `re_search_template`, no chat template; EOS `<|endoftext|>`.
    Base,
}

/// Training and validation data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// FlashRAG jsonl (plain or `.zst`) of training questions.
    pub train: PathBuf,
    /// FlashRAG jsonl of validation questions (none: no validation).
    pub val: Option<PathBuf>,
    /// Validation questions drawn (shuffled with `val_seed`).
    pub val_size: usize,
    /// Seed of the validation draw (42).
    pub val_seed: u64,
    /// Prompts longer than this are dropped from training (512).
    pub max_prompt_tokens: usize,
    /// Prompt template.
    pub template: Template,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            train: PathBuf::from("data/eval/musique/train.jsonl.zst"),
            val: Some(PathBuf::from("data/eval/musique/dev.jsonl.zst")),
            val_size: 100,
            val_seed: 42,
            max_prompt_tokens: 512,
            template: Template::Instruct,
        }
    }
}

/// Retrieval during rollouts (the retriever itself is opened by the program).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrieverSection {
    /// An in-process index directory (`research index`).
    pub index: Option<PathBuf>,
    /// Or a ReSearch-API server URL.
    pub url: Option<String>,
    /// Passages per search (5).
    pub top_k: usize,
}

impl Default for RetrieverSection {
    fn default() -> Self {
        Self {
            index: None,
            url: None,
            top_k: 5,
        }
    }
}

/// Rollouts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSection {
    /// Samples per prompt (5).
    pub n: usize,
    /// Prompts per step (256); the mini-batch is the whole batch.
    pub prompts_per_step: usize,
    /// Response tokens per sample, inserted results included (8192).
    pub response_budget: usize,
    /// Optional cap on searches per sample.
    pub max_turns: Option<usize>,
    /// Sampling temperature (1.0).
    pub temperature: f32,
}

impl Default for RolloutSection {
    fn default() -> Self {
        Self {
            n: 5,
            prompts_per_step: 256,
            response_budget: 8192,
            max_turns: None,
            temperature: 1.0,
        }
    }
}

/// Length of the run, validation and checkpoints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// Passes over the training set (2).
    pub epochs: usize,
    /// Stop after this many steps (default: `epochs` worth).
    pub max_steps: Option<u64>,
    /// Validate every N steps (and before training); 0 disables (10).
    pub val_every: u64,
    /// Checkpoint every N steps (and at the end); 0: only at the end (10).
    pub save_every: u64,
    /// Seed of the data order and the sampling (42).
    pub seed: u64,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            epochs: 2,
            max_steps: None,
            val_every: 10,
            save_every: 10,
            seed: 42,
        }
    }
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Output directory (metrics, chart, checkpoints).
    pub out: PathBuf,
    /// The model.
    pub model: ModelSection,
    /// The data.
    pub data: DataSection,
    /// The retriever.
    pub retriever: RetrieverSection,
    /// Rollouts.
    pub rollout: RolloutSection,
    /// Learner (token budgets, loss coefficients).
    pub learner: LearnerConfig,
    /// AdamW.
    pub optim: AdamWConfig,
    /// Schedule.
    pub schedule: ScheduleSection,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/train"),
            model: ModelSection::default(),
            data: DataSection::default(),
            retriever: RetrieverSection::default(),
            rollout: RolloutSection::default(),
            learner: LearnerConfig::default(),
            optim: AdamWConfig::default(),
            schedule: ScheduleSection::default(),
        }
    }
}

/// The built-in presets: name and TOML text.
pub const PRESETS: [(&str, &str); 2] = [
    ("tiny", include_str!("../presets/tiny.toml")),
    (
        "qwen2.5-7b-instruct",
        include_str!("../presets/qwen2.5-7b-instruct.toml"),
    ),
];

impl TrainConfig {
    /// A preset by name.
    pub fn preset(name: &str) -> Result<Self> {
        let (_, text) = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| GrpoError::Config {
                path: PathBuf::from("<preset>"),
                field: "preset".into(),
                message: format!(
                    "unknown preset `{name}` (expected one of: {})",
                    PRESETS.map(|(n, _)| n).join(", ")
                ),
            })?;
        Self::from_toml(text, Path::new(&format!("<preset {name}>")), &[])
    }

    /// Reads a TOML file and applies `overrides` (`section.key=value`, the value in TOML syntax;
    /// a bare word is taken as a string).
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GrpoError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text, path, overrides)
    }

    /// Parses TOML text (defaults fill what it leaves out) and applies `overrides`.
    pub fn from_toml(text: &str, origin: &Path, overrides: &[String]) -> Result<Self> {
        let bad = |field: &str, message: String| GrpoError::Config {
            path: origin.to_path_buf(),
            field: field.into(),
            message,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| bad("-", e.to_string()))?;
        for o in overrides {
            let (key, raw) = o
                .split_once('=')
                .ok_or_else(|| bad(o, "an override must look like `section.key=value`".into()))?;
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.to_string()));
            let mut cur = &mut value;
            let parts: Vec<&str> = key.trim().split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let table = cur
                    .as_table_mut()
                    .ok_or_else(|| bad(key, format!("`{}` is not a table", parts[..i].join("."))))?;
                if i + 1 == parts.len() {
                    table.insert(part.to_string(), parsed.clone());
                    break;
                }
                cur = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
            }
        }
        let config: TrainConfig = value.try_into().map_err(|e: toml::de::Error| bad("-", e.to_string()))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |field: &str, message: &str| {
            Err(GrpoError::Config {
                path: origin.to_path_buf(),
                field: field.into(),
                message: message.into(),
            })
        };
        if self.model.path.is_none() == self.model.random.is_none() {
            return bad("model", "give exactly one of `model.path` and `model.random`");
        }
        if self.model.reference_device == ReferenceDevice::Cpu && !cfg!(feature = "cpu") {
            return bad(
                "model.reference_device",
                "`cpu` needs a build with the `cpu` feature (burn-ndarray); use `device`",
            );
        }
        if self.rollout.n == 0 {
            return bad("rollout.n", "must be at least 1");
        }
        if self.rollout.prompts_per_step == 0 {
            return bad("rollout.prompts_per_step", "must be at least 1");
        }
        if self.rollout.response_budget == 0 {
            return bad("rollout.response_budget", "must be at least 1");
        }
        if !(self.optim.lr >= 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", "must be a finite number >= 0");
        }
        if self.learner.update_token_budget == 0 || self.learner.logprob_token_budget == 0 {
            return bad("learner", "token budgets must be positive");
        }
        Ok(())
    }

    /// The TOML text of this configuration (written next to each run).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_preset_has_the_reference_hyperparameters() {
        let c = TrainConfig::preset("qwen2.5-7b-instruct").unwrap();
        assert_eq!(
            (c.rollout.n, c.rollout.prompts_per_step, c.rollout.response_budget),
            (5, 256, 8192)
        );
        assert_eq!(c.optim.lr, 1e-6);
        assert_eq!(
            (
                c.optim.beta1,
                c.optim.beta2,
                c.optim.weight_decay,
                c.optim.max_grad_norm
            ),
            (0.9, 0.999, 0.01, 1.0)
        );
        assert_eq!(
            (
                c.learner.loss.clip_ratio,
                c.learner.loss.entropy_coeff,
                c.learner.loss.kl_coeff
            ),
            (0.2, 0.001, 0.001)
        );
        assert_eq!(
            (c.learner.update_token_budget, c.learner.logprob_token_budget),
            (17408, 34816)
        );
        assert_eq!(
            (c.data.val_size, c.data.val_seed, c.data.max_prompt_tokens),
            (100, 42, 512)
        );
        assert_eq!((c.schedule.epochs, c.schedule.val_every), (2, 10));
        assert_eq!(c.retriever.top_k, 5);
        // An empty file gives the same defaults (except the model, which must be named).
        let d = TrainConfig::from_toml("[model]\npath = \"x\"", Path::new("t.toml"), &[]).unwrap();
        assert_eq!((d.optim, d.learner, d.rollout.clone()), (c.optim, c.learner, c.rollout));
    }

    #[test]
    fn overrides_and_errors() {
        let c = TrainConfig::preset("tiny").unwrap();
        assert!(c.model.random.is_some());
        let text = include_str!("../presets/tiny.toml");
        let o = vec![
            "optim.lr=3e-5".to_string(),
            "out=/tmp/x".to_string(),
            "rollout.max_turns=7".to_string(),
        ];
        let c = TrainConfig::from_toml(text, Path::new("tiny.toml"), &o).unwrap();
        assert_eq!(
            (c.optim.lr, c.out.clone(), c.rollout.max_turns),
            (3e-5, PathBuf::from("/tmp/x"), Some(7))
        );
        let e = TrainConfig::from_toml(text, Path::new("tiny.toml"), &["optim.lrr=1".into()]).unwrap_err();
        assert!(e.to_string().contains("lrr"), "{e}");
        let e = TrainConfig::from_toml(text, Path::new("tiny.toml"), &["rollout.n=0".into()]).unwrap_err();
        assert!(e.to_string().contains("rollout.n"), "{e}");
        let e = TrainConfig::from_toml(text, Path::new("tiny.toml"), &["optim.lr".into()]).unwrap_err();
        assert!(e.to_string().contains("section.key=value"), "{e}");
        let e = TrainConfig::preset("huge").unwrap_err();
        assert!(e.to_string().contains("tiny"), "{e}");
    }
}
