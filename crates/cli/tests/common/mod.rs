//! Helpers shared by the CLI tests: the repository root, running the `research` binary, a tiny
//! random Qwen2 checkpoint with the real Qwen2.5 tokenizer, and a ReSearch-API retriever stub.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the working directory of every `research` run here).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the `research` binary from the repository root: (exit code, stdout, stderr).
pub fn research(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_research"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run research");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` deterministic f32 values in [-scale, scale), little-endian bytes (an LCG from `seed`).
pub fn rand(n: usize, scale: f32, seed: &mut u32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| {
            *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (((*seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale).to_le_bytes()
        })
        .collect()
}

/// Writes f32 tensors `(name, shape, little-endian bytes)` as one safetensors file.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap();
            (n.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A tiny Qwen2 shape with the full Qwen2.5 vocabulary (so the real tokenizer fits).
pub fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
        "tie_word_embeddings": true, "torch_dtype": "float32", "eos_token_id": [151645, 151643]
    })
}

/// A checkpoint folder (created if missing) of the tiny shape with random weights and the real
/// tokenizer.
pub fn tiny_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), tiny_config().to_string()).unwrap();
    let (v, h, i, kv) = (151936usize, 16usize, 32usize, 8usize);
    let mut s = 12345u32;
    let ones = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| 1.0f32.to_le_bytes()).collect() };
    let l = "model.layers.0";
    let tensors = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![v, h],
            rand(v * h, 0.5, &mut s),
        ),
        ("model.norm.weight".into(), vec![h], ones(h)),
        (format!("{l}.input_layernorm.weight"), vec![h], ones(h)),
        (format!("{l}.post_attention_layernorm.weight"), vec![h], ones(h)),
        (
            format!("{l}.self_attn.q_proj.weight"),
            vec![h, h],
            rand(h * h, 0.3, &mut s),
        ),
        (format!("{l}.self_attn.q_proj.bias"), vec![h], rand(h, 0.1, &mut s)),
        (
            format!("{l}.self_attn.k_proj.weight"),
            vec![kv, h],
            rand(kv * h, 0.3, &mut s),
        ),
        (format!("{l}.self_attn.k_proj.bias"), vec![kv], rand(kv, 0.1, &mut s)),
        (
            format!("{l}.self_attn.v_proj.weight"),
            vec![kv, h],
            rand(kv * h, 0.3, &mut s),
        ),
        (format!("{l}.self_attn.v_proj.bias"), vec![kv], rand(kv, 0.1, &mut s)),
        (
            format!("{l}.self_attn.o_proj.weight"),
            vec![h, h],
            rand(h * h, 0.3, &mut s),
        ),
        (
            format!("{l}.mlp.gate_proj.weight"),
            vec![i, h],
            rand(i * h, 0.3, &mut s),
        ),
        (format!("{l}.mlp.up_proj.weight"), vec![i, h], rand(i * h, 0.3, &mut s)),
        (
            format!("{l}.mlp.down_proj.weight"),
            vec![h, i],
            rand(h * i, 0.3, &mut s),
        ),
    ];
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    std::fs::copy(
        root().join("data/qwen2.5_tokenizer/tokenizer.json.zst"),
        dir.join("tokenizer.json.zst"),
    )
    .unwrap();
}

/// Serves POST /batch_search on loopback: two passages per query. Returns the base URL.
pub fn stub_retriever() -> String {
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
