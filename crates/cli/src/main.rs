//! `research`: the command-line program of research-rs.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use research::burn::tensor::backend::Backend;
use research::prelude::*;

mod bench_retriever;
mod bench_rollout;
mod bench_train;
mod data;
mod judge;
mod loops;
mod retrieval;
mod retriever;
mod serve;
mod train;

#[derive(Parser)]
#[command(name = "research", version, about = "research-rs: Qwen2.5 in burn, generation and scoring (ReSearch RL stack)", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation for one or more prompts (one batch).
    Generate(GenerateArgs),
    /// Teacher-forced log-probs of a token sequence under the model.
    Score(ScoreArgs),
    /// Tokenize text with a tokenizer.json (no special tokens added), optionally through the chat template.
    Tokenize(TokenizeArgs),
    /// Evaluate on a benchmark: greedy ReSearch rollouts with search, per-item traces and an EM/F1/acc summary.
    Eval(EvalArgs),
    /// Ask one question: run the search loop once and show the trace (searches and results set apart).
    Ask(AskArgs),
    /// Score a response with the ReSearch reward (or Search-R1 exact match) and say why.
    Reward(RewardArgs),
    /// Training data: ReSearch's parquet from FlashRAG jsonl.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Benchmarks on random weights of a model shape.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Build (or resume) a dense HNSW index over a FlashRAG corpus with a BERT encoder.
    Index(retrieval::IndexArgs),
    /// Search an index: top-k passages per query (HNSW, or --exact brute force).
    Search(retrieval::SearchArgs),
    /// Serve an index over HTTP: ReSearch's /health, /search, /batch_search and Search-R1's /retrieve.
    Serve(serve::ServeArgs),
    /// Train with GRPO and search (the ReSearch recipe): rollouts, rewards, updates, checkpoints.
    Train(train::TrainArgs),
}

#[derive(Args, Clone)]
struct AgentArgs {
    #[command(flatten)]
    retriever: retriever::RetrieverArgs,
    /// Use the base-model prompt (re_search_template, EOS <|endoftext|>) instead of the instruct one.
    #[arg(long)]
    base: bool,
    /// Response budget in tokens, inserted results included.
    #[arg(long, default_value_t = 8192)]
    max_new_tokens: usize,
    /// Passages per search (default 5; 3 with --loop search-r1).
    #[arg(long)]
    top_k: Option<usize>,
    /// Most searches per question (default: no limit, as the reference; with --loop search-r1:
    /// turns before the final answer turn, default 4).
    #[arg(long)]
    max_turns: Option<usize>,
    #[command(flatten)]
    loop_args: loops::LoopArgs,
}

#[derive(Args, Clone)]
struct EvalArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    agent: AgentArgs,
    /// bamboogle, hotpotqa, 2wikimultihopqa or musique.
    #[arg(long)]
    dataset: String,
    /// Split (default: test for bamboogle, dev for the others).
    #[arg(long)]
    split: Option<String>,
    /// Folder with <dataset>/<split>.jsonl[.zst].
    #[arg(long, default_value = "data/eval")]
    data_dir: PathBuf,
    /// Evaluate only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Output folder for items.jsonl and summary.json (an existing items.jsonl is resumed).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Questions per batch.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[command(flatten)]
    judge: judge::JudgeArgs,
}

#[derive(Args, Clone)]
struct AskArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    agent: AgentArgs,
    /// The question.
    question: String,
}

