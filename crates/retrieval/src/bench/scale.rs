//! The wiki-18-scale search benchmark (issue 3): a usearch HNSW index of `n` synthetic clustered
//! vectors ([`super::synthetic`]) built straight from the generator — the f32 vectors are never
//! stored, so 21M × 768 (64.5 GB of f32) builds on a machine with less disk than that — in calls
//! bounded by a time budget, then opened as a memory-mapped view and measured against an exact
//! top-k that regenerates the base.
//!
//! - [`build_scale`]: one call of the build. Rows are inserted in chunks (row number = key; each
//!   thread generates the rows it inserts). Before a chunk it checks that the chunk (timed by the
//!   last one) and a save (timed by the last save, or 0.4 GB/s) still fit in the budget; if not it
//!   saves the index (`index.usearch`, written to a `.partial` file then renamed) and the state
//!   (`scale.json`, likewise) and returns with [`ScaleState::complete`] false. The next call loads
//!   them and goes on. Build time, save/load time and peak RSS (`VmHWM`) are summed / maxed over
//!   calls in the state.
//! - [`measure_scale`]: in a process of its own (so its memory figures are the view's, not the
//!   build's): opens the saved index with usearch `view`, reserves the search threads again,
//!   computes (or reads the cached) exact top-10 of the query set by brute force over the
//!   regenerated f32 base, then recall@5, recall@10, QPS and latency per efSearch.
//!
//! i8 storage is our max-abs quantization ([`crate::quant`]), as `research index` builds it; f16
//! and f32 are usearch's conversion of the f32 vectors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::synthetic::Synthetic;
use super::{
    measure_search_found, measure_with, open_view, quantize_max_abs, recall_at_k, Feed, RawVectors, Rss, Truth,
};
use crate::builder::usearch_index;
use crate::error::{format_err, io_err, usearch_err, Result, RetrievalError};
use crate::manifest::{HnswParams, Quantization};

/// The build state in the index folder.
pub const STATE_FILE: &str = "scale.json";
/// The saved usearch index in the index folder.
pub const INDEX_FILE: &str = "index.usearch";
/// Exact neighbours computed per query (recall@5 and recall@10 are reported).
pub const TRUTH_K: usize = 10;
/// Save speed assumed before the first save has been timed, bytes per second.
const DEFAULT_SAVE_RATE: f64 = 0.4e9;

/// What the index is built from: a rerun must give the same (the error names the fields that
/// differ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleParams {
    /// Base vectors (keys `0..n`).
    pub n: u64,
    /// Width.
    pub dims: usize,
    /// Storage in the graph (i8: our max-abs quantization).
    pub quantization: Quantization,
    /// HNSW `M`.
    pub connectivity: usize,
    /// HNSW `efConstruction`.
    pub expansion_add: usize,
    /// Clusters of the synthetic distribution.
    pub centres: usize,
    /// Noise norm relative to the unit centre.
    pub noise: f32,
    /// Seed of the synthetic distribution.
    pub seed: u64,
    /// Partitions: 1 is one HNSW index (`index.usearch`); more is a partition-routed index
    /// ([`crate::partition`]: `centroids.f32`, `assign.u32`, `part-NNNNN.usearch`). A state
    /// written before this field existed reads as 1.
    #[serde(default = "one")]
    pub partitions: usize,
}

fn one() -> usize {
    1
}

impl ScaleParams {
    /// How vectors go into the index: i8 quantized by us, otherwise f32 converted by usearch.
    pub fn feed(&self) -> Feed {
        match self.quantization {
            Quantization::I8 => Feed::I8MaxAbs,
            Quantization::F32 | Quantization::F16 => Feed::F32,
        }
    }

    /// The usearch parameters (`expansion_search` is set per measurement).
    pub fn hnsw(&self) -> HnswParams {
        HnswParams {
            connectivity: self.connectivity,
            expansion_add: self.expansion_add,
            expansion_search: 64,
        }
    }

    /// The synthetic distribution.
    pub fn synthetic(&self) -> Result<Synthetic> {
        Synthetic::new(self.dims, self.centres, self.noise, self.seed)
    }

    fn check(&self) -> Result<()> {
        if self.n < TRUTH_K as u64 || self.n > u32::MAX as u64 || self.dims == 0 {
            return Err(RetrievalError::Input(format!(
                "--n {} --dims {}: expected {TRUTH_K} <= n <= {} and dims >= 1",
                self.n,
                self.dims,
                u32::MAX
            )));
        }
        if self.partitions == 0 || self.partitions as u64 > self.n {
            return Err(RetrievalError::Input(format!(
                "--partitions {}: expected 1 to n ({})",
                self.partitions, self.n
            )));
        }
        if self.connectivity < 2 || self.expansion_add == 0 {
            return Err(RetrievalError::Input(format!(
                "--connectivity {} --expansion-add {}: expected M >= 2 and efConstruction >= 1",
                self.connectivity, self.expansion_add
            )));
        }
        Ok(())
    }

    /// The fields where `self` (the state on disk) differs from `asked`, as `field: saved X, asked Y`.
    fn differences(&self, asked: &ScaleParams) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name}: saved {a}, asked {b}"));
            }
        };
        cmp("n", self.n.to_string(), asked.n.to_string());
        cmp("dims", self.dims.to_string(), asked.dims.to_string());
        cmp(
            "quantization",
            self.quantization.to_string(),
            asked.quantization.to_string(),
        );
        cmp(
            "connectivity",
            self.connectivity.to_string(),
            asked.connectivity.to_string(),
        );
        cmp(
            "expansion_add",
            self.expansion_add.to_string(),
            asked.expansion_add.to_string(),
        );
        cmp("centres", self.centres.to_string(), asked.centres.to_string());
        cmp("noise", self.noise.to_string(), asked.noise.to_string());
        cmp("seed", self.seed.to_string(), asked.seed.to_string());
        cmp("partitions", self.partitions.to_string(), asked.partitions.to_string());
        d
    }
}

