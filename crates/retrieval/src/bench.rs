//! Benchmarks of the retriever's two halves (issue 3), on synthetic inputs:
//!
//! - [`encoder_throughput`]: passages per second of a BERT encoder with random weights (e.g. the
//!   E5-base shape) on fixed-length inputs, pooling and L2 normalisation included, vectors read
//!   back to the host as the index build does.
//! - [`build_graph`] / [`measure_search`]: a usearch HNSW index (the settings of
//!   [`crate::builder::usearch_index`]) built in process from raw f32 vectors, then QPS, latency
//!   and recall@k against a ground-truth file, for each quantization; [`save_and_view`] saves it
//!   and times opening it again as a memory-mapped view (the wiki-18-scale measurement).
//!
//! - [`scale`]: the wiki-18-scale benchmark: an index of `n` synthetic vectors ([`synthetic`])
//!   built straight from the generator in budgeted, resumable calls, opened as a view and measured
//!   against an exact top-k over the regenerated base.
//!
//! File formats (written by `tests/gpu/gen_search_vectors.py`): vectors and queries are raw
//! little-endian f32, row-major, `dims` wide; the ground truth is raw little-endian u32 row ids,
//! `k` per query, best first.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::tensor::backend::Backend;
use research_bert::{l2_normalize, BertModel, FloatType, PaddedBatch};

pub use research_bert::{BertConfig, Pooling};

use crate::builder::usearch_index;
use crate::error::{format_err, io_err, usearch_err, Result, RetrievalError};
use crate::manifest::{HnswParams, Quantization};

pub mod scale;
pub mod synthetic;

/// Rows of f32: a memory-mapped file of little-endian f32, or rows held in memory.
pub struct RawVectors {
    data: Storage,
    rows: usize,
    dims: usize,
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<f32>),
}

impl RawVectors {
    /// Maps `path`, which must hold a whole number of `dims`-wide f32 rows (at least one).
    pub fn open(path: &Path, dims: usize) -> Result<Self> {
        if dims == 0 {
            return Err(RetrievalError::Input("--dims must be at least 1".into()));
        }
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len() as usize;
        let row_bytes = dims * 4;
        if len == 0 || !len.is_multiple_of(row_bytes) {
            return Err(format_err(
                path,
                format!("holds {len} bytes; expected a positive multiple of {row_bytes} ({dims} f32 per row)"),
            ));
        }
        // SAFETY: the benchmark's input files are not modified while it runs.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?;
        Ok(Self {
            data: Storage::Mapped(map),
            rows: len / row_bytes,
            dims,
        })
    }

    /// Rows held in memory (`data.len()` must be a multiple of `dims`).
    pub fn from_vec(data: Vec<f32>, dims: usize) -> Result<Self> {
        if dims == 0 || !data.len().is_multiple_of(dims) {
            return Err(RetrievalError::Input(format!(
                "{} values do not make whole rows of {dims}",
                data.len()
            )));
        }
        Ok(Self {
            rows: data.len() / dims,
            data: Storage::Owned(data),
            dims,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let all: &[f32] = match &self.data {
            // A page-aligned map of whole f32s: the cast cannot fail.
            Storage::Mapped(m) => bytemuck::cast_slice(&m[..]),
            Storage::Owned(v) => v,
        };
        &all[i * self.dims..(i + 1) * self.dims]
    }
}

/// Exact top-k row ids per query (raw u32), checked against the query count and the base size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// Ids per query.
    pub k: usize,
    /// `queries × k` row ids, best first.
    pub ids: Vec<u32>,
}

impl Truth {
    /// Reads a ground-truth file for `queries` queries over `rows` base vectors.
    pub fn read(path: &Path, queries: usize, rows: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        if queries == 0 || bytes.is_empty() || !bytes.len().is_multiple_of(4 * queries) {
            return Err(format_err(
                path,
                format!(
                    "holds {} bytes; expected {queries} queries × k u32 row ids (a positive multiple of {})",
                    bytes.len(),
                    4 * queries
                ),
            ));
        }
        let ids: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let k = ids.len() / queries;
        if let Some(i) = ids.iter().position(|&id| id as usize >= rows) {
            return Err(format_err(
                path,
                format!(
                    "query {}, rank {}: row id {} is out of range (the base holds {rows} vectors)",
                    i / k,
                    i % k,
                    ids[i]
                ),
            ));
        }
        Ok(Self { k, ids })
    }

