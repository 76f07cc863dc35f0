//! `cargo xtask train`: the `tiny` preset end to end on a fresh machine.
//!
//! 1. `cargo build -p research-cli`: for the demo with the default `--features cpu`, the quick build
//!    (`--profile demo --features cpu-demo`: no usearch SIMD kernels, whose C compile alone took
//!    about 4 minutes of one core, and opt-level 1 outside burn-ndarray's numerics), in
//!    `target/demo`; otherwise `--release` with `--features` as given;
//! 2. `research data prepare-musique`: the shipped MuSiQue as ReSearch's training parquet;
//! 3. an encoder: the real MiniLM when its weights are found (`$RESEARCH_MINILM_DIR`,
//!    `../shared/data/minilm`), else a small randomly initialised BERT with MiniLM's tokenizer
//!    (the repository ships no encoder weights; retrieval is then arbitrary but exercises the path);
//! 4. `research index` over the shipped 1,000-passage FlashRAG sample corpus (resumes if present);
//! 5. `research train --preset tiny --index ...` into a new run folder, which prints where the
//!    metrics, the chart and the checkpoint are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, root, run};

/// Builds `research` in `profile` (`release`, or `demo`: see the workspace Cargo.toml) with `features`.
fn research_in(profile: &str, features: &str) -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--profile",
        profile,
        "-p",
        "research-cli",
        "--bin",
        "research",
        "--no-default-features",
        "--features",
        features,
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join(profile).join("research"))
}

fn research(features: &str) -> Result<PathBuf> {
    research_in("release", features)
}

/// The demo's build: the quick `demo` profile and `cpu-demo` features for the default `cpu`, a
/// release build otherwise (e.g. `--features cuda`).
fn research_demo(features: &str) -> Result<PathBuf> {
    if features == "cpu" {
        eprintln!(
            "building the demo binary (profile `demo`, features `cpu-demo`: no usearch SIMD kernels, \
             opt-level 1 outside the CPU numerics)"
        );
        research_in("demo", "cpu-demo")
    } else {
        research(features)
    }
}

/// A deterministic stream of N(0, 0.02)-ish values (sum of uniforms), no dependencies.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        let mut s = 0.0f32;
        for _ in 0..4 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s += (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        s * 0.02 * 1.732
    }
}

/// Writes a small random BERT (MiniLM's tokenizer, 2 layers, width `hid`, 4 heads, MLP `2 × hid`)
/// into `dir`.
fn random_encoder(dir: &Path, hid: usize) -> Result<()> {
    let src = root().join("data/minilm");
    std::fs::create_dir_all(dir)?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dir.join(f))?;
        }
    }
    let (vocab, inter, layers, heads, max_pos, types) = (30522usize, 2 * hid, 2usize, 4usize, 512usize, 2usize);
    let config = format!(
        r#"{{"architectures":["BertModel"],"model_type":"bert","hidden_act":"gelu","hidden_size":{hid},"intermediate_size":{inter},"num_hidden_layers":{layers},"num_attention_heads":{heads},"max_position_embeddings":{max_pos},"type_vocab_size":{types},"vocab_size":{vocab},"layer_norm_eps":1e-12,"pad_token_id":0,"position_embedding_type":"absolute","_comment":"random initialisation written by cargo xtask train (no encoder weights are shipped)"}}"#
    );
    std::fs::write(dir.join("config.json"), config)?;
    let mut rng = Lcg(0x5eed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut mat = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        let v = (0..n).map(|_| rng.next()).collect();
        (name, shape, v)
    };
    tensors.push(mat("embeddings.word_embeddings.weight".into(), vec![vocab, hid]));
    tensors.push(mat("embeddings.position_embeddings.weight".into(), vec![max_pos, hid]));
    tensors.push(mat("embeddings.token_type_embeddings.weight".into(), vec![types, hid]));
    let mut rest = Vec::new();
    let norm = |p: &str, out: &mut Vec<(String, Vec<usize>, Vec<f32>)>| {
        out.push((format!("{p}.weight"), vec![hid], vec![1.0; hid]));
        out.push((format!("{p}.bias"), vec![hid], vec![0.0; hid]));
    };
    norm("embeddings.LayerNorm", &mut rest);
    for i in 0..layers {
        let l = format!("encoder.layer.{i}");
        for (name, o, inp) in [
            ("attention.self.query", hid, hid),
            ("attention.self.key", hid, hid),
            ("attention.self.value", hid, hid),
            ("attention.output.dense", hid, hid),
            ("intermediate.dense", inter, hid),
            ("output.dense", hid, inter),
        ] {
            tensors.push(mat(format!("{l}.{name}.weight"), vec![o, inp]));
            rest.push((format!("{l}.{name}.bias"), vec![o], vec![0.0; o]));
        }
        norm(&format!("{l}.attention.output.LayerNorm"), &mut rest);
        norm(&format!("{l}.output.LayerNorm"), &mut rest);
    }
    tensors.extend(rest);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors"))?;
    Ok(())
}