/// The build's progress and totals over calls (`scale.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleState {
    /// What is built.
    pub params: ScaleParams,
    /// Rows in the saved index (keys `0..rows_done`).
    pub rows_done: u64,
    /// All `n` rows are in the saved index.
    pub complete: bool,
    /// Build calls (a call on a complete build does not count).
    pub calls: u32,
    /// Seconds inserting, over all calls (partitioned builds: summed over the threads that build
    /// partitions side by side; read `wall_s` for the build time).
    pub insert_s: f64,
    /// Seconds loading the saved index to resume, over all calls.
    pub load_s: f64,
    /// Seconds saving, over all calls.
    pub save_s: f64,
    /// Wall-clock seconds of the build calls (set-up, load, inserts, saves), summed.
    pub wall_s: f64,
    /// Saves made.
    pub saves: u32,
    /// Bytes of the saved index.
    pub file_bytes: u64,
    /// The largest `VmHWM` (peak resident memory) of a build call.
    pub peak_rss_bytes: u64,
    /// The last save's speed, bytes per second (for the budget).
    pub save_bytes_per_s: Option<f64>,
    /// The SIMD kernels usearch used.
    pub simd: String,
    /// Partitioned builds: seconds training the k-means centroids.
    #[serde(default)]
    pub train_s: f64,
    /// Partitioned builds: seconds assigning every row to its nearest centroid.
    #[serde(default)]
    pub assign_s: f64,
    /// Partitioned builds: partitions saved.
    #[serde(default)]
    pub parts_done: usize,
    /// Partitioned builds: rows in the largest and the smallest partition.
    #[serde(default)]
    pub part_rows_max: u64,
    /// See `part_rows_max`.
    #[serde(default)]
    pub part_rows_min: u64,
}

impl ScaleState {
    fn new(params: ScaleParams) -> Self {
        Self {
            params,
            rows_done: 0,
            complete: false,
            calls: 0,
            insert_s: 0.0,
            load_s: 0.0,
            save_s: 0.0,
            wall_s: 0.0,
            saves: 0,
            file_bytes: 0,
            peak_rss_bytes: 0,
            save_bytes_per_s: None,
            simd: String::new(),
            train_s: 0.0,
            assign_s: 0.0,
            parts_done: 0,
            part_rows_max: 0,
            part_rows_min: 0,
        }
    }
}

/// Reads `DIR/scale.json`, if there is one, and checks it was built with `params`.
pub fn read_state(dir: &Path, params: &ScaleParams) -> Result<Option<ScaleState>> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let state: ScaleState = serde_json::from_str(&text).map_err(|e| {
        format_err(
            &path,
            format!("not a search-scale state ({e}); remove the folder to start over"),
        )
    })?;
    let diff = state.params.differences(params);
    if !diff.is_empty() {
        return Err(RetrievalError::Mismatch {
            path,
            message: format!(
                "this folder holds another build ({}); use another --dir or the saved parameters",
                diff.join("; ")
            ),
        });
    }
    Ok(Some(state))
}

fn write_state(dir: &Path, state: &ScaleState) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.partial"));
    let text = serde_json::to_string_pretty(state).expect("the state serializes");
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| format_err(path, "the index path must be valid UTF-8 for usearch"))
}

/// One call of the build.
#[derive(Debug, Clone)]
pub struct ScaleBuild {
    /// What to build.
    pub params: ScaleParams,
    /// Inserting threads.
    pub threads: usize,
    /// Rows per chunk (the budget is checked between chunks).
    pub chunk_rows: u64,
    /// Seconds this call may take, counted from `started` (saving included).
    pub budget_s: f64,
    /// Also save every this many seconds (a kill then loses at most that much).
    pub checkpoint_s: Option<f64>,
    /// Stop after this many chunks (partitioned builds: partitions) in this call (tests; as if
    /// the budget ran out).
    pub max_chunks: Option<u64>,
    /// Progress on stderr.
    pub progress: bool,
}

/// What one build call did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildCall {
    /// The state after the call (saved in the folder).
    pub state: ScaleState,
    /// Rows inserted by this call.
    pub rows_this_call: u64,
    /// Wall-clock seconds of this call.
    pub call_s: f64,
    /// Why the call stopped before `n` rows (budget or chunk limit); `None` when complete.
    pub stopped: Option<String>,
    /// usearch's count of the memory it held at the end of the call.
    pub memory_bytes: u64,
    /// This call's memory at its end (`peak_rss_bytes` is its `VmHWM`).
    pub rss: Rss,
}

