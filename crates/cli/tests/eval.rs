//! `research eval` and `research ask` end to end on the CPU: a tiny random Qwen2 with the real
//! Qwen2.5 tokenizer, the shipped Bamboogle set, and a ReSearch-API retriever stub on loopback.

mod common;
use common::{research, stub_retriever, tiny_model};

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
