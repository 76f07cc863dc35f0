//! A partition-routed HNSW index: spherical k-means centroids route each query to a few
//! partitions, and each partition is an ordinary usearch HNSW graph (IVF with HNSW lists).
//!
//! One HNSW graph over many well-separated clusters routes badly: its upper layers are searched
//! greedily with a candidate list of one, and when every pair of clusters has a cosine near zero
//! there is no gradient to follow from the entry point to the query's cluster, while layer 0
//! links almost only within a cluster. A query that enters the wrong cluster then finds none of
//! its neighbours (`docs/retrieval.md`, "The 21M run": recall@5 0.32-0.60 at 21M). Here an exact
//! scoring of the query against the `P` centroids replaces that routing: the `probe` best
//! partitions are searched with the usual efSearch and their results merged by score.
//!
//! - [`train_centroids`]: spherical k-means (unit centroids, inner-product assignment) on a
//!   sample of rows ([`sample_rows`]: evenly strided), deterministic from a seed and independent
//!   of the thread count.
//! - [`assign_rows`]: every row goes to its nearest centroid (ties to the lower index).
//! - [`build_partitions`]: one usearch index per partition (key = the global row number, the
//!   same storage, metric and `M`/efConstruction as a single index), built whole partitions per
//!   thread when there are many, else one after another with all threads.
//! - [`PartitionedIndex`]: in memory or opened from a folder, searched with `probe`.
//!
//! Files in a folder (all little-endian):
//!
//! ```text
//! DIR/centroids.f32        P × dims f32, unit rows (partition p = row p)
//! DIR/part-00000.usearch   partition 0's usearch index (saved whole, then renamed into place)
//! DIR/part-00001.usearch   ...
//! ```
//!
//! usearch needs one reserved thread context per concurrent call on each index; opening
//! reserves `threads` contexts on every partition, and callers must not search from more
//! threads at once than that.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::builder::usearch_index;
use crate::error::{format_err, io_err, usearch_err, Result, RetrievalError};
use crate::manifest::{HnswParams, Quantization};
use crate::quant::quantize_max_abs;

/// The centroids file of a partitioned index folder.
pub const CENTROIDS_FILE: &str = "centroids.f32";

/// The file name of partition `p`'s usearch index.
pub fn part_file(p: usize) -> String {
    format!("part-{p:05}.usearch")
}

/// The default partition count for `n` rows: 1 (a single HNSW index) under 200,000 rows,
/// otherwise about one partition per 20,000 rows, at most 4096.
pub fn default_partitions(n: u64) -> usize {
    if n < 200_000 {
        1
    } else {
        (n / 20_000).clamp(1, 4096) as usize
    }
}

/// The default number of partitions searched per query.
pub const DEFAULT_PROBE: usize = 4;

/// How the centroids are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KMeansConfig {
    /// Partitions (`P`).
    pub partitions: usize,
    /// Rows sampled for training: at most this many (and at least `partitions`).
    pub sample_rows: usize,
    /// Lloyd iterations.
    pub iterations: usize,
    /// Seed of the initial centroids.
    pub seed: u64,
}

impl KMeansConfig {
    /// `partitions` partitions, trained on `256 · P` rows (faiss's default cap per centroid), at
    /// least 32,768 and at most 1,048,576, 10 iterations, seed 0. Fewer rows per centroid route
    /// worse: on the synthetic set with 8 clusters per partition, 8 sample rows per cluster kept
    /// 96 % of a query's cluster in its first partition, 32 rows 99.9 % (numpy sweep, session 6).
    pub fn new(partitions: usize) -> Self {
        Self {
            partitions,
            sample_rows: (256 * partitions).clamp(32_768, 1 << 20),
            iterations: 10,
            seed: 0,
        }
    }
}

/// `count` row numbers evenly strided over `0..n` (all of them when `count >= n`), ascending.
pub fn sample_rows(n: u64, count: usize) -> Vec<u64> {
    if count as u64 >= n {
        return (0..n).collect();
    }
    (0..count as u64)
        .map(|i| (i as u128 * n as u128 / count as u128) as u64)
        .collect()
}

/// SplitMix64 step.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `a · b` in f32 with eight independent partial sums (vectorisable; fixed order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Centroids per tile of [`CentroidTiles`].
const TILE: usize = 16;
/// Rows scored together against a tile.
const ROWS: usize = 4;

/// Centroids laid out for scoring many rows: tiles of 16 centroids, dims-major within a tile
/// (zero-padded), so the inner loop broadcasts one component of 4 rows and multiplies it into
/// 16 contiguous centroid components (4 × 16 accumulators: registers with AVX2).
pub struct CentroidTiles {
    tiles: Vec<f32>,
    partitions: usize,
    dims: usize,
}