/// Runs one call of the build in `dir` (see the module doc). A complete build returns at once.
pub fn build_scale(dir: &Path, cfg: &ScaleBuild, started: Instant) -> Result<BuildCall> {
    let p = cfg.params;
    p.check()?;
    let threads = cfg.threads.max(1);
    let chunk_rows = cfg.chunk_rows.max(1);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut state = read_state(dir, &p)?.unwrap_or_else(|| ScaleState::new(p));
    if state.complete {
        return Ok(BuildCall {
            state,
            rows_this_call: 0,
            call_s: 0.0,
            stopped: None,
            memory_bytes: 0,
            rss: Rss::now(),
        });
    }
    if p.partitions > 1 {
        return build_partitioned(dir, cfg, started, state);
    }
    let call = Instant::now();
    let synth = p.synthetic()?;
    let hnsw = p.hnsw();
    let feed = p.feed();
    let index = usearch_index(p.dims, p.quantization, &hnsw)?;
    let index_path = dir.join(INDEX_FILE);
    let mut load_s = 0.0;
    if state.rows_done > 0 {
        let t = Instant::now();
        index
            .load(path_str(&index_path)?)
            .map_err(usearch_err("loading the saved index to resume"))?;
        load_s = t.elapsed().as_secs_f64();
        let size = index.size() as u64;
        if size != state.rows_done {
            return Err(format_err(
                &index_path,
                format!(
                    "holds {size} vectors but {STATE_FILE} says {} were saved; remove the folder to start over",
                    state.rows_done
                ),
            ));
        }
        if cfg.progress {
            eprintln!("search-scale: resumed {size}/{} rows (loaded in {load_s:.1} s)", p.n);
        }
    }
    index
        .reserve_capacity_and_threads(p.n as usize, threads)
        .map_err(usearch_err("reserving capacity"))?;

    let start_rows = state.rows_done;
    let bar = crate::builder::bar(
        cfg.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        p.n,
        "build",
        "vectors",
    );
    bar.set_position(start_rows);
    let mut last_chunk: Option<(u64, f64)> = None;
    let mut chunks = 0u64;
    let mut last_save = Instant::now();
    let mut saved_rows = state.rows_done;
    let mut save_s = 0.0;
    let mut stopped = None;
    let mut insert_s = 0.0;
    while state.rows_done < p.n {
        if cfg.max_chunks.is_some_and(|m| chunks >= m) {
            stopped = Some(format!("--max-chunks {}", chunks));
            break;
        }
        let lo = state.rows_done;
        let rows = chunk_rows.min(p.n - lo);
        let est_chunk = last_chunk.map_or(0.0, |(r, s)| s * rows as f64 / r as f64 * 1.2);
        let per_row = if lo > 0 {
            index.serialized_length() as f64 / lo as f64
        } else {
            (p.dims * p.quantization.bytes() + 16 * p.connectivity) as f64
        };
        let est_save = per_row * (lo + rows) as f64 / state.save_bytes_per_s.unwrap_or(DEFAULT_SAVE_RATE) + 2.0;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed + est_chunk + est_save > cfg.budget_s {
            stopped = Some(format!(
                "budget: {elapsed:.0} s spent of {:.0} s, the next chunk takes ~{est_chunk:.0} s and saving ~{est_save:.0} s",
                cfg.budget_s
            ));
            break;
        }
        let t = Instant::now();
        insert_rows(&index, &synth, feed, lo, lo + rows, threads, &bar)?;
        let secs = t.elapsed().as_secs_f64();
        insert_s += secs;
        state.rows_done = lo + rows;
        last_chunk = Some((rows, secs));
        chunks += 1;
        if cfg.progress && bar.is_hidden() {
            let done = state.rows_done - start_rows;
            let rate = done as f64 / insert_s;
            eprintln!(
                "search-scale: {}/{} rows ({:.0} rows/s this call, ~{:.0} s of inserts left)",
                state.rows_done,
                p.n,
                rate,
                (p.n - state.rows_done) as f64 / rate
            );
        }
        if state.rows_done < p.n && cfg.checkpoint_s.is_some_and(|c| last_save.elapsed().as_secs_f64() >= c) {
            save_s += save_index(&index, dir, &mut state)?;
            saved_rows = state.rows_done;
            last_save = Instant::now();
        }
    }
    bar.finish_and_clear();
    if state.rows_done > saved_rows {
        save_s += save_index(&index, dir, &mut state)?;
    }
    let rss = Rss::now();
    state.complete = state.rows_done == p.n;
    state.calls += 1;
    state.insert_s += insert_s;
    state.load_s += load_s;
    state.save_s += save_s;
    let call_s = call.elapsed().as_secs_f64();
    state.wall_s += call_s;
    state.peak_rss_bytes = state.peak_rss_bytes.max(rss.peak_rss_bytes.unwrap_or(0));
    state.simd = index.hardware_acceleration();
    write_state(dir, &state)?;
    Ok(BuildCall {
        rows_this_call: state.rows_done - start_rows,
        state,
        call_s,
        stopped,
        memory_bytes: index.memory_usage() as u64,
        rss,
    })
}

/// The partition assignment of a partitioned build (`n` little-endian u32).
pub const ASSIGN_FILE: &str = "assign.u32";

