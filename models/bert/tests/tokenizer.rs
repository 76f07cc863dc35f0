//! WordPiece ids against HF tokenizers / transformers: e5-base-v2's reference encodings (every
//! line), all-MiniLM-L6-v2's reference ids (its tokenizer.json pads to 128 and truncates; both must
//! be off), and transformers' truncation (`truncation=True, max_length=n`) on e5's and the tiny
//! fixture's tokenizers.

mod common;

use common::{fixture, ids, jsonl, repo};
use research_bert::BertTokenizer;

#[test]
fn e5_ids_equal_hf_tokenizers_on_every_reference_line() {
    let tok = BertTokenizer::from_path(repo().join("data/e5-base-v2")).unwrap();
    let rows = jsonl(&repo().join("data/e5-base-v2/tests/hf_tokenizers_reference_encodings.jsonl"));
    assert_eq!(rows.len(), 175);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["note"], "add_special_tokens=True, no truncation", "line {}", i + 1);
        let text = r["text"].as_str().unwrap();
        let want = ids(&r["ids"]);
        assert_eq!(tok.encode(text, None).unwrap(), want, "line {}: {text:?}", i + 1);
        // The token strings too (the reference carries them).
        let tokens: Vec<String> = want.iter().map(|&id| tok.id_to_token(id).unwrap()).collect();
        let want_tokens: Vec<String> = r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tokens, want_tokens, "line {}", i + 1);
    }
}

#[test]
fn minilm_ids_are_unpadded_and_equal_the_reference() {
    // all-MiniLM-L6-v2's tokenizer.json turns on fixed padding to 128 and truncation at 128.
    let tok = BertTokenizer::from_path(repo().join("data/minilm/tokenizer.json")).unwrap();
    assert_eq!(tok.pad_id(), 0);
    let rows = jsonl(&repo().join("data/minilm/tests/reference_embeddings.jsonl"));
    assert_eq!(rows.len(), 40);
    // Passages longer than 128 tokens prove truncation is off, short questions that padding is.
    assert!(rows.iter().any(|r| r["input_ids"].as_array().unwrap().len() > 128));
    for (i, r) in rows.iter().enumerate() {
        let text = r["text"].as_str().unwrap();
        // The reference ran with truncation at 256 (no row reaches it).
        assert_eq!(
            tok.encode(text, Some(256)).unwrap(),
            ids(&r["input_ids"]),
            "line {}",
            i + 1
        );
        assert_eq!(tok.encode(text, None).unwrap(), ids(&r["input_ids"]), "line {}", i + 1);
    }
}

#[test]
fn truncation_equals_transformers() {
    for (dir, reference) in [
        (repo().join("data/e5-base-v2"), fixture("e5_truncation_reference.jsonl")),
        (fixture("tiny"), fixture("tiny/reference.json")),
    ] {
        let tok = BertTokenizer::from_path(&dir).unwrap();
        let rows = if reference.extension().is_some_and(|e| e == "json") {
            common::json(&reference)["truncation"].as_array().unwrap().clone()
        } else {
            jsonl(&reference)
        };
        assert!(rows.len() >= 12, "{}", reference.display());
        let mut cut = 0;
        for r in &rows {
            let (text, n) = (r["text"].as_str().unwrap(), r["max_length"].as_u64().unwrap() as usize);
            let got = tok.encode(text, Some(n)).unwrap();
            assert_eq!(got, ids(&r["ids"]), "{}: max_length {n}: {text:?}", reference.display());
            cut += usize::from(tok.encode(text, None).unwrap().len() > n);
        }
        assert!(cut > 0, "{}: some rows must actually be truncated", reference.display());
    }
}

#[test]
fn bad_tokenizer_files_are_errors_naming_the_file() {
    let e = BertTokenizer::from_path("/nonexistent/tokenizer.json")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, "{not json").unwrap();
    let e = BertTokenizer::from_path(&p).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("tokenizer"), "{e}");
    let tok = BertTokenizer::from_path(repo().join("data/e5-base-v2")).unwrap();
    let e = tok.encode("query: x", Some(2)).unwrap_err().to_string();
    assert!(e.contains("max length 2"), "{e}");
}
