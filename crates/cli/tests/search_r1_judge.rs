//! `research eval|ask --loop search-r1`, the LLM judge of `research eval`, and `research data
//! prepare-musique`, end to end on the CPU: a tiny random Qwen2 with the real tokenizer, shipped
//! data, and loopback stubs of a ReSearch-API retriever and an OpenAI-compatible judge.
//! (Helpers as in `eval.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

mod common;
use common::{research, root, tiny_model};

/// One HTTP request read from a stream: (request line, lower-cased headers, body).
fn read_request(stream: &std::net::TcpStream) -> (String, Vec<(String, String)>, serde_json::Value) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = vec![];
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    (
        request_line.trim_end().to_string(),
        headers,
        serde_json::from_slice(&body).unwrap_or_default(),
    )
}

fn respond(mut stream: std::net::TcpStream, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Serves on loopback, answering each request with `reply(request line, headers, body)` and
/// recording the requests. Returns the base URL.
#[allow(clippy::type_complexity)]
fn serve(
    reply: impl Fn(&serde_json::Value) -> String + Send + 'static,
) -> (
    String,
    Arc<Mutex<Vec<(String, Vec<(String, String)>, serde_json::Value)>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(stream) = stream else { continue };
            let req = read_request(&stream);
            let out = reply(&req.2);
            log.lock().unwrap().push(req);
            respond(stream, &out);
        }
    });
    (url, seen)
}

/// A ReSearch-API retriever: two passages per query.
fn retriever() -> String {
    serve(|req| {
        let docs: Vec<serde_json::Value> = req["query"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| serde_json::json!([{"id": "7", "contents": format!("\"Doc\"\nabout {q}")}, {"id": "8", "contents": "Other\ntext"}]))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::Value::Array(docs).to_string()
    })
    .0
}

#[test]
fn eval_search_r1_with_a_judge() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model(&model);
    let url = retriever();
    // The judge says "correct" for Bamboogle's first question only.
    let (judge_url, judged) = serve(|req| {
        let user = req["messages"][1]["content"].as_str().unwrap_or_default();
        let verdict = if user.contains("Who was president of the United States in the year that Citibank was founded?")
        {
            "correct"
        } else {
            "incorrect"
        };
        let content = format!("{{\"rationale\": \"stub\", \"judgement\": \"{verdict}\"}}");
        serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).to_string()
    });
    let out = tmp.path().join("out");
    let out_s = out.to_str().unwrap().to_string();
    let judge_v1 = format!("{judge_url}/v1");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--retriever-url",
        &url,
        "--dataset",
        "bamboogle",
        "--limit",
        "3",
        "--batch-size",
        "2",
        "--loop",
        "search-r1",
        "--turn-tokens",
        "6",
        "--max-turns",
        "1",
        "--out",
        &out_s,
        "--judge-url",
        &judge_v1,
        "--judge-model",
        "stub-judge",
        "--judge-key-env",
        "RESEARCH_TEST_JUDGE_KEY",
    ];
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_research"))
            .args(args)
            .current_dir(root())
            .env("RESEARCH_TEST_JUDGE_KEY", "sk-stub")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["metrics"]["count"], 3);
    assert_eq!(summary["judge"]["model"], "stub-judge");
    assert_eq!(summary["judge"]["judged"], 3);
    assert!((summary["judge"]["score"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    let items: Vec<serde_json::Value> = std::fs::read_to_string(out.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["judgement"]["judgement"], "correct");
    assert_eq!(items[1]["judgement"]["judgement"], "incorrect");
    assert_eq!(items[0]["judgement"]["rationale"], "stub");
    for it in &items {
        assert!(it["finish"] == "answer" || it["finish"] == "max_turns", "{it}");
    }
    {
        let seen = judged.lock().unwrap();
        assert_eq!(seen.len(), 3);
        for (line, headers, body) in seen.iter() {
            assert_eq!(line, "POST /v1/chat/completions HTTP/1.1");
            assert!(headers.contains(&("authorization".to_string(), "Bearer sk-stub".to_string())));
            assert_eq!(body["model"], "stub-judge");
            assert_eq!(body["temperature"], 0);
        }
    }

    // A missing key variable is one clear error line, before any model work.
    let (code, err) = Command::new(env!("CARGO_BIN_EXE_research"))
        .args(args)
        .current_dir(root())
        .env_remove("RESEARCH_TEST_JUDGE_KEY")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stderr).to_string(),
            )
        })
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        err.lines().count() == 1 && err.contains("RESEARCH_TEST_JUDGE_KEY"),
        "{err}"
    );
}

#[test]
fn ask_search_r1_prints_the_trace() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path());
    let url = retriever();
    let (code, out, err) = research(&[
        "ask",
        "--model",
        tmp.path().to_str().unwrap(),
        "--retriever-url",
        &url,
        "--loop",
        "search-r1",
        "--turn-tokens",
        "4",
        "--max-turns",
        "1",
        "Who wrote Dune?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("turns") && out.contains("finished"), "{out}");
}

#[test]
fn prepare_musique_writes_parquet_that_reads_back_as_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("musique");
    let (code, stdout, err) = research(&[
        "data",
        "prepare-musique",
        "--input",
        "data/eval/musique",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("19938 rows") && stdout.contains("2417 rows"),
        "{stdout}"
    );
    for (split, name) in [("train", "train"), ("dev", "test")] {
        let questions =
            research::eval::read_questions(&root().join(format!("data/eval/musique/{split}.jsonl.zst"))).unwrap();
        let rows = research::eval::read_training_parquet(&out.join(format!("{name}.parquet"))).unwrap();
        assert_eq!(rows.len(), questions.len());
        for (r, q) in rows.iter().zip(&questions) {
            assert_eq!(
                (
                    r.data_source.as_str(),
                    r.ability.as_str(),
                    r.reward_model.style.as_str()
                ),
                ("musique", "qa", "rule")
            );
            assert_eq!(
                (&r.question, &r.reward_model.ground_truth, &r.extra_info.id),
                (&q.question, &q.golden_answers, &q.id)
            );
        }
        let jsonl = std::fs::read_to_string(out.join(format!("{name}.jsonl"))).unwrap();
        let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"data_source": "musique", "question": questions[0].question, "ability": "qa",
                "reward_model": {"style": "rule", "ground_truth": questions[0].golden_answers},
                "extra_info": {"id": questions[0].id}})
        );
    }
    let (code, _, err) = research(&[
        "data",
        "prepare-musique",
        "--input",
        "data/eval",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no train.jsonl"), "{err}");
}
