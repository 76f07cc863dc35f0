//! The learner: log-prob passes and the GRPO update over micro-batches with a token budget.
//!
//! Sequences are `prompt ++ response`, right-padded to the longest of their micro-batch (causal
//! attention makes the padding invisible to real tokens). Logits are computed only at the positions
//! that predict a response token with loss mask 1, so prompt and inserted-result tokens cost no
//! LM-head work and the token-level masked mean is a plain mean over those positions.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use research_kernels::attention::AttentionBias;
use research_kernels::loss::token_logprob_entropy;
use research_qwen2::Qwen2ForCausalLM;

use crate::error::{GrpoError, Result};
use crate::loss::{grpo_loss, LossConfig};
use crate::optim::{AdamW, StepStats};

/// One sequence of a training batch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Prompt ids.
    pub prompt_ids: Vec<u32>,
    /// Response ids (sampled and inserted).
    pub response_ids: Vec<u32>,
    /// 1 where the token is the model's own (trained), 0 on inserted results.
    pub loss_mask: Vec<u8>,
    /// The sample's advantage (applies to every response token).
    pub advantage: f32,
    /// Old-policy log-prob of each masked-in response token (filled by [`Learner::fill_logprobs`]).
    pub old_logprobs: Vec<f32>,
    /// Reference-model log-prob of each masked-in response token.
    pub ref_logprobs: Vec<f32>,
}

impl Sample {
    /// Tokens in the full sequence.
    pub fn len(&self) -> usize {
        self.prompt_ids.len() + self.response_ids.len()
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Response tokens that are trained.
    pub fn trained_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m != 0).count()
    }

    fn check(&self) -> Result<()> {
        if self.prompt_ids.is_empty() {
            return Err(GrpoError::Input("a sample has an empty prompt".into()));
        }
        if self.loss_mask.len() != self.response_ids.len() {
            return Err(GrpoError::Input(format!(
                "loss mask has {} entries for {} response tokens",
                self.loss_mask.len(),
                self.response_ids.len()
            )));
        }
        Ok(())
    }
}

/// Splits `samples` (indices, in order) into micro-batches whose padded size (rows × longest) stays
/// within `token_budget`; a sample longer than the budget gets a micro-batch of its own.
pub fn micro_batches(samples: &[Sample], token_budget: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0usize;
    for (i, s) in samples.iter().enumerate() {
        let l = longest.max(s.len());
        if !cur.is_empty() && (cur.len() + 1) * l > token_budget {
            out.push(std::mem::take(&mut cur));
            longest = 0;
        }
        longest = longest.max(s.len());
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A micro-batch as flat host arrays.
struct Packed {
    rows: usize,
    /// Columns of `ids` (the longest sequence).
    len: usize,
    ids: Vec<i64>,
    /// Flat index `row * (len - 1) + t` of each trained position (it predicts token `t + 1`).
    index: Vec<i64>,
    targets: Vec<i64>,
    /// The sample (index into the micro-batch) of each trained position.
    owner: Vec<usize>,
}

fn pack(samples: &[&Sample]) -> Packed {
    let len = samples.iter().map(|s| s.len()).max().unwrap_or(0).max(2);
    let rows = samples.len();
    let mut ids = vec![0i64; rows * len];
    let (mut index, mut targets, mut owner) = (Vec::new(), Vec::new(), Vec::new());
    for (r, s) in samples.iter().enumerate() {
        let p = s.prompt_ids.len();
        for (j, &t) in s.prompt_ids.iter().chain(&s.response_ids).enumerate() {
            ids[r * len + j] = t as i64;
        }
        for (j, (&t, &m)) in s.response_ids.iter().zip(&s.loss_mask).enumerate() {
            if m != 0 {
                index.push((r * (len - 1) + p + j - 1) as i64);
                targets.push(t as i64);
                owner.push(r);
            }
        }
    }
    Packed {
        rows,
        len,
        ids,
        index,
        targets,
        owner,
    }
}

/// Log-probs (and optionally entropies) of the trained tokens of a packed micro-batch, `[tokens]`,
/// f32 (`research_kernels::loss::token_logprob_entropy`).
fn token_stats<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    packed: &Packed,
    entropy: bool,
    device: &B::Device,
) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
    let (n, l) = (packed.rows, packed.len);
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(packed.ids.clone(), [n, l]), device);
    let inputs = ids.narrow(1, 0, l - 1);
    let positions = Tensor::<B, 1, Int>::arange(0..(l - 1) as i64, device)
        .reshape([1, l - 1])
        .expand([n, l - 1]);
    let bias = AttentionBias::causal(n, l - 1, l - 1, 0, device);
    let hidden = model.forward_hidden(inputs, positions, &bias, None);
    let h = hidden.dims()[2];
    let t = packed.index.len();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(packed.index.clone(), [t]), device);
    let picked = hidden.reshape([n * (l - 1), h]).select(0, index).reshape([1, t, h]);
    let logits = model.logits(picked).reshape([t, model.vocab_size]);
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(packed.targets.clone(), [t]), device);
    // f32 whatever the model dtype: one fused kernel each way on burn-cuda, burn's log_softmax
    // route elsewhere (`RESEARCH_LOSS=reference` forces it).
    token_logprob_entropy(logits, targets, entropy)
}

