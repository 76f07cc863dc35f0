//! `cargo xtask`: project automation for research-rs.
//!
//! - `cargo xtask test`: formatting check, clippy with warnings as errors, and every test of the
//!   workspace on the CPU (what CI runs).
//! - `cargo xtask stage-gpu`: builds the release `research` binary with `--features cuda`, strips it
//!   and puts it with the GPU scripts and fixtures in `stage/`, the folder a device run carries.

use std::path::{Path, PathBuf};
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
    /// Build the CUDA release binary and stage it with the GPU suite in stage/.
    StageGpu {
        /// Cargo features for the staged binary.
        #[arg(long, default_value = "cuda")]
        features: String,
    },
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
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

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src).with_context(|| src.display().to_string())? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
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
        Cmd::StageGpu { features } => {
            run(cargo().args([
                "build",
                "--release",
                "-p",
                "research-cli",
                "--no-default-features",
                "--features",
                &features,
            ]))?;
            let stage = root().join("stage");
            std::fs::create_dir_all(stage.join("bin"))?;
            std::fs::copy(root().join("target/release/research"), stage.join("bin/research"))?;
            copy_tree(&root().join("tests/fixtures/qwen2"), &stage.join("fixtures/qwen2"))?;
            eprintln!("staged {} (carry `stage` in the device run)", stage.display());
        }
    }
    Ok(())
}
