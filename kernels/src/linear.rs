//! The model's linear layers: `y = x @ W (+ b)` with `W` stored `[in, out]`.
//!
//! [`linear`] is the one entry point. Every backend can run [`linear_reference`] (burn's `matmul`
//! plus a broadcast bias add). With the `cuda` feature, when the backend is burn-cuda (or
//! burn-cuda under burn-autodiff) the product is one cuBLASLt call on burn's own buffers and
//! stream: bf16/f16 in with f32 accumulation, f32 with exact f32 accumulation (no TF32), the bias
//! fused into the epilogue, the output allocated by burn; the autodiff backward is two more calls
//! of the same GEMM (`dX = dY Wᵀ`, `dW = Xᵀ dY`) and `db = Σ dY`. Layouts cuBLAS cannot take
//! directly (a batch that does not flatten into rows, broadcast strides) and unsupported dtypes
//! take the reference path, so the result never depends on which route ran beyond rounding.
//!
//! Decode-sized forward products (`M ≤ 8` rows, bf16/f16, a weight layout [`gemv`] can read) run
//! our own memory-bound GEMV kernels (`linear/gemv.cu`, compiled by NVRTC) instead of cuBLASLt on
//! burn-cuda; `RESEARCH_GEMV=off` keeps them on cuBLASLt. Both routes are enqueued without host
//! round trips once a problem of the same key has run (see `linear/cuda.rs`);
//! `RESEARCH_GEMM_SYNC=1` keeps every call blocking (for comparisons).
//!
//! Setting `RESEARCH_GEMM=reference` in the environment forces the reference path everywhere
//! (for comparisons and benchmarks).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod gemv;

/// `x @ w (+ b)` over the last dimension of `x`: `x` is `[.., in]`, `w` is `[in, out]` (any
/// strides, e.g. a transposed view of an `[out, in]` tensor), `b` is `[out]`. Returns `[.., out]`.
pub fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if let Some(y) = cuda::try_linear(&x, &w, b.as_ref()) {
        return y;
    }
    linear_reference(x, w, b)
}

/// The reference path of [`linear`]: burn's `matmul` with `w` broadcast over the leading
/// dimensions, then the bias added.
pub fn linear_reference<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let y = x.matmul(w.unsqueeze());
    match b {
        Some(b) => y + b.unsqueeze(),
        None => y,
    }
}

/// Batched `a @ b` over the last two dimensions, batch dimensions equal (no broadcasting): `a` is
/// `[.., M, K]`, `b` is `[.., K, N]`, any strides (e.g. `kᵀ` of a KV-cache slice). On burn-cuda it is
/// one strided-batched cuBLASLt call (f32 exact, bf16/f16 with f32 accumulation) with an autodiff
/// backward; elsewhere, and for layouts cuBLAS cannot take, burn's `matmul`.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if let Some(y) = cuda::try_matmul(&a, &b) {
        return y;
    }
    a.matmul(b)
}

/// `(launched, failed)`: cuBLASLt products enqueued so far in this process, and attempts that fell
/// back to burn's path after trying (a warning names each distinct reason). Always `(0, 0)` without
/// the `cuda` feature. For diagnostics and the GPU test binaries.
pub fn cublaslt_counts() -> (u64, u64) {
    #[cfg(feature = "cuda")]
    {
        use std::sync::atomic::Ordering;
        (
            cuda::LAUNCHED.load(Ordering::Relaxed),
            cuda::FALLBACKS.load(Ordering::Relaxed),
        )
    }
    #[cfg(not(feature = "cuda"))]
    (0, 0)
}

/// `(launched, declined)`: GEMV products enqueued so far in this process (each counted once, also
/// when split-K adds a second kernel), and planned GEMV products that ran on cuBLASLt instead
/// (unaligned pointers, or the kernels failed to load; a warning names each distinct reason).
/// Always `(0, 0)` without the `cuda` feature. For diagnostics and the GPU test binaries.
pub fn gemv_counts() -> (u64, u64) {
    #[cfg(feature = "cuda")]
    {
        use std::sync::atomic::Ordering;
        (
            cuda::GEMV_LAUNCHED.load(Ordering::Relaxed),
            cuda::GEMV_DECLINED.load(Ordering::Relaxed),
        )
    }
    #[cfg(not(feature = "cuda"))]
    (0, 0)
}