#[derive(Args)]
struct RewardArgs {
    /// File holding the decoded response (special tokens kept, results included); `-` reads stdin.
    #[arg(long)]
    response: PathBuf,
    /// Golden answers as a JSON list, e.g. '["Paris", "Paris, France"]'.
    #[arg(long)]
    golden: String,
    /// EOS string the response must end with (repeatable); default: <|im_end|> and <|endoftext|>
    /// (instruct models; use --eos '<|endoftext|>' for base models).
    #[arg(long)]
    eos: Vec<String>,
    /// `research` (the ReSearch rule reward) or `em` (Search-R1 exact match).
    #[arg(long, default_value = "research")]
    kind: String,
    /// Print {"score": ..., "reason": ...}.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Greedy generation throughput (new tokens/s, prefill included) for several batch sizes.
    Generate(BenchGenerateArgs),
    /// ReSearch rollout throughput: a dataset's questions as one batch through the search loop
    /// (random weights of a shape, scripted searches), time split between generation and retrieval.
    Rollout(Box<bench_rollout::BenchRolloutArgs>),
    /// Retrieval encoder throughput (passages/s) on random weights of a BERT shape (E5-base).
    Encoder(bench_retriever::EncoderArgs),
    /// HNSW build and search (QPS, recall@k, memory) over raw f32 vector files, per quantization.
    Search(bench_retriever::SearchArgs),
    /// wiki-18-scale HNSW (e.g. 21M × 768): synthetic clustered vectors generated in process and
    /// inserted in budgeted, resumable calls, then opened as a view (open time, RSS, recall@5/10
    /// against exact, QPS, latency).
    SearchScale(Box<bench_retriever::SearchScaleArgs>),
    /// GRPO training-step throughput (forward, backward, AdamW; tokens/s) on random weights of a
    /// Qwen2 shape, one micro-batch per step.
    Train(bench_train::BenchTrainArgs),
}

#[derive(Args)]
struct BenchGenerateArgs {
    /// A Qwen2 config.json giving the shape (e.g. data/qwen2.5_configs/Qwen2.5-7B-Instruct/config.json).
    #[arg(long)]
    config: PathBuf,
    /// Backend: cpu, cuda, tch-cpu or tch-cuda.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype.
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 512)]
    prompt_len: usize,
    /// New tokens per sequence (no EOS: exactly this many).
    #[arg(long, default_value_t = 256)]
    new_tokens: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32,128")]
    batch: Vec<usize>,
    /// Tokens generated in the untimed warm-up of each batch size.
    #[arg(long, default_value_t = 8)]
    warmup_tokens: usize,
}

#[derive(Args, Clone)]
struct RuntimeArgs {
    /// Checkpoint directory (config.json, *.safetensors, tokenizer.json) or a hub id in the local HF cache.
    #[arg(long)]
    model: String,
    /// Backend: cpu, cuda, tch-cpu or tch-cuda (those compiled into this binary).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Compute dtype: f32, bf16 or f16 (the cpu backend computes in f32 only).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

#[derive(Args, Clone)]
struct GenerateArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Prompt text; repeat for a batch.
    #[arg(long, conflicts_with = "ids")]
    prompt: Vec<String>,
    /// Prompt as comma-separated token ids, e.g. 1,2,3; repeat for a batch.
    #[arg(long)]
    ids: Vec<String>,
    /// Render the prompt through the Qwen2.5 chat template (user message + generation prompt).
    #[arg(long)]
    chat: bool,
    /// System message for --chat (default: the template's own).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate per prompt.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the generated text contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// EOS ids to stop on (comma-separated); default: config.json and generation_config.json.
    #[arg(long, value_delimiter = ',', conflicts_with = "ignore_eos")]
    eos: Vec<u32>,
    /// Never stop on EOS (generate exactly --max-new-tokens unless a stop string matches).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object per prompt: {"ids", "text", "finish_reason", ...}.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct ScoreArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Token ids, comma-separated; repeat to score several sequences (one output each).
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    ids: Vec<String>,
    /// Text to tokenize (no special tokens added) and score.
    #[arg(long)]
    text: Option<String>,
    /// Print {"logprobs": [...], "mean_nll": ..., "perplexity": ...}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TokenizeArgs {
    /// tokenizer.json, or a directory holding one.
    #[arg(long)]
    tokenizer: PathBuf,
    /// The text.
    #[arg(long)]
    text: String,
    /// Render the text as a user message through the Qwen2.5 chat template first.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Print {"ids": [...]} (and "text" with --chat).
    #[arg(long)]
    json: bool,
}

