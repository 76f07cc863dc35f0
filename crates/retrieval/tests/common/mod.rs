//! Helpers shared by the integration tests: repository paths, zstd files, the MiniLM weights.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root: `$RESEARCH_REPO_ROOT` (a test binary run on another machine), else the
/// one this crate was compiled in.
pub fn repo() -> PathBuf {
    std::env::var_os("RESEARCH_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A file's text, decompressed when it ends in `.zst`.
pub fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "zst") {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut ruzstd::decoding::StreamingDecoder::new(bytes.as_slice()).unwrap(),
            &mut text,
        )
        .unwrap();
        text
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// The all-MiniLM-L6-v2 checkpoint folder: `$RESEARCH_MINILM_DIR`, else `<repo>/../shared/data/minilm`,
/// if it holds `model.safetensors`; otherwise prints a note and returns `None` (the test skips).
pub fn minilm_dir() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("RESEARCH_MINILM_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join("../shared/data/minilm")])
        .collect();
    let found = candidates
        .iter()
        .find(|d| d.join("model.safetensors").is_file())
        .cloned();
    if found.is_none() {
        eprintln!(
            "NOTE: all-MiniLM-L6-v2 weights not found (looked for model.safetensors in {}); set \
             RESEARCH_MINILM_DIR to run this test. Skipping.",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    found
}

/// One question of a 500-question subset with the titles of its gold paragraphs.
pub struct SubsetQuestion {
    pub question: String,
    pub gold_titles: Vec<String>,
}

/// `data/eval/subsets500/<name>.json.zst`: `[{"Question", "golden_context": ["Title\n text", …]}]`.
pub fn subset(name: &str) -> Vec<SubsetQuestion> {
    let path = repo().join(format!("data/eval/subsets500/{name}.json.zst"));
    let v: serde_json::Value = serde_json::from_str(&read_text(&path)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|q| SubsetQuestion {
            question: q["Question"].as_str().unwrap().to_string(),
            gold_titles: q["golden_context"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| {
                    let t = c.as_str().unwrap().split('\n').next().unwrap().trim();
                    (!t.is_empty()).then(|| t.to_string())
                })
                .collect(),
        })
        .collect()
}

/// The title of a wiki-18 passage (`"Title"\ntext`, quotes removed).
pub fn passage_title(contents: &str) -> &str {
    let t = contents.split('\n').next().unwrap_or("");
    t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(t)
}