/// One call of a partitioned build (`params.partitions > 1`): k-means centroids on a strided
/// sample (once, saved), the nearest centroid of every row (once, saved), then the partitions
/// not yet saved, largest first, each saved as soon as it is built. A partition is started only
/// while the budget still holds it (timed by the slowest rows-per-second of the partitions done
/// in this call, +30 %), so the call ends with whole partitions saved.
fn build_partitioned(dir: &Path, cfg: &ScaleBuild, started: Instant, mut state: ScaleState) -> Result<BuildCall> {
    use crate::partition::{
        assign_rows, build_partitions, part_file, read_centroids, sample_rows, save_centroids, save_part,
        train_centroids, KMeansConfig, PartitionLists, PartitionSpec, CENTROIDS_FILE,
    };
    let p = cfg.params;
    let parts = p.partitions;
    let threads = cfg.threads.max(1);
    let call = Instant::now();
    let synth = p.synthetic()?;
    let row = |r: u64, out: &mut [f32]| {
        synth.base_row(r, out);
    };
    let centroids = if dir.join(CENTROIDS_FILE).is_file() {
        read_centroids(dir, parts, p.dims)?
    } else {
        let t = Instant::now();
        let km = KMeansConfig::new(parts);
        let ids = sample_rows(p.n, km.sample_rows.max(parts));
        let mut sample = vec![0f32; ids.len() * p.dims];
        let per = ids.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (chunk, rows) in sample.chunks_mut(per * p.dims).zip(ids.chunks(per)) {
                let synth = &synth;
                s.spawn(move || {
                    for (out, &r) in chunk.chunks_exact_mut(p.dims).zip(rows) {
                        synth.base_row(r, out);
                    }
                });
            }
        });
        let c = train_centroids(&sample, p.dims, parts, km.iterations, km.seed ^ p.seed, threads)?;
        save_centroids(dir, &c)?;
        state.train_s += t.elapsed().as_secs_f64();
        if cfg.progress {
            eprintln!(
                "search-scale: k-means of {parts} centroids on {} rows in {:.1} s",
                ids.len(),
                state.train_s
            );
        }
        c
    };
    let assign_path = dir.join(ASSIGN_FILE);
    let assignment: Vec<u32> = match std::fs::read(&assign_path) {
        Ok(bytes) if bytes.len() as u64 == 4 * p.n => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Ok(bytes) => {
            return Err(format_err(
                &assign_path,
                format!(
                    "holds {} bytes; expected {} rows × u32; remove the folder to start over",
                    bytes.len(),
                    p.n
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = Instant::now();
            let a = assign_rows(&centroids, p.dims, p.n, threads, &row);
            let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            let tmp = dir.join(format!("{ASSIGN_FILE}.partial"));
            std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &assign_path).map_err(io_err(&assign_path))?;
            state.assign_s += t.elapsed().as_secs_f64();
            if cfg.progress {
                eprintln!(
                    "search-scale: assigned {} rows to {parts} partitions in {:.1} s",
                    p.n, state.assign_s
                );
            }
            a
        }
        Err(e) => return Err(io_err(&assign_path)(e)),
    };
    let lists = PartitionLists::new(&assignment, parts)?;
    drop(assignment);
    let sizes: Vec<u64> = (0..parts).map(|q| lists.of(q).len() as u64).collect();
    state.part_rows_max = sizes.iter().copied().max().unwrap_or(0);
    state.part_rows_min = sizes.iter().copied().min().unwrap_or(0);
    let is_done = |q: usize| dir.join(part_file(q)).is_file();
    let mut todo: Vec<usize> = (0..parts).filter(|&q| !is_done(q)).collect();
    todo.sort_by_key(|&q| (std::cmp::Reverse(sizes[q]), q));
    let start_rows: u64 = (0..parts).filter(|&q| is_done(q)).map(|q| sizes[q]).sum();
    if cfg.progress && start_rows > 0 {
        eprintln!(
            "search-scale: resumed {start_rows}/{} rows ({} of {parts} partitions saved)",
            p.n,
            parts - todo.len()
        );
    }

    struct Tally {
        rows: u64,
        parts: usize,
        save_s: f64,
        insert_s: f64,
        secs_per_row: f64,
        bytes: u64,
        stopped: Option<String>,
    }
    let tally = Mutex::new(Tally {
        rows: 0,
        parts: 0,
        save_s: 0.0,
        insert_s: 0.0,
        secs_per_row: 0.0,
        bytes: 0,
        stopped: None,
    });
    let started_parts = std::sync::atomic::AtomicU64::new(0);
    // Each partition is timed from its start: one thread per partition when there are many.
    let part_started: Mutex<std::collections::HashMap<usize, Instant>> = Mutex::new(Default::default());
    let keep_going = |q: usize| -> bool {
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        if t.stopped.is_some() {
            return false;
        }
        if cfg
            .max_chunks
            .is_some_and(|m| started_parts.load(Ordering::Relaxed) >= m)
        {
            t.stopped = Some(format!("--max-chunks {} (partitions)", cfg.max_chunks.unwrap_or(0)));
            return false;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let est = t.secs_per_row * sizes[q] as f64 * 1.3 + 1.0;
        if elapsed + est > cfg.budget_s {
            t.stopped = Some(format!(
                "budget: {elapsed:.0} s spent of {:.0} s, a partition of {} rows takes ~{est:.0} s",
                cfg.budget_s, sizes[q]
            ));
            return false;
        }
        started_parts.fetch_add(1, Ordering::Relaxed);
        part_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(q, Instant::now());
        true
    };
    let done = |q: usize, index: usearch::Index| -> Result<()> {
        let t0 = part_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&q)
            .unwrap_or_else(Instant::now);
        let built = t0.elapsed().as_secs_f64();
        let t = Instant::now();
        save_part(dir, q, &index)?;
        let save = t.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(dir.join(part_file(q))).map_or(0, |m| m.len());
        let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
        tl.rows += sizes[q];
        tl.parts += 1;
        tl.save_s += save;
        tl.insert_s += built;
        tl.bytes += bytes;
        tl.secs_per_row = tl.secs_per_row.max((built + save) / sizes[q].max(1) as f64);
        if cfg.progress && (tl.parts.is_multiple_of(64) || tl.parts == todo.len()) {
            eprintln!(
                "search-scale: {}/{} rows, {} of {} partitions this call ({:.0} s)",
                start_rows + tl.rows,
                p.n,
                tl.parts,
                todo.len(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    };
    let spec = PartitionSpec {
        dims: p.dims,
        quantization: p.quantization,
        hnsw: p.hnsw(),
    };
    build_partitions(&lists, &todo, spec, threads, &row, &keep_going, &done)?;
    let tl = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    let done_parts: Vec<usize> = (0..parts).filter(|&q| is_done(q)).collect();
    state.rows_done = done_parts.iter().map(|&q| sizes[q]).sum();
    state.parts_done = done_parts.len();
    state.file_bytes = done_parts
        .iter()
        .map(|&q| std::fs::metadata(dir.join(part_file(q))).map_or(0, |m| m.len()))
        .sum::<u64>()
        + (parts * p.dims * 4) as u64;
    state.complete = state.parts_done == parts;
    state.saves += tl.parts as u32;
    // Partitions are built side by side: their seconds are summed over threads; the call's wall
    // time is the figure to read.
    state.insert_s += tl.insert_s;
    state.save_s += tl.save_s;
    let rss = Rss::now();
    state.calls += 1;
    let call_s = call.elapsed().as_secs_f64();
    state.wall_s += call_s;
    state.peak_rss_bytes = state.peak_rss_bytes.max(rss.peak_rss_bytes.unwrap_or(0));
    state.simd = usearch_index(p.dims, p.quantization, &p.hnsw())?.hardware_acceleration();
    if tl.bytes > 0 {
        state.save_bytes_per_s = Some(tl.bytes as f64 / tl.save_s.max(1e-3));
    }
    write_state(dir, &state)?;
    let stopped = if state.complete {
        None
    } else {
        Some(tl.stopped.unwrap_or_else(|| "stopped".into()))
    };
    Ok(BuildCall {
        rows_this_call: state.rows_done - start_rows,
        state,
        call_s,
        stopped,
        memory_bytes: 0,
        rss,
    })
}

/// Inserts rows `lo..hi` (key = row) from `threads` threads, each generating the rows it inserts.
fn insert_rows(
    index: &usearch::Index,
    synth: &Synthetic,
    feed: Feed,
    lo: u64,
    hi: u64,
    threads: usize,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let next = AtomicU64::new(lo);
    let dims = synth.dims();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut row = vec![0f32; dims];
                    let mut q = vec![0i8; dims];
                    loop {
                        let key = next.fetch_add(1, Ordering::Relaxed);
                        if key >= hi {
                            return Ok(());
                        }
                        synth.base_row(key, &mut row);
                        match feed {
                            Feed::F32 => index.add(key, &row),
                            Feed::I8MaxAbs => {
                                quantize_max_abs(&row, &mut q);
                                index.add(key, q.as_slice())
                            }
                        }
                        .map_err(usearch_err("adding a vector"))?;
                        bar.inc(1);
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(RetrievalError::Usearch("an insert thread panicked".into())))
        })
    })
}

