//! The decode GEMV route of [`linear`](super::linear): host-side planning (which layouts, launch
//! geometry, split-K) and the NVRTC compilation of `gemv.cu`.
//!
//! For `M ≤ 8` rows, bf16/f16, a forward linear product is a matrix-vector product bound by the
//! bytes of `W`; cuBLAS's kernels leave half the bandwidth unused on the 25–33 MB weights of a 7B
//! model (docs/benchmarks.md, run H). `gemv.cu` streams `W` once with 16-byte loads, several in
//! flight per thread, in the two layouts a weight can have (its doc comment gives the details):
//! - [`GemvLayout::KContiguous`]: `W[k, n]` at `n * ldw + k` (a transposed view of an `[out, in]`
//!   tensor: the tied LM head);
//! - [`GemvLayout::NContiguous`]: `W[k, n]` at `k * ldw + n` (row-major `[in, out]`: every other
//!   linear weight, which the model loader transposes into this layout).
//!
//! When the column blocks alone would not fill the GPU (`N = 3584`: 448 or 56 blocks), `K` is split
//! over `grid.y`: each block writes f32 partial sums and the last block of a column to finish
//! (an atomic arrival counter per column block, reset by that block) adds them up in a fixed order
//! (deterministic), in the same launch. For the N-contiguous kernel the split is sized to one
//! wave of resident blocks (`SMS ×` [`nc_min_blocks`]) and each thread issues the loads of up to
//! `U` rows at once ([`GemvTuning`]), so on the small 7B weights (`3584 × 3584`) every thread
//! issues its whole slice up front.
//! [`plan_gemv`] is pure host logic (tested here); the launch is in `linear/cuda.rs`.
//!
//! Tuning knobs (read once per process; for comparisons on the GPU machine):
//! `RESEARCH_GEMV_NC_UNROLL` = 4, 8 or 16 (rows per step of the N-contiguous kernel on products it
//! splits, default 16; wider ones use [`NC_UNROLL_WIDE`])
//! and `RESEARCH_GEMV_NC_WAVE` = the blocks one wave is taken to hold when splitting `K` (default
//! `132 ×` [`nc_min_blocks`], the SMs of an H100/H200 times the resident blocks the kernel is
//! compiled for).

use super::GemmPlan;

/// Largest `M` the GEMV kernels take (their accumulators are `M × 8` registers per thread).
pub const MAX_M: usize = 8;
/// Threads per block of every GEMV kernel.
pub const THREADS: u32 = 256;
/// Output columns per block: one per warp (K-contiguous), 64 (N-contiguous).
pub const KC_COLS: usize = 8;
/// See [`KC_COLS`].
pub const NC_COLS: usize = 64;
/// Blocks wanted in flight before `K` is split (K-contiguous kernel; about 4 per SM of an
/// H100/H200, 132 SMs), and the width from which the N-contiguous kernel is never split.
pub const TARGET_BLOCKS: usize = 528;
/// Streaming multiprocessors of an H100 SXM / H200 (the N-contiguous split sizes one wave).
pub const SMS: usize = 132;
/// Most K slices of one product.
pub const MAX_SPLITS: usize = 64;
/// Size of the kernels' one by-value parameter (`struct GemvParams` in `gemv.cu`).
pub const PARAMS_BYTES: usize = 112;
/// Arrival counters the split-K kernels need (one per column block; the plan splits only below
/// this many column blocks).
pub const COUNTERS: usize = 4096;
/// Rows per step the N-contiguous kernel is compiled for (`gemv_nc_u{U}_*`).
pub const NC_UNROLLS: [usize; 3] = [4, 8, 16];
/// Rows per step of split products when nothing else is asked for.
pub const NC_UNROLL_DEFAULT: usize = 16;
/// Rows per step of products too wide to split (at least [`TARGET_BLOCKS`] column blocks): long
/// loops, where the kernel of run J (4 rows, 5 resident blocks per SM at M = 1) already reached
/// 0.94 of copy bandwidth on `3584 × 37888`.
pub const NC_UNROLL_WIDE: usize = 4;

/// Fewest resident blocks per SM the N-contiguous kernel with `m` rows and unroll `u` is
/// compiled for (`GEMV_NC_MIN_BLOCKS` in `gemv.cu`, which caps its registers at
/// `65536 / (256 · blocks)`; checked without spills by `ptxas -v` for sm_90).
pub fn nc_min_blocks(m: usize, u: usize) -> usize {
    match (m, u) {
        (1, 4) => 5,
        (1, 8) => 4,
        (1, _) => 3,
        (2, 4 | 8) => 4,
        (3 | 4, 4) => 3,
        _ => 2,
    }
}

