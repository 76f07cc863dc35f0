//! `cargo xtask`: project automation for research-rs.
//!
//! - `cargo xtask test`: formatting check, clippy with warnings as errors, and every test of the
//!   workspace on the CPU (what CI runs).
//! - `cargo xtask bench generate [--features cuda] -- --config CONFIG --backend cuda ...`: the
//!   generation benchmark from a release build (`research bench generate --help` lists its flags);
//!   `cargo xtask bench rollout -- --config CONFIG --index DIR ...` likewise for the ReSearch
//!   rollout benchmark (`research bench rollout --help`).
//! - `cargo xtask bench retriever -- [--n 20000] ...`: the retriever benchmarks end to end here
//!   (synthetic vectors, usearch beside faiss-cpu, encoder beside PyTorch, markdown tables; see
//!   `bench_retriever.rs`); `tests/gpu/bench_retriever.sh` is the GPU machine's run.
//! - `cargo xtask bench attention -- [--iters 20] [--check]`: the fused attention kernels (issue 6)
//!   beside PyTorch SDPA's flash and cuDNN backends, on a machine with a GPU and cargo
//!   (`bench_attention.rs`); on the GPU machine `tests/gpu/suite.sh` runs the staged binary.
//! - `cargo xtask rollout-index`: the small index `research bench rollout` runs against on the GPU
//!   machine (a random 32-wide BERT over the shipped 1,000-passage corpus) in `stage/rollout-index`.
//! - `cargo xtask train`: the `tiny` training demo end to end on the CPU (see `train.rs`); with
//!   arguments after `--`, any `research train` run from a release build.
//! - `cargo xtask stage-gpu [--features cuda,tch]`: builds the release `research` binary (stripped by
//!   the release profile) and puts it in `stage/bin`, the git-ignored folder a device run carries;
//!   `tests/gpu/suite.sh` then runs parity and benchmarks there. With `tch`, set `LIBTORCH` and
//!   `LIBTORCH_CXX11_ABI=1` first (see README).

mod bench_attention;
mod bench_retriever;
mod train;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "research-rs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// fmt --check, clippy -D warnings, and all CPU tests of the workspace.
    Test {
        /// Skip the fmt and clippy checks.
        #[arg(long)]
        no_lint: bool,
    },
    /// Benchmarks: `generate`, `rollout` or `train` runs `research bench <what>` from a release
    /// build on this machine (on the GPU machine, where there is no cargo, run the staged binary:
    /// see tests/gpu/suite.sh).
    Bench {
        /// What to benchmark: `generate`, `rollout` or `train`; or `retriever` (the retriever's
        /// benchmarks end to end: `cargo xtask bench retriever -- --help`); or `attention` (the
        /// fused attention kernels beside PyTorch SDPA on this machine's GPU, `cuda` build:
        /// `cargo xtask bench attention -- --help`).
        what: String,
        /// Cargo features of the build (e.g. `cuda`, `tch`).
        #[arg(long, default_value = "cpu")]
        features: String,
        /// Arguments passed to `research bench <what>` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Training. Without arguments: the `tiny` demo end to end on the CPU (release build, shipped
    /// data prepared, a small index, `research train --preset tiny`). With arguments after `--`,
    /// they go to `research train` as they are (e.g. `-- --preset qwen2.5-7b-instruct --index DIR`).
    Train {
        /// Cargo features of the build (e.g. `cuda`, `tch`).
        #[arg(long, default_value = "cpu")]
        features: String,
        /// Where the demo writes (data, encoder, index, run).
        #[arg(long, default_value = "runs/tiny")]
        dir: PathBuf,
        /// Arguments for `research train` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Write the index `research bench rollout` uses on the GPU machine: a random BERT (MiniLM's
    /// tokenizer, 2 layers, width 32; retrieval is arbitrary, its cost is small) and a `research
    /// index` over data/corpus/flashrag_sample_data_1000.jsonl.zst, in <dir>/encoder and
    /// <dir>/index (the decompressed corpus copy is removed; the index re-creates it when opened).
    RolloutIndex {
        /// Output folder (git-ignored under stage/, so a device run can carry it).
        #[arg(long, default_value = "stage/rollout-index")]
        dir: PathBuf,
        /// The `research` binary to run (default: a release build of research-cli with `cpu`).
        #[arg(long)]
        research: Option<PathBuf>,
    },
    /// Build the CUDA release binary and stage it with the GPU suite in stage/.
    StageGpu {
        /// Cargo features for the staged binary.
        #[arg(long, default_value = "cuda")]
        features: String,
    },
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The binaries `stage-gpu` builds and packs, by package.
const GPU_BINARIES: [(&str, &str); 5] = [
    ("research-cli", "research"),
    ("research-tests", "gpu-parity"),
    ("research-tests", "gpu-gemm"),
    ("research-tests", "gpu-attention"),
    ("research-tests", "gpu-optim"),
];

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Test { no_lint } => {
            if !no_lint {
                run(cargo().args(["fmt", "--all", "--", "--check"]))?;
                run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
            }
            run(cargo().args(["test", "--workspace"]))?;
        }
        Cmd::Bench { what, features, args } if what == "retriever" => bench_retriever::run_bench(&features, &args)?,
        Cmd::Bench { what, features, args } if what == "attention" => bench_attention::run_bench(&features, &args)?,
        Cmd::Bench { what, features, args } => {
            if !["generate", "rollout", "train"].contains(&what.as_str()) {
                bail!("unknown benchmark `{what}` (available: generate, rollout, train, retriever, attention)");
            }
            let mut cmd = cargo();
            cmd.args([
                "run",
                "--release",
                "-p",
                "research-cli",
                "--no-default-features",
                "--features",
                &features,
            ]);
            cmd.args(["--", "bench", &what]).args(&args);
            run(&mut cmd)?;
        }
        Cmd::Train { features, dir, args } => train::train(&features, &dir, &args)?,
        Cmd::RolloutIndex { dir, research } => train::rollout_index(&dir, research)?,
        Cmd::StageGpu { features } => {
            for (pkg, bin) in GPU_BINARIES {
                let args = [
                    "build",
                    "--release",
                    "-p",
                    pkg,
                    "--bin",
                    bin,
                    "--no-default-features",
                    "--features",
                ];
                run(cargo().args(args).arg(&features))?;
            }
            let stage = root().join("stage");
            let packed = stage.join("xz");
            std::fs::create_dir_all(&packed)?;
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            // A device call carries at most 64 MiB with the tree: the binaries travel
            // xz-compressed (about a fifth of their size) and tests/gpu/suite.sh unpacks them into
            // stage/bin with Python's lzma (no xz there is assumed).
            let _ = std::fs::remove_dir_all(stage.join("bin"));
            for (_, bin) in GPU_BINARIES {
                let built = target.join("release").join(bin);
                let out = packed.join(format!("{bin}.xz"));
                let tmp = packed.join(bin);
                std::fs::copy(&built, &tmp).with_context(|| built.display().to_string())?;
                run(Command::new("strip").arg(&tmp))?;
                let _ = std::fs::remove_file(&out);
                run(Command::new("xz").args(["-6", "-T2"]).arg(&tmp))?;
            }
            eprintln!(
                "staged {}: carry `stage` and run `bash tests/gpu/suite.sh` on the GPU machine",
                stage.display()
            );
        }
    }
    Ok(())
}