/// Saves the index to `index.usearch.partial`, renames it over `index.usearch`, then records the
/// state; returns the seconds taken.
fn save_index(index: &usearch::Index, dir: &Path, state: &mut ScaleState) -> Result<f64> {
    let tmp = dir.join(format!("{INDEX_FILE}.partial"));
    let path = dir.join(INDEX_FILE);
    let t = Instant::now();
    index.save(path_str(&tmp)?).map_err(usearch_err("saving the index"))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    let secs = t.elapsed().as_secs_f64();
    state.file_bytes = std::fs::metadata(&path).map_err(io_err(&path))?.len();
    state.saves += 1;
    state.save_bytes_per_s = Some(state.file_bytes as f64 / secs.max(1e-3));
    write_state(dir, state)?;
    Ok(secs)
}

/// `a · b` in f32 with 16 independent partial sums (vectorisable).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// The `cap` best (score, row) of one query, best first.
struct TopK {
    cap: usize,
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            items: Vec::with_capacity(cap + 1),
        }
    }

    fn push(&mut self, score: f32, row: u32) {
        if self.items.len() == self.cap && score <= self.items[self.cap - 1].0 {
            return;
        }
        let at = self.items.partition_point(|&(s, _)| s >= score);
        self.items.insert(at, (score, row));
        self.items.truncate(self.cap);
    }
}

