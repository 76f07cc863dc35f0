//! A [`Retriever`] that calls a ReSearch-API server (`POST /batch_search`, REFERENCE.md §1): the
//! reference's FastAPI service, or `research serve`. Plain HTTP (retrievers run beside the trainer).

use std::time::Duration;

use crate::rollout::{Passage, Retriever};

/// Client of a ReSearch-API retriever at a base URL such as `http://127.0.0.1:8000`.
pub struct ReSearchApi {
    base: String,
    agent: ureq::Agent,
}

impl ReSearchApi {
    /// A client with a per-request timeout.
    pub fn new(url: &str, timeout: Duration) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }
}

impl Retriever for ReSearchApi {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String> {
        let url = format!("{}/batch_search", self.base);
        let body = serde_json::json!({"query": queries, "top_n": k, "return_score": false});
        let resp = self
            .agent
            .post(&url)
            .send_json(body)
            .map_err(|e| format!("{url}: {e}"))?;
        resp.into_json::<Vec<Vec<Passage>>>()
            .map_err(|e| format!("{url}: unexpected response (expected a list of passage lists per query): {e}"))
    }
}
