//! `research bench encoder`, `research bench search` and `research bench search-scale`: the
//! retriever's benchmarks (issue 3).
//! Each prints JSON lines (one per measurement) on stdout; `tests/gpu/retriever_table.py` turns
//! them, with the PyTorch and faiss anchors' lines, into the tables of `docs/benchmarks.md`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use research::burn::tensor::backend::Backend;
use research::prelude::{dispatch, BackendKind, FloatType, WithBackend};
use research::retrieval::bench::scale::{
    self, build_scale, measure_scale, read_state, ScaleBuild, ScaleMeasure, ScaleParams,
};
use research::retrieval::bench::synthetic::default_centres;
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

/// Which part of `research bench search-scale` to run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalePhase {
    /// Build (or resume) within the budget; when complete, measure in a fresh process.
    All,
    /// Only build (or resume).
    Build,
    /// Only measure a complete build (the process `all` starts).
    Measure,
}

/// Arguments of `research bench search-scale`.
#[derive(Args)]
pub struct SearchScaleArgs {
    /// Folder of the build: index.usearch (or, partitioned, centroids.f32, assign.u32 and
    /// part-NNNNN.usearch), scale.json (the state), truth-q<Q>-k10.u32 (exact top-10 cache).
    /// Rerun the same command to resume an unfinished build.
    #[arg(long)]
    dir: PathBuf,
    /// Base vectors (wiki-18 has 21,015,324 passages).
    #[arg(long, default_value_t = 21_015_324)]
    n: u64,
    /// Vector width.
    #[arg(long, default_value_t = 768)]
    dims: usize,
    /// Storage: i8 (quantized by us, max-abs, as `research index` does), f16 or f32 (usearch
    /// converts the f32 vectors).
    #[arg(long, default_value = "i8")]
    quantization: String,
    /// HNSW neighbours per node (M).
    #[arg(long, default_value_t = 16)]
    connectivity: usize,
    /// HNSW candidate list while inserting (efConstruction).
    #[arg(long, default_value_t = 64)]
    expansion_add: usize,
    /// efSearch values to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    ef: Vec<usize>,
    /// Held-out queries (exact top-10 by brute force over the regenerated base).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Clusters of the synthetic distribution (0: n / 256 between 16 and 8192, as
    /// tests/gpu/gen_search_vectors.py).
    #[arg(long, default_value_t = 0)]
    centres: usize,
    /// Noise norm relative to the unit centre (0.75: cosine 0.8 with the centre).
    #[arg(long, default_value_t = 0.75)]
    noise: f32,
    /// Seed of the synthetic vectors.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Partitions: 1 builds one HNSW index; P > 1 a partition-routed index (spherical k-means
    /// centroids, one usearch HNSW per partition; files centroids.f32, assign.u32,
    /// part-NNNNN.usearch); 0 picks from n (1 under 200,000 rows, else n / 20,000, at most 4096).
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Partitioned index: partitions searched per query, comma-separated (one measurement per
    /// value and efSearch).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    probe: Vec<usize>,
    /// Threads inserting, brute-forcing and sharing the query set (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Rows per chunk; the budget is checked between chunks.
    #[arg(long, default_value_t = 262_144)]
    chunk_rows: u64,
    /// Seconds this call may build for, saving included; then it saves, prints that it must be
    /// rerun and exits with status 75.
    #[arg(long, default_value_t = 540.0)]
    budget_s: f64,
    /// Also save every this many seconds while building (a killed call loses at most that much).
    #[arg(long)]
    checkpoint_s: Option<f64>,
    /// With --phase all: measure right after the build only if at least this many seconds of the
    /// budget are left (otherwise exit 75: rerun to measure).
    #[arg(long, default_value_t = 120.0)]
    measure_reserve_s: f64,
    /// Time the query set for at least this many seconds per efSearch.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
    /// all: build, then measure in a fresh process; build or measure alone.
    #[arg(long, value_enum, default_value = "all")]
    phase: ScalePhase,
    /// Stop the build after this many chunks (partitioned: partitions) in this call (tests).
    #[arg(long, hide = true)]
    max_chunks: Option<u64>,
}

/// Exit status of a call that must be rerun (build unfinished, or no budget left to measure).
pub const RERUN_STATUS: i32 = 75;

fn scale_params(a: &SearchScaleArgs) -> Result<ScaleParams> {
    let quantization: Quantization = a
        .quantization
        .parse()
        .with_context(|| format!("--quantization {}", a.quantization))?;
    Ok(ScaleParams {
        n: a.n,
        dims: a.dims,
        quantization,
        connectivity: a.connectivity,
        expansion_add: a.expansion_add,
        centres: if a.centres == 0 {
            default_centres(a.n)
        } else {
            a.centres
        },
        noise: a.noise,
        seed: a.seed,
        partitions: if a.partitions == 0 {
            research::retrieval::partition::default_partitions(a.n)
        } else {
            a.partitions
        },
    })
}

fn merge(v: &mut serde_json::Value, part: serde_json::Value) {
    for (key, val) in part.as_object().expect("an object") {
        v[key] = val.clone();
    }
}

fn gb(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.2}", b as f64 / 1e9))
}

