//! The training loop (REFERENCE §5): prompts → rollouts with search → rewards → group advantages →
//! old/reference log-probs → one update per step; validation, metrics, chart and checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use research_agent::{
    re_search_instruct_prompt, re_search_reward, re_search_template, Passage, Retriever, RolloutBatch, RolloutConfig,
};
use research_engine::{Engine, SamplingParams};
use research_eval::dataset::{read_questions, Question};
use research_qwen2::{load_model, FloatType, ModelDir, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer};

use crate::checkpoint::{latest_checkpoint, read_state, save_checkpoint, TrainerState};
use crate::config::{ReferenceDevice, Template, TrainConfig};
use crate::error::{io_err, GrpoError, Result};
#[cfg(feature = "cpu")]
use crate::learner::CpuReferenceBackend;
use crate::learner::{Learner, Reference, Sample, UpdateStats};
use crate::optim::AdamW;

/// Instruct EOS ids (`<|im_end|>`, `<|endoftext|>`) and base EOS (`<|endoftext|>`).
const INSTRUCT_EOS_IDS: [u32; 2] = [151645, 151643];
const BASE_EOS_IDS: [u32; 1] = [151643];

/// A training or validation question with its prompt ids.
#[derive(Debug, Clone)]
struct Prompted {
    question: Question,
    ids: Vec<u32>,
}

/// One line of `metrics.jsonl`: a training step or a validation.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Steps completed after this record (0 for the validation before training).
    pub step: u64,
    /// `train` or `val`.
    pub kind: String,
    /// Epoch of the step's prompts.
    pub epoch: usize,
    /// Mean reward.
    pub reward_mean: f64,
    /// Reward standard deviation.
    pub reward_std: f64,
    /// Share of samples whose format check failed (reward 0 for format).
    pub format_fail: f64,
    /// Mean exact match of the `\boxed{}` answer (validation).
    pub em: f64,
    /// Mean generated response tokens per sample (inserted results not counted).
    pub response_len: f64,
    /// Mean searches per sample.
    pub searches: f64,
    /// The update (training steps only).
    pub update: Option<UpdateStats>,
    /// Generated + trained tokens per second over the whole step.
    pub tokens_per_s: f64,
    /// Seconds in generation (rollout minus retrieval).
    pub t_rollout: f64,
    /// Seconds in retrieval.
    pub t_retrieval: f64,
    /// Seconds computing old and reference log-probs.
    pub t_logprobs: f64,
    /// Seconds in the update.
    pub t_update: f64,
    /// Steps skipped so far (non-finite loss or gradient).
    pub skipped_steps: u64,
}

/// Wraps a retriever to time it.
struct Timed<'a> {
    inner: &'a dyn Retriever,
    spent: Mutex<Duration>,
}

impl Retriever for Timed<'_> {
    fn search(&self, queries: &[String], k: usize) -> std::result::Result<Vec<Vec<Passage>>, String> {
        let t = Instant::now();
        let r = self.inner.search(queries, k);
        *self.spent.lock().expect("timer lock") += t.elapsed();
        r
    }
}

/// A training run.
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    model_config: Qwen2Config,
    tokenizer: Arc<Qwen2Tokenizer>,
    tokenizer_dir: PathBuf,
    learner: Learner<B>,
    train: Vec<Prompted>,
    val: Vec<Prompted>,
    state: TrainerState,
    dtype: FloatType,
    device: B::Device,
}