impl CentroidTiles {
    /// Lays out `centroids` (`P × dims`, row-major).
    pub fn new(centroids: &[f32], dims: usize) -> Self {
        let partitions = centroids.len().checked_div(dims).unwrap_or(0);
        let mut tiles = vec![0f32; partitions.div_ceil(TILE) * dims * TILE];
        for (c, row) in centroids.chunks_exact(dims).enumerate() {
            let base = (c / TILE) * dims * TILE + c % TILE;
            for (i, &v) in row.iter().enumerate() {
                tiles[base + i * TILE] = v;
            }
        }
        Self {
            tiles,
            partitions,
            dims,
        }
    }

    /// The nearest centroid (largest inner product, ties to the lower index) and its score for
    /// each row of `rows` (row-major), on the calling thread. Each score is summed over the
    /// components in order in f32; the AVX2 path (taken when the CPU has it) does the same
    /// multiplications and additions, so the results do not depend on the CPU.
    pub fn nearest(&self, rows: &[f32]) -> Vec<(u32, f32)> {
        let n = rows.len().checked_div(self.dims).unwrap_or(0);
        let mut best = vec![(0u32, f32::NEG_INFINITY); n];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { self.nearest_avx2(rows, &mut best) };
            return best;
        }
        self.nearest_into(rows, &mut best);
        best
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn nearest_avx2(&self, rows: &[f32], best: &mut [(u32, f32)]) {
        self.nearest_into(rows, best)
    }

