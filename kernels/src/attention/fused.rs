//! The fused attention entry point: tensor-core CUDA kernels on burn-cuda, the reference path
//! elsewhere.
//!
//! [`fused_attention`] takes the mask as structure (causal with a query offset, per-sequence key
//! lengths) plus an optional additive bias, so the kernels never read a materialised causal mask.
//! On burn-cuda (and burn-cuda under autodiff, with a backward) it runs the kernels of
//! `kernels/src/attention/*.cu` (compiled at run time by NVRTC) on burn's buffers and stream;
//! on every other backend, for unsupported shapes/dtypes, or with `RESEARCH_ATTENTION=reference`,
//! it builds the equivalent bias and calls [`attention`](super::attention).
//!
//! [`attention_auto`] has the reference signature and is what the models call: on burn-cuda it
//! routes to the fused path (a causal [`AttentionBias`] as structure, so masked tiles are skipped;
//! any other bias as an additive bias) unless `RESEARCH_ATTENTION=reference`; on the other
//! backends it is the reference path unless `RESEARCH_ATTENTION=fused` (which then falls back to
//! the reference inside [`fused_attention`] anyway).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::{attention, AttentionBias, MASKED};

/// Whether `RESEARCH_ATTENTION=reference` forces the reference path.
pub fn reference_forced() -> bool {
    std::env::var("RESEARCH_ATTENTION").is_ok_and(|v| v == "reference")
}

/// Whether `RESEARCH_ATTENTION=fused` asks the models to use [`fused_attention`].
pub fn fused_requested() -> bool {
    std::env::var("RESEARCH_ATTENTION").is_ok_and(|v| v == "fused")
}

/// Key rows (batch × kv heads × keys) from which the tensor-core dK/dV kernel keeps a GQA group in
/// one block per KV head (dK/dV reduced over the group in registers). Run N (H200, 8-warp
/// blocks of 128 keys at d 128): at 65,536 (the 7B shapes of issue 6) that was 1–8 % faster than
/// one block per query head plus the reduction; at 32,768 (the 0.5B training step, d 64) the two
/// tied; run K measured 8,192 (0.5B, 2 × 2,048), where one block per KV head left the GPU idle.
pub const BWD_GROUPED_MIN_KEY_ROWS: usize = 32_768;

/// Whether the tensor-core backward splits a GQA group over one dK/dV block per query head (f32
/// partials summed in head order by `attn_bwd_mma_dkdv_reduce`) rather than one block per KV head
/// walking its group: when the group has more than one head and the KV-head grid would be small
/// (below [`BWD_GROUPED_MIN_KEY_ROWS`] key rows). `RESEARCH_ATTENTION_BWD=grouped` / `=split`
/// force either (comparisons).
pub fn bwd_splits_group(batch: usize, heads: usize, kv_heads: usize, keys: usize) -> bool {
    match std::env::var("RESEARCH_ATTENTION_BWD").as_deref() {
        Ok("grouped") => false,
        Ok("split") => heads > kv_heads,
        _ => splits_group_by_size(batch, heads, kv_heads, keys),
    }
}

fn splits_group_by_size(batch: usize, heads: usize, kv_heads: usize, keys: usize) -> bool {
    heads > kv_heads && batch * kv_heads * keys < BWD_GROUPED_MIN_KEY_ROWS
}

/// Query rows below which the tensor-core backward on compute capability 9.0 runs the separate dQ
/// kernel (which recomputes S and dP) at head dim 128 instead of adding dQ inside the wgmma dK/dV
/// kernel. Run P (H100, 7B heads, causal bf16), forward+backward TFLOP/s separate / fused:
/// 183.9 / 174.8 at (16, 1024), 272.5 / 275.4 at (4, 4096), 298.7 / 306.0 at (2, 8192): at short
/// lengths the fused dQ's f32 accumulator (zeroed, added to, converted) costs more than the
/// recomputation. With the mma.sync dK/dV kernel (other GPUs, head dim 64) the fused dQ was faster
/// at every length (run N), so it stays there.
pub const BWD_SEPARATE_DQ_BELOW_T: usize = 2048;

