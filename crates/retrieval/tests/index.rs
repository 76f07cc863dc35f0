//! Index builds with the tiny random BERT fixture of `models/bert` (always runs): an interrupted
//! and resumed build holds the same vectors and keys as an uninterrupted one, and the same vectors
//! as encoding each passage on its own; mismatched encoder/corpus/settings are clear errors; HNSW
//! finds every stored vector; exact search follows a hand-computed ranking.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use research_retrieval::{
    boxed, build_with_encoder, exact_top_k, BuildConfig, Encoder, EncoderFamily, EncoderOptions, FloatType,
    Quantization, RetrievalError, Retriever, RetrieverOptions, TextKind,
};

type B = NdArray<f32>;

fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/bert/tests/fixtures/bert/tiny")
}

fn tiny_options() -> EncoderOptions {
    let mut o = EncoderOptions::for_family(EncoderFamily::SentenceTransformers);
    o.query_max_len = 32;
    o.passage_max_len = 64;
    o.batch_size = 8;
    o
}

fn tiny_encoder(dir: &Path) -> Encoder<B> {
    Encoder::<B>::load(dir, tiny_options(), FloatType::F32, &Default::default()).unwrap()
}

/// `n` passages from the shipped FlashRAG sample corpus, written as plain jsonl.
fn sample_corpus(dir: &Path, n: usize) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus/flashrag_sample_data_1000.jsonl.zst");
    let bytes = std::fs::read(src).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut ruzstd::decoding::StreamingDecoder::new(bytes.as_slice()).unwrap(),
        &mut text,
    )
    .unwrap();
    let out: String = text.lines().take(n).map(|l| format!("{l}\n")).collect();
    let p = dir.join("corpus.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}

fn config(corpus: &Path, out: &Path) -> BuildConfig {
    let mut c = BuildConfig::new(corpus, tiny_dir(), out);
    c.chunk_rows = 16;
    c.batch_size = 8;
    c.threads = 2;
    c.progress = false;
    c.hnsw.expansion_search = 256;
    c
}

fn open(dir: &Path, encoder: &Path) -> research_retrieval::Result<Retriever> {
    let options = RetrieverOptions {
        threads: 2,
        ..Default::default()
    };
    Retriever::with_encoder(dir, &options, boxed(tiny_encoder(encoder)))
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn resumed_build_equals_uninterrupted_build() {
    let d = tempfile::tempdir().unwrap();
    let corpus = sample_corpus(d.path(), 100);
    let enc = tiny_encoder(&tiny_dir());

    let full = d.path().join("full");
    let r = build_with_encoder(&config(&corpus, &full), &enc).unwrap();
    assert!(r.complete && r.rows == 100 && r.encoded_now == 100);

    // Interrupted after 3 chunks, then a crash while writing the 4th (bytes not recorded).
    let parts = d.path().join("parts");
    let mut c = config(&corpus, &parts);
    c.max_chunks = Some(3);
    let r = build_with_encoder(&c, &enc).unwrap();
    assert!(!r.complete);
    assert_eq!(r.rows_done, 48);
    assert!(!parts.join("index.usearch").exists());
    let e = open(&parts, &tiny_dir()).unwrap_err().to_string();
    assert!(e.contains("unfinished (48 of 100 rows"), "{e}");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(parts.join("vectors.f32"))
            .unwrap();
        f.write_all(&[0x7f; 4 * 32 * 5 + 3]).unwrap();
    }
    let r = build_with_encoder(&config(&corpus, &parts), &enc).unwrap();
    assert!(r.complete);
    assert_eq!((r.encoded_now, r.rows_done), (52, 100));

    let a = read_f32(&full.join("vectors.f32"));
    let b = read_f32(&parts.join("vectors.f32"));
    assert_eq!(a.len(), 100 * 32);
    assert_eq!(a, b, "resumed vectors differ from the uninterrupted build");

    // Independent reference: each passage encoded alone (no batching, no sorting).
    let retr = open(&parts, &tiny_dir()).unwrap();
    for row in [0u64, 17, 47, 48, 99] {
        let p = retr.corpus().row(row).unwrap();
        let alone = enc.encode(&[p.contents.as_str()], TextKind::Passage).unwrap().remove(0);
        let saved = &a[row as usize * 32..(row as usize + 1) * 32];
        let diff = alone
            .iter()
            .zip(saved)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "row {row}: {diff}");
    }

    // Keys: in both HNSW graphs every stored vector finds its own row first.
    let full_r = open(&full, &tiny_dir()).unwrap();
    let vecs: Vec<Vec<f32>> = a.chunks(32).map(<[f32]>::to_vec).collect();
    for (name, retr) in [("full", &full_r), ("resumed", &retr)] {
        assert_eq!(retr.len(), 100);
        let found = retr.nearest(&vecs, 1).unwrap();
        for (row, f) in found.iter().enumerate() {
            assert_eq!(f[0].0, row as u64, "{name}: row {row} found {:?}", f[0]);
            assert!((f[0].1 - 1.0).abs() < 1e-4, "{name}: self score {}", f[0].1);
        }
    }
}