/// The N-contiguous kernel's tuning: rows per step and the blocks of one wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemvTuning {
    /// Rows a thread loads per step (one of [`NC_UNROLLS`]).
    pub nc_unroll: usize,
    /// Blocks one wave holds, for sizing the K split; `None`: `SMS × nc_min_blocks(m, unroll)`.
    pub nc_wave: Option<usize>,
}

impl Default for GemvTuning {
    fn default() -> Self {
        Self {
            nc_unroll: NC_UNROLL_DEFAULT,
            nc_wave: None,
        }
    }
}

impl GemvTuning {
    /// `RESEARCH_GEMV_NC_UNROLL` (4, 8 or 16; anything else keeps the default) and
    /// `RESEARCH_GEMV_NC_WAVE` (1 to [`COUNTERS`]), read once per process.
    pub fn from_env() -> Self {
        static TUNING: std::sync::OnceLock<GemvTuning> = std::sync::OnceLock::new();
        *TUNING.get_or_init(|| {
            let num = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
            let mut t = GemvTuning::default();
            if let Some(u) = num("RESEARCH_GEMV_NC_UNROLL").filter(|u| NC_UNROLLS.contains(u)) {
                t.nc_unroll = u;
            }
            t.nc_wave = num("RESEARCH_GEMV_NC_WAVE").filter(|&w| (1..=COUNTERS).contains(&w));
            t
        })
    }
}

/// How `W [K, N]` sits in memory for the GEMV kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemvLayout {
    /// `W[k, n]` at `n * ldw + k`.
    KContiguous,
    /// `W[k, n]` at `k * ldw + n`.
    NContiguous,
}

/// Everything a GEMV launch needs but the pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemvGeometry {
    /// Weight layout (picks the kernel).
    pub layout: GemvLayout,
    /// Rows of `X` and `Y` (1..=8).
    pub m: usize,
    /// Output columns.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// Elements between rows of `X` (its `K` axis is contiguous).
    pub ldx: usize,
    /// Elements between columns (K-contiguous) or rows (N-contiguous) of `W`.
    pub ldw: usize,
    /// `K` elements per split, a multiple of 8.
    pub k_split: usize,
    /// Number of K slices (`grid.y`); above 1 the kernel needs f32 scratch
    /// ([`partial_bytes`](Self::partial_bytes)) and [`COUNTERS`] zeroed arrival counters.
    pub splits: usize,
    /// Rows per step of the N-contiguous kernel (one of [`NC_UNROLLS`]; 4 for K-contiguous,
    /// whose kernel has a fixed unroll).
    pub unroll: usize,
    /// Grid of the kernel.
    pub grid: (u32, u32, u32),
}

impl GemvGeometry {
    /// Entry point of the main kernel for dtype name `dt` (`bf16`/`f16`).
    pub fn entry(&self, dt: &str) -> String {
        match self.layout {
            GemvLayout::KContiguous => format!("gemv_kc_{dt}_m{}", self.m),
            GemvLayout::NContiguous => format!("gemv_nc_u{}_{dt}_m{}", self.unroll, self.m),
        }
    }

    /// Bytes of the f32 partial sums (0 with one split).
    pub fn partial_bytes(&self) -> usize {
        if self.splits > 1 {
            self.splits * self.m * self.n * 4
        } else {
            0
        }
    }

    /// Whether the device pointers meet the kernels' 16-byte vector loads: `W` always, `X` for
    /// the K-contiguous kernel (the N-contiguous one reads `X` one element at a time).
    pub fn pointers_aligned(&self, x: u64, w: u64) -> bool {
        w.is_multiple_of(16) && (self.layout == GemvLayout::NContiguous || x.is_multiple_of(16))
    }
}

/// `(k_split, splits)`: enough K slices that `col_blocks · splits` reaches [`TARGET_BLOCKS`], none
/// shorter than `min_slice` (unless K is), each a multiple of `granule` (a multiple of 8: the
/// K-contiguous kernel's 16-byte chunks; 256 there so its 32 lanes share a slice evenly, 32 for the
/// N-contiguous kernel's 32 row groups).
pub fn split_k(k: usize, col_blocks: usize, min_slice: usize, granule: usize) -> (usize, usize) {
    let want = TARGET_BLOCKS.div_ceil(col_blocks.max(1)).max(1);
    let by_k = (k / min_slice.max(1)).max(1);
    let s = want.min(by_k).min(MAX_SPLITS);
    let k_split = k.div_ceil(s).next_multiple_of(granule.max(8).next_multiple_of(8));
    (k_split, k.div_ceil(k_split))
}