    #[inline(always)]
    fn nearest_into(&self, rows: &[f32], best: &mut [(u32, f32)]) {
        let d = self.dims;
        // Blocks of 64 rows stay in cache while every tile passes over them.
        for (bi, block) in rows.chunks(64 * d).enumerate() {
            let best = &mut best[bi * 64..bi * 64 + block.len() / d];
            let m = block.len() / d;
            for (t, tile) in self.tiles.chunks_exact(d * TILE).enumerate() {
                let live = TILE.min(self.partitions - t * TILE);
                let mut r0 = 0;
                while r0 < m {
                    let nr = ROWS.min(m - r0);
                    let mut x: [&[f32]; ROWS] = [&block[r0 * d..(r0 + 1) * d]; ROWS];
                    for (r, xr) in x.iter_mut().enumerate().take(nr).skip(1) {
                        *xr = &block[(r0 + r) * d..(r0 + r + 1) * d];
                    }
                    let mut acc = [[0f32; TILE]; ROWS];
                    for (i, c) in tile.chunks_exact(TILE).enumerate() {
                        let c: &[f32; TILE] = c.try_into().expect("a whole tile row");
                        for (a, xr) in acc.iter_mut().zip(&x) {
                            let b = xr[i];
                            for l in 0..TILE {
                                a[l] += b * c[l];
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate().take(nr) {
                        for (l, &score) in a.iter().enumerate().take(live) {
                            if score > best[r0 + r].1 {
                                best[r0 + r] = ((t * TILE + l) as u32, score);
                            }
                        }
                    }
                    r0 += ROWS;
                }
            }
        }
    }
}

/// The nearest centroid (largest inner product, ties to the lower index) and its score for each
/// row of `rows` (row-major, `dims` wide), on the calling thread (see [`CentroidTiles::nearest`]).
pub fn nearest_centroids(centroids: &[f32], dims: usize, rows: &[f32]) -> Vec<(u32, f32)> {
    CentroidTiles::new(centroids, dims).nearest(rows)
}

/// [`nearest_centroids`] over `threads` threads (the same result whatever the thread count).
pub fn nearest_centroids_par(centroids: &[f32], dims: usize, rows: &[f32], threads: usize) -> Vec<(u32, f32)> {
    let tiles = CentroidTiles::new(centroids, dims);
    let n = rows.len() / dims;
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return tiles.nearest(rows);
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(per * dims)
            .map(|chunk| {
                let tiles = &tiles;
                s.spawn(move || tiles.nearest(chunk))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an assignment thread panicked"))
            .collect()
    })
}

/// The `probe` centroids with the largest inner product with `q`, best first (ties to the lower
/// index).
pub fn top_centroids(centroids: &[f32], dims: usize, q: &[f32], probe: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = centroids
        .chunks_exact(dims)
        .enumerate()
        .map(|(c, cen)| (dot(cen, q), c))
        .collect();
    let probe = probe.min(scored.len());
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if probe > 0 && probe < scored.len() {
        scored.select_nth_unstable_by(probe - 1, order);
        scored.truncate(probe);
    }
    scored.sort_by(order);
    scored.into_iter().map(|(_, c)| c).collect()
}

/// Scales `x` to unit L2 norm; a zero vector stays zero.
fn normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        x.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
    }
}

/// Spherical k-means on `sample` (row-major unit vectors, `dims` wide): `partitions` unit
/// centroids, row-major. Initial centroids are distinct sample rows picked by a seeded shuffle;
/// each iteration assigns every row to its nearest centroid and sets each centroid to the
/// normalised sum of its rows (summed in row order, so the result does not depend on
/// `threads`); a centroid left without rows takes the sample row farthest from its own centroid.
pub fn train_centroids(
    sample: &[f32],
    dims: usize,
    partitions: usize,
    iterations: usize,
    seed: u64,
    threads: usize,
) -> Result<Vec<f32>> {
    let n = sample.len().checked_div(dims).unwrap_or(0);
    if dims == 0 || partitions == 0 || n < partitions || sample.len() != n * dims {
        return Err(RetrievalError::Input(format!(
            "k-means: {partitions} partitions from {n} sample rows of {dims} dims: expected 1 <= partitions <= rows"
        )));
    }
    // Partial Fisher-Yates: the first `partitions` of a seeded permutation.
    let mut perm: Vec<usize> = (0..n).collect();
    let mut x = seed;
    for i in 0..partitions {
        let j = i + (splitmix(&mut x) % (n - i) as u64) as usize;
        perm.swap(i, j);
    }
    let mut cen = vec![0f32; partitions * dims];
    for (c, &r) in cen.chunks_exact_mut(dims).zip(&perm[..partitions]) {
        c.copy_from_slice(&sample[r * dims..(r + 1) * dims]);
    }
    for _ in 0..iterations {
        let assigned = nearest_centroids_par(&cen, dims, sample, threads);
        // Rows of each centroid, in row order (counting sort).
        let mut start = vec![0usize; partitions + 1];
        for &(c, _) in &assigned {
            start[c as usize + 1] += 1;
        }
        for c in 0..partitions {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut members = vec![0usize; n];
        for (r, &(c, _)) in assigned.iter().enumerate() {
            members[fill[c as usize]] = r;
            fill[c as usize] += 1;
        }
        let threads = threads.clamp(1, partitions);
        let per = partitions.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, chunk) in cen.chunks_mut(per * dims).enumerate() {
                let (start, members) = (&start, &members);
                s.spawn(move || {
                    for (i, c) in chunk.chunks_exact_mut(dims).enumerate() {
                        let p = t * per + i;
                        let rows = &members[start[p]..start[p + 1]];
                        if rows.is_empty() {
                            continue;
                        }
                        c.iter_mut().for_each(|v| *v = 0.0);
                        for &r in rows {
                            for (v, x) in c.iter_mut().zip(&sample[r * dims..(r + 1) * dims]) {
                                *v += x;
                            }
                        }
                        normalize(c);
                    }
                });
            }
        });
        // Empty centroids take the rows farthest from their centroids (distinct rows).
        let empty: Vec<usize> = (0..partitions).filter(|&c| start[c] == start[c + 1]).collect();
        if !empty.is_empty() {
            let mut far: Vec<(f32, usize)> = assigned.iter().enumerate().map(|(r, &(_, s))| (s, r)).collect();
            far.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (&c, &(_, r)) in empty.iter().zip(&far) {
                cen[c * dims..(c + 1) * dims].copy_from_slice(&sample[r * dims..(r + 1) * dims]);
            }
        }
    }
    Ok(cen)
}

/// Rows grouped by partition: partition `p` holds `rows[start[p]..start[p + 1]]`, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLists {
    /// Offsets into `rows`, `P + 1` of them.
    pub start: Vec<usize>,
    /// Row numbers, grouped by partition.
    pub rows: Vec<u64>,
}

impl PartitionLists {
    /// Groups rows by their partition (`assignment[row]`, each below `partitions`).
    pub fn new(assignment: &[u32], partitions: usize) -> Result<Self> {
        let mut start = vec![0usize; partitions + 1];
        for (r, &p) in assignment.iter().enumerate() {
            if p as usize >= partitions {
                return Err(RetrievalError::Input(format!(
                    "row {r} is assigned to partition {p}, but there are {partitions}"
                )));
            }
            start[p as usize + 1] += 1;
        }
        for p in 0..partitions {
            start[p + 1] += start[p];
        }
        let mut fill = start.clone();
        let mut rows = vec![0u64; assignment.len()];
        for (r, &p) in assignment.iter().enumerate() {
            rows[fill[p as usize]] = r as u64;
            fill[p as usize] += 1;
        }
        Ok(Self { start, rows })
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.start.len() - 1
    }