#[test]
fn mismatches_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let corpus = sample_corpus(d.path(), 40);
    let enc = tiny_encoder(&tiny_dir());
    let out = d.path().join("idx");
    build_with_encoder(&config(&corpus, &out), &enc).unwrap();

    // Another corpus into the same folder.
    let other_dir = d.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = sample_corpus(&other_dir, 41);
    let e = build_with_encoder(&config(&other, &out), &enc).unwrap_err();
    assert!(matches!(e, RetrievalError::Mismatch { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("manifest.json") && m.contains("built from corpus") && m.contains("41 rows"),
        "{m}"
    );
    // The refused corpus left the folder's own files alone: the index still opens without a rescan.
    assert!(research_retrieval::Corpus::open_cached(&corpus, &out)
        .unwrap()
        .is_some());

    // Other HNSW settings.
    let mut c = config(&corpus, &out);
    c.quantization = Quantization::I8;
    c.hnsw.connectivity = 8;
    let m = build_with_encoder(&c, &enc).unwrap_err().to_string();
    assert!(m.contains("quantization: index has f32, this run has i8"), "{m}");
    assert!(m.contains("connectivity: index has 32, this run has 8"), "{m}");

    // Another encoder (its config differs) at build and at open.
    let enc2_dir = d.path().join("enc2");
    std::fs::create_dir_all(&enc2_dir).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny_dir().join(f), enc2_dir.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(enc2_dir.join("config.json")).unwrap();
    std::fs::write(
        enc2_dir.join("config.json"),
        cfg.replace("\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": 1e-6"),
    )
    .unwrap();
    let mut c = config(&corpus, &out);
    c.encoder = enc2_dir.clone();
    let m = build_with_encoder(&c, &tiny_encoder(&enc2_dir))
        .unwrap_err()
        .to_string();
    assert!(m.contains("encoder checksum"), "{m}");
    let options = RetrieverOptions {
        encoder: Some(enc2_dir.clone()),
        threads: 1,
        ..Default::default()
    };
    let m = Retriever::open(&out, &options).unwrap_err().to_string();
    assert!(m.contains("built with encoder") && m.contains("enc2"), "{m}");

    // Another corpus at open.
    let options = RetrieverOptions {
        encoder: Some(tiny_dir()),
        corpus: Some(other.clone()),
        threads: 1,
        ..Default::default()
    };
    let m = Retriever::open(&out, &options).unwrap_err().to_string();
    assert!(m.contains("built from corpus") && m.contains("41 rows"), "{m}");

    // The same settings still open (through the backend dispatch) and search.
    let options = RetrieverOptions {
        threads: 1,
        ..Default::default()
    };
    let r = Retriever::open(&out, &options).unwrap();
    let hits = r.search(&["charles darwin".to_string()], 3).unwrap();
    assert_eq!(hits[0].len(), 3);
}

#[test]
fn quantized_indexes_find_stored_vectors() {
    let d = tempfile::tempdir().unwrap();
    let corpus = sample_corpus(d.path(), 64);
    let enc = tiny_encoder(&tiny_dir());
    for q in [Quantization::F16, Quantization::I8] {
        let out = d.path().join(q.name());
        let mut c = config(&corpus, &out);
        c.quantization = q;
        build_with_encoder(&c, &enc).unwrap();
        let r = open(&out, &tiny_dir()).unwrap();
        let vecs: Vec<Vec<f32>> = read_f32(&out.join("vectors.f32"))
            .chunks(32)
            .map(<[f32]>::to_vec)
            .collect();
        let approx = r.nearest(&vecs, 1).unwrap();
        let exact = r.nearest_exact(&vecs, 1).unwrap();
        let same = approx.iter().zip(&exact).filter(|(a, e)| a[0].0 == e[0].0).count();
        assert!(same >= 62, "{q}: {same}/64 top-1 agree");
        for (a, e) in approx.iter().zip(&exact) {
            assert!(
                (a[0].1 - e[0].1).abs() < 0.05,
                "{q}: score {} vs exact {}",
                a[0].1,
                e[0].1
            );
        }
    }
}

#[test]
fn search_api_shapes_and_agent_trait() {
    let d = tempfile::tempdir().unwrap();
    let corpus = sample_corpus(d.path(), 30);
    let out = d.path().join("idx");
    build_with_encoder(&config(&corpus, &out), &tiny_encoder(&tiny_dir())).unwrap();
    let r = open(&out, &tiny_dir()).unwrap();
    let qs = vec!["origin of species".to_string(), "who wrote the book".to_string()];
    let hits = r.search(&qs, 5).unwrap();
    let exact = r.search_exact(&qs, 5).unwrap();
    assert_eq!((hits.len(), hits[0].len(), exact[1].len()), (2, 5, 5));
    for (h, e) in hits.iter().zip(&exact) {
        assert!(h.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(h[0].row, e[0].row);
        let p = r.corpus().row(h[0].row).unwrap();
        assert_eq!((&h[0].id, &h[0].contents), (&p.id, &p.contents));
    }
    assert!(r.search(&qs, 0).unwrap().iter().all(Vec::is_empty));
    assert_eq!(
        r.search(&qs, 1000).unwrap()[0].len(),
        30,
        "k is capped at the corpus size"
    );
    assert!(r.search(&[], 5).unwrap().is_empty());
    let passages = research_agent::Retriever::search(&r, &qs, 2).unwrap();
    assert_eq!(passages[1][0].id, hits[1][0].id);

    fn shared<T: Send + Sync>(_: &T) {}
    shared(&r);
}

#[test]
fn exact_top_k_follows_a_hand_ranking() {
    // Rows (2-d): r0 (1, 0), r1 (0, 1), r2 (0.6, 0.8), r3 (0.8, 0.6), r4 (1, 0) (a tie with r0).
    let data = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.8, 0.6, 1.0, 0.0];
    let q = vec![vec![1.0, 0.0], vec![0.0, -1.0]];
    for threads in [1, 2, 3, 8] {
        let got = exact_top_k(&data, 2, &q, 3, threads);
        // q0 scores: 1, 0, 0.6, 0.8, 1 -> r0, r4 (tie, lower row first), r3.
        let rows0: Vec<u64> = got[0].iter().map(|x| x.0).collect();
        assert_eq!(rows0, vec![0, 4, 3], "threads {threads}");
        // q1 scores: 0, -1, -0.8, -0.6, 0 -> r0, r4, r3.
        let rows1: Vec<u64> = got[1].iter().map(|x| x.0).collect();
        assert_eq!(rows1, vec![0, 4, 3]);
        assert!((got[0][2].1 - 0.8).abs() < 1e-7 && (got[1][2].1 + 0.6).abs() < 1e-7);
    }
    assert_eq!(exact_top_k(&data, 2, &q, 10, 2)[0].len(), 5);
}

#[test]
fn partitioned_indexes_find_stored_vectors_and_old_manifests_open() {
    let d = tempfile::tempdir().unwrap();
    let corpus = sample_corpus(d.path(), 64);
    let enc = tiny_encoder(&tiny_dir());
    let out = d.path().join("parts");
    let mut c = config(&corpus, &out);
    c.quantization = Quantization::I8;
    c.partitions = 4;
    build_with_encoder(&c, &enc).unwrap();
    assert!(out.join("centroids.f32").is_file() && out.join("part-00003.usearch").is_file());
    assert!(!out.join("index.usearch").exists());
    let vecs: Vec<Vec<f32>> = read_f32(&out.join("vectors.f32"))
        .chunks(32)
        .map(<[f32]>::to_vec)
        .collect();
    for probe in [1, 4] {
        let options = RetrieverOptions {
            threads: 2,
            probe: Some(probe),
            ..Default::default()
        };
        let r = Retriever::with_encoder(&out, &options, boxed(tiny_encoder(&tiny_dir()))).unwrap();
        assert_eq!(r.manifest().partitions, 4);
        let approx = r.nearest(&vecs, 3).unwrap();
        let exact = r.nearest_exact(&vecs, 3).unwrap();
        // A stored vector's nearest centroid is the one its row was assigned to, so even one
        // probed partition holds it.
        let same = approx.iter().zip(&exact).filter(|(a, e)| a[0].0 == e[0].0).count();
        assert!(same >= 62, "probe {probe}: {same}/64 top-1 agree");
        assert!(approx
            .iter()
            .all(|a| a.len() == 3 && a.windows(2).all(|w| w[0].1 >= w[1].1)));
    }
    // Resuming with another partition count is refused, naming the field.
    let mut other = config(&corpus, &out);
    other.quantization = Quantization::I8;
    other.partitions = 2;
    let e = build_with_encoder(&other, &enc).unwrap_err().to_string();
    assert!(e.contains("partitions: index has 4, this run has 2"), "{e}");

    // A manifest written before the `partitions` field: one graph, opens as before.
    let one = d.path().join("one");
    build_with_encoder(&config(&corpus, &one), &enc).unwrap();
    let path = one.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("partitions").unwrap();
    std::fs::write(&path, m.to_string()).unwrap();
    let r = open(&one, &tiny_dir()).unwrap();
    assert_eq!(r.manifest().partitions, 1);
    assert_eq!(r.nearest(&vecs[..1], 1).unwrap()[0][0].0, 0);
}
