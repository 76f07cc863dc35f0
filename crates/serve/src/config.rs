//! Server configuration: address, request limits and batching.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Bounds on what one request may ask for. Each one, exceeded, is a 4xx JSON error.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most queries in one `/batch_search` or `/retrieve` request (422 above). A ReSearch training
    /// turn sends every rollout's query at once (256 prompts x 5 samples = 1280).
    pub max_queries: usize,
    /// Largest `top_n` / `topk` (422 above; 0 is 422 on the ReSearch routes).
    pub max_top_k: usize,
    /// Longest query in characters (422 above). The encoder keeps 128 tokens anyway.
    pub max_query_chars: usize,
    /// Most requests waiting for the search workers (503 above).
    pub max_queued_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_queries: 4096,
            max_top_k: 1000,
            max_query_chars: 4096,
            max_queued_requests: 4096,
        }
    }
}

/// How queries of concurrent requests are coalesced into search calls.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Once a query is queued, wait at most this long for more before searching.
    pub max_wait: Duration,
    /// Stop collecting once this many queries are queued (a single larger request is searched whole).
    pub max_batch_queries: usize,
    /// Search calls that may run at once (each on its own blocking thread).
    pub search_workers: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(2),
            max_batch_queries: 512,
            search_workers: 1,
        }
    }
}

/// Where to listen and with which limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listening address; loopback port 8000 by default (the reference's port).
    pub addr: SocketAddr,
    pub limits: Limits,
    pub batching: Batching,
    /// `/search` and `/batch_search` `top_n` when the request has none (ReSearch: 10).
    pub default_top_n: usize,
    /// `/retrieve` `topk` when the request has none or 0 (Search-R1: 3).
    pub default_topk: usize,
    /// After the shutdown signal, wait at most this long for in-flight requests, then stop anyway.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000),
            limits: Limits::default(),
            batching: Batching::default(),
            default_top_n: 10,
            default_topk: 3,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
