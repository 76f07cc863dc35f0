//! `gpu-optim check`: the fused AdamW kernel (`research_kernels::optim::adamw_step` on burn-cuda)
//! against an f64 computation on the host, on fresh random gradients, moments and weights of odd
//! sizes, for f32, bf16 and f16 parameters, over three consecutive steps (so the moments are
//! non-zero and the bias corrections change). Also times one step of a 0.5B-parameter-sized
//! tensor, fused and through the burn reference, as a sanity figure. Exit status 1 on a failure,
//! or when the fused kernel did not run (a silent fallback).
//!
//! Also the GRPO loss's fused token log-prob + entropy (`research_kernels::loss`, issue 5): random
//! logits (f32 and bf16; V = 1,001 and 151,936; several T, odd included), the forward on plain
//! burn-cuda and under autodiff (log-probs and entropies) and the backward (gradient of the logits
//! for random upstream gradients of both outputs, or of the log-probs alone) against float64 on the
//! host from the same (rounded) logits; `bench` times fused and reference forward + backward at
//! T = 4,096 and 16,384, V = 151,936, bf16.

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

    use research::burn::backend::Autodiff;
    use research::burn::tensor::backend::Backend;
    use research::burn::tensor::{DType, Distribution, Int, Tensor, TensorData};
    use research::kernels::loss::{fused_token_stats_counts, token_logprob_entropy, token_logprob_entropy_reference};
    use research::kernels::optim::{adamw_reference, adamw_step, fused_adamw_counts, AdamWStep};

    type Cuda = research::burn::backend::Cuda<f32, i32>;
    type Dev = research::burn::backend::cuda::CudaDevice;
    type Ad = Autodiff<Cuda>;

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

    /// Host copy of a 2-D tensor (any float dtype) as f64, row-major.
    fn host2(t: Tensor<Cuda, 2>) -> Vec<f64> {
        t.cast(DType::F32)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 data")
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// Deterministic target ids in `0..v` (the first two rows take the ends of the vocabulary).
    fn targets(t: usize, v: usize, seed: u64) -> Vec<i64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..t)
            .map(|i| match i {
                0 => v as i64 - 1,
                1 => 0,
                _ => {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % v as u64) as i64
                }
            })
            .collect()
    }

    /// Worst errors of one token-stats case: log-prob and entropy relative to `max(|value|, 1)`
    /// (plain and autodiff forward), and the logits' gradient over its bound: `(base + 2^-21
    /// max(|z|, |lse|))` (the f32 ulp of `z - lse`) times the magnitude of its terms
    /// `|g_lp| (δ + p) + |g_H| p (|log p| + H + 1)`, with `base` 1e-5 for f32 and 1e-2 for bf16
    /// gradients.
    #[derive(Default, Debug)]
    struct LossErrors {
        logp: f64,
        entropy: f64,
        grad_over_bound: f64,
        grad_dtype_ok: bool,
    }

    fn loss_case(t: usize, v: usize, dtype: DType, use_h: bool, dev: &Dev) -> LossErrors {
        let base = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
        let logits = Tensor::<Cuda, 2>::random([t, v], Distribution::Normal(0.0, 3.0), dev).cast(dtype);
        let y = targets(t, v, (t * 31 + v) as u64);
        let g_lp = rand(t, -1.0, 1.0, dev);
        let g_h = rand(t, -1.0, 1.0, dev);
        let (z, glp, gh) = (host2(logits.clone()), host(g_lp.clone()), host(g_h.clone()));
        let ids = |d: &Dev| Tensor::<Cuda, 1, Int>::from_data(TensorData::new(y.clone(), [t]), d);
        // Plain burn-cuda forward.
        let (lp_plain, h_plain) = token_logprob_entropy(logits.clone(), ids(dev), true);
        let (lp_plain, h_plain) = (host(lp_plain), host(h_plain.expect("entropy")));
        // Under autodiff, forward and backward.
        let la = Tensor::<Ad, 2>::from_inner(logits).require_grad();
        let (lp, h) = token_logprob_entropy(la.clone(), Tensor::<Ad, 1, Int>::from_inner(ids(dev)), use_h);
        let (lp_ad, h_ad) = (host(lp.clone().inner()), h.as_ref().map(|h| host(h.clone().inner())));
        let mut loss = (lp * Tensor::<Ad, 1>::from_inner(g_lp)).sum();
        if let Some(h) = h {
            loss = loss + (h * Tensor::<Ad, 1>::from_inner(g_h)).sum();
        }
        let grads = loss.backward();
        let dz = la.grad(&grads).expect("logits gradient");
        let mut e = LossErrors {
            grad_dtype_ok: dz.dtype() == dtype,
            ..Default::default()
        };
        let dz = host2(dz);
        let rows: Vec<usize> = if t <= 64 {
            (0..t).collect()
        } else {
            (0..t).step_by(t / 31).chain([t - 1]).collect()
        };
        for r in rows {
            let zr = &z[r * v..(r + 1) * v];
            let m = zr.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + zr.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            let ent = -zr.iter().map(|x| (x - lse).exp() * (x - lse)).sum::<f64>();
            let logp = zr[y[r] as usize] - lse;
            let rel = |got: f64, want: f64| (got - want).abs() / want.abs().max(1.0);
            e.logp = e.logp.max(rel(lp_plain[r], logp)).max(rel(lp_ad[r], logp));
            e.entropy = e.entropy.max(rel(h_plain[r], ent));
            if let Some(h_ad) = &h_ad {
                e.entropy = e.entropy.max(rel(h_ad[r], ent));
            }
            let (a, b) = (glp[r], if use_h { gh[r] } else { 0.0 });
            for (j, &zj) in zr.iter().enumerate() {
                let lq = zj - lse;
                let p = lq.exp();
                let delta = if j == y[r] as usize { 1.0 } else { 0.0 };
                let want = a * (delta - p) - b * p * (lq + ent);
                let scale = a.abs() * (delta + p) + b.abs() * p * (lq.abs() + ent + 1.0);
                let bound = (base + 2f64.powi(-21) * zj.abs().max(lse.abs())) * scale;
                e.grad_over_bound = e.grad_over_bound.max((dz[r * v + j] - want).abs() / bound.max(1e-30));
            }
        }
        e
    }

    fn loss_check(dev: &Dev) -> bool {
        let mut ok = true;
        let mut cases: Vec<(DType, usize, usize, bool)> = Vec::new();
        for dtype in [DType::F32, DType::BF16] {
            for v in [1_001usize, 151_936] {
                for t in [1usize, 7, 300] {
                    cases.push((dtype, v, t, true));
                }
            }
        }
        // The log-probs alone (no entropy output: its upstream gradient is 0).
        cases.push((DType::BF16, 151_936, 7, false));
        cases.push((DType::F32, 1_001, 7, false));
        for (dtype, v, t, use_h) in cases {
            let before = fused_token_stats_counts().0;
            let e = loss_case(t, v, dtype, use_h, dev);
            let ran = fused_token_stats_counts().0 - before;
            // Plain forward, autodiff forward, backward.
            let pass = e.logp < 1e-5 && e.entropy < 1e-5 && e.grad_over_bound <= 1.0 && e.grad_dtype_ok && ran == 3;
            ok &= pass;
            println!(
                "{{\"check\":\"token_stats\",\"dtype\":\"{dtype:?}\",\"t\":{t},\"v\":{v},\"entropy_output\":{use_h},\"logp_rel_err\":{:.3e},\"entropy_rel_err\":{:.3e},\"grad_err_over_bound\":{:.3},\"grad_dtype_ok\":{},\"fused_launches\":{ran},\"pass\":{pass}}}",
                e.logp, e.entropy, e.grad_over_bound, e.grad_dtype_ok
            );
        }
        ok
    }

    fn loss_bench(dev: &Dev) {
        let v = 151_936;
        let t_max = 16_384;
        let logits = Tensor::<Cuda, 2>::random([t_max, v], Distribution::Normal(0.0, 3.0), dev).cast(DType::BF16);
        let y = targets(t_max, v, 5);
        for (t, fused) in [(4_096, true), (4_096, false), (t_max, true), (t_max, false)] {
            let z = logits.clone().narrow(0, 0, t);
            let ids = Tensor::<Ad, 1, Int>::from_data(TensorData::new(y[..t].to_vec(), [t]), dev);
            let (g_lp, g_h) = (
                Tensor::<Ad, 1>::from_inner(rand(t, -1.0, 1.0, dev)),
                Tensor::<Ad, 1>::from_inner(rand(t, -1.0, 1.0, dev)),
            );
            let run = || {
                let la = Tensor::<Ad, 2>::from_inner(z.clone()).require_grad();
                let (lp, h) = if fused {
                    token_logprob_entropy(la.clone(), ids.clone(), true)
                } else {
                    token_logprob_entropy_reference(la.clone(), ids.clone(), true)
                };
                let loss = (lp * g_lp.clone()).sum() + (h.expect("entropy") * g_h.clone()).sum();
                let grads = loss.backward();
                drop(la.grad(&grads));
            };
            run();
            Cuda::sync(dev).expect("sync");
            let iters = 5;
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            Cuda::sync(dev).expect("sync");
            let s = start.elapsed().as_secs_f64() / iters as f64;
            // Bytes the fused pair must move: logits read twice, their gradient written (bf16).
            let gbs = (t * v) as f64 * 2.0 * 3.0 / s / 1e9;
            let name = if fused { "fused" } else { "reference" };
            println!(
                "{{\"bench\":\"token_stats_fwd_bwd\",\"impl\":\"{name}\",\"t\":{t},\"v\":{v},\"dtype\":\"bf16\",\"ms\":{:.3},\"effective_gb_s\":{gbs:.0}}}",
                s * 1e3
            );
        }
        let (launched, failed) = fused_token_stats_counts();
        println!("fused token-stats kernels launched: {launched}, fell back after trying: {failed}");
    }

    pub fn main() {
        let dev = Dev::default();
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("check") => {
                let ok = check(&dev);
                let (launched, failed) = fused_adamw_counts();
                println!("fused AdamW kernels launched: {launched}, fell back after trying: {failed}");
                let loss_ok = loss_check(&dev);
                let (loss_launched, loss_failed) = fused_token_stats_counts();
                println!("fused token-stats kernels launched: {loss_launched}, fell back after trying: {loss_failed}");
                if !ok || failed > 0 || !loss_ok || loss_failed > 0 || loss_launched == 0 {
                    eprintln!("gpu-optim check: FAILED");
                    std::process::exit(1);
                }
                eprintln!("gpu-optim check: all cases pass");
            }
            Some("bench") => {
                bench(&dev);
                loss_bench(&dev);
            }
            _ => {
                eprintln!("usage: gpu-optim check | bench");
                std::process::exit(2);
            }
        }
    }
}
