//! The corpus store on hand-made files (both schemas, bad rows, `.zst`, reuse of the offset table)
//! and on the shipped FlashRAG sample corpus, read independently with `str::lines` + serde_json.

use std::path::{Path, PathBuf};

use research_retrieval::{Corpus, RetrievalError};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn contents_schema_numeric_ids_and_crlf() {
    let d = tempfile::tempdir().unwrap();
    let src = write(
        d.path(),
        "c.jsonl",
        "{\"id\": \"7\", \"contents\": \"\\\"Paris\\\"\\nParis is the capital.\"}\r\n\
         {\"id\": 12, \"contents\": \"B\\nsecond\", \"extra\": [1, 2]}\n\
         {\"contents\": \"C\\nthird\", \"id\": \"x-3\"}",
    );
    let c = Corpus::open(&src, d.path().join("cache")).unwrap();
    assert_eq!(c.len(), 3);
    let r0 = c.row(0).unwrap();
    assert_eq!(
        (r0.id.as_str(), r0.contents.as_str()),
        ("7", "\"Paris\"\nParis is the capital.")
    );
    let r1 = c.row(1).unwrap();
    assert_eq!((r1.id.as_str(), r1.contents.as_str()), ("12", "B\nsecond"));
    let r2 = c.row(2).unwrap();
    assert_eq!((r2.id.as_str(), r2.contents.as_str()), ("x-3", "C\nthird"));
    assert!(c.row(3).unwrap_err().to_string().contains("out of range"));
    // Random access in any order gives the same rows.
    assert_eq!(c.row(2).unwrap(), r2);
    assert_eq!(c.row(0).unwrap(), r0);
}

#[test]
fn title_text_schema_joins_with_a_newline() {
    let d = tempfile::tempdir().unwrap();
    let src = write(
        d.path(),
        "t.jsonl",
        "{\"id\": \"a\", \"title\": \"Origin of Species\", \"text\": \"A book by Darwin.\"}\n\
         {\"id\": \"b\", \"title\": \"\", \"text\": \"untitled\"}\n\n\n",
    );
    let c = Corpus::open(&src, d.path()).unwrap();
    assert_eq!(c.len(), 2, "trailing blank lines are not rows");
    assert_eq!(c.row(0).unwrap().contents, "Origin of Species\nA book by Darwin.");
    assert_eq!(c.row(1).unwrap().contents, "\nuntitled");
}

#[test]
fn bad_rows_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let src = write(
        d.path(),
        "bad.jsonl",
        "{\"id\": \"1\", \"contents\": \"ok\"}\n\
         {\"id\": \"2\", \"contents\": \"unterminated}\n\
         {\"contents\": \"no id\"}\n\
         {\"id\": \"4\", \"title\": \"T\"}\n\
         {\"id\": \"5\"}\n\
         [1, 2]\n",
    );
    let c = Corpus::open(&src, d.path().join("cache")).unwrap();
    assert_eq!(c.len(), 6);
    assert!(c.row(0).is_ok());
    let msg = |r: u64| {
        let e = c.row(r).unwrap_err();
        assert!(matches!(e, RetrievalError::Row { line, .. } if line == r + 1));
        e.to_string()
    };
    let name = src.display().to_string();
    let m = msg(1);
    assert!(m.starts_with(&format!("{name}:2: not a JSON object")), "{m}");
    assert!(msg(2).contains(":3: missing field `id`"));
    assert!(msg(3).contains(":4: field `title` without `text`"));
    assert!(msg(4).contains(":5: missing field `contents`"));
    assert!(msg(5).contains(":6: not a JSON object"));

    // An empty line inside the file would shift every later key: refused at open, with its line.
    let gap = write(
        d.path(),
        "gap.jsonl",
        "{\"id\":\"1\",\"contents\":\"a\"}\n\n{\"id\":\"2\",\"contents\":\"b\"}\n",
    );
    let e = Corpus::open(&gap, d.path().join("gap")).unwrap_err().to_string();
    assert!(e.contains("gap.jsonl:2: empty line"), "{e}");

    let missing = Corpus::open(d.path().join("nope.jsonl"), d.path())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.jsonl"), "{missing}");
}

