//! `gpu-optim check`: the fused AdamW kernel (`research_kernels::optim::adamw_step` on burn-cuda)
//! against an f64 computation on the host, on fresh random gradients, moments and weights of odd
//! sizes, for f32, bf16 and f16 parameters, over three consecutive steps (so the moments are
//! non-zero and the bias corrections change). Also times one step of a 0.5B-parameter-sized
//! tensor, fused and through the burn reference, as a sanity figure. Exit status 1 on a failure,
//! or when the fused kernel did not run (a silent fallback).

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu-optim: built without the `cuda` feature");
    std::process::exit(2);
}

#[cfg(feature = "cuda")]
fn main() {
    imp::main()
}

#[cfg(feature = "cuda")]
mod imp {
    use std::time::Instant;

    use research::burn::tensor::backend::Backend;
    use research::burn::tensor::{DType, Distribution, Tensor};
    use research::kernels::optim::{adamw_reference, adamw_step, fused_adamw_counts, AdamWStep};

    type Cuda = research::burn::backend::Cuda<f32, i32>;
    type Dev = research::burn::backend::cuda::CudaDevice;

    fn host(t: Tensor<Cuda, 1>) -> Vec<f64> {
        t.cast(DType::F32)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 data")
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn rand(n: usize, lo: f64, hi: f64, dev: &Dev) -> Tensor<Cuda, 1> {
        Tensor::<Cuda, 1>::random([n], Distribution::Uniform(lo, hi), dev)
    }

    /// One case: `steps` fused steps from random state, each compared with the f64 update of the
    /// same inputs (read back from the device). Returns the worst relative error of the master
    /// weights and of the moments, and whether the value is the master rounded to the dtype (within half an ulp).
    fn case(n: usize, dtype: DType, dev: &Dev) -> (f64, f64, bool) {
        let mut m = rand(n, -0.01, 0.01, dev);
        let mut v = rand(n, 0.0, 1e-4, dev);
        let mut p = rand(n, -1.0, 1.0, dev);
        let (mut worst_p, mut worst_mv, mut value_ok) = (0.0f64, 0.0f64, true);
        for step in 1..=3u64 {
            let g = rand(n, -0.05, 0.05, dev);
            let h = AdamWStep {
                lr: 1e-3 * step as f64,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                step,
                grad_scale: if step == 2 { 0.37 } else { 1.0 },
            };
            let (gh, mh, vh, ph) = (host(g.clone()), host(m.clone()), host(v.clone()), host(p.clone()));
            let out = adamw_step(g, m, v, p, dtype, &h);
            let (mo, vo, po, val) = (
                host(out.m.clone()),
                host(out.v.clone()),
                host(out.master.clone()),
                out.value.clone(),
            );
            let (bc1, bc2) = (h.bias_correction1(), h.bias_correction2());
            for i in 0..n {
                let gi = gh[i] * h.grad_scale;
                let pi = ph[i] * (1.0 - h.lr * h.weight_decay);
                let mi = mh[i] * h.beta1 + gi * (1.0 - h.beta1);
                let vi = vh[i] * h.beta2 + gi * gi * (1.0 - h.beta2);
                let want = pi - mi / (vi.sqrt() / bc2.sqrt() + h.eps) * (h.lr / bc1);
                worst_p = worst_p.max((po[i] - want).abs() / want.abs().max(1e-3));
                // Relative to the magnitudes of the summed terms: f32 cancellation near zero is
                // rounding, not an error of the kernel.
                let m_scale = (mh[i] * h.beta1).abs() + (gi * (1.0 - h.beta1)).abs();
                let v_scale = (vh[i] * h.beta2).abs() + (gi * gi * (1.0 - h.beta2)).abs();
                worst_mv = worst_mv.max((mo[i] - mi).abs() / m_scale.max(1e-30));
                worst_mv = worst_mv.max((vo[i] - vi).abs() / v_scale.max(1e-30));
            }
            if val.dtype() != dtype {
                value_ok = false;
            } else {
                // Within half a unit in the last place of the dtype (round to nearest).
                // (f16 below 2^-14 is subnormal, spaced 2^-24 apart.)
                let (half_ulp, floor) = match dtype {
                    DType::BF16 => (1.0 / 256.0, 1e-30),
                    DType::F16 => (1.0 / 2048.0, 3e-8),
                    _ => (0.0, 1e-30),
                };
                value_ok &= host(val)
                    .iter()
                    .zip(&po)
                    .all(|(a, b)| (a - b).abs() <= half_ulp * b.abs() + floor);
            }
            (m, v, p) = (out.m, out.v, out.master);
        }
        (worst_p, worst_mv, value_ok)
    }

    fn check(dev: &Dev) -> bool {
        let mut ok = true;
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for n in [1usize, 7, 1023, 65_537, 1_000_003] {
                let before = fused_adamw_counts().0;
                let (p, mv, value_ok) = case(n, dtype, dev);
                let ran = fused_adamw_counts().0 - before;
                let pass = p < 1e-5 && mv < 1e-5 && value_ok && ran == 3;
                ok &= pass;
                println!(
                    "{{\"check\":\"adamw\",\"dtype\":\"{dtype:?}\",\"n\":{n},\"master_rel_err\":{p:.3e},\"moment_rel_err\":{mv:.3e},\"value_within_half_ulp\":{value_ok},\"fused_launches\":{ran},\"pass\":{pass}}}"
                );
            }
        }
        ok
    }

    fn bench(dev: &Dev) {
        let n = 136_134_656; // Qwen2.5-0.5B's embedding, the largest tensor of the model
        let h = AdamWStep {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            step: 5,
            grad_scale: 0.5,
        };
        let (g, m, v, p) = (
            rand(n, -1.0, 1.0, dev),
            rand(n, -1.0, 1.0, dev),
            rand(n, 0.0, 1.0, dev),
            rand(n, -1.0, 1.0, dev),
        );
        for (name, fused) in [("fused", true), ("reference", false)] {
            let run = || {
                let out = if fused {
                    adamw_step(g.clone(), m.clone(), v.clone(), p.clone(), DType::BF16, &h)
                } else {
                    adamw_reference(g.clone(), m.clone(), v.clone(), p.clone(), DType::BF16, &h)
                };
                drop(out);
            };
            run();
            Cuda::sync(dev).expect("sync");
            let iters = 10;
            let t = Instant::now();
            for _ in 0..iters {
                run();
            }
            Cuda::sync(dev).expect("sync");
            let s = t.elapsed().as_secs_f64() / iters as f64;
            // Bytes: read g, m, v, p (f32); write m, v, p (f32) and the bf16 value.
            let gbs = n as f64 * (7.0 * 4.0 + 2.0) / s / 1e9;
            println!(
                "{{\"bench\":\"adamw\",\"impl\":\"{name}\",\"n\":{n},\"ms\":{:.3},\"effective_gb_s\":{gbs:.0}}}",
                s * 1e3
            );
        }
    }

    pub fn main() {
        let dev = Dev::default();
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("check") => {
                let ok = check(&dev);
                let (launched, failed) = fused_adamw_counts();
                println!("fused AdamW kernels launched: {launched}, fell back after trying: {failed}");
                if !ok || failed > 0 {
                    eprintln!("gpu-optim check: FAILED");
                    std::process::exit(1);
                }
                eprintln!("gpu-optim check: all cases pass");
            }
            Some("bench") => bench(&dev),
            _ => {
                eprintln!("usage: gpu-optim check | bench");
                std::process::exit(2);
            }
        }
    }
}
