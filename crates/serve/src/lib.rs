//! `research-serve`: the retrieval HTTP service of research-rs.
//!
//! It serves any [`SearchService`] (the in-process index of `research-retrieval`, or a stub in
//! tests) over the reference system's HTTP APIs (REFERENCE.md §1), with byte-compatible JSON:
//!
//! - ReSearch: `GET /health`, `POST /search`, `POST /batch_search` (default `top_n` 10);
//! - Search-R1: `POST /retrieve` (default `topk` 3; without scores it answers
//!   `{"result": [[{"id","contents"}, ...]]}` where the reference fails with HTTP 500).
//!
//! Unlike the reference, requests are served concurrently and the queries of requests that arrive
//! together are answered by one [`SearchService::search`] call (so the encoder sees one batch):
//! a worker collects queued queries for up to [`Batching::max_wait`] or until
//! [`Batching::max_batch_queries`], runs the search on a blocking thread and hands each request
//! its own results. Every input is bounded ([`Limits`]); a bad request is a 4xx JSON
//! `{"detail": ...}`, never a crash. The server listens on loopback by default and shuts down
//! gracefully (in-flight requests finish) on SIGINT/SIGTERM or [`ServerHandle::shutdown`].

mod api;
mod batcher;
mod config;
mod error;
mod pyjson;
mod server;

pub use config::{Batching, Limits, ServerConfig};
pub use error::ServeError;
pub use pyjson::py_float_repr;
pub use server::{shutdown_signal, Server, ServerHandle};

/// One retrieved passage: the corpus row's id, its `contents` (title line and text) and the score
/// (inner product of normalised embeddings for the dense index; higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub contents: String,
    pub score: f32,
}

/// What the server searches: a batched top-k search over a corpus.
///
/// `search` is called from a blocking thread (never from the async runtime), with the queries of
/// one or more requests; it must return exactly one list per query, best first, at most `k` long
/// (longer lists are cut to `k`). At most [`Batching::search_workers`] calls run at once.
pub trait SearchService: Send + Sync + 'static {
    /// The top `k` passages of every query, in query order.
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>, String>;
    /// Number of passages in the corpus (reported at start-up).
    fn corpus_size(&self) -> usize;
}

impl<S: SearchService + ?Sized> SearchService for std::sync::Arc<S> {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>, String> {
        (**self).search(queries, k)
    }
    fn corpus_size(&self) -> usize {
        (**self).corpus_size()
    }
}

impl<S: SearchService + ?Sized> SearchService for Box<S> {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>, String> {
        (**self).search(queries, k)
    }
    fn corpus_size(&self) -> usize {
        (**self).corpus_size()
    }
}