/// 0: no device seen yet; 1: every device the kernels ran on has compute capability 9.0; 2: not.
static HOPPER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Records a device's compute capability (the launcher's device thread, at its first launch
/// there; a forward always comes before its backward).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn note_compute_capability(major: i32, minor: i32) {
    use std::sync::atomic::Ordering::Relaxed;
    let v = if (major, minor) == (9, 0) { 1 } else { 2 };
    let _ = HOPPER.compare_exchange(0, v, Relaxed, Relaxed);
    if v == 2 {
        HOPPER.store(2, Relaxed);
    }
}

/// Whether the tensor-core backward adds dQ inside the dK/dV kernel (f32 atomics into an
/// accumulator, then a convert) rather than running the separate dQ kernel: yes, except on
/// compute capability 9.0 at head dim 128 below [`BWD_SEPARATE_DQ_BELOW_T`] queries.
/// `RESEARCH_ATTENTION_DQ=separate` / `=fused` force either (comparisons).
pub fn bwd_fused_dq(queries: usize, head_dim: usize) -> bool {
    match std::env::var("RESEARCH_ATTENTION_DQ").as_deref() {
        Ok("separate") => false,
        Ok("fused") => true,
        _ => {
            !(head_dim == 128
                && queries < BWD_SEPARATE_DQ_BELOW_T
                && HOPPER.load(std::sync::atomic::Ordering::Relaxed) == 1)
        }
    }
}

/// Exclusive end of the keys query `t` (of `queries`) may see in a sequence with `seq_keys`
/// visible keys: all of them without `causal`; with `causal`, keys `0..=offset + t` where the
/// offset is `q_offset`, or `seq_keys - queries` when per-sequence key lengths are given (the
/// queries are then the last positions of each sequence). Clamped to `0..=seq_keys`.
pub fn key_end(seq_keys: usize, t: usize, queries: usize, causal: bool, q_offset: usize, ragged: bool) -> usize {
    if !causal {
        return seq_keys;
    }
    let off = if ragged {
        seq_keys as i64 - queries as i64
    } else {
        q_offset as i64
    };
    (off + t as i64 + 1).clamp(0, seq_keys as i64) as usize
}

/// `softmax(q kᵀ / sqrt(d) + mask) v` with GQA, the mask given as structure:
///
/// - `q`: `[batch, heads, queries, d]`; `k`, `v`: `[batch, kv_heads, keys, d]` (any strides; query
///   head `h` uses kv head `h / (heads / kv_heads)`, K/V never repeated).
/// - `causal`: query `t` sees keys `0..=q_offset + t` (chunked prefill against a cache: the queries
///   are keys `q_offset..q_offset + queries`).
/// - `kv_lens`: per-sequence visible keys (ragged decode); with `causal` the queries are the last
///   `queries` positions of each sequence (`q_offset` is then ignored).
/// - `bias`: an extra additive f32 bias `[batch|1, 1, queries|1, keys]`, as the reference takes.
///
/// Returns `[batch, heads, queries, d]`. Rows that see no key at all are 0 on the fused path
/// (the reference path's finite mask gives the mean of `v` there); such rows are padding.
pub fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    causal: bool,
    q_offset: usize,
    kv_lens: Option<&[usize]>,
    bias: Option<&AttentionBias<B>>,
) -> Tensor<B, 4> {
    #[cfg(feature = "cuda")]
    if !reference_forced() {
        if let Some(o) = super::cuda::try_fused(&q, &k, &v, causal, q_offset, kv_lens, bias) {
            return o;
        }
    }
    fused_reference(q, k, v, causal, q_offset, kv_lens, bias)
}

/// The reference path of [`fused_attention`]: the structural mask as a [`MASKED`] bias (plus
/// `bias`), then [`attention`].
pub fn fused_reference<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    causal: bool,
    q_offset: usize,
    kv_lens: Option<&[usize]>,
    bias: Option<&AttentionBias<B>>,
) -> Tensor<B, 4> {
    let [b, _, t, _] = q.dims();
    let s = k.dims()[2];
    let device = q.device();
    let structural = (causal || kv_lens.is_some()).then(|| {
        let rows = if kv_lens.is_some() { b } else { 1 };
        let mut values = vec![0.0f32; rows * t * s];
        for bi in 0..rows {
            let seq = kv_lens.map(|l| l[bi].min(s)).unwrap_or(s);
            for ti in 0..t {
                let end = key_end(seq, ti, t, causal, q_offset, kv_lens.is_some());
                for j in end..s {
                    values[(bi * t + ti) * s + j] = MASKED;
                }
            }
        }
        AttentionBias::<B>::from_host(&values, rows, t, s, &device)
    });
    let combined = match (structural, bias) {
        (Some(m), Some(extra)) => AttentionBias::new(m.bias + extra.bias.clone()),
        (Some(m), None) => m,
        (None, Some(extra)) => extra.clone(),
        (None, None) => AttentionBias::from_host(&vec![0.0; t * s], 1, t, s, &device),
    };
    attention(q, k, v, &combined)
}

