//! The server over real HTTP on loopback, with a deterministic stub service: exact response bytes of
//! every route (REFERENCE.md §1, written by hand here), request errors, limits, coalescing of
//! concurrent requests and graceful shutdown.

mod common;

use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use common::*;
use research_serve::{Batching, Limits};

const EMPTY: &str = r#"{"detail":"Query content cannot be empty"}"#;

#[test]
fn health_shape() {
    let server = start(Arc::new(Stub::default()), config());
    let a = get(&agent(), &server.url(), "/health");
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body, r#"{"status":"healthy","retrievers":{"total":1,"available":1}}"#);
}

#[test]
fn search_shapes() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    let a = post(&agent, &url, "/search", r#"{"query":"alpha","top_n":2}"#);
    assert_eq!((a.status, a.content_type.as_str()), (200, "application/json"));
    assert_eq!(
        a.body,
        r#"[{"id":"alpha#0","contents":"\"alpha\"\ntext 0"},{"id":"alpha#1","contents":"\"alpha\"\ntext 1"}]"#
    );
    let a = post(
        &agent,
        &url,
        "/search",
        r#"{"query":"alpha","top_n":3,"return_score":true}"#,
    );
    assert_eq!(
        a.body,
        concat!(
            r#"[[{"id":"alpha#0","contents":"\"alpha\"\ntext 0"},{"id":"alpha#1","contents":"\"alpha\"\ntext 1"},"#,
            r#"{"id":"alpha#2","contents":"\"alpha\"\ntext 2"}],[1.0,0.875,0.75]]"#
        )
    );
    // ReSearch's default top_n is 10.
    let a = post(&agent, &url, "/search", r#"{"query":"beta"}"#);
    let docs = a.json();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 10);
    assert_eq!(docs[9]["id"], "beta#9");
    // Non-ASCII is written as UTF-8, unescaped (FastAPI: ensure_ascii=False).
    let a = post(&agent, &url, "/search", r#"{"query":"Zürich 東京","top_n":1}"#);
    assert_eq!(
        a.body,
        "[{\"id\":\"Zürich 東京#0\",\"contents\":\"\\\"Zürich 東京\\\"\\ntext 0\"}]"
    );
}

#[test]
fn batch_search_shapes() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    let a = post(&agent, &url, "/batch_search", r#"{"query":["a","b"],"top_n":2}"#);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        concat!(
            r#"[[{"id":"a#0","contents":"\"a\"\ntext 0"},{"id":"a#1","contents":"\"a\"\ntext 1"}],"#,
            r#"[{"id":"b#0","contents":"\"b\"\ntext 0"},{"id":"b#1","contents":"\"b\"\ntext 1"}]]"#
        )
    );
    let a = post(
        &agent,
        &url,
        "/batch_search",
        r#"{"query":["a","b"],"top_n":2,"return_score":true}"#,
    );
    assert_eq!(
        a.body,
        concat!(
            r#"[[[{"id":"a#0","contents":"\"a\"\ntext 0"},{"id":"a#1","contents":"\"a\"\ntext 1"}],"#,
            r#"[{"id":"b#0","contents":"\"b\"\ntext 0"},{"id":"b#1","contents":"\"b\"\ntext 1"}]],"#,
            r#"[[1.0,0.875],[1.0,0.875]]]"#
        )
    );
    let a = post(&agent, &url, "/batch_search", r#"{"query":["c"]}"#);
    assert_eq!(a.json()[0].as_array().unwrap().len(), 10);
    let a = post(&agent, &url, "/batch_search", r#"{"query":[]}"#);
    assert_eq!((a.status, a.body.as_str()), (200, "[]"));
}

#[test]
fn retrieve_shapes() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    let a = post(
        &agent,
        &url,
        "/retrieve",
        r#"{"queries":["a","b"],"topk":2,"return_scores":true}"#,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        concat!(
            r#"{"result":[[{"document":{"id":"a#0","contents":"\"a\"\ntext 0"},"score":1.0},"#,
            r#"{"document":{"id":"a#1","contents":"\"a\"\ntext 1"},"score":0.875}],"#,
            r#"[{"document":{"id":"b#0","contents":"\"b\"\ntext 0"},"score":1.0},"#,
            r#"{"document":{"id":"b#1","contents":"\"b\"\ntext 1"},"score":0.875}]]}"#
        )
    );
    // Without scores (the reference answers 500 here).
    let a = post(
        &agent,
        &url,
        "/retrieve",
        r#"{"queries":["a"],"topk":1,"return_scores":false}"#,
    );
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, r#"{"result":[[{"id":"a#0","contents":"\"a\"\ntext 0"}]]}"#)
    );
    // Search-R1's default topk is 3, also for null and 0 (`if not request.topk`).
    for body in [
        r#"{"queries":["a"]}"#,
        r#"{"queries":["a"],"topk":null}"#,
        r#"{"queries":["a"],"topk":0}"#,
    ] {
        let a = post(&agent, &url, "/retrieve", body);
        assert_eq!(a.status, 200, "{body}");
        assert_eq!(a.json()["result"][0].as_array().unwrap().len(), 3, "{body}");
    }
}

