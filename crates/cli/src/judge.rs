//! `--judge-*` options of `research eval`: an LLM judge through an OpenAI-compatible endpoint.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use research::eval::{Judge, JudgeConfig};

#[derive(Args, Clone)]
pub struct JudgeArgs {
    /// LLM judge at an OpenAI-compatible endpoint (https://api.openai.com, http://host:8000/v1, or a
    /// full .../chat/completions URL): each item gets a verdict, summary.json the share judged correct.
    /// The judge prompt is our wording (see docs/evaluation.md).
    #[arg(long, requires = "judge_model")]
    pub judge_url: Option<String>,
    /// Judge model, e.g. gpt-4o-mini (the paper's judge).
    #[arg(long, requires = "judge_url")]
    pub judge_model: Option<String>,
    /// Name of the environment variable holding the judge's API key (sent as a Bearer token);
    /// without it no key is sent.
    #[arg(long, requires = "judge_url")]
    pub judge_key_env: Option<String>,
    /// Judge requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub judge_concurrency: usize,
    /// Seconds before a judge request fails (retried with backoff, then reported).
    #[arg(long, default_value_t = 60)]
    pub judge_timeout: u64,
}

/// The judge the options ask for, if any.
pub fn judge(a: &JudgeArgs) -> Result<Option<Judge>> {
    let (Some(url), Some(model)) = (&a.judge_url, &a.judge_model) else {
        return Ok(None);
    };
    let api_key = match &a.judge_key_env {
        Some(var) => match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
            _ => bail!("--judge-key-env {var}: the environment variable is not set (or empty)"),
        },
        None => None,
    };
    Ok(Some(Judge::new(JudgeConfig {
        api_key,
        timeout: Duration::from_secs(a.judge_timeout),
        concurrency: a.judge_concurrency.max(1),
        ..JudgeConfig::new(url, model)
    })))
}