fn chat_text(system: Option<&str>, user: &str) -> String {
    let mut msgs = vec![];
    if let Some(s) = system {
        msgs.push(ChatMessage::new("system", s));
    }
    msgs.push(ChatMessage::new("user", user));
    render_chat(&msgs, true)
}

fn runtime(args: &RuntimeArgs) -> Result<(BackendKind, FloatType, ModelDir)> {
    let kind: BackendKind = args.backend.parse()?;
    let dtype = parse_dtype(&args.dtype)?;
    let dir = ModelDir::resolve(&args.model)?;
    Ok((kind, dtype, dir))
}

struct GenerateJob(GenerateArgs, FloatType, ModelDir);

impl WithBackend for GenerateJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let GenerateJob(a, dtype, dir) = self;
        let engine = Engine::<B>::load(&dir, dtype, device)?;
        let prompts: Vec<Vec<u32>> = if !a.prompt.is_empty() {
            let tok = engine.tokenizer()?;
            a.prompt
                .iter()
                .map(|p| {
                    let text = if a.chat {
                        chat_text(a.system.as_deref(), p)
                    } else {
                        p.clone()
                    };
                    tok.encode(&text).map_err(anyhow::Error::from)
                })
                .collect::<Result<_>>()?
        } else if !a.ids.is_empty() {
            if a.chat {
                bail!("--chat renders text; it cannot be combined with --ids");
            }
            a.ids.iter().map(|s| parse_ids(s)).collect::<Result<_>>()?
        } else {
            bail!("give a prompt with --prompt TEXT or --ids 1,2,3");
        };
        let options = GenerateOptions {
            max_new_tokens: a.max_new_tokens,
            sampling: SamplingParams {
                temperature: a.temperature,
                top_p: a.top_p,
                top_k: a.top_k,
                seed: a.seed,
            },
            stop_strings: a.stop.clone(),
            eos_ids: if a.eos.is_empty() {
                engine.default_eos()
            } else {
                a.eos.clone()
            },
        };
        let outs = engine.generate(prompts, options)?;
        for out in outs {
            if a.json {
                let v = serde_json::json!({
                    "ids": out.ids,
                    "text": out.text,
                    "finish_reason": out.finish_reason,
                    "stop": out.stop_string,
                    "logprobs": out.logprobs,
                });
                println!("{v}");
            } else {
                match &out.text {
                    Some(t) => println!("{t}"),
                    None => println!("{:?}", out.ids),
                }
                tracing::info!(finish_reason = ?out.finish_reason, tokens = out.ids.len(), "done");
            }
        }
        Ok(())
    }
}

struct ScoreJob(ScoreArgs, FloatType, ModelDir);

impl WithBackend for ScoreJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let ScoreJob(a, dtype, dir) = self;
        let engine = Engine::<B>::load(&dir, dtype, device)?;
        let seqs: Vec<Vec<u32>> = match &a.text {
            Some(t) => vec![engine.tokenizer()?.encode(t)?],
            None => a.ids.iter().map(|s| parse_ids(s)).collect::<Result<_>>()?,
        };
        for ids in seqs {
            let lp = engine.score(&ids)?;
            let mean_nll = -lp.iter().map(|&x| x as f64).sum::<f64>() / lp.len() as f64;
            if a.json {
                let v =
                    serde_json::json!({"ids": ids, "logprobs": lp, "mean_nll": mean_nll, "perplexity": mean_nll.exp()});
                println!("{v}");
            } else {
                for (i, l) in lp.iter().enumerate() {
                    println!("{:>6} {:>8} {:>12.6}", i + 1, ids[i + 1], l);
                }
                println!("mean NLL {mean_nll:.6}  perplexity {:.4}", mean_nll.exp());
            }
        }
        Ok(())
    }
}

fn rollout_config(a: &AgentArgs) -> research::agent::RolloutConfig {
    research::agent::RolloutConfig {
        response_budget: a.max_new_tokens,
        top_k: a.top_k.unwrap_or(5),
        max_turns: a.max_turns,
        sampling: SamplingParams::greedy(),
        eos_ids: if a.base { vec![151643] } else { vec![151645, 151643] },
        ..Default::default()
    }
}