    /// Partition `p`'s rows.
    pub fn of(&self, p: usize) -> &[u64] {
        &self.rows[self.start[p]..self.start[p + 1]]
    }
}

/// The nearest centroid of every row `0..n`, rows fetched by `row` in blocks on `threads`
/// threads (the result does not depend on the thread count).
pub fn assign_rows(
    centroids: &[f32],
    dims: usize,
    n: u64,
    threads: usize,
    row: &(dyn Fn(u64, &mut [f32]) + Sync),
) -> Vec<u32> {
    const BLOCK: usize = 256;
    let tiles = CentroidTiles::new(centroids, dims);
    let blocks = (n as usize).div_ceil(BLOCK);
    let next = AtomicUsize::new(0);
    let out: Vec<std::sync::atomic::AtomicU32> = (0..n).map(|_| std::sync::atomic::AtomicU32::new(0)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, blocks.max(1)) {
            s.spawn(|| {
                let mut buf = vec![0f32; BLOCK * dims];
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= blocks {
                        return;
                    }
                    let lo = b * BLOCK;
                    let hi = (lo + BLOCK).min(n as usize);
                    let rows = &mut buf[..(hi - lo) * dims];
                    for (i, r) in rows.chunks_exact_mut(dims).enumerate() {
                        row((lo + i) as u64, r);
                    }
                    for (i, (c, _)) in tiles.nearest(rows).into_iter().enumerate() {
                        out[lo + i].store(c, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    out.into_iter().map(|a| a.into_inner()).collect()
}

/// Adds one f32 row to an index: i8 storage gets our max-abs quantization (as everywhere in this
/// crate), f16/f32 usearch's conversion.
fn add_row(index: &usearch::Index, quantization: Quantization, key: u64, row: &[f32], buf: &mut [i8]) -> Result<()> {
    match quantization {
        Quantization::I8 => {
            quantize_max_abs(row, buf);
            index.add(key, &*buf)
        }
        Quantization::F32 | Quantization::F16 => index.add(key, row),
    }
    .map_err(usearch_err("adding a vector"))
}

/// What [`build_partitions`] builds each index with.
#[derive(Debug, Clone, Copy)]
pub struct PartitionSpec {
    /// Vector width.
    pub dims: usize,
    /// Storage.
    pub quantization: Quantization,
    /// HNSW parameters (the same for every partition).
    pub hnsw: HnswParams,
}

/// Builds the usearch index of each partition in `todo` (key = row number, rows fetched by
/// `row`) and hands each finished one to `done`. With at least twice as many partitions as
/// threads, each thread builds whole partitions (single-threaded inserts, no contention);
/// otherwise the partitions are built one after another, each by all threads. `keep_going(p)` is
/// asked before partition `p` is started (false: it and the rest are left); the number of
/// partitions built is returned.
pub fn build_partitions(
    lists: &PartitionLists,
    todo: &[usize],
    spec: PartitionSpec,
    threads: usize,
    row: &(dyn Fn(u64, &mut [f32]) + Sync),
    keep_going: &(dyn Fn(usize) -> bool + Sync),
    done: &(dyn Fn(usize, usearch::Index) -> Result<()> + Sync),
) -> Result<usize> {
    let threads = threads.max(1);
    let built = AtomicUsize::new(0);
    if todo.len() >= 2 * threads {
        let next = AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        crate::workers::run(threads, "an insert", |_| {
            let mut f = vec![0f32; spec.dims];
            let mut q = vec![0i8; spec.dims];
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&p) = todo.get(i) else { return Ok(()) };
                if !keep_going(p) {
                    stop.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                let keys = lists.of(p);
                let index = usearch_index(spec.dims, spec.quantization, &spec.hnsw)?;
                index
                    .reserve_capacity_and_threads(keys.len().max(1), 1)
                    .map_err(usearch_err("reserving capacity"))?;
                for &k in keys {
                    row(k, &mut f);
                    add_row(&index, spec.quantization, k, &f, &mut q)?;
                }
                if let Err(e) = done(p, index) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                built.fetch_add(1, Ordering::Relaxed);
            }
        })?;
    } else {
        for &p in todo {
            if !keep_going(p) {
                break;
            }
            let keys = lists.of(p);
            let index = usearch_index(spec.dims, spec.quantization, &spec.hnsw)?;
            index
                .reserve_capacity_and_threads(keys.len().max(1), threads)
                .map_err(usearch_err("reserving capacity"))?;
            let next = AtomicUsize::new(0);
            crate::workers::run(threads.min(keys.len().max(1)), "an insert", |_| {
                let mut f = vec![0f32; spec.dims];
                let mut q = vec![0i8; spec.dims];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&k) = keys.get(i) else { return Ok(()) };
                    row(k, &mut f);
                    add_row(&index, spec.quantization, k, &f, &mut q)?;
                }
            })?;
            done(p, index)?;
            built.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(built.into_inner())
}

/// Writes `bytes` to `path` through `path.partial` and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| format_err(path, "the index path must be valid UTF-8 for usearch"))
}

/// Saves centroids (`P × dims` f32) as `DIR/centroids.f32`.
pub fn save_centroids(dir: &Path, centroids: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = centroids.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(&dir.join(CENTROIDS_FILE), &bytes)
}

/// Reads `DIR/centroids.f32`, which must hold `partitions × dims` f32.
pub fn read_centroids(dir: &Path, partitions: usize, dims: usize) -> Result<Vec<f32>> {
    let path = dir.join(CENTROIDS_FILE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let want = partitions * dims * 4;
    if bytes.len() != want {
        return Err(format_err(
            &path,
            format!(
                "holds {} bytes; expected {partitions} partitions × {dims} f32 = {want} bytes",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Saves one partition's index as `DIR/part-NNNNN.usearch` (through a `.partial` file and a
/// rename, so a present file is always complete).
pub fn save_part(dir: &Path, p: usize, index: &usearch::Index) -> Result<()> {
    let path = dir.join(part_file(p));
    let tmp = partial_path(&path);
    index.save(path_str(&tmp)?).map_err(usearch_err("saving a partition"))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Partition-routed HNSW: centroids and one usearch index per partition (see the module doc).
pub struct PartitionedIndex {
    spec: PartitionSpec,
    centroids: Vec<f32>,
    parts: Vec<usearch::Index>,
}

impl std::fmt::Debug for PartitionedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedIndex")
            .field("partitions", &self.parts.len())
            .field("size", &self.size())
            .finish()
    }
}

impl PartitionedIndex {
    /// Builds an index in memory over `data` (row-major f32 unit vectors, `spec.dims` wide; key =
    /// row number): k-means on a strided sample, assignment, one HNSW graph per partition, then
    /// `search_threads` search contexts reserved on each.
    pub fn build(
        data: &[f32],
        spec: PartitionSpec,
        kmeans: &KMeansConfig,
        threads: usize,
        search_threads: usize,
    ) -> Result<Self> {
        let dims = spec.dims;
        if dims == 0 || !data.len().is_multiple_of(dims) {
            return Err(RetrievalError::Input(format!(
                "{} values are not whole rows of {dims}",
                data.len()
            )));
        }
        let n = (data.len() / dims) as u64;
        let sample_ids = sample_rows(n, kmeans.sample_rows.max(kmeans.partitions));
        let mut sample = Vec::with_capacity(sample_ids.len() * dims);
        for &r in &sample_ids {
            sample.extend_from_slice(&data[r as usize * dims..(r as usize + 1) * dims]);
        }
        let centroids = train_centroids(
            &sample,
            dims,
            kmeans.partitions,
            kmeans.iterations,
            kmeans.seed,
            threads,
        )?;
        drop(sample);
        let row = |r: u64, out: &mut [f32]| out.copy_from_slice(&data[r as usize * dims..(r as usize + 1) * dims]);
        let assignment = assign_rows(&centroids, dims, n, threads, &row);
        let lists = PartitionLists::new(&assignment, kmeans.partitions)?;
        let slots: Mutex<Vec<Option<usearch::Index>>> = Mutex::new((0..kmeans.partitions).map(|_| None).collect());
        let todo: Vec<usize> = (0..kmeans.partitions).collect();
        build_partitions(&lists, &todo, spec, threads, &row, &|_| true, &|p, index| {
            slots.lock().unwrap_or_else(|e| e.into_inner())[p] = Some(index);
            Ok(())
        })?;
        let parts: Vec<usearch::Index> = slots
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|i| i.expect("every partition is built"))
            .collect();
        for index in &parts {
            index
                .reserve_capacity_and_threads(index.size().max(1), search_threads.max(1))
                .map_err(usearch_err("reserving search threads"))?;
        }
        Ok(Self { spec, centroids, parts })
    }

    /// Saves the centroids and every partition into `dir` (created).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        save_centroids(dir, &self.centroids)?;
        for (p, index) in self.parts.iter().enumerate() {
            save_part(dir, p, index)?;
        }
        Ok(())
    }

    /// Opens `partitions` partitions saved in `dir`, memory-mapped (`view`) or read into memory,
    /// and reserves `search_threads` search contexts on each (view/load reset them).
    pub fn open(dir: &Path, spec: PartitionSpec, partitions: usize, search_threads: usize, view: bool) -> Result<Self> {
        let centroids = read_centroids(dir, partitions, spec.dims)?;
        let mut parts = Vec::with_capacity(partitions);
        for p in 0..partitions {
            let path = dir.join(part_file(p));
            if !path.is_file() {
                return Err(format_err(&path, "partition file missing; the build is unfinished"));
            }
            let index = usearch_index(spec.dims, spec.quantization, &spec.hnsw)?;
            if view {
                index
                    .view(path_str(&path)?)
                    .map_err(usearch_err("viewing a partition"))?;
            } else {
                index
                    .load(path_str(&path)?)
                    .map_err(usearch_err("loading a partition"))?;
            }
            if index.dimensions() != spec.dims {
                return Err(format_err(
                    &path,
                    format!("holds {}-d vectors; expected {}", index.dimensions(), spec.dims),
                ));
            }
            index
                .reserve_capacity_and_threads(index.size().max(1), search_threads.max(1))
                .map_err(usearch_err("reserving search threads"))?;
            parts.push(index);
        }
        Ok(Self { spec, centroids, parts })
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Vectors over all partitions.
    pub fn size(&self) -> usize {
        self.parts.iter().map(|p| p.size()).sum()
    }

    /// Vectors per partition.
    pub fn sizes(&self) -> Vec<usize> {
        self.parts.iter().map(|p| p.size()).collect()
    }

    /// Partition `p`'s index.
    pub fn part(&self, p: usize) -> &usearch::Index {
        &self.parts[p]
    }

    /// The centroids, row-major.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Whether row `key` is in some partition.
    pub fn contains(&self, key: u64) -> bool {
        self.parts.iter().any(|p| p.contains(key))
    }

    /// Sets efSearch on every partition (not while searches run).
    pub fn change_expansion_search(&self, ef: usize) {
        for p in &self.parts {
            p.change_expansion_search(ef);
        }
    }

    /// usearch's memory count, summed over partitions.
    pub fn memory_usage(&self) -> usize {
        self.parts.iter().map(|p| p.memory_usage()).sum()
    }

    /// The `k` best `(row, score)` of query `q` (f32, `dims` wide): the `probe` partitions whose
    /// centroids score highest are searched, and their results merged by score (higher first,
    /// ties to the lower row). The score is `1 - distance`: the inner product (f32/f16) or the
    /// cosine (i8) of the stored vectors.
    pub fn search(&self, q: &[f32], k: usize, probe: usize) -> Result<Vec<(u64, f32)>> {
        if q.len() != self.spec.dims {
            return Err(RetrievalError::Input(format!(
                "the query has {} components; the index holds {}-d vectors",
                q.len(),
                self.spec.dims
            )));
        }
        let mut buf = Vec::new();
        if self.spec.quantization == Quantization::I8 {
            buf.resize(q.len(), 0i8);
            quantize_max_abs(q, &mut buf);
        }
        let mut all: Vec<(u64, f32)> = Vec::with_capacity(k * probe.max(1));
        for p in top_centroids(&self.centroids, self.spec.dims, q, probe.max(1)) {
            let index = &self.parts[p];
            if index.size() == 0 {
                continue;
            }
            let m = if self.spec.quantization == Quantization::I8 {
                index.search(buf.as_slice(), k)
            } else {
                index.search(q, k)
            }
            .map_err(usearch_err("searching a partition"))?;
            all.extend(m.keys.iter().zip(&m.distances).map(|(&key, &d)| (key, 1.0 - d)));
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::synthetic::Synthetic;

    #[test]
    fn scores_agree_with_a_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!((dot(&a, &b) as f64 - want).abs() < 1e-4);
        // The tiled scores of 5 rows (a partial block of 4) against 19 centroids (a partial tile).
        let cen: Vec<f32> = (0..19 * 37).map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0).collect();
        let rows: Vec<f32> = (0..5 * 37).map(|i| ((i * 5 % 17) as f32 - 8.0) / 8.0).collect();
        let got = nearest_centroids(&cen, 37, &rows);
        for (r, row) in rows.chunks_exact(37).enumerate() {
            let scores: Vec<f64> = cen
                .chunks_exact(37)
                .map(|c| c.iter().zip(row).map(|(&x, &y)| x as f64 * y as f64).sum())
                .collect();
            let best = (0..19).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
            assert_eq!(got[r].0 as usize, best, "row {r}");
            assert!((got[r].1 as f64 - scores[best]).abs() < 1e-4);
        }
    }

    #[test]
    fn nearest_centroid_is_the_argmax_of_every_score() {
        let s = Synthetic::new(21, 9, 0.9, 1).unwrap();
        let mut rows = vec![0f32; 103 * 21];
        s.base_rows(0, &mut rows);
        let cen: Vec<f32> = (0..7).flat_map(|i| s.centre(i).to_vec()).collect();
        let got = nearest_centroids_par(&cen, 21, &rows, 3);
        assert_eq!(got.len(), 103);
        for (r, row) in rows.chunks_exact(21).enumerate() {
            // Reference: every score in f64, first maximum.
            let scores: Vec<f64> = cen
                .chunks_exact(21)
                .map(|c| c.iter().zip(row).map(|(&a, &b)| a as f64 * b as f64).sum())
                .collect();
            let best = (0..7).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
            assert_eq!(got[r].0 as usize, best, "row {r}: {scores:?}");
        }
        assert_eq!(got, nearest_centroids(&cen, 21, &rows));
        let q = &rows[..21];
        let top = top_centroids(&cen, 21, q, 3);
        let mut order: Vec<usize> = (0..7).collect();
        order.sort_by(|&a, &b| dot(&cen[b * 21..(b + 1) * 21], q).total_cmp(&dot(&cen[a * 21..(a + 1) * 21], q)));
        assert_eq!(top, order[..3]);
    }

    #[test]
    fn kmeans_finds_well_separated_clusters_whatever_the_thread_count() {
        // 6 clusters, tight noise: every cluster must end up whole in one partition.
        let s = Synthetic::new(32, 6, 0.3, 4).unwrap();
        let n = 1200;
        let mut rows = vec![0f32; n * 32];
        let labels: Vec<usize> = (0..n)
            .map(|r| s.base_row(r as u64, &mut rows[r * 32..(r + 1) * 32]))
            .collect();
        let a = train_centroids(&rows, 32, 6, 10, 3, 1).unwrap();
        let b = train_centroids(&rows, 32, 6, 10, 3, 4).unwrap();
        assert_eq!(a, b, "the thread count changes nothing");
        let assign = nearest_centroids(&a, 32, &rows);
        let mut map = [None; 6];
        for (r, &(p, _)) in assign.iter().enumerate() {
            let m = map[labels[r]].get_or_insert(p);
            assert_eq!(*m, p, "cluster {} split", labels[r]);
        }
        // Each centroid is close to its cluster's centre (cos ≈ 1/sqrt(1 + 0.3²/size) ≈ 1).
        for (c, m) in map.iter().enumerate() {
            let p = m.unwrap() as usize;
            assert!(dot(&a[p * 32..(p + 1) * 32], s.centre(c)) > 0.98);
        }
        assert!(train_centroids(&rows[..32 * 5], 32, 6, 1, 0, 1).is_err());
    }

    #[test]
    fn lists_group_rows_by_partition() {
        let l = PartitionLists::new(&[2, 0, 2, 1, 0], 4).unwrap();
        assert_eq!(
            (l.of(0), l.of(1), l.of(2), l.of(3)),
            (&[1u64, 4][..], &[3u64][..], &[0u64, 2][..], &[][..])
        );
        assert!(PartitionLists::new(&[0, 4], 4).is_err());
        assert_eq!(sample_rows(10, 4), vec![0, 2, 5, 7]);
        assert_eq!(sample_rows(3, 4), vec![0, 1, 2]);
        assert_eq!((default_partitions(199_999), default_partitions(21_015_324)), (1, 1050));
    }

    fn exact_top5(data: &[f32], dims: usize, q: &[f32]) -> Vec<u64> {
        let mut s: Vec<(f64, u64)> = data
            .chunks_exact(dims)
            .enumerate()
            .map(|(r, v)| (v.iter().zip(q).map(|(&a, &b)| a as f64 * b as f64).sum(), r as u64))
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        s[..5].iter().map(|x| x.1).collect()
    }

    fn recall5(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
        let hit: usize = found
            .iter()
            .zip(truth)
            .map(|(f, t)| f.iter().take(5).filter(|x| t.contains(x)).count())
            .sum();
        hit as f64 / (5 * truth.len()) as f64
    }

    /// Clustered data: the partitioned index against an exact top-5 (f64 brute force over the f32
    /// vectors). One HNSW graph over the same rows is printed beside it but not asserted: at a
    /// size a test can afford it does not fail (its failure needs thousands of large clusters,
    /// `docs/retrieval.md`); the routing failure itself is measured by `research bench
    /// search-scale --partitions`.
    #[test]
    fn partitioned_recall_against_exact_and_a_saved_copy_searches_the_same() {
        let (n, dims, centres) = (30_000usize, 96, 60);
        let s = Synthetic::new(dims, centres, 0.75, 11).unwrap();
        let mut data = vec![0f32; n * dims];
        s.base_rows(0, &mut data);
        let nq = 100;
        let queries = s.queries(nq);
        let truth: Vec<Vec<u64>> = queries.chunks_exact(dims).map(|q| exact_top5(&data, dims, q)).collect();
        let hnsw = HnswParams {
            connectivity: 16,
            expansion_add: 64,
            expansion_search: 64,
        };
        let spec = PartitionSpec {
            dims,
            quantization: Quantization::I8,
            hnsw,
        };

        // One graph over everything (printed only).
        let one = usearch_index(dims, Quantization::I8, &hnsw).unwrap();
        one.reserve_capacity_and_threads(n, 2).unwrap();
        let mut buf = vec![0i8; dims];
        for (r, v) in data.chunks_exact(dims).enumerate() {
            quantize_max_abs(v, &mut buf);
            one.add(r as u64, buf.as_slice()).unwrap();
        }
        let single: Vec<Vec<u64>> = queries
            .chunks_exact(dims)
            .map(|q| {
                quantize_max_abs(q, &mut buf);
                one.search(buf.as_slice(), 5).unwrap().keys
            })
            .collect();

        let kmeans = KMeansConfig {
            partitions: 30,
            sample_rows: 8192,
            iterations: 8,
            seed: 1,
        };
        let idx = PartitionedIndex::build(&data, spec, &kmeans, 2, 2).unwrap();
        assert_eq!(idx.partitions(), 30);
        // Every row is in exactly one partition: the sizes add up and each key is found.
        assert_eq!(idx.size(), n);
        assert!((0..n as u64).step_by(97).all(|k| idx.contains(k)));
        // Each row's partition is its nearest centroid.
        for r in (0..n).step_by(1013) {
            let p = nearest_centroids(idx.centroids(), dims, &data[r * dims..(r + 1) * dims])[0].0 as usize;
            assert!(idx.part(p).contains(r as u64), "row {r} not in partition {p}");
        }
        let search = |ix: &PartitionedIndex, probe: usize| -> Vec<Vec<(u64, f32)>> {
            queries
                .chunks_exact(dims)
                .map(|q| ix.search(q, 5, probe).unwrap())
                .collect()
        };
        let keys =
            |r: &[Vec<(u64, f32)>]| -> Vec<Vec<u64>> { r.iter().map(|l| l.iter().map(|x| x.0).collect()).collect() };
        let p1 = search(&idx, 1);
        let p3 = search(&idx, 3);
        let (r_one, r_p1, r_p3) = (
            recall5(&single, &truth),
            recall5(&keys(&p1), &truth),
            recall5(&keys(&p3), &truth),
        );
        eprintln!("recall@5: one HNSW {r_one:.3}; partitioned probe 1 {r_p1:.3}, probe 3 {r_p3:.3}");
        assert!(r_p3 >= 0.95, "partitioned recall@5 {r_p3} at probe 3");
        assert!(r_p3 >= r_p1 - 1e-9);
        // Results are ordered by score and scores are the cosine of the i8 vectors (≈ the f32 one).
        for (qi, list) in p3.iter().enumerate() {
            assert!(list.windows(2).all(|w| w[0].1 >= w[1].1));
            let q = &queries[qi * dims..(qi + 1) * dims];
            for &(r, score) in list {
                let exact = dot(q, &data[r as usize * dims..(r as usize + 1) * dims]);
                assert!((score - exact).abs() < 0.02, "row {r}: score {score} vs {exact}");
            }
        }
        // Saved and viewed again: the same results.
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let back = PartitionedIndex::open(dir.path(), spec, 30, 2, true).unwrap();
        assert_eq!(back.sizes(), idx.sizes());
        assert_eq!(search(&back, 3), p3);
        // A wrong partition count is a clear error naming the file.
        let e = PartitionedIndex::open(dir.path(), spec, 31, 2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("centroids.f32") && e.contains("31 partitions"), "{e}");
    }
}
