//! The training loop end to end on CPU (tiny random Qwen2 with the real Qwen2.5 tokenizer, shipped
//! MuSiQue questions, a scripted retriever): metrics, chart, HF checkpoints, and a resume after an
//! abandoned run (as after `kill -9`) that continues with identical metrics.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, NdArray};
use research_agent::{Passage, Retriever};
use research_grpo::{StepMetrics, TrainConfig, Trainer};

type B = Autodiff<NdArray<f32>>;

/// The backend's random generator (model init, sampling) is process-wide: the tests of this file
/// take turns so that one cannot draw from the other's seeded stream.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Passages made from the query text: deterministic and query-dependent.
struct Scripted;

impl Retriever for Scripted {
    fn search(&self, queries: &[String], k: usize) -> Result<Vec<Vec<Passage>>, String> {
        Ok(queries
            .iter()
            .map(|q| {
                (0..k)
                    .map(|i| Passage {
                        id: format!("{i}"),
                        contents: format!("\"Doc {i}\"\nAbout {q}."),
                    })
                    .collect()
            })
            .collect())
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(out: &Path, max_steps: u64) -> TrainConfig {
    let r = root();
    // tests/fixtures/tiny_train.toml, shared with the CLI's kill-and-resume test.
    let template = std::fs::read_to_string(r.join("tests/fixtures/tiny_train.toml")).unwrap();
    let data = format!(
        "{:?}",
        r.join("data/eval/bamboogle/test.jsonl.zst").display().to_string()
    );
    let text = format!("out = {:?}\n", out.display().to_string())
        + &template
            .replace(
                "@TOKENIZER@",
                &format!("{:?}", r.join("data/qwen2.5_tokenizer").display().to_string()),
            )
            .replace("@DATA@", &data)
            .replace("@MAX_STEPS@", &max_steps.to_string());
    TrainConfig::from_toml(&text, Path::new("test.toml"), &[]).unwrap()
}

fn metrics(out: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The fields that must replay exactly (timings differ run to run).
fn replayable(m: &StepMetrics) -> String {
    let u = m
        .update
        .map(|u| (u.loss, u.pg_loss, u.entropy, u.kl, u.clip_frac, u.grad_norm, u.tokens));
    format!(
        "{} {} {} {} {} {} {} {:?}",
        m.step, m.kind, m.reward_mean, m.reward_std, m.response_len, m.searches, m.format_fail, u
    )
}

#[test]
fn runs_saves_and_resumes_identically() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = AtomicBool::new(false);
    // Run A: four steps straight.
    let a = tempfile::tempdir().unwrap();
    let mut t = Trainer::<B>::new(config(a.path(), 4), false, Default::default()).unwrap();
    let summary = t.run(&Scripted, &stop, false).unwrap();
    assert_eq!((summary.steps, summary.interrupted), (4, false));
    let ma = metrics(a.path());
    // val at 0, steps 1-2, val at 2, steps 3-4, val at 4.
    let kinds: Vec<(u64, &str)> = ma.iter().map(|m| (m.step, m.kind.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (0, "val"),
            (1, "train"),
            (2, "train"),
            (2, "val"),
            (3, "train"),
            (4, "train"),
            (4, "val")
        ]
    );
    for m in ma.iter().filter(|m| m.kind == "train") {
        let u = m.update.expect("an update");
        assert!(u.loss.is_finite() && u.grad_norm > 0.0 && u.tokens > 0, "{m:?}");
    }
    assert!(a.path().join("metrics.png").exists());
    let ckpt = a.path().join("checkpoints/step-000004");
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(ckpt.join(f).exists(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(a.path().join("checkpoints/latest"))
            .unwrap()
            .trim(),
        "step-000004"
    );

    // Run B: three steps, then abandoned without a final save (like kill -9 after step 3); the
    // checkpoint of step 2 is the latest. Resuming must redo step 3 and match run A exactly.
    let b = tempfile::tempdir().unwrap();
    {
        let mut t = Trainer::<B>::new(config(b.path(), 4), false, Default::default()).unwrap();
        t.validate(&Scripted).unwrap();
        for _ in 0..2 {
            t.train_step(&Scripted).unwrap();
        }
        t.validate(&Scripted).unwrap();
        t.save().unwrap();
        t.train_step(&Scripted).unwrap();
    }
    assert_eq!(metrics(b.path()).len(), 5);
    // A fresh start in a used directory is refused.
    let err = Trainer::<B>::new(config(b.path(), 4), false, Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("--resume"), "{err}");
    let mut t = Trainer::<B>::new(config(b.path(), 4), true, Default::default()).unwrap();
    assert_eq!(t.step(), 2);
    t.run(&Scripted, &stop, false).unwrap();
    let mb = metrics(b.path());
    let ra: Vec<String> = ma.iter().map(replayable).collect();
    let rb: Vec<String> = mb.iter().map(replayable).collect();
    assert_eq!(ra, rb);
    // The redone step's first attempt is kept aside, not lost.
    assert_eq!(
        std::fs::read_to_string(b.path().join("metrics.discarded.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_stop_request_saves_and_returns() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(true);
    let mut t = Trainer::<B>::new(config(out.path(), 4), false, Default::default()).unwrap();
    let s = t.run(&Scripted, &stop, false).unwrap();
    assert!(s.interrupted);
    assert_eq!(s.steps, 0);
    assert!(out.path().join("checkpoints/step-000000/model.safetensors").exists());
}

#[test]
fn a_reference_on_the_cpu_gives_the_same_run() {
    // On this CPU-only build both placements compute on burn-ndarray in f32, so the KL terms and
    // everything downstream must replay exactly; the CPU reference is built from the policy's
    // weights through a temporary HF checkpoint, the device one from the same seed.
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = AtomicBool::new(false);
    let run = |overrides: &[String]| {
        let out = tempfile::tempdir().unwrap();
        let mut c = config(out.path(), 2);
        if !overrides.is_empty() {
            let text = c.to_toml();
            c = TrainConfig::from_toml(&text, Path::new("test.toml"), overrides).unwrap();
        }
        let mut t = Trainer::<B>::new(c, false, Default::default()).unwrap();
        t.run(&Scripted, &stop, false).unwrap();
        assert!(!out.path().join(".reference-init").exists());
        metrics(out.path()).iter().map(replayable).collect::<Vec<_>>()
    };
    let device = run(&[]);
    let cpu = run(&["model.reference_device=\"cpu\"".to_string()]);
    assert_eq!(device.len(), 4);
    assert_eq!(device, cpu);
}
