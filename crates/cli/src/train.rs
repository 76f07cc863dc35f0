//! `research train`: GRPO with search (the ReSearch recipe) from a preset or a TOML file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use research::engine::{dispatch_autodiff, BackendKind, WithAutodiffBackend};
use research::grpo::{TrainConfig, Trainer};
use research::qwen2::FloatType;

#[derive(Args, Clone)]
#[command(after_help = "Examples:\n  research train --preset tiny --index runs/tiny-index\n  \
research train --config my.toml --set optim.lr=2e-6 --retriever-url http://127.0.0.1:8000\n  \
research train --config my.toml --resume          # continue from <out>/checkpoints/latest\n\n\
Outputs in <out>: metrics.jsonl (one line per step and per validation), metrics.png (reward, response\n\
length, searches per rollout, KL), checkpoints/step-N (transformers loads them as is), config.toml.\n\
Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and exits.")]
pub struct TrainArgs {
    /// A built-in preset: `tiny` (CPU demo) or `qwen2.5-7b-instruct` (the paper's run).
    #[arg(long, conflicts_with = "config")]
    preset: Option<String>,
    /// A TOML configuration (every key optional; defaults are the paper's hyperparameters).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a setting, e.g. `--set optim.lr=2e-6 --set rollout.n=8` (TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (overrides `out`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in the output directory from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// In-process index built by `research index` (overrides `retriever.index`).
    #[arg(long, conflicts_with = "retriever_url")]
    index: Option<PathBuf>,
    /// A ReSearch-API retriever server (overrides `retriever.url`).
    #[arg(long)]
    retriever_url: Option<String>,
    /// Backend (overrides `model.backend`): cpu, cuda, tch-cpu, tch-cuda.
    #[arg(long)]
    backend: Option<String>,
    /// Compute dtype (overrides `model.dtype`): f32, bf16, f16.
    #[arg(long)]
    dtype: Option<String>,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn load_config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut overrides = a.overrides.clone();
    if let Some(out) = &a.out {
        overrides.push(format!("out={:?}", out.display().to_string()));
    }
    if let Some(b) = &a.backend {
        overrides.push(format!("model.backend={b:?}"));
    }
    if let Some(d) = &a.dtype {
        overrides.push(format!("model.dtype={d:?}"));
    }
    if let Some(i) = &a.index {
        overrides.push(format!("retriever.index={:?}", i.display().to_string()));
    }
    if let Some(u) = &a.retriever_url {
        overrides.push(format!("retriever.url={u:?}"));
    }
    let config = match (&a.preset, &a.config) {
        (Some(p), None) => {
            let (_, text) = research::grpo::config::PRESETS
                .iter()
                .find(|(n, _)| n == p)
                .ok_or_else(|| research::grpo::TrainConfig::preset(p).unwrap_err())?;
            TrainConfig::from_toml(text, std::path::Path::new(&format!("<preset {p}>")), &overrides)?
        }
        (None, Some(path)) => TrainConfig::from_file(path, &overrides)?,
        (None, None) => bail!("give --preset NAME or --config FILE (see `research train --help`)"),
        (Some(_), Some(_)) => unreachable!("clap rejects both"),
    };
    Ok(config)
}

/// The retriever the config names (`retriever.index` or `retriever.url`, exactly one).
fn open_retriever(config: &TrainConfig) -> Result<Box<dyn research::agent::Retriever>> {
    crate::retriever::open(
        config.retriever.index.as_deref(),
        config.retriever.url.as_deref(),
        std::time::Duration::from_secs(60),
        &Default::default(),
    )
}

struct TrainJob {
    config: TrainConfig,
    resume: bool,
    retriever: Box<dyn research::agent::Retriever>,
    stop: Arc<AtomicBool>,
}

impl WithAutodiffBackend for TrainJob {
    type Output = Result<()>;
    fn run<B: research::burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let mut trainer = Trainer::<B>::new(self.config, self.resume, device)?;
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        eprintln!(
            "training: {} steps to go (from step {})",
            trainer.total_steps().saturating_sub(trainer.step()),
            trainer.step()
        );
        let summary = trainer.run(self.retriever.as_ref(), &self.stop, progress)?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        eprintln!(
            "{} after {} steps.\n  metrics:    {}\n  chart:      {}\n  checkpoint: {}",
            if summary.interrupted { "stopped" } else { "done" },
            summary.steps,
            summary.metrics.display(),
            summary.chart.display(),
            summary
                .checkpoint
                .as_ref()
                .map_or("(none)".to_string(), |p| p.display().to_string())
        );
        Ok(())
    }
}

/// Runs `research train`.
pub fn train(a: TrainArgs) -> Result<()> {
    let config = load_config(&a)?;
    if a.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let kind: BackendKind = config.model.backend.parse()?;
    let dtype = FloatType::parse(&config.model.dtype)?;
    let retriever = open_retriever(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond interrupt: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step, then saving a checkpoint (again to abort)");
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    dispatch_autodiff(
        kind,
        dtype,
        config.model.gradient_checkpointing,
        TrainJob {
            config,
            resume: a.resume,
            retriever,
            stop,
        },
    )?
}