    /// The first `k` true ids of query `q`.
    pub fn of(&self, q: usize, k: usize) -> &[u32] {
        &self.ids[q * self.k..q * self.k + k.min(self.k)]
    }
}

/// recall@k: the mean over queries of |found top-k ∩ true top-k| / k. `found[q]` is query `q`'s
/// result list (best first, only its first `k` count); `truth` holds at least `k` ids per query.
pub fn recall_at_k(found: &[Vec<u64>], truth: &Truth, k: usize) -> f64 {
    assert!(
        k >= 1 && k <= truth.k,
        "recall@{k} needs k true ids per query (the truth has {})",
        truth.k
    );
    if found.is_empty() {
        return 0.0;
    }
    let hits: usize = found
        .iter()
        .enumerate()
        .map(|(q, f)| {
            let t = truth.of(q, k);
            f.iter()
                .take(k)
                .filter(|&&id| t.iter().any(|&x| x as u64 == id))
                .count()
        })
        .sum();
    hits as f64 / (found.len() * k) as f64
}

/// Resident memory of this process from `/proc/self/status` (`VmRSS`, `RssAnon`, `VmHWM`), bytes;
/// `None` where there is no procfs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rss {
    /// `VmRSS`: all resident pages (memory-mapped file pages included).
    pub rss_bytes: Option<u64>,
    /// `RssAnon`: resident anonymous memory (the heap; not the mapped input files).
    pub rss_anon_bytes: Option<u64>,
    /// `RssFile`: resident file-backed pages (a memory-mapped index's pages once touched).
    pub rss_file_bytes: Option<u64>,
    /// `VmHWM`: the peak of `VmRSS`.
    pub peak_rss_bytes: Option<u64>,
}

impl Rss {
    /// Reads the current figures.
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        };
        Self {
            rss_bytes: field("VmRSS:"),
            rss_anon_bytes: field("RssAnon:"),
            rss_file_bytes: field("RssFile:"),
            peak_rss_bytes: field("VmHWM:"),
        }
    }
}

/// Progress for long loops: an indicatif bar on a terminal, otherwise a line on stderr at every
/// tenth (so a log shows it too).
struct Progress {
    bar: indicatif::ProgressBar,
    total: u64,
    done: AtomicU64,
    what: String,
    lines: bool,
}