fn random_config(r: &crate::config::RandomModel, vocab: usize) -> Qwen2Config {
    Qwen2Config {
        vocab_size: vocab,
        hidden_size: r.hidden_size,
        intermediate_size: r.intermediate_size,
        num_hidden_layers: r.num_hidden_layers,
        num_attention_heads: r.num_attention_heads,
        num_key_value_heads: r.num_key_value_heads,
        head_dim: r.hidden_size / r.num_attention_heads,
        max_position_embeddings: 32768,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        torch_dtype: Some("float32".into()),
        bos_token_id: None,
        eos_token_ids: INSTRUCT_EOS_IDS.to_vec(),
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Sets up a run: the model (from `model.path` or random), the frozen reference, the data, and —
    /// with `resume` — the state of the latest checkpoint in `config.out`.
    pub fn new(config: TrainConfig, resume: bool, device: B::Device) -> Result<Self> {
        let dtype = FloatType::parse(&config.model.dtype)?;
        let bad_path = |field: &str, p: &Path| GrpoError::Config {
            path: PathBuf::from("<config>"),
            field: field.into(),
            message: format!(
                "{} does not exist (paths are relative to the current directory)",
                p.display()
            ),
        };
        // The model and the reference (always the starting weights, also when resuming).
        let on_cpu = config.model.reference_device == ReferenceDevice::Cpu;
        let (model_config, tokenizer_dir, reference, policy_fresh) = match (&config.model.path, &config.model.random) {
            (Some(path), _) => {
                let dir = ModelDir::resolve(path)?;
                let (mc, reference) = if on_cpu {
                    reference_on_cpu(&dir)?
                } else {
                    let (mc, m) = load_model::<B::InnerBackend>(&dir, dtype, &inner_device::<B>(&device))?;
                    (mc, Reference::Device(m))
                };
                (mc, dir.path().to_path_buf(), reference, None)
            }
            (None, Some(r)) => {
                if !r.tokenizer.exists() {
                    return Err(bad_path("model.random.tokenizer", &r.tokenizer));
                }
                let tok = Qwen2Tokenizer::from_path(&r.tokenizer)?;
                let mc = random_config(r, tok.vocab_size());
                let policy = Qwen2ForCausalLM::<B>::random(&mc, dtype, r.seed, &device);
                let reference = if on_cpu {
                    // The CPU backend draws other random numbers: copy the policy's weights through
                    // a temporary HF checkpoint instead.
                    let tmp = config.out.join(".reference-init");
                    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
                    policy.valid().save_pretrained(&mc, &tmp)?;
                    let loaded = reference_on_cpu(&ModelDir::resolve(tmp.to_str().unwrap_or_default())?);
                    let _ = std::fs::remove_dir_all(&tmp);
                    loaded?.1
                } else {
                    Reference::Device(Qwen2ForCausalLM::<B::InnerBackend>::random(
                        &mc,
                        dtype,
                        r.seed,
                        &inner_device::<B>(&device),
                    ))
                };
                (mc, r.tokenizer.clone(), reference, Some(policy))
            }
            (None, None) => return Err(GrpoError::Input("no model given".into())),
        };
        tracing::info!(reference = reference.placement(), "reference model loaded");
        let tokenizer = Arc::new(Qwen2Tokenizer::from_path(&tokenizer_dir)?);
        let mut state = TrainerState {
            seed: config.schedule.seed,
            ..TrainerState::default()
        };
        let mut optimizer = AdamW::<B>::new(config.optim);
        let checkpoint = if resume { latest_checkpoint(&config.out)? } else { None };
        let policy = match &checkpoint {
            Some(dir) => {
                state = read_state(dir)?;
                if state.seed != config.schedule.seed {
                    return Err(GrpoError::Checkpoint {
                        path: dir.clone(),
                        message: format!(
                            "was written with schedule.seed {} but the config says {} (the data order would change)",
                            state.seed, config.schedule.seed
                        ),
                    });
                }
                optimizer.load(&dir.join("optimizer.safetensors"), &inner_device::<B>(&device))?;
                let cdir = ModelDir::resolve(dir.to_str().unwrap_or_default())?;
                tracing::info!(checkpoint = %dir.display(), step = state.step, "resuming");
                load_model::<B>(&cdir, dtype, &device)?.1
            }
            None => match policy_fresh {
                Some(p) => p,
                None => {
                    let dir = ModelDir::resolve(config.model.path.as_deref().unwrap_or_default())?;
                    load_model::<B>(&dir, dtype, &device)?.1
                }
            },
        };
        if !resume && config.out.join("metrics.jsonl").exists() {
            return Err(GrpoError::Input(format!(
                "{} already holds a run (metrics.jsonl); pass --resume to continue it or choose another --out",
                config.out.display()
            )));
        }
        let learner = Learner::new(policy, reference, optimizer, config.learner, device.clone());
        // Data.
        if !config.data.train.exists() {
            return Err(bad_path("data.train", &config.data.train));
        }
        let prompt = |q: Question| -> Result<Option<Prompted>> {
            let text = match config.data.template {
                Template::Instruct => re_search_instruct_prompt(&q.question),
                Template::Base => re_search_template(&q.question),
            };
            let ids = tokenizer.encode(&text)?;
            Ok((ids.len() <= config.data.max_prompt_tokens).then_some(Prompted { question: q, ids }))
        };
        let mut train = Vec::new();
        let mut dropped = 0usize;
        for q in read_questions(&config.data.train)? {
            match prompt(q)? {
                Some(p) => train.push(p),
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                max = config.data.max_prompt_tokens,
                "training prompts over the length cap dropped"
            );
        }
        if train.len() < config.rollout.prompts_per_step {
            return Err(GrpoError::Input(format!(
                "{} has {} usable questions, fewer than rollout.prompts_per_step = {}",
                config.data.train.display(),
                train.len(),
                config.rollout.prompts_per_step
            )));
        }
        let mut val = Vec::new();
        if let Some(path) = &config.data.val {
            if !path.exists() {
                return Err(bad_path("data.val", path));
            }
            let mut qs = read_questions(path)?;
            qs.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(config.data.val_seed));
            for q in qs.into_iter().take(config.data.val_size) {
                if let Some(p) = prompt(q)? {
                    val.push(p);
                }
            }
        }
        std::fs::create_dir_all(&config.out).map_err(io_err(&config.out))?;
        let cfg_path = config.out.join("config.toml");
        std::fs::write(&cfg_path, config.to_toml()).map_err(io_err(&cfg_path))?;
        if checkpoint.is_some() {
            truncate_metrics(&config.out.join("metrics.jsonl"), state.metrics_lines)?;
        }
        Ok(Self {
            config,
            model_config,
            tokenizer,
            tokenizer_dir,
            learner,
            train,
            val,
            state,
            dtype,
            device,
        })
    }

    /// Steps the run will take in all.
    pub fn total_steps(&self) -> u64 {
        let per_epoch = (self.train.len() / self.config.rollout.prompts_per_step) as u64;
        let all = per_epoch * self.config.schedule.epochs as u64;
        self.config.schedule.max_steps.map_or(all, |m| m.min(all.max(m)))
    }

    /// Steps completed.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// The learner (policy, reference, optimizer).
    pub fn learner(&self) -> &Learner<B> {
        &self.learner
    }

    fn engine(&self) -> Engine<B::InnerBackend> {
        Engine::new(
            self.model_config.clone(),
            self.learner.inference_model(),
            Some(self.tokenizer.clone()),
            self.dtype,
            inner_device::<B>(&self.device),
        )
    }

    fn eos(&self) -> (Vec<u32>, &'static [&'static str]) {
        match self.config.data.template {
            Template::Instruct => (INSTRUCT_EOS_IDS.to_vec(), research_agent::INSTRUCT_EOS),
            Template::Base => (BASE_EOS_IDS.to_vec(), research_agent::BASE_EOS),
        }
    }

    /// The prompts of step `step`: epoch-wise shuffles of the training set (seeded by the run seed
    /// and the epoch), consecutive slices of `prompts_per_step`, the remainder dropped.
    fn batch_indices(&self, step: u64) -> (usize, Vec<usize>) {
        let bs = self.config.rollout.prompts_per_step;
        let per_epoch = (self.train.len() / bs).max(1) as u64;
        let epoch = (step / per_epoch) as usize;
        let offset = (step % per_epoch) as usize * bs;
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            self.state.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
        ));
        (epoch, order[offset..offset + bs].to_vec())
    }

    /// One GRPO step; returns its metrics (also appended to `metrics.jsonl`).
    pub fn train_step(&mut self, retriever: &dyn Retriever) -> Result<StepMetrics> {
        let t0 = Instant::now();
        let (epoch, idx) = self.batch_indices(self.state.step);
        let n = self.config.rollout.n;
        let (eos_ids, eos_str) = self.eos();
        let prompts: Vec<Vec<u32>> = idx
            .iter()
            .flat_map(|&i| std::iter::repeat_n(self.train[i].ids.clone(), n))
            .collect();
        let rc = RolloutConfig {
            response_budget: self.config.rollout.response_budget,
            top_k: self.config.retriever.top_k,
            max_turns: self.config.rollout.max_turns,
            sampling: SamplingParams {
                temperature: self.config.rollout.temperature,
                top_p: 1.0,
                top_k: 0,
                seed: self.state.seed.wrapping_mul(7919).wrapping_add(self.state.step),
            },
            eos_ids,
            ..Default::default()
        };
        let timed = Timed {
            inner: retriever,
            spent: Mutex::new(Duration::ZERO),
        };
        let engine = self.engine();
        let rollouts = RolloutBatch::new(&engine, prompts, rc)?.run(&timed)?;
        drop(engine);
        let t_roll = t0.elapsed();
        let t_retrieval = timed.spent.lock().expect("timer lock").as_secs_f64();

        let mut rewards = Vec::with_capacity(rollouts.len());
        let mut format_fail = 0usize;
        for (k, r) in rollouts.iter().enumerate() {
            let q = &self.train[idx[k / n]].question;
            let reward = re_search_reward(&r.text, &q.golden_answers, eos_str);
            if reward.score == 0.0 {
                format_fail += 1;
            }
            rewards.push(reward.score as f32);
        }
        let groups: Vec<usize> = (0..rollouts.len()).map(|k| k / n).collect();
        let adv = crate::advantage::group_advantages(&rewards, &groups);
        let mut samples: Vec<Sample> = rollouts
            .iter()
            .zip(&adv)
            .map(|(r, &a)| Sample {
                prompt_ids: r.prompt_ids.clone(),
                response_ids: r.response_ids.clone(),
                loss_mask: r.loss_mask.clone(),
                advantage: a,
                old_logprobs: vec![],
                ref_logprobs: vec![],
            })
            .collect();
        let t1 = Instant::now();
        self.learner.fill_logprobs(&mut samples)?;
        let t_logprobs = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let trainable = samples.iter().any(|s| s.trained_tokens() > 0);
        let update = if trainable {
            Some(self.learner.update(&samples)?)
        } else {
            None
        };
        let t_update = t2.elapsed().as_secs_f64();
        if update.is_none_or(|u| u.skipped) {
            self.state.skipped_steps += 1;
        }
        self.state.step += 1;
        let generated: usize = samples.iter().map(|s| s.trained_tokens()).sum();
        let m = summarize(&rewards, format_fail, &rollouts);
        let metrics = StepMetrics {
            step: self.state.step,
            kind: "train".into(),
            epoch,
            update,
            tokens_per_s: (2 * generated) as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            t_rollout: t_roll.as_secs_f64() - t_retrieval,
            t_retrieval,
            t_logprobs,
            t_update,
            skipped_steps: self.state.skipped_steps,
            ..m
        };
        self.append_metrics(&metrics)?;
        Ok(metrics)
    }

    /// Greedy rollouts on the validation questions: mean reward, EM, searches, length.
    pub fn validate(&mut self, retriever: &dyn Retriever) -> Result<Option<StepMetrics>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let (eos_ids, eos_str) = self.eos();
        let engine = self.engine();
        let timed = Timed {
            inner: retriever,
            spent: Mutex::new(Duration::ZERO),
        };
        let mut rewards = Vec::new();
        let mut em = 0.0;
        let mut format_fail = 0;
        let mut all = Vec::new();
        for chunk in self.val.chunks(16) {
            let rc = RolloutConfig {
                response_budget: self.config.rollout.response_budget,
                top_k: self.config.retriever.top_k,
                max_turns: self.config.rollout.max_turns,
                sampling: SamplingParams::greedy(),
                eos_ids: eos_ids.clone(),
                ..Default::default()
            };
            let rollouts =
                RolloutBatch::new(&engine, chunk.iter().map(|p| p.ids.clone()).collect(), rc)?.run(&timed)?;
            for (p, r) in chunk.iter().zip(&rollouts) {
                let reward = re_search_reward(&r.text, &p.question.golden_answers, eos_str);
                if reward.score == 0.0 {
                    format_fail += 1;
                }
                rewards.push(reward.score as f32);
                em += research_agent::metrics::exact_match(
                    &research_eval::predicted_answer(&r.text),
                    &p.question.golden_answers,
                );
            }
            all.extend(rollouts);
        }
        let t_retrieval = timed.spent.lock().expect("timer lock").as_secs_f64();
        let m = StepMetrics {
            step: self.state.step,
            kind: "val".into(),
            em: em / self.val.len() as f64,
            t_rollout: t0.elapsed().as_secs_f64() - t_retrieval,
            t_retrieval,
            skipped_steps: self.state.skipped_steps,
            ..summarize(&rewards, format_fail, &all)
        };
        self.append_metrics(&m)?;
        Ok(Some(m))
    }

    fn append_metrics(&mut self, m: &StepMetrics) -> Result<()> {
        let path = self.config.out.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        writeln!(f, "{}", serde_json::to_string(m).unwrap_or_default()).map_err(io_err(&path))?;
        self.state.metrics_lines += 1;
        Ok(())
    }

    /// Writes a checkpoint now.
    pub fn save(&self) -> Result<PathBuf> {
        save_checkpoint(
            &self.config.out,
            &self.learner,
            &self.model_config,
            &self.tokenizer_dir,
            &self.state,
        )
    }

    /// Runs to the end (or until `stop` is set, which saves a checkpoint and returns): validation
    /// before training and every `val_every` steps (with the chart), checkpoints every
    /// `save_every` steps and at the end.
    pub fn run(&mut self, retriever: &dyn Retriever, stop: &AtomicBool, progress: bool) -> Result<RunSummary> {
        let total = self.total_steps();
        let bar = if progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} step {pos}/{len}  ETA {eta}  {msg}").expect("template"),
        );
        bar.set_position(self.state.step);
        let val_every = self.config.schedule.val_every;
        if self.state.step == 0 && val_every > 0 {
            bar.set_message("validating");
            if let Some(v) = self.validate(retriever)? {
                bar.println(format!(
                    "step 0 validation: reward {:.3}, EM {:.3}",
                    v.reward_mean, v.em
                ));
            }
            self.chart()?;
        }
        let mut interrupted = false;
        while self.state.step < total {
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            bar.set_message("rollouts");
            let m = self.train_step(retriever)?;
            bar.set_position(self.state.step);
            bar.set_message(format!(
                "reward {:.3}  len {:.0}  searches {:.2}  kl {:.4}",
                m.reward_mean,
                m.response_len,
                m.searches,
                m.update.map_or(0.0, |u| u.kl)
            ));
            let s = self.state.step;
            if val_every > 0 && s.is_multiple_of(val_every) {
                if let Some(v) = self.validate(retriever)? {
                    bar.println(format!(
                        "step {s} validation: reward {:.3}, EM {:.3}",
                        v.reward_mean, v.em
                    ));
                }
                self.chart()?;
            }
            let every = self.config.schedule.save_every;
            if (every > 0 && s.is_multiple_of(every)) || s == total {
                self.save()?;
            }
        }
        if interrupted {
            bar.println("interrupted: saving a checkpoint");
            self.save()?;
        }
        bar.finish_and_clear();
        self.chart()?;
        Ok(RunSummary {
            steps: self.state.step,
            interrupted,
            out: self.config.out.clone(),
            metrics: self.config.out.join("metrics.jsonl"),
            chart: self.config.out.join("metrics.png"),
            checkpoint: latest_checkpoint(&self.config.out)?,
        })
    }

    /// Renders `metrics.png` from `metrics.jsonl`.
    pub fn chart(&self) -> Result<()> {
        crate::chart::render_metrics(
            &self.config.out.join("metrics.jsonl"),
            &self.config.out.join("metrics.png"),
        )
    }
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Steps completed.
    pub steps: u64,
    /// Whether it stopped on a signal.
    pub interrupted: bool,
    /// Output directory.
    pub out: PathBuf,
    /// `metrics.jsonl`.
    pub metrics: PathBuf,
    /// `metrics.png`.
    pub chart: PathBuf,
    /// The latest checkpoint.
    pub checkpoint: Option<PathBuf>,
}