fn to_vec<B: Backend>(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}

/// Learner settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Padded tokens per micro-batch in the update (17,408 per GPU in the paper's run).
    pub update_token_budget: usize,
    /// Padded tokens per micro-batch in the log-prob passes (34,816).
    pub logprob_token_budget: usize,
    /// The loss coefficients.
    pub loss: LossConfig,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            update_token_budget: 17_408,
            logprob_token_budget: 34_816,
            loss: LossConfig::default(),
        }
    }
}

/// Statistics of one update (token-weighted means over the micro-batches).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct UpdateStats {
    /// The loss (as accumulated, i.e. the mini-batch loss).
    pub loss: f64,
    /// Policy-gradient loss.
    pub pg_loss: f64,
    /// Mean entropy of the trained tokens.
    pub entropy: f64,
    /// Mean k3 KL to the reference.
    pub kl: f64,
    /// Share of clipped tokens.
    pub clip_frac: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Trained tokens.
    pub tokens: usize,
    /// Micro-batches.
    pub micro_batches: usize,
    /// Whether the step was skipped (non-finite loss or gradient).
    pub skipped: bool,
    /// Seconds in the forward passes and the loss (until the loss value is on the host).
    #[serde(default)]
    pub forward_s: f64,
    /// Seconds in the backward passes and gradient accumulation (device synchronised after each).
    #[serde(default)]
    pub backward_s: f64,
    /// Seconds in clipping and the optimizer step (device synchronised after it).
    #[serde(default)]
    pub optimizer_s: f64,
}

/// The frozen reference model of the KL term, and where it runs.
#[allow(clippy::large_enum_variant)] // one per learner; boxing the model buys nothing
pub enum Reference<B: Backend> {
    /// On the training device, in the training dtype.
    Device(Qwen2ForCausalLM<B>),
    /// On the CPU (burn-ndarray, f32): leaves the device's memory to the policy; its log-prob
    /// pass runs on the host (slow for big models).
    #[cfg(feature = "cpu")]
    Cpu(Box<Qwen2ForCausalLM<CpuReferenceBackend>>),
}

/// The backend of [`Reference::Cpu`].
#[cfg(feature = "cpu")]
pub type CpuReferenceBackend = burn::backend::NdArray<f32>;

impl<B: Backend> From<Qwen2ForCausalLM<B>> for Reference<B> {
    fn from(model: Qwen2ForCausalLM<B>) -> Self {
        Self::Device(model)
    }
}

impl<B: Backend> Reference<B> {
    /// Log-probs of the packed trained tokens (temperature 1).
    fn logprobs(&self, packed: &Packed, device: &B::Device) -> Vec<f32> {
        match self {
            Self::Device(m) => to_vec(token_stats(m, packed, false, device).0),
            #[cfg(feature = "cpu")]
            Self::Cpu(m) => to_vec(token_stats(m, packed, false, &Default::default()).0),
        }
    }

    /// Where it runs, for logs.
    pub fn placement(&self) -> &'static str {
        match self {
            Self::Device(_) => "device",
            #[cfg(feature = "cpu")]
            Self::Cpu(_) => "cpu",
        }
    }
}

/// The policy being trained, its frozen reference and the optimizer.
pub struct Learner<B: AutodiffBackend> {
    /// The policy (with gradients).
    pub policy: Qwen2ForCausalLM<B>,
    /// The frozen reference model (the policy at the start of training).
    pub reference: Reference<B::InnerBackend>,
    /// AdamW.
    pub optimizer: AdamW<B>,
    /// Settings.
    pub config: LearnerConfig,
    device: B::Device,
}