/// Exact top-`k` base rows of each query (`queries` row-major, `dims` wide) by inner product
/// over the `n` regenerated base vectors, best first, ties to the lower row. Blocks of rows are
/// generated and scored on `threads` threads in f32, keeping `k + 16` candidates per query; the
/// candidates are then rescored in f64 to fix the order.
pub fn exact_top_k(
    synth: &Synthetic,
    n: u64,
    queries: &[f32],
    k: usize,
    threads: usize,
    progress: bool,
) -> Result<Truth> {
    let dims = synth.dims();
    let nq = queries.len() / dims;
    if nq == 0 || k == 0 || (n as usize) < k || !queries.len().is_multiple_of(dims) {
        return Err(RetrievalError::Input(format!(
            "exact top-{k} of {nq} queries over {n} vectors: expected k >= 1, at least one query and n >= k"
        )));
    }
    const BLOCK: u64 = 128;
    let cap = k + 16;
    let blocks = n.div_ceil(BLOCK);
    let next = AtomicU64::new(0);
    let bar = crate::builder::bar(progress, n, "exact top-k", "vectors");
    let threads = threads.clamp(1, blocks as usize);
    let partial: Vec<Vec<TopK>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(cap)).collect();
                    let mut buf = vec![0f32; BLOCK as usize * dims];
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            return tops;
                        }
                        let lo = b * BLOCK;
                        let rows = BLOCK.min(n - lo) as usize;
                        let block = &mut buf[..rows * dims];
                        synth.base_rows(lo, block);
                        for (q, top) in queries.chunks_exact(dims).zip(tops.iter_mut()) {
                            for (i, row) in block.chunks_exact(dims).enumerate() {
                                top.push(dot(q, row), (lo + i as u64) as u32);
                            }
                        }
                        bar.inc(rows as u64);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a brute-force thread panicked"))
            .collect()
    });
    bar.finish_and_clear();
    let mut ids = Vec::with_capacity(nq * k);
    let mut row = vec![0f32; dims];
    for (qi, q) in queries.chunks_exact(dims).enumerate() {
        let mut cand: Vec<u32> = partial
            .iter()
            .flat_map(|t| t[qi].items.iter().map(|&(_, r)| r))
            .collect();
        cand.sort_unstable();
        cand.dedup();
        let mut scored: Vec<(f64, u32)> = cand
            .into_iter()
            .map(|r| {
                synth.base_row(r as u64, &mut row);
                let s: f64 = q.iter().zip(&row).map(|(&a, &b)| a as f64 * b as f64).sum();
                (s, r)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ids.extend(scored.iter().take(k).map(|&(_, r)| r));
    }
    Ok(Truth { k, ids })
}

/// The measurement's settings.
#[derive(Debug, Clone)]
pub struct ScaleMeasure {
    /// Held-out queries.
    pub queries: usize,
    /// efSearch values, one measurement each.
    pub expansion_search: Vec<usize>,
    /// Partitioned builds: partitions searched per query, one measurement per value and efSearch.
    pub probe: Vec<usize>,
    /// Threads for the exact search and for QPS.
    pub threads: usize,
    /// Time the query set for at least this many seconds per efSearch.
    pub min_seconds: f64,
    /// Progress on stderr.
    pub progress: bool,
}

/// Opening the saved index as a view.
#[derive(Debug, Clone, Serialize)]
pub struct OpenResult {
    /// Bytes of the index file.
    pub file_bytes: u64,
    /// Seconds from nothing to a searchable view: create, `view`, reserve the search threads.
    pub open_s: f64,
    /// Memory just before opening.
    pub rss_before_open: Rss,
    /// Memory just after (the view's pages are file-backed: counted in `rss_file_bytes` as they
    /// are touched, not in `rss_anon_bytes`).
    pub rss_after_open: Rss,
}

/// One efSearch of the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleSearch {
    /// efSearch.
    pub expansion_search: usize,
    /// Partitions searched per query (`None`: one HNSW index).
    pub probe: Option<usize>,
    /// Queries in the set.
    pub queries: usize,
    /// Threads sharing the query set for the QPS.
    pub threads: usize,
    /// Timed passes over the set.
    pub rounds: usize,
    /// Queries per second, the set split over `threads`.
    pub qps: f64,
    /// recall@5 against the exact top-5.
    pub recall_at_5: f64,
    /// recall@10 against the exact top-10 (10 results asked).
    pub recall_at_10: f64,
    /// Median single-thread latency, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub latency_p99_ms: f64,
    /// Memory after this efSearch's passes.
    pub rss_after: Rss,
}

/// The measurement of a complete build.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Opening the view.
    pub open: OpenResult,
    /// Seconds of the exact top-10 (0 when read from the folder's cache).
    pub truth_s: f64,
    /// The exact top-10 came from `truth-q<queries>-k10.u32` in the folder.
    pub truth_cached: bool,
    /// Per efSearch.
    pub searches: Vec<ScaleSearch>,
}

/// Opens the complete build in `dir` as a view and measures it (see the module doc). Run it in a
/// fresh process for memory figures that are the view's alone.
pub fn measure_scale(dir: &Path, params: &ScaleParams, cfg: &ScaleMeasure) -> Result<Measurement> {
    let state = read_state(dir, params)?.ok_or_else(|| format_err(&dir.join(STATE_FILE), "missing: build first"))?;
    if !state.complete {
        return Err(format_err(
            &dir.join(STATE_FILE),
            format!(
                "the build holds {}/{} rows; rerun the build to finish it",
                state.rows_done, params.n
            ),
        ));
    }
    if cfg.queries == 0 || cfg.expansion_search.is_empty() || cfg.expansion_search.contains(&0) {
        return Err(RetrievalError::Input(
            "--queries and every --ef must be positive".into(),
        ));
    }
    let threads = cfg.threads.max(1);
    if params.partitions > 1 && (cfg.probe.is_empty() || cfg.probe.contains(&0)) {
        return Err(RetrievalError::Input("every --probe must be positive".into()));
    }
    let index_path = dir.join(INDEX_FILE);
    let rss_before_open = Rss::now();
    let t = Instant::now();
    let opened = if params.partitions > 1 {
        let spec = crate::partition::PartitionSpec {
            dims: params.dims,
            quantization: params.quantization,
            hnsw: params.hnsw(),
        };
        Opened::Parts(crate::partition::PartitionedIndex::open(
            dir,
            spec,
            params.partitions,
            threads,
            true,
        )?)
    } else {
        Opened::One(open_view(
            &index_path,
            params.dims,
            params.quantization,
            &params.hnsw(),
            threads,
        )?)
    };
    let open_s = t.elapsed().as_secs_f64();
    let rss_after_open = Rss::now();
    let (size, file_bytes) = match &opened {
        Opened::One(v) => (
            v.size(),
            std::fs::metadata(&index_path).map_err(io_err(&index_path))?.len(),
        ),
        Opened::Parts(ix) => (ix.size(), state.file_bytes),
    };
    if size as u64 != params.n {
        return Err(format_err(
            &index_path,
            format!("holds {size} vectors; expected {}", params.n),
        ));
    }
    let synth = params.synthetic()?;
    let queries = synth.queries(cfg.queries);
    let truth_path = truth_path(dir, cfg.queries);
    let t = Instant::now();
    let (truth, truth_cached) = match Truth::read(&truth_path, cfg.queries, params.n as usize) {
        Ok(tr) if tr.k == TRUTH_K => (tr, true),
        _ => {
            let tr = exact_top_k(&synth, params.n, &queries, TRUTH_K, threads, cfg.progress)?;
            let bytes: Vec<u8> = tr.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
            std::fs::write(&truth_path, bytes).map_err(io_err(&truth_path))?;
            (tr, false)
        }
    };
    let truth_s = if truth_cached { 0.0 } else { t.elapsed().as_secs_f64() };
    let queries = RawVectors::from_vec(queries, params.dims)?;
    let mut searches = Vec::new();
    let probes: Vec<Option<usize>> = match &opened {
        Opened::One(_) => vec![None],
        Opened::Parts(_) => cfg.probe.iter().map(|&p| Some(p)).collect(),
    };
    for probe in probes {
        for &ef in &cfg.expansion_search {
            let (r, found) = match (&opened, probe) {
                (Opened::Parts(ix), Some(probe)) => {
                    ix.change_expansion_search(ef);
                    let search = |q: usize| -> Result<Vec<u64>> {
                        Ok(ix
                            .search(queries.row(q), TRUTH_K, probe)?
                            .into_iter()
                            .map(|(k, _)| k)
                            .collect())
                    };
                    measure_with(&search, queries.rows(), &truth, TRUTH_K, ef, threads, cfg.min_seconds)?
                }
                (Opened::One(view), _) => measure_search_found(
                    view,
                    params.feed(),
                    &queries,
                    &truth,
                    TRUTH_K,
                    ef,
                    threads,
                    cfg.min_seconds,
                )?,
                (Opened::Parts(_), None) => unreachable!("partitioned measurements have a probe"),
            };
            searches.push(ScaleSearch {
                expansion_search: ef,
                probe,
                queries: r.queries,
                threads: r.threads,
                rounds: r.rounds,
                qps: r.qps,
                recall_at_5: recall_at_k(&found, &truth, 5),
                recall_at_10: r.recall,
                latency_p50_ms: r.latency_p50_ms,
                latency_p99_ms: r.latency_p99_ms,
                rss_after: Rss::now(),
            });
        }
    }
    Ok(Measurement {
        open: OpenResult {
            file_bytes,
            open_s,
            rss_before_open,
            rss_after_open,
        },
        truth_s,
        truth_cached,
        searches,
    })
}