/// `(k_split, splits)` for the N-contiguous kernel: as many K slices as fit beside each other in
/// one wave of `wave` blocks (`⌊wave / col_blocks⌋`, at least 1, at most [`MAX_SPLITS`]), none
/// shorter than 32 rows (one per row group), each a multiple of 32. Widths of [`TARGET_BLOCKS`]
/// column blocks or more are never split.
pub fn split_k_nc(k: usize, col_blocks: usize, wave: usize) -> (usize, usize) {
    let s = if col_blocks >= TARGET_BLOCKS {
        1
    } else {
        (wave / col_blocks.max(1)).clamp(1, MAX_SPLITS).min(k.div_ceil(32))
    };
    let k_split = k.div_ceil(s).next_multiple_of(32);
    (k_split, k.div_ceil(k_split))
}

/// The GEMV launch for a planned linear product with the tuning of the environment
/// ([`GemvTuning::from_env`]); see [`plan_gemv_with`].
pub fn plan_gemv(plan: &GemmPlan) -> Option<GemvGeometry> {
    plan_gemv_with(plan, &GemvTuning::from_env())
}

/// Whether the GEMV kernels can read a product of this layout at all: at most [`MAX_M`] rows, one
/// product (not batched), a row-major `X`, and 16-byte loads possible (K-contiguous `W`: `K`,
/// `ldw` and, with more than one row, `ldx` multiples of 8; N-contiguous `W`: `ldw` a multiple of
/// 8). The dtype (bf16/f16), the route's row limit and `RESEARCH_GEMV=off` are checked by the
/// caller, pointer alignment on the device thread.
pub fn gemv_layout_ok(plan: &GemmPlan) -> bool {
    let (m, n, k) = (plan.m, plan.n, plan.k);
    if m == 0 || m > MAX_M || n == 0 || k == 0 || plan.batch != 1 || plan.trans_b {
        return false;
    }
    let (ldx, ldw) = (plan.ldb, plan.lda);
    if plan.trans_a {
        k % 8 == 0 && ldw % 8 == 0 && (m == 1 || ldx % 8 == 0)
    } else {
        ldw % 8 == 0
    }
}

/// The GEMV launch for a planned linear product, or `None` when the GEMV kernels do not take it
/// (then cuBLASLt runs): see [`gemv_layout_ok`].
pub fn plan_gemv_with(plan: &GemmPlan, tuning: &GemvTuning) -> Option<GemvGeometry> {
    if !gemv_layout_ok(plan) {
        return None;
    }
    let (m, n, k) = (plan.m, plan.n, plan.k);
    let (ldx, ldw) = (plan.ldb, plan.lda);
    let (layout, col_blocks, (k_split, splits), unroll) = if plan.trans_a {
        let cols = n.div_ceil(KC_COLS);
        (GemvLayout::KContiguous, cols, split_k(k, cols, 256, 256), 4)
    } else {
        let cols = n.div_ceil(NC_COLS);
        let u = if cols >= TARGET_BLOCKS {
            NC_UNROLL_WIDE
        } else if NC_UNROLLS.contains(&tuning.nc_unroll) {
            tuning.nc_unroll
        } else {
            NC_UNROLL_DEFAULT
        };
        let wave = tuning.nc_wave.unwrap_or(SMS * nc_min_blocks(m, u)).clamp(1, COUNTERS);
        (GemvLayout::NContiguous, cols, split_k_nc(k, cols, wave), u)
    };
    let gx = u32::try_from(col_blocks).ok().filter(|&g| g <= i32::MAX as u32)?;
    if splits > 1 && col_blocks > COUNTERS {
        return None; // cannot happen: both splits stop below TARGET_BLOCKS column blocks
    }
    Some(GemvGeometry {
        layout,
        m,
        n,
        k,
        ldx,
        ldw,
        k_split,
        splits,
        unroll,
        grid: (gx, splits as u32, 1),
    })
}

/// Mirrors `struct GemvParams` in `gemv.cu` field for field.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct GemvParams {
    /// `X` device pointer.
    pub x: u64,
    /// `W` device pointer.
    pub w: u64,
    /// Bias device pointer or 0.
    pub bias: u64,
    /// `Y` device pointer.
    pub y: u64,
    /// f32 partial sums device pointer or 0.
    pub part: u64,
    /// Arrival counters device pointer ([`COUNTERS`] u32, zero between launches) or 0.
    pub counters: u64,
    /// Rows.
    pub m: i64,
    /// Columns.
    pub n: i64,
    /// Reduction length.
    pub k: i64,
    /// Row stride of `X`.
    pub ldx: i64,
    /// Column (K-contiguous) or row (N-contiguous) stride of `W`.
    pub ldw: i64,
    /// `K` elements per split.
    pub k_split: i64,
    /// Number of splits.
    pub splits: i64,
    /// 1 when the kernel is launched as a programmatic dependent (Hopper: it then prefetches its
    /// first weight rows to L2 before `griddepcontrol.wait`), else 0.
    pub pdl: i64,
}

