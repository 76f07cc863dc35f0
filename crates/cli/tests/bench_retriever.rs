//! `research bench search` and `research bench encoder` end to end on tiny inputs whose answers are
//! known by construction: JSON line shapes, recall, and one-line errors for bad files.

use std::path::Path;
use std::process::Command;

fn research(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_research"))
        .args(args)
        .output()
        .expect("run research");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_f32(path: &Path, values: &[f32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

fn write_u32(path: &Path, values: &[u32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// 64 unit vectors on a circle and 5 queries at a quarter step past rows j: the true top-2 are
/// rows j and j + 1 (a quarter and three quarters of a step away; the third is 1.25 steps away,
/// a gap far above i8's rounding of the components to 1/127).
fn circle(dir: &Path) -> [String; 3] {
    let n = 64;
    let at = |steps: f32| {
        let a = std::f32::consts::TAU * steps / n as f32;
        [a.cos(), a.sin()]
    };
    let base: Vec<f32> = (0..n).flat_map(|i| at(i as f32)).collect();
    let js = [0u32, 9, 31, 40, 63];
    let queries: Vec<f32> = js.iter().flat_map(|&j| at(j as f32 + 0.25)).collect();
    let truth: Vec<u32> = js.iter().flat_map(|&j| [j, (j + 1) % n]).collect();
    let paths = ["base.f32", "queries.f32", "truth.u32"].map(|f| dir.join(f));
    write_f32(&paths[0], &base);
    write_f32(&paths[1], &queries);
    write_u32(&paths[2], &truth);
    paths.map(|p| p.to_str().unwrap().to_string())
}

#[test]
fn search_reports_every_quantization_and_ef_with_exact_recall_on_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let [v, q, t] = circle(dir.path());
    let (code, out, err) = research(&[
        "bench",
        "search",
        "--vectors",
        &v,
        "--queries",
        &q,
        "--truth",
        &t,
        "--dims",
        "2",
        "-k",
        "2",
        "--connectivity",
        "8",
        "--expansion-add",
        "32",
        "--expansion-search",
        "16,32",
        "--threads",
        "2",
        "--min-seconds",
        "0",
        "--quantization",
        "f32,f16,i8,i8-maxabs",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8, "4 storages × 2 efSearch: {out}");
    for (i, l) in lines.iter().enumerate() {
        let (quant, index, feed) = [
            ("f32", "hnsw-f32", "f32"),
            ("f16", "hnsw-f16", "f32"),
            ("i8", "hnsw-i8", "f32"),
            ("i8", "hnsw-i8-maxabs", "i8-max-abs"),
        ][i / 2];
        assert_eq!(
            (l["quantization"].as_str(), l["index"].as_str()),
            (Some(quant), Some(index))
        );
        assert_eq!(l["feed"], feed);
        assert_eq!(l["expansion_search"], [16, 32][i % 2]);
        assert_eq!(
            (l["n"].as_u64(), l["queries"].as_u64(), l["k"].as_u64()),
            (Some(64), Some(5), Some(2))
        );
        assert_eq!(l["recall"].as_f64(), Some(1.0), "{l}");
        // The saved index holds at least the vectors themselves.
        let bytes = [4.0, 2.0, 1.0, 1.0][i / 2] * 2.0;
        assert!(l["bytes_per_vector"].as_f64().unwrap() > bytes, "{l}");
        assert!(l["qps"].as_f64().unwrap() > 0.0 && l["build_s"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn search_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let [v, q, t] = circle(dir.path());
    let base = ["bench", "search", "--vectors", &v, "--queries", &q, "--truth", &t];
    // 64 × 2 f32 = 512 bytes: not whole rows of 3.
    let (code, _, err) = research(&[&base[..], &["--dims", "3"]].concat());
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("base.f32") && err.contains("512 bytes"),
        "{err}"
    );
    // The truth holds 2 ids per query: k = 3 is refused.
    let (code, _, err) = research(&[&base[..], &["--dims", "2", "-k", "3"]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("truth.u32") && err.contains("2 ids per query"), "{err}");
    // A truth id past the base.
    write_u32(&dir.path().join("truth.u32"), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 64]);
    let (code, _, err) = research(&[&base[..], &["--dims", "2"]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("query 4, rank 1") && err.contains("row id 64"), "{err}");
    let (code, _, err) = research(&[&base[..], &["--dims", "2", "--quantization", "f8"]].concat());
    assert_eq!(code, 1);
    assert!(err.contains("unknown quantization `f8`"), "{err}");
}

#[test]
fn encoder_bench_prints_one_line_with_the_shape_of_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"model_type": "bert", "vocab_size": 2000, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}"#,
    )
    .unwrap();
    let (code, out, err) = research(&[
        "bench",
        "encoder",
        "--family",
        "e5",
        "--config",
        config.to_str().unwrap(),
        "--batch",
        "3",
        "--tokens",
        "16",
        "--warmup",
        "1",
        "--iters",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(l["bench"], "encoder");
    assert_eq!(
        (l["batch"].as_u64(), l["tokens"].as_u64(), l["iters"].as_u64()),
        (Some(3), Some(16), Some(2))
    );
    assert_eq!(
        (l["dims"].as_u64(), l["layers"].as_u64(), l["hidden"].as_u64()),
        (Some(32), Some(2), Some(32))
    );
    assert!(l["passages_per_s"].as_f64().unwrap() > 0.0);
    // More tokens than the position table holds.
    let (code, _, err) = research(&[
        "bench",
        "encoder",
        "--config",
        config.to_str().unwrap(),
        "--batch",
        "1",
        "--tokens",
        "65",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("--tokens 65") && err.contains("64"),
        "{err}"
    );
}

#[test]
fn search_scale_stops_with_status_75_resumes_and_measures_in_a_fresh_process() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    let idx = idx.to_str().unwrap();
    let args = [
        "bench",
        "search-scale",
        "--dir",
        idx,
        "--n",
        "3000",
        "--dims",
        "32",
        "--connectivity",
        "8",
        "--expansion-add",
        "32",
        "--ef",
        "16,200",
        "--queries",
        "20",
        "--threads",
        "2",
        "--chunk-rows",
        "1000",
        "--min-seconds",
        "0",
        "--max-chunks",
        "2",
    ];
    // First call: two chunks of 1000, then it stops as if the budget had run out.
    let (code, out, err) = research(&args);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("INCOMPLETE") && err.contains("rerun"), "{err}");
    let l: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (l["phase"].as_str(), l["status"].as_str()),
        (Some("build"), Some("paused"))
    );
    assert_eq!(
        (l["rows_done"].as_u64(), l["rows_this_call"].as_u64()),
        (Some(2000), Some(2000))
    );
    // Second call: the last 1000 rows, then the measurement process (one line per efSearch).
    let (code, out, err) = research(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["status"], "complete");
    assert_eq!(
        (lines[0]["rows_this_call"].as_u64(), lines[0]["calls"].as_u64()),
        (Some(1000), Some(2))
    );
    for (l, ef) in lines[1..].iter().zip([16, 200]) {
        assert_eq!(l["phase"], "search");
        assert_eq!(
            (l["expansion_search"].as_u64(), l["n"].as_u64()),
            (Some(ef), Some(3000))
        );
        assert!(l["open_s"].as_f64().unwrap() >= 0.0 && l["file_bytes"].as_u64().unwrap() > 3000 * 32);
        let (r5, r10) = (l["recall_at_5"].as_f64().unwrap(), l["recall_at_10"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&r5) && (0.0..=1.0).contains(&r10));
    }
    // efSearch 200 over 3000 vectors is close to exact.
    assert!(lines[2]["recall_at_5"].as_f64().unwrap() > 0.9, "{}", lines[2]);
    assert!(err.contains("| efSearch | recall@5 |"), "{err}");
    // The same folder with other parameters is refused, naming the field.
    let mut other = args.to_vec();
    other[9] = "16";
    let (code, _, err) = research(&other);
    assert_eq!(code, 1);
    assert!(
        err.contains("scale.json") && err.contains("connectivity: saved 8, asked 16"),
        "{err}"
    );
}

#[test]
fn search_scale_partitioned_builds_and_measures_each_probe_and_ef() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("idx");
    let idx = idx.to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "bench", "search-scale", "--dir", idx, "--n", "3000", "--dims", "32", "--connectivity", "8",
        "--expansion-add", "32", "--ef", "16,200", "--queries", "20", "--threads", "2", "--min-seconds", "0",
        "--partitions", "6", "--probe", "1,6", "--centres", "12",
    ];
    let (code, out, err) = research(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(
        (lines[0]["status"].as_str(), lines[0]["parts_done"].as_u64()),
        (Some("complete"), Some(6))
    );
    let got: Vec<(u64, u64)> = lines[1..]
        .iter()
        .map(|l| (l["probe"].as_u64().unwrap(), l["expansion_search"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, 16), (1, 200), (6, 16), (6, 200)]);
    // Every partition searched at efSearch 200 (each holds ~500 of the 3000 rows): exact but for
    // the i8 storage.
    assert!(lines[4]["recall_at_5"].as_f64().unwrap() > 0.9, "{}", lines[4]);
    assert!(
        lines[4]["partitions"].as_u64() == Some(6) && err.contains("| probe | efSearch |"),
        "{err}"
    );
}