impl Progress {
    fn new(show: bool, total: u64, what: &str) -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        Self {
            bar: crate::builder::bar(show && terminal, total, what, "vectors"),
            total,
            done: AtomicU64::new(0),
            what: what.to_string(),
            lines: show && !terminal,
        }
    }

    fn inc(&self, start: Instant) {
        self.bar.inc(1);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let tenth = (self.total / 10).max(1);
        if self.lines && done.is_multiple_of(tenth) {
            eprintln!(
                "{}: {done}/{} ({:.0} s)",
                self.what,
                self.total,
                start.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// How vectors are handed to usearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feed {
    /// As f32; usearch converts them to the index's storage itself (for i8: each vector divided by
    /// its L2 norm, times 127, truncated; what `research index` does today).
    F32,
    /// As i8 quantized here by [`quantize_max_abs`] (each vector scaled so its largest component
    /// is ±127, rounded), queries too; for an i8 index, whose cosine ignores the scale.
    I8MaxAbs,
}

pub use crate::quant::quantize_max_abs;

/// Adds (or searches) one f32 row the way `feed` says.
fn add_row(index: &usearch::Index, feed: Feed, key: u64, row: &[f32], buf: &mut Vec<i8>) -> Result<()> {
    match feed {
        Feed::F32 => index.add(key, row),
        Feed::I8MaxAbs => {
            buf.resize(row.len(), 0);
            quantize_max_abs(row, buf);
            index.add(key, buf.as_slice())
        }
    }
    .map_err(usearch_err("adding a vector"))
}

fn search_row(index: &usearch::Index, feed: Feed, row: &[f32], k: usize) -> Result<Vec<u64>> {
    let m = match feed {
        Feed::F32 => index.search(row, k),
        Feed::I8MaxAbs => {
            let mut buf = vec![0i8; row.len()];
            quantize_max_abs(row, &mut buf);
            index.search(buf.as_slice(), k)
        }
    }
    .map_err(usearch_err("searching"))?;
    Ok(m.keys)
}

/// What building one index took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildResult {
    /// Storage of the vectors in the graph.
    pub quantization: Quantization,
    /// How the vectors were handed to usearch.
    pub feed: Feed,
    /// Vectors inserted.
    pub n: usize,
    /// Width.
    pub dims: usize,
    /// `M`.
    pub connectivity: usize,
    /// `efConstruction`.
    pub expansion_add: usize,
    /// Inserting threads.
    pub build_threads: usize,
    /// Wall-clock seconds to insert every vector.
    pub build_s: f64,
    /// Bytes of the saved index (usearch's `serialized_length`: vectors + graph).
    pub index_bytes: u64,
    /// `index_bytes / n`.
    pub bytes_per_vector: f64,
    /// usearch's own count of the memory it holds.
    pub memory_bytes: u64,
    /// Growth of resident anonymous memory while building (the index in RAM; the input vectors
    /// are a file mapping and not counted).
    pub rss_anon_growth_bytes: Option<u64>,
    /// Memory after the build.
    pub rss: Rss,
    /// The SIMD kernels usearch picked on this CPU.
    pub simd: String,
}

/// Builds a usearch index of every row of `vectors` with `threads` inserting threads (row number
/// = key), reserving search contexts for `search_threads` concurrent callers too.
#[allow(clippy::too_many_arguments)]
pub fn build_graph(
    vectors: &RawVectors,
    quantization: Quantization,
    feed: Feed,
    hnsw: &HnswParams,
    threads: usize,
    search_threads: usize,
    progress: bool,
) -> Result<(usearch::Index, BuildResult)> {
    if feed == Feed::I8MaxAbs && quantization != Quantization::I8 {
        return Err(RetrievalError::Input(format!(
            "i8 vectors quantized here only go into an i8 index, not {quantization}"
        )));
    }
    let threads = threads.max(1);
    let n = vectors.rows();
    let before = Rss::now();
    let index = usearch_index(vectors.dims(), quantization, hnsw)?;
    index
        .reserve_capacity_and_threads(n, threads.max(search_threads))
        .map_err(usearch_err("reserving capacity"))?;
    let bar = Progress::new(progress, n as u64, &format!("build {quantization}"));
    let next = AtomicU64::new(0);
    let start = Instant::now();
    crate::workers::run(threads, "an insert", |_| {
        let mut buf = Vec::new();
        loop {
            let key = next.fetch_add(1, Ordering::Relaxed);
            if key >= n as u64 {
                return Ok(());
            }
            add_row(&index, feed, key, vectors.row(key as usize), &mut buf)?;
            bar.inc(start);
        }
    })?;
    let build_s = start.elapsed().as_secs_f64();
    bar.finish();
    let after = Rss::now();
    let index_bytes = index.serialized_length() as u64;
    let result = BuildResult {
        quantization,
        feed,
        n,
        dims: vectors.dims(),
        connectivity: hnsw.connectivity,
        expansion_add: hnsw.expansion_add,
        build_threads: threads,
        build_s,
        index_bytes,
        bytes_per_vector: index_bytes as f64 / n as f64,
        memory_bytes: index.memory_usage() as u64,
        rss_anon_growth_bytes: match (before.rss_anon_bytes, after.rss_anon_bytes) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        rss: after,
        simd: index.hardware_acceleration(),
    };
    Ok((index, result))
}

/// What saving an index and opening it again as a memory-mapped view took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewResult {
    /// Seconds to write the index file.
    pub save_s: f64,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// Seconds from nothing to a searchable view: create, `view`, reserve the search contexts.
    pub open_s: f64,
    /// Memory after opening (the view's pages are file-backed: `rss_anon_bytes` stays small).
    pub rss_after_open: Rss,
}

