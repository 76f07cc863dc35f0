//! Sentence embeddings from last hidden states: mean pooling over the attention mask (E5,
//! sentence-transformers) or the `[CLS]` vector (BGE), then L2 normalisation. All in f32.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorCreationOptions, TensorData};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the real (unmasked) tokens' vectors, `[CLS]` and `[SEP]` included.
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

impl Pooling {
    /// `[batch, seq, hidden]` hidden states and a `[batch * seq]` host mask (1 real, 0 padding) to
    /// `[batch, hidden]` in f32. Mean pooling divides by the token count clamped at 1e-9, as
    /// sentence-transformers does.
    pub fn pool<B: Backend>(self, hidden: Tensor<B, 3>, mask: &[u32]) -> Tensor<B, 2> {
        let [b, s, h] = hidden.dims();
        let hidden = hidden.cast(DType::F32);
        match self {
            Pooling::Cls => hidden.narrow(1, 0, 1).reshape([b, h]),
            Pooling::Mean => {
                assert_eq!(mask.len(), b * s, "mask size");
                let m: Vec<f32> = mask.iter().map(|&x| if x != 0 { 1.0 } else { 0.0 }).collect();
                let m = Tensor::<B, 3>::from_data(
                    TensorData::new(m, [b, s, 1]),
                    TensorCreationOptions::new(hidden.device()).with_dtype(DType::F32),
                );
                let sum = (hidden * m.clone()).sum_dim(1).reshape([b, h]);
                let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
                sum / count
            }
        }
    }
}

/// Divides each row by its L2 norm (clamped at 1e-12, as `torch.nn.functional.normalize`).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn mean_pooling_ignores_padding_and_cls_takes_the_first_token() {
        let dev = Default::default();
        // batch 2, seq 3, hidden 2; row 1 has one padding position holding junk.
        let h = Tensor::<B, 3>::from_data(
            TensorData::new(vec![1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 100., 100.], [2, 3, 2]),
            &dev,
        );
        let mean: Vec<f32> = Pooling::Mean
            .pool(h.clone(), &[1, 1, 1, 1, 1, 0])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(mean, vec![3., 4., 8., 9.]);
        let cls: Vec<f32> = Pooling::Cls.pool(h, &[1, 1, 1, 1, 1, 0]).into_data().to_vec().unwrap();
        assert_eq!(cls, vec![1., 2., 7., 8.]);
        let n: Vec<f32> = l2_normalize(Tensor::<B, 2>::from_data(
            TensorData::new(vec![3., 4., 0., 0.], [2, 2]),
            &dev,
        ))
        .into_data()
        .to_vec()
        .unwrap();
        assert_eq!(n, vec![0.6, 0.8, 0., 0.]);
    }
}
