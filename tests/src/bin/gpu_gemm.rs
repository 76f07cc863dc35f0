//! `gpu-gemm`: checks and benchmarks `research_kernels::linear::linear` on burn-cuda (the cuBLASLt
//! route), on the GPU machine.
//!
//! ```text
//! gpu-gemm check            # forward + autodiff backward, f32 and bf16, many shapes, vs float64;
//!                           # then the decode GEMV route: M = 1..8, bf16 and f16, both weight layouts
//! gpu-gemm bench [--iters 50] [--reference] [--max-m M]   # issue 7's shapes: TFLOP/s and GB/s, one JSON line each
//! ```
//! `check` also requires every GEMV case to have taken the route its tensors' real strides call
//! for (the GEMV kernels when `W`'s rows or columns are 16-byte aligned, unless `RESEARCH_GEMV=off`)
//! and prints the GEMV launch counts. `bench` lines carry `"route"` (`gemv` when the timed calls
//! ran the GEMV kernels, else `cublaslt`); with `RESEARCH_GEMV=off` their `impl` is
//! `research-cublaslt-nogemv` (and with `RESEARCH_GEMM_SYNC=1`, every call blocking, it ends in
//! `-sync`), so a second invocation (`RESEARCH_GEMV=off gpu-gemm bench --max-m 8`) gives the
//! cuBLASLt decode rows beside the GEMV ones. `RESEARCH_GEMV_NC_UNROLL` / `RESEARCH_GEMV_NC_WAVE`
//! (the GEMV kernel's tuning knobs, `research_kernels::linear::gemv`) add `-u<U>` / `-w<W>` to
//! `impl`.
//! `check` draws fresh uniform inputs, computes sampled output entries in float64 on the host from
//! the very inputs the GPU saw, and bounds the error by `tol · Σ_k |a_ik b_kj|` (plus the final
//! rounding to bf16 for bf16 outputs, and one more of the product when a bias is added); f32
//! uses 1e-5, which TF32 (10-bit mantissa) cannot meet.
//! Exit status 1 on any failure. `bench --reference` also times burn's own matmul path.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!("gpu-gemm: built without the `cuda` feature");
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
    use research::burn::tensor::{DType, Distribution, Tensor};
    use research::kernels::linear::{
        device_strides, gemv_counts, gemv_disabled, gemv_pdl_count, gemv_route_max_m, gemv_route_takes, linear,
        linear_reference,
    };

    type Cuda = research::burn::backend::Cuda<f32, i32>;
    type Ad = Autodiff<Cuda>;
    type Dev = research::burn::backend::cuda::CudaDevice;

    /// A tiny deterministic generator for sampling entries.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    fn host<const D: usize>(t: Tensor<Cuda, D>) -> Vec<f32> {
        t.cast(DType::F32).into_data().to_vec::<f32>().expect("f32 data")
    }

    fn rand<const D: usize>(shape: [usize; D], dtype: DType, dev: &Dev) -> Tensor<Cuda, D> {
        Tensor::<Cuda, D>::random(shape, Distribution::Uniform(-1.0, 1.0), dev).cast(dtype)
    }

    /// Worst `err / bound` over sampled entries of `got [m, n] ≈ a [m, k] · b [k, n] (+ bias)`;
    /// `a(i, kk)` and `b(kk, j)` index logical matrices. ≤ 1 passes.
    #[allow(clippy::too_many_arguments)]
    fn worst_ratio(
        m: usize,
        n: usize,
        k: usize,
        a: &dyn Fn(usize, usize) -> f32,
        b: &dyn Fn(usize, usize) -> f32,
        bias: Option<&[f32]>,
        got: &[f32],
        dtype: DType,
        rng: &mut Lcg,
    ) -> f64 {
        let (tol, out_round) = match dtype {
            DType::F32 => (1e-5, 0.0),
            _ => (2e-5, 1.0 / 256.0),
        };
        let samples = if m * n <= 256 { m * n } else { 256 };
        let mut worst = 0.0f64;
        for s in 0..samples {
            let (i, j) = if m * n <= 256 {
                (s / n, s % n)
            } else {
                (rng.next(m), rng.next(n))
            };
            let mut acc = bias.map(|b| b[j] as f64).unwrap_or(0.0);
            let mut abs = bias.map(|b| (b[j] as f64).abs()).unwrap_or(0.0);
            for kk in 0..k {
                let p = a(i, kk) as f64 * b(kk, j) as f64;
                acc += p;
                abs += p.abs();
            }
            let err = (got[i * n + j] as f64 - acc).abs();
            // bf16 output: one rounding of the result, and (with a bias) possibly one of the
            // product before the bias is added, as PyTorch's unfused `x @ W + b` also does.
            let product = acc - bias.map(|b| b[j] as f64).unwrap_or(0.0);
            let double = if bias.is_some() { product.abs() } else { 0.0 };
            let bound = tol * abs + out_round * (acc.abs() + double) + 1e-30;
            worst = worst.max(err / bound);
        }
        worst
    }

    struct Case {
        m_shape: Vec<usize>,
        k: usize,
        n: usize,
        bias: bool,
        transposed_w: bool,
    }

    fn cases() -> Vec<Case> {
        let mut v = vec![];
        for &(k, n) in &[(7usize, 5usize), (33, 65), (896, 1151), (1000, 4864)] {
            for &m in &[1usize, 8, 32, 128, 333] {
                v.push(Case {
                    m_shape: vec![m],
                    k,
                    n,
                    bias: m % 2 == 0,
                    transposed_w: m == 32,
                });
            }
        }
        // The model's shapes: [batch, seq, hidden] inputs, the tied head (transposed weight), a big M.
        v.push(Case {
            m_shape: vec![3, 17],
            k: 896,
            n: 4864,
            bias: true,
            transposed_w: false,
        });
        v.push(Case {
            m_shape: vec![2, 5],
            k: 896,
            n: 15_000,
            bias: false,
            transposed_w: true,
        });
        v.push(Case {
            m_shape: vec![4096],
            k: 3584,
            n: 4608,
            bias: true,
            transposed_w: false,
        });
        v.push(Case {
            m_shape: vec![4, 1],
            k: 3584,
            n: 18944,
            bias: false,
            transposed_w: false,
        });
        v
    }

    fn check() -> bool {
        let dev = Default::default();
        let mut rng = Lcg(7);
        let mut ok = true;
        for dtype in [DType::F32, DType::BF16] {
            for c in cases() {
                let m: usize = c.m_shape.iter().product();
                let (k, n) = (c.k, c.n);
                let w = if c.transposed_w {
                    rand([n, k], dtype, &dev).transpose()
                } else {
                    rand([k, n], dtype, &dev)
                };
                let b = c.bias.then(|| rand([n], dtype, &dev));
                let x2 = rand([m, k], dtype, &dev);
                let (xh, wh) = (host(x2.clone()), host(w.clone()));
                let bh = b.clone().map(host);
                // Forward through the public entry point at the case's rank.
                let y = match c.m_shape.len() {
                    1 => host(linear(x2.clone(), w.clone(), b.clone())),
                    _ => {
                        let x3 = x2.clone().reshape([c.m_shape[0], c.m_shape[1], k]);
                        host(linear(x3, w.clone(), b.clone()))
                    }
                };
                let fwd = worst_ratio(
                    m,
                    n,
                    k,
                    &|i, kk| xh[i * k + kk],
                    &|kk, j| wh[kk * n + j],
                    bh.as_deref(),
                    &y,
                    dtype,
                    &mut rng,
                );
                // Backward through autodiff: loss = Σ y ⊙ g, so dY = g.
                let g = rand([m, n], dtype, &dev);
                let gh = host(g.clone());
                let xa = Tensor::<Ad, 2>::from_inner(x2.clone()).require_grad();
                let wa = Tensor::<Ad, 2>::from_inner(w.clone()).require_grad();
                let ba = b.clone().map(|b| Tensor::<Ad, 1>::from_inner(b).require_grad());
                let ya = linear(xa.clone(), wa.clone(), ba.clone());
                let grads = (ya * Tensor::<Ad, 2>::from_inner(g)).sum().backward();
                let dx = host(xa.grad(&grads).expect("dx"));
                let dw = host(wa.grad(&grads).expect("dw"));
                let dxr = worst_ratio(
                    m,
                    k,
                    n,
                    &|i, j| gh[i * n + j],
                    &|j, kk| wh[kk * n + j],
                    None,
                    &dx,
                    dtype,
                    &mut rng,
                );
                let dwr = worst_ratio(
                    k,
                    n,
                    m,
                    &|kk, i| xh[i * k + kk],
                    &|i, j| gh[i * n + j],
                    None,
                    &dw,
                    dtype,
                    &mut rng,
                );
                let mut dbr = 0.0;
                if let Some(ba) = ba {
                    let db = host(ba.grad(&grads).expect("db"));
                    let ones = |_: usize, _: usize| 1.0f32;
                    dbr = worst_ratio(1, n, m, &ones, &|i, j| gh[i * n + j], None, &db, dtype, &mut rng);
                }
                let worst = fwd.max(dxr).max(dwr).max(dbr);
                let pass = worst <= 1.0 && worst.is_finite();
                ok &= pass;
                println!(
                    "{} {:?} x{:?} k={k} n={n} bias={} wT={}: err/bound fwd {fwd:.3} dx {dxr:.3} dw {dwr:.3} db {dbr:.3}",
                    if pass { "ok  " } else { "FAIL" },
                    dtype,
                    c.m_shape,
                    c.bias,
                    c.transposed_w
                );
            }
        }
        ok
    }

    /// Whether the GEMV kernels must take `x [m, k] @ w [k, n]`, from the tensors' real strides
    /// (burn-cuda pads the rows of new tensors: cubecl's pitched layout gives a 16-bit
    /// `[1000, 1151]` tensor a row stride of 1280, so the logical shape does not tell): the kernels'
    /// documented needs, written out here independently of the planner: 16-byte rows of `W`
    /// (N-contiguous: row stride a multiple of 8 elements) or 16-byte columns of `W` and rows of
    /// `X` (K-contiguous: `K`, the column stride, and with more than one row the row stride of
    /// `X`, multiples of 8). `None` when the strides cannot be read (then the check fails).
    fn gemv_expected(m: usize, k: usize, w_strides: &[usize], x_strides: &[usize]) -> Option<bool> {
        let (&[rs, cs], &[xr, _]) = (w_strides, x_strides) else {
            return None;
        };
        Some(if cs == 1 {
            rs.is_multiple_of(8)
        } else if rs == 1 {
            k.is_multiple_of(8) && cs.is_multiple_of(8) && (m == 1 || xr.is_multiple_of(8))
        } else {
            false
        })
    }

    /// The decode GEMV route: forward products with M = 1..8 rows over K-contiguous weights (a
    /// transposed `[N, K]` tensor, like the tied head) and N-contiguous weights (row-major `[K, N]`,
    /// like every loaded linear weight), bf16 and f16, with and without bias, 2-D and `[M, 1, K]`
    /// inputs, N odd or not a multiple of the kernels' column blocks; each checked against float64
    /// and required to have taken the route the tensors' real layout calls for ([`gemv_expected`],
    /// unless `RESEARCH_GEMV=off`), which must also be what the planner says
    /// (`gemv_route_takes`): a product that runs GEMV where it should not, or declines where it
    /// should run, fails. Each line prints `W`'s strides.
    fn check_gemv() -> bool {
        let dev = Default::default();
        let mut rng = Lcg(11);
        let mut ok = true;
        // (K, N, layout): "kc" a transposed [N, K] tensor; "nc" a contiguous [K, N] one.
        let shapes: [(usize, usize, &str); 12] = [
            (3584, 4608, "kc"),
            (3584, 4608, "nc"),
            (3584, 3584, "nc"),
            (18944, 3584, "nc"),
            (1000, 1151, "kc"),
            (1000, 1160, "nc"), // 18 blocks of 64 columns and one of 8
            (1000, 1151, "nc"), // odd N: GEMV only if burn padded the rows (it does: stride 1280)
            (520, 67, "kc"),
            (520, 72, "nc"),
            (64, 5, "kc"),
            (64, 8, "nc"),
            (896, 24, "nc"),
        ];
        for dtype in [DType::BF16, DType::F16] {
            for (idx, &(k, n, layout)) in shapes.iter().enumerate() {
                if k > 4096 && dtype == DType::F16 {
                    continue; // the big down projection once (bf16) is enough
                }
                let w = match layout {
                    "kc" => rand([n, k], dtype, &dev).transpose(),
                    _ => rand([k, n], dtype, &dev),
                };
                let w_strides = device_strides(&w).unwrap_or_default();
                let wh = host(w.clone());
                for m in 1..=8usize {
                    let with_bias = (m + idx) % 2 == 0;
                    let b = with_bias.then(|| rand([n], dtype, &dev));
                    let bh = b.clone().map(host);
                    let x2 = rand([m, k], dtype, &dev);
                    let xh = host(x2.clone());
                    let x_strides = device_strides(&x2).unwrap_or_default();
                    let expected = gemv_expected(m, k, &w_strides, &x_strides);
                    let planned = gemv_route_takes(dtype, &[m, k], &x_strides, &[k, n], &w_strides);
                    // The planner must agree with the kernels' documented needs; the route run must
                    // be that one (none with RESEARCH_GEMV=off or above RESEARCH_GEMV_MAX_M rows).
                    let expect_gemv = expected.map(|e| e && !gemv_disabled() && m <= gemv_route_max_m());
                    let before = gemv_counts().0;
                    let y = if m % 3 == 0 {
                        host(linear(x2.reshape([m, 1, k]), w.clone(), b.clone()).reshape([m, n]))
                    } else {
                        host(linear(x2, w.clone(), b.clone()))
                    };
                    let ran_gemv = gemv_counts().0 > before;
                    let worst = worst_ratio(
                        m,
                        n,
                        k,
                        &|i, kk| xh[i * k + kk],
                        &|kk, j| wh[kk * n + j],
                        bh.as_deref(),
                        &y,
                        dtype,
                        &mut rng,
                    );
                    let route_ok = expect_gemv == Some(ran_gemv) && planned == ran_gemv;
                    let pass = worst <= 1.0 && worst.is_finite() && route_ok;
                    ok &= pass;
                    println!(
                        "{} gemv {:?} m={m} k={k} n={n} w={layout} strides={w_strides:?} bias={with_bias}: err/bound fwd \
                         {worst:.3} (route {}, expected {}, planned {})",
                        if pass { "ok  " } else { "FAIL" },
                        dtype,
                        if ran_gemv { "gemv" } else { "cublaslt" },
                        match expect_gemv {
                            Some(true) => "gemv",
                            Some(false) => "cublaslt",
                            None => "unknown (no strides)",
                        },
                        if planned { "gemv" } else { "cublaslt" }
                    );
                }
            }
        }
        ok
    }

    /// Whether `RESEARCH_GEMV_PDL=0` asks for plain GEMV launches (the kernels crate reads the same).
    fn pdl_disabled() -> bool {
        std::env::var("RESEARCH_GEMV_PDL").is_ok_and(|v| v.trim() == "0")
    }

    /// Back-to-back dependent GEMVs, the case programmatic dependent launch must keep correct:
    /// `y1 = x W1` (N-contiguous, split-K: scratch and counters reused by the next launch), `y2 = y1
    /// W2` (N-contiguous, 4608 columns), `y3 = y2 W3` (K-contiguous: a transposed `[3584, 4608]`),
    /// then `W1` rescaled by a burn kernel (a weight written right before the product that reads
    /// it, as after an optimizer step) and `y4 = y3 W1'`, all enqueued before anything is read
    /// back, four rounds. Each stage is checked in float64 against the inputs it was given, read
    /// back afterwards (so a stage that read its input or weight before the previous kernel had
    /// written it fails), and must have run the GEMV kernels.
    fn check_gemv_chain() -> bool {
        let dev = Default::default();
        let mut rng = Lcg(13);
        let mut ok = true;
        let dtype = DType::BF16;
        let (d, e) = (3584usize, 4608usize);
        for round in 0..4 {
            let w1 = rand([d, d], dtype, &dev);
            let w2 = rand([d, e], dtype, &dev);
            let w3 = rand([d, e], dtype, &dev).transpose(); // [e, d] view of a [d, e] tensor
            let x = rand([1, d], dtype, &dev);
            let w1h = host(w1.clone());
            let before = gemv_counts().0;
            let y1 = linear(x.clone(), w1.clone(), None);
            let y2 = linear(y1.clone(), w2.clone(), None);
            let y3 = linear(y2.clone(), w3.clone(), None);
            let w1s = w1.mul_scalar(0.5); // exact in bf16
            let y4 = linear(y3.clone(), w1s.clone(), None);
            let (xh, y1h, y2h, y3h, y4h) = (host(x), host(y1), host(y2), host(y3), host(y4));
            let (w2h, w3h, w1sh) = (host(w2), host(w3), host(w1s));
            // Counted after the read-backs: a product enqueued without waiting counts its launch
            // when cubecl's device thread runs it, which the reads wait for.
            let gemvs = gemv_counts().0 - before;
            // (name, input row, weight [k, n] row-major, k, n, output)
            type Stage<'a> = (&'a str, &'a [f32], &'a [f32], usize, usize, &'a [f32]);
            let stages: [Stage; 4] = [
                ("x W1", &xh, &w1h, d, d, &y1h),
                ("y1 W2", &y1h, &w2h, d, e, &y2h),
                ("y2 W3", &y2h, &w3h, e, d, &y3h),
                ("y3 (W1/2)", &y3h, &w1sh, d, d, &y4h),
            ];
            for (name, a, b, k, n, got) in stages {
                let worst = worst_ratio(
                    1,
                    n,
                    k,
                    &|_, kk| a[kk],
                    &|kk, j| b[kk * n + j],
                    None,
                    got,
                    dtype,
                    &mut rng,
                );
                let pass = worst <= 1.0 && worst.is_finite() && (gemv_disabled() || gemvs == 4);
                ok &= pass;
                println!(
                    "{} gemv chain round {round} {name} k={k} n={n}: err/bound {worst:.3} ({gemvs} of 4 products on GEMV)",
                    if pass { "ok  " } else { "FAIL" }
                );
            }
        }
        ok
    }

    fn time<F: FnMut()>(iters: usize, dev: &Dev, mut f: F) -> f64 {
        for _ in 0..3 {
            f();
        }
        let _ = Cuda::sync(dev);
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let _ = Cuda::sync(dev);
        t.elapsed().as_secs_f64() / iters as f64
    }

    fn bench(iters: usize, with_reference: bool, max_m: usize) {
        let dev: Dev = Default::default();
        let dtype = DType::BF16;
        let weights: [(usize, usize); 5] = [(3584, 4608), (3584, 3584), (3584, 37888), (18944, 3584), (3584, 152064)];
        let mut shapes: Vec<(usize, usize, usize)> = vec![(8192, 8192, 8192)];
        for &(k, n) in &weights {
            for m in [4096usize, 1, 8, 32, 128] {
                shapes.push((m, k, n));
            }
        }
        let mut cached: Option<((usize, usize), Tensor<Cuda, 2>)> = None;
        // The default run keeps the name `gemm_table.py` reads; comparison runs get their own.
        // GEMV tuning knobs, when set, name the variant (`-u8-w1056`) so variants run in one call
        // stay apart.
        let knob = |name: &str, tag: &str| std::env::var(name).map(|v| format!("-{tag}{v}")).unwrap_or_default();
        let impl_name = format!(
            "research-cublaslt{}{}{}{}",
            knob("RESEARCH_GEMV_NC_UNROLL", "u") + &knob("RESEARCH_GEMV_NC_WAVE", "w"),
            if gemv_disabled() { "-nogemv" } else { "" },
            match (
                pdl_disabled(),
                std::env::var("RESEARCH_GEMM_ONE_TASK").is_ok_and(|v| v.trim() == "1")
            ) {
                (false, false) => "",
                (true, false) => "-nopdl",
                (false, true) => "-onetask",
                (true, true) => "-nopdl-onetask",
            },
            if std::env::var("RESEARCH_GEMM_SYNC").is_ok_and(|v| v == "1") {
                "-sync"
            } else {
                ""
            }
        );
        for (m, k, n) in shapes.into_iter().filter(|&(m, _, _)| m <= max_m) {
            let w = match &cached {
                Some((key, w)) if *key == (k, n) => w.clone(),
                _ => {
                    drop(cached.take()); // free the previous weight before allocating the next
                    let w = rand([k, n], dtype, &dev);
                    cached = Some(((k, n), w.clone()));
                    w
                }
            };
            let x = rand([m, k], dtype, &dev);
            let flops = 2.0 * m as f64 * n as f64 * k as f64;
            let bytes = 2.0 * (m * k + k * n + m * n) as f64;
            let it = if m * n * k > 1 << 36 { iters.min(20) } else { iters };
            let before = gemv_counts().0;
            let before_pdl = gemv_pdl_count();
            let t = time(it, &dev, || {
                let _ = linear(x.clone(), w.clone(), None);
            });
            let route = if gemv_counts().0 > before { "gemv" } else { "cublaslt" };
            let pdl = gemv_pdl_count() > before_pdl;
            let mut line = format!(
                "{{\"impl\":\"{impl_name}\",\"route\":\"{route}\",\"pdl\":{pdl},\"iters\":{it},\"m\":{m},\"k\":{k},\"n\":{n},\"dtype\":\"bf16\",\"us\":{:.2},\"tflops\":{:.2},\"gbps\":{:.1}",
                t * 1e6,
                flops / t / 1e12,
                bytes / t / 1e9
            );
            if with_reference {
                let tr = time(it, &dev, || {
                    let _ = linear_reference(x.clone(), w.clone(), None);
                });
                line += &format!(
                    ",\"burn_us\":{:.2},\"burn_tflops\":{:.2},\"burn_gbps\":{:.1}",
                    tr * 1e6,
                    flops / tr / 1e12,
                    bytes / tr / 1e9
                );
            }
            println!("{line}}}");
        }
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("check") => {
                // Every GEMV kernel instance (M = 1..=8) is checked, not only the default route.
                if std::env::var_os("RESEARCH_GEMV_MAX_M").is_none() {
                    std::env::set_var("RESEARCH_GEMV_MAX_M", "8");
                }
                let ok = check();
                let ok_gemv = check_gemv();
                let ok_chain = check_gemv_chain();
                let (launched, failed) = research::kernels::linear::cublaslt_counts();
                println!("cuBLASLt products launched: {launched}, fell back after trying: {failed}");
                let (gemv, declined) = gemv_counts();
                println!(
                    "GEMV products launched: {gemv}, ran on cuBLASLt instead: {declined} (RESEARCH_GEMV=off: {})",
                    gemv_disabled()
                );
                // On Hopper every GEMV is a programmatic dependent launch unless switched off.
                let pdl = gemv_pdl_count();
                println!(
                    "GEMV programmatic dependent launches: {pdl} of {gemv} (RESEARCH_GEMV_PDL=0: {}; expected all on \
                     Hopper)",
                    pdl_disabled()
                );
                let gemv_bad = !gemv_disabled() && (gemv == 0 || declined > 0);
                let pdl_bad = !gemv_disabled() && if pdl_disabled() { pdl != 0 } else { pdl != gemv };
                if !ok || !ok_gemv || !ok_chain || launched == 0 || failed > 0 || gemv_bad || pdl_bad {
                    std::process::exit(1);
                }
            }
            Some("bench") => {
                let iters = args
                    .iter()
                    .position(|a| a == "--iters")
                    .and_then(|i| args.get(i + 1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(50);
                let max_m = args
                    .iter()
                    .position(|a| a == "--max-m")
                    .and_then(|i| args.get(i + 1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                bench(iters, args.iter().any(|a| a == "--reference"), max_m);
                let (gemv, declined) = gemv_counts();
                println!(
                    "GEMV products launched: {gemv} ({} programmatic dependent), ran on cuBLASLt instead: {declined}",
                    gemv_pdl_count()
                );
            }
            _ => {
                eprintln!("usage: gpu-gemm check | gpu-gemm bench [--iters N] [--reference] [--max-m M]");
                std::process::exit(2);
            }
        }
    }
}