struct EvalJob(EvalArgs, FloatType, ModelDir);

impl WithBackend for EvalJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        use research::eval::{dataset_file, evaluate_with_judge, read_questions, EvalConfig, PromptStyle};
        let EvalJob(a, dtype, dir) = self;
        let file = dataset_file(&a.data_dir, &a.dataset, a.split.as_deref())?;
        let mut questions = read_questions(&file)?;
        if let Some(n) = a.limit {
            questions.truncate(n);
        }
        let judge = judge::judge(&a.judge)?;
        let retriever = a.agent.retriever.open()?;
        let engine = Engine::<B>::load(&dir, dtype, device)?;
        let lp = &a.agent.loop_args;
        let config = EvalConfig {
            style: if a.agent.base {
                PromptStyle::Base
            } else {
                PromptStyle::Instruct
            },
            batch_size: a.batch_size,
            response_budget: a.agent.max_new_tokens,
            top_k: a.agent.top_k.unwrap_or(lp.default_top_k()),
            max_turns: a.agent.max_turns,
            loop_kind: lp.kind(),
            turn_tokens: lp.turn_tokens,
            max_obs_tokens: lp.max_obs_tokens,
            max_context: lp.max_context,
        };
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/eval-{}", a.dataset)));
        let summary = evaluate_with_judge(&engine, retriever.as_ref(), &questions, &config, &out, judge.as_ref())?;
        println!("{}", serde_json::to_string_pretty(&summary)?);
        Ok(())
    }
}

struct AskJob(AskArgs, FloatType, ModelDir);

impl WithBackend for AskJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        use research::agent::{re_search_instruct_prompt, re_search_template, RolloutBatch};
        let AskJob(a, dtype, dir) = self;
        let retriever = a.agent.retriever.open()?;
        let engine = Engine::<B>::load(&dir, dtype, device)?;
        let lp = &a.agent.loop_args;
        if lp.kind == loops::LoopChoice::SearchR1 {
            let top_k = a.agent.top_k.unwrap_or(lp.default_top_k());
            return loops::ask_search_r1(
                &engine,
                &a.question,
                a.agent.base,
                lp,
                top_k,
                a.agent.max_turns,
                retriever.as_ref(),
            );
        }
        let prompt = if a.agent.base {
            re_search_template(&a.question)
        } else {
            re_search_instruct_prompt(&a.question)
        };
        let ids = engine.tokenizer()?.encode(&prompt)?;
        let rollout = RolloutBatch::new(&engine, vec![ids], rollout_config(&a.agent))?
            .run(retriever.as_ref())?
            .remove(0);
        // Show the model's text, with each inserted result block set apart.
        let mut rest = rollout.text.as_str();
        while let Some(start) = rest.find(" <result>\n") {
            print!("{}", &rest[..start]);
            let end = rest[start..]
                .find("\n</result>")
                .map(|e| start + e + "\n</result>".len())
                .unwrap_or(rest.len());
            println!("\n  ┌── retrieved ──");
            for line in rest[start + " <result>\n".len()..end.saturating_sub("\n</result>".len())].lines() {
                println!("  │ {line}");
            }
            println!("  └───────────────");
            rest = &rest[end..];
        }
        println!("{rest}");
        println!(
            "\n[{} searches, {} tokens, finished: {:?}; answer: {:?}]",
            rollout.searches.len(),
            rollout.response_ids.len(),
            rollout.finish,
            research::eval::predicted_answer(&rollout.text)
        );
        Ok(())
    }
}

struct BenchGenerateJob(BenchGenerateArgs, FloatType, Qwen2Config);

