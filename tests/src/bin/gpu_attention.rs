//! `gpu-attention`: checks and benchmarks `research_kernels::attention::fused_attention` on
//! burn-cuda (the fused CUDA kernels), on the GPU machine.
//!
//! ```text
//! gpu-attention check [--quick]       # forward + autodiff backward (f32/bf16/f16) vs float64
//! gpu-attention bench [--iters 20] [--reference] [--no-simple-bwd] [--quick]   # issue 6's shapes, one JSON line each
//! ```
//! `--quick` (for sweeps over kernel variants, e.g. sources loaded with
//! `RESEARCH_ATTENTION_SOURCES`): `check` runs only the 16-bit default and `wg` forward and the
//! 16-bit default, `grouped` and `split` backward, `bench` only the default prefill forward and forward+backward.
//! `check` draws fresh uniform inputs on the device, reads back exactly what the kernels saw, and
//! compares with a float64 host reference (softmax over each row's visible keys, GQA by
//! `h / (heads / kv_heads)`): the error is `max |got - want| / max |want|` per tensor, bounded by
//! 1e-4 for f32, 2e-2 for bf16 and 4e-3 for f16 (gradients: 3e-2 bf16, 1e-2 f16). Shapes cover odd and
//! non-tile-multiple lengths, queries at an offset into the keys, GQA ratios 1, 2, 7 and 8, ragged
//! decode lengths, an additive bias (per query and broadcast over queries) and a strided K/V view
//! of a larger cache. A case fails too when no fused kernel ran for it (a silent reference
//! fallback). Exit status 1 on any failure.
//! The 16-bit forward cases run once per forward kernel (`[default]`: the tensor-core kernels where
//! they apply, on Hopper the wgmma `fwd_wg` from 128 queries and `fwd_mma2` below, the decode
//! kernel for decode shapes; `[wg]`: the wgmma one at every query count (also with `--quick`);
//! `[mma]`: run K's single-buffered one; `[mma1]`: the first, unpipelined one; `[mma2]`: the
//! double-buffered 64-row one and `[mma3]`: the FlashAttention-2-layout one, 32 query rows per
//! warp; `wg`, `mma2` and `mma3` must run (`fwd_wg` / `fwd_mma2` / `fwd_mma3`) wherever a
//! tensor-core forward applies (16-bit, head dim 64/128, at least 16 queries; `wg` needs compute
//! capability 9.0, which the GPU machines have); `[simple]`: the scalar kernel).
//! The 16-bit backward cases run once per backward (`[mma]`: the tensor-core kernels, required for
//! head dims 64/128, dK/dV one block per query head plus the group reduction when GQA, dQ added
//! inside the dK/dV kernel with f32 atomics then converted, the GQA group split over one dK/dV
//! block per query head plus the reduction when the KV-head grid is small (`bwd_splits_group`),
//! and on Hopper at head dim 128 below `BWD_SEPARATE_DQ_BELOW_T` queries the separate dQ kernel
//! instead of the fused dQ (`bwd_fused_dq`);
//! `[grouped]`: `RESEARCH_ATTENTION_BWD=grouped`, dK/dV reduced over the group in registers;
//! `[split]`: `RESEARCH_ATTENTION_BWD=split`, one block per query head whenever GQA; `[separate]`:
//! `RESEARCH_ATTENTION_DQ=separate`, the separate dQ kernel;
//! `[wg]` / `[mma2]` / `[mma3]`: the tensor-core backward from the `fwd_wg` / `fwd_mma2` / `fwd_mma3` forward's output
//! and log-sum-exp at every query count;
//! `[simple]`: `RESEARCH_ATTENTION_BWD=simple`, the scalar kernels); each line
//! names the kernels that ran (launch counts per kind), and a case fails when the expected
//! backward did not run. The decode cases (`decode ...` lines: GQA 1/2/7/8, 1 or 2 queries,
//! ragged lengths) run on the default route, where a 16-bit case must run the tensor-core decode
//! kernel (`fwd_decode`) and not the scalar one, and with `RESEARCH_ATTENTION_KERNEL=nodecode`,
//! where it must run the scalar one. The launch counts per kernel kind close the output.
//! `bench` times causal bf16 prefill (28 query heads, 4 kv heads, d 128) forward (also with the
//! `mma2` and `mma3` kernels forced) and forward+backward (with the tensor-core backward, `fwdbwd_separate_*` with
//! the separate dQ kernel, `fwdbwd_fused_*` with the fused dQ, `fwdbwd_split_*` with one dK/dV block per query head plus the
//! group reduction (`RESEARCH_ATTENTION_BWD=split`; these shapes are grouped by default), and
//! `fwdbwd_simple_*` with
//! the scalar one unless `--no-simple-bwd`), and decode (one query per sequence over the whole
//! cache: `research-fused` on the default route, `research-fused-scalar` with `nodecode`, each
//! line naming the kernels that ran); `--reference` adds the reference path's forward time.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu-attention: built without the `cuda` feature");
    std::process::exit(2);
}

#[cfg(feature = "cuda")]
fn main() {
    imp::main()
}

#[cfg(feature = "cuda")]
mod imp {
    use std::time::Instant;

