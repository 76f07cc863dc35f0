//! `research eval --index` and `research bench rollout` on the CPU with an in-process index: a
//! tiny random BERT (the `models/bert` fixture, positions widened to 128 so the default query
//! length fits) indexes the shipped 1,000-passage FlashRAG sample; a tiny random Qwen2 with the
//! real Qwen2.5 tokenizer runs the loop on the shipped Bamboogle questions.

use std::path::{Path, PathBuf};

mod common;
use common::{research, root, tiny_model, write_safetensors};

/// The tiny BERT fixture with 128 positions (its own 64 rows repeated), so that the default
/// query length (128) fits.
fn tiny_encoder(dir: &Path) {
    let src = root().join("models/bert/tests/fixtures/bert/tiny");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["max_position_embeddings"] = 128.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let mut shape = t.shape().to_vec();
            let mut data = t.data().to_vec();
            if name == "embeddings.position_embeddings.weight" {
                assert_eq!(shape[0], 64);
                shape[0] = 128;
                data = [data.clone(), data].concat();
            }
            (name, shape, data)
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors);
}

struct Fixture {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    config: PathBuf,
    index: PathBuf,
}

/// The model, and the index over the shipped sample corpus, in a fresh temporary folder.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let enc = tmp.path().join("encoder");
    tiny_encoder(&enc);
    let index = tmp.path().join("index");
    let (code, out, err) = research(&[
        "index",
        "--corpus",
        "data/corpus/flashrag_sample_data_1000.jsonl.zst",
        "--encoder",
        enc.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--passage-max-len",
        "64",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["rows"], 1000, "{out}");
    assert_eq!(report["complete"], true, "{out}");
    Fixture {
        config: model.join("config.json"),
        _tmp: tmp,
        model,
        index,
    }
}

#[test]
fn eval_runs_with_an_in_process_index() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (code, stdout, err) = research(&[
        "eval",
        "--model",
        f.model.to_str().unwrap(),
        "--index",
        f.index.to_str().unwrap(),
        "--dataset",
        "bamboogle",
        "--limit",
        "3",
        "--max-new-tokens",
        "24",
        "--top-k",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("\"em\""), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["metrics"]["count"], 3);
    let items: Vec<serde_json::Value> = std::fs::read_to_string(out.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The first three Bamboogle questions, in order, each with the fields docs/evaluation.md names.
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["test_0", "test_1", "test_2"]);
    let mut searches = 0;
    for item in &items {
        for field in [
            "question",
            "golden_answers",
            "prediction",
            "metrics",
            "reward",
            "searches",
            "finish",
            "response",
        ] {
            assert!(item.get(field).is_some(), "items.jsonl lacks `{field}`: {item}");
        }
        // Any search the random model made was answered from the index: 2 passages, ids that are
        // rows of the 1,000-passage corpus.
        for s in item["searches"].as_array().unwrap() {
            searches += 1;
            let hits = s["ids"].as_array().unwrap();
            assert_eq!(hits.len(), 2, "{s}");
            assert!(
                hits.iter()
                    .all(|id| id.as_str().unwrap().parse::<u32>().unwrap() < 1000),
                "{s}"
            );
        }
    }
    let per_question = summary["searches_per_question"].as_f64().unwrap();
    assert!((per_question - searches as f64 / 3.0).abs() < 1e-9, "{summary}");
}

#[test]
fn exactly_one_retriever_is_required() {
    let model = "tests/fixtures/qwen2/untied_gqa";
    let (code, _, err) = research(&["eval", "--model", model, "--dataset", "bamboogle"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--index") && err.contains("--retriever-url"), "{err}");
    let (code, _, err) = research(&[
        "ask",
        "--model",
        model,
        "--index",
        "some/index",
        "--retriever-url",
        "http://127.0.0.1:9",
        "Who?",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = research(&[
        "bench",
        "rollout",
        "--config",
        "data/qwen2.5_configs/Qwen2.5-7B-Instruct/config.json",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--index") && err.contains("--retriever-url"), "{err}");
    // A missing index is one error line naming the folder.
    let (code, _, err) = research(&[
        "eval",
        "--model",
        model,
        "--dataset",
        "bamboogle",
        "--index",
        "/nonexistent/index",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.lines().count() == 1 && err.contains("/nonexistent/index"), "{err}");
}

#[test]
fn ask_answers_from_the_index() {
    let f = fixture();
    let (code, out, err) = research(&[
        "ask",
        "--model",
        f.model.to_str().unwrap(),
        "--index",
        f.index.to_str().unwrap(),
        "--max-new-tokens",
        "16",
        "Who wrote Dune?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("searches") && out.contains("finished"), "{out}");
}

#[test]
fn bench_rollout_reports_consistent_figures() {
    let f = fixture();
    let (questions, n, forced, budget) = (3usize, 2usize, 2usize, 700usize);
    let (code, out, err) = research(&[
        "bench",
        "rollout",
        "--config",
        f.config.to_str().unwrap(),
        "--index",
        f.index.to_str().unwrap(),
        "--dataset",
        "bamboogle",
        "--limit",
        &questions.to_string(),
        "--samples-per-prompt",
        &n.to_string(),
        "--forced-searches",
        &forced.to_string(),
        "--top-k",
        "1",
        "--max-response-tokens",
        &budget.to_string(),
        "--dtype",
        "f32",
        "--warmup-tokens",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {out}");
    let r: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("`{k}` missing: {r}")) as usize;
    let x = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("`{k}` missing: {r}"));
    assert_eq!(r["backend"], "cpu");
    assert_eq!(r["dtype"], "f32");
    assert_eq!(u("questions"), questions);
    assert_eq!(u("sequences"), questions * n);
    // A scripted search is ~20 tokens plus one passage of a 64-token-max encoder's corpus
    // (at most ~250 tokens): both searches fit in 700 tokens, and every row stops at the same turn, so
    // each turn is one retriever call for all rows.
    assert_eq!(u("searches"), questions * n * forced);
    assert_eq!(u("retriever_calls"), forced);
    assert_eq!(u("finish_eos") + u("finish_length"), questions * n);
    let (generated, inserted) = (u("generated_tokens"), u("inserted_tokens"));
    assert!(inserted > 0 && generated > 0, "{r}");
    assert!(generated + inserted <= questions * n * budget, "{r}");
    assert!(
        u("prompt_tokens") > questions * n * 100,
        "the ReSearch prompt is long: {r}"
    );
    let (total, generation, retrieval) = (x("total_s"), x("generation_s"), x("retrieval_s"));
    assert!(total > 0.0 && retrieval > 0.0 && generation > 0.0, "{r}");
    assert!((generation + retrieval - total).abs() <= 1e-6 * total, "{r}");
    assert!((x("generation_share") + x("retrieval_share") - 1.0).abs() < 1e-9, "{r}");
    assert!((x("retrieval_share") - retrieval / total).abs() < 1e-9, "{r}");
    assert!((x("sequences_per_s") - (questions * n) as f64 / total).abs() < 1e-6 * x("sequences_per_s"));
    assert!((x("generated_tokens_per_s") - generated as f64 / total).abs() < 1e-6 * x("generated_tokens_per_s"));
}
