//! Parity with HF transformers on tiny random Qwen2 checkpoints (CPU, f32).
//!
//! The checkpoints and the reference log-probs / greedy continuations were produced by
//! transformers itself (`tests/fixtures/gen_qwen2_fixtures.py`); see each case's `reference.json`.

use research::engine::backend::CpuBackend as B;
use research::prelude::*;
use research_tests::qwen2_cases;
use serde_json::Value;

const TOL: f32 = 1e-4;

fn reference(case: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(case.join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

fn engine(case: &std::path::Path) -> Engine<B> {
    let dir = ModelDir::resolve(case.to_str().unwrap()).expect("model dir");
    Engine::<B>::load(&dir, FloatType::F32, Default::default()).expect("load")
}

#[test]
fn teacher_forced_logprobs_match_transformers() {
    for case in qwen2_cases() {
        let engine = engine(&case);
        let r = reference(&case);
        for seq in r["teacher_forced"].as_array().expect("teacher_forced") {
            let ids = ids(&seq["ids"]);
            let want = floats(&seq["logprobs"]);
            let got = engine.score(&ids).expect("score");
            assert_eq!(got.len(), want.len());
            for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= TOL,
                    "{}: len {} position {t}: {g} vs transformers {w}",
                    case.display(),
                    ids.len()
                );
            }
        }
    }
}

fn greedy_options(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        eos_ids: vec![],
        ..Default::default()
    }
}

fn check_greedy(case: &std::path::Path, got: &Generation, want: &Value) {
    let want_ids = ids(&want["new_ids"]);
    let want_lp = floats(&want["new_logprobs"]);
    assert_eq!(got.ids, want_ids, "{}: greedy continuation differs", case.display());
    for (i, (g, w)) in got.logprobs.iter().zip(&want_lp).enumerate() {
        assert!((g - w).abs() <= TOL, "{}: step {i}: logprob {g} vs {w}", case.display());
    }
    assert_eq!(got.finish_reason, FinishReason::Length);
}

#[test]
fn greedy_continuations_match_transformers_one_at_a_time() {
    for case in qwen2_cases() {
        let engine = engine(&case);
        let r = reference(&case);
        for g in r["greedy"].as_array().expect("greedy") {
            let want = ids(&g["new_ids"]);
            let out = engine
                .generate(vec![ids(&g["prompt"])], greedy_options(want.len()))
                .expect("generate");
            check_greedy(&case, &out[0], g);
        }
    }
}

#[test]
fn greedy_continuations_match_transformers_batched_with_ragged_prompts() {
    for case in qwen2_cases() {
        let engine = engine(&case);
        let r = reference(&case);
        let refs = r["greedy"].as_array().expect("greedy");
        let prompts: Vec<Vec<u32>> = refs.iter().map(|g| ids(&g["prompt"])).collect();
        assert!(
            prompts.windows(2).any(|w| w[0].len() != w[1].len()),
            "fixture prompts should differ in length"
        );
        let n = ids(&refs[0]["new_ids"]).len();
        let outs = engine.generate(prompts, greedy_options(n)).expect("generate");
        for (out, g) in outs.iter().zip(refs) {
            check_greedy(&case, out, g);
        }
    }
}

#[test]
fn generate_logprobs_equal_score_of_the_whole_sequence() {
    let _guard = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // The log-prob the engine reports for a sampled token must be the model's teacher-forced one.
    let case = &qwen2_cases()[0];
    let engine = engine(case);
    let prompt = vec![5u32, 17, 300, 42];
    let opts = GenerateOptions {
        max_new_tokens: 10,
        sampling: SamplingParams {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    };
    let out = engine.generate(vec![prompt.clone()], opts).expect("generate");
    let mut all = prompt.clone();
    all.extend(&out[0].ids);
    let scored = engine.score(&all).expect("score");
    for (i, lp) in out[0].logprobs.iter().enumerate() {
        let s = scored[prompt.len() - 1 + i];
        assert!((lp - s).abs() <= TOL, "token {i}: {lp} vs {s}");
    }
}

/// The device RNG behind temperature sampling is the backend's, seeded per batch; tests that
/// sample take this lock so parallel tests do not reseed it under each other.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sampling_is_reproducible_with_a_seed_and_varies_without() {
    let _guard = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let case = &qwen2_cases()[0];
    let engine = engine(case);
    let run = |seed: u64, top_p: f32| {
        let opts = GenerateOptions {
            max_new_tokens: 12,
            sampling: SamplingParams {
                temperature: 4.0,
                seed,
                top_p,
                top_k: 0,
            },
            ..Default::default()
        };
        engine
            .generate(vec![vec![1, 2, 3], vec![9, 8]], opts)
            .expect("generate")
    };
    for top_p in [1.0, 0.9] {
        let a = run(3, top_p);
        let b = run(3, top_p);
        assert_eq!(a[0].ids, b[0].ids);
        assert_eq!(a[1].ids, b[1].ids);
        let differs = (4..12).any(|s| run(s, top_p)[0].ids != a[0].ids);
        assert!(differs, "different seeds should give different samples");
    }
}

