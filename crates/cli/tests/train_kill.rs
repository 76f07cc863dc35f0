//! `research train` really killed with SIGKILL mid-run, then resumed with `--resume` (issue 5:
//! "resume after `kill -9` continues from the last checkpoint with identical subsequent metrics for
//! a fixed seed on CPU"). A tiny random Qwen2 (real Qwen2.5 tokenizer), the shipped Bamboogle
//! questions and a ReSearch-API retriever stub on loopback; an uninterrupted run of the same
//! configuration is the reference.
#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{root, stub_retriever};
use research::grpo::StepMetrics;

/// Training steps of every run (checkpoints after steps 2, 4 and 6).
const STEPS: u64 = 6;
/// The longest any one wait may take before the test gives up (a hang guard, not a measurement).
const WAIT: Duration = Duration::from_secs(600);

/// The tiny CPU configuration of `crates/grpo/tests/train.rs` (the output directory comes from
/// `--out`, the retriever from `--retriever-url`).
fn write_config(path: &Path) {
    let r = root();
    // tests/fixtures/tiny_train.toml, shared with research-grpo's training tests.
    let template = std::fs::read_to_string(r.join("tests/fixtures/tiny_train.toml")).unwrap();
    let text = template
        .replace(
            "@TOKENIZER@",
            &format!("{:?}", r.join("data/qwen2.5_tokenizer").display().to_string()),
        )
        .replace(
            "@DATA@",
            &format!(
                "{:?}",
                r.join("data/eval/bamboogle/test.jsonl.zst").display().to_string()
            ),
        )
        .replace("@MAX_STEPS@", &STEPS.to_string());
    std::fs::write(path, text).unwrap();
}

