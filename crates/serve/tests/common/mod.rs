//! A deterministic stub search service and a small HTTP client for the server tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use research_serve::{Batching, Hit, Limits, SearchService, Server, ServerConfig, ServerHandle};

/// Passages in the stub corpus: a query has at most this many hits.
pub const CORPUS: usize = 50;

/// Hit `i` of query `q`: id `q#i`, contents `"q"\ntext i`, score `1 - i/8` (exact in f32 and f64).
pub fn stub_hits(q: &str, k: usize) -> Vec<Hit> {
    (0..k.min(CORPUS))
        .map(|i| Hit {
            id: format!("{q}#{i}"),
            contents: format!("\"{q}\"\ntext {i}"),
            score: 1.0 - i as f32 / 8.0,
        })
        .collect()
}

/// Answers every query with [`stub_hits`], records each call's (queries, k), optionally waits before
/// answering and tells a channel when a call starts. The query `FAIL` makes the call fail.
#[derive(Default)]
pub struct Stub {
    pub calls: Mutex<Vec<(Vec<String>, usize)>>,
    pub delay: Duration,
    pub started: Mutex<Option<mpsc::Sender<()>>>,
}

impl Stub {
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
    pub fn calls(&self) -> Vec<(Vec<String>, usize)> {
        self.calls.lock().unwrap().clone()
    }
}

impl SearchService for Stub {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Hit>>, String> {
        self.calls.lock().unwrap().push((queries.to_vec(), k));
        if let Some(tx) = self.started.lock().unwrap().as_ref() {
            let _ = tx.send(());
        }
        std::thread::sleep(self.delay);
        if queries.iter().any(|q| q == "FAIL") {
            return Err("stub failure".into());
        }
        Ok(queries.iter().map(|q| stub_hits(q, k)).collect())
    }
    fn corpus_size(&self) -> usize {
        CORPUS
    }
}

/// A config on 127.0.0.1 with a free port.
pub fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

pub fn start(stub: Arc<Stub>, config: ServerConfig) -> ServerHandle {
    Server::bind(stub, config).unwrap().spawn().unwrap()
}

pub fn start_with(stub: Arc<Stub>, limits: Limits, batching: Batching) -> ServerHandle {
    start(
        stub,
        ServerConfig {
            limits,
            batching,
            ..config()
        },
    )
}

/// Status, content type and body of an HTTP answer (error statuses included).
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let content_type = resp.header("content-type").unwrap_or("").to_string();
    let body = resp.into_string().unwrap();
    Answer {
        status,
        content_type,
        body,
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

pub fn post(agent: &ureq::Agent, base: &str, path: &str, body: &str) -> Answer {
    answer(
        agent
            .post(&format!("{base}{path}"))
            .set("Content-Type", "application/json")
            .send_string(body),
    )
}

pub fn get(agent: &ureq::Agent, base: &str, path: &str) -> Answer {
    answer(agent.get(&format!("{base}{path}")).call())
}
