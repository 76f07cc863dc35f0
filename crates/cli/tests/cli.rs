//! The `research` binary end to end: output shapes and one-line errors.

mod common;
use common::{research, root};

fn fails_with(args: &[&str], needle: &str) {
    let (code, _, err) = research(args);
    assert_eq!(code, 1, "{args:?} should fail: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

const MODEL: &str = "tests/fixtures/qwen2/untied_gqa";

#[test]
fn tokenize_prints_ids_as_json() {
    let (code, out, err) = research(&[
        "tokenize",
        "--tokenizer",
        "data/qwen2.5_tokenizer",
        "--text",
        "Hello world",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"], serde_json::json!([9707, 1879]));
}

#[test]
fn tokenize_chat_renders_the_template() {
    let (code, out, err) = research(&[
        "tokenize",
        "--tokenizer",
        "data/qwen2.5_tokenizer",
        "--text",
        "Hi",
        "--chat",
        "--system",
        "S",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["text"],
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(v["ids"][0], 151644);
}

#[test]
fn generate_json_has_ids_text_and_finish_reason() {
    let (code, out, err) = research(&[
        "generate",
        "--model",
        MODEL,
        "--ids",
        "1,2,3",
        "--max-new-tokens",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 5);
    assert_eq!(v["finish_reason"], "length");
    assert!(v.get("text").is_some());
}

#[test]
fn score_json_matches_transformers_reference() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(MODEL).join("reference.json")).unwrap()).unwrap();
    let seq = &reference["teacher_forced"][0];
    let ids: Vec<String> = seq["ids"].as_array().unwrap().iter().map(|x| x.to_string()).collect();
    let ids = ids.join(",");
    let (code, out, err) = research(&["score", "--model", MODEL, "--ids", &ids, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got = v["logprobs"].as_array().unwrap();
    let want = seq["logprobs"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 1e-4);
    }
    let mean: f64 = -want.iter().map(|w| w.as_f64().unwrap()).sum::<f64>() / want.len() as f64;
    assert!((v["mean_nll"].as_f64().unwrap() - mean).abs() < 1e-4);
    assert!((v["perplexity"].as_f64().unwrap() - mean.exp()).abs() < 1e-3 * mean.exp());
}

#[test]
fn bad_input_gives_one_error_line() {
    fails_with(
        &["generate", "--model", "/nonexistent/dir", "--ids", "1"],
        "no such directory",
    );
    fails_with(
        &["generate", "--model", MODEL, "--ids", "1", "--backend", "metal"],
        "unknown backend `metal`",
    );
    fails_with(&["generate", "--model", MODEL, "--ids", "1", "--dtype", "bf16"], "bf16");
    fails_with(
        &["generate", "--model", MODEL, "--ids", "1,99999"],
        "outside the vocabulary",
    );
    fails_with(&["generate", "--model", MODEL, "--prompt", "hello"], "tokenizer.json");
    fails_with(
        &["generate", "--model", MODEL, "--ids", "1", "--max-new-tokens", "100000"],
        "context",
    );
    fails_with(&["score", "--model", MODEL, "--ids", "1"], "at least 2 tokens");
    fails_with(&["generate", "--model", MODEL, "--ids", "1,x"], "`x` is not a token id");
    fails_with(&["tokenize", "--tokenizer", "/nonexistent", "--text", "x"], "not found");
    if !cfg!(feature = "cuda") {
        fails_with(
            &["generate", "--model", MODEL, "--ids", "1", "--backend", "cuda"],
            "not compiled",
        );
    }
}

#[test]
fn reward_scores_a_response_and_says_why() {
    let dir = std::env::temp_dir().join(format!("research-reward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.txt");
    std::fs::write(&good, "<think> x </think> <answer> \\boxed{Paris} </answer><|im_end|>").unwrap();
    let good = good.to_str().unwrap();
    let (code, out, err) = research(&["reward", "--response", good, "--golden", "[\"paris\"]", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["score"], 1.0);
    // Hand-worked: "Paris" vs "Paris France" has F1 2·(1·0.5)/(1+0.5) = 2/3.
    let (_, out, _) = research(&["reward", "--response", good, "--golden", "[\"Paris France\"]", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!((v["score"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // A base model's EOS is <|endoftext|>: this response lacks it.
    let (_, out, _) = research(&[
        "reward",
        "--response",
        good,
        "--golden",
        "[\"Paris\"]",
        "--eos",
        "<|endoftext|>",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["score"], 0.0);
    assert!(v["reason"].as_str().unwrap().contains("EOS"));
    fails_with(&["reward", "--response", good, "--golden", "Paris"], "--golden");
    fails_with(
        &["reward", "--response", "/nonexistent.txt", "--golden", "[]"],
        "/nonexistent.txt",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_explains_the_commands() {
    let (code, out, _) = research(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["generate", "score", "tokenize"] {
        assert!(out.contains(cmd));
    }
    let (code, out, _) = research(&["generate", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--temperature",
        "--top-p",
        "--top-k",
        "--seed",
        "--stop",
        "--backend",
        "--dtype",
        "--json",
        "--chat",
    ] {
        assert!(out.contains(flag), "generate --help lacks {flag}");
    }
}
