//! `cargo xtask bench attention -- [--iters 20] ...`: the fused attention benchmark of issue 6 on
//! this machine's GPU: a release build of `gpu-attention` (research-tests, feature `cuda`), its
//! `bench` (ours: forward, forward+backward with the tensor-core and the scalar backward, decode),
//! PyTorch SDPA's flash and cuDNN backends on the same shapes (`tests/gpu/bench_attention_torch.py`,
//! skipped with a note when torch is not importable), then the markdown tables
//! (`tests/gpu/attention_table.py`). With `--check`, `gpu-attention check` (float64-checked
//! forward and gradients) runs first and a failure stops the run. The GPU machine has no cargo:
//! there `tests/gpu/suite.sh` runs the same steps from the staged binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use clap::Parser;

use crate::{cargo, root, run};

/// Arguments after `cargo xtask bench attention --`.
#[derive(Parser)]
#[command(
    name = "cargo xtask bench attention --",
    about = "Fused attention benchmark (issue 6) beside PyTorch SDPA, on this machine's GPU"
)]
struct Args {
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Output folder: bench_attention.jsonl, tables.md.
    #[arg(long, default_value = "runs/bench-attention")]
    out: PathBuf,
    /// Python with torch (CUDA) for the PyTorch anchor.
    #[arg(long, env = "RESEARCH_PYTHON", default_value = "python3")]
    python: String,
    /// Run `gpu-attention check` first (stops on a failure).
    #[arg(long)]
    check: bool,
    /// Skip the scalar backward's forward+backward timing (slow).
    #[arg(long)]
    no_simple_bwd: bool,
    /// Add the reference path's forward time.
    #[arg(long)]
    reference: bool,
    /// Skip the PyTorch anchor.
    #[arg(long)]
    skip_torch: bool,
}

/// Runs `cmd`, appending its stdout to `out` (its stderr shows progress).
fn run_to(cmd: &mut Command, out: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| out.display().to_string())?;
    cmd.stdout(Stdio::from(file));
    run(cmd)
}

/// `cargo xtask bench attention [--features F] -- ARGS`; `features` `cpu` (the bench default)
/// means `cuda` here.
pub fn run_bench(features: &str, args: &[String]) -> Result<()> {
    // clap prints --help (exit 0) or a usage error (exit 2) itself.
    let a = Args::try_parse_from(std::iter::once("bench attention".to_string()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| e.exit());
    let features = if features == "cpu" { "cuda" } else { features };
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "research-tests",
        "--bin",
        "gpu-attention",
        "--no-default-features",
        "--features",
        features,
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("release").join("gpu-attention");
    let out = root().join(&a.out);
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    if a.check {
        run(Command::new(&bin).arg("check"))?;
    }
    let jsonl = out.join("bench_attention.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    let mut ours = Command::new(&bin);
    ours.args(["bench", "--iters", &a.iters.to_string()]);
    if a.no_simple_bwd {
        ours.arg("--no-simple-bwd");
    }
    if a.reference {
        ours.arg("--reference");
    }
    run_to(&mut ours, &jsonl)?;
    let torch_ok = Command::new(&a.python)
        .args(["-c", "import torch; assert torch.cuda.is_available()"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if a.skip_torch {
        eprintln!("note: the PyTorch anchor is skipped (--skip-torch)");
    } else if torch_ok {
        run_to(
            Command::new(&a.python)
                .arg(root().join("tests/gpu/bench_attention_torch.py"))
                .args(["--iters", &a.iters.to_string()]),
            &jsonl,
        )?;
    } else {
        eprintln!(
            "note: {} cannot import torch with CUDA: the PyTorch anchor is skipped",
            a.python
        );
    }
    let tables = out.join("tables.md");
    let output = Command::new(&a.python)
        .arg(root().join("tests/gpu/attention_table.py"))
        .arg(&jsonl)
        .current_dir(root())
        .output()
        .with_context(|| format!("running {} tests/gpu/attention_table.py", a.python))?;
    if !output.status.success() {
        anyhow::bail!("attention_table.py failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::write(&tables, &output.stdout).with_context(|| tables.display().to_string())?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("wrote {} and {}", jsonl.display(), tables.display());
    Ok(())
}