/// Saves `index` to `path`, drops it, and opens the file again as a memory-mapped view (usearch
/// `view`, as [`crate::Retriever::open`] does) ready for `search_threads` concurrent searches.
pub fn save_and_view(
    index: usearch::Index,
    path: &Path,
    quantization: Quantization,
    hnsw: &HnswParams,
    search_threads: usize,
) -> Result<(usearch::Index, ViewResult)> {
    let path_str = path
        .to_str()
        .ok_or_else(|| format_err(path, "the index path must be valid UTF-8 for usearch"))?;
    let dims = index.dimensions();
    let t = Instant::now();
    index.save(path_str).map_err(usearch_err("saving the index"))?;
    let save_s = t.elapsed().as_secs_f64();
    drop(index);
    let file_bytes = std::fs::metadata(path).map_err(io_err(path))?.len();
    let t = Instant::now();
    let view = open_view(path, dims, quantization, hnsw, search_threads)?;
    let open_s = t.elapsed().as_secs_f64();
    Ok((
        view,
        ViewResult {
            save_s,
            file_bytes,
            open_s,
            rss_after_open: Rss::now(),
        },
    ))
}

/// Opens a saved index as a memory-mapped view (usearch `view`, as [`crate::Retriever::open`]
/// does) and reserves search contexts for `search_threads` concurrent callers again (`view`
/// resets them).
pub fn open_view(
    path: &Path,
    dims: usize,
    quantization: Quantization,
    hnsw: &HnswParams,
    search_threads: usize,
) -> Result<usearch::Index> {
    let path_str = path
        .to_str()
        .ok_or_else(|| format_err(path, "the index path must be valid UTF-8 for usearch"))?;
    let view = usearch_index(dims, quantization, hnsw)?;
    view.view(path_str).map_err(usearch_err("viewing the index"))?;
    view.reserve_capacity_and_threads(view.size(), search_threads.max(1))
        .map_err(usearch_err("reserving search threads"))?;
    Ok(view)
}

/// Search figures at one `expansion_search`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    /// `ef` while searching.
    pub expansion_search: usize,
    /// Results asked per query.
    pub k: usize,
    /// Queries in the set.
    pub queries: usize,
    /// Threads sharing the query set.
    pub threads: usize,
    /// Timed passes over the whole query set (after one untimed pass).
    pub rounds: usize,
    /// Queries per second over the timed passes (the set split over `threads` threads).
    pub qps: f64,
    /// recall@k against the ground truth.
    pub recall: f64,
    /// Median latency of one query on one thread, milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile of the same, milliseconds.
    pub latency_p99_ms: f64,
}

/// Searches every query at `expansion_search`: one single-threaded pass (latencies and results,
/// hence recall@k), then passes with the set split over `threads` threads until at least
/// `min_seconds` have passed (and at least two passes), for the QPS.
#[allow(clippy::too_many_arguments)]
pub fn measure_search(
    index: &usearch::Index,
    feed: Feed,
    queries: &RawVectors,
    truth: &Truth,
    k: usize,
    expansion_search: usize,
    threads: usize,
    min_seconds: f64,
) -> Result<SearchResult> {
    measure_search_found(index, feed, queries, truth, k, expansion_search, threads, min_seconds).map(|(r, _)| r)
}

