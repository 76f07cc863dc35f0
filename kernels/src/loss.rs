//! Per-token log-probabilities and entropies from logits, fused (issue 5).
//!
//! [`token_logprob_entropy`] takes the logits of the trained tokens (`[T, V]`, any float dtype)
//! and their target ids, and returns `log p(y_t)` and (optionally) the entropy of each row, f32
//! `[T]`, computed in f32 whatever the logits' dtype. This is what the GRPO loss needs per token.
//!
//! - On burn-cuda (feature `cuda`), plain or under autodiff, the forward is one kernel
//!   (`loss/token_stats.cu`, compiled by NVRTC, launched from `loss/cuda.rs` through
//!   `crate::cuda_rt`): one block per row reads the row once (online max, Σ e^(z-m) and
//!   Σ e^(z-m)(z-m)) and writes `logp`, the entropy and the row's log-sum-exp. Under autodiff its
//!   backward is one more kernel writing `∂/∂z_j = g_lp (δ_{j,y} - p_j) - g_H p_j (log p_j + H)`
//!   in the logits' dtype (`g_lp`, `g_H`: the upstream gradients of the two outputs, 0 for an
//!   output without one). The burn ops route is about a dozen passes over `[T, V]` each way.
//! - Everywhere else, when the kernel declines (dtype, layout, a compile or launch failure, warned
//!   once per reason), and with `RESEARCH_LOSS=reference`: [`token_logprob_entropy_reference`],
//!   burn's `log_softmax`, `gather` and `-(exp(lsm) * lsm).sum` on `logits.cast(F32)` (normal
//!   autodiff).
//!
//! [`fused_token_stats_counts`] counts the fused kernels launched and the fallbacks, so a GPU
//! check can tell that the fused path ran.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// `(log p(targets[t] | row t), entropy of row t)` of `logits` `[T, V]` with `targets` `[T]`, f32
/// `[T]` each; the entropy only when `entropy` is set. The fused kernels on burn-cuda (plain or
/// under autodiff), [`token_logprob_entropy_reference`] elsewhere (see the module docs).
pub fn token_logprob_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    entropy: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
    #[cfg(feature = "cuda")]
    if !reference_forced() {
        if let Some(out) = cuda::try_fused(&logits, &targets, entropy) {
            return out;
        }
    }
    token_logprob_entropy_reference(logits, targets, entropy)
}

/// [`token_logprob_entropy`] with burn tensor operations (every backend): `log_softmax` of the
/// logits cast to f32, the targets' entries gathered, and `-(exp(lsm) * lsm)` summed per row.
pub fn token_logprob_entropy_reference<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    entropy: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 1>>) {
    let t = logits.dims()[0];
    let lsm = log_softmax(logits.cast(DType::F32), 1);
    let logp = lsm.clone().gather(1, targets.reshape([t, 1])).reshape([t]);
    let ent = entropy.then(|| (lsm.clone().exp() * lsm).sum_dim(1).neg().reshape([t]));
    (logp, ent)
}

/// Whether `RESEARCH_LOSS=reference` forces the reference path.
pub fn reference_forced() -> bool {
    std::env::var("RESEARCH_LOSS").is_ok_and(|v| v == "reference")
}

/// `(launched, failed)`: fused token-stats kernels enqueued so far in this process (forward and
/// backward each count one), and calls that fell back to the reference after trying. Always
/// `(0, 0)` without the `cuda` feature.
pub fn fused_token_stats_counts() -> (u64, u64) {
    #[cfg(feature = "cuda")]
    {
        use std::sync::atomic::Ordering;
        (
            cuda::LAUNCHED.load(Ordering::Relaxed),
            cuda::FALLBACKS.load(Ordering::Relaxed),
        )
    }
    #[cfg(not(feature = "cuda"))]
    (0, 0)
}

/// The kernels' CUDA C++ source.
#[cfg(feature = "nvrtc")]
pub const TOKEN_STATS_SOURCE: &str = include_str!("loss/token_stats.cu");

