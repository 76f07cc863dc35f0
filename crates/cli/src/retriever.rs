//! The retriever of `research eval`, `research ask`, `research bench rollout` and `research train`:
//! an in-process index built by `research index` (`--index DIR`) or a ReSearch-API server
//! (`--retriever-url URL`), exactly one of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use research::agent::{ReSearchApi, Retriever};
use research::retrieval::RetrieverOptions;

/// What [`open`] says when neither retriever is given (a training config without either; on the
/// command line clap already requires one of `--index` and `--retriever-url`).
pub const NO_RETRIEVER: &str =
    "no retriever: give --index DIR (built by `research index`) or --retriever-url URL (a ReSearch-API server)";

/// `--index DIR` or `--retriever-url URL` (exactly one), and their settings.
#[derive(Args, Clone, Debug)]
pub struct RetrieverArgs {
    #[command(flatten)]
    pub source: RetrieverSource,
    /// Seconds before a retriever request fails (it is retried with backoff, then reported).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub retriever_timeout: u64,
    /// With --index: the index's encoder folder, if it moved since the build (its checksum must match).
    #[arg(long, value_name = "DIR", requires = "index")]
    pub index_encoder: Option<PathBuf>,
    /// With --index: the index's corpus file, if it moved since the build (its checksum must match).
    #[arg(long, value_name = "FILE", requires = "index")]
    pub index_corpus: Option<PathBuf>,
}

/// Where passages come from: exactly one of `--index` and `--retriever-url`.
#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct RetrieverSource {
    /// In-process index folder built by `research index` (queries encoded on the CPU); or give
    /// --retriever-url.
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// A ReSearch-API retriever (POST /batch_search), e.g. http://127.0.0.1:8000 (`research serve`);
    /// or give --index.
    #[arg(long, value_name = "URL")]
    pub retriever_url: Option<String>,
}

impl RetrieverArgs {
    /// Opens the retriever the arguments name.
    pub fn open(&self) -> Result<Box<dyn Retriever>> {
        if self.source.index.is_none() && (self.index_encoder.is_some() || self.index_corpus.is_some()) {
            bail!("--index-encoder and --index-corpus go with --index, not with --retriever-url");
        }
        let options = RetrieverOptions {
            encoder: self.index_encoder.clone(),
            corpus: self.index_corpus.clone(),
            ..Default::default()
        };
        open(
            self.source.index.as_deref(),
            self.source.retriever_url.as_deref(),
            Duration::from_secs(self.retriever_timeout),
            &options,
        )
    }
}

/// Opens an index folder (`options` for the query encoder, corpus and HNSW) or a client of a
/// ReSearch-API server; exactly one of `index` and `url` must be given.
pub fn open(
    index: Option<&Path>,
    url: Option<&str>,
    timeout: Duration,
    options: &RetrieverOptions,
) -> Result<Box<dyn Retriever>> {
    match (index, url) {
        (Some(_), Some(_)) => bail!("give one retriever, not both: an index (--index, retriever.index) or a URL (--retriever-url, retriever.url)"),
        (Some(dir), None) => {
            let r = research::retrieval::Retriever::open(dir, options)
                .with_context(|| format!("opening the index {}", dir.display()))?;
            Ok(Box::new(r))
        }
        (None, Some(url)) => Ok(Box::new(ReSearchApi::new(url, timeout))),
        (None, None) => bail!(NO_RETRIEVER),
    }
}