/// GEMV products enqueued as programmatic dependents (`cuLaunchKernelEx` with programmatic stream
/// serialization, on Hopper unless `RESEARCH_GEMV_PDL=0`; see `linear/cuda.rs`), also counted in
/// [`gemv_counts`]. Always 0 without the `cuda` feature. For diagnostics and the GPU test binaries.
pub fn gemv_pdl_count() -> u64 {
    #[cfg(feature = "cuda")]
    {
        cuda::GEMV_PDL_LAUNCHED.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "cuda"))]
    0
}

/// The most rows a product may have to take the GEMV route: `RESEARCH_GEMV_MAX_M` (1 to 8),
/// default 1. In run J (docs/benchmarks.md) the kernels beat cuBLASLt at M = 1 on the 3584-wide
/// weights (0.67 and 0.58 of copy bandwidth against 0.54 and 0.43) but fell far behind at M = 8
/// (0.24 to 0.37 against 0.44 to 1.04), so only single-row products take it by default;
/// `gpu-gemm check` sets 8 to cover every kernel instance.
pub fn gemv_route_max_m() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("RESEARCH_GEMV_MAX_M")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(1, |m| m.clamp(1, gemv::MAX_M))
    })
}

/// Whether `RESEARCH_GEMV=off` keeps decode products on cuBLASLt (read once per process).
pub fn gemv_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("RESEARCH_GEMV").is_ok_and(|v| v == "off"))
}

/// Whether `RESEARCH_GEMM=reference` asks for the reference path (read once per process).
pub fn reference_forced() -> bool {
    static REFERENCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REFERENCE.get_or_init(|| std::env::var("RESEARCH_GEMM").is_ok_and(|v| v == "reference"))
}

/// The GEMV launch the burn-cuda route would use for a planned forward product in `dtype`, or
/// `None` when it would run cuBLASLt: the route's whole host-side decision (bf16/f16 only,
/// `RESEARCH_GEMV=off`, at most [`gemv_route_max_m`] rows, then [`gemv::plan_gemv`]). Whether the
/// device pointers are 16-byte aligned is decided on the device thread (a planned product with
/// unaligned pointers runs cuBLASLt and counts in [`gemv_counts`]`.1`).
pub fn gemv_route_plan(dtype: burn::tensor::DType, plan: &GemmPlan) -> Option<gemv::GemvGeometry> {
    use burn::tensor::DType;
    if !matches!(dtype, DType::BF16 | DType::F16) || gemv_disabled() || plan.m > gemv_route_max_m() {
        return None;
    }
    gemv::plan_gemv(plan)
}

/// Whether the GEMV route would take `x @ w` with these shapes and element strides (as the
/// backend stores the tensors: see [`device_strides`]) in `dtype`; `false` for a layout the
/// linear route cannot plan at all. For checks that must know which route a product takes.
pub fn gemv_route_takes(
    dtype: burn::tensor::DType,
    x_shape: &[usize],
    x_strides: &[usize],
    w_shape: &[usize],
    w_strides: &[usize],
) -> bool {
    GemmPlan::new(x_shape, x_strides, w_shape, w_strides).is_some_and(|p| gemv_route_plan(dtype, &p).is_some())
}

/// The element strides of `t` as its backend stores it, where the backend exposes them: burn-cuda
/// (also under autodiff) with the `cuda` feature; `None` elsewhere. burn-cuda pads the rows of
/// new tensors (cubecl's pitched layout: a 16-bit `[1000, 1151]` tensor gets a row stride of 1280),
/// so a tensor's logical shape does not tell its row stride.
pub fn device_strides<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Vec<usize>> {
    #[cfg(feature = "cuda")]
    {
        cuda::strides_of(t)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = t;
        None
    }
}

/// How a 2-D operand sits in memory, in BLAS terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Rows contiguous (`col_stride == 1`); `ld` is the distance between rows, in elements.
    RowMajor {
        /// Leading dimension (row stride).
        ld: usize,
    },
    /// Columns contiguous (`row_stride == 1`); `ld` is the distance between columns.
    ColMajor {
        /// Leading dimension (column stride).
        ld: usize,
    },
}

