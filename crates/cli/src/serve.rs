//! `research serve`: the retrieval HTTP service (ReSearch `/health`, `/search`, `/batch_search` and
//! Search-R1 `/retrieve`) over an index folder written by `research index`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use research::prelude::FloatType;
use research::retrieval::{default_threads, Retriever, RetrieverOptions};
use research_serve::{Batching, Hit, Limits, SearchService, Server, ServerConfig};

/// Arguments of `research serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Index folder written by `research index`.
    #[arg(long)]
    index: PathBuf,
    /// Address to listen on. Loopback by default; 0.0.0.0 exposes the service to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (the reference's is 8000; 0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Exact brute-force search over the saved vectors instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// Query encoder backend: cpu, cuda, tch-cpu or tch-cuda (those compiled in).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Query encoder dtype: f32, bf16 or f16 (cpu: f32 only).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Encoder folder, if it moved since the build (its checksum must match).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Corpus file, if it moved since the build (its checksum must match).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// HNSW candidate list while searching (default: the index's).
    #[arg(long)]
    expansion_search: Option<usize>,
    /// Partitioned indexes (`research index --partitions`): partitions searched per query
    /// (default 4).
    #[arg(long)]
    probe: Option<usize>,
    /// Concurrent HNSW searches inside one batch (default: all threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Queries per encoder forward pass.
    #[arg(long, default_value_t = 64)]
    query_batch_size: usize,
    /// Wait up to this many milliseconds for more queries before searching a batch.
    #[arg(long, default_value_t = 2.0)]
    batch_wait_ms: f64,
    /// Stop collecting a batch at this many queries (one larger request is searched whole).
    #[arg(long, default_value_t = Batching::default().max_batch_queries)]
    max_batch: usize,
    /// Batches searched at once.
    #[arg(long, default_value_t = Batching::default().search_workers)]
    search_workers: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most queries per request (422 above).
    #[arg(long, default_value_t = Limits::default().max_queries)]
    max_queries: usize,
    /// Largest top_n / topk (422 above).
    #[arg(long, default_value_t = Limits::default().max_top_k)]
    max_top_k: usize,
    /// Longest query in characters (422 above).
    #[arg(long, default_value_t = Limits::default().max_query_chars)]
    max_query_chars: usize,
    /// Most requests waiting for search (503 above).
    #[arg(long, default_value_t = Limits::default().max_queued_requests)]
    max_queued: usize,
    /// `top_n` of /search and /batch_search when a request has none (ReSearch: 10).
    #[arg(long, default_value_t = 10)]
    default_top_n: usize,
    /// `topk` of /retrieve when a request has none (Search-R1: 3).
    #[arg(long, default_value_t = 3)]
    default_topk: usize,
    /// On SIGINT/SIGTERM, wait at most this many seconds for requests in flight.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
}

/// An opened index as the server's search service.
struct IndexService {
    retriever: Retriever,
    exact: bool,
}

impl SearchService for IndexService {
    fn search(&self, queries: &[String], k: usize) -> std::result::Result<Vec<Vec<Hit>>, String> {
        let found = if self.exact {
            self.retriever.search_exact(queries, k)
        } else {
            self.retriever.search(queries, k)
        }
        .map_err(|e| e.to_string())?;
        Ok(found
            .into_iter()
            .map(|hits| {
                hits.into_iter()
                    .map(|h| Hit {
                        id: h.id,
                        contents: h.contents,
                        score: h.score,
                    })
                    .collect()
            })
            .collect())
    }

    fn corpus_size(&self) -> usize {
        self.retriever.len() as usize
    }
}

/// Runs `research serve` until SIGINT or SIGTERM.
pub fn serve(a: ServeArgs) -> Result<()> {
    if !(a.batch_wait_ms.is_finite() && a.batch_wait_ms >= 0.0) {
        bail!(
            "--batch-wait-ms must be a number of milliseconds >= 0, got {}",
            a.batch_wait_ms
        );
    }
    if a.query_batch_size == 0 {
        bail!("--query-batch-size must be at least 1");
    }
    let options = RetrieverOptions {
        backend: a.backend.parse()?,
        dtype: FloatType::parse(&a.dtype)
            .map_err(|_| anyhow!("unknown dtype `{}` (expected f32, bf16 or f16)", a.dtype))?,
        encoder: a.encoder.clone(),
        corpus: a.corpus.clone(),
        expansion_search: a.expansion_search,
        probe: a.probe,
        threads: a.threads.unwrap_or_else(default_threads),
        query_batch_size: a.query_batch_size,
        view: true,
    };
    let config = ServerConfig {
        addr: SocketAddr::new(a.host, a.port),
        limits: Limits {
            max_body_bytes: a.max_body_bytes,
            max_queries: a.max_queries,
            max_top_k: a.max_top_k,
            max_query_chars: a.max_query_chars,
            max_queued_requests: a.max_queued,
        },
        batching: Batching {
            max_wait: Duration::from_secs_f64(a.batch_wait_ms / 1e3),
            max_batch_queries: a.max_batch,
            search_workers: a.search_workers,
        },
        default_top_n: a.default_top_n,
        default_topk: a.default_topk,
        shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
    };
    let started = std::time::Instant::now();
    let retriever = Retriever::open(&a.index, &options)?;
    let passages = retriever.len();
    let server = Server::bind(
        IndexService {
            retriever,
            exact: a.exact,
        },
        config,
    )?;
    eprintln!(
        "research serve: {} ({passages} passages, {} search, opened in {:.1} s) on http://{}; Ctrl-C or SIGTERM stops",
        a.index.display(),
        if a.exact { "exact" } else { "HNSW" },
        started.elapsed().as_secs_f64(),
        server.local_addr()
    );
    server.run_until_signal()?;
    Ok(())
}