/// The index a measurement opened.
enum Opened {
    One(usearch::Index),
    Parts(crate::partition::PartitionedIndex),
}

/// The cached exact top-10 of the first `queries` queries in `dir`.
pub fn truth_path(dir: &Path, queries: usize) -> PathBuf {
    dir.join(format!("truth-q{queries}-k{TRUTH_K}.u32"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u64) -> ScaleParams {
        ScaleParams {
            n,
            dims: 64,
            quantization: Quantization::I8,
            connectivity: 16,
            expansion_add: 64,
            centres: 40,
            noise: 0.75,
            seed: 5,
            partitions: 1,
        }
    }

    fn build(p: ScaleParams, chunk_rows: u64, max_chunks: Option<u64>) -> ScaleBuild {
        ScaleBuild {
            params: p,
            threads: 2,
            chunk_rows,
            budget_s: 1e9,
            checkpoint_s: None,
            max_chunks,
            progress: false,
        }
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut t = TopK::new(3);
        for (s, r) in [(0.1, 0), (0.5, 1), (0.3, 2), (0.9, 3), (0.2, 4), (0.5, 5)] {
            t.push(s, r);
        }
        assert_eq!(t.items, vec![(0.9, 3), (0.5, 1), (0.5, 5)]);
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!((dot(&a, &b) as f64 - want).abs() < 1e-3);
    }

    #[test]
    fn exact_top_k_matches_a_sort_of_every_score() {
        // Reference: every score in f64, sorted; computed here independently of the blocks,
        // threads and candidate lists of exact_top_k.
        let p = params(1000);
        let synth = p.synthetic().unwrap();
        let queries = synth.queries(7);
        let truth = exact_top_k(&synth, 1000, &queries, 10, 3, false).unwrap();
        let mut row = vec![0f32; 64];
        for (qi, q) in queries.chunks_exact(64).enumerate() {
            let mut all: Vec<(f64, u32)> = (0..1000u32)
                .map(|r| {
                    synth.base_row(r as u64, &mut row);
                    (q.iter().zip(&row).map(|(&a, &b)| a as f64 * b as f64).sum(), r)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = all[..10].iter().map(|x| x.1).collect();
            assert_eq!(truth.of(qi, 10), &want[..], "query {qi}");
        }
    }

    #[test]
    fn a_resumed_build_has_every_row_and_the_recall_of_an_uninterrupted_one() {
        let n = 20_000;
        let p = params(n);
        let m = ScaleMeasure {
            queries: 100,
            expansion_search: vec![64],
            probe: vec![],
            threads: 2,
            min_seconds: 0.0,
            progress: false,
        };
        // Uninterrupted.
        let whole = tempfile::tempdir().unwrap();
        let call = build_scale(whole.path(), &build(p, 4096, None), Instant::now()).unwrap();
        assert!(call.state.complete && call.stopped.is_none());
        assert_eq!((call.rows_this_call, call.state.calls, call.state.saves), (n, 1, 1));
        let a = measure_scale(whole.path(), &p, &m).unwrap();
        // Three calls of at most two chunks of 3000 rows: 6000, 12000, 18000, then the rest.
        let parts = tempfile::tempdir().unwrap();
        let mut done = Vec::new();
        for _ in 0..4 {
            let c = build_scale(parts.path(), &build(p, 3000, Some(2)), Instant::now()).unwrap();
            done.push(c.state.rows_done);
            // Measuring an unfinished build is refused.
            if !c.state.complete {
                assert!(c.stopped.unwrap().contains("max-chunks"));
                let e = measure_scale(parts.path(), &p, &m).unwrap_err().to_string();
                assert!(e.contains("rerun the build"), "{e}");
            }
        }
        assert_eq!(done, vec![6000, 12000, 18000, 20000]);
        let state = read_state(parts.path(), &p).unwrap().unwrap();
        assert!(state.complete);
        assert_eq!((state.calls, state.saves), (4, 4));
        assert!(state.peak_rss_bytes > 0 && state.file_bytes > n * 64);
        // A fifth call does nothing.
        let c = build_scale(parts.path(), &build(p, 3000, Some(2)), Instant::now()).unwrap();
        assert_eq!((c.rows_this_call, c.state.calls), (0, 4));
        // Every key is in the saved index, and nothing else.
        let view = open_view(&parts.path().join(INDEX_FILE), 64, Quantization::I8, &p.hnsw(), 2).unwrap();
        assert_eq!(view.size() as u64, n);
        assert!((0..n).all(|k| view.contains(k)));
        assert!(!view.contains(n));
        let b = measure_scale(parts.path(), &p, &m).unwrap();
        let (ra, rb) = (a.searches[0].recall_at_5, b.searches[0].recall_at_5);
        // Both are HNSW over the same vectors: near-exact at this size, and within noise of each
        // other (insertion order across threads differs between any two builds).
        assert!(ra > 0.9 && rb > 0.9 && (ra - rb).abs() < 0.03, "recall@5 {ra} vs {rb}");
        assert!(!a.truth_cached && !b.truth_cached);
        // The exact top-10 is cached in the folder and read back the same.
        let again = measure_scale(parts.path(), &p, &m).unwrap();
        assert!(again.truth_cached);
        assert_eq!(again.searches[0].recall_at_10, b.searches[0].recall_at_10);
    }

    #[test]
    fn another_build_in_the_same_folder_is_refused_naming_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = params(500);
        build_scale(dir.path(), &build(p, 100, Some(1)), Instant::now()).unwrap();
        let mut q = p;
        q.connectivity = 32;
        q.seed = 6;
        let e = build_scale(dir.path(), &build(q, 100, None), Instant::now())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scale.json") && e.contains("connectivity: saved 16, asked 32") && e.contains("seed: saved 5"),
            "{e}"
        );
    }

    #[test]
    fn a_budget_too_small_for_a_save_stops_before_inserting() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = build(params(500), 100, None);
        b.budget_s = 0.0;
        let c = build_scale(dir.path(), &b, Instant::now()).unwrap();
        assert_eq!((c.rows_this_call, c.state.rows_done), (0, 0));
        assert!(c.stopped.unwrap().starts_with("budget"));
        assert!(!c.state.complete);
    }

    #[test]
    fn a_partitioned_build_resumes_by_partitions_and_finds_the_exact_neighbours() {
        let n = 20_000;
        let mut p = params(n);
        p.partitions = 8;
        let m = ScaleMeasure {
            queries: 100,
            expansion_search: vec![64],
            probe: vec![1, 3],
            threads: 2,
            min_seconds: 0.0,
            progress: false,
        };
        let dir = tempfile::tempdir().unwrap();
        // At most 3 partitions per call: 3 + 3 + 2.
        let mut parts_done = Vec::new();
        for _ in 0..3 {
            let c = build_scale(dir.path(), &build(p, 4096, Some(3)), Instant::now()).unwrap();
            parts_done.push(c.state.parts_done);
            if !c.state.complete {
                assert!(c.stopped.unwrap().contains("max-chunks"));
                let e = measure_scale(dir.path(), &p, &m).unwrap_err().to_string();
                assert!(e.contains("rerun the build"), "{e}");
            }
        }
        assert_eq!(parts_done, vec![3, 6, 8]);
        let state = read_state(dir.path(), &p).unwrap().unwrap();
        assert!(state.complete && state.rows_done == n && state.calls == 3);
        assert!(state.part_rows_min > 0 && state.part_rows_max < n);
        let r = measure_scale(dir.path(), &p, &m).unwrap();
        assert_eq!(r.searches.len(), 2);
        assert_eq!((r.searches[0].probe, r.searches[1].probe), (Some(1), Some(3)));
        // Against the exact top-10 of the regenerated base (40 clusters of 500 in 8 partitions).
        let r3 = r.searches[1].recall_at_5;
        assert!(r3 > 0.9 && r3 >= r.searches[0].recall_at_5 - 0.02, "recall@5 {r3}");
        // The same folder asked as a single index is another build.
        let e = build_scale(dir.path(), &build(params(n), 4096, None), Instant::now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions: saved 8, asked 1"), "{e}");
    }

    #[test]
    fn a_state_written_before_partitions_existed_reads_as_one_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = params(500);
        build_scale(dir.path(), &build(p, 100, Some(1)), Instant::now()).unwrap();
        let path = dir.path().join(STATE_FILE);
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["params"].as_object_mut().unwrap().remove("partitions");
        for f in ["train_s", "assign_s", "parts_done", "part_rows_max", "part_rows_min"] {
            v.as_object_mut().unwrap().remove(f);
        }
        std::fs::write(&path, v.to_string()).unwrap();
        let s = read_state(dir.path(), &p).unwrap().unwrap();
        assert_eq!((s.params.partitions, s.rows_done), (1, 100));
    }
}