/// Whether [`attention_auto`] takes the fused route for backend `B`: on burn-cuda (plain or under
/// autodiff) unless `RESEARCH_ATTENTION=reference`; elsewhere only with `RESEARCH_ATTENTION=fused`.
#[cfg_attr(not(feature = "cuda"), allow(clippy::extra_unused_type_parameters))]
pub fn fused_by_default<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    if super::cuda::is_cuda::<B>() {
        return !reference_forced();
    }
    fused_requested()
}

/// [`attention`]'s signature, routed by [`fused_by_default`]: the fused kernels (a causal `bias`
/// as structure, any other as an additive bias), else the reference path itself.
pub fn attention_auto<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: &AttentionBias<B>,
) -> Tensor<B, 4> {
    if !fused_by_default::<B>() {
        return attention(q, k, v, bias);
    }
    match bias.causal_offset {
        Some(offset) => fused_attention(q, k, v, true, offset, None, None),
        None => fused_attention(q, k, v, false, 0, None, Some(bias)),
    }
}

/// `(launched, failed)`: fused attention kernels enqueued so far in this process, and attempts
/// that fell back to the reference path after trying (a warning names each distinct reason).
/// Always `(0, 0)` without the `cuda` feature.
pub fn fused_counts() -> (u64, u64) {
    #[cfg(feature = "cuda")]
    {
        use std::sync::atomic::Ordering;
        (
            super::cuda::LAUNCHED.load(Ordering::Relaxed),
            super::cuda::FALLBACKS.load(Ordering::Relaxed),
        )
    }
    #[cfg(not(feature = "cuda"))]
    (0, 0)
}

/// `(kernel kind, launches)` of the fused attention kernels so far in this process, sorted by
/// kind: the entry point without `attn_` and its `_<dtype>_d<D>` suffix (`fwd_mma`, `fwd_simple`,
/// `bwd_pre`, `bwd_mma_dkdv`, `bwd_dkdv`, ...). Empty without the `cuda` feature.
pub fn fused_kernel_counts() -> Vec<(String, u64)> {
    #[cfg(feature = "cuda")]
    {
        super::cuda::kernel_counts()
    }
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// Bytes of the kernels' one by-value parameter (`struct Params` in `common.cuh`, mirrored by
/// `KernelParams` in `cuda.rs`, which asserts its size against this).
pub const PARAMS_BYTES: usize = 336;

/// Head dimensions the kernels are instantiated for.
pub const HEAD_DIMS: [usize; 3] = [32, 64, 128];

/// The kernel entry points module `name` exports (`attn_<kind>_<dtype>_d<D>`).
pub fn entries(name: &str) -> Vec<String> {
    let kinds: &[&str] = match name {
        "fwd_simple" => &["fwd_simple", "fwd_combine"],
        "fwd_mma" => &["fwd_mma2", "fwd_mma", "fwd_mma1", "fwd_mma3"],
        "fwd_wg" => &["fwd_wg"],
        "decode" => &["fwd_decode"],
        "bwd" => &["bwd_pre", "bwd_dkdv", "bwd_dq"],
        "bwd_mma" => &[
            "bwd_mma_dkdv",
            "bwd_mma_dq",
            "bwd_mma_dkdv_reduce",
            "bwd_mma_dq_convert",
        ],
        _ => &[],
    };
    let mut out = Vec::new();
    for kind in kinds {
        for dt in ["f32", "bf16", "f16"] {
            for d in HEAD_DIMS {
                let mma = kind.starts_with("fwd_mma")
                    || kind.starts_with("bwd_mma")
                    || *kind == "fwd_decode"
                    || *kind == "fwd_wg";
                if mma && (dt == "f32" || d == 32) {
                    continue;
                }
                out.push(format!("attn_{kind}_{dt}_d{d}"));
            }
        }
    }
    out
}

/// Keys per block tile of the tensor-core decode kernel (`DEC_BN` in `decode.cu`).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) const DECODE_BN: usize = 64;
/// The most query rows (GQA group × queries) of one (batch, kv head) the decode kernel takes (the
/// 16 rows of an mma A operand).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) const DECODE_ROWS: usize = 16;
/// Decode blocks wanted before its keys are split: about one wave of 132 SMs at two resident
/// blocks each (its shared memory allows two per SM at head dim 128). Run P (H100, 7B heads):
/// at 64 × 2,048 and 256 × 4,096 cached tokens one split (256 and 1,024 blocks, no combine) took
/// 107.9 and 766.7 µs, two 112.1 and 776.8, the earlier target of 1,056 blocks (5 and 2 splits)
/// 116.1 and 781.4; more splits were slower still.
const DECODE_TARGET_BLOCKS: usize = 256;
/// Fewest keys per split (two tiles), so the partials stay a small fraction of the K/V bytes.
const DECODE_MIN_SPLIT: usize = 2 * DECODE_BN;

/// `(splits, split_len)` of the decode kernel for `pairs` (batch, kv head) pairs over `s` keys:
/// split until about [`DECODE_TARGET_BLOCKS`] blocks, each split at least [`DECODE_MIN_SPLIT`]
/// keys, split lengths a multiple of the key tile (`splits` blocks cover `s`, the last one maybe
/// shorter).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn decode_splits(pairs: usize, s: usize) -> (usize, usize) {
    let max_splits = s.div_ceil(DECODE_MIN_SPLIT).max(1);
    let want = forced_decode_splits()
        .unwrap_or_else(|| DECODE_TARGET_BLOCKS.div_ceil(pairs.max(1)))
        .clamp(1, max_splits);
    let split_len = s.div_ceil(want).div_ceil(DECODE_BN) * DECODE_BN;
    (s.div_ceil(split_len).max(1), split_len)
}

