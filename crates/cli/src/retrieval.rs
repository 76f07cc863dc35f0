//! `research index` and `research search`: build a dense index over a FlashRAG corpus, query it.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use research::prelude::{BackendKind, FloatType};
use research::retrieval::{build_index, default_threads, BuildConfig, Hit, HnswParams, Retriever, RetrieverOptions};

/// Arguments of `research index`.
#[derive(Args)]
pub struct IndexArgs {
    /// FlashRAG corpus: jsonl of {"id","contents"} or {"id","title","text"}, plain or .zst.
    #[arg(long)]
    corpus: PathBuf,
    /// Encoder checkpoint folder (config.json, model.safetensors, tokenizer.json), e.g. e5-base-v2.
    #[arg(long)]
    encoder: PathBuf,
    /// Index folder to create; an unfinished build there is resumed (same arguments required).
    #[arg(long)]
    out: PathBuf,
    /// How HNSW stores vectors: f32, f16 or i8.
    #[arg(long, default_value = "f32")]
    quantization: String,
    /// HNSW neighbours per node (M).
    #[arg(long, default_value_t = HnswParams::default().connectivity)]
    connectivity: usize,
    /// HNSW candidate list while inserting (efConstruction).
    #[arg(long, default_value_t = HnswParams::default().expansion_add)]
    expansion_add: usize,
    /// HNSW candidate list while searching (ef); `research search` may override it.
    #[arg(long, default_value_t = HnswParams::default().expansion_search)]
    expansion_search: usize,
    /// 1: one HNSW graph; P > 1: a partition-routed index (spherical k-means centroids route each
    /// query to the best --probe partitions, each its own usearch graph); 0: from the corpus size
    /// (1 under 200,000 rows, else rows / 20,000, at most 4096). See docs/retrieval.md.
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Passages per encoder forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Passages per saved chunk (an interrupted build loses at most one chunk).
    #[arg(long, default_value_t = 4096)]
    chunk_rows: u64,
    /// Encoder family: e5, bge or minilm (default: guessed from the encoder path).
    #[arg(long)]
    family: Option<String>,
    /// Max passage tokens, special tokens included (default 180, as ReSearch).
    #[arg(long)]
    passage_max_len: Option<usize>,
    /// Threads inserting into the HNSW graph (default: all).
    #[arg(long)]
    threads: Option<usize>,
    /// Batches encoded at once (default: all cores for cpu/tch-cpu, 1 on a GPU).
    #[arg(long)]
    encode_threads: Option<usize>,
    /// Encoder backend: cpu, cuda, tch-cpu or tch-cuda (those compiled in).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Encoder compute dtype: f32, bf16 or f16 (cpu: f32 only).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Stop after saving this many chunks (build in parts; rerun to go on).
    #[arg(long)]
    max_chunks: Option<u64>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Arguments of `research search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Index folder written by `research index`.
    #[arg(long)]
    index: PathBuf,
    /// A query (repeatable).
    #[arg(long, conflicts_with = "queries", required_unless_present = "queries")]
    query: Vec<String>,
    /// A file with one query per line (empty lines skipped), answered in batches; `-` reads stdin.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Passages per query.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// Exact brute-force search over the saved vectors instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// Print one JSON line per query: {"query", "hits": [{"id", "score", "contents"}]}.
    #[arg(long)]
    json: bool,
    /// Queries per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// HNSW candidate list while searching (default: the index's).
    #[arg(long)]
    expansion_search: Option<usize>,
    /// Partitioned indexes (`research index --partitions`): partitions searched per query
    /// (default 4).
    #[arg(long)]
    probe: Option<usize>,
    /// Concurrent HNSW searches (default: all threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Encoder folder, if it moved since the build (its checksum must match).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Corpus file, if it moved since the build (its checksum must match).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Query encoder backend.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Query encoder dtype.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn dtype(s: &str) -> Result<FloatType> {
    FloatType::parse(s).map_err(|_| anyhow!("unknown dtype `{s}` (expected f32, bf16 or f16)"))
}

/// Runs `research index`.
pub fn index(a: IndexArgs) -> Result<()> {
    let kind: BackendKind = a.backend.parse()?;
    let mut config = BuildConfig::new(&a.corpus, &a.encoder, &a.out);
    config.quantization = a.quantization.parse()?;
    config.hnsw = HnswParams {
        connectivity: a.connectivity,
        expansion_add: a.expansion_add,
        expansion_search: a.expansion_search,
    };
    config.partitions = a.partitions;
    config.batch_size = a.batch_size;
    config.chunk_rows = a.chunk_rows;
    config.family = a
        .family
        .as_deref()
        .map(research::retrieval::EncoderFamily::parse)
        .transpose()?;
    config.passage_max_len = a.passage_max_len;
    config.threads = a.threads.unwrap_or_else(default_threads);
    config.encode_threads = a.encode_threads.unwrap_or(match kind {
        BackendKind::Cpu | BackendKind::TchCpu => default_threads(),
        BackendKind::Cuda | BackendKind::TchCuda => 1,
    });
    config.dtype = dtype(&a.dtype)?;
    config.progress = !a.quiet;
    config.max_chunks = a.max_chunks;
    let report = build_index(kind, &config)?;
    println!("{}", serde_json::to_string(&report)?);
    if !report.complete {
        eprintln!(
            "index unfinished ({} of {} rows); rerun the same command to go on",
            report.rows_done, report.rows
        );
    }
    Ok(())
}

/// Runs `research search`.
pub fn search(a: SearchArgs) -> Result<()> {
    let options = RetrieverOptions {
        backend: a.backend.parse()?,
        dtype: dtype(&a.dtype)?,
        encoder: a.encoder.clone(),
        corpus: a.corpus.clone(),
        expansion_search: a.expansion_search,
        probe: a.probe,
        threads: a.threads.unwrap_or_else(default_threads),
        query_batch_size: a.batch_size.max(1),
        view: true,
    };
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let retriever = Retriever::open(&a.index, &options)?;
    let answer = |batch: &[String]| -> Result<()> {
        let hits = if a.exact {
            retriever.search_exact(batch, a.k)?
        } else {
            retriever.search(batch, a.k)?
        };
        for (q, hits) in batch.iter().zip(hits) {
            print_hits(q, &hits, a.json);
        }
        Ok(())
    };
    match &a.queries {
        None => answer(&a.query),
        Some(path) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
                Box::new(std::io::BufReader::new(f))
            };
            let mut batch = Vec::with_capacity(a.batch_size);
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
                let q = line.trim();
                if q.is_empty() {
                    continue;
                }
                batch.push(q.to_string());
                if batch.len() == a.batch_size {
                    answer(&batch)?;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                answer(&batch)?;
            }
            Ok(())
        }
    }
}

fn print_hits(query: &str, hits: &[Hit], json: bool) {
    if json {
        let hits: Vec<_> = hits
            .iter()
            .map(|h| serde_json::json!({"id": h.id, "score": h.score, "contents": h.contents}))
            .collect();
        println!("{}", serde_json::json!({"query": query, "hits": hits}));
        return;
    }
    println!("query: {query}");
    for (i, h) in hits.iter().enumerate() {
        let mut lines = h.contents.lines();
        let title = lines.next().unwrap_or("");
        let text: String = lines.collect::<Vec<_>>().join(" ");
        let preview: String = text.chars().take(100).collect();
        println!("  {:>2}. {:.4}  [{}] {title}: {preview}…", i + 1, h.score, h.id);
    }
}