/// [`measure_search`], also returning each query's results (best first) from the single-threaded
/// pass.
#[allow(clippy::too_many_arguments)]
pub fn measure_search_found(
    index: &usearch::Index,
    feed: Feed,
    queries: &RawVectors,
    truth: &Truth,
    k: usize,
    expansion_search: usize,
    threads: usize,
    min_seconds: f64,
) -> Result<(SearchResult, Vec<Vec<u64>>)> {
    if queries.dims() != index.dimensions() {
        return Err(RetrievalError::Input(format!(
            "the queries are {}-d but the index holds {}-d vectors",
            queries.dims(),
            index.dimensions()
        )));
    }
    if k == 0 || k > truth.k {
        return Err(RetrievalError::Input(format!(
            "k = {k}: expected 1 to {} (the ground truth's ids per query)",
            truth.k
        )));
    }
    index.change_expansion_search(expansion_search);
    let search = |q: usize| search_row(index, feed, queries.row(q), k);
    measure_with(
        &search,
        queries.rows(),
        truth,
        k,
        expansion_search,
        threads,
        min_seconds,
    )
}

/// The timing and recall of [`measure_search_found`] for any searcher: `search(q)` returns query
/// `q`'s results (best first, at least `k` asked); `nq` queries; efSearch is the caller's to set
/// (`expansion_search` is only recorded).
#[allow(clippy::too_many_arguments)]
pub fn measure_with(
    search: &(dyn Fn(usize) -> Result<Vec<u64>> + Sync),
    nq: usize,
    truth: &Truth,
    k: usize,
    expansion_search: usize,
    threads: usize,
    min_seconds: f64,
) -> Result<(SearchResult, Vec<Vec<u64>>)> {
    if nq == 0 || k == 0 || k > truth.k {
        return Err(RetrievalError::Input(format!(
            "{nq} queries, k = {k}: expected queries and 1 <= k <= {} (the ground truth's ids per query)",
            truth.k
        )));
    }
    let mut latencies = Vec::with_capacity(nq);
    let mut found = Vec::with_capacity(nq);
    for q in 0..nq {
        let t = Instant::now();
        found.push(search(q)?);
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((nq as f64 * p).ceil() as usize).clamp(1, nq) - 1];
    let recall = recall_at_k(&found, truth, k);

    let threads = threads.clamp(1, nq);
    let per = nq.div_ceil(threads);
    let pass = || -> Result<()> {
        crate::workers::run(threads, "a search", |t| {
            for q in t * per..((t + 1) * per).min(nq) {
                search(q)?;
            }
            Ok(())
        })
    };
    pass()?; // warm-up
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 2 || start.elapsed().as_secs_f64() < min_seconds {
        pass()?;
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let result = SearchResult {
        expansion_search,
        k,
        queries: nq,
        threads,
        rounds,
        qps: (rounds * nq) as f64 / secs,
        recall,
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
    };
    Ok((result, found))
}

/// One encoder throughput measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncoderBench {
    /// Passages per forward pass.
    pub batch: usize,
    /// Tokens per passage (every one real: no padding).
    pub tokens: usize,
    /// Untimed passes first.
    pub warmup: usize,
    /// Timed passes.
    pub iters: usize,
    /// Mean seconds per pass (forward, pooling, normalisation, vectors read back to the host).
    pub seconds_per_batch: f64,
    /// `batch × iters / timed seconds`.
    pub passages_per_s: f64,
    /// Embedding width.
    pub dims: usize,
}

/// Random token ids for `batch` passages of exactly `tokens` tokens: `[CLS]` (101), ids drawn
/// from `[1000, vocab)` by a fixed xorshift generator, `[SEP]` (102). Requires `tokens >= 2`.
pub fn random_passages(batch: usize, tokens: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut x = seed | 1;
    let span = vocab.saturating_sub(1000).max(1) as u64;
    (0..batch)
        .map(|_| {
            let mut row = Vec::with_capacity(tokens);
            row.push(101);
            for _ in 1..tokens.saturating_sub(1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                row.push((1000 + x % span) as u32);
            }
            row.push(102);
            row
        })
        .collect()
}

/// Encodes one batch: forward, pooling over the mask, L2 normalisation, and the `[batch, hidden]`
/// f32 vectors read back to the host (which also waits for the device).
pub fn encode_batch<B: Backend>(
    model: &BertModel<B>,
    batch: &PaddedBatch,
    pooling: Pooling,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let hidden = model.forward_batch(batch, device)?;
    let pooled = l2_normalize(pooling.pool(hidden, &batch.attention_mask));
    pooled
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| RetrievalError::Input(format!("reading the embeddings back: {e:?}")))
}

