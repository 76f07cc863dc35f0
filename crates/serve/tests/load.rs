//! Load on loopback: 8 clients, 2,000 requests over all search routes, every answer checked,
//! latency percentiles and batching printed (no timed assertions).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 250;

#[test]
fn load_8_clients_2000_requests() {
    let stub = Arc::new(Stub::with_delay(Duration::from_micros(500)));
    let server = start(stub.clone(), config());
    let url = server.url();
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut latencies = Vec::with_capacity(PER_CLIENT);
                for r in 0..PER_CLIENT {
                    let q = format!("c{c}r{r}");
                    let t = Instant::now();
                    match r % 3 {
                        0 => {
                            let a = post(&agent, &url, "/search", &format!(r#"{{"query":"{q}","top_n":5}}"#));
                            assert_eq!(a.status, 200, "{}", a.body);
                            let v = a.json();
                            assert_eq!(v.as_array().unwrap().len(), 5);
                            assert_eq!(v[4]["id"], format!("{q}#4"));
                        }
                        1 => {
                            let body = format!(r#"{{"query":["{q}a","{q}b","{q}c"],"top_n":5,"return_score":true}}"#);
                            let a = post(&agent, &url, "/batch_search", &body);
                            assert_eq!(a.status, 200, "{}", a.body);
                            let v = a.json();
                            assert_eq!(v[0][2][0]["id"], format!("{q}c#0"));
                            assert_eq!(v[1][1][4], 0.5);
                        }
                        _ => {
                            let body = format!(r#"{{"queries":["{q}"],"topk":3,"return_scores":true}}"#);
                            let a = post(&agent, &url, "/retrieve", &body);
                            assert_eq!(a.status, 200, "{}", a.body);
                            let v = a.json();
                            assert_eq!(v["result"][0][2]["document"]["id"], format!("{q}#2"));
                        }
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let wall = started.elapsed();
    latencies.sort();
    let n = latencies.len();
    assert_eq!(n, CLIENTS * PER_CLIENT);
    let pct = |p: f64| latencies[((p / 100.0) * (n - 1) as f64).round() as usize].as_secs_f64() * 1e3;
    let calls = stub.calls();
    let queries: usize = calls.iter().map(|(q, _)| q.len()).sum();
    println!(
        "load: {n} requests from {CLIENTS} clients in {:.2} s ({:.0} req/s); latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; \
         {queries} queries in {} search calls ({:.1} queries per call)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0),
        calls.len(),
        queries as f64 / calls.len() as f64
    );
    // Every query was searched exactly once (1, 3 and 1 queries per route).
    let expected = (0..PER_CLIENT).map(|r| [1, 3, 1][r % 3]).sum::<usize>() * CLIENTS;
    assert_eq!(queries, expected);
    server.shutdown().unwrap();
}