#[test]
fn empty_queries_are_400() {
    let stub = Arc::new(Stub::default());
    let server = start(stub.clone(), config());
    let (agent, url) = (agent(), server.url());
    for (path, body) in [
        ("/search", r#"{"query":""}"#),
        ("/search", r#"{"query":"  \n\t"}"#),
        ("/batch_search", r#"{"query":["ok",""]}"#),
        ("/batch_search", r#"{"query":[" "],"return_score":true}"#),
        ("/retrieve", r#"{"queries":["ok","   "],"topk":2}"#),
    ] {
        let a = post(&agent, &url, path, body);
        assert_eq!((a.status, a.body.as_str()), (400, EMPTY), "{path} {body}");
        assert_eq!(a.content_type, "application/json");
    }
    assert!(stub.calls().is_empty(), "rejected requests must not reach the search");
}

#[test]
fn bad_json_and_wrong_types_are_4xx_json() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/search", r#"{"query": "x""#, 400, "request body is not valid JSON"),
        ("/search", "", 400, "request body is not valid JSON"),
        (
            "/batch_search",
            "\u{0}\u{1}garbage",
            400,
            "request body is not valid JSON",
        ),
        (
            "/search",
            r#"["x"]"#,
            422,
            "request body must be a JSON object, got a list",
        ),
        ("/search", r#"{}"#, 422, "field `query` is required (a string)"),
        (
            "/search",
            r#"{"query":["x"]}"#,
            422,
            "field `query` must be a string, got a list",
        ),
        (
            "/search",
            r#"{"query":"x","top_n":"5"}"#,
            422,
            "field `top_n` must be an integer, got a string",
        ),
        (
            "/search",
            r#"{"query":"x","top_n":2.5}"#,
            422,
            "field `top_n` must be an integer, got a number",
        ),
        (
            "/search",
            r#"{"query":"x","return_score":[]}"#,
            422,
            "field `return_score` must be a boolean, got []",
        ),
        (
            "/batch_search",
            r#"{"query":"x"}"#,
            422,
            "field `query` must be a list of strings, got a string",
        ),
        (
            "/batch_search",
            r#"{"query":["x",7]}"#,
            422,
            "`query[1]` must be a string, got a number",
        ),
        (
            "/retrieve",
            r#"{"query":["x"]}"#,
            422,
            "field `queries` is required (a list of strings)",
        ),
        (
            "/retrieve",
            r#"{"queries":["x"],"topk":true}"#,
            422,
            "field `topk` must be an integer, got a boolean",
        ),
    ];
    for &(path, body, status, detail) in cases {
        let a = post(&agent, &url, path, body);
        assert_eq!(a.status, status, "{path} {body}: {}", a.body);
        assert_eq!(a.content_type, "application/json");
        let got = a.json()["detail"].as_str().unwrap().to_string();
        assert!(
            got.starts_with(detail),
            "{path} {body}: detail {got:?}, expected {detail:?}"
        );
    }
    // The server is still up.
    assert_eq!(get(&agent, &url, "/health").status, 200);
}

#[test]
fn unknown_route_and_wrong_method() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    let a = get(&agent, &url, "/nope");
    assert_eq!((a.status, a.body.as_str()), (404, r#"{"detail":"Not Found"}"#));
    assert_eq!(a.content_type, "application/json");
    let a = post(&agent, &url, "/search/extra", r#"{"query":"x"}"#);
    assert_eq!((a.status, a.body.as_str()), (404, r#"{"detail":"Not Found"}"#));
    let a = get(&agent, &url, "/search");
    assert_eq!((a.status, a.body.as_str()), (405, r#"{"detail":"Method Not Allowed"}"#));
    let a = post(&agent, &url, "/health", "{}");
    assert_eq!(a.status, 405);
}

#[test]
fn top_k_zero_and_huge() {
    let server = start(Arc::new(Stub::default()), config());
    let (agent, url) = (agent(), server.url());
    for (path, body) in [
        ("/search", r#"{"query":"x","top_n":0}"#),
        ("/search", r#"{"query":"x","top_n":-1}"#),
        ("/search", r#"{"query":"x","top_n":1001}"#),
        ("/search", r#"{"query":"x","top_n":18446744073709551616}"#),
        ("/batch_search", r#"{"query":["x"],"top_n":0}"#),
        ("/batch_search", r#"{"query":["x"],"top_n":1000000000}"#),
        ("/retrieve", r#"{"queries":["x"],"topk":1000000000}"#),
        ("/retrieve", r#"{"queries":["x"],"topk":-5}"#),
    ] {
        let a = post(&agent, &url, path, body);
        assert_eq!(a.status, 422, "{path} {body}: {}", a.body);
        assert!(a.json()["detail"].is_string());
    }
    // The largest allowed k is answered; the stub corpus has 50 passages.
    let a = post(&agent, &url, "/search", r#"{"query":"x","top_n":1000}"#);
    assert_eq!(a.status, 200);
    assert_eq!(a.json().as_array().unwrap().len(), CORPUS);
}

#[test]
fn limits_are_4xx_json() {
    let limits = Limits {
        max_body_bytes: 1024,
        max_queries: 4,
        max_query_chars: 20,
        ..Limits::default()
    };
    let stub = Arc::new(Stub::default());
    let server = start_with(stub.clone(), limits, Batching::default());
    let (agent, url) = (agent(), server.url());
    let big = format!(r#"{{"query":"{}"}}"#, "x".repeat(4000));
    let a = post(&agent, &url, "/search", &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(
        a.json()["detail"],
        format!("request body is {} bytes; the limit is 1024", big.len())
    );
    // Much larger than the limit (read on and dropped, still a clean 413).
    let huge = format!(r#"{{"query":["{}"]}}"#, "y".repeat(3 << 20));
    let a = post(&agent, &url, "/batch_search", &huge);
    assert_eq!(a.status, 413);
    let a = post(&agent, &url, "/batch_search", r#"{"query":["a","b","c","d","e"]}"#);
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json()["detail"],
        "field `query` has 5 queries; the limit is 4 per request"
    );
    let a = post(
        &agent,
        &url,
        "/retrieve",
        r#"{"queries":["a","0123456789abcdefghijk"]}"#,
    );
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json()["detail"],
        "`queries[1]` is 21 characters long; the limit is 20"
    );
    let a = post(&agent, &url, "/search", r#"{"query":"0123456789abcdefghijk"}"#);
    assert_eq!(a.json()["detail"], "`query` is 21 characters long; the limit is 20");
    assert!(stub.calls().is_empty());
    // Within every limit: answered on the same server.
    let a = post(
        &agent,
        &url,
        "/batch_search",
        r#"{"query":["a","b","c","d"],"top_n":1}"#,
    );
    assert_eq!(a.status, 200);
}

#[test]
fn search_failure_is_500_json() {
    let server = start(Arc::new(Stub::default()), config());
    let a = post(&agent(), &server.url(), "/batch_search", r#"{"query":["ok","FAIL"]}"#);
    assert_eq!(a.status, 500);
    assert_eq!(a.json()["detail"], "search failed: stub failure");
    assert_eq!(get(&agent(), &server.url(), "/health").status, 200);
}

/// Requests that arrive together are answered by fewer search calls, each request gets its own
/// results, and queries with different k are never mixed in one call.
#[test]
fn concurrent_requests_are_coalesced() {
    const CLIENTS: usize = 16;
    let stub = Arc::new(Stub::default());
    // A long window closed by the batch size: every request that arrives within it shares a call.
    let batching = Batching {
        max_wait: Duration::from_secs(5),
        max_batch_queries: CLIENTS,
        search_workers: 1,
    };
    let server = start_with(stub.clone(), Limits::default(), batching);
    let url = server.url();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let k = 2 + i % 2; // two groups of k
                let q = format!("q{i}");
                barrier.wait();
                let a = post(&agent, &url, "/search", &format!(r#"{{"query":"{q}","top_n":{k}}}"#));
                assert_eq!(a.status, 200, "{}", a.body);
                let ids: Vec<String> = a
                    .json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().to_string())
                    .collect();
                let want: Vec<String> = (0..k).map(|j| format!("{q}#{j}")).collect();
                assert_eq!(ids, want);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let calls = stub.calls();
    let total: usize = calls.iter().map(|(q, _)| q.len()).sum();
    println!(
        "{CLIENTS} concurrent requests -> {} search calls of sizes {:?}",
        calls.len(),
        calls.iter().map(|(q, k)| (q.len(), *k)).collect::<Vec<_>>()
    );
    assert_eq!(total, CLIENTS);
    assert!(calls.len() < CLIENTS, "no coalescing: {} calls", calls.len());
    for (queries, k) in &calls {
        for q in queries {
            let i: usize = q[1..].parse().unwrap();
            assert_eq!(*k, 2 + i % 2, "query {q} searched with k {k}");
        }
    }
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let stub = Arc::new(Stub::with_delay(Duration::from_millis(300)));
    let (tx, started) = mpsc::channel();
    *stub.started.lock().unwrap() = Some(tx);
    let server = start(stub.clone(), config());
    let url = server.url();
    let client = {
        let url = url.clone();
        std::thread::spawn(move || post(&agent(), &url, "/search", r#"{"query":"late","top_n":1}"#))
    };
    // The request is inside the search when shutdown begins.
    started.recv_timeout(Duration::from_secs(60)).unwrap();
    server.shutdown().unwrap();
    let a = client.join().unwrap();
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, r#"[{"id":"late#0","contents":"\"late\"\ntext 0"}]"#)
    );
    // Stopped: nothing listens any more.
    let err = agent().get(&format!("{url}/health")).call().unwrap_err();
    assert!(matches!(err, ureq::Error::Transport(_)), "{err}");
}

#[test]
fn shutdown_gives_up_after_the_grace_period() {
    let stub = Arc::new(Stub::with_delay(Duration::from_secs(20)));
    let (tx, started) = mpsc::channel();
    *stub.started.lock().unwrap() = Some(tx);
    let server = start(
        stub.clone(),
        research_serve::ServerConfig {
            shutdown_grace: Duration::from_millis(100),
            ..config()
        },
    );
    let url = server.url();
    // Ok(transport error text) when the connection is closed, Err(what came instead) otherwise.
    let client = std::thread::spawn(move || {
        match agent()
            .post(&format!("{url}/search"))
            .send_string(r#"{"query":"stuck"}"#)
        {
            Err(ureq::Error::Transport(t)) => Ok(t.to_string()),
            other => Err(format!("{:?}", other.map(|r| r.status()).map_err(|e| e.to_string()))),
        }
    });
    started.recv_timeout(Duration::from_secs(60)).unwrap();
    // Returns without waiting for the 20 s search; the stuck request's connection is closed.
    server.shutdown().unwrap();
    let outcome = client.join().unwrap();
    assert!(outcome.is_ok(), "expected the connection to be closed, got {outcome:?}");
}