/// A running `research train`; killed (and reaped) when dropped, so a failing test leaves no
/// process behind.
struct Run {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    fn start(name: &str, cfg: &Path, out: &Path, url: &str, resume: bool, logs: &Path) -> Run {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_research"));
        cmd.args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--retriever-url", url])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        if resume {
            cmd.arg("--resume");
        }
        Run {
            child: cmd.spawn().expect("start research train"),
            name: name.to_string(),
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit (at most `WAIT`).
    fn wait(&mut self) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if t0.elapsed() > WAIT {
                panic!(
                    "the {} run did not finish within {WAIT:?}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ok(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "the {} run failed ({status}); its output:\n{}",
            self.name,
            self.output()
        );
    }
}

/// The complete lines of `metrics.jsonl`-like files that parse (a line cut by the kill does not).
fn records(path: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every field that must replay exactly for a fixed seed (timings and throughput excluded).
fn replayable(m: &StepMetrics) -> String {
    let u = m.update.map(|u| {
        (
            u.loss,
            u.pg_loss,
            u.entropy,
            u.kl,
            u.clip_frac,
            u.grad_norm,
            u.lr,
            u.tokens,
            u.micro_batches,
            u.skipped,
        )
    });
    format!(
        "step {} {} epoch {} reward {:?}±{:?} format_fail {:?} em {:?} len {:?} searches {:?} skipped {} update {:?}",
        m.step,
        m.kind,
        m.epoch,
        m.reward_mean,
        m.reward_std,
        m.format_fail,
        m.em,
        m.response_len,
        m.searches,
        m.skipped_steps,
        u
    )
}

fn trainer_state(ckpt: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap()).unwrap()
}

fn latest(out: &Path) -> String {
    std::fs::read_to_string(out.join("checkpoints/latest"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn sigkill_then_resume_replays_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("train.toml");
    write_config(&cfg);
    let url = stub_retriever();
    let (ref_out, run_out) = (tmp.path().join("reference"), tmp.path().join("killed"));

    // The reference runs alongside the run to be killed (separate processes, same seed).
    let mut reference = Run::start("reference", &cfg, &ref_out, &url, false, tmp.path());
    let mut killed = Run::start("killed", &cfg, &run_out, &url, false, tmp.path());

    // Kill once step 3 is logged: the checkpoint of step 2 is on disk and at least one step after
    // it has been logged, which the resume must set aside and redo.
    let t0 = Instant::now();
    loop {
        if let Some(status) = killed.child.try_wait().unwrap() {
            panic!(
                "the run to be killed exited ({status}) before step 3 was logged; its output:\n{}",
                killed.output()
            );
        }
        if records(&run_out.join("metrics.jsonl"))
            .iter()
            .any(|m| m.kind == "train" && m.step >= 3)
        {
            break;
        }
        assert!(
            t0.elapsed() < WAIT,
            "step 3 was not logged within {WAIT:?}; output:\n{}",
            killed.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.child.kill().unwrap(); // SIGKILL: no handler runs, nothing is saved
    let status = killed.wait();
    assert_eq!(
        status.signal(),
        Some(9),
        "the run was not ended by SIGKILL ({status}): it finished before the kill landed; output:\n{}",
        killed.output()
    );

    // What the kill left: the checkpoint to resume from and the lines logged after it.
    let ckpt_name = latest(&run_out);
    let state = trainer_state(&run_out.join("checkpoints").join(&ckpt_name));
    let from = state["step"].as_u64().unwrap();
    let kept = state["metrics_lines"].as_u64().unwrap() as usize;
    let logged: Vec<String> = std::fs::read_to_string(run_out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let partial: Vec<String> = std::fs::read_dir(run_out.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    eprintln!(
        "killed with {} metrics lines logged; latest = {ckpt_name} (step {from}, {kept} lines); \
         unfinished checkpoint files: {partial:?}",
        logged.len()
    );
    assert!(
        (2..STEPS).contains(&from),
        "the kill landed after the last checkpoint (step {from})"
    );
    assert_eq!(ckpt_name, format!("step-{from:06}"));
    assert!(logged.len() >= kept, "metrics.jsonl lost lines before the checkpoint");

    // Resume to the end.
    let mut resumed = Run::start("resumed", &cfg, &run_out, &url, true, tmp.path());
    resumed.wait_ok();
    let out = resumed.output();
    assert!(
        out.contains(&format!("{} steps to go (from step {from})", STEPS - from)),
        "{out}"
    );
    reference.wait_ok();

    // Each step and validation once, in order: val 0, then train s (and val s for even s).
    let mut expected = vec![(0, "val".to_string())];
    for s in 1..=STEPS {
        expected.push((s, "train".to_string()));
        if s % 2 == 0 {
            expected.push((s, "val".to_string()));
        }
    }
    let ma = records(&ref_out.join("metrics.jsonl"));
    let mb = records(&run_out.join("metrics.jsonl"));
    let raw_lines = std::fs::read_to_string(run_out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(raw_lines, mb.len(), "every line of the resumed metrics.jsonl parses");
    let keys = |ms: &[StepMetrics]| ms.iter().map(|m| (m.step, m.kind.clone())).collect::<Vec<_>>();
    assert_eq!(keys(&ma), expected);
    assert_eq!(keys(&mb), expected);
    for m in mb.iter().filter(|m| m.kind == "train") {
        let u = m.update.expect("a training step has an update");
        assert!(u.loss.is_finite() && u.grad_norm > 0.0 && u.tokens > 0, "{m:?}");
    }
    // The steps after the checkpoint (all redone by the resumed process) replay the reference
    // exactly; so do the lines before it (written before the kill).
    let ra: Vec<String> = ma.iter().map(replayable).collect();
    let rb: Vec<String> = mb.iter().map(replayable).collect();
    assert_eq!(
        ra[kept..],
        rb[kept..],
        "steps after the resumed checkpoint (step {from})"
    );
    assert_eq!(ra[..kept], rb[..kept], "steps up to the checkpoint");

    // The lines logged after the checkpoint before the kill were set aside, not lost, and were the
    // same first attempt (a line cut by the kill does not parse and is only compared as text). With
    // the usual kill point (during step 4, resuming from step 2) there is at least step 3's line.
    let discarded_path = run_out.join("metrics.discarded.jsonl");
    if logged.len() > kept {
        let discarded = std::fs::read_to_string(&discarded_path).unwrap();
        assert_eq!(
            discarded.lines().collect::<Vec<_>>(),
            logged[kept..].iter().map(String::as_str).collect::<Vec<_>>()
        );
        let rd: Vec<String> = records(&discarded_path).iter().map(replayable).collect();
        assert_eq!(rd[..], ra[kept..kept + rd.len()]);
    } else {
        assert!(!discarded_path.exists(), "nothing was logged after the checkpoint");
    }

    // The final checkpoint: complete, pointed at, and bit-identical to the reference's.
    assert_eq!(latest(&run_out), format!("step-{STEPS:06}"));
    let (ca, cb) = (
        ref_out.join(format!("checkpoints/step-{STEPS:06}")),
        run_out.join(format!("checkpoints/step-{STEPS:06}")),
    );
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(cb.join(f).exists(), "{f} missing from {}", cb.display());
    }
    assert_eq!(trainer_state(&cb)["step"], STEPS);
    assert_eq!(trainer_state(&cb)["metrics_lines"], expected.len());
    for f in ["model.safetensors", "optimizer.safetensors"] {
        assert!(
            std::fs::read(ca.join(f)).unwrap() == std::fs::read(cb.join(f)).unwrap(),
            "{f} of the resumed run differs from the reference's"
        );
    }
    assert!(run_out.join("metrics.png").exists());
}