#[test]
fn zst_corpus_is_decompressed_once_and_equals_the_plain_file() {
    let d = tempfile::tempdir().unwrap();
    let text: String = (0..500)
        .map(|i| {
            format!(
                "{{\"id\": \"{i}\", \"title\": \"T{i}\", \"text\": \"passage number {i} {}\"}}\n",
                "x".repeat(i % 37)
            )
        })
        .collect();
    let plain = write(d.path(), "p.jsonl", &text);
    let packed = d.path().join("p.jsonl.zst");
    std::fs::write(&packed, zst(text.as_bytes())).unwrap();

    let a = Corpus::open(&plain, d.path().join("a")).unwrap();
    let b = Corpus::open(&packed, d.path().join("b")).unwrap();
    assert_eq!(a.stats(), b.stats(), "same rows, bytes and checksum");
    assert_eq!(b.stats().bytes, text.len() as u64);
    assert_eq!(b.plain_path(), d.path().join("b/corpus.jsonl"));
    assert_eq!(std::fs::read_to_string(b.plain_path()).unwrap(), text);
    for r in [0, 1, 250, 499] {
        let row = b.row(r).unwrap();
        assert_eq!(row, a.row(r).unwrap());
        assert_eq!(
            row.contents,
            format!("T{r}\npassage number {r} {}", "x".repeat(r as usize % 37))
        );
    }

    // A second open reuses the decompressed copy and the offset table (same files, untouched).
    let t_cache = std::fs::metadata(b.plain_path()).unwrap().modified().unwrap();
    let t_off = std::fs::metadata(d.path().join("b/corpus.offsets"))
        .unwrap()
        .modified()
        .unwrap();
    drop(b);
    let b2 = Corpus::open(&packed, d.path().join("b")).unwrap();
    assert_eq!(b2.stats(), a.stats());
    assert_eq!(std::fs::metadata(b2.plain_path()).unwrap().modified().unwrap(), t_cache);
    assert_eq!(
        std::fs::metadata(d.path().join("b/corpus.offsets"))
            .unwrap()
            .modified()
            .unwrap(),
        t_off
    );

    // Not zstd: a clear error naming the file.
    let fake = write(d.path(), "fake.jsonl.zst", "{\"id\": \"1\"}\n");
    let e = Corpus::open(&fake, d.path().join("f")).unwrap_err().to_string();
    assert!(e.contains("fake.jsonl.zst") && e.contains("zstd"), "{e}");
}

#[test]
fn a_changed_source_rebuilds_the_table() {
    let d = tempfile::tempdir().unwrap();
    let src = write(d.path(), "c.jsonl", "{\"id\":\"1\",\"contents\":\"a\"}\n");
    let c = Corpus::open(&src, d.path().join("cache")).unwrap();
    assert_eq!(c.len(), 1);
    drop(c);
    std::fs::write(
        &src,
        "{\"id\":\"1\",\"contents\":\"a\"}\n{\"id\":\"2\",\"contents\":\"bb\"}\n",
    )
    .unwrap();
    let c = Corpus::open(&src, d.path().join("cache")).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c.row(1).unwrap().contents, "bb");
}

#[test]
fn shipped_sample_corpus_matches_an_independent_read() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus/flashrag_sample_data_1000.jsonl.zst");
    let d = tempfile::tempdir().unwrap();
    let c = Corpus::open(&src, d.path()).unwrap();
    assert_eq!(c.len(), 1000);
    // Independent reference: decompress whole, split lines, parse with serde_json::Value.
    let bytes = std::fs::read(&src).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut ruzstd::decoding::StreamingDecoder::new(bytes.as_slice()).unwrap(),
        &mut text,
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1000);
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let row = c.row(i as u64).unwrap();
        assert_eq!(row.id, v["id"].as_str().unwrap(), "row {i}");
        assert_eq!(row.contents, v["contents"].as_str().unwrap(), "row {i}");
    }
    assert_eq!(c.row(0).unwrap().id, "0");
    assert!(c
        .row(0)
        .unwrap()
        .contents
        .starts_with("\"Evan Morris\"\nEvan Morris Evan L. Morris"));
}