const _: () = assert!(std::mem::size_of::<GemvParams>() == PARAMS_BYTES);

impl GemvParams {
    /// Parameters for `g` with the given pointers (`bias`, `part`, `counters` 0 when absent), not a
    /// programmatic dependent (`pdl` 0).
    pub fn new(g: &GemvGeometry, x: u64, w: u64, bias: u64, y: u64, part: u64, counters: u64) -> Self {
        Self {
            x,
            w,
            bias,
            y,
            part,
            counters,
            m: g.m as i64,
            n: g.n as i64,
            k: g.k as i64,
            ldx: g.ldx as i64,
            ldw: g.ldw as i64,
            k_split: g.k_split as i64,
            splits: g.splits as i64,
            pdl: 0,
        }
    }
}

/// The kernel source (`gemv.cu`), without the shared `common.cuh` prelude.
pub const SOURCE: &str = include_str!("gemv.cu");

/// The dtype names the kernels take and their `DT` code in `common.cuh`.
pub const DTYPES: [(&str, u8); 2] = [("bf16", 1), ("f16", 2)];

/// The full text NVRTC compiles for dtype `dt` and the given row counts, or `None` for an unknown
/// dtype or a row count outside `1..=MAX_M`.
#[cfg(feature = "nvrtc")]
pub fn source(dt: &str, ms: &[usize]) -> Option<String> {
    let (_, code) = DTYPES.iter().find(|(n, _)| *n == dt)?;
    let common = crate::attention::nvrtc::COMMON;
    let mut text = format!("{common}\n#line 1 \"gemv.cu\"\n{SOURCE}\n");
    for &m in ms {
        if m == 0 || m > MAX_M {
            return None;
        }
        text += &format!("GEMV_INSTANCES({dt}, {code}, {m})\n");
    }
    Some(text)
}

/// Compiles `gemv.cu` for dtype `dt` and row counts `ms` to PTX for `arch` (e.g. `sm_90`),
/// uncached. Errors carry NVRTC's log.
#[cfg(feature = "nvrtc")]
pub fn compile(dt: &str, ms: &[usize], arch: &str) -> Result<String, String> {
    use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
    let src = source(dt, ms).ok_or_else(|| format!("gemv: unknown dtype `{dt}` or rows {ms:?}"))?;
    if !crate::attention::nvrtc::nvrtc_present() {
        return Err("libnvrtc not found".into());
    }
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".into(),
            "-lineinfo".into(),
        ],
        name: Some("gemv.cu".into()),
        ..Default::default()
    };
    match compile_ptx_with_opts(src, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => Err(format!(
            "NVRTC failed on gemv.cu for {arch}:\n{}",
            log.to_string_lossy()
        )),
        Err(e) => Err(format!("NVRTC failed on gemv.cu for {arch}: {e:?}")),
    }
}

