//! Coalescing of concurrent requests into batched search calls.
//!
//! Requests queue [`Job`]s on a bounded channel. Each of `search_workers` workers takes the first
//! waiting job, then keeps collecting until `max_wait` has passed or `max_batch_queries` queries are
//! held; while one batch is searched, new requests queue up for the next. The collected jobs are
//! grouped by `k` (so a request's answer never depends on what else was in its batch) and each group
//! is one `SearchService::search` call on a blocking thread; the results are handed back in order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use crate::api::ApiError;
use crate::config::Batching;
use crate::{Hit, SearchService};

type Reply = Result<Vec<Vec<Hit>>, ApiError>;

struct Job {
    queries: Vec<String>,
    k: usize,
    reply: oneshot::Sender<Reply>,
}

/// The request side of the workers.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Job>,
    busy: Arc<AtomicUsize>,
    workers: usize,
    queue_limit: usize,
}

impl Batcher {
    /// Starts the workers on the current tokio runtime. They stop when every `Batcher` clone is dropped.
    pub fn start(service: Arc<dyn SearchService>, batching: &Batching, queue_limit: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue_limit.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let workers = batching.search_workers.max(1);
        for id in 0..workers {
            tokio::spawn(worker(id, rx.clone(), service.clone(), batching.clone(), busy.clone()));
        }
        Self {
            tx,
            busy,
            workers,
            queue_limit,
        }
    }

    /// Search workers in all, and those not searching now (for `/health`).
    pub fn workers(&self) -> (usize, usize) {
        let busy = self.busy.load(Ordering::Relaxed).min(self.workers);
        (self.workers, self.workers - busy)
    }

    /// Queues the queries and waits for their results (one list per query, at most `k` long).
    pub async fn search(&self, queries: Vec<String>, k: usize) -> Reply {
        if queries.is_empty() {
            return Ok(vec![]);
        }
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { queries, k, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::new(
                503,
                format!("server busy: {} requests already wait for search", self.queue_limit),
            ),
            mpsc::error::TrySendError::Closed(_) => ApiError::new(503, "server is shutting down"),
        })?;
        rx.await
            .unwrap_or_else(|_| Err(ApiError::new(500, "search worker stopped before answering")))
    }
}

async fn worker(
    id: usize,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    service: Arc<dyn SearchService>,
    batching: Batching,
    busy: Arc<AtomicUsize>,
) {
    loop {
        // Collect one batch while holding the queue; other workers wait for the next one.
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let mut queued = first.queries.len();
            jobs.push(first);
            let deadline = Instant::now() + batching.max_wait;
            while queued < batching.max_batch_queries {
                // `timeout_at` polls the channel before looking at the clock, so queued jobs are
                // taken even when the deadline has passed.
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => {
                        queued += job.queries.len();
                        jobs.push(job);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Requests whose client has gone need no search.
        jobs.retain(|j| !j.reply.is_closed());
        let mut groups: BTreeMap<usize, Vec<Job>> = BTreeMap::new();
        for job in jobs {
            groups.entry(job.k).or_default().push(job);
        }
        for (k, jobs) in groups {
            let queries: Vec<String> = jobs.iter().flat_map(|j| j.queries.iter().cloned()).collect();
            let n = queries.len();
            tracing::debug!(worker = id, requests = jobs.len(), queries = n, k, "search batch");
            busy.fetch_add(1, Ordering::Relaxed);
            let svc = service.clone();
            let result = tokio::task::spawn_blocking(move || svc.search(&queries, k)).await;
            busy.fetch_sub(1, Ordering::Relaxed);
            let result = match result {
                Ok(Ok(lists)) if lists.len() == n => Ok(lists),
                Ok(Ok(lists)) => Err(format!("search returned {} result lists for {n} queries", lists.len())),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(format!("search panicked: {e}")),
            };
            match result {
                Ok(lists) => {
                    let mut lists = lists.into_iter();
                    for job in jobs {
                        let mine: Vec<Vec<Hit>> = lists
                            .by_ref()
                            .take(job.queries.len())
                            .map(|mut hits| {
                                hits.truncate(k);
                                hits
                            })
                            .collect();
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                Err(e) => {
                    tracing::error!(worker = id, queries = n, k, error = %e, "search failed");
                    for job in jobs {
                        let _ = job.reply.send(Err(ApiError::new(500, format!("search failed: {e}"))));
                    }
                }
            }
        }
    }
}