#[test]
fn injected_tokens_are_context_and_masked() {
    // Stop a row (on an EOS id), inject tokens, resume: what follows must equal greedy decoding of
    // the concatenated sequence, and the mask must mark injected tokens 0.
    let case = &qwen2_cases()[0];
    let engine = engine(case);
    let prompt = vec![11u32, 22, 33, 44, 55];
    let reference = engine
        .generate(vec![prompt.clone()], greedy_options(12))
        .unwrap()
        .remove(0)
        .ids;
    // The first position whose token did not appear before it: stopping on that id stops there.
    let k = (0..reference.len())
        .find(|&i| !reference[..i].contains(&reference[i]))
        .unwrap();
    let stop_id = reference[k];
    let opts = GenerateOptions {
        eos_ids: vec![stop_id],
        ..greedy_options(16)
    };
    let other = vec![3u32, 1, 4, 1, 5, 9, 2, 6, 5];
    let mut batch = Batch::new(&engine, vec![prompt.clone(), other], opts).unwrap();
    while batch.sequences()[0].is_active() {
        assert!(batch.inject(0, &[1]).is_err(), "injecting into an active row must fail");
        batch.step().unwrap();
    }
    assert_eq!(batch.sequences()[0].finish_reason, Some(FinishReason::Eos));
    assert_eq!(batch.sequences()[0].response, reference[..=k].to_vec());
    let injected = [100u32, 200, 300];
    batch.inject(0, &injected).unwrap();
    assert!(batch.sequences()[0].is_active());
    batch.run().unwrap();
    let row = batch.sequences()[0].clone();
    let n_before = k + 1 + injected.len();
    assert_eq!(&row.response[k + 1..n_before], &injected);
    let mut mask = vec![1u8; k + 1];
    mask.extend([0, 0, 0]);
    mask.extend(vec![1u8; row.response.len() - n_before]);
    assert_eq!(row.loss_mask, mask);

    // Reference: greedy from prompt + response so far, same stop id, same remaining budget.
    let mut context = prompt.clone();
    context.extend(&row.response[..n_before]);
    let opts = GenerateOptions {
        eos_ids: vec![stop_id],
        ..greedy_options(16 - n_before)
    };
    let cont = engine.generate(vec![context.clone()], opts).unwrap().remove(0);
    assert_eq!(&row.response[n_before..], cont.ids.as_slice());
    for (a, b) in row.logprobs[n_before..].iter().zip(&cont.logprobs) {
        assert!((a - b).abs() <= TOL);
    }
}

#[test]
fn injection_past_the_budget_is_cut_and_finishes_with_length() {
    let case = &qwen2_cases()[0];
    let engine = engine(case);
    let prompt = vec![11u32, 22, 33];
    let first = engine
        .generate(vec![prompt.clone()], greedy_options(1))
        .unwrap()
        .remove(0)
        .ids[0];
    let opts = GenerateOptions {
        eos_ids: vec![first],
        ..greedy_options(3)
    };
    let mut batch = Batch::new(&engine, vec![prompt], opts).unwrap();
    batch.run().unwrap();
    assert_eq!(batch.sequences()[0].response.len(), 1);
    batch.inject(0, &[7, 8, 9, 10]).unwrap();
    let row = &batch.sequences()[0];
    assert_eq!(row.response, vec![first, 7, 8]);
    assert_eq!(row.loss_mask, vec![1, 0, 0]);
    assert_eq!(row.finish_reason, Some(FinishReason::Length));
    assert!(batch.is_done());
}
