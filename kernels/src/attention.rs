//! Scaled dot-product attention with grouped key/value heads: the reference path every backend
//! runs. Keys and values are never repeated per query head: the query heads of a group are folded
//! into the query axis and multiplied against their shared key/value head.
//!
//! [`fused_attention`] is the fused route (issue 6): FlashAttention-2-style CUDA kernels on
//! burn-cuda with the mask given as structure (causal + query offset, ragged key lengths), the
//! reference elsewhere; [`attention_auto`] (what the models call) takes it on burn-cuda unless
//! `RESEARCH_ATTENTION=reference`.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorCreationOptions, TensorData};

#[cfg(feature = "cuda")]
mod cuda;
mod fused;
#[cfg(feature = "nvrtc")]
pub mod nvrtc;

pub use fused::{
    attention_auto, bwd_fused_dq, bwd_splits_group, entries, fused_attention, fused_counts, fused_kernel_counts,
    fused_reference, fused_requested, key_end, reference_forced, BWD_GROUPED_MIN_KEY_ROWS, BWD_SEPARATE_DQ_BELOW_T,
    HEAD_DIMS, PARAMS_BYTES,
};

/// Value added to the scores of masked keys. Finite (unlike `-inf`) so that a query row with every
/// key masked (a padding row) gives finite garbage instead of NaN.
pub const MASKED: f32 = -1.0e9;

/// An additive f32 bias on the attention scores, `[batch or 1, 1, queries, keys]`: 0 where a query
/// may attend to a key, [`MASKED`] where not.
#[derive(Debug, Clone)]
pub struct AttentionBias<B: Backend> {
    /// The bias tensor.
    pub bias: Tensor<B, 4>,
    /// `Some(offset)` when `bias` is exactly [`AttentionBias::causal`]'s mask with that query
    /// offset, so the fused kernels can skip masked tiles instead of reading the tensor.
    pub causal_offset: Option<usize>,
}

impl<B: Backend> AttentionBias<B> {
    /// Causal bias for `queries` new tokens whose first sits at key column `offset`: query `t` sees
    /// keys `0..=offset + t`. Shared by the whole batch.
    pub fn causal(_batch: usize, queries: usize, keys: usize, offset: usize, device: &B::Device) -> Self {
        let mut bias = Self::from_host(&causal_rows(queries, keys, offset), 1, queries, keys, device);
        bias.causal_offset = Some(offset);
        bias
    }

    /// A bias tensor `[batch or 1, 1, queries or 1, keys]` without known structure.
    pub fn new(bias: Tensor<B, 4>) -> Self {
        Self {
            bias,
            causal_offset: None,
        }
    }

    /// A bias from host values laid out `[batch, queries, keys]`.
    pub fn from_host(values: &[f32], batch: usize, queries: usize, keys: usize, device: &B::Device) -> Self {
        assert_eq!(values.len(), batch * queries * keys, "bias size");
        let data = TensorData::new(values.to_vec(), [batch, 1, queries, keys]);
        let bias = Tensor::from_data(data, TensorCreationOptions::new(device.clone()).with_dtype(DType::F32));
        Self::new(bias)
    }

    /// Queries covered.
    pub fn queries(&self) -> usize {
        self.bias.dims()[2]
    }

    /// Keys covered.
    pub fn keys(&self) -> usize {
        self.bias.dims()[3]
    }
}

/// The causal bias rows `[queries, keys]` on the host.
pub fn causal_rows(queries: usize, keys: usize, offset: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; queries * keys];
    for t in 0..queries {
        for j in (offset + t + 1).min(keys)..keys {
            v[t * keys + j] = MASKED;
        }
    }
    v
}

