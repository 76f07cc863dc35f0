//! `research bench encoder` and `research bench search`: the retriever's benchmarks (issue 3).
//! Each prints JSON lines (one per measurement) on stdout; `tests/gpu/retriever_table.py` turns
//! them, with the PyTorch and faiss anchors' lines, into the tables of `docs/benchmarks.md`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use research::burn::tensor::backend::Backend;
use research::prelude::{dispatch, BackendKind, FloatType, WithBackend};
use research::retrieval::bench::{
    build_graph, encoder_throughput, measure_search, save_and_view, BertConfig, Feed, Pooling, RawVectors, Rss, Truth,
};
use research::retrieval::{default_threads, EncoderFamily, HnswParams, Quantization};

/// Arguments of `research bench encoder`.
#[derive(Args)]
pub struct EncoderArgs {
    /// Encoder family, for the shape and pooling: e5 (BERT-base, mean), bge (BERT-base, [CLS]) or
    /// minilm (all-MiniLM-L6-v2, mean).
    #[arg(long, default_value = "e5")]
    family: String,
    /// A BERT config.json giving another shape (the family still picks the pooling).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Backend: cpu, cuda, tch-cpu or tch-cuda (those compiled in).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype: f32, bf16 or f16 (cpu: f32 only).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Passages per forward pass.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Tokens per passage, [CLS] and [SEP] included (all real: no padding).
    #[arg(long, default_value_t = 180)]
    tokens: usize,
    /// Untimed passes first (kernel compilation and autotuning happen here).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed passes.
    #[arg(long, default_value_t = 10)]
    iters: usize,
}

/// Arguments of `research bench search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Base vectors: raw little-endian f32, --dims per row (row number = key).
    #[arg(long)]
    vectors: PathBuf,
    /// Query vectors, same format.
    #[arg(long)]
    queries: PathBuf,
    /// Exact top-k row ids per query: raw little-endian u32, k per query, best first.
    #[arg(long)]
    truth: PathBuf,
    /// Vector width.
    #[arg(long, default_value_t = 768)]
    dims: usize,
    /// Storages to build, comma-separated: f32, f16, i8 (usearch converts the f32 vectors, as
    /// `research index` does), i8-maxabs (i8 quantized here, each vector scaled to use ±127).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,i8")]
    quantization: Vec<String>,
    /// HNSW neighbours per node (M).
    #[arg(long, default_value_t = 16)]
    connectivity: usize,
    /// HNSW candidate list while inserting (efConstruction).
    #[arg(long, default_value_t = 128)]
    expansion_add: usize,
    /// HNSW candidate lists while searching (ef), comma-separated: one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    expansion_search: Vec<usize>,
    /// Threads inserting, and threads sharing the query set (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Results per query (recall@k); at most the ground truth's ids per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Time the query set for at least this many seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
    /// Also save each index as DIR/hnsw-<quantization>.usearch, open it again as a memory-mapped
    /// view (timed) and measure the view (lines with "index": "hnsw-<quantization>-view").
    #[arg(long)]
    save: Option<PathBuf>,
}

struct EncoderJob(EncoderArgs, FloatType, BertConfig, Pooling);

impl WithBackend for EncoderJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let EncoderJob(a, dtype, config, pooling) = self;
        let r = encoder_throughput::<B>(&config, dtype, pooling, a.batch, a.tokens, a.warmup, a.iters, &device)?;
        let mut v = serde_json::to_value(&r)?;
        v["bench"] = "encoder".into();
        v["system"] = "research-rs".into();
        v["family"] = a.family.clone().into();
        v["backend"] = a.backend.clone().into();
        v["dtype"] = a.dtype.clone().into();
        v["layers"] = config.num_hidden_layers.into();
        v["hidden"] = config.hidden_size.into();
        println!("{v}");
        Ok(())
    }
}

/// `research bench encoder`.
pub fn encoder(a: EncoderArgs) -> Result<()> {
    let kind: BackendKind = a.backend.parse()?;
    let dtype =
        FloatType::parse(&a.dtype).map_err(|_| anyhow::anyhow!("--dtype `{}`: expected f32, bf16 or f16", a.dtype))?;
    let family = EncoderFamily::parse(&a.family)?;
    let config = match &a.config {
        Some(path) => BertConfig::from_file(path)?,
        None => match family {
            EncoderFamily::E5 | EncoderFamily::Bge => BertConfig::bert_base(),
            EncoderFamily::SentenceTransformers => BertConfig::minilm_l6(),
        },
    };
    let pooling = match family {
        EncoderFamily::Bge => Pooling::Cls,
        EncoderFamily::E5 | EncoderFamily::SentenceTransformers => Pooling::Mean,
    };
    dispatch(kind, dtype, EncoderJob(a, dtype, config, pooling))?
}