/// Passages per second of a random-weight encoder of `config`'s shape in `dtype`: `warmup`
/// untimed batches, then `iters` timed ones, each of `batch` passages of exactly `tokens` tokens.
#[allow(clippy::too_many_arguments)]
pub fn encoder_throughput<B: Backend>(
    config: &BertConfig,
    dtype: FloatType,
    pooling: Pooling,
    batch: usize,
    tokens: usize,
    warmup: usize,
    iters: usize,
    device: &B::Device,
) -> Result<EncoderBench> {
    if tokens < 2 || tokens > config.max_position_embeddings {
        return Err(RetrievalError::Input(format!(
            "--tokens {tokens}: expected 2 to max_position_embeddings = {}",
            config.max_position_embeddings
        )));
    }
    if batch == 0 || iters == 0 {
        return Err(RetrievalError::Input("--batch and --iters must be at least 1".into()));
    }
    let model = BertModel::<B>::random(config, dtype, 0, device);
    let rows = random_passages(batch, tokens, config.vocab_size, 0x9E37_79B9_7F4A_7C15);
    let input = PaddedBatch::new(&rows, config.pad_token_id)?;
    for i in 0..warmup {
        let t = Instant::now();
        encode_batch(&model, &input, pooling, device)?;
        tracing::info!(pass = i, secs = t.elapsed().as_secs_f64(), "encoder warm-up");
    }
    let start = Instant::now();
    let mut dims = 0;
    for _ in 0..iters {
        dims = encode_batch(&model, &input, pooling, device)?.len() / batch;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(EncoderBench {
        batch,
        tokens,
        warmup,
        iters,
        seconds_per_batch: secs / iters as f64,
        passages_per_s: (batch * iters) as f64 / secs,
        dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(k: usize, ids: Vec<u32>) -> Truth {
        Truth { k, ids }
    }

    #[test]
    fn recall_counts_the_true_ids_in_the_first_k_whatever_their_order() {
        // Two queries, truth top-3 each. Query 0 finds 2 of its 3 (order swapped, one wrong);
        // query 1 finds all 3 but only its first 2 results count at k = 2, where truth is {4, 5}.
        let t = truth(3, vec![0, 1, 2, 4, 5, 6]);
        let found = vec![vec![1, 9, 0], vec![6, 5, 4]];
        // k = 3: (2 + 3) / 6.
        assert!((recall_at_k(&found, &t, 3) - 5.0 / 6.0).abs() < 1e-12);
        // k = 2: query 0 {1, 9} ∩ {0, 1} = 1; query 1 {6, 5} ∩ {4, 5} = 1 → 2 / 4.
        assert!((recall_at_k(&found, &t, 2) - 0.5).abs() < 1e-12);
        // k = 1: query 0: 1 ≠ 0; query 1: 6 ≠ 4 → 0.
        assert_eq!(recall_at_k(&found, &t, 1), 0.0);
        // Fewer results than k count as misses.
        assert!((recall_at_k(&[vec![0], vec![]], &t, 3) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn truth_files_are_checked_against_queries_and_base() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("truth.u32");
        let ids: Vec<u8> = [3u32, 1, 0, 2].iter().flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&p, ids).unwrap();
        assert_eq!(Truth::read(&p, 2, 4).unwrap(), truth(2, vec![3, 1, 0, 2]));
        let e = Truth::read(&p, 3, 4).unwrap_err().to_string();
        assert!(e.contains("truth.u32") && e.contains("3 queries"), "{e}");
        let e = Truth::read(&p, 2, 3).unwrap_err().to_string();
        assert!(e.contains("query 0, rank 0") && e.contains("row id 3"), "{e}");
        std::fs::write(&p, [0u8; 6]).unwrap();
        assert!(Truth::read(&p, 1, 4).is_err());
    }

    #[test]
    fn raw_vectors_need_whole_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.f32");
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        std::fs::write(&p, bytemuck::cast_slice::<f32, u8>(&data)).unwrap();
        let v = RawVectors::open(&p, 4).unwrap();
        assert_eq!((v.rows(), v.dims()), (3, 4));
        assert_eq!(v.row(2), &[8.0, 9.0, 10.0, 11.0]);
        let e = RawVectors::open(&p, 5).err().unwrap().to_string();
        assert!(e.contains("v.f32") && e.contains("48 bytes") && e.contains("20"), "{e}");
    }

    #[test]
    fn hnsw_finds_the_neighbours_of_a_small_grid_and_exact_truth_agrees() {
        // 120 unit vectors on a circle (angles 2πi/120). A query at angle 2π(j + 1/4)/120 is
        // nearest in angle to rows j, j + 1, j - 1 (0.25, 0.75, 1.25 steps away; the 4th is 1.75
        // steps away, a cosine gap of 2e-3, well above f16's rounding).
        let n = 120;
        let data: Vec<f32> = (0..n)
            .flat_map(|i| {
                let a = std::f32::consts::TAU * i as f32 / n as f32;
                [a.cos(), a.sin()]
            })
            .collect();
        let vectors = RawVectors::from_vec(data, 2).unwrap();
        let js = [0usize, 17, 60, 119];
        let q: Vec<f32> = js
            .iter()
            .flat_map(|&j| {
                let a = std::f32::consts::TAU * (j as f32 + 0.25) / n as f32;
                [a.cos(), a.sin()]
            })
            .collect();
        let queries = RawVectors::from_vec(q, 2).unwrap();
        let ids: Vec<u32> = js
            .iter()
            .flat_map(|&j| [j, (j + 1) % n, (j + n - 1) % n].map(|x| x as u32))
            .collect();
        let t = truth(3, ids);
        let hnsw = HnswParams {
            connectivity: 8,
            expansion_add: 64,
            expansion_search: 64,
        };
        for (quantization, feed) in [
            (Quantization::F32, Feed::F32),
            (Quantization::F16, Feed::F32),
            (Quantization::I8, Feed::I8MaxAbs),
        ] {
            let (index, built) = build_graph(&vectors, quantization, feed, &hnsw, 2, 2, false).unwrap();
            assert_eq!((built.n, built.dims), (n, 2));
            assert!(built.index_bytes > (n * 2 * quantization.bytes()) as u64);
            let r = measure_search(&index, feed, &queries, &t, 3, 64, 2, 0.0).unwrap();
            assert_eq!(r.recall, 1.0, "{quantization}");
            assert_eq!((r.queries, r.k), (4, 3));
            // The same graph saved and viewed answers the same.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("g.usearch");
            let (view, v) = save_and_view(index, &file, quantization, &hnsw, 2).unwrap();
            assert_eq!(v.file_bytes, built.index_bytes);
            assert_eq!(view.size(), n);
            assert_eq!(
                measure_search(&view, feed, &queries, &t, 3, 64, 2, 0.0).unwrap().recall,
                1.0
            );
        }
    }

    #[test]
    fn max_abs_quantization_uses_the_full_range() {
        let mut out = [0i8; 4];
        // max |x| = 0.5 → scale 254: 127, -63.5 → -64 (half away from zero), 25.4 → 25, 0.
        quantize_max_abs(&[0.5, -0.25, 0.1, 0.0], &mut out);
        assert_eq!(out, [127, -64, 25, 0]);
        quantize_max_abs(&[-2.0, 1.0, 0.0, 0.0], &mut out);
        assert_eq!(out, [-127, 64, 0, 0]);
        quantize_max_abs(&[0.0; 4], &mut out);
        assert_eq!(out, [0; 4]);
    }

    #[test]
    fn random_passages_have_the_bert_frame() {
        let rows = random_passages(3, 180, 30522, 7);
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert_eq!(r.len(), 180);
            assert_eq!((r[0], r[179]), (101, 102));
            assert!(r[1..179].iter().all(|&id| (1000..30522).contains(&id)));
        }
        assert_ne!(rows[0], rows[1]);
    }
}
