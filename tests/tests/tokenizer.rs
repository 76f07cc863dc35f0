//! The Qwen2.5 tokenizer and chat template against HF references.
//!
//! `data/qwen2.5_tokenizer/tests/hf_tokenizers_reference_encodings.jsonl` comes from HF tokenizers
//! 0.23 (see data/README.md); `tests/fixtures/chat_template_reference.jsonl` from transformers'
//! `apply_chat_template` over the real `tokenizer_config.json` (tests/fixtures/gen_qwen2_fixtures.py).

use research::prelude::*;
use research_tests::{data, fixture};
use serde_json::Value;

fn tokenizer() -> Qwen2Tokenizer {
    Qwen2Tokenizer::from_path(data("qwen2.5_tokenizer")).expect("shipped tokenizer")
}

fn lines(path: std::path::PathBuf) -> Vec<Value> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn encodings_equal_hf_tokenizers_on_every_reference_line() {
    let tok = tokenizer();
    let refs = lines(data("qwen2.5_tokenizer/tests/hf_tokenizers_reference_encodings.jsonl"));
    assert!(refs.len() >= 175, "reference file has {} lines", refs.len());
    for (i, r) in refs.iter().enumerate() {
        let text = r["text"].as_str().expect("text");
        assert_eq!(tok.encode(text).unwrap(), ids(&r["ids"]), "line {}: {text:?}", i + 1);
    }
}

#[test]
fn decoding_reproduces_the_reference_texts() {
    // HF decode of a byte-level BPE is the concatenated bytes; for NFC text that is the text.
    let tok = tokenizer();
    for r in lines(data("qwen2.5_tokenizer/tests/hf_tokenizers_reference_encodings.jsonl")) {
        let text = r["text"].as_str().unwrap();
        let decoded = tok.decode(&ids(&r["ids"]));
        if text.is_ascii() {
            assert_eq!(decoded, text);
        }
    }
}

#[test]
fn special_tokens_have_their_ids() {
    let tok = tokenizer();
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(151643));
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(151644));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(151645));
    assert_eq!(tok.encode("<|im_start|>user").unwrap()[0], 151644);
    assert_eq!(tok.token_bytes(151645), b"<|im_end|>");
}

#[test]
fn chat_template_equals_transformers_apply_chat_template() {
    let tok = tokenizer();
    let refs = lines(fixture("chat_template_reference.jsonl"));
    assert!(refs.len() >= 8);
    for r in refs {
        let mut msgs = vec![];
        if let Some(s) = r["system"].as_str() {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", r["user"].as_str().unwrap()));
        let text = render_chat(&msgs, true);
        assert_eq!(text, r["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text).unwrap(), ids(&r["ids"]), "{text:?}");
    }
}

#[test]
fn missing_tokenizer_is_a_clear_error() {
    let dir = tempfile_dir();
    let err = Qwen2Tokenizer::from_path(dir.path()).err().expect("error").to_string();
    assert!(err.contains("tokenizer.json") && err.contains("not found"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
    let err = Qwen2Tokenizer::from_path(dir.path()).err().expect("error").to_string();
    assert!(err.contains("tokenizer.json") && err.contains("tokenizer"), "{err}");
}

fn tempfile_dir() -> research_tests::TempDir {
    research_tests::TempDir::new()
}
