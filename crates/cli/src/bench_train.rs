//! `research bench train`: GRPO update steps on random weights of a Qwen2 shape.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use research::engine::{dispatch_autodiff, BackendKind, Checkpointing, WithAutodiffBackend};
use research::grpo::bench::{update_throughput, TrainBenchConfig};
use research::qwen2::{FloatType, Qwen2Config};

#[derive(Args)]
#[command(after_help = "Example (the issue's shape on the GPU machine):\n  \
research bench train --config data/qwen2.5_configs/Qwen2.5-0.5B-Instruct/config.json --backend cuda --dtype bf16\n\n\
Prints one JSON line: tokens_per_s = batch × seq-len / mean seconds per timed step.")]
pub struct BenchTrainArgs {
    /// A Qwen2 config.json giving the shape (e.g. data/qwen2.5_configs/Qwen2.5-0.5B-Instruct/config.json).
    #[arg(long)]
    config: PathBuf,
    /// Backend: cpu, cuda, tch-cpu or tch-cuda (those compiled into this binary).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype (AdamW keeps f32 master weights for bf16/f16).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Sequences in the micro-batch (one micro-batch per step).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence, prompt included.
    #[arg(long, default_value_t = 2048)]
    seq_len: usize,
    /// Prompt tokens per sequence (not trained); the rest is the trained response.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Gradient checkpointing: off or balanced.
    #[arg(long, default_value = "balanced")]
    gradient_checkpointing: String,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Seed of the weights and tokens.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Job(BenchTrainArgs, FloatType, Qwen2Config);

impl WithAutodiffBackend for Job {
    type Output = Result<()>;
    fn run<B: research::burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let Job(a, dtype, model) = self;
        let config = TrainBenchConfig {
            batch: a.batch,
            seq_len: a.seq_len,
            prompt_len: a.prompt_len,
            warmup: a.warmup,
            steps: a.steps,
            seed: a.seed,
        };
        let r = update_throughput::<B>(&model, dtype, &config, &device)?;
        let mut v = serde_json::to_value(&r)?;
        v["bench"] = "train".into();
        v["impl"] = "research-rs".into();
        v["backend"] = a.backend.clone().into();
        v["dtype"] = a.dtype.clone().into();
        v["gradient_checkpointing"] = a.gradient_checkpointing.clone().into();
        v["config"] = a.config.display().to_string().into();
        println!("{v}");
        Ok(())
    }
}

pub fn run(a: BenchTrainArgs) -> Result<()> {
    let kind: BackendKind = a.backend.parse()?;
    let dtype = FloatType::parse(&a.dtype)?;
    let checkpointing: Checkpointing = a.gradient_checkpointing.parse()?;
    let model = Qwen2Config::from_file(&a.config)?;
    dispatch_autodiff(kind, dtype, checkpointing, Job(a, dtype, model))?
}