/// The element types the kernels are instantiated for (entry points `token_stats_{fwd,bwd}_<dt>`).
pub const TOKEN_STATS_DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

/// Compiles [`TOKEN_STATS_SOURCE`] to PTX for `arch` (e.g. `sm_90`) with NVRTC, cached per process.
#[cfg(feature = "nvrtc")]
pub fn token_stats_ptx(arch: &str) -> Result<String, String> {
    crate::cuda_rt::ptx_cached("token_stats.cu", TOKEN_STATS_SOURCE, arch)
}

/// Size of the kernels' parameter struct (checked against the PTX in the tests and against the
/// Rust mirror in `loss/cuda.rs`): seven pointers, six i64, two i32.
pub const TOKEN_STATS_PARAMS_BYTES: usize = 7 * 8 + 6 * 8 + 2 * 4;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::TensorData;

    type B = NdArray<f32>;
    type AD = Autodiff<B>;

    /// Log-probs, entropies and the closed-form gradient `g_lp (δ - p) - g_H p (log p + H)` of
    /// one row, in f64.
    struct Row {
        logp: f64,
        entropy: f64,
        grad: Vec<f64>,
    }

    fn row_f64(z: &[f64], y: usize, g_lp: f64, g_h: f64) -> Row {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        let logq: Vec<f64> = z.iter().map(|x| x - lse).collect();
        let entropy = -logq.iter().map(|l| l.exp() * l).sum::<f64>();
        let grad = logq
            .iter()
            .enumerate()
            .map(|(j, &l)| {
                let p = l.exp();
                g_lp * (f64::from(u8::from(j == y)) - p) - g_h * p * (l + entropy)
            })
            .collect();
        Row {
            logp: logq[y],
            entropy,
            grad,
        }
    }

    /// The 2×3 case worked by hand: row 0 = (0, 0, ln 2) has p = (1/4, 1/4, 1/2), so
    /// log p(y=2) = -ln 2 and H = 2·(1/4)·ln 4 + (1/2)·ln 2 = 1.5 ln 2; row 1 = (1, 1, 1) is
    /// uniform: log p(y=0) = -ln 3, H = ln 3.
    #[test]
    fn reference_matches_hand_worked_values() {
        let dev = Default::default();
        let ln2 = std::f32::consts::LN_2;
        let logits = Tensor::<B, 2>::from_data(TensorData::new(vec![0.0, 0.0, ln2, 1.0, 1.0, 1.0], [2, 3]), &dev);
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &dev);
        let (logp, ent) = token_logprob_entropy(logits, targets, true);
        let logp: Vec<f32> = logp.into_data().to_vec().unwrap();
        let ent: Vec<f32> = ent.expect("asked for entropy").into_data().to_vec().unwrap();
        let want_lp = [-2f64.ln(), -3f64.ln()];
        let want_h = [1.5 * 2f64.ln(), 3f64.ln()];
        for r in 0..2 {
            assert!((logp[r] as f64 - want_lp[r]).abs() < 1e-6, "logp {r}: {}", logp[r]);
            assert!((ent[r] as f64 - want_h[r]).abs() < 1e-6, "entropy {r}: {}", ent[r]);
        }
        // The same through the f64 formulas used below.
        let r0 = row_f64(&[0.0, 0.0, 2f64.ln()], 2, 0.0, 0.0);
        assert!((r0.logp - want_lp[0]).abs() < 1e-12 && (r0.entropy - want_h[0]).abs() < 1e-12);
    }

    /// Without `entropy` only the log-probs come back.
    #[test]
    fn entropy_is_optional() {
        let dev = Default::default();
        let logits = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5f32, -1.0, 2.0], [1, 3]), &dev);
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64], [1]), &dev);
        let (logp, ent) = token_logprob_entropy(logits, targets, false);
        assert!(ent.is_none());
        let want = row_f64(&[0.5, -1.0, 2.0], 1, 0.0, 0.0).logp;
        assert!((logp.into_scalar() as f64 - want).abs() < 1e-6);
    }

    fn data(n: usize, seed: u64, scale: f64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale) as f32
            })
            .collect()
    }

    /// Log-probs, entropies and the gradients of `Σ g_lp·logp + Σ g_H·H` with respect to the
    /// logits (burn-ndarray autodiff through the reference ops) against the f64 closed form, on
    /// the hand-worked 2×3 case and a random 5×11 one; also each output's gradient alone (the
    /// other output then has none: its upstream gradient is 0).
    #[test]
    fn reference_gradients_match_closed_form() {
        let dev = Default::default();
        let ln2 = std::f32::consts::LN_2;
        let cases: Vec<(usize, usize, Vec<f32>, Vec<i64>)> = vec![
            (2, 3, vec![0.0, 0.0, ln2, 1.0, 1.0, 1.0], vec![2, 0]),
            (5, 11, data(55, 3, 4.0), vec![0, 10, 3, 7, 5]),
        ];
        for (t, v, z, y) in cases {
            let g_lp: Vec<f32> = data(t, 7, 1.0);
            let g_h: Vec<f32> = data(t, 9, 1.0);
            for (use_lp, use_h) in [(true, true), (true, false), (false, true)] {
                let logits = Tensor::<AD, 2>::from_data(TensorData::new(z.clone(), [t, v]), &dev).require_grad();
                let targets = Tensor::<AD, 1, Int>::from_data(TensorData::new(y.clone(), [t]), &dev);
                let (logp, ent) = token_logprob_entropy(logits.clone(), targets, use_h);
                let glp = Tensor::<AD, 1>::from_data(TensorData::new(g_lp.clone(), [t]), &dev);
                let gh = Tensor::<AD, 1>::from_data(TensorData::new(g_h.clone(), [t]), &dev);
                let loss = match (use_lp, ent) {
                    (true, Some(h)) => (logp * glp).sum() + (h * gh).sum(),
                    (true, None) => (logp * glp).sum(),
                    (false, Some(h)) => (h * gh).sum(),
                    (false, None) => unreachable!(),
                };
                let grads = loss.backward();
                let got: Vec<f32> = logits.grad(&grads).expect("logits grad").into_data().to_vec().unwrap();
                for r in 0..t {
                    let row: Vec<f64> = z[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect();
                    let a = if use_lp { g_lp[r] as f64 } else { 0.0 };
                    let b = if use_h { g_h[r] as f64 } else { 0.0 };
                    let want = row_f64(&row, y[r] as usize, a, b);
                    for j in 0..v {
                        let err = (got[r * v + j] as f64 - want.grad[j]).abs();
                        assert!(
                            err < 1e-5,
                            "{t}x{v} ({use_lp},{use_h}) row {r} col {j}: {} vs {}",
                            got[r * v + j],
                            want.grad[j]
                        );
                    }
                }
            }
        }
    }

    /// Log-probs and entropies of a random case against f64 (peaked rows: scale 8).
    #[test]
    fn reference_matches_f64_on_random_rows() {
        let dev = Default::default();
        let (t, v) = (4usize, 37usize);
        let z = data(t * v, 11, 8.0);
        let y: Vec<i64> = vec![0, 36, 17, 2];
        let logits = Tensor::<B, 2>::from_data(TensorData::new(z.clone(), [t, v]), &dev);
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(y.clone(), [t]), &dev);
        let (logp, ent) = token_logprob_entropy(logits, targets, true);
        let logp: Vec<f32> = logp.into_data().to_vec().unwrap();
        let ent: Vec<f32> = ent.unwrap().into_data().to_vec().unwrap();
        for r in 0..t {
            let row: Vec<f64> = z[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect();
            let want = row_f64(&row, y[r] as usize, 0.0, 0.0);
            assert!((logp[r] as f64 - want.logp).abs() < 1e-5 * want.logp.abs().max(1.0));
            assert!((ent[r] as f64 - want.entropy).abs() < 1e-5 * want.entropy.abs().max(1.0));
        }
    }

    /// The kernels themselves, run on the CPU: `loss/token_stats_emu.cpp` compiles
    /// `token_stats.cu` as C++17 (the threads of a block as coroutines, each `__syncthreads` and
    /// shuffle checked to be reached by the whole block / warp, software bf16/f16, NaN padding and
    /// NaN-initialised outputs) and checks the forward's log-probs, entropies and log-sum-exp and
    /// the backward's gradient against float64 (bounds in the emulator's header): f32/bf16/f16,
    /// V from 1 to 151,936 (below one block's threads, not a multiple of the vector width, with
    /// row padding and misaligned buffers for the scalar path), int32/int64 targets, both upstream
    /// gradient layouts, `-inf` logits, peaked rows. Needs a C++17 compiler with `_Float16` (`$CXX`
    /// or `c++`); skipped with a note when there is none, unless `RESEARCH_TOKEN_STATS_EMU=require`.
    #[test]
    fn kernels_match_float64_in_cpu_emulation() {
        let require = std::env::var("RESEARCH_TOKEN_STATS_EMU").is_ok_and(|v| v == "require");
        let Some((dir, exe)) = crate::emu::build(
            "src/loss/token_stats_emu.cpp",
            "token_stats_emu",
            "token-stats",
            &["-Wno-unknown-pragmas"],
            require,
            "token-stats emulator",
        ) else {
            return;
        };
        // dt T V pad shift target_i64 grad_layout neg_inf seed (see the emulator's header).
        let cases = [
            "0 5 1001 0 0 0 0 0 1",
            "1 5 1001 3 1 1 1 0 2",
            "2 4 777 0 0 0 0 1 3",
            "1 3 4096 0 0 0 0 0 4",
            "0 3 4099 5 2 1 1 1 5",
            "1 2 151936 0 0 0 0 0 6",
            "0 3 1 0 0 0 0 0 11",
            "1 3 7 1 1 0 1 0 12",
            "2 3 255 2 3 1 0 0 13",
            "1 4 256 0 0 0 0 1 14",
            "1 4 257 0 2 1 0 0 15",
            "0 4 2048 0 0 0 1 0 16",
            "0 4 2049 0 1 0 0 1 17",
            "1 3 4104 0 0 1 0 0 18",
            "2 3 4104 8 0 0 1 1 19",
            "1 2 8200 0 5 0 0 0 20",
            "0 40 300 0 0 1 1 0 21",
        ];
        let out = crate::emu::run(&dir, &exe, &[], &(cases.join("\n") + "\n"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            cases.len(),
            "emulator stopped early: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (case, line) in cases.iter().zip(&lines) {
            assert!(line.starts_with("ok "), "case `{case}`: {line}");
        }
        assert!(out.status.success());
    }

    /// The kernels compile for Hopper and export the forward and backward entry points for every
    /// dtype, each taking one parameter of the size the launcher passes. Skipped with a note when
    /// libnvrtc cannot be loaded (CI).
    #[cfg(feature = "nvrtc")]
    #[test]
    fn token_stats_kernels_compile_for_sm90() {
        if !crate::attention::nvrtc::nvrtc_present() {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12/13 lib folder)");
            return;
        }
        let ptx = token_stats_ptx("sm_90").unwrap_or_else(|e| panic!("{e}"));
        for dt in TOKEN_STATS_DTYPES {
            for dir in ["fwd", "bwd"] {
                let entry = format!("token_stats_{dir}_{dt}");
                assert!(ptx.contains(&format!(".entry {entry}(")), "no entry point {entry}");
                assert!(
                    ptx.contains(&format!(
                        ".param .align 8 .b8 {entry}_param_0[{TOKEN_STATS_PARAMS_BYTES}]"
                    )),
                    "{entry} does not take one {TOKEN_STATS_PARAMS_BYTES}-byte parameter"
                );
                assert!(
                    !ptx.contains(&format!("{entry}_param_1")),
                    "{entry} takes more than one"
                );
            }
        }
    }
}
