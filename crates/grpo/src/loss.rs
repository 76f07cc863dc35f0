//! The GRPO policy loss of verl 0.2 as ReSearch uses it (REFERENCE §5), on the response tokens of one
//! micro-batch, flattened: every tensor here is `[tokens]`, one entry per token with loss mask 1, so
//! the token-level masked mean over the micro-batch is a plain mean.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The coefficients of the loss.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// PPO clip range ε: ratios are clipped to `[1-ε, 1+ε]` (0.2).
    pub clip_ratio: f64,
    /// Entropy bonus coefficient (0.001).
    pub entropy_coeff: f64,
    /// Coefficient of the low-variance KL to the reference model (0.001).
    pub kl_coeff: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_ratio: 0.2,
            entropy_coeff: 0.001,
            kl_coeff: 0.001,
        }
    }
}

/// The loss of one micro-batch and its parts (each a one-element tensor).
pub struct LossOutput<B: Backend> {
    /// `pg_loss - entropy_coeff * entropy + kl_coeff * kl`.
    pub loss: Tensor<B, 1>,
    /// Mean of `max(-A·ratio, -A·clip(ratio))`.
    pub pg_loss: Tensor<B, 1>,
    /// Mean token entropy.
    pub entropy: Tensor<B, 1>,
    /// Mean low-variance KL (k3) to the reference.
    pub kl: Tensor<B, 1>,
    /// Share of tokens where the clipped term was the larger one.
    pub clip_frac: Tensor<B, 1>,
}

/// The GRPO loss from per-token log-probs under the current policy (`logp`, with gradient), the
/// policy's entropy at each token, the old policy's and the reference model's log-probs, and each
/// token's advantage.
pub fn grpo_loss<B: Backend>(
    logp: Tensor<B, 1>,
    entropy: Tensor<B, 1>,
    old_logp: Tensor<B, 1>,
    ref_logp: Tensor<B, 1>,
    advantages: Tensor<B, 1>,
    config: &LossConfig,
) -> LossOutput<B> {
    let eps = config.clip_ratio;
    let ratio = (logp.clone() - old_logp).exp();
    let neg_adv = advantages.neg();
    let pg1 = neg_adv.clone() * ratio.clone();
    let pg2 = neg_adv * ratio.clamp(1.0 - eps, 1.0 + eps);
    let clip_frac = pg2.clone().greater(pg1.clone()).float().mean();
    let pg_loss = pg1.max_pair(pg2).mean();
    let kl = ref_logp - logp;
    let k3 = (kl.clone().exp() - kl - 1.0).clamp(-10.0, 10.0).mean();
    let entropy = entropy.mean();
    let loss = pg_loss.clone() - entropy.clone() * config.entropy_coeff + k3.clone() * config.kl_coeff;
    LossOutput {
        loss,
        pg_loss,
        entropy,
        kl: k3,
        clip_frac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn t(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    #[test]
    fn hand_worked_tokens() {
        // Token 1: A = 1, logp - old = ln 1.5 -> ratio 1.5: -A·r = -1.5, clipped -1.2 -> max -1.2 (clipped).
        // Token 2: A = -2, ratio 0.5: -A·r = 1.0, clipped 2·0.8 = 1.6 -> max 1.6 (clipped).
        // Token 3: A = 0.5, ratio 1: -0.5 both -> -0.5 (not clipped).
        // pg = (-1.2 + 1.6 - 0.5) / 3 = -0.0333..; clip_frac = 2/3.
        let old = [-1.0f32, -2.0, -0.7];
        let logp = [-1.0 + 1.5f32.ln(), -2.0 + 0.5f32.ln(), -0.7];
        // Reference: kl = ref - logp = (0, ln 2, -1): k3 = 0, 2 - ln2 - 1, e^-1 + 1 - 1.
        let refp = [logp[0], logp[1] + 2.0f32.ln(), logp[2] - 1.0];
        let ent = [1.0f32, 2.0, 3.0];
        let out = grpo_loss(
            t(&logp),
            t(&ent),
            t(&old),
            t(&refp),
            t(&[1.0, -2.0, 0.5]),
            &LossConfig::default(),
        );
        let pg = (-1.2 + 1.6 - 0.5) / 3.0;
        let k3 = (0.0 + (1.0 - 2.0f64.ln()) + (-1.0f64).exp()) / 3.0;
        let loss = pg - 0.001 * 2.0 + 0.001 * k3;
        let s = |x: Tensor<B, 1>| x.into_scalar() as f64;
        assert!((s(out.pg_loss) - pg).abs() < 1e-6);
        assert!((s(out.kl) - k3).abs() < 1e-6);
        assert!((s(out.entropy) - 2.0).abs() < 1e-6);
        assert!((s(out.clip_frac) - 2.0 / 3.0).abs() < 1e-6);
        assert!((s(out.loss) - loss).abs() < 1e-6);
    }

    #[test]
    fn kl_is_clamped_at_ten() {
        // kl = 20 -> e^20 - 21 is huge -> clamped to 10.
        let out = grpo_loss(
            t(&[-21.0]),
            t(&[0.0]),
            t(&[-21.0]),
            t(&[-1.0]),
            t(&[0.0]),
            &LossConfig::default(),
        );
        assert!((out.kl.into_scalar() - 10.0).abs() < 1e-6);
    }
}
