//! Loss, gradient and AdamW-step parity with PyTorch (fixtures written by
//! `tests/fixtures/gen_grpo_parity.py` with transformers' Qwen2 in float64 and the formulas of
//! REFERENCE §5): loss parts within 1e-5, gradients within 1e-5 (relative above 1; 2e-5 for the
//! ill-conditioned tied_mqa case, see below), parameters after
//! one clipped AdamW step within 1e-6.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use research_grpo::{param_values, AdamW, AdamWConfig, Learner, LearnerConfig, Sample};
use research_qwen2::{load_model, FloatType, ModelDir};
use serde_json::Value;

type Inner = NdArray<f32>;
type B = Autodiff<Inner>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// HF name -> (module path of research-qwen2, whether our layout is the transpose).
fn our_name(hf: &str) -> (String, bool) {
    match hf {
        "model.embed_tokens.weight" => ("embed_tokens".into(), false),
        "lm_head.weight" => ("lm_head".into(), true),
        _ => {
            let n = hf.strip_prefix("model.").unwrap().to_string();
            let t = n.ends_with("proj.weight");
            (n, t)
        }
    }
}

/// Value at HF flat index `i` of a tensor of HF shape `[rows, cols]` stored transposed (or not).
fn at(values: &[f32], hf_shape: &[usize], transposed: bool, i: usize) -> f32 {
    if transposed {
        let cols = hf_shape[1];
        let rows = hf_shape[0];
        let (r, c) = (i / cols, i % cols);
        values[c * rows + r]
    } else {
        values[i]
    }
}

fn check(case: &str) {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("crates/grpo/tests/fixtures/grpo_parity_{case}.json"))).unwrap(),
    )
    .unwrap();
    let dir = ModelDir::resolve(root().join("tests/fixtures/qwen2").join(case).to_str().unwrap()).unwrap();
    let device = Default::default();
    let (_, policy) = load_model::<B>(&dir, FloatType::F32, &device).unwrap();
    let (_, reference) = load_model::<Inner>(&dir, FloatType::F32, &device).unwrap();
    let samples: Vec<Sample> = serde_json::from_value(fixture["samples"].clone()).unwrap();
    let optimizer = AdamW::<B>::new(AdamWConfig {
        lr: fixture["lr"].as_f64().unwrap(),
        weight_decay: fixture["weight_decay"].as_f64().unwrap(),
        max_grad_norm: fixture["max_grad_norm"].as_f64().unwrap(),
        ..AdamWConfig::default()
    });
    let mut learner = Learner::new(policy, reference, optimizer, LearnerConfig::default(), device);

    // Loss parts per micro-batch, then gradients accumulated over both.
    let mut worst_loss = 0.0f64;
    for mb in fixture["micro_batches"].as_array().unwrap() {
        let rows: Vec<&Sample> = mb["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &samples[r.as_u64().unwrap() as usize])
            .collect();
        let out = learner.micro_batch_loss(&rows, samples.len()).unwrap();
        let s = |t: burn::tensor::Tensor<B, 1>| t.into_scalar() as f64;
        for (name, got) in [
            ("loss", s(out.loss.clone())),
            ("pg_loss", s(out.pg_loss.clone())),
            ("entropy", s(out.entropy.clone())),
            ("kl", s(out.kl.clone())),
            ("clip_frac", s(out.clip_frac.clone())),
        ] {
            let want = mb[name].as_f64().unwrap();
            worst_loss = worst_loss.max((got - want).abs());
            assert!((got - want).abs() < 1e-5, "{case} {name}: {got} vs PyTorch {want}");
        }
        let grads = out.loss.backward();
        learner.optimizer.accumulate(&learner.policy, &grads);
    }
    let norm = learner.optimizer.grad_norm();
    let want_norm = fixture["grad_norm"].as_f64().unwrap();
    assert!(
        (norm - want_norm).abs() < 1e-4 * want_norm.max(1.0),
        "{case} grad norm {norm} vs {want_norm}"
    );

    let params = fixture["params"].as_object().unwrap();
    let mut worst_grad = 0.0f64;
    for (hf, p) in params {
        let (ours, transposed) = our_name(hf);
        let shape: Vec<usize> = p["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let grad = learner
            .optimizer
            .accumulated_grad(&ours)
            .unwrap_or_else(|| panic!("{case}: no gradient for {ours}"));
        for (i, want) in p["index"].as_array().unwrap().iter().zip(p["grad"].as_array().unwrap()) {
            let got = at(&grad, &shape, transposed, i.as_u64().unwrap() as usize) as f64;
            let want = want.as_f64().unwrap();
            worst_grad = worst_grad.max((got - want).abs() / want.abs().max(1.0));
            // f32 against a float64 reference, relative for entries above 1 (the tied embedding's
            // gradient reaches ~2). The tied_mqa fixture (large weights, one KV head) is poorly
            // conditioned in f32: PyTorch's own f32 gradients differ from float64 by up to 8.4e-6
            // there, so its bound is 2e-5; untied_gqa is held to the 1e-5 (it stays under 5e-6).
            let bound = if case == "tied_mqa" { 2e-5 } else { 1e-5 };
            assert!(
                (got - want).abs() < bound * want.abs().max(1.0),
                "{case} grad {hf}[{i}]: {got} vs PyTorch {want}"
            );
        }
    }

    // One optimizer step (global clipping to 1.0, AdamW) against torch.optim.AdamW.
    let policy = learner.policy.clone();
    let (policy, stats) = learner.optimizer.step(policy);
    assert!(stats.applied);
    let mut worst_param = 0.0f64;
    let mut total_checked = 0usize;
    for (hf, p) in params {
        let (ours, transposed) = our_name(hf);
        let shape: Vec<usize> = p["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (_, values) = param_values(&policy, &ours).unwrap();
        // Adam's first step is lr·g/(|g| + ε): for |g| near zero it is a sign function that f32
        // noise in g can move, so entries with |g| < 1e-4 are left out (weight decay alone moves a
        // parameter by lr·wd·p ≈ 3e-6 here, well above the 1e-6 bound, so it is still checked).
        let grads = p["grad"].as_array().unwrap();
        let mut checked = 0usize;
        for ((i, want), g) in p["index"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["after_step"].as_array().unwrap())
            .zip(grads)
        {
            if g.as_f64().unwrap().abs() < 1e-4 {
                continue;
            }
            checked += 1;
            let got = at(&values, &shape, transposed, i.as_u64().unwrap() as usize) as f64;
            let want = want.as_f64().unwrap();
            worst_param = worst_param.max((got - want).abs());
            assert!(
                (got - want).abs() < 1e-6,
                "{case} param {hf}[{i}] after step: {got} vs PyTorch {want}"
            );
        }
        assert!(checked > 0, "{case} {hf}: no entry has |g| >= 1e-4");
        total_checked += checked;
    }
    assert!(
        total_checked >= 1000,
        "{case}: only {total_checked} parameter entries checked"
    );
    eprintln!("{case}: {total_checked} parameter entries checked after the step; worst |diff| loss parts {worst_loss:.2e}, grads {worst_grad:.2e} (rel. above 1), params after AdamW {worst_param:.2e}; grad norm {norm:.5} vs {want_norm:.5}");
}

#[test]
fn loss_gradients_and_adamw_step_match_pytorch_untied_gqa() {
    check("untied_gqa");
}

#[test]
fn loss_gradients_and_adamw_step_match_pytorch_tied_mqa() {
    check("tied_mqa");
}
