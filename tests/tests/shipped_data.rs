//! The shipped datasets decompress and hold what data/README.md says (counts from the source's
//! documentation, fields of the FlashRAG format).

use research_tests::data;

fn lines(rel: &str) -> Vec<serde_json::Value> {
    let path = data(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    let mut dec = ruzstd::decoding::StreamingDecoder::new(bytes.as_slice()).expect("zstd");
    std::io::Read::read_to_string(&mut dec, &mut text).expect("utf-8 jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn evaluation_sets_have_the_documented_sizes_and_fields() {
    for (rel, n) in [
        ("eval/hotpotqa/dev.jsonl.zst", 7405),
        ("eval/2wikimultihopqa/dev.jsonl.zst", 12576),
        ("eval/musique/dev.jsonl.zst", 2417),
        ("eval/musique/train.jsonl.zst", 19938),
        ("eval/bamboogle/test.jsonl.zst", 125),
    ] {
        let rows = lines(rel);
        assert_eq!(rows.len(), n, "{rel}");
        for r in &rows {
            assert!(r["id"].is_string() && r["question"].is_string(), "{rel}: {r}");
            assert!(
                !r["golden_answers"].as_array().expect("golden_answers").is_empty(),
                "{rel}: {r}"
            );
        }
    }
}

#[test]
fn corpora_have_ids_and_contents() {
    for (rel, n) in [
        ("corpus/wiki18_100w_subset_21896.jsonl.zst", 21896),
        ("corpus/flashrag_sample_data_1000.jsonl.zst", 1000),
    ] {
        let rows = lines(rel);
        assert_eq!(rows.len(), n, "{rel}");
        assert!(rows
            .iter()
            .all(|r| r["id"].is_string() && r["contents"].as_str().is_some_and(|c| c.contains('\n'))));
    }
}
