//! `research bench rollout`: ReSearch rollout throughput on random weights of a model shape.
//!
//! A dataset's questions (× `--samples-per-prompt`) go through the ReSearch loop
//! (`research_agent::RolloutBatch`) as one batch against a real retriever, and the run is timed
//! as a whole and per retriever call. Random weights never write `<search>`, so each response
//! starts with `--forced-searches` scripted turns `<search> QUESTION </search>` (forced decoding:
//! one decode step per token, like sampled ones); the retriever answers them and the results are
//! inserted as in a real rollout, then the model generates freely up to the budget.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use research::agent::{
    re_search_instruct_prompt, re_search_template, Passage, Retriever, RolloutBatch, RolloutConfig, RolloutFinish,
};
use research::burn::tensor::backend::Backend;
use research::prelude::*;

use crate::retriever::RetrieverArgs;

/// Arguments of `research bench rollout`.
#[derive(Args)]
#[command(
    after_help = "Example (GPU machine, Qwen2.5-7B shape; the index from `cargo xtask rollout-index`, whose\n\
encoder and corpus paths moved with the repository, hence --index-encoder and --index-corpus):\n  \
research bench rollout --config data/qwen2.5_configs/Qwen2.5-7B-Instruct/config.json \\\n    \
--index stage/rollout-index/index --index-encoder stage/rollout-index/encoder \\\n    \
--index-corpus data/corpus/flashrag_sample_data_1000.jsonl.zst --backend tch-cuda --dtype bf16\n\n\
Prints one JSON line: backend, dtype, questions, sequences, prompt/generated/inserted tokens, searches,\n\
retriever calls, total_s, generation_s (everything but retriever calls: prefill, decode, result\n\
tokenization and insertion), retrieval_s (inside retriever calls, query encoding included), their shares,\n\
sequences_per_s and generated_tokens_per_s (sampled and forced tokens, inserted ones excluded)."
)]
pub struct BenchRolloutArgs {
    /// A Qwen2 config.json giving the shape (random weights), e.g.
    /// data/qwen2.5_configs/Qwen2.5-7B-Instruct/config.json.
    #[arg(long)]
    config: PathBuf,
    /// tokenizer.json, or a folder holding one (.zst accepted).
    #[arg(long, default_value = "data/qwen2.5_tokenizer")]
    tokenizer: PathBuf,
    #[command(flatten)]
    retriever: RetrieverArgs,
    /// bamboogle, hotpotqa, 2wikimultihopqa or musique.
    #[arg(long, default_value = "bamboogle")]
    dataset: String,
    /// Split (default: test for bamboogle, dev for the others).
    #[arg(long)]
    split: Option<String>,
    /// Folder with <dataset>/<split>.jsonl[.zst].
    #[arg(long, default_value = "data/eval")]
    data_dir: PathBuf,
    /// Only the first N questions (default: all; Bamboogle has 125).
    #[arg(long)]
    limit: Option<usize>,
    /// Backend: cpu, cuda, tch-cpu or tch-cuda (those compiled into this binary).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype: f32, bf16 or f16 (the cpu backend computes in f32 only).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Response budget per sequence in tokens, inserted results included (random weights seldom
    /// emit EOS, so most sequences use all of it; two searches of 5 passages insert ~1,500).
    #[arg(long, default_value_t = 2048)]
    max_response_tokens: usize,
    /// Rollouts per question (GRPO's n); sequences = questions × n, all in one batch.
    #[arg(long, default_value_t = 1)]
    samples_per_prompt: usize,
    /// Searches scripted at the start of each response (`<search> QUESTION </search>`, forced).
    #[arg(long, default_value_t = 2)]
    forced_searches: usize,
    /// Passages per search.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Sampling temperature after the scripted turns; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Random seed (weights and sampling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the base-model prompt (re_search_template) instead of the instruct one.
    #[arg(long)]
    base: bool,
    /// Tokens generated in an untimed warm-up batch of the same prompts (0: none); one untimed
    /// retriever call warms the retriever too.
    #[arg(long, default_value_t = 8)]
    warmup_tokens: usize,
}

/// Times the retriever calls going through it.
struct Timed<'a> {
    inner: &'a dyn Retriever,
    spent: Cell<Duration>,
    calls: Cell<usize>,
}

impl Retriever for Timed<'_> {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String> {
        let t = Instant::now();
        let r = self.inner.search(queries, k);
        self.spent.set(self.spent.get() + t.elapsed());
        self.calls.set(self.calls.get() + 1);
        r
    }
}

/// The measured run, printed as one JSON line.
#[derive(Debug, serde::Serialize)]
struct RolloutBench {
    backend: String,
    dtype: String,
    config: String,
    dataset: String,
    questions: usize,
    samples_per_prompt: usize,
    sequences: usize,
    max_response_tokens: usize,
    forced_searches: usize,
    top_k: usize,
    prompt_tokens: usize,
    generated_tokens: usize,
    inserted_tokens: usize,
    searches: usize,
    retriever_calls: usize,
    finish_eos: usize,
    finish_length: usize,
    total_s: f64,
    generation_s: f64,
    retrieval_s: f64,
    generation_share: f64,
    retrieval_share: f64,
    sequences_per_s: f64,
    generated_tokens_per_s: f64,
}

struct Job {
    a: BenchRolloutArgs,
    config: Qwen2Config,
    dtype: FloatType,
    tokenizer: Qwen2Tokenizer,
    questions: Vec<String>,
    retriever: Box<dyn Retriever>,
}

