//! The LLM judge against a loopback stub of an OpenAI-compatible server that records every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use research_eval::{Judge, JudgeConfig};

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Reply = Box<dyn Fn(usize, &serde_json::Value) -> (u16, String) + Send>;

/// Serves on loopback; `reply(i, body)` gives the status and body for the i-th request.
fn stub(reply: Reply) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
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
                    headers.push((n.trim().to_string(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let (status, out) = reply(i, &body);
            log.lock().unwrap().push(Seen {
                request_line: request_line.trim_end().to_string(),
                headers,
                body,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                out.len()
            );
        }
    });
    (url, seen)
}

/// A chat-completions response whose message content is `content`.
fn completion(content: &str) -> String {
    serde_json::json!({"id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
    .to_string()
}

fn config(url: &str) -> JudgeConfig {
    JudgeConfig {
        api_key: Some("sk-test".into()),
        retries: 2,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(10),
        ..JudgeConfig::new(url, "judge-m")
    }
}

#[test]
fn request_shape_and_a_retried_server_error() {
    let (url, seen) = stub(Box::new(|i, _| {
        if i == 0 {
            (500, "{\"error\": \"overloaded\"}".into())
        } else {
            (
                200,
                completion("{\"rationale\": \"Paris is the capital.\", \"judgement\": \"correct\"}"),
            )
        }
    }));
    let judge = Judge::new(config(&format!("{url}/v1")));
    let j = judge
        .judge("What is the capital of France?", &["Paris".to_string()], "paris")
        .unwrap();
    assert!(j.is_correct());
    assert_eq!(j.rationale, "Paris is the capital.");
    assert_eq!(j.model, "judge-m");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one failure, one retry");
    let r = &seen[1];
    assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(r.body["model"], "judge-m");
    assert_eq!(r.body["temperature"], 0);
    assert_eq!(r.body["response_format"]["type"], "json_object");
    let messages = r.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    let user = messages[1]["content"].as_str().unwrap();
    assert!(user.contains("Question: What is the capital of France?"), "{user}");
    assert!(user.contains("[\"Paris\"]"), "{user}");
    assert!(user.contains("Predicted answer: paris"), "{user}");
    assert!(
        user.contains("\"rationale\"") && user.contains("\"judgement\""),
        "{user}"
    );
    assert_eq!(seen[0].body, seen[1].body, "the retry sends the same request");
}

#[test]
fn a_client_error_is_not_retried_and_names_the_status() {
    let (url, seen) = stub(Box::new(|_, _| {
        (401, "{\"error\": {\"message\": \"Incorrect API key provided\"}}".into())
    }));
    let err = Judge::new(config(&url))
        .judge("q", &["a".to_string()], "a")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LLM judge") && err.contains("HTTP 401") && err.contains("Incorrect API key"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_reply_that_is_not_the_json_verdict_is_retried_then_reported() {
    let (url, seen) = stub(Box::new(|_, _| (200, completion("I think it is correct."))));
    let err = Judge::new(config(&url))
        .judge("q", &["a".to_string()], "a")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed 3 times") && err.contains("no JSON object"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn concurrent_verdicts_come_back_in_order() {
    let (url, seen) = stub(Box::new(|_, body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        let verdict = if user.contains("Predicted answer: right") {
            "correct"
        } else {
            "incorrect"
        };
        (
            200,
            completion(&format!("{{\"rationale\": \"r\", \"judgement\": \"{verdict}\"}}")),
        )
    }));
    let judge = Judge::new(JudgeConfig {
        concurrency: 3,
        api_key: None,
        ..config(&url)
    });
    let golden = vec!["g".to_string()];
    let preds = ["right", "wrong", "right", "right", "wrong"];
    let items: Vec<(&str, &[String], &str)> = preds.iter().map(|p| ("q", golden.as_slice(), *p)).collect();
    let verdicts = judge.judge_all(&items).unwrap();
    assert_eq!(
        verdicts.iter().map(|j| j.is_correct()).collect::<Vec<_>>(),
        [true, false, true, true, false]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| s.header("authorization").is_none()));
}