/// Classifies a `rows × cols` matrix with the given element strides, or `None` when neither its
/// rows nor its columns are contiguous (or strides overlap). Size-1 dimensions accept any stride.
pub fn classify(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<Storage> {
    if (col_stride == 1 || cols == 1) && (rows == 1 || row_stride >= cols.max(1)) {
        let ld = if rows == 1 { cols.max(1) } else { row_stride };
        return Some(Storage::RowMajor { ld });
    }
    if (row_stride == 1 || rows == 1) && (cols == 1 || col_stride >= rows.max(1)) {
        let ld = if cols == 1 { rows.max(1) } else { col_stride };
        return Some(Storage::ColMajor { ld });
    }
    None
}

/// Flattens all dimensions but the last of a tensor into one row axis: `(rows, row_stride)`, or
/// `None` when the leading dimensions do not form a single strided axis. Size-1 dimensions are
/// ignored; with no non-trivial leading dimension the row stride is `fallback_stride`.
pub fn flatten_rows(shape: &[usize], strides: &[usize], fallback_stride: usize) -> Option<(usize, usize)> {
    // Non-trivial leading dimensions, outermost first (no allocation: this runs on every product).
    let mut lead = shape[..shape.len().saturating_sub(1)]
        .iter()
        .zip(strides)
        .filter(|(&s, _)| s != 1)
        .map(|(&s, &st)| (s, st));
    let Some(mut outer) = lead.next() else {
        return Some((1, fallback_stride));
    };
    let mut rows = outer.0;
    for inner in lead {
        if outer.1 != inner.1 * inner.0 {
            return None;
        }
        rows *= inner.0;
        outer = inner;
    }
    Some((rows, outer.1))
}

/// A GEMM `Y[M, N] = X[M, K] · W[K, N]` laid out for column-major BLAS: it computes
/// `Yᵀ (N × M) = op(A) · op(B)` with `A` from `W` and `B` from `X`, `Y` written contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmPlan {
    /// Rows of `Y` (all leading dimensions of `x` flattened).
    pub m: usize,
    /// Columns of `Y` (out features).
    pub n: usize,
    /// The reduction length (in features).
    pub k: usize,
    /// `A` (from `W`) is transposed: `W` was column-major.
    pub trans_a: bool,
    /// Leading dimension of `A` as stored.
    pub lda: usize,
    /// `B` (from `X`) is transposed: `X` was column-major.
    pub trans_b: bool,
    /// Leading dimension of `B` as stored.
    pub ldb: usize,
    /// Number of independent products (1 for a linear layer).
    pub batch: usize,
    /// Elements between consecutive batches of `A` (from `W`).
    pub stride_a: usize,
    /// Elements between consecutive batches of `B` (from `X`).
    pub stride_b: usize,
}

impl GemmPlan {
    /// Plans `x [.., M, K] @ w [K, N]` from shapes and element strides, or `None` when the layout
    /// needs a copy (the reference path then runs).
    pub fn new(x_shape: &[usize], x_strides: &[usize], w_shape: &[usize], w_strides: &[usize]) -> Option<Self> {
        if x_shape.is_empty() || w_shape.len() != 2 || x_strides.len() != x_shape.len() || w_strides.len() != 2 {
            return None;
        }
        let k = *x_shape.last()?;
        let (wk, n) = (w_shape[0], w_shape[1]);
        if wk != k {
            return None;
        }
        let kx_stride = *x_strides.last()?;
        let (m, x_row_stride) = flatten_rows(x_shape, x_strides, k.max(1))?;
        if m == 0 || n == 0 || k == 0 {
            return None;
        }
        // A batched `x` must be row-major (rows flatten only when the feature axis is innermost);
        // a plain 2-D `x` may also be column-major (a transposed view, as in `Xᵀ dY`).
        let x_storage = if x_shape.len() == 2 || x_shape[..x_shape.len() - 1].iter().filter(|&&s| s != 1).count() <= 1 {
            classify(m, k, x_row_stride, kx_stride)?
        } else {
            match classify(m, k, x_row_stride, kx_stride)? {
                s @ Storage::RowMajor { .. } => s,
                Storage::ColMajor { .. } => return None,
            }
        };
        let w_storage = classify(k, n, w_strides[0], w_strides[1])?;
        // Row-major W [K, N] is column-major N × K with ld = row stride: A = that, no transpose.
        // Column-major W is a column-major K × N matrix: A = its transpose.
        let (trans_a, lda) = match w_storage {
            Storage::RowMajor { ld } => (false, ld),
            Storage::ColMajor { ld } => (true, ld),
        };
        let (trans_b, ldb) = match x_storage {
            Storage::RowMajor { ld } => (false, ld),
            Storage::ColMajor { ld } => (true, ld),
        };
        Some(Self {
            m,
            n,
            k,
            trans_a,
            lda,
            trans_b,
            ldb,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
        })
    }