impl<B: AutodiffBackend> Learner<B> {
    /// A learner around `policy`; `reference` is the frozen model of the KL term.
    pub fn new(
        policy: Qwen2ForCausalLM<B>,
        reference: impl Into<Reference<B::InnerBackend>>,
        optimizer: AdamW<B>,
        config: LearnerConfig,
        device: B::Device,
    ) -> Self {
        Self {
            policy,
            reference: reference.into(),
            optimizer,
            config,
            device,
        }
    }

    /// The policy without autodiff (for rollouts and evaluation); shares the weights.
    pub fn inference_model(&self) -> Qwen2ForCausalLM<B::InnerBackend> {
        self.policy.valid()
    }

    /// Recomputes the old-policy log-probs (the actor, at temperature 1) and the reference
    /// log-probs of every sample's trained tokens.
    pub fn fill_logprobs(&self, samples: &mut [Sample]) -> Result<()> {
        for s in samples.iter() {
            s.check()?;
        }
        let actor = self.inference_model();
        let device = self.inner_device();
        for mb in micro_batches(samples, self.config.logprob_token_budget) {
            let refs: Vec<&Sample> = mb.iter().map(|&i| &samples[i]).collect();
            let packed = pack(&refs);
            let old = to_vec(token_stats(&actor, &packed, false, &device).0);
            let reference = self.reference.logprobs(&packed, &device);
            for &i in &mb {
                samples[i].old_logprobs.clear();
                samples[i].ref_logprobs.clear();
            }
            for (k, &owner) in packed.owner.iter().enumerate() {
                samples[mb[owner]].old_logprobs.push(old[k]);
                samples[mb[owner]].ref_logprobs.push(reference[k]);
            }
        }
        Ok(())
    }

    /// Waits for the device's queued work (so the phase timings of [`UpdateStats`] mean time).
    fn sync(&self) -> Result<()> {
        B::sync(&self.device).map_err(|e| GrpoError::Device(format!("device synchronisation failed: {e:?}")))
    }

    fn inner_device(&self) -> burn::tensor::Device<B::InnerBackend> {
        // Tensors of the autodiff backend live on the inner backend's device.
        let probe = Tensor::<B, 1>::zeros([1], &self.device);
        probe.inner().device()
    }

