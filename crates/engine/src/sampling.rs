//! Choosing the next token from logits: greedy, temperature (Gumbel-max on the device), and
//! top-k / top-p (on the host, with a seeded ChaCha generator).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorCreationOptions};
use rand::Rng;

/// How to pick tokens. `temperature == 0` is greedy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Seed of the random generators.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Whether decoding is deterministic argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Whether sampling draws from the backend's random generator (temperature without top-k/top-p).
    pub fn uses_device_rng(&self) -> bool {
        !self.is_greedy() && !self.needs_host()
    }

    fn needs_host(&self) -> bool {
        !self.is_greedy() && (self.top_k > 0 || self.top_p < 1.0)
    }

    /// Checks the ranges; returns a message naming the bad parameter.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be a finite number ≥ 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// Picks one token per row of `logits` (`[rows, vocab]`, f32). Returns the ids and their
/// log-probabilities under the model's raw distribution (temperature 1, no filtering).
///
/// `forced[r] = Some(id)` replaces row `r`'s pick by `id` (forced decoding); its log-prob is still
/// the model's. An empty `forced` forces nothing.
pub fn sample<B: Backend>(
    logits: Tensor<B, 2>,
    params: &SamplingParams,
    rng: &mut rand_chacha::ChaCha8Rng,
    forced: &[Option<u32>],
) -> (Vec<u32>, Vec<f32>) {
    let [rows, vocab] = logits.dims();
    let device = logits.device();
    let logp = log_softmax(logits.clone(), 1);
    let ids: Tensor<B, 2, Int> = if params.is_greedy() {
        logits.argmax(1)
    } else if params.needs_host() {
        let host: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32 logits");
        let picked: Vec<i64> = host
            .chunks(vocab)
            .map(|row| sample_row_host(row, params, rng) as i64)
            .collect();
        Tensor::from_data(burn::tensor::TensorData::new(picked, [rows, 1]), &device)
    } else {
        // Gumbel-max: argmax(logits / T + G) with G = -ln(-ln U) samples from softmax(logits / T).
        let u = Tensor::<B, 2>::random(
            [rows, vocab],
            Distribution::Uniform(1e-20, 1.0),
            TensorCreationOptions::new(device.clone()).with_dtype(DType::F32),
        );
        let gumbel = u.log().neg().log().neg();
        (logits.div_scalar(params.temperature) + gumbel).argmax(1)
    };
    let ids = if forced.iter().any(Option::is_some) {
        let mask: Vec<bool> = (0..rows).map(|r| forced.get(r).is_some_and(Option::is_some)).collect();
        let values: Vec<i64> = (0..rows)
            .map(|r| forced.get(r).copied().flatten().unwrap_or(0) as i64)
            .collect();
        let mask =
            Tensor::<B, 2, burn::tensor::Bool>::from_data(burn::tensor::TensorData::new(mask, [rows, 1]), &device);
        let values = Tensor::<B, 2, Int>::from_data(burn::tensor::TensorData::new(values, [rows, 1]), &device);
        ids.mask_where(mask, values)
    } else {
        ids
    };
    let lp = logp.gather(1, ids.clone());
    // One transfer for both: ids are exact in f32 below 2^24.
    let both: Vec<f32> = Tensor::cat(vec![ids.float().cast(DType::F32), lp], 1)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data");
    let ids = both.chunks(2).map(|c| c[0] as u32).collect();
    let lps = both.chunks(2).map(|c| c[1]).collect();
    (ids, lps)
}

/// Top-k, then top-p, then a categorical draw, on one row of logits.
pub fn sample_row_host(row: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> usize {
    let t = params.temperature.max(1e-6);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let k = if params.top_k == 0 {
        row.len()
    } else {
        params.top_k.min(row.len())
    };
    order.truncate(k);
    let max = row[order[0]] / t;
    let mut probs: Vec<f64> = order.iter().map(|&i| ((row[i] / t - max) as f64).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    // Keep the smallest prefix whose mass reaches top_p.
    let mut cum = 0.0;
    let mut keep = probs.len();
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if cum >= params.top_p as f64 {
            keep = i + 1;
            break;
        }
    }
    let mass: f64 = probs[..keep].iter().sum();
    let mut x = rng.random::<f64>() * mass;
    for i in 0..keep {
        x -= probs[i];
        if x <= 0.0 {
            return order[i];
        }
    }
    order[keep - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn top_k_one_is_argmax() {
        let row = [0.1, 3.0, -1.0, 2.9];
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            assert_eq!(sample_row_host(&row, &p, &mut rng), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the first two.
        let row = [2.0f32, 1.0, 0.0, -1.0];
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            ..Default::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[sample_row_host(&row, &p, &mut rng)] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0);
        // Renormalised: 0.64/0.88 ≈ 0.73.
        let share = counts[0] as f64 / 4000.0;
        assert!((share - 0.731).abs() < 0.03, "share {share}");
    }

    #[test]
    fn device_temperature_sampling_follows_softmax_over_temperature() {
        use burn::tensor::TensorData;
        type B = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let logits = [1.0f32, 0.0, -1.0, 2.0];
        let rows = 20_000;
        let data: Vec<f32> = logits.iter().cycle().take(rows * 4).copied().collect();
        let t = Tensor::<B, 2>::from_data(TensorData::new(data, [rows, 4]), &dev);
        let p = SamplingParams {
            temperature: 2.0,
            seed: 5,
            ..Default::default()
        };
        B::seed(&dev, 5);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (ids, lps) = sample(t, &p, &mut rng, &[]);
        let z: f64 = logits.iter().map(|&l| (l as f64 / 2.0).exp()).sum();
        let zt: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        for (k, &l) in logits.iter().enumerate() {
            let want = (l as f64 / 2.0).exp() / z;
            let got = ids.iter().filter(|&&i| i as usize == k).count() as f64 / rows as f64;
            // 4 standard errors.
            let se = (want * (1.0 - want) / rows as f64).sqrt();
            assert!((got - want).abs() < 4.0 * se, "token {k}: {got} vs {want}");
        }
        // Reported log-probs are the raw (temperature 1) ones.
        for (&i, &lp) in ids.iter().zip(&lps) {
            let want = (logits[i as usize] as f64 - zt.ln()) as f32;
            assert!((lp - want).abs() < 1e-5);
        }
    }

    #[test]
    fn validate_rejects_bad_ranges() {
        assert!(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