/// `RESEARCH_DECODE_SPLITS=n` (n ≥ 1, read once per process): the decode kernel splits the keys
/// into about `n` parts instead of aiming at [`DECODE_TARGET_BLOCKS`] blocks; a tuning switch for
/// the GPU machine, still at least [`DECODE_MIN_SPLIT`] keys per split.
fn forced_decode_splits() -> Option<usize> {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var("RESEARCH_DECODE_SPLITS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GQA split policy by size: the 7B shapes (28 q / 4 kv heads) stay grouped, the
    /// 0.5B training step (14 / 2, batch 8 × 2,048) too, a short 0.5B batch (2 × 2,048) splits,
    /// and a group of one head (MHA) never splits.
    #[test]
    fn gqa_groups_split_only_when_the_kv_head_grid_is_small() {
        for (b, s) in [(16, 1024), (4, 4096), (2, 8192)] {
            assert!(!splits_group_by_size(b, 28, 4, s), "7B heads at ({b}, {s})");
        }
        assert!(!splits_group_by_size(8, 14, 2, 2048));
        assert!(splits_group_by_size(2, 14, 2, 2048));
        assert!(splits_group_by_size(1, 28, 4, 4096));
        assert!(!splits_group_by_size(1, 4, 4, 16));
    }
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    #[test]
    fn key_end_cases() {
        // Chunked prefill: 3 queries at columns 4..7 of 7 keys.
        assert_eq!(
            (0..3).map(|t| key_end(7, t, 3, true, 4, false)).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        // Ragged decode: queries are the last positions of each sequence's own keys.
        assert_eq!(key_end(9, 0, 1, true, 0, true), 9);
        assert_eq!(key_end(9, 0, 2, true, 0, true), 8);
        assert_eq!(key_end(5, 3, 2, false, 0, true), 5);
        // An offset past the keys clamps; a negative start clamps to 0.
        assert_eq!(key_end(4, 2, 3, true, 9, false), 4);
        assert_eq!(key_end(1, 0, 3, true, 0, true), 0);
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    /// Hand-derived float64 attention of one (query row, head): softmax over visible keys.
    #[allow(clippy::too_many_arguments)]
    fn row_ref(q: &[f32], k: &[f32], v: &[f32], d: usize, visible: &[usize], qi: usize, kv0: usize) -> Vec<f64> {
        let scale = 1.0 / (d as f64).sqrt();
        let sc: Vec<f64> = visible
            .iter()
            .map(|&j| {
                (0..d)
                    .map(|x| q[qi + x] as f64 * k[kv0 + j * d + x] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = sc.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
        (0..d)
            .map(|x| {
                visible
                    .iter()
                    .zip(&sc)
                    .map(|(&j, s)| (s - m).exp() / z * v[kv0 + j * d + x] as f64)
                    .sum()
            })
            .collect()
    }

    /// The CPU path of `fused_attention` (reference route) against float64 with ragged lengths,
    /// causal offsets and GQA.
    #[test]
    fn fused_reference_matches_f64() {
        let dev = Default::default();
        for &(b, h, kvh, t, s, d, causal, off, ragged) in &[
            (2usize, 4usize, 2usize, 3usize, 7usize, 8usize, true, 4usize, false),
            (3, 6, 3, 1, 9, 4, false, 0, true),
            (3, 7, 1, 2, 9, 4, true, 0, true),
            (1, 2, 2, 5, 5, 8, true, 0, false),
        ] {
            let (qv, kv, vv) = (
                data(b * h * t * d, 1),
                data(b * kvh * s * d, 2),
                data(b * kvh * s * d, 3),
            );
            let lens: Vec<usize> = (0..b).map(|i| s - 2 * i).collect();
            let tq = Tensor::<B, 4>::from_data(TensorData::new(qv.clone(), [b, h, t, d]), &dev);
            let tk = Tensor::<B, 4>::from_data(TensorData::new(kv.clone(), [b, kvh, s, d]), &dev);
            let tv = Tensor::<B, 4>::from_data(TensorData::new(vv.clone(), [b, kvh, s, d]), &dev);
            let got: Vec<f32> = fused_attention(tq, tk, tv, causal, off, ragged.then_some(&lens[..]), None)
                .into_data()
                .to_vec()
                .unwrap();
            let g = h / kvh;
            for (bi, &len) in lens.iter().enumerate() {
                let seq = if ragged { len } else { s };
                for hi in 0..h {
                    for ti in 0..t {
                        let end = key_end(seq, ti, t, causal, off, ragged);
                        let visible: Vec<usize> = (0..end).collect();
                        let qi = ((bi * h + hi) * t + ti) * d;
                        let kv0 = (bi * kvh + hi / g) * s * d;
                        let want = row_ref(&qv, &kv, &vv, d, &visible, qi, kv0);
                        for x in 0..d {
                            let err = (got[qi + x] as f64 - want[x]).abs();
                            assert!(err < 1e-5, "{:?} row {bi},{hi},{ti}: {err}", (b, h, kvh, t, s, d));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn attention_auto_is_the_reference_by_default() {
        if fused_requested() {
            return;
        }
        let dev = Default::default();
        let q = Tensor::<B, 4>::from_data(TensorData::new(data(2 * 3 * 4, 5), [1, 2, 3, 4]), &dev);
        let k = Tensor::<B, 4>::from_data(TensorData::new(data(2 * 5 * 4, 6), [1, 2, 5, 4]), &dev);
        let v = Tensor::<B, 4>::from_data(TensorData::new(data(2 * 5 * 4, 7), [1, 2, 5, 4]), &dev);
        let bias = AttentionBias::<B>::causal(1, 3, 5, 2, &dev);
        let a: Vec<f32> = attention_auto(q.clone(), k.clone(), v.clone(), &bias)
            .into_data()
            .to_vec()
            .unwrap();
        let r: Vec<f32> = attention(q, k, v, &bias).into_data().to_vec().unwrap();
        assert_eq!(a, r);
    }

    /// The decode split planner: every split a whole number of tiles, at least two unless the
    /// cache is shorter, the splits covering the keys with the last one non-empty, and about
    /// [`DECODE_TARGET_BLOCKS`] blocks when the keys allow (hand-worked: 64 × 4 pairs over 2,048
    /// keys and 256 × 4 over 4,096 are not split; 32 × 4 over 768 give 2 splits of 384; 1 pair
    /// over 1,000 keys gives 8 of 128).
    #[test]
    fn decode_split_plan() {
        assert_eq!(decode_splits(256, 2048), (1, 2048));
        assert_eq!(decode_splits(1024, 4096), (1, 4096));
        assert_eq!(decode_splits(128, 768), (2, 384));
        assert_eq!(decode_splits(1, 1000), (8, 128));
        assert_eq!(decode_splits(2000, 5000), (1, 5056));
        assert_eq!(decode_splits(3, 1), (1, 64));
        for pairs in [1, 3, 28, 256, 1024, 5000] {
            for s in [1, 63, 64, 65, 127, 128, 129, 1000, 2048, 4097, 32768] {
                let (splits, len) = decode_splits(pairs, s);
                assert!(splits >= 1 && len % DECODE_BN == 0, "{pairs} {s}");
                assert!(
                    splits * len >= s && (splits - 1) * len < s,
                    "{pairs} {s}: {splits} x {len}"
                );
                assert!(splits == 1 || len >= DECODE_MIN_SPLIT, "{pairs} {s}: {splits} x {len}");
                assert!(pairs * splits <= DECODE_TARGET_BLOCKS.max(pairs) * 2, "{pairs} {s}");
            }
        }
    }

    /// Builds `decode_emu.cpp` (with `$CXX` or `c++`), runs it with `arg` on `input` (one case per
    /// line, named by `labels`) and asserts every case printed `ok`. `None` when no compiler could
    /// build it (a note is printed; a failure with `RESEARCH_DECODE_EMU=require`).
    fn emulate(arg: Option<&str>, input: &str, labels: &[String], what: &str) -> Option<()> {
        let require = std::env::var("RESEARCH_DECODE_EMU").is_ok_and(|v| v == "require");
        let (dir, exe) = crate::emu::build(
            "src/attention/decode_emu.cpp",
            "decode_emu",
            what,
            &[],
            require,
            "emulator",
        )?;
        let out = crate::emu::run(&dir, &exe, arg.as_slice(), input);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            out.status.success() && lines.len() == labels.len(),
            "emulator stopped after {} of {} cases: {}",
            lines.len(),
            labels.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        let bad: Vec<String> = lines
            .iter()
            .zip(labels)
            .filter(|(l, _)| !l.starts_with("ok "))
            .map(|(l, c)| format!("{c}: {l}"))
            .collect();
        assert!(bad.is_empty(), "{what} emulation failures:\n{}", bad.join("\n"));
        Some(())
    }

    /// The decode kernel itself, run on the CPU: `decode_emu.cpp` compiles `decode.cu` and the
    /// combine of `fwd_simple.cu` as C++17 (the threads of a block as coroutines; mma.sync,
    /// ldmatrix, shuffles and barriers resolved only when the whole warp or block waits at them,
    /// with the PTX fragment layouts written independently of the kernel; cp.async copies landing
    /// at the latest allowed wait or at issue; shared memory and outputs poisoned with NaN) and
    /// checks every output and log-sum-exp against float64. Splits from [`decode_splits`] (and
    /// forced to 1: the direct write): GQA 1, 2, 7, 8 with 1 and 2 queries (16 rows at 8 × 2),
    /// ragged lengths (1, shorter than a split, longer than the cache), a cache view, a causal
    /// offset, both biases, d 64 and 128, bf16 and f16. Needs a C++17 compiler with `_Float16`
    /// (`$CXX` or `c++`, GCC ≥ 12); skipped with a note when there is none, unless
    /// `RESEARCH_DECODE_EMU=require`.
    #[test]
    fn decode_kernel_matches_float64_in_cpu_emulation() {
        // (dt code, d, batch, heads, kv heads, queries, keys, cache, causal, q_offset, lens, bias)
        let cases = [
            (1, 128, 4, 7, 1, 1, 300, 300, false, 0, true, 0),
            (2, 64, 2, 16, 2, 2, 200, 256, true, 0, true, 0),
            (1, 128, 3, 14, 2, 2, 150, 150, true, 0, true, 0),
            (2, 128, 2, 2, 2, 1, 70, 70, false, 0, false, 0),
            (1, 64, 2, 8, 1, 1, 100, 100, false, 0, false, 1),
            (2, 128, 1, 8, 2, 1, 130, 130, true, 129, false, 2),
            (1, 64, 2, 4, 4, 2, 95, 128, true, 93, false, 0),
            (2, 128, 1, 16, 2, 1, 1000, 1000, false, 0, false, 0),
            (1, 128, 3, 8, 1, 2, 1, 64, true, 0, true, 0),
        ];
        let mut input = String::new();
        let mut labels = Vec::new();
        let mut seed = 1;
        for &(dt, d, b, h, kvh, t, s, cap, causal, off, lens, bias) in &cases {
            assert!((h / kvh) * t <= DECODE_ROWS);
            let (splits, len) = decode_splits(b * kvh, s);
            let mut runs = vec![(splits, len, 0), (splits, len, 1)];
            runs.push((1, s.div_ceil(DECODE_BN) * DECODE_BN, 0));
            for (splits, len, mode) in runs {
                input += &format!(
                    "{dt} {d} {b} {h} {kvh} {t} {s} {cap} {} {off} {} {bias} {splits} {len} {mode} {seed}\n",
                    u8::from(causal),
                    u8::from(lens)
                );
                labels.push(format!(
                    "dt{dt} d{d} b{b} h{h}/{kvh} t{t} s{s} cap{cap} causal={causal}@{off} lens={lens} bias={bias} \
                     splits {splits} x {len} mode {mode}"
                ));
                seed += 1;
            }
        }
        let _ = emulate(None, &input, &labels, "decode");
    }

    /// `attn_fwd_mma3_*` (128-row blocks, 32 query rows per warp) run on the CPU by the same
    /// emulator (`decode_emu mma3`) and checked against float64 (O within 2e-2 bf16 / 4e-3 f16 of
    /// max |O|, lse within 1e-3, -inf and O = 0 for rows without keys): several query blocks and key
    /// tiles (both stages of the K/V double buffer), a partial last block, causal with and without
    /// an offset, non-causal, GQA 1/2/4... with ragged lengths (rows that see no key, a length past
    /// the cache), both biases, a strided cache view, d 64 (Q in registers) and 128 (Q in shared
    /// memory), bf16 and f16, cp.async landing late (mode 0) and at issue (mode 1).
    #[test]
    fn fwd_mma3_matches_float64_in_cpu_emulation() {
        // (dt code, d, batch, heads, kv heads, queries, keys, cache, causal, q_offset, lens, bias)
        let cases = [
            (1, 128, 1, 2, 1, 200, 200, 200, true, 0, false, 0),
            (2, 64, 2, 4, 2, 130, 150, 160, true, 20, false, 0),
            (1, 64, 3, 2, 2, 70, 100, 100, false, 0, true, 0),
            (2, 128, 3, 2, 1, 40, 90, 96, true, 0, true, 1),
            (2, 128, 1, 4, 4, 129, 129, 129, true, 0, false, 2),
            (1, 64, 1, 2, 1, 300, 300, 300, true, 0, false, 0),
            (1, 128, 1, 1, 1, 17, 300, 300, false, 0, false, 0),
            (2, 64, 1, 4, 1, 16, 80, 80, true, 64, false, 1),
        ];
        let mut input = String::new();
        let mut labels = Vec::new();
        let mut seed = 100;
        for &(dt, d, b, h, kvh, t, s, cap, causal, off, lens, bias) in &cases {
            for mode in [0, 1] {
                input += &format!(
                    "{dt} {d} {b} {h} {kvh} {t} {s} {cap} {} {off} {} {bias} 1 0 {mode} {seed}\n",
                    u8::from(causal),
                    u8::from(lens)
                );
                labels.push(format!(
                    "dt{dt} d{d} b{b} h{h}/{kvh} t{t} s{s} cap{cap} causal={causal}@{off} lens={lens} bias={bias} \
                     mode {mode}"
                ));
                seed += 1;
            }
        }
        let _ = emulate(Some("mma3"), &input, &labels, "fwd_mma3");
    }

    #[test]
    fn entries_cover_the_instances() {
        assert_eq!(entries("fwd_mma").len(), 16);
        assert!(entries("fwd_mma").contains(&"attn_fwd_mma3_bf16_d128".to_string()));
        assert!(entries("fwd_mma").contains(&"attn_fwd_mma1_f16_d64".to_string()));
        assert!(entries("fwd_simple").contains(&"attn_fwd_combine_f16_d32".to_string()));
        assert_eq!(entries("bwd").len(), 27);
        assert_eq!(entries("bwd_mma").len(), 16);
        assert!(entries("bwd_mma").contains(&"attn_bwd_mma_dkdv_bf16_d128".to_string()));
        assert_eq!(
            entries("decode"),
            [
                "attn_fwd_decode_bf16_d64",
                "attn_fwd_decode_bf16_d128",
                "attn_fwd_decode_f16_d64",
                "attn_fwd_decode_f16_d128"
            ]
        );
    }
}