impl WithBackend for BenchGenerateJob {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let BenchGenerateJob(a, dtype, config) = self;
        let engine = research::engine::bench::random_engine::<B>(config, dtype, device);
        for &batch in &a.batch {
            let r = research::engine::bench::generate_throughput(
                &engine,
                batch,
                a.prompt_len,
                a.new_tokens,
                a.warmup_tokens,
            )?;
            let mut v = serde_json::to_value(&r)?;
            v["backend"] = a.backend.clone().into();
            v["dtype"] = a.dtype.clone().into();
            println!("{v}");
        }
        Ok(())
    }
}

fn bench(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Generate(a) => {
            let kind: BackendKind = a.backend.parse()?;
            let dtype = parse_dtype(&a.dtype)?;
            let config = Qwen2Config::from_file(&a.config)?;
            dispatch(kind, dtype, BenchGenerateJob(a, dtype, config))?
        }
        BenchCommand::Rollout(a) => bench_rollout::run(*a),
        BenchCommand::Encoder(a) => bench_retriever::encoder(a),
        BenchCommand::Search(a) => bench_retriever::search(a),
        BenchCommand::SearchScale(a) => bench_retriever::search_scale(*a),
        BenchCommand::Train(a) => bench_train::run(a),
    }
}

/// Parses `1,2,3` into ids, naming the bad item.
fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--ids: `{x}` is not a token id (expected e.g. 1,2,3)"))
        })
        .collect()
}

fn parse_dtype(s: &str) -> Result<FloatType> {
    FloatType::parse(s).map_err(|_| anyhow::anyhow!("unknown dtype `{s}` (expected f32, bf16 or f16)"))
}

fn reward(a: RewardArgs) -> Result<()> {
    use research::agent::{re_search_reward, search_r1_reward, INSTRUCT_EOS};
    let text = if a.response.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&a.response).map_err(|e| anyhow::anyhow!("{}: {e}", a.response.display()))?
    };
    let golden: Vec<String> = serde_json::from_str(&a.golden)
        .map_err(|e| anyhow::anyhow!("--golden: expected a JSON list of strings like '[\"Paris\"]' ({e})"))?;
    let r = match a.kind.as_str() {
        "research" => {
            let eos: Vec<&str> = if a.eos.is_empty() {
                INSTRUCT_EOS.to_vec()
            } else {
                a.eos.iter().map(String::as_str).collect()
            };
            re_search_reward(&text, &golden, &eos)
        }
        "em" => search_r1_reward(&text, &golden),
        other => bail!("--kind: unknown reward `{other}` (expected research or em)"),
    };
    if a.json {
        println!("{}", serde_json::json!({"score": r.score, "reason": r.reason}));
    } else {
        println!("score {:.4}  ({})", r.score, r.reason);
    }
    Ok(())
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = Qwen2Tokenizer::from_path(&a.tokenizer)?;
    let text = if a.chat {
        chat_text(a.system.as_deref(), &a.text)
    } else {
        a.text.clone()
    };
    let ids = tok.encode(&text)?;
    if a.json {
        if a.chat {
            println!("{}", serde_json::json!({"text": text, "ids": ids}));
        } else {
            println!("{}", serde_json::json!({"ids": ids}));
        }
    } else {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RESEARCH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => runtime(&a.runtime).and_then(|(k, d, dir)| {
            let job = GenerateJob(a, d, dir);
            dispatch(k, d, job)?
        }),
        Command::Score(a) => runtime(&a.runtime).and_then(|(k, d, dir)| dispatch(k, d, ScoreJob(a, d, dir))?),
        Command::Tokenize(a) => tokenize(a),
        Command::Bench(c) => bench(c),
        Command::Reward(a) => reward(a),
        Command::Data(c) => data::run(c),
        Command::Eval(a) => runtime(&a.runtime).and_then(|(k, d, dir)| dispatch(k, d, EvalJob(a, d, dir))?),
        Command::Ask(a) => runtime(&a.runtime).and_then(|(k, d, dir)| dispatch(k, d, AskJob(a, d, dir))?),
        Command::Index(a) => retrieval::index(a),
        Command::Search(a) => retrieval::search(a),
        Command::Serve(a) => serve::serve(a),
        Command::Train(a) => train::train(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line.
fn chain(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}