fn encoder(dir: &Path) -> Result<PathBuf> {
    let candidates = std::env::var_os("RESEARCH_MINILM_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([root().join("../shared/data/minilm")]);
    for c in candidates {
        if c.join("model.safetensors").exists() {
            eprintln!("encoder: MiniLM weights from {}", c.display());
            return Ok(c);
        }
    }
    let enc = dir.join("random-encoder");
    if !enc.join("model.safetensors").exists() {
        random_encoder(&enc, 128).context("writing the random encoder")?;
    }
    eprintln!(
        "encoder: no MiniLM weights found (set RESEARCH_MINILM_DIR); using a random 2-layer BERT at {} —\n  \
         retrieval is arbitrary, the demo shows the machinery",
        enc.display()
    );
    Ok(enc)
}

/// Runs the demo (no `args`) or `research train ARGS`.
pub fn train(features: &str, dir: &Path, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        let bin = research(features)?;
        return crate::run(Command::new(&bin).arg("train").args(args));
    }
    let mut clock = Phases::default();
    let bin = research_demo(features)?;
    clock.end("build");
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        root().join(dir)
    };
    std::fs::create_dir_all(&dir)?;
    crate::run(
        Command::new(&bin)
            .args(["data", "prepare-musique", "--input", "data/eval/musique", "--out"])
            .arg(dir.join("data")),
    )?;
    clock.end("prepare data");
    let enc = encoder(&dir)?;
    let index = dir.join("index");
    crate::run(
        Command::new(&bin)
            .args([
                "index",
                "--corpus",
                "data/corpus/flashrag_sample_data_1000.jsonl.zst",
                "--encoder",
            ])
            .arg(&enc)
            .arg("--out")
            .arg(&index),
    )?;
    clock.end("index");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = dir.join(format!("run-{stamp}"));
    crate::run(
        Command::new(&bin)
            .args(["train", "--preset", "tiny", "--index"])
            .arg(&index)
            .arg("--out")
            .arg(&out),
    )?;
    clock.end("train");
    eprintln!("cargo xtask train: {}", clock.summary());
    Ok(())
}

/// Wall time per phase of the demo, printed at the end.
struct Phases {
    last: std::time::Instant,
    start: std::time::Instant,
    done: Vec<(&'static str, f64)>,
}

impl Default for Phases {
    fn default() -> Self {
        let now = std::time::Instant::now();
        Self {
            last: now,
            start: now,
            done: Vec::new(),
        }
    }
}

impl Phases {
    fn end(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self.done.iter().map(|(n, s)| format!("{n} {s:.0} s")).collect();
        format!(
            "{:.0} s in all ({})",
            self.start.elapsed().as_secs_f64(),
            parts.join(", ")
        )
    }
}

/// `cargo xtask rollout-index`: a random 32-wide encoder in `<dir>/encoder` and `research index`
/// over the shipped 1,000-passage corpus in `<dir>/index`, small enough to carry to the GPU machine.
pub fn rollout_index(dir: &Path, research_bin: Option<PathBuf>) -> Result<()> {
    let bin = match research_bin {
        Some(b) => b,
        None => research("cpu")?,
    };
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        root().join(dir)
    };
    let enc = dir.join("encoder");
    if !enc.join("model.safetensors").exists() {
        random_encoder(&enc, 32).context("writing the random encoder")?;
    }
    let index = dir.join("index");
    crate::run(
        Command::new(&bin)
            .args([
                "index",
                "--corpus",
                "data/corpus/flashrag_sample_data_1000.jsonl.zst",
                "--quiet",
                "--encoder",
            ])
            .arg(&enc)
            .arg("--out")
            .arg(&index),
    )?;
    // The decompressed corpus beside the index is a cache: a device run re-creates it from the
    // repository's .zst (whose timestamp differs there anyway), so it is not carried.
    for cache in ["corpus.jsonl", "corpus.offsets"] {
        let p = index.join(cache);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| p.display().to_string())?;
        }
    }
    let size: u64 = [&enc, &index]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "rollout index ready: {} ({:.1} MiB). On the GPU machine (repo root), pass\n  \
         --index {rel}/index --index-encoder {rel}/encoder \\\n  \
         --index-corpus data/corpus/flashrag_sample_data_1000.jsonl.zst",
        dir.display(),
        size as f64 / (1 << 20) as f64,
        rel = dir.strip_prefix(root()).unwrap_or(&dir).display()
    );
    Ok(())
}
