//! `research eval` and `research ask` end to end on the CPU: a tiny random Qwen2 with the real
//! Qwen2.5 tokenizer, the shipped Bamboogle set, and a ReSearch-API retriever stub on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A checkpoint directory with random weights of a tiny shape and the real tokenizer.
fn tiny_model(dir: &Path) {
    let (v, h, i) = (151936usize, 16usize, 32usize);
    let config = serde_json::json!({
        "model_type": "qwen2", "vocab_size": v, "hidden_size": h, "intermediate_size": i,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
        "tie_word_embeddings": true, "torch_dtype": "float32", "eos_token_id": [151645, 151643]
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut x = 12345u32;
    let mut rand = |n: usize, scale: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                ((x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0)
                    .mul_add(scale, 0.0)
                    .to_le_bytes()
            })
            .collect()
    };
    let ones = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect() };
    let kv = h / 2;
    let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
        ("model.embed_tokens.weight", vec![v, h], rand(v * h, 0.5)),
        ("model.norm.weight", vec![h], ones(h)),
        ("model.layers.0.input_layernorm.weight", vec![h], ones(h)),
        ("model.layers.0.post_attention_layernorm.weight", vec![h], ones(h)),
        ("model.layers.0.self_attn.q_proj.weight", vec![h, h], rand(h * h, 0.3)),
        ("model.layers.0.self_attn.q_proj.bias", vec![h], rand(h, 0.1)),
        ("model.layers.0.self_attn.k_proj.weight", vec![kv, h], rand(kv * h, 0.3)),
        ("model.layers.0.self_attn.k_proj.bias", vec![kv], rand(kv, 0.1)),
        ("model.layers.0.self_attn.v_proj.weight", vec![kv, h], rand(kv * h, 0.3)),
        ("model.layers.0.self_attn.v_proj.bias", vec![kv], rand(kv, 0.1)),
        ("model.layers.0.self_attn.o_proj.weight", vec![h, h], rand(h * h, 0.3)),
        ("model.layers.0.mlp.gate_proj.weight", vec![i, h], rand(i * h, 0.3)),
        ("model.layers.0.mlp.up_proj.weight", vec![i, h], rand(i * h, 0.3)),
        ("model.layers.0.mlp.down_proj.weight", vec![h, i], rand(h * i, 0.3)),
    ];
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        root().join("data/qwen2.5_tokenizer/tokenizer.json.zst"),
        dir.join("tokenizer.json.zst"),
    )
    .unwrap();
}

/// Serves POST /batch_search on loopback: two passages per query. Returns the base URL.
fn stub_retriever() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let docs: Vec<serde_json::Value> = req["query"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| serde_json::json!([{"id": "7", "contents": format!("\"Doc\"\nabout {q}")}, {"id": "8", "contents": "\"Other\"\ntext"}]))
                        .collect()
                })
                .unwrap_or_default();
            let out = serde_json::Value::Array(docs).to_string();
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}", out.len());
        }
    });
    url
}

fn research(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_research"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn eval_runs_to_a_summary_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model(&model);
    let url = stub_retriever();
    let out = tmp.path().join("out");
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
        "--max-new-tokens",
        "24",
        "--batch-size",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, stdout, err) = research(&args);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["metrics"]["count"], 3);
    assert!(stdout.contains("\"em\""));
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = items.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], "test_0");
    assert!(lines
        .iter()
        .all(|l| l["golden_answers"].as_array().is_some_and(|a| !a.is_empty())));
    // Rerun: every question is already there, nothing is appended.
    let (code, _, err) = research(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("items.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn eval_errors_are_one_line() {
    let (code, _, err) = research(&[
        "eval",
        "--model",
        "tests/fixtures/qwen2/untied_gqa",
        "--retriever-url",
        "http://127.0.0.1:9",
        "--dataset",
        "nq",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.lines().count() == 1 && err.contains("unknown dataset `nq`"),
        "{err}"
    );
}

#[test]
fn ask_prints_the_trace() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path());
    let url = stub_retriever();
    let (code, out, err) = research(&[
        "ask",
        "--model",
        tmp.path().to_str().unwrap(),
        "--retriever-url",
        &url,
        "--max-new-tokens",
        "16",
        "Who wrote Dune?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("searches") && out.contains("finished"), "{out}");
}