fn summarize(rewards: &[f32], format_fail: usize, rollouts: &[research_agent::Rollout]) -> StepMetrics {
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / n;
    let var = rewards.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / n;
    StepMetrics {
        reward_mean: mean,
        reward_std: var.sqrt(),
        format_fail: format_fail as f64 / n,
        response_len: rollouts
            .iter()
            .map(|r| r.loss_mask.iter().filter(|&&m| m != 0).count() as f64)
            .sum::<f64>()
            / n,
        searches: rollouts.iter().map(|r| r.searches.len() as f64).sum::<f64>() / n,
        ..StepMetrics::default()
    }
}

/// The reference model on the CPU (f32), from a checkpoint directory.
#[cfg(feature = "cpu")]
fn reference_on_cpu<B: burn::tensor::backend::Backend>(dir: &ModelDir) -> Result<(Qwen2Config, Reference<B>)> {
    let (mc, m) = load_model::<CpuReferenceBackend>(dir, FloatType::F32, &Default::default())?;
    Ok((mc, Reference::Cpu(Box::new(m))))
}

#[cfg(not(feature = "cpu"))]
fn reference_on_cpu<B: burn::tensor::backend::Backend>(_dir: &ModelDir) -> Result<(Qwen2Config, Reference<B>)> {
    Err(GrpoError::Input(
        "model.reference_device = \"cpu\" needs a build with the `cpu` feature".into(),
    ))
}

fn inner_device<B: AutodiffBackend>(device: &B::Device) -> burn::tensor::Device<B::InnerBackend> {
    let probe = burn::tensor::Tensor::<B, 1>::zeros([1], device);
    probe.inner().device()
}

/// Keeps the first `lines` lines of `metrics.jsonl` (those up to the checkpoint resumed from); the
/// rest, from steps that will be redone, move to `metrics.discarded.jsonl`.
fn truncate_metrics(path: &Path, lines: usize) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines {
        return Ok(());
    }
    let discarded = path.with_file_name("metrics.discarded.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&discarded)
        .map_err(io_err(&discarded))?;
    for l in &all[lines..] {
        writeln!(f, "{l}").map_err(io_err(&discarded))?;
    }
    let keep: String = all[..lines].iter().map(|l| format!("{l}\n")).collect();
    let tmp = path.with_extension("jsonl.partial");
    std::fs::write(&tmp, keep).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}