    /// Plans a batched `x [.., M, K] @ w [.., K, N]` with equal batch dimensions, each operand's
    /// batch dimensions flattening into one strided axis; `None` when a copy would be needed.
    pub fn batched(x_shape: &[usize], x_strides: &[usize], w_shape: &[usize], w_strides: &[usize]) -> Option<Self> {
        let d = x_shape.len();
        if d < 3 || w_shape.len() != d || x_strides.len() != d || w_strides.len() != d {
            return None;
        }
        if x_shape[..d - 2] != w_shape[..d - 2] {
            return None;
        }
        let (m, k, n) = (x_shape[d - 2], x_shape[d - 1], w_shape[d - 1]);
        if w_shape[d - 2] != k || m == 0 || n == 0 || k == 0 {
            return None;
        }
        let (batch, stride_b) = flatten_rows(&x_shape[..d - 1], &x_strides[..d - 1], 0)?;
        let (wbatch, stride_a) = flatten_rows(&w_shape[..d - 1], &w_strides[..d - 1], 0)?;
        if batch != wbatch || batch == 0 {
            return None;
        }
        let x_storage = classify(m, k, x_strides[d - 2], x_strides[d - 1])?;
        let w_storage = classify(k, n, w_strides[d - 2], w_strides[d - 1])?;
        let (trans_a, lda) = match w_storage {
            Storage::RowMajor { ld } => (false, ld),
            Storage::ColMajor { ld } => (true, ld),
        };
        let (trans_b, ldb) = match x_storage {
            Storage::RowMajor { ld } => (false, ld),
            Storage::ColMajor { ld } => (true, ld),
        };
        Some(Self {
            m,
            n,
            k,
            trans_a,
            lda,
            trans_b,
            ldb,
            batch,
            stride_a: if batch > 1 { stride_a } else { 0 },
            stride_b: if batch > 1 { stride_b } else { 0 },
        })
    }

    /// Rows and columns of `A` as stored (column-major).
    pub fn a_stored(&self) -> (usize, usize) {
        if self.trans_a {
            (self.k, self.n)
        } else {
            (self.n, self.k)
        }
    }

    /// Rows and columns of `B` as stored (column-major).
    pub fn b_stored(&self) -> (usize, usize) {
        if self.trans_b {
            (self.m, self.k)
        } else {
            (self.k, self.m)
        }
    }

    /// Element offset of `Y[i, j]`-contributing entries, for tests: where `W[kk, j]` lives.
    pub fn w_offset(&self, kk: usize, j: usize) -> usize {
        if self.trans_a {
            kk + j * self.lda
        } else {
            j + kk * self.lda
        }
    }

    /// Where `W[kk, j]` of batch `p` lives.
    pub fn w_offset_batched(&self, p: usize, kk: usize, j: usize) -> usize {
        p * self.stride_a + self.w_offset(kk, j)
    }

    /// Where `X[i, kk]` of batch `p` lives.
    pub fn x_offset_batched(&self, p: usize, i: usize, kk: usize) -> usize {
        p * self.stride_b + self.x_offset(i, kk)
    }

