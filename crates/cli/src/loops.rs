//! `--loop` and the Search-R1 options of `research eval` / `research ask`.

use anyhow::Result;
use clap::{Args, ValueEnum};
use research::agent::{
    search_r1_chat_prompt, search_r1_prompt, Retriever, SearchR1Batch, SearchR1Config, INVALID_ACTION,
};
use research::burn::tensor::backend::Backend;
use research::eval::LoopKind;
use research::prelude::*;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoopChoice {
    /// ReSearch: stop at </search>, insert <result> blocks, \boxed{} answers, the ReSearch reward.
    Research,
    /// Search-R1: 500-token turns cut at </search> or </answer> and re-tokenized, <information>
    /// blocks, a final answer turn after --max-turns (default 4), rolling 4096-token context;
    /// Search-R1's prompt and exact-match reward. --top-k defaults to 3.
    SearchR1,
}

#[derive(Args, Clone)]
pub struct LoopArgs {
    /// Rollout loop (and its prompt and reward).
    #[arg(long = "loop", value_enum, default_value = "research")]
    pub kind: LoopChoice,
    /// Search-R1: tokens generated per turn.
    #[arg(long, default_value_t = 500)]
    pub turn_tokens: usize,
    /// Search-R1: tokens kept of each <information> observation.
    #[arg(long, default_value_t = 500)]
    pub max_obs_tokens: usize,
    /// Search-R1: rolling context (and response cap) in tokens.
    #[arg(long, default_value_t = 4096)]
    pub max_context: usize,
}

impl LoopArgs {
    pub fn kind(&self) -> LoopKind {
        match self.kind {
            LoopChoice::Research => LoopKind::Research,
            LoopChoice::SearchR1 => LoopKind::SearchR1,
        }
    }

    /// Passages per search when --top-k is not given: 5 (ReSearch) or 3 (Search-R1).
    pub fn default_top_k(&self) -> usize {
        match self.kind {
            LoopChoice::Research => 5,
            LoopChoice::SearchR1 => 3,
        }
    }
}

/// `research ask --loop search-r1`: one greedy Search-R1 rollout, shown with each observation set
/// apart.
pub fn ask_search_r1<B: Backend>(
    engine: &Engine<B>,
    question: &str,
    base: bool,
    args: &LoopArgs,
    top_k: usize,
    max_turns: Option<usize>,
    retriever: &dyn Retriever,
) -> Result<()> {
    let prompt = if base {
        search_r1_prompt(question)
    } else {
        search_r1_chat_prompt(question)
    };
    let ids = engine.tokenizer()?.encode(&prompt)?;
    let defaults = SearchR1Config::default();
    let config = SearchR1Config {
        max_turns: max_turns.unwrap_or(defaults.max_turns),
        turn_tokens: args.turn_tokens,
        max_obs_tokens: args.max_obs_tokens,
        max_context: args.max_context,
        top_k,
        sampling: SamplingParams::greedy(),
        eos_ids: if base { vec![151643] } else { vec![151645, 151643] },
        ..defaults
    };
    let r = SearchR1Batch::new(engine, vec![ids], config)?.run(retriever)?.remove(0);
    let mut rest = r.text.as_str();
    loop {
        let info = rest.find("\n\n<information>");
        let invalid = rest.find(INVALID_ACTION);
        let (start, end, title) = match (info, invalid) {
            (Some(i), j) if j.is_none_or(|j| i < j) => {
                let end = rest[i..]
                    .find("</information>\n\n")
                    .map(|e| i + e + "</information>\n\n".len())
                    .unwrap_or(rest.len());
                (i, end, "retrieved")
            }
            (_, Some(j)) => (j, j + INVALID_ACTION.len(), "invalid action"),
            _ => break,
        };
        print!("{}", &rest[..start]);
        println!("\n  ┌── {title} ──");
        for line in rest[start..end].trim().lines() {
            println!("  │ {line}");
        }
        println!("  └───────────────");
        rest = &rest[end..];
    }
    println!("{rest}");
    println!(
        "\n[{} searches, {} turns, {} tokens, finished: {:?}; answer: {:?}]",
        r.searches.len(),
        r.turns,
        r.response_ids.len(),
        r.finish,
        research::agent::last_answer_span(&r.text).unwrap_or_default()
    );
    Ok(())
}
