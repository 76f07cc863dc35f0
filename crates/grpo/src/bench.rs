//! The training-step benchmark behind `research bench train`: GRPO updates (forward, backward,
//! AdamW) on one micro-batch of random token sequences, with a model of random weights.
//!
//! The samples are honest GRPO inputs: random prompts and responses, every response token trained,
//! advantages of both signs, and old/reference log-probs computed by the model itself before the
//! timed steps (so the ratios start at 1 as in a real first update). Each timed step is
//! [`Learner::update`], which reads the loss and the gradient norm back to the host, so the step's
//! work has finished when it returns.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use research_qwen2::{FloatType, Qwen2Config, Qwen2ForCausalLM};

use crate::error::{GrpoError, Result};
use crate::learner::{Learner, LearnerConfig, Sample};
use crate::optim::{AdamW, AdamWConfig};

/// What to time.
#[derive(Debug, Clone, Copy)]
pub struct TrainBenchConfig {
    /// Sequences in the micro-batch.
    pub batch: usize,
    /// Tokens per sequence (prompt + response).
    pub seq_len: usize,
    /// Prompt tokens per sequence (not trained).
    pub prompt_len: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Seed of the weights and the tokens.
    pub seed: u64,
}

/// One benchmark result (a JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainBenchResult {
    /// Parameters of the model.
    pub params: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Tokens per step (batch × seq_len), the unit of `tokens_per_s`.
    pub tokens_per_step: usize,
    /// Trained (response) tokens per step.
    pub trained_tokens: usize,
    /// Seconds of each timed step.
    pub step_s: Vec<f64>,
    /// Mean seconds per timed step.
    pub mean_step_s: f64,
    /// `tokens_per_step / mean_step_s`.
    pub tokens_per_s: f64,
    /// Seconds of the untimed log-prob pass (old and reference log-probs).
    pub logprob_pass_s: f64,
    /// Mean seconds per timed step in the forward pass and loss (each phase of a step ends with a
    /// device synchronisation, so the three add up to about `mean_step_s`).
    pub forward_s: f64,
    /// Mean seconds per timed step in the backward pass and gradient accumulation.
    pub backward_s: f64,
    /// Mean seconds per timed step in global clipping and AdamW.
    pub optimizer_s: f64,
    /// Loss and gradient norm of the last step (finite on a healthy run).
    pub loss: f64,
    /// Gradient norm of the last step.
    pub grad_norm: f64,
}

