//! The AdamW update of one parameter, fused (issue 5).
//!
//! [`adamw_step`] takes a parameter's f32 gradient, moments and master weights (flat `[n]`) and
//! returns the new moments, master weights and the parameter's value in its own dtype. On
//! burn-cuda (feature `cuda`) it is one CUDA kernel (`optim/adamw.cu`, compiled by NVRTC) that
//! reads each operand once; everywhere else, and with `RESEARCH_ADAMW=reference`, it is
//! [`adamw_reference`]: the same arithmetic as about fifteen burn tensor operations, each a pass
//! over the parameter (what made the optimizer ~18 % of a training step's GPU time, see
//! docs/benchmarks.md). Both compute in f32 in the same order, so the routes agree to rounding.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

#[cfg(feature = "cuda")]
pub(crate) mod cuda;

/// The scalars of one AdamW step (PyTorch's `AdamW`: decoupled weight decay, bias correction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// The step number, from 1 (for the bias corrections).
    pub step: u64,
    /// Factor applied to the gradient first (global-norm clipping); 1 for none.
    pub grad_scale: f64,
}

impl AdamWStep {
    /// `1 - beta1^t`.
    pub fn bias_correction1(&self) -> f64 {
        1.0 - self.beta1.powi(self.step as i32)
    }
    /// `1 - beta2^t`.
    pub fn bias_correction2(&self) -> f64 {
        1.0 - self.beta2.powi(self.step as i32)
    }
}

/// The result of [`adamw_step`]: new first and second moments and f32 master weights (all `[n]`),
/// and the parameter's new value (`[n]`) in the requested dtype.
pub struct AdamWOutput<B: Backend> {
    /// First moment.
    pub m: Tensor<B, 1>,
    /// Second moment.
    pub v: Tensor<B, 1>,
    /// f32 master weights.
    pub master: Tensor<B, 1>,
    /// The parameter in its dtype (equal to `master` when that is f32).
    pub value: Tensor<B, 1>,
}

/// One AdamW step of one parameter. `g`, `m`, `v` and `master` are f32 `[n]`; `value_dtype` is the
/// parameter's dtype (f32, bf16 or f16).
pub fn adamw_step<B: Backend>(
    g: Tensor<B, 1>,
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
    master: Tensor<B, 1>,
    value_dtype: DType,
    h: &AdamWStep,
) -> AdamWOutput<B> {
    #[cfg(feature = "cuda")]
    if !reference_forced() {
        if let Some(out) = cuda::try_adamw(&g, &m, &v, &master, value_dtype, h) {
            return out;
        }
    }
    adamw_reference(g, m, v, master, value_dtype, h)
}

/// [`adamw_step`] with burn tensor operations (every backend).
pub fn adamw_reference<B: Backend>(
    g: Tensor<B, 1>,
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
    master: Tensor<B, 1>,
    value_dtype: DType,
    h: &AdamWStep,
) -> AdamWOutput<B> {
    let g = if h.grad_scale != 1.0 { g * h.grad_scale } else { g };
    let p = master * (1.0 - h.lr * h.weight_decay);
    let m = m * h.beta1 + g.clone() * (1.0 - h.beta1);
    let v = v * h.beta2 + g.square() * (1.0 - h.beta2);
    let denom = v.clone().sqrt() / h.bias_correction2().sqrt() + h.eps;
    let p = p - m.clone() / denom * (h.lr / h.bias_correction1());
    let value = if value_dtype == DType::F32 {
        p.clone()
    } else {
        p.clone().cast(value_dtype)
    };
    AdamWOutput { m, v, master: p, value }
}

/// Whether `RESEARCH_ADAMW=reference` forces the reference path.
pub fn reference_forced() -> bool {
    std::env::var("RESEARCH_ADAMW").is_ok_and(|v| v == "reference")
}

