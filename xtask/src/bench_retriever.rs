//! `cargo xtask bench retriever -- [--n 20000] ...`: the retriever benchmarks of issue 3 run here, in
//! order, from a release build: clustered synthetic vectors with exact ground truth
//! (`tests/gpu/gen_search_vectors.py`), `research bench search` (usearch f32/f16/i8), the faiss-cpu
//! anchor (`tests/gpu/bench_search_faiss.py`, skipped with a note when faiss is not importable),
//! `research bench encoder` and its PyTorch anchor (`tests/gpu/bench_encoder_torch.py`), then the
//! markdown tables (`tests/gpu/retriever_table.py`). The GPU machine has no cargo: there
//! `tests/gpu/bench_retriever.sh` runs the same steps from the staged binary at n = 1,000,000.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::{cargo, root, run};

/// Arguments after `cargo xtask bench retriever --`.
#[derive(Parser)]
#[command(
    name = "cargo xtask bench retriever --",
    about = "Retriever benchmarks (issue 3), end to end"
)]
struct Args {
    /// Base vectors (a quick local check: 20000; the GPU machine's run: 1000000).
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Held-out queries.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Vector width.
    #[arg(long, default_value_t = 768)]
    dims: usize,
    /// Output folder: vectors/, search.jsonl, encoder.jsonl, tables.md.
    #[arg(long, default_value = "runs/bench-retriever")]
    out: PathBuf,
    /// Python with numpy (and faiss-cpu, torch + transformers for the anchors).
    #[arg(long, env = "RESEARCH_PYTHON", default_value = "python3")]
    python: String,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    connectivity: usize,
    /// HNSW efConstruction.
    #[arg(long, default_value_t = 64)]
    expansion_add: usize,
    /// HNSW efSearch values, comma-separated.
    #[arg(long, default_value = "16,32,64,128")]
    expansion_search: String,
    /// Threads for building and searching (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Storages for ours, comma-separated (`research bench search --help`).
    #[arg(long, default_value = "f32,f16,i8,i8-maxabs")]
    quantization: String,
    /// Encoder backend for ours (cpu here; cuda on the GPU machine).
    #[arg(long, default_value = "cpu")]
    encoder_backend: String,
    /// Encoder dtype for ours and the anchor.
    #[arg(long, default_value = "f32")]
    encoder_dtype: String,
    /// Passages per encoder batch (the figure is 512, on a GPU).
    #[arg(long, default_value_t = 4)]
    encoder_batch: usize,
    /// Tokens per passage.
    #[arg(long, default_value_t = 180)]
    encoder_tokens: usize,
    /// Timed encoder batches.
    #[arg(long, default_value_t = 1)]
    encoder_iters: usize,
    /// Untimed encoder batches first.
    #[arg(long, default_value_t = 1)]
    encoder_warmup: usize,
    /// Device of the PyTorch anchor (cpu here; cuda on the GPU machine).
    #[arg(long, default_value = "cpu")]
    torch_device: String,
    /// Skip the encoder benchmarks.
    #[arg(long)]
    skip_encoder: bool,
    /// Skip the search benchmarks.
    #[arg(long)]
    skip_search: bool,
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

fn python_has(python: &str, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo xtask bench retriever -- ARGS`.
pub fn run_bench(features: &str, args: &[String]) -> Result<()> {
    // clap prints --help (exit 0) or a usage error (exit 2) itself.
    let a = Args::try_parse_from(std::iter::once("bench retriever".to_string()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| e.exit());
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "research-cli",
        "--no-default-features",
        "--features",
        features,
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let research = target.join("release").join("research");
    let out = root().join(&a.out);
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    if !python_has(&a.python, "numpy") {
        bail!(
            "{} cannot import numpy (give another with --python or RESEARCH_PYTHON)",
            a.python
        );
    }
    let script = |name: &str| root().join("tests/gpu").join(name);
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut produced = vec![];

    if !a.skip_search {
        let data = out.join("vectors");
        run(Command::new(&a.python)
            .arg(script("gen_search_vectors.py"))
            .args(["--n", &a.n.to_string(), "--queries", &a.queries.to_string()])
            .args(["--dims", &a.dims.to_string(), "--out"])
            .arg(&data))?;
        let files = |cmd: &mut Command| {
            cmd.arg("--vectors")
                .arg(data.join("base.f32"))
                .arg("--queries")
                .arg(data.join("queries.f32"))
                .arg("--truth")
                .arg(data.join("truth.u32"))
                .args(["--dims", &a.dims.to_string()])
                .args(["--connectivity", &a.connectivity.to_string()])
                .args(["--expansion-add", &a.expansion_add.to_string()])
                .args(["--expansion-search", &a.expansion_search])
                .args(["--threads", &threads.to_string()]);
        };
        let jsonl = out.join("search.jsonl");
        let _ = std::fs::remove_file(&jsonl);
        let mut ours = Command::new(&research);
        ours.args(["bench", "search", "--quantization", &a.quantization]);
        files(&mut ours);
        run_to(&mut ours, &jsonl)?;
        if python_has(&a.python, "faiss") {
            let mut faiss = Command::new(&a.python);
            faiss.arg(script("bench_search_faiss.py"));
            files(&mut faiss);
            run_to(&mut faiss, &jsonl)?;
        } else {
            eprintln!(
                "note: {} cannot import faiss: the faiss-cpu anchor is skipped",
                a.python
            );
        }
        produced.push(jsonl);
    }

    if !a.skip_encoder {
        let jsonl = out.join("encoder.jsonl");
        let _ = std::fs::remove_file(&jsonl);
        let common = [
            "--batch".to_string(),
            a.encoder_batch.to_string(),
            "--tokens".to_string(),
            a.encoder_tokens.to_string(),
            "--warmup".to_string(),
            a.encoder_warmup.to_string(),
            "--iters".to_string(),
            a.encoder_iters.to_string(),
            "--dtype".to_string(),
            a.encoder_dtype.clone(),
        ];
        run_to(
            Command::new(&research)
                .args(["bench", "encoder", "--family", "e5", "--backend", &a.encoder_backend])
                .args(&common),
            &jsonl,
        )?;
        if python_has(&a.python, "transformers") {
            run_to(
                Command::new(&a.python)
                    .arg(script("bench_encoder_torch.py"))
                    .args(["--device", &a.torch_device])
                    .args(&common),
                &jsonl,
            )?;
        } else {
            eprintln!(
                "note: {} cannot import transformers: the PyTorch anchor is skipped",
                a.python
            );
        }
        produced.push(jsonl);
    }

    if !produced.is_empty() {
        let tables = out.join("tables.md");
        let _ = std::fs::remove_file(&tables);
        run_to(
            Command::new(&a.python)
                .arg(script("retriever_table.py"))
                .args(&produced),
            &tables,
        )?;
        print!("{}", std::fs::read_to_string(&tables).unwrap_or_default());
        eprintln!("tables: {}", tables.display());
    }
    Ok(())
}