/// `research bench search-scale`.
pub fn search_scale(a: SearchScaleArgs) -> Result<()> {
    let started = Instant::now();
    let params = scale_params(&a)?;
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    if a.ef.is_empty() || a.ef.contains(&0) {
        bail!("--ef: expected positive numbers, e.g. 64,128,256");
    }
    if a.phase != ScalePhase::Measure {
        let cfg = ScaleBuild {
            params,
            threads,
            chunk_rows: a.chunk_rows,
            budget_s: a.budget_s,
            checkpoint_s: a.checkpoint_s,
            max_chunks: a.max_chunks,
            progress: true,
        };
        eprintln!(
            "search-scale: {} × {} {} (M {}, efConstruction {}, {} centres, {} partition(s)), {threads} threads, budget \
             {:.0} s, {}",
            params.n,
            params.dims,
            params.quantization,
            params.connectivity,
            params.expansion_add,
            params.centres,
            params.partitions,
            a.budget_s,
            a.dir.display()
        );
        let call = build_scale(&a.dir, &cfg, started)?;
        let s = &call.state;
        let mut v = serde_json::json!({"bench": "search-scale", "phase": "build",
            "status": if s.complete { "complete" } else { "paused" }});
        merge(&mut v, serde_json::to_value(s.params)?);
        let mut state = serde_json::to_value(s)?;
        state.as_object_mut().expect("an object").remove("params");
        merge(&mut v, state);
        v["bytes_per_vector"] = (s.file_bytes as f64 / s.rows_done.max(1) as f64).into();
        v["threads"] = threads.into();
        v["rows_this_call"] = call.rows_this_call.into();
        v["call_s"] = call.call_s.into();
        v["stopped"] = call.stopped.clone().into();
        v["memory_bytes"] = call.memory_bytes.into();
        v["call_rss"] = serde_json::to_value(call.rss)?;
        println!("{v}");
        eprintln!(
            "search-scale: {}/{} rows ({} this call in {:.0} s); build so far {:.0} s (inserts {:.0} s, loads {:.0} s, \
             saves {:.0} s, {} calls), file {} GB, peak RSS {} GB",
            s.rows_done,
            params.n,
            call.rows_this_call,
            call.call_s,
            s.wall_s,
            s.insert_s,
            s.load_s,
            s.save_s,
            s.calls,
            gb(Some(s.file_bytes)),
            gb(Some(s.peak_rss_bytes))
        );
        if !s.complete {
            eprintln!(
                "search-scale: INCOMPLETE ({}): rerun the same command to resume",
                call.stopped.as_deref().unwrap_or("stopped")
            );
            std::io::stdout().flush()?;
            std::process::exit(RERUN_STATUS);
        }
        if a.phase == ScalePhase::Build {
            return Ok(());
        }
        let left = a.budget_s - started.elapsed().as_secs_f64();
        if left < a.measure_reserve_s {
            eprintln!(
                "search-scale: build complete; {left:.0} s of the budget left (< --measure-reserve-s {:.0}): rerun the \
                 same command to measure",
                a.measure_reserve_s
            );
            std::io::stdout().flush()?;
            std::process::exit(RERUN_STATUS);
        }
        // Measure in a fresh process, so its memory figures are the view's, not the build's.
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut skip = false;
        for arg in std::env::args_os().skip(1) {
            if skip {
                skip = false;
                continue;
            }
            if arg == "--phase" {
                skip = true;
                continue;
            }
            if arg.to_string_lossy().starts_with("--phase=") {
                continue;
            }
            args.push(arg);
        }
        args.push("--phase".into());
        args.push("measure".into());
        std::io::stdout().flush()?;
        let status = std::process::Command::new(&exe)
            .args(&args)
            .status()
            .with_context(|| format!("running {} --phase measure", exe.display()))?;
        if !status.success() {
            bail!("the measurement process failed ({status})");
        }
        return Ok(());
    }

    let m = ScaleMeasure {
        queries: a.queries,
        expansion_search: a.ef.clone(),
        probe: a.probe.clone(),
        threads,
        min_seconds: a.min_seconds,
        progress: true,
    };
    let measured = measure_scale(&a.dir, &params, &m)?;
    let state = read_state(&a.dir, &params)?.context("the build state vanished")?;
    let o = &measured.open;
    eprintln!(
        "search-scale: opened {} ({} GB) as a view in {:.3} s; RSS after open {} GB (anon {} GB, file {} GB); exact \
         top-10 of {} queries {}",
        if params.partitions > 1 {
            a.dir.display().to_string()
        } else {
            a.dir.join(scale::INDEX_FILE).display().to_string()
        },
        gb(Some(o.file_bytes)),
        o.open_s,
        gb(o.rss_after_open.rss_bytes),
        gb(o.rss_after_open.rss_anon_bytes),
        gb(o.rss_after_open.rss_file_bytes),
        a.queries,
        if measured.truth_cached {
            "from the cache".to_string()
        } else {
            format!("in {:.1} s", measured.truth_s)
        }
    );
    for r in &measured.searches {
        let mut v = serde_json::json!({"bench": "search-scale", "phase": "search"});
        merge(&mut v, serde_json::to_value(params)?);
        v["build_s"] = state.wall_s.into();
        v["insert_s"] = state.insert_s.into();
        v["build_calls"] = state.calls.into();
        v["build_peak_rss_bytes"] = state.peak_rss_bytes.into();
        v["file_bytes"] = o.file_bytes.into();
        v["bytes_per_vector"] = (o.file_bytes as f64 / params.n as f64).into();
        v["open_s"] = o.open_s.into();
        v["rss_after_open"] = serde_json::to_value(o.rss_after_open)?;
        v["truth_s"] = measured.truth_s.into();
        if params.partitions > 1 {
            v["train_s"] = state.train_s.into();
            v["assign_s"] = state.assign_s.into();
            v["part_rows_min"] = state.part_rows_min.into();
            v["part_rows_max"] = state.part_rows_max.into();
        }
        v["simd"] = state.simd.clone().into();
        merge(&mut v, serde_json::to_value(r)?);
        println!("{v}");
    }
    eprintln!();
    eprintln!(
        "{} × {} {}, M {}, efConstruction {}: build {:.0} s over {} call(s) (inserts {:.0} s), build peak RSS {} GB, \
         file {} GB ({:.0} B/vector), view opened in {:.3} s",
        params.n,
        params.dims,
        params.quantization,
        params.connectivity,
        params.expansion_add,
        state.wall_s,
        state.calls,
        state.insert_s,
        gb(Some(state.peak_rss_bytes)),
        gb(Some(o.file_bytes)),
        o.file_bytes as f64 / params.n as f64,
        o.open_s
    );
    if params.partitions > 1 {
        eprintln!(
            "{} partitions (rows {}..{} each), k-means {:.1} s, assignment {:.1} s",
            params.partitions, state.part_rows_min, state.part_rows_max, state.train_s, state.assign_s
        );
    }
    eprintln!(
        "| probe | efSearch | recall@5 | recall@10 | QPS ({threads} threads) | p50 ms | p99 ms | RSS GB (anon / file) |"
    );
    eprintln!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &measured.searches {
        eprintln!(
            "| {} | {} | {:.4} | {:.4} | {:.0} | {:.3} | {:.3} | {} ({} / {}) |",
            r.probe.map_or("-".to_string(), |p| p.to_string()),
            r.expansion_search,
            r.recall_at_5,
            r.recall_at_10,
            r.qps,
            r.latency_p50_ms,
            r.latency_p99_ms,
            gb(r.rss_after.rss_bytes),
            gb(r.rss_after.rss_anon_bytes),
            gb(r.rss_after.rss_file_bytes)
        );
    }
    Ok(())
}