    /// The loss of one micro-batch, scaled by its share of the mini-batch's sequences; used by
    /// [`Learner::update`] and by the parity test.
    pub fn micro_batch_loss(&self, samples: &[&Sample], total: usize) -> Result<crate::loss::LossOutput<B>> {
        let packed = pack(samples);
        let t = packed.index.len();
        if t == 0 {
            return Err(GrpoError::Input("a micro-batch without trained tokens".into()));
        }
        let mut old = Vec::with_capacity(t);
        let mut reference = Vec::with_capacity(t);
        let mut adv = Vec::with_capacity(t);
        for s in samples {
            if s.old_logprobs.len() != s.trained_tokens() || s.ref_logprobs.len() != s.trained_tokens() {
                return Err(GrpoError::Input(format!(
                    "a sample has {} trained tokens but {} old and {} reference log-probs (call fill_logprobs first)",
                    s.trained_tokens(),
                    s.old_logprobs.len(),
                    s.ref_logprobs.len()
                )));
            }
            old.extend_from_slice(&s.old_logprobs);
            reference.extend_from_slice(&s.ref_logprobs);
            adv.extend(std::iter::repeat_n(s.advantage, s.trained_tokens()));
        }
        let f = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [t]), &self.device);
        let (logp, ent) = token_stats(&self.policy, &packed, true, &self.device);
        let mut out = grpo_loss(
            logp,
            ent.expect("asked for entropy"),
            f(old),
            f(reference),
            f(adv),
            &self.config.loss,
        );
        out.loss = out.loss * (samples.len() as f64 / total as f64);
        Ok(out)
    }

    /// One optimizer step on the mini-batch `samples` (whose log-probs are filled): micro-batches by
    /// token budget, scaled losses accumulated, global clipping, AdamW. A non-finite loss or
    /// gradient skips the step (reported in the stats).
    pub fn update(&mut self, samples: &[Sample]) -> Result<UpdateStats> {
        let total = samples.len();
        let mut stats = UpdateStats::default();
        let scalar = |t: Tensor<B, 1>| -> f64 {
            t.into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .map(|v| v[0])
                .unwrap_or(f64::NAN)
        };
        for mb in micro_batches(samples, self.config.update_token_budget) {
            let refs: Vec<&Sample> = mb.iter().map(|&i| &samples[i]).collect();
            let tokens: usize = refs.iter().map(|s| s.trained_tokens()).sum();
            if tokens == 0 {
                continue;
            }
            let t = Instant::now();
            let out = self.micro_batch_loss(&refs, total)?;
            let loss_value = scalar(out.loss.clone());
            stats.forward_s += t.elapsed().as_secs_f64();
            if !loss_value.is_finite() {
                tracing::warn!("non-finite loss ({loss_value}) in a micro-batch: the step is skipped");
                self.optimizer.discard();
                stats.skipped = true;
                return Ok(stats);
            }
            let w = tokens as f64;
            stats.loss += loss_value;
            stats.pg_loss += scalar(out.pg_loss.detach()) * w;
            stats.entropy += scalar(out.entropy.detach()) * w;
            stats.kl += scalar(out.kl.detach()) * w;
            stats.clip_frac += scalar(out.clip_frac.detach()) * w;
            stats.tokens += tokens;
            stats.micro_batches += 1;
            let t = Instant::now();
            let grads = out.loss.backward();
            self.optimizer.accumulate(&self.policy, &grads);
            self.sync()?;
            stats.backward_s += t.elapsed().as_secs_f64();
        }
        if stats.tokens == 0 {
            return Err(GrpoError::Input("an update without trained tokens".into()));
        }
        let w = stats.tokens as f64;
        stats.pg_loss /= w;
        stats.entropy /= w;
        stats.kl /= w;
        stats.clip_frac /= w;
        let t = Instant::now();
        let policy = self.policy.clone();
        let (policy, StepStats { grad_norm, lr, applied }) = self.optimizer.step(policy);
        self.policy = policy;
        self.sync()?;
        stats.optimizer_s = t.elapsed().as_secs_f64();
        stats.grad_norm = grad_norm;
        stats.lr = lr;
        if !applied {
            tracing::warn!("non-finite gradient norm ({grad_norm}): the step is skipped");
            stats.skipped = true;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(p: usize, r: usize) -> Sample {
        Sample {
            prompt_ids: vec![1; p],
            response_ids: vec![2; r],
            loss_mask: vec![1; r],
            advantage: 0.0,
            old_logprobs: vec![],
            ref_logprobs: vec![],
        }
    }

    #[test]
    fn micro_batches_respect_the_padded_budget() {
        // lengths 4, 6, 3, 10, 2 with budget 12: [4,6] pads to 2x6=12; +3 -> 3x6=18 > 12 -> new;
        // [3] then +10 -> 2x10 = 20 > 12 -> new; [10] then +2 -> 20 -> new; [2].
        let s: Vec<Sample> = [4, 6, 3, 10, 2].iter().map(|&l| sample(1, l - 1)).collect();
        assert_eq!(micro_batches(&s, 12), vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        // A sample longer than the budget is alone.
        assert_eq!(micro_batches(&s, 5), vec![vec![0], vec![1], vec![2], vec![3], vec![4]]);
    }

    #[test]
    fn pack_indexes_the_predicting_positions() {
        // Prompt [5, 6], response [7, 8, 9] with mask [1, 0, 1]; second row prompt [1], response [2].
        let a = Sample {
            prompt_ids: vec![5, 6],
            response_ids: vec![7, 8, 9],
            loss_mask: vec![1, 0, 1],
            ..sample(1, 0)
        };
        let b = Sample {
            prompt_ids: vec![1],
            response_ids: vec![2],
            loss_mask: vec![1],
            ..sample(1, 0)
        };
        let p = pack(&[&a, &b]);
        assert_eq!((p.rows, p.len), (2, 5));
        assert_eq!(p.ids, vec![5, 6, 7, 8, 9, 1, 2, 0, 0, 0]);
        // Row 0: token 7 (seq index 2) is predicted at position 1, token 9 (index 4) at 3.
        // Row 1: token 2 (index 1) at position 0 -> flat 1*4 + 0 = 4.
        assert_eq!(p.index, vec![1, 3, 4]);
        assert_eq!(p.targets, vec![7, 9, 2]);
        assert_eq!(p.owner, vec![0, 0, 1]);
    }
}