/// `(launched, failed)`: fused AdamW kernels enqueued so far in this process, and attempts that
/// fell back to the reference after trying. Always `(0, 0)` without the `cuda` feature.
pub fn fused_adamw_counts() -> (u64, u64) {
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

/// The kernel's CUDA C++ source.
#[cfg(feature = "nvrtc")]
pub const ADAMW_SOURCE: &str = include_str!("optim/adamw.cu");

/// Compiles [`ADAMW_SOURCE`] to PTX for `arch` (e.g. `sm_90`) with NVRTC, cached per process.
#[cfg(feature = "nvrtc")]
pub fn adamw_ptx(arch: &str) -> Result<String, String> {
    crate::cuda_rt::ptx_cached("adamw.cu", ADAMW_SOURCE, arch)
}

/// Size of the kernel's parameter struct (checked against the PTX in the tests and against the
/// Rust mirror in `optim/cuda.rs`).
pub const ADAMW_PARAMS_BYTES: usize = 8 * 8 + 8 + 9 * 4 + 4;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    /// The reference against AdamW worked by hand in f64 for a few elements over two steps.
    #[test]
    fn reference_matches_hand_worked_adamw() {
        let dev = Default::default();
        let t = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev);
        let (lr, b1, b2, eps, wd, scale) = (1e-2, 0.9, 0.999, 1e-8, 0.1, 0.5);
        let p0 = [0.5f64, -1.25, 2.0];
        let grads = [[0.3f64, -0.7, 0.0], [-0.2, 0.4, 1.5]];
        let (mut p, mut m, mut v) = (p0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
        let (mut tp, mut tm, mut tv) = (
            t(p0.iter().map(|&x| x as f32).collect()),
            t(vec![0.0; 3]),
            t(vec![0.0; 3]),
        );
        for (step, g) in grads.iter().enumerate() {
            let h = AdamWStep {
                lr,
                beta1: b1,
                beta2: b2,
                eps,
                weight_decay: wd,
                step: step as u64 + 1,
                grad_scale: scale,
            };
            for i in 0..3 {
                let gi = g[i] * scale;
                p[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let mh = m[i] / (1.0 - b1.powi(step as i32 + 1));
                let vh = v[i] / (1.0 - b2.powi(step as i32 + 1));
                p[i] -= lr * mh / (vh.sqrt() + eps);
            }
            let gt = t(g.iter().map(|&x| x as f32).collect());
            let out = adamw_reference(gt, tm, tv, tp, DType::F32, &h);
            (tp, tm, tv) = (out.master, out.m, out.v);
            let got = tp.clone().into_data().to_vec::<f32>().unwrap();
            for i in 0..3 {
                assert!(
                    (got[i] as f64 - p[i]).abs() < 1e-6,
                    "step {step} elem {i}: {} vs {}",
                    got[i],
                    p[i]
                );
            }
        }
    }

    /// First step from zero moments: Adam moves each weight by about `lr` against its gradient's
    /// sign (after decay), and an f32 parameter's value is its master.
    #[test]
    fn first_step_moves_by_lr() {
        let dev = Default::default();
        let t = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &dev);
        let h = AdamWStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
            grad_scale: 1.0,
        };
        let out = adamw_reference(
            t(vec![1.0, -1.0]),
            t(vec![0.0; 2]),
            t(vec![0.0; 2]),
            t(vec![1.0, 1.0]),
            DType::F32,
            &h,
        );
        let master = out.master.into_data().to_vec::<f32>().unwrap();
        let value = out.value.into_data().to_vec::<f32>().unwrap();
        assert!(
            (master[0] - 0.999).abs() < 1e-6 && (master[1] - 1.001).abs() < 1e-6,
            "{master:?}"
        );
        assert_eq!(master, value);
    }

    /// The kernel compiles for Hopper and exports its entry point taking one parameter of the size
    /// the launcher passes. Skipped with a note when libnvrtc cannot be loaded (CI).
    #[cfg(feature = "nvrtc")]
    #[test]
    fn adamw_kernel_compiles_for_sm90() {
        if !crate::attention::nvrtc::nvrtc_present() {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12/13 lib folder)");
            return;
        }
        let ptx = adamw_ptx("sm_90").unwrap_or_else(|e| panic!("{e}"));
        assert!(ptx.contains(".entry adamw_step("), "no entry point");
        assert!(ptx.contains(&format!(".param .align 8 .b8 adamw_step_param_0[{ADAMW_PARAMS_BYTES}]")));
        assert!(!ptx.contains("adamw_step_param_1"));
    }
}