/// Random GRPO samples: token ids below `vocab`, advantages ±(0.5..1.5) alternating in sign.
pub fn random_samples(config: &TrainBenchConfig, vocab: usize) -> Result<Vec<Sample>> {
    if config.batch == 0 || config.prompt_len == 0 || config.seq_len <= config.prompt_len {
        return Err(GrpoError::Input(format!(
            "bench train needs batch >= 1 and 1 <= prompt_len < seq_len (got batch {}, prompt_len {}, seq_len {})",
            config.batch, config.prompt_len, config.seq_len
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let response = config.seq_len - config.prompt_len;
    Ok((0..config.batch)
        .map(|i| {
            let mut ids = |n: usize| (0..n).map(|_| rng.random_range(0..vocab as u32)).collect::<Vec<u32>>();
            let prompt_ids = ids(config.prompt_len);
            let response_ids = ids(response);
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            Sample {
                prompt_ids,
                response_ids,
                loss_mask: vec![1; response],
                advantage: sign * rng.random_range(0.5f32..1.5),
                old_logprobs: vec![],
                ref_logprobs: vec![],
            }
        })
        .collect())
}

/// Times GRPO update steps of a random model of shape `model` in `dtype` on `device`.
pub fn update_throughput<B: AutodiffBackend>(
    model: &Qwen2Config,
    dtype: FloatType,
    config: &TrainBenchConfig,
    device: &B::Device,
) -> Result<TrainBenchResult> {
    let mut samples = random_samples(config, model.vocab_size)?;
    let policy = Qwen2ForCausalLM::<B>::random(model, dtype, config.seed, device);
    let params = burn::module::Module::num_params(&policy);
    let reference = policy.valid();
    let tokens_per_step = config.batch * config.seq_len;
    let learner_config = LearnerConfig {
        update_token_budget: tokens_per_step,
        logprob_token_budget: tokens_per_step,
        ..LearnerConfig::default()
    };
    let mut learner = Learner::new(
        policy,
        reference,
        AdamW::new(AdamWConfig::default()),
        learner_config,
        device.clone(),
    );
    let t = Instant::now();
    learner.fill_logprobs(&mut samples)?;
    let logprob_pass_s = t.elapsed().as_secs_f64();
    let trained_tokens = samples.iter().map(Sample::trained_tokens).sum();
    let mut step_s = Vec::with_capacity(config.steps);
    let mut phases = [0.0f64; 3];
    let mut last = None;
    for i in 0..config.warmup + config.steps {
        let t = Instant::now();
        let stats = learner.update(&samples)?;
        let dt = t.elapsed().as_secs_f64();
        tracing::info!(
            "step {i}: {dt:.3} s (forward {:.3}, backward {:.3}, optimizer {:.3}), loss {:.5}, grad norm {:.4}",
            stats.forward_s,
            stats.backward_s,
            stats.optimizer_s,
            stats.loss,
            stats.grad_norm
        );
        if i >= config.warmup {
            step_s.push(dt);
            phases[0] += stats.forward_s;
            phases[1] += stats.backward_s;
            phases[2] += stats.optimizer_s;
        }
        last = Some(stats);
    }
    let last = last.ok_or_else(|| GrpoError::Input("bench train needs at least one step".into()))?;
    let timed = step_s.len().max(1) as f64;
    let mean_step_s = if step_s.is_empty() {
        f64::NAN
    } else {
        step_s.iter().sum::<f64>() / step_s.len() as f64
    };
    Ok(TrainBenchResult {
        params,
        batch: config.batch,
        seq_len: config.seq_len,
        tokens_per_step,
        trained_tokens,
        mean_step_s,
        tokens_per_s: tokens_per_step as f64 / mean_step_s,
        step_s,
        logprob_pass_s,
        forward_s: phases[0] / timed,
        backward_s: phases[1] / timed,
        optimizer_s: phases[2] / timed,
        loss: last.loss,
        grad_norm: last.grad_norm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_samples_have_the_requested_shape() {
        let c = TrainBenchConfig {
            batch: 3,
            seq_len: 10,
            prompt_len: 4,
            warmup: 0,
            steps: 1,
            seed: 1,
        };
        let s = random_samples(&c, 50).unwrap();
        assert_eq!(s.len(), 3);
        for (i, x) in s.iter().enumerate() {
            assert_eq!(
                (x.prompt_ids.len(), x.response_ids.len(), x.trained_tokens()),
                (4, 6, 6)
            );
            assert!(x.prompt_ids.iter().chain(&x.response_ids).all(|&t| t < 50));
            assert_eq!(x.advantage > 0.0, i % 2 == 0);
        }
        let bad = TrainBenchConfig { prompt_len: 10, ..c };
        assert!(random_samples(&bad, 50).is_err());
    }

    #[test]
    fn update_throughput_runs_real_steps_on_cpu() {
        use burn::backend::{Autodiff, NdArray};
        let model = Qwen2Config {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 1,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            max_position_embeddings: 64,
            rms_norm_eps: 1e-6,
            rope_theta: 1e4,
            tie_word_embeddings: true,
            torch_dtype: None,
            bos_token_id: None,
            eos_token_ids: vec![],
        };
        let c = TrainBenchConfig {
            batch: 2,
            seq_len: 12,
            prompt_len: 3,
            warmup: 1,
            steps: 2,
            seed: 3,
        };
        let r = update_throughput::<Autodiff<NdArray<f32>>>(&model, FloatType::F32, &c, &Default::default()).unwrap();
        assert_eq!((r.tokens_per_step, r.trained_tokens, r.step_s.len()), (24, 18, 2));
        assert!(r.loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0);
        // Fresh old log-probs equal the policy's, so every ratio starts at 1 and the
        // policy-gradient term is -mean(advantage) over the (equally long) samples; with lr 1e-6
        // the two steps barely move it. The entropy bonus adds at most 0.001 × ln(vocab), KL ~ 0.
        let samples = random_samples(&c, 64).unwrap();
        let mean_adv = samples.iter().map(|s| s.advantage as f64).sum::<f64>() / 2.0;
        assert!(
            (r.loss + mean_adv).abs() <= 0.001 * 64f64.ln() + 1e-3,
            "{} vs {}",
            r.loss,
            -mean_adv
        );
        assert!(r.tokens_per_s > 0.0);
    }
}
