//! `gpu-parity`: the Qwen2 transformers-parity suite for any compiled-in backend, in one process
//! (burn-cuda compiles its kernels once per process, so one process for every check saves minutes).
//!
//! ```text
//! gpu-parity [--fixtures tests/fixtures/qwen2] cuda:f32:1e-3 cuda:bf16:p8 tch-cuda:f32:1e-3 tch-cpu:f32:1e-4
//! ```
//! Each check is `backend:dtype:criterion`: a number is the log-prob tolerance (and the whole
//! greedy continuation must be identical); `pN` requires only the first N greedy tokens identical
//! (log-prob errors are reported, not judged). Exit status 1 on any failure.

use std::path::{Path, PathBuf};

use research::burn::tensor::backend::Backend;
use research::prelude::*;
use serde_json::Value;

struct Check {
    fixtures: Vec<PathBuf>,
    dtype: FloatType,
    tol: Option<f32>,
    prefix: usize,
    label: String,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn run_case<B: Backend>(check: &Check, case: &Path, device: B::Device) -> Result<bool, String> {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("reference.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let dir = ModelDir::resolve(case.to_str().unwrap()).map_err(|e| e.to_string())?;
    let engine = Engine::<B>::load(&dir, check.dtype, device).map_err(|e| e.to_string())?;
    let mut worst = 0.0f32;
    for seq in r["teacher_forced"].as_array().unwrap() {
        let got = engine.score(&ids(&seq["ids"])).map_err(|e| e.to_string())?;
        for (g, w) in got.iter().zip(seq["logprobs"].as_array().unwrap()) {
            worst = worst.max((g - w.as_f64().unwrap() as f32).abs());
        }
    }
    let greedy = r["greedy"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = greedy.iter().map(|g| ids(&g["prompt"])).collect();
    let n = ids(&greedy[0]["new_ids"]).len();
    let opts = GenerateOptions {
        max_new_tokens: n,
        eos_ids: vec![],
        ..Default::default()
    };
    let outs = engine.generate(prompts, opts).map_err(|e| e.to_string())?;
    let mut prefixes = vec![];
    for (out, g) in outs.iter().zip(greedy) {
        let want = ids(&g["new_ids"]);
        prefixes.push(out.ids.iter().zip(&want).take_while(|(a, b)| a == b).count());
    }
    let need = if check.tol.is_some() { n } else { check.prefix };
    let ok = prefixes.iter().all(|&p| p >= need) && check.tol.is_none_or(|t| worst <= t);
    println!(
        "{} {} {}: max |logprob err| {worst:.2e}{}, greedy identical prefix {prefixes:?} of {n} (batched, ragged)",
        if ok { "PASS" } else { "FAIL" },
        check.label,
        case.file_name().unwrap().to_string_lossy(),
        check.tol.map(|t| format!(" (tol {t:e})")).unwrap_or_default(),
    );
    Ok(ok)
}

impl WithBackend for &Check {
    type Output = (usize, usize);
    fn run<B: Backend>(self, device: B::Device) -> (usize, usize) {
        let (mut pass, mut fail) = (0, 0);
        for case in &self.fixtures {
            match run_case::<B>(self, case, device.clone()) {
                Ok(true) => pass += 1,
                Ok(false) => fail += 1,
                Err(e) => {
                    println!("FAIL {} {}: {e}", self.label, case.display());
                    fail += 1;
                }
            }
        }
        (pass, fail)
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut root = PathBuf::from("tests/fixtures/qwen2");
    if let Some(i) = args.iter().position(|a| a == "--fixtures") {
        root = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("reference.json").exists())
        .collect();
    fixtures.sort();
    let (mut pass, mut fail) = (0, 0);
    for spec in args {
        let parts: Vec<&str> = spec.split(':').collect();
        let [backend, dtype, crit] = parts[..] else {
            eprintln!("bad check `{spec}` (expected backend:dtype:tol or backend:dtype:pN)");
            std::process::exit(2);
        };
        let kind: BackendKind = backend.parse().unwrap_or_else(|e| panic!("{e}"));
        let dtype = FloatType::parse(dtype).unwrap_or_else(|e| panic!("{e}"));
        let (tol, prefix) = match crit.strip_prefix('p') {
            Some(n) => (None, n.parse().expect("pN")),
            None => (Some(crit.parse().expect("tolerance")), 0),
        };
        let check = Check {
            fixtures: fixtures.clone(),
            dtype,
            tol,
            prefix,
            label: format!("{backend}/{dtype}"),
        };
        let start = std::time::Instant::now();
        match dispatch(kind, dtype, &check) {
            Ok((p, f)) => {
                pass += p;
                fail += f;
                println!(
                    "parity {}: {p} passed, {f} failed in {:.1} s",
                    check.label,
                    start.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                println!("FAIL {}: {e}", check.label);
                fail += 1;
            }
        }
    }
    let (gemm_launched, gemm_failed) = research::kernels::linear::cublaslt_counts();
    println!("gpu-parity: {pass} passed, {fail} failed (cuBLASLt products: {gemm_launched}, fallbacks: {gemm_failed})");
    std::process::exit(if fail > 0 { 1 } else { 0 });
}