impl WithBackend for Job {
    type Output = Result<RolloutBench>;
    fn run<B: Backend>(self, device: B::Device) -> Result<RolloutBench> {
        let Job {
            a,
            config,
            dtype,
            tokenizer,
            questions,
            retriever,
        } = self;
        let model = Qwen2ForCausalLM::<B>::random(&config, dtype, a.seed, &device);
        let engine = Engine::<B>::new(config, model, Some(Arc::new(tokenizer)), dtype, device);
        let tok = engine.tokenizer()?;
        let n = a.samples_per_prompt;
        let mut prompts = Vec::with_capacity(questions.len() * n);
        let mut scripts = Vec::with_capacity(questions.len() * n);
        for q in &questions {
            let text = if a.base {
                re_search_template(q)
            } else {
                re_search_instruct_prompt(q)
            };
            let ids = tok.encode(&text)?;
            // Each scripted turn is tokenized on its own so that it ends with `</search>`'s tokens.
            let turn = tok.encode(&format!("<search> {q} </search>"))?;
            let script: Vec<u32> = (0..a.forced_searches).flat_map(|_| turn.iter().copied()).collect();
            for _ in 0..n {
                prompts.push(ids.clone());
                scripts.push(script.clone());
            }
        }
        let prompt_tokens = prompts.iter().map(Vec::len).sum();

        if a.warmup_tokens > 0 {
            let options = GenerateOptions {
                max_new_tokens: a.warmup_tokens,
                eos_ids: vec![],
                ..Default::default()
            };
            Batch::new(&engine, prompts.clone(), options)?.run()?;
            retriever
                .search(&questions[..1], a.top_k)
                .map_err(|e| anyhow::anyhow!("retriever warm-up: {e}"))?;
        }

        let rollout_config = RolloutConfig {
            response_budget: a.max_response_tokens,
            top_k: a.top_k,
            max_turns: None,
            sampling: SamplingParams {
                temperature: a.temperature,
                top_p: 1.0,
                top_k: 0,
                seed: a.seed,
            },
            eos_ids: if a.base { vec![151643] } else { vec![151645, 151643] },
            ..Default::default()
        };
        let timed = Timed {
            inner: retriever.as_ref(),
            spent: Cell::new(Duration::ZERO),
            calls: Cell::new(0),
        };
        let start = Instant::now();
        let mut batch = RolloutBatch::new(&engine, prompts, rollout_config)?;
        for (row, script) in scripts.iter().enumerate() {
            batch.force(row, script)?;
        }
        let rollouts = batch.run(&timed)?;
        let total_s = start.elapsed().as_secs_f64();
        let retrieval_s = timed.spent.get().as_secs_f64();
        let generation_s = (total_s - retrieval_s).max(0.0);
        let generated_tokens: usize = rollouts
            .iter()
            .map(|r| r.loss_mask.iter().filter(|&&m| m == 1).count())
            .sum();
        let inserted_tokens: usize = rollouts
            .iter()
            .map(|r| r.loss_mask.iter().filter(|&&m| m == 0).count())
            .sum();
        let count = |f: RolloutFinish| rollouts.iter().filter(|r| r.finish == f).count();
        let total = total_s.max(1e-9);
        Ok(RolloutBench {
            backend: a.backend.clone(),
            dtype: a.dtype.clone(),
            config: a.config.display().to_string(),
            dataset: a.dataset.clone(),
            questions: questions.len(),
            samples_per_prompt: n,
            sequences: rollouts.len(),
            max_response_tokens: a.max_response_tokens,
            forced_searches: a.forced_searches,
            top_k: a.top_k,
            prompt_tokens,
            generated_tokens,
            inserted_tokens,
            searches: rollouts.iter().map(|r| r.searches.len()).sum(),
            retriever_calls: timed.calls.get(),
            finish_eos: count(RolloutFinish::Eos),
            finish_length: count(RolloutFinish::Length),
            total_s,
            generation_s,
            retrieval_s,
            generation_share: generation_s / total,
            retrieval_share: retrieval_s / total,
            sequences_per_s: rollouts.len() as f64 / total,
            generated_tokens_per_s: generated_tokens as f64 / total,
        })
    }
}

/// Runs `research bench rollout`.
pub fn run(a: BenchRolloutArgs) -> Result<()> {
    use research::eval::{dataset_file, read_questions};
    if a.samples_per_prompt == 0 {
        bail!("--samples-per-prompt must be at least 1");
    }
    if a.max_response_tokens == 0 {
        bail!("--max-response-tokens must be at least 1");
    }
    let kind: BackendKind = a.backend.parse()?;
    let dtype = FloatType::parse(&a.dtype)
        .map_err(|_| anyhow::anyhow!("unknown dtype `{}` (expected f32, bf16 or f16)", a.dtype))?;
    let config = Qwen2Config::from_file(&a.config)?;
    let tokenizer = Qwen2Tokenizer::from_path(&a.tokenizer)?;
    let file = dataset_file(&a.data_dir, &a.dataset, a.split.as_deref())?;
    let mut questions: Vec<String> = read_questions(&file)?.into_iter().map(|q| q.question).collect();
    if let Some(n) = a.limit {
        questions.truncate(n);
    }
    if questions.is_empty() {
        bail!("{}: no questions to run", file.display());
    }
    let retriever = a.retriever.open()?;
    let result = dispatch(
        kind,
        dtype,
        Job {
            a,
            config,
            dtype,
            tokenizer,
            questions,
            retriever,
        },
    )??;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