    /// Where `X[i, kk]` lives (rows flattened).
    pub fn x_offset(&self, i: usize, kk: usize) -> usize {
        if self.trans_b {
            i + kk * self.ldb
        } else {
            kk + i * self.ldb
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = NdArray<f32>;

    /// Computes `Y = X W` the way a column-major BLAS would from the plan, reading raw buffers.
    fn blas_by_plan(plan: &GemmPlan, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f32; plan.m * plan.n];
        for i in 0..plan.m {
            for j in 0..plan.n {
                let mut acc = 0.0f64;
                for kk in 0..plan.k {
                    acc += x[plan.x_offset(i, kk)] as f64 * w[plan.w_offset(kk, j)] as f64;
                }
                y[i * plan.n + j] = acc as f32;
            }
        }
        y
    }

    #[test]
    fn classify_row_col_and_degenerate() {
        assert_eq!(classify(3, 4, 4, 1), Some(Storage::RowMajor { ld: 4 }));
        assert_eq!(classify(3, 4, 6, 1), Some(Storage::RowMajor { ld: 6 }));
        assert_eq!(classify(3, 4, 1, 3), Some(Storage::ColMajor { ld: 3 }));
        assert_eq!(classify(1, 4, 99, 1), Some(Storage::RowMajor { ld: 4 }));
        assert_eq!(classify(3, 1, 1, 7), Some(Storage::RowMajor { ld: 1 }));
        // Overlapping rows and broadcast strides cannot be described with a leading dimension.
        assert_eq!(classify(3, 4, 2, 1), None);
        assert_eq!(classify(3, 4, 0, 1), None);
        assert_eq!(classify(3, 4, 8, 2), None);
    }

    /// The route decision the GPU check compares against: an odd-width 16-bit weight takes the
    /// GEMV route exactly when its rows are padded to 16 bytes (burn-cuda's pitched `[1000, 1151]`
    /// has a row stride of 1280), never in f32, never above the default single-row limit.
    #[test]
    fn gemv_route_follows_real_strides() {
        use burn::tensor::DType;
        let takes =
            |dtype, xs: &[usize], xst: &[usize], ws: &[usize]| gemv_route_takes(dtype, xs, xst, &[1000, 1151], ws);
        assert!(takes(DType::F16, &[1, 1000], &[1024, 1], &[1280, 1]));
        assert!(takes(DType::BF16, &[1, 1, 1000], &[1024, 1024, 1], &[1280, 1]));
        assert!(!takes(DType::F16, &[1, 1000], &[1000, 1], &[1151, 1]));
        assert!(!takes(DType::F32, &[1, 1000], &[1000, 1], &[1280, 1]));
        // K-contiguous (a transposed [1151, 1000] tensor with padded rows): K and ldw multiples of 8.
        assert!(takes(DType::BF16, &[1, 1000], &[1000, 1], &[1, 1024]));
        assert!(!takes(DType::BF16, &[1, 1000], &[1000, 1], &[1, 1004]));
        if std::env::var_os("RESEARCH_GEMV_MAX_M").is_none() && std::env::var_os("RESEARCH_GEMV").is_none() {
            assert!(
                !takes(DType::BF16, &[2, 1000], &[1024, 1], &[1280, 1]),
                "one row by default"
            );
        }
    }

    #[test]
    fn flatten_rows_cases() {
        assert_eq!(flatten_rows(&[2, 5, 8], &[40, 8, 1], 8), Some((10, 8)));
        // Decode: one token per row, odd stride on the size-1 axis.
        assert_eq!(flatten_rows(&[4, 1, 8], &[8, 999, 1], 8), Some((4, 8)));
        assert_eq!(flatten_rows(&[1, 1, 8], &[8, 8, 1], 8), Some((1, 8)));
        // A narrowed sequence axis (stride of batch is 2× what the rows need) does not flatten.
        assert_eq!(flatten_rows(&[2, 5, 8], &[80, 8, 1], 8), None);
        assert_eq!(flatten_rows(&[8], &[1], 8), Some((1, 8)));
    }

    #[test]
    fn plans_for_model_layouts() {
        // x [2, 3, 4] contiguous, W [4, 5] contiguous.
        let p = GemmPlan::new(&[2, 3, 4], &[12, 4, 1], &[4, 5], &[5, 1]).unwrap();
        assert_eq!(
            (p.m, p.n, p.k, p.trans_a, p.lda, p.trans_b, p.ldb),
            (6, 5, 4, false, 5, false, 4)
        );
        // Tied lm_head: W = embed[V, H]ᵀ, strides (1, H).
        let p = GemmPlan::new(&[1, 3, 4], &[12, 4, 1], &[4, 7], &[1, 4]).unwrap();
        assert_eq!((p.trans_a, p.lda), (true, 4));
        // Backward dW = Xᵀ dY: the "x" operand is Xᵀ [K, M] with strides (1, K).
        let p = GemmPlan::new(&[4, 6], &[1, 4], &[6, 5], &[5, 1]).unwrap();
        assert_eq!((p.m, p.k, p.trans_b, p.ldb), (4, 6, true, 4));
        // Batched column-major x cannot flatten.
        assert!(GemmPlan::new(&[2, 3, 4], &[12, 1, 3], &[4, 5], &[5, 1]).is_none());
        // Shape mismatch and empty dimensions go to the reference path.
        assert!(GemmPlan::new(&[2, 3, 4], &[12, 4, 1], &[5, 5], &[5, 1]).is_none());
        assert!(GemmPlan::new(&[0, 4], &[4, 1], &[4, 5], &[5, 1]).is_none());
    }

    /// The plan's BLAS indexing over raw buffers equals a float64 triple loop over the logical
    /// matrices, for every stride combination the model and backward produce.
    #[test]
    fn plan_indexing_matches_logical_product() {
        let (m, k, n) = (5usize, 7usize, 3usize);
        let xl: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let wl: Vec<f32> = (0..k * n).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
        let mut expect = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                expect[i * n + j] = (0..k)
                    .map(|kk| xl[i * k + kk] as f64 * wl[kk * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        for x_col in [false, true] {
            for w_col in [false, true] {
                // Store with padding in the leading dimension to exercise ld != dim.
                let (x_buf, xs) = store(&xl, m, k, x_col, 2);
                let (w_buf, ws) = store(&wl, k, n, w_col, 3);
                let plan = GemmPlan::new(&[m, k], &xs, &[k, n], &ws).unwrap();
                assert_eq!(plan.trans_b, x_col);
                assert_eq!(plan.trans_a, w_col);
                let got = blas_by_plan(&plan, &x_buf, &w_buf);
                for (g, e) in got.iter().zip(&expect) {
                    assert!((g - e).abs() < 1e-5, "x_col={x_col} w_col={w_col}: {g} vs {e}");
                }
            }
        }
    }

    /// Batched plans: attention's `q kᵀ` over a KV-cache slice (`k` narrowed from a larger
    /// capacity, then transposed) and `p v`, checked by indexing raw buffers against the logical
    /// batched product.
    #[test]
    fn batched_plan_over_cache_slices() {
        let (b, h, t, s, d, cap) = (2usize, 3usize, 4usize, 5usize, 6usize, 9usize);
        let val = |i: usize| ((i * 31 % 17) as f32 - 8.0) / 4.0;
        // q [b, h, t, d] contiguous; k stored [b, h, cap, d], viewed [b, h, s, d], transposed to [b, h, d, s].
        let q: Vec<f32> = (0..b * h * t * d).map(val).collect();
        let kbuf: Vec<f32> = (0..b * h * cap * d).map(|i| val(i + 3)).collect();
        let q_strides = [h * t * d, t * d, d, 1];
        let kt_shape = [b, h, d, s];
        let kt_strides = [h * cap * d, cap * d, 1, d];
        let plan = GemmPlan::batched(&[b, h, t, d], &q_strides, &kt_shape, &kt_strides).unwrap();
        assert_eq!((plan.batch, plan.m, plan.k, plan.n), (b * h, t, d, s));
        assert_eq!(
            (plan.trans_a, plan.lda, plan.stride_a, plan.stride_b),
            (true, d, cap * d, t * d)
        );
        for p in 0..b * h {
            for i in 0..t {
                for j in 0..s {
                    let by_plan: f64 = (0..d)
                        .map(|kk| {
                            q[plan.x_offset_batched(p, i, kk)] as f64 * kbuf[plan.w_offset_batched(p, kk, j)] as f64
                        })
                        .sum();
                    let (bb, hh) = (p / h, p % h);
                    let logical: f64 = (0..d)
                        .map(|kk| {
                            q[bb * h * t * d + hh * t * d + i * d + kk] as f64
                                * kbuf[bb * h * cap * d + hh * cap * d + j * d + kk] as f64
                        })
                        .sum();
                    assert!((by_plan - logical).abs() < 1e-9);
                }
            }
        }
        // Different batch dimensions (broadcast) or a batch that does not flatten: reference path.
        assert!(GemmPlan::batched(&[2, 3, 4, 6], &q_strides, &[1, 3, 6, 5], &[90, 30, 5, 1]).is_none());
        assert!(GemmPlan::batched(&[2, 3, 4, 6], &[1000, 24, 6, 1], &[2, 3, 6, 5], &[90, 30, 5, 1]).is_none());
    }

    /// The public batched `matmul` equals burn's on the reference backend, with a transposed view.
    #[test]
    fn matmul_reference_matches_burn() {
        let device = Default::default();
        let a = Tensor::<B, 3>::random([2, 3, 4], Distribution::Default, &device);
        let bt = Tensor::<B, 3>::random([2, 5, 4], Distribution::Default, &device);
        let got = matmul(a.clone(), bt.clone().swap_dims(1, 2)).into_data();
        // Hand-built reference: loops over the host data.
        let av = a.into_data().to_vec::<f32>().unwrap();
        let bv = bt.into_data().to_vec::<f32>().unwrap();
        let mut want = vec![0.0f32; 2 * 3 * 5];
        for p in 0..2 {
            for i in 0..3 {
                for j in 0..5 {
                    want[p * 15 + i * 5 + j] = (0..4).map(|kk| av[p * 12 + i * 4 + kk] * bv[p * 20 + j * 4 + kk]).sum();
                }
            }
        }
        got.assert_approx_eq::<f32>(&TensorData::new(want, [2, 3, 5]), Tolerance::default());
    }

    fn store(logical: &[f32], rows: usize, cols: usize, col_major: bool, pad: usize) -> (Vec<f32>, [usize; 2]) {
        if col_major {
            let ld = rows + pad;
            let mut buf = vec![f32::NAN; ld * cols];
            for r in 0..rows {
                for c in 0..cols {
                    buf[r + c * ld] = logical[r * cols + c];
                }
            }
            (buf, [1, ld])
        } else {
            let ld = cols + pad;
            let mut buf = vec![f32::NAN; ld * rows];
            for r in 0..rows {
                for c in 0..cols {
                    buf[r * ld + c] = logical[r * cols + c];
                }
            }
            (buf, [ld, 1])
        }
    }

    /// The reference path against a hand-worked product with bias.
    #[test]
    fn reference_hand_worked() {
        let device = Default::default();
        let x = Tensor::<B, 3>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 2, 2]), &device);
        let w = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 0.0, -1.0, 2.0, 1.0, 0.5], [2, 3]), &device);
        let b = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32, -0.5, 1.0], [3]), &device);
        let y = linear(x, w, Some(b));
        // Row 0: [1,2]·W = [1+4, 0+2, -1+1] = [5, 2, 0] + b; row 1: [3+8, 0+4, -3+2] = [11, 4, -1] + b.
        let expect = TensorData::new(vec![5.5f32, 1.5, 1.0, 11.5, 3.5, 0.0], [1, 2, 3]);
        y.into_data().assert_approx_eq::<f32>(&expect, Tolerance::default());
    }

    /// A transposed weight view (tied head) and a 2-D input give the same as the contiguous weight.
    #[test]
    fn reference_transposed_weight_and_ranks() {
        let device = Default::default();
        let x = Tensor::<B, 2>::random([3, 4], Distribution::Default, &device);
        let w_t = Tensor::<B, 2>::random([6, 4], Distribution::Default, &device);
        let w_view = w_t.clone().transpose();
        let w_copy = Tensor::<B, 2>::from_data(w_view.clone().into_data(), &device);
        let a = linear(x.clone(), w_view, None).into_data();
        let b = linear(x.clone(), w_copy.clone(), None).into_data();
        a.assert_approx_eq::<f32>(&b, Tolerance::default());
        let x3 = x.clone().reshape([1, 3, 4]);
        let c = linear(x3, w_copy, None).reshape([3, 6]).into_data();
        c.assert_approx_eq::<f32>(&b, Tolerance::default());
    }
}