/// `softmax(q kᵀ / sqrt(d) + bias) v` with GQA.
///
/// `q`: `[batch, heads, queries, d]`; `k`, `v`: `[batch, kv_heads, keys, d]` with `kv_heads`
/// dividing `heads` (query head `h` uses key/value head `h / (heads / kv_heads)`, as transformers'
/// `repeat_kv`). Scores are computed in the input dtype and normalised in f32, as transformers' eager
/// attention does. Returns `[batch, heads, queries, d]`.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: &AttentionBias<B>,
) -> Tensor<B, 4> {
    let [b, h, t, d] = q.dims();
    let [_, kvh, s, _] = k.dims();
    assert!(h % kvh == 0, "query heads {h} not a multiple of kv heads {kvh}");
    let g = h / kvh;
    let dtype = q.dtype();
    let scale = 1.0 / (d as f64).sqrt();
    let q = q.reshape([b, kvh, g * t, d]);
    let scores = crate::linear::matmul(q, k.transpose()).mul_scalar(scale);
    let scores = scores.cast(DType::F32).reshape([b, kvh, g, t, s]);
    let bias = bias.bias.clone().unsqueeze_dim::<5>(2);
    let probs = burn::tensor::activation::softmax(scores + bias, 4);
    let probs = probs.cast(dtype).reshape([b, kvh, g * t, s]);
    crate::linear::matmul(probs, v).reshape([b, h, t, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    /// Plain per-head attention in f64 on the host, with K/V repeated per query head.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dims: (usize, usize, usize, usize, usize, usize),
        bias: &[f32],
    ) -> Vec<f64> {
        let (b, h, kvh, t, s, d) = dims;
        let g = h / kvh;
        let mut out = vec![0.0f64; b * h * t * d];
        for bi in 0..b {
            for hi in 0..h {
                let kh = hi / g;
                for ti in 0..t {
                    let mut sc = vec![0.0f64; s];
                    for j in 0..s {
                        let mut acc = 0.0f64;
                        for x in 0..d {
                            acc += q[((bi * h + hi) * t + ti) * d + x] as f64
                                * k[((bi * kvh + kh) * s + j) * d + x] as f64;
                        }
                        sc[j] = acc / (d as f64).sqrt() + bias[(bi * t + ti) * s + j] as f64;
                    }
                    let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
                    for x in 0..d {
                        let mut acc = 0.0;
                        for j in 0..s {
                            acc += (sc[j] - m).exp() / z * v[((bi * kvh + kh) * s + j) * d + x] as f64;
                        }
                        out[((bi * h + hi) * t + ti) * d + x] = acc;
                    }
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn gqa_attention_matches_f64_reference() {
        let dev = Default::default();
        for &(b, h, kvh, t, s, d, offset) in &[
            (2, 4, 2, 3, 7, 8, 4),
            (1, 7, 1, 5, 5, 16, 0),
            (3, 8, 8, 1, 9, 4, 8),
            (1, 2, 2, 6, 11, 8, 5),
        ] {
            let q = pseudo_random(b * h * t * d, 1);
            let k = pseudo_random(b * kvh * s * d, 2);
            let v = pseudo_random(b * kvh * s * d, 3);
            let rows = causal_rows(t, s, offset);
            let mut bias = Vec::new();
            for _ in 0..b {
                bias.extend_from_slice(&rows);
            }
            let tq = Tensor::<B, 4>::from_data(TensorData::new(q.clone(), [b, h, t, d]), &dev);
            let tk = Tensor::<B, 4>::from_data(TensorData::new(k.clone(), [b, kvh, s, d]), &dev);
            let tv = Tensor::<B, 4>::from_data(TensorData::new(v.clone(), [b, kvh, s, d]), &dev);
            let ab = AttentionBias::<B>::causal(b, t, s, offset, &dev);
            let got: Vec<f32> = attention(tq, tk, tv, &ab).into_data().to_vec().unwrap();
            let want = reference(&q, &k, &v, (b, h, kvh, t, s, d), &bias);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-5,
                    "shape {:?}: {g} vs {w}",
                    (b, h, kvh, t, s, d)
                );
            }
        }
    }

    #[test]
    fn causal_rows_mask_the_future_only() {
        let r = causal_rows(2, 4, 1);
        assert_eq!(r, vec![0.0, 0.0, MASKED, MASKED, 0.0, 0.0, 0.0, MASKED]);
    }
}