/// [`compile`] for one `(dtype, M)`, cached per process (failures too).
#[cfg(feature = "nvrtc")]
pub fn ptx(dt: &str, m: usize, arch: &str) -> Result<String, String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<(String, usize, String), Result<String, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (dt.to_string(), m, arch.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let built = compile(dt, &[m], arch);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(x_shape: &[usize], x_strides: &[usize], w_shape: &[usize], w_strides: &[usize]) -> GemmPlan {
        GemmPlan::new(x_shape, x_strides, w_shape, w_strides).expect("plannable")
    }

    /// The model's layouts: row-major `[in, out]` weights (N-contiguous) and the tied head's
    /// transposed embedding (K-contiguous), with decode inputs `[b, 1, K]`.
    #[test]
    fn layouts_of_the_model() {
        let g = plan_gemv(&plan(&[4, 1, 3584], &[3584, 3584, 1], &[3584, 4608], &[4608, 1])).unwrap();
        assert_eq!(g.layout, GemvLayout::NContiguous);
        assert_eq!((g.m, g.n, g.k, g.ldx, g.ldw), (4, 4608, 3584, 3584, 4608));
        let g = plan_gemv(&plan(&[1, 1, 896], &[896, 896, 1], &[896, 151_936], &[1, 896])).unwrap();
        assert_eq!(g.layout, GemvLayout::KContiguous);
        assert_eq!((g.m, g.n, g.k, g.ldw), (1, 151_936, 896, 896));
    }

    /// Hand-worked split-K choices for the 7B decode shapes (default tuning: 16 rows per step,
    /// 3 resident blocks per SM at M = 1 and 2 at M = 8, so waves of 396 and 264 blocks).
    #[test]
    fn split_k_for_7b_shapes() {
        let tuning = GemvTuning::default();
        let p = |x: &[usize], xs: &[usize], w: &[usize], ws: &[usize]| plan_gemv_with(&plan(x, xs, w, ws), &tuning);
        // N-contiguous 3584 columns: 56 column blocks, ⌊396 / 56⌋ = 7 slices of 512 rows: 16 rows
        // per thread, all loaded in one step; 392 blocks, one wave.
        let g = p(&[1, 3584], &[3584, 1], &[3584, 3584], &[3584, 1]).unwrap();
        assert_eq!((g.grid, g.k_split, g.splits, g.unroll), ((56, 7, 1), 512, 7, 16));
        assert_eq!(g.entry("bf16"), "gemv_nc_u16_bf16_m1");
        assert_eq!(g.partial_bytes(), 7 * 3584 * 4);
        // 4608 columns at M = 1: 72 blocks → 5 slices: 3584 / 5 = 716.8 → 736 rows (23 per
        // thread, 2 steps), the last 640.
        let g = p(&[1, 3584], &[3584, 1], &[3584, 4608], &[4608, 1]).unwrap();
        assert_eq!((g.grid, g.k_split, g.splits), ((72, 5, 1), 736, 5));
        // ... at M = 8: ⌊264 / 72⌋ = 3 slices of 1195 → 1216 rows, the last 1152.
        let g = p(&[8, 3584], &[3584, 1], &[3584, 4608], &[4608, 1]).unwrap();
        assert_eq!((g.grid, g.k_split, g.splits), ((72, 3, 1), 1216, 3));
        assert_eq!(g.partial_bytes(), 3 * 8 * 4608 * 4);
        // Down projection: K = 18944 over 7 slices of 2706.3 → 2720 rows (the last 2624).
        let g = p(&[1, 18944], &[18944, 1], &[18944, 3584], &[3584, 1]).unwrap();
        assert_eq!((g.k_split, g.splits), (2720, 7));
        // Wide weights (≥ 528 column blocks) are never split and keep 4 rows per step.
        let g = p(&[1, 3584], &[3584, 1], &[3584, 37888], &[37888, 1]).unwrap();
        assert_eq!((g.grid, g.splits, g.partial_bytes(), g.unroll), ((592, 1, 1), 1, 0, 4));
        assert_eq!(g.entry("f16"), "gemv_nc_u4_f16_m1");
        // The knobs: 8 rows per step → 4 resident blocks at M = 1, a wave of 528: ⌊528 / 56⌋ = 9
        // slices of 398.2 → 416 rows (13 per thread), the last 256; an explicit wave of 1120 →
        // 20 slices of 179.2 → 192 rows (6 per thread), 19 of them.
        let t8 = GemvTuning {
            nc_unroll: 8,
            nc_wave: None,
        };
        let g = plan_gemv_with(&plan(&[1, 3584], &[3584, 1], &[3584, 3584], &[3584, 1]), &t8).unwrap();
        assert_eq!((g.k_split, g.splits, g.unroll), (416, 9, 8));
        let tw = GemvTuning {
            nc_unroll: 8,
            nc_wave: Some(1120),
        };
        let g = plan_gemv_with(&plan(&[1, 3584], &[3584, 1], &[3584, 3584], &[3584, 1]), &tw).unwrap();
        assert_eq!((g.k_split, g.splits), (192, 19));
        // K-contiguous 3584 columns: 448 blocks of 8 columns → 2 slices of 1792.
        let g = p(&[1, 3584], &[3584, 1], &[3584, 3584], &[1, 3584]).unwrap();
        assert_eq!((g.grid, g.k_split, g.splits, g.unroll), ((448, 2, 1), 1792, 2, 4));
    }

    /// Every slice is a multiple of the granule, the slices cover K exactly once, and none is empty;
    /// the N-contiguous split never makes more blocks than one wave (unless the columns alone do).
    #[test]
    fn split_k_covers_k() {
        for k in [8usize, 16, 64, 72, 264, 520, 1000, 3584, 18944, 40_000] {
            for blocks in [1usize, 3, 56, 448, 10_000] {
                let (ks, s) = split_k(k, blocks, 256, 256);
                assert_eq!(ks % 256, 0, "k={k} blocks={blocks}");
                assert!((1..=MAX_SPLITS).contains(&s));
                assert!((s - 1) * ks < k && k <= s * ks, "k={k}: {s} x {ks}");
                if blocks >= TARGET_BLOCKS {
                    assert_eq!(s, 1);
                }
                for wave in [1usize, 264, 396, 660, 4096] {
                    let (ks, s) = split_k_nc(k, blocks, wave);
                    assert_eq!(ks % 32, 0, "k={k} blocks={blocks} wave={wave}");
                    assert!((1..=MAX_SPLITS).contains(&s));
                    assert!((s - 1) * ks < k && k <= s * ks, "k={k}: {s} x {ks}");
                    assert!(s == 1 || blocks * s <= wave, "k={k} blocks={blocks} wave={wave}: {s}");
                    if blocks >= TARGET_BLOCKS {
                        assert_eq!(s, 1);
                    }
                }
            }
        }
    }

    /// The unroll and wave knobs fall back to the defaults when out of range.
    #[test]
    fn tuning_out_of_range_falls_back() {
        let p = plan(&[1, 3584], &[3584, 1], &[3584, 3584], &[3584, 1]);
        let odd = GemvTuning {
            nc_unroll: 5,
            nc_wave: Some(0),
        };
        let g = plan_gemv_with(&p, &odd).unwrap();
        // Unroll 16 (default), wave clamped to 1 block: no split.
        assert_eq!((g.unroll, g.splits), (16, 1));
        for (m, u) in [(1, 4), (1, 8), (1, 16), (2, 16), (4, 4), (8, 16)] {
            assert!((2..=5).contains(&nc_min_blocks(m, u)));
        }
    }

    /// What the kernels cannot read goes to cuBLASLt.
    #[test]
    fn unsupported_layouts_decline() {
        // 9 rows, a batched plan, a column-major X.
        assert!(plan_gemv(&plan(&[9, 64], &[64, 1], &[64, 16], &[16, 1])).is_none());
        let mut p = plan(&[2, 64], &[64, 1], &[64, 16], &[16, 1]);
        p.batch = 2;
        assert!(plan_gemv(&p).is_none());
        assert!(plan_gemv(&plan(&[2, 64], &[1, 2], &[64, 16], &[16, 1])).is_none());
        // N-contiguous with an odd row stride (odd N, contiguous): no 16-byte rows.
        assert!(plan_gemv(&plan(&[1, 64], &[64, 1], &[64, 1151], &[1151, 1])).is_none());
        // ...but a padded row stride works, with the odd N.
        let g = plan_gemv(&plan(&[1, 64], &[64, 1], &[64, 1151], &[1152, 1])).unwrap();
        assert_eq!((g.layout, g.n, g.ldw), (GemvLayout::NContiguous, 1151, 1152));
        // K-contiguous needs K, ldw and (M > 1) ldx multiples of 8.
        assert!(plan_gemv(&plan(&[1, 33], &[33, 1], &[33, 65], &[1, 33])).is_none());
        assert!(plan_gemv(&plan(&[2, 64], &[68, 1], &[64, 65], &[1, 64])).is_none());
        assert!(plan_gemv(&plan(&[2, 64], &[72, 1], &[64, 65], &[1, 72])).is_some());
        // Odd N is fine K-contiguous.
        let g = plan_gemv(&plan(&[3, 520], &[520, 1], &[520, 67], &[1, 520])).unwrap();
        assert_eq!((g.layout, g.n, g.grid.0), (GemvLayout::KContiguous, 67, 9));
    }

    #[test]
    fn entries_and_alignment() {
        let g = plan_gemv(&plan(&[3, 520], &[520, 1], &[520, 67], &[1, 520])).unwrap();
        assert_eq!(g.entry("bf16"), "gemv_kc_bf16_m3");
        assert!(g.pointers_aligned(0x1000, 0x2010));
        assert!(!g.pointers_aligned(0x1008, 0x2000));
        assert!(!g.pointers_aligned(0x1000, 0x2002));
        let g = plan_gemv_with(
            &plan(&[3, 520], &[520, 1], &[520, 64], &[64, 1]),
            &GemvTuning::default(),
        )
        .unwrap();
        assert_eq!(g.entry("f16"), "gemv_nc_u16_f16_m3");
        assert!(g.pointers_aligned(0x1002, 0x2000), "N-contiguous reads X by element");
    }

    /// The `#[repr(C)]` mirror has the field offsets of `struct GemvParams` (8-byte fields in order).
    #[test]
    fn params_layout() {
        let p = GemvParams::default();
        let base = &p as *const GemvParams as usize;
        let off = |f: *const u8| f as usize - base;
        assert_eq!(off(&p.part as *const u64 as *const u8), 32);
        assert_eq!(off(&p.counters as *const u64 as *const u8), 40);
        assert_eq!(off(&p.m as *const i64 as *const u8), 48);
        assert_eq!(off(&p.splits as *const i64 as *const u8), 96);
        assert_eq!(off(&p.pdl as *const i64 as *const u8), 104);
    }

    /// The kernels themselves, run on the CPU: `gemv_emu.cpp` compiles `gemv.cu` as C++17 (the
    /// threads of a block as coroutines; each `__syncthreads` checked to be reached by the whole
    /// block and each shuffle by all 32 lanes; software bf16/f16) and checks every output entry
    /// against float64 (bound: `1e-4 Σ|x w|` plus the output's rounding). The launch geometry comes
    /// from [`plan_gemv`] on real strides: both layouts, odd N, N below one vector, padded leading
    /// dimensions (padding is NaN, so a stray read shows), split-K with a short last slice (and the
    /// arrival counters back at 0 afterwards), bias or not, M = 1..8, bf16 and f16. Every other case
    /// runs as a programmatic dependent (`pdl` = 1): the emulator then requires each L2 prefetch to
    /// lie inside `W` and precede its thread's `griddepcontrol.wait` (reached once by every thread),
    /// and this test requires such cases to have prefetched and the others not.
    /// `RESEARCH_GEMV_EMU=asan` builds it with AddressSanitizer (a
    /// read past a buffer then aborts the emulator; about 10× slower). Needs a C++17 compiler with
    /// `_Float16` (`$CXX` or `c++`, GCC ≥ 12 or Clang on x86-64); skipped with a note when there is
    /// none, unless `RESEARCH_GEMV_EMU=require` (or `asan`).
    #[test]
    fn kernels_match_float64_in_cpu_emulation() {
        let mode = std::env::var("RESEARCH_GEMV_EMU").unwrap_or_default();
        let require = mode == "require" || mode == "asan";
        let asan: &[&str] = if mode == "asan" { &["-fsanitize=address"] } else { &[] };
        let Some((dir, exe)) = crate::emu::build(
            "src/linear/gemv_emu.cpp",
            "gemv_emu",
            "gemv",
            asan,
            require,
            "GEMV emulator",
        ) else {
            return;
        };
        // (x row stride, K, N, W strides) per case; K-contiguous W has strides (1, ldw).
        struct Case {
            k: usize,
            n: usize,
            ldx: usize,
            w_strides: [usize; 2],
            tuning: GemvTuning,
        }
        let t = |nc_unroll: usize, nc_wave: Option<usize>| GemvTuning { nc_unroll, nc_wave };
        let kc = |k: usize, n: usize, ldx: usize, ldw: usize| Case {
            k,
            n,
            ldx,
            w_strides: [1, ldw],
            tuning: GemvTuning::default(),
        };
        let nc = |k: usize, n: usize, ldx: usize, ldw: usize, tuning: GemvTuning| Case {
            k,
            n,
            ldx,
            w_strides: [ldw, 1],
            tuning,
        };
        let cases = [
            kc(8, 5, 8, 8),           // one chunk, N below a block
            kc(520, 67, 520, 520),    // odd N, 2 splits (512 and 8)
            kc(264, 9, 272, 272),     // padded x rows and W columns, 1 split, remainder chunks
            kc(2048, 13, 2048, 2056), // 8 splits of 256
            // N below one 8-column vector: scalar tail only; 2 splits of one row per thread.
            nc(64, 5, 64, 8, t(16, None)),
            nc(200, 67, 200, 72, t(8, None)), // odd N, 7 splits (6 x 32 rows, the last 8)
            // odd x row stride (x read by element), partial last block; 5 splits (the last 8 rows)
            nc(136, 130, 141, 136, t(4, None)),
            nc(1000, 70, 1000, 72, t(16, None)), // 32 splits, vector + tail columns
            // One slice of 1000 rows: 32 rows per thread (31 for the last 8 row groups) in 2 steps
            // of 16, 4 of 8, 8 of 4.
            nc(1000, 70, 1000, 72, t(16, Some(1))),
            nc(1000, 70, 1000, 72, t(8, Some(1))),
            nc(1000, 70, 1000, 72, t(4, Some(2))),
            // 2 slices of 512 and 488 rows: one step of 16 with the last rows predicated off.
            nc(1000, 70, 1000, 72, t(16, Some(4))),
            // 600 rows, one slice: 19 rows per thread, a partial third step of 8.
            nc(600, 24, 600, 24, t(8, Some(1))),
        ];
        let mut input = String::new();
        let mut labels = Vec::new();
        let mut seed = 1;
        for (dt, code) in DTYPES {
            for c in &cases {
                for m in 1..=MAX_M {
                    if c.k * c.n > 20_000 && m % 3 != 1 {
                        continue; // the bigger cases at M = 1, 4, 7 only (emulation is slow)
                    }
                    let plan = GemmPlan::new(&[m, c.k], &[c.ldx, 1], &[c.k, c.n], &c.w_strides).unwrap();
                    let g =
                        plan_gemv_with(&plan, &c.tuning).unwrap_or_else(|| panic!("GEMV declined k={} n={}", c.k, c.n));
                    let layout = match g.layout {
                        GemvLayout::KContiguous => 0,
                        GemvLayout::NContiguous => 1,
                    };
                    let bias = (m + c.n) % 2;
                    input += &format!(
                        "{layout} {code} {} {} {} {} {} {} {} {} {} {bias} {seed} {}\n",
                        g.m, g.n, g.k, g.ldx, g.ldw, g.k_split, g.splits, g.grid.0, g.grid.1, g.unroll
                    );
                    labels.push(format!(
                        "{dt} {:?} m={m} k={} n={} ldw={} splits={} unroll={} bias={bias} pdl={}",
                        g.layout,
                        g.k,
                        g.n,
                        g.ldw,
                        g.splits,
                        g.unroll,
                        seed % 2
                    ));
                    seed += 1;
                }
            }
        }
        let out = crate::emu::run(&dir, &exe, &[], &input);
        assert!(
            out.status.success(),
            "emulator exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), labels.len(), "emulator output:\n{text}");
        // A pass prints `ok <ratio> pf=<prefetches>`: some with pdl = 1 (odd seeds), none without.
        let prefetch_ok = |line: &str, label: &str| {
            let pf: Option<u64> = line
                .split_whitespace()
                .find_map(|t| t.strip_prefix("pf=")?.parse().ok());
            match pf {
                Some(pf) => (pf > 0) == label.ends_with("pdl=1"),
                None => false,
            }
        };
        let failed: Vec<String> = lines
            .iter()
            .zip(&labels)
            .filter(|(l, label)| !l.starts_with("ok ") || !prefetch_ok(l, label))
            .map(|(l, label)| format!("{label}: {l}"))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} cases failed:\n{}",
            failed.len(),
            labels.len(),
            failed.join("\n")
        );
    }

    /// `gemv.cu` compiles for Hopper with every `(dtype, M)` and exports both entry points, each
    /// taking the one 112-byte parameter. Needs libnvrtc (e.g.
    /// `LD_LIBRARY_PATH=<venv>/site-packages/nvidia/cu13/lib`); skipped with a note otherwise.
    /// `RESEARCH_GEMV_PTX_DIR=dir` also writes the PTX there (for `ptxas -arch=sm_90 -v`).
    #[cfg(feature = "nvrtc")]
    #[test]
    fn gemv_compiles_for_sm90() {
        if !crate::attention::nvrtc::nvrtc_present() {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12/13 lib folder)");
            return;
        }
        let ms: Vec<usize> = (1..=MAX_M).collect();
        for (dt, _) in DTYPES {
            let ptx = compile(dt, &ms, "sm_90").unwrap_or_else(|e| panic!("{e}"));
            if let Some(dir) = std::env::var_os("RESEARCH_GEMV_PTX_DIR") {
                std::fs::write(std::path::Path::new(&dir).join(format!("gemv_{dt}.ptx")), &ptx).unwrap();
            }
            for &m in &ms {
                for l in ["kc", "nc_u4", "nc_u8", "nc_u16"] {
                    let entry = format!("gemv_{l}_{dt}_m{m}");
                    assert!(ptx.contains(&format!(".entry {entry}(")), "PTX lacks {entry}");
                    let param = format!(".param .align 8 .b8 {entry}_param_0[{PARAMS_BYTES}]");
                    assert!(ptx.contains(&param), "{entry} does not take one {param}");
                    assert!(!ptx.contains(&format!("{entry}_param_1")));
                }
            }
            // 16-byte weight loads through the read-only path.
            assert!(ptx.contains("ld.global.nc.v4.u32"), "no 16-byte loads");
            // Programmatic dependent launch on Hopper: the trigger, the wait, the L2 prefetches.
            for op in [
                "griddepcontrol.launch_dependents",
                "griddepcontrol.wait",
                "prefetch.global.L2",
            ] {
                assert!(ptx.contains(op), "sm_90 PTX lacks {op}");
            }
            // Ampere has no griddepcontrol: the guarded source leaves it out there.
            let ptx80 = compile(dt, &[1], "sm_80").unwrap_or_else(|e| panic!("{e}"));
            assert!(!ptx80.contains("griddepcontrol"), "sm_80 PTX has griddepcontrol");
        }
        assert!(source("f32", &[1]).is_none());
        assert!(source("bf16", &[9]).is_none());
    }
}