/// `research bench search`.
pub fn search(a: SearchArgs) -> Result<()> {
    let quantizations = a
        .quantization
        .iter()
        .map(|q| match q.as_str() {
            "i8-maxabs" => Ok((Quantization::I8, Feed::I8MaxAbs)),
            other => other.parse::<Quantization>().map(|q| (q, Feed::F32)),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if a.expansion_search.is_empty() || a.expansion_search.contains(&0) {
        bail!("--expansion-search: expected positive numbers, e.g. 32,64,128");
    }
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let vectors = RawVectors::open(&a.vectors, a.dims)?;
    let queries = RawVectors::open(&a.queries, a.dims)?;
    let truth = Truth::read(&a.truth, queries.rows(), vectors.rows())?;
    if a.k == 0 || a.k > truth.k {
        bail!(
            "-k {}: expected 1 to {} ({} holds {} ids per query)",
            a.k,
            truth.k,
            a.truth.display(),
            truth.k
        );
    }
    eprintln!(
        "bench search: {} vectors × {} dims, {} queries, truth top-{}, {threads} threads",
        vectors.rows(),
        a.dims,
        queries.rows(),
        truth.k
    );
    for (q, feed) in quantizations {
        let name = match feed {
            Feed::F32 => format!("hnsw-{q}"),
            Feed::I8MaxAbs => format!("hnsw-{q}-maxabs"),
        };
        let hnsw = HnswParams {
            connectivity: a.connectivity,
            expansion_add: a.expansion_add,
            expansion_search: a.expansion_search[0],
        };
        let (index, built) = build_graph(&vectors, q, feed, &hnsw, threads, threads, true)
            .with_context(|| format!("building {name}"))?;
        eprintln!(
            "  {name}: built in {:.1} s, {:.0} bytes/vector",
            built.build_s, built.bytes_per_vector
        );
        for &ef in &a.expansion_search {
            let r = measure_search(&index, feed, &queries, &truth, a.k, ef, threads, a.min_seconds)?;
            eprintln!(
                "  {name} ef {ef}: {:.0} QPS, recall@{} {:.4}, p50 {:.3} ms",
                r.qps, a.k, r.recall, r.latency_p50_ms
            );
            let mut v = serde_json::to_value(&built)?;
            let s = serde_json::to_value(&r)?;
            for (key, val) in s.as_object().expect("an object") {
                v[key] = val.clone();
            }
            v["bench"] = "search".into();
            v["system"] = "usearch".into();
            v["index"] = name.clone().into();
            println!("{v}");
        }
        let Some(dir) = &a.save else {
            continue;
        };
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        let file = dir.join(format!("{name}.usearch"));
        let (view, opened) = save_and_view(index, &file, q, &hnsw, threads)?;
        eprintln!(
            "  {name}: saved in {:.1} s ({:.2} GB), opened as a view in {:.2} s",
            opened.save_s,
            opened.file_bytes as f64 / 1e9,
            opened.open_s
        );
        for &ef in &a.expansion_search {
            let r = measure_search(&view, feed, &queries, &truth, a.k, ef, threads, a.min_seconds)?;
            eprintln!(
                "  {name} view ef {ef}: {:.0} QPS, recall@{} {:.4}, p50 {:.3} ms",
                r.qps, a.k, r.recall, r.latency_p50_ms
            );
            let mut v = serde_json::to_value(&built)?;
            for part in [serde_json::to_value(&r)?, serde_json::to_value(&opened)?] {
                for (key, val) in part.as_object().expect("an object") {
                    v[key] = val.clone();
                }
            }
            v["bench"] = "search".into();
            v["system"] = "usearch".into();
            v["index"] = format!("{name}-view").into();
            println!("{v}");
        }
    }
    let rss = Rss::now();
    eprintln!("  peak RSS {:.2} GB", rss.peak_rss_bytes.unwrap_or(0) as f64 / 1e9);
    Ok(())
}