    use research::burn::backend::Autodiff;
    use research::burn::tensor::backend::Backend;
    use research::burn::tensor::{DType, Distribution, Tensor};
    use research::kernels::attention::{
        bwd_fused_dq, bwd_splits_group, fused_attention, fused_counts, fused_kernel_counts, fused_reference, key_end,
        AttentionBias, MASKED,
    };

    type Cuda = research::burn::backend::Cuda<f32, i32>;
    type Ad = Autodiff<Cuda>;
    type Dev = research::burn::backend::cuda::CudaDevice;

    fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.cast(DType::F32).into_data().to_vec::<f32>().expect("f32 data")
    }

    fn rand<const D: usize>(shape: [usize; D], scale: f32, dtype: DType, dev: &Dev) -> Tensor<Cuda, D> {
        Tensor::<Cuda, D>::random(shape, Distribution::Uniform(-1.0, 1.0), dev)
            .mul_scalar(scale)
            .cast(dtype)
    }

    /// A tiny deterministic generator (bias values, sampled rows).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
        fn unit(&mut self) -> f32 {
            self.next(1 << 20) as f32 / (1 << 20) as f32 * 2.0 - 1.0
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum BiasKind {
        None,
        /// `[b, 1, t, s]`: random values in [-1, 1] with about a fifth masked.
        PerQuery,
        /// `[b, 1, 1, s]`: padding-style, the last keys of sequence `i` masked.
        Broadcast,
    }

    #[derive(Clone, Debug)]
    struct Case {
        b: usize,
        h: usize,
        kvh: usize,
        t: usize,
        s: usize,
        d: usize,
        causal: bool,
        offset: usize,
        lens: Option<Vec<usize>>,
        bias: BiasKind,
        /// K/V are a view of the first `s` positions of a cache this long.
        cache: Option<usize>,
        /// Check only this many sampled rows against float64 (big shapes).
        sample_rows: Option<usize>,
    }

    impl Case {
        #[allow(clippy::too_many_arguments)]
        fn new(b: usize, h: usize, kvh: usize, t: usize, s: usize, d: usize, causal: bool, offset: usize) -> Self {
            Self {
                b,
                h,
                kvh,
                t,
                s,
                d,
                causal,
                offset,
                lens: None,
                bias: BiasKind::None,
                cache: None,
                sample_rows: None,
            }
        }
        fn label(&self) -> String {
            format!(
                "b{} h{}/{} t{} s{} d{}{}{}{}{}",
                self.b,
                self.h,
                self.kvh,
                self.t,
                self.s,
                self.d,
                if self.causal {
                    format!(" causal@{}", self.offset)
                } else {
                    String::new()
                },
                self.lens.as_ref().map(|l| format!(" lens{l:?}")).unwrap_or_default(),
                match self.bias {
                    BiasKind::None => "",
                    BiasKind::PerQuery => " bias",
                    BiasKind::Broadcast => " bias-bcast",
                },
                self.cache.map(|c| format!(" view-of-{c}")).unwrap_or_default()
            )
        }
    }

    fn forward_cases() -> Vec<Case> {
        let mut v = vec![
            Case::new(2, 4, 4, 37, 37, 64, true, 0),
            Case::new(1, 8, 4, 100, 100, 128, true, 0),
            Case::new(2, 14, 2, 65, 129, 128, true, 64),
            Case::new(1, 8, 1, 33, 97, 64, false, 0),
            Case::new(1, 4, 4, 31, 100, 64, true, 10),
            Case::new(1, 4, 2, 200, 200, 32, true, 0),
            Case::new(1, 7, 1, 129, 129, 128, true, 0),
            Case::new(1, 2, 2, 1, 1, 64, true, 0),
        ];
        let mut c = Case::new(3, 28, 4, 1, 300, 128, true, 0);
        c.lens = Some(vec![300, 17, 129]);
        v.push(c);
        let mut c = Case::new(4, 8, 1, 3, 1000, 128, true, 0);
        c.lens = Some(vec![1000, 3, 555, 64]);
        v.push(c);
        let mut c = Case::new(2, 8, 8, 1, 4097, 64, false, 0);
        c.lens = Some(vec![4097, 2500]);
        v.push(c);
        let mut c = Case::new(2, 4, 2, 20, 50, 64, false, 0);
        c.bias = BiasKind::PerQuery;
        v.push(c);
        let mut c = Case::new(2, 4, 2, 70, 70, 128, true, 0);
        c.bias = BiasKind::PerQuery;
        v.push(c);
        let mut c = Case::new(2, 4, 4, 9, 9, 32, false, 0);
        c.bias = BiasKind::Broadcast;
        v.push(c);
        let mut c = Case::new(1, 14, 2, 48, 77, 128, true, 29);
        c.cache = Some(128);
        v.push(c);
        let mut c = Case::new(1, 28, 4, 512, 512, 128, true, 0);
        c.sample_rows = Some(96);
        v.push(c);
        v
    }

    /// Decode shapes for the tensor-core decode kernel (`fwd_decode`, at most 16 query rows per
    /// (batch, kv head)): GQA 1, 2, 7, 8 with 1 and 2 queries, ragged lengths (1, off the 64-key
    /// tile, shorter than a split, rows that see no key), keys split over many blocks and not
    /// split at all (direct write), a causal offset without lengths, biases, a strided cache view,
    /// and the 7B heads over 2,048 keys.
    fn decode_cases() -> Vec<Case> {
        let mut v = Vec::new();
        let mut c = Case::new(4, 7, 1, 1, 1000, 128, false, 0);
        c.lens = Some(vec![1000, 1, 555, 64]);
        v.push(c);
        let mut c = Case::new(2, 16, 2, 2, 777, 64, true, 0);
        c.lens = Some(vec![777, 200]);
        v.push(c);
        let mut c = Case::new(3, 14, 2, 2, 523, 128, true, 0);
        c.lens = Some(vec![1, 2, 523]);
        v.push(c);
        let mut c = Case::new(2, 4, 2, 1, 4100, 64, false, 0);
        c.lens = Some(vec![4100, 3000]);
        v.push(c);
        let mut c = Case::new(3, 8, 4, 1, 100, 64, false, 0);
        c.lens = Some(vec![100, 37, 64]);
        v.push(c);
        v.push(Case::new(5, 4, 4, 2, 95, 128, true, 93));
        v.push(Case::new(2, 8, 8, 1, 130, 128, false, 0));
        let mut c = Case::new(2, 8, 1, 1, 200, 64, false, 0);
        c.bias = BiasKind::PerQuery;
        v.push(c);
        let mut c = Case::new(2, 8, 2, 1, 150, 128, true, 149);
        c.bias = BiasKind::Broadcast;
        v.push(c);
        let mut c = Case::new(1, 14, 2, 2, 77, 128, true, 75);
        c.cache = Some(128);
        v.push(c);
        let mut c = Case::new(8, 28, 4, 1, 2048, 128, false, 0);
        c.lens = Some(vec![2048, 1500, 1, 64, 129, 2047, 700, 1024]);
        v.push(c);
        v
    }

    fn backward_cases() -> Vec<Case> {
        let mut v = vec![
            Case::new(1, 4, 2, 19, 19, 64, true, 0),
            Case::new(2, 7, 1, 33, 70, 128, true, 37),
            Case::new(1, 8, 8, 40, 40, 32, false, 0),
            Case::new(1, 28, 4, 130, 130, 128, true, 0),
        ];
        let mut c = Case::new(2, 4, 2, 5, 50, 128, true, 0);
        c.lens = Some(vec![50, 23]);
        v.push(c);
        let mut c = Case::new(2, 4, 2, 24, 24, 64, true, 0);
        c.bias = BiasKind::PerQuery;
        v.push(c);
        // Tensor-core backward coverage: several query/key tiles (both buffers of the pipelines),
        // non-causal GQA 8, an offset with GQA 7, lengths off the tiles, ragged lengths shorter
        // than the queries (rows that see no key), a bias with d 128.
        v.push(Case::new(1, 4, 4, 200, 200, 64, true, 0));
        v.push(Case::new(2, 8, 1, 100, 150, 64, false, 0));
        v.push(Case::new(1, 14, 2, 65, 129, 128, true, 64));
        v.push(Case::new(1, 2, 1, 300, 300, 128, true, 0));
        let mut c = Case::new(2, 4, 2, 70, 90, 64, true, 0);
        c.lens = Some(vec![90, 41]);
        v.push(c);
        let mut c = Case::new(1, 4, 2, 80, 80, 128, true, 0);
        c.bias = BiasKind::PerQuery;
        v.push(c);
        // Forwards on the decode kernel (its log-sum-exp feeds the backward).
        let mut c = Case::new(3, 14, 2, 2, 130, 64, true, 0);
        c.lens = Some(vec![130, 1, 77]);
        v.push(c);
        v
    }

    /// Launches per kernel kind since `before` (kinds that ran only).
    fn count_delta(before: &[(String, u64)]) -> Vec<(String, u64)> {
        fused_kernel_counts()
            .into_iter()
            .filter_map(|(k, n)| {
                let was = before.iter().find(|(b, _)| *b == k).map_or(0, |(_, m)| *m);
                if n > was {
                    Some((k, n - was))
                } else {
                    None
                }
            })
            .collect()
    }

    fn counts_label(counts: &[(String, u64)]) -> String {
        counts
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Host copies of one case's inputs and its bias values `[b, tb, s]` (`tb` = t or 1).
    struct Inputs {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        bias: Option<(Vec<f32>, usize)>,
    }

    fn bias_values(c: &Case, rng: &mut Lcg) -> Option<(Vec<f32>, usize)> {
        match c.bias {
            BiasKind::None => None,
            BiasKind::PerQuery => {
                let mut v = vec![0.0f32; c.b * c.t * c.s];
                for x in v.iter_mut() {
                    *x = if rng.next(5) == 0 { MASKED } else { rng.unit() };
                }
                // Keep key 0 visible so no row is fully masked (those rows differ by design).
                for row in v.chunks_mut(c.s) {
                    row[0] = 0.0;
                }
                Some((v, c.t))
            }
            BiasKind::Broadcast => {
                let mut v = vec![0.0f32; c.b * c.s];
                for bi in 0..c.b {
                    for j in c.s.saturating_sub(2 * bi)..c.s {
                        v[bi * c.s + j] = MASKED;
                    }
                }
                Some((v, 1))
            }
        }
    }

    /// Visible keys and scores of row (bi, hi, ti) in float64.
    fn scores(c: &Case, x: &Inputs, bi: usize, hi: usize, ti: usize) -> (Vec<f64>, usize) {
        let (d, g) = (c.d, c.h / c.kvh);
        let seq = c.lens.as_ref().map(|l| l[bi].min(c.s)).unwrap_or(c.s);
        let end = key_end(seq, ti, c.t, c.causal, c.offset, c.lens.is_some());
        let scale = 1.0 / (d as f64).sqrt();
        let qrow = &x.q[((bi * c.h + hi) * c.t + ti) * d..][..d];
        let kv0 = (bi * c.kvh + hi / g) * c.s * d;
        let mut sc = Vec::with_capacity(end);
        for j in 0..end {
            let krow = &x.k[kv0 + j * d..][..d];
            let mut acc = 0.0f64;
            for (a, b) in qrow.iter().zip(krow) {
                acc += *a as f64 * *b as f64;
            }
            let mut s = acc * scale;
            if let Some((bv, tb)) = &x.bias {
                let tt = if *tb == 1 { 0 } else { ti };
                s += bv[(bi * tb + tt) * c.s + j] as f64;
            }
            sc.push(s);
        }
        (sc, kv0)
    }

    fn softmax(sc: &[f64]) -> Vec<f64> {
        let m = sc.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = sc.iter().map(|s| (s - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    }

    fn rows_to_check(c: &Case, rng: &mut Lcg) -> Vec<(usize, usize, usize)> {
        let all = c.b * c.h * c.t;
        let pick = |r: usize| (r / (c.h * c.t), (r / c.t) % c.h, r % c.t);
        match c.sample_rows {
            Some(n) if n < all => {
                let mut rows: Vec<_> = (0..n).map(|_| pick(rng.next(all))).collect();
                rows.push(pick(all - 1));
                rows
            }
            _ => (0..all).map(pick).collect(),
        }
    }

    /// `max |got - want| / max |want|` over the given rows of `[b, h, t, d]`.
    fn forward_error(c: &Case, x: &Inputs, got: &[f32], rows: &[(usize, usize, usize)]) -> f64 {
        let d = c.d;
        let (mut err, mut scale) = (0.0f64, 1e-30f64);
        for &(bi, hi, ti) in rows {
            let (sc, kv0) = scores(c, x, bi, hi, ti);
            let p = softmax(&sc);
            let o = &got[((bi * c.h + hi) * c.t + ti) * d..][..d];
            for (xx, &g) in o.iter().enumerate() {
                let want: f64 = p
                    .iter()
                    .enumerate()
                    .map(|(j, pj)| pj * x.v[kv0 + j * d + xx] as f64)
                    .sum();
                err = err.max((g as f64 - want).abs());
                scale = scale.max(want.abs());
            }
        }
        err / scale
    }

    /// Float64 gradients `(dq, dk, dv)` of `Σ O ⊙ G`.
    fn reference_grads(c: &Case, x: &Inputs, gout: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = c.d;
        let scale = 1.0 / (d as f64).sqrt();
        let mut dq = vec![0.0f64; x.q.len()];
        let mut dk = vec![0.0f64; x.k.len()];
        let mut dv = vec![0.0f64; x.v.len()];
        for bi in 0..c.b {
            for hi in 0..c.h {
                for ti in 0..c.t {
                    let (sc, kv0) = scores(c, x, bi, hi, ti);
                    let p = softmax(&sc);
                    let row = ((bi * c.h + hi) * c.t + ti) * d;
                    let go = &gout[row..][..d];
                    let dp: Vec<f64> = (0..sc.len())
                        .map(|j| (0..d).map(|xx| go[xx] as f64 * x.v[kv0 + j * d + xx] as f64).sum())
                        .collect();
                    let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                    for (j, (&pj, &dpj)) in p.iter().zip(&dp).enumerate() {
                        let ds = pj * (dpj - delta);
                        for (xx, &gx) in go.iter().enumerate() {
                            dq[row + xx] += scale * ds * x.k[kv0 + j * d + xx] as f64;
                            dk[kv0 + j * d + xx] += scale * ds * x.q[row + xx] as f64;
                            dv[kv0 + j * d + xx] += pj * gx as f64;
                        }
                    }
                }
            }
        }
        (dq, dk, dv)
    }

    fn rel_error(got: &[f32], want: &[f64]) -> f64 {
        let mut err = 0.0f64;
        let mut scale = 1e-30f64;
        for (g, w) in got.iter().zip(want) {
            err = err.max((*g as f64 - w).abs());
            scale = scale.max(w.abs());
        }
        if got.len() != want.len() {
            return f64::INFINITY;
        }
        err / scale
    }

    fn fwd_bound(dtype: DType) -> f64 {
        match dtype {
            DType::F32 => 1e-4,
            DType::F16 => 4e-3,
            _ => 2e-2,
        }
    }

    fn dtype_label(dtype: DType) -> &'static str {
        match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            _ => "bf16",
        }
    }

    /// Builds one case's device inputs (and host copies) on backend `B`'s inner device.
    fn make_inputs(
        c: &Case,
        dtype: DType,
        dev: &Dev,
        rng: &mut Lcg,
    ) -> (Tensor<Cuda, 4>, Tensor<Cuda, 4>, Tensor<Cuda, 4>, Inputs) {
        let q = rand([c.b, c.h, c.t, c.d], 2.0, dtype, dev);
        let (k, v) = match c.cache {
            Some(cap) => (
                rand([c.b, c.kvh, cap, c.d], 1.0, dtype, dev).narrow(2, 0, c.s),
                rand([c.b, c.kvh, cap, c.d], 1.0, dtype, dev).narrow(2, 0, c.s),
            ),
            None => (
                rand([c.b, c.kvh, c.s, c.d], 1.0, dtype, dev),
                rand([c.b, c.kvh, c.s, c.d], 1.0, dtype, dev),
            ),
        };
        let inputs = Inputs {
            q: host(q.clone()),
            k: host(k.clone()),
            v: host(v.clone()),
            bias: bias_values(c, rng),
        };
        (q, k, v, inputs)
    }

    fn bias_tensor<B: Backend>(x: &Inputs, c: &Case, dev: &B::Device) -> Option<AttentionBias<B>> {
        x.bias
            .as_ref()
            .map(|(values, tb)| AttentionBias::<B>::from_host(values, c.b, *tb, c.s, dev))
    }

    /// Picks the forward kernel (`RESEARCH_ATTENTION_KERNEL`, read at each call).
    fn set_variant(variant: &str) {
        match variant {
            "default" => std::env::remove_var("RESEARCH_ATTENTION_KERNEL"),
            v => std::env::set_var("RESEARCH_ATTENTION_KERNEL", v),
        }
    }

    fn check(quick: bool) -> bool {
        let dev: Dev = Default::default();
        let mut rng = Lcg(11);
        let mut ok = true;
        // Each forward kernel variant for the 16-bit types: the default (on Hopper the wgmma
        // `fwd_wg` from 128 queries, `fwd_mma2` below, the decode kernel for decode shapes), the
        // wgmma one at every query count (`wg`, also in --quick), run K's single-buffered one,
        // the first unpipelined one, the double-buffered 64-row one and the FlashAttention-2-layout
        // one at every query count (`wg` / `mma2` / `mma3` asserted to run where a tensor-core
        // forward applies), and the scalar kernel everywhere.
        let variants = |dtype: DType| -> &'static [&'static str] {
            if dtype == DType::F32 {
                &["default"]
            } else if quick {
                &["default", "wg"]
            } else {
                &["default", "wg", "mma", "mma1", "mma2", "mma3", "simple"]
            }
        };
        let dtypes: &[DType] = if quick {
            &[DType::BF16, DType::F16]
        } else {
            &[DType::F32, DType::BF16, DType::F16]
        };
        for &dtype in dtypes {
            for &variant in variants(dtype) {
                set_variant(variant);
                for c in forward_cases() {
                    let (q, k, v, x) = make_inputs(&c, dtype, &dev, &mut rng);
                    let bias = bias_tensor::<Cuda>(&x, &c, &dev);
                    let before = fused_counts().0;
                    let kinds_before = fused_kernel_counts();
                    let o = fused_attention(q, k, v, c.causal, c.offset, c.lens.as_deref(), bias.as_ref());
                    let got = host(o);
                    let launched = fused_counts().0 - before;
                    let kinds = count_delta(&kinds_before);
                    let rows = rows_to_check(&c, &mut rng);
                    let err = forward_error(&c, &x, &got, &rows);
                    let bound = fwd_bound(dtype);
                    // A forced `wg` / `mma2` / `mma3` must have run wherever a tensor-core forward
                    // applies (`wg`: the GPU machines are Hopper, compute capability 9.0).
                    let tensor_core = (c.d == 64 || c.d == 128) && c.t >= 16;
                    let forced = ["wg", "mma2", "mma3"].contains(&variant) && tensor_core;
                    let right_kernel = !forced || kinds.iter().any(|(k, _)| *k == format!("fwd_{variant}"));
                    let pass = err <= bound && launched > 0 && right_kernel;
                    ok &= pass;
                    println!(
                        "{} fwd {} [{variant}] {}: rel err {err:.2e} (bound {bound:.0e}), kernels {launched} ({})",
                        if pass { "PASS" } else { "FAIL" },
                        dtype_label(dtype),
                        c.label(),
                        counts_label(&kinds)
                    );
                }
            }
        }
        // The decode kernel: on by default for 16-bit head dims 64/128 with at most 16 query rows
        // per (batch, kv head), off with `nodecode` (the scalar split-K kernel then).
        for &dtype in if quick { &[][..] } else { dtypes } {
            let decode_variants: &[&str] = if dtype == DType::F32 {
                &["default"]
            } else {
                &["default", "nodecode"]
            };
            for &variant in decode_variants {
                set_variant(variant);
                for c in decode_cases() {
                    let (q, k, v, x) = make_inputs(&c, dtype, &dev, &mut rng);
                    let bias = bias_tensor::<Cuda>(&x, &c, &dev);
                    let before = fused_counts().0;
                    let kinds_before = fused_kernel_counts();
                    let o = fused_attention(q, k, v, c.causal, c.offset, c.lens.as_deref(), bias.as_ref());
                    let got = host(o);
                    let launched = fused_counts().0 - before;
                    let kinds = count_delta(&kinds_before);
                    let ran = |kind: &str| kinds.iter().any(|(k, _)| k == kind);
                    let want_decode = dtype != DType::F32
                        && variant == "default"
                        && (c.d == 64 || c.d == 128)
                        && (c.h / c.kvh) * c.t <= 16;
                    let right_kernels = if want_decode {
                        ran("fwd_decode") && !ran("fwd_simple")
                    } else {
                        ran("fwd_simple") && !ran("fwd_decode")
                    };
                    let rows = rows_to_check(&c, &mut rng);
                    let err = forward_error(&c, &x, &got, &rows);
                    let bound = fwd_bound(dtype);
                    let pass = err <= bound && launched > 0 && right_kernels;
                    ok &= pass;
                    println!(
                        "{} decode {} [{variant}] {}: rel err {err:.2e} (bound {bound:.0e}), kernels {launched} ({})",
                        if pass { "PASS" } else { "FAIL" },
                        dtype_label(dtype),
                        c.label(),
                        counts_label(&kinds)
                    );
                }
            }
        }
        set_variant("default");
        // The backward per dtype: the tensor-core kernels (16-bit) and the scalar ones.
        let bwd_variants = |dtype: DType| -> &'static [&'static str] {
            if dtype == DType::F32 {
                &["simple"]
            } else if quick {
                &["mma", "grouped", "split"]
            } else {
                &["mma", "grouped", "split", "separate", "wg", "mma2", "mma3", "simple"]
            }
        };
        for &dtype in dtypes {
            for &bwd in bwd_variants(dtype) {
                if ["simple", "grouped", "split"].contains(&bwd) && dtype != DType::F32 {
                    std::env::set_var("RESEARCH_ATTENTION_BWD", bwd);
                } else {
                    std::env::remove_var("RESEARCH_ATTENTION_BWD");
                }
                if bwd == "separate" {
                    std::env::set_var("RESEARCH_ATTENTION_DQ", "separate");
                } else {
                    std::env::remove_var("RESEARCH_ATTENTION_DQ");
                }
                // `wg` / `mma2` / `mma3`: the default tensor-core backward from that forward (its lse).
                let forced_fwd = ["wg", "mma2", "mma3"].contains(&bwd);
                set_variant(if forced_fwd { bwd } else { "default" });
                for c in backward_cases() {
                    let (q, k, v, x) = make_inputs(&c, dtype, &dev, &mut rng);
                    let g = rand([c.b, c.h, c.t, c.d], 1.0, dtype, &dev);
                    let gh = host(g.clone());
                    let qa = Tensor::<Ad, 4>::from_inner(q).require_grad();
                    let ka = Tensor::<Ad, 4>::from_inner(k).require_grad();
                    let va = Tensor::<Ad, 4>::from_inner(v).require_grad();
                    let bias = bias_tensor::<Ad>(&x, &c, &dev);
                    let before = fused_counts().0;
                    let kinds_before = fused_kernel_counts();
                    let o = fused_attention(
                        qa.clone(),
                        ka.clone(),
                        va.clone(),
                        c.causal,
                        c.offset,
                        c.lens.as_deref(),
                        bias.as_ref(),
                    );
                    let grads = (o * Tensor::<Ad, 4>::from_inner(g)).sum().backward();
                    let dq = host(qa.grad(&grads).expect("dq"));
                    let dk = host(ka.grad(&grads).expect("dk"));
                    let dv = host(va.grad(&grads).expect("dv"));
                    let launched = fused_counts().0 - before;
                    let kinds = count_delta(&kinds_before);
                    let ran = |kind: &str| kinds.iter().any(|(k, _)| k == kind);
                    let (wq, wk, wv) = reference_grads(&c, &x, &gh);
                    let (eq, ek, ev) = (rel_error(&dq, &wq), rel_error(&dk, &wk), rel_error(&dv, &wv));
                    let bound = match dtype {
                        DType::F32 => 1e-4,
                        DType::F16 => 1e-2,
                        _ => 3e-2,
                    };
                    let worst = eq.max(ek).max(ev);
                    // The tensor-core backward for 16-bit head dims 64/128 unless the scalar one is
                    // forced; the scalar one otherwise. Forward (1 or 2 kernels) + 3 backward kernels
                    // (+ the group reduction when a GQA group's heads run as separate blocks, the
                    // default; `grouped` keeps the in-register reduction). dQ: added inside the
                    // dK/dV kernel then converted (default), or the separate dQ kernel
                    // (`separate`).
                    let want_mma = bwd != "simple" && (c.d == 64 || c.d == 128);
                    // (The variant's RESEARCH_ATTENTION_BWD is set: `grouped` / `split` force the choice.)
                    let want_reduce = want_mma && bwd_splits_group(c.b, c.h, c.kvh, c.s);
                    // The variant's RESEARCH_ATTENTION_DQ is set (`separate`); otherwise the policy
                    // by length and head dim on this GPU (a forward has run: its compute capability
                    // is known).
                    let want_fused = bwd_fused_dq(c.t, c.d);
                    let fwd_ok = !(forced_fwd && want_mma && c.t >= 16) || ran(&format!("fwd_{bwd}"));
                    let right_kernels = fwd_ok
                        && if want_mma {
                            ran("bwd_pre")
                                && ran("bwd_mma_dkdv")
                                && ran("bwd_mma_dq_convert") == want_fused
                                && ran("bwd_mma_dq") != want_fused
                                && !ran("bwd_dkdv")
                                && ran("bwd_mma_dkdv_reduce") == want_reduce
                        } else {
                            ran("bwd_pre") && ran("bwd_dkdv") && ran("bwd_dq") && !ran("bwd_mma_dkdv")
                        };
                    let pass = worst <= bound && launched >= 4 && right_kernels && worst.is_finite();
                    ok &= pass;
                    println!(
                    "{} bwd {} [{}] {}: rel err dq {eq:.2e} dk {ek:.2e} dv {ev:.2e} (bound {bound:.0e}), kernels {launched} ({})",
                    if pass { "PASS" } else { "FAIL" },
                    dtype_label(dtype),
                    if want_mma { bwd } else { "simple" },
                    c.label(),
                    counts_label(&kinds)
                );
                }
            }
        }
        std::env::remove_var("RESEARCH_ATTENTION_BWD");
        std::env::remove_var("RESEARCH_ATTENTION_DQ");
        set_variant("default");
        ok
    }

    fn time<F: FnMut()>(iters: usize, dev: &Dev, mut f: F) -> f64 {
        for _ in 0..2 {
            f();
        }
        let _ = Cuda::sync(dev);
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let _ = Cuda::sync(dev);
        t.elapsed().as_secs_f64() / iters as f64
    }

    fn bench(iters: usize, with_reference: bool, simple_bwd: bool, quick: bool) {
        let dev: Dev = Default::default();
        let dtype = DType::BF16;
        let (h, kvh, d) = (28usize, 4usize, 128usize);
        for (b, s) in [(16usize, 1024usize), (4, 4096), (2, 8192)] {
            let q = rand([b, h, s, d], 1.0, dtype, &dev);
            let k = rand([b, kvh, s, d], 1.0, dtype, &dev);
            let v = rand([b, kvh, s, d], 1.0, dtype, &dev);
            let flops = 4.0 * (b * h) as f64 * (s * s) as f64 * d as f64 / 2.0;
            let tf = time(iters, &dev, || {
                let _ = fused_attention(q.clone(), k.clone(), v.clone(), true, 0, None, None);
            });
            let fwdbwd = |iters: usize| {
                time(iters, &dev, || {
                    let qa = Tensor::<Ad, 4>::from_inner(q.clone()).require_grad();
                    let ka = Tensor::<Ad, 4>::from_inner(k.clone()).require_grad();
                    let va = Tensor::<Ad, 4>::from_inner(v.clone()).require_grad();
                    let o = fused_attention(qa.clone(), ka.clone(), va.clone(), true, 0, None, None);
                    let grads = o.sum().backward();
                    let _ = (qa.grad(&grads), ka.grad(&grads), va.grad(&grads));
                })
            };
            let tfb = fwdbwd(iters);
            // The default kernels' figures; the full bench appends its variants.
            let mut line = format!(
                "{{\"impl\":\"research-fused\",\"case\":\"prefill\",\"batch\":{b},\"seq\":{s},\"heads\":{h},\"kv_heads\":{kvh},\"d\":{d},\"dtype\":\"bf16\",\"causal\":true,\"fwd_us\":{:.1},\"fwd_tflops\":{:.2},\"fwdbwd_us\":{:.1},\"fwdbwd_tflops\":{:.2}",
                tf * 1e6,
                flops / tf / 1e12,
                tfb * 1e6,
                3.5 * flops / tfb / 1e12
            );
            if quick {
                println!("{line}}}");
                continue;
            }
            set_variant("mma2");
            let tf2 = time(iters, &dev, || {
                let _ = fused_attention(q.clone(), k.clone(), v.clone(), true, 0, None, None);
            });
            set_variant("mma3");
            let tf3 = time(iters, &dev, || {
                let _ = fused_attention(q.clone(), k.clone(), v.clone(), true, 0, None, None);
            });
            set_variant("default");
            // The dK/dV kernel split per query head, then the group reduction (these shapes
            // default to one block per KV head, reducing in registers).
            std::env::set_var("RESEARCH_ATTENTION_BWD", "split");
            let tfb_split = fwdbwd(iters);
            std::env::remove_var("RESEARCH_ATTENTION_BWD");
            // The separate dQ kernel (recomputes S and dP) instead of the fused dQ.
            std::env::set_var("RESEARCH_ATTENTION_DQ", "separate");
            let tfb_separate = fwdbwd(iters);
            // The fused dQ forced (the default except on Hopper at head dim 128 below
            // BWD_SEPARATE_DQ_BELOW_T queries).
            std::env::set_var("RESEARCH_ATTENTION_DQ", "fused");
            let tfb_fused = fwdbwd(iters);
            std::env::remove_var("RESEARCH_ATTENTION_DQ");
            // The scalar backward is slow: a few iterations.
            let tfb_simple = simple_bwd.then(|| {
                std::env::set_var("RESEARCH_ATTENTION_BWD", "simple");
                let t = fwdbwd(2);
                std::env::remove_var("RESEARCH_ATTENTION_BWD");
                t
            });
            line += &format!(
                ",\"fwd_mma2_us\":{:.1},\"fwd_mma2_tflops\":{:.2}",
                tf2 * 1e6,
                flops / tf2 / 1e12
            );
            line += &format!(
                ",\"fwd_mma3_us\":{:.1},\"fwd_mma3_tflops\":{:.2}",
                tf3 * 1e6,
                flops / tf3 / 1e12
            );
            line += &format!(
                ",\"fwdbwd_split_us\":{:.1},\"fwdbwd_split_tflops\":{:.2}",
                tfb_split * 1e6,
                3.5 * flops / tfb_split / 1e12
            );
            line += &format!(
                ",\"fwdbwd_separate_us\":{:.1},\"fwdbwd_separate_tflops\":{:.2}",
                tfb_separate * 1e6,
                3.5 * flops / tfb_separate / 1e12
            );
            line += &format!(
                ",\"fwdbwd_fused_us\":{:.1},\"fwdbwd_fused_tflops\":{:.2}",
                tfb_fused * 1e6,
                3.5 * flops / tfb_fused / 1e12
            );
            if let Some(ts) = tfb_simple {
                line += &format!(
                    ",\"fwdbwd_simple_us\":{:.1},\"fwdbwd_simple_tflops\":{:.2}",
                    ts * 1e6,
                    3.5 * flops / ts / 1e12
                );
            }
            if with_reference {
                let tr = time(iters.min(5), &dev, || {
                    let _ = fused_reference(q.clone(), k.clone(), v.clone(), true, 0, None, None);
                });
                line += &format!(",\"reference_fwd_us\":{:.1}", tr * 1e6);
            }
            println!("{line}}}");
        }
        let decode_shapes: &[(usize, usize)] = if quick { &[] } else { &[(64, 2048), (256, 4096)] };
        for &(b, s) in decode_shapes {
            let q = rand([b, h, 1, d], 1.0, dtype, &dev);
            let k = rand([b, kvh, s, d], 1.0, dtype, &dev);
            let v = rand([b, kvh, s, d], 1.0, dtype, &dev);
            let bytes = 2.0 * (b * kvh * s * d) as f64 * 2.0;
            // The default route (the tensor-core decode kernel), then the scalar split-K kernel
            // it replaced (`RESEARCH_ATTENTION_KERNEL=nodecode`) for comparison; `kernels` names
            // what ran.
            for (variant, name) in [("default", "research-fused"), ("nodecode", "research-fused-scalar")] {
                set_variant(variant);
                let kinds_before = fused_kernel_counts();
                let t = time(iters, &dev, || {
                    let _ = fused_attention(q.clone(), k.clone(), v.clone(), false, 0, None, None);
                });
                let kinds = counts_label(&count_delta(&kinds_before));
                println!(
                    "{{\"impl\":\"{name}\",\"case\":\"decode\",\"batch\":{b},\"seq\":{s},\"heads\":{h},\"kv_heads\":{kvh},\"d\":{d},\"dtype\":\"bf16\",\"us\":{:.1},\"kv_tbps\":{:.3},\"kernels\":\"{kinds}\"}}",
                    t * 1e6,
                    bytes / t / 1e12
                );
            }
            set_variant("default");
        }
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("check") => {
                let ok = check(args.iter().any(|a| a == "--quick"));
                let (launched, failed) = fused_counts();
                println!("fused attention kernels launched: {launched}, fell back after trying: {failed}");
                println!("per kernel: {}", counts_label(&fused_kernel_counts()));
                if !ok || launched == 0 || failed > 0 {
                    std::process::exit(1);
                }
            }
            Some("bench") => {
                let iters = args
                    .iter()
                    .position(|a| a == "--iters")
                    .and_then(|i| args.get(i + 1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(20);
                bench(
                    iters,
                    args.iter().any(|a| a == "--reference"),
                    !args.iter().any(|a| a == "--no-simple-bwd"),
                    args.iter().any(|a| a == "--quick"),
                );
                let (launched, failed) = fused_counts();
                eprintln!("fused attention kernels launched: {launched}, fell back after trying: {failed}");
                eprintln!("per kernel: {}", counts_label(&fused_kernel_counts()));
            }
            _ => {
                eprintln!(
                    "usage: gpu-attention check [--quick] | gpu-attention bench [--iters N] [--reference] [--no-simple-bwd] [--quick]"
                );
                std::process::exit(2);
            }
        }
    }
}
