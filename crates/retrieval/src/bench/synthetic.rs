//! Clustered synthetic unit vectors generated in process, deterministic from a seed and the row
//! number, for the wiki-18-scale search benchmark ([`super::scale`]).
//!
//! The distribution is the one of `tests/gpu/gen_search_vectors.py` (the 1M-vector table of
//! `docs/benchmarks.md`): `centres` centres drawn from N(0, I/dims) and normalised; every vector
//! picks a centre uniformly, adds isotropic gaussian noise N(0, noise² I/dims) and is normalised,
//! so its cosine with its centre is about 1/sqrt(1 + noise²) (0.8 for noise 0.75). The default
//! centre count is the script's, `n / 256` clamped to 16..=8192. The random numbers differ from
//! numpy's (this is ChaCha8 and the polar method), so the vectors are not the script's, only
//! drawn the same way.
//!
//! Every row has its own ChaCha8 stream (key from the seed and the kind of row, stream = row
//! number), so a row is the same whichever thread generates it, in whichever order or chunk:
//! nothing needs to be stored to regenerate the base for the exact search.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, RetrievalError};

/// The three independent row streams of one seed.
#[derive(Clone, Copy)]
enum Kind {
    Centre = 0,
    Query = 1,
    Base = 2,
}

/// The centre count `gen_search_vectors.py` uses for `n` base vectors: `n / 256`, at least 16 and
/// at most 8192.
pub fn default_centres(n: u64) -> usize {
    (n / 256).clamp(16, 8192) as usize
}

/// A clustered synthetic distribution of `dims`-wide unit vectors (see the module doc).
pub struct Synthetic {
    dims: usize,
    noise: f32,
    centres: Vec<f32>,
    keys: [[u8; 32]; 3],
}

/// SplitMix64: the seed expansion.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard normal deviates by Marsaglia's polar method, two per accepted pair.
struct Normals {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Normals {
    fn uniform(&mut self) -> f64 {
        // 53 random bits in [0, 1), mapped to (-1, 1).
        ((self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) * 2.0 - 1.0
    }

    fn next(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        loop {
            let u = self.uniform();
            let v = self.uniform();
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

impl Synthetic {
    /// The distribution of `seed`: `centres` centres of width `dims`, noise norm `noise` relative
    /// to the unit centre.
    pub fn new(dims: usize, centres: usize, noise: f32, seed: u64) -> Result<Self> {
        if dims == 0 || centres == 0 || !(noise.is_finite() && noise >= 0.0) {
            return Err(RetrievalError::Input(format!(
                "synthetic vectors: dims {dims}, centres {centres}, noise {noise}: expected dims >= 1, centres >= 1, \
                 a finite noise >= 0"
            )));
        }
        let mut x = seed;
        let mut keys = [[0u8; 32]; 3];
        for key in &mut keys {
            for part in key.chunks_exact_mut(8) {
                part.copy_from_slice(&splitmix(&mut x).to_le_bytes());
            }
        }
        let mut s = Self {
            dims,
            noise,
            centres: Vec::new(),
            keys,
        };
        let mut c = vec![0f32; centres * dims];
        for (i, row) in c.chunks_exact_mut(dims).enumerate() {
            let mut g = s.normals(Kind::Centre, i as u64);
            // N(0, I/dims); the scale goes away in the normalisation.
            row.iter_mut().for_each(|v| *v = g.next() as f32);
            normalize(row);
        }
        s.centres = c;
        Ok(s)
    }

    /// Vector width.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of centres.
    pub fn centres(&self) -> usize {
        self.centres.len() / self.dims
    }

    /// Centre `i` (a unit vector).
    pub fn centre(&self, i: usize) -> &[f32] {
        &self.centres[i * self.dims..(i + 1) * self.dims]
    }

    fn normals(&self, kind: Kind, row: u64) -> Normals {
        let mut rng = ChaCha8Rng::from_seed(self.keys[kind as usize]);
        rng.set_stream(row);
        Normals { rng, spare: None }
    }

    /// Draws one vector of `kind` into `out`; returns its centre.
    fn draw(&self, kind: Kind, row: u64, out: &mut [f32]) -> usize {
        assert_eq!(out.len(), self.dims, "a row buffer of the distribution's width");
        let mut g = self.normals(kind, row);
        // Lemire's multiply-shift: uniform over the centres (bias < centres / 2^64).
        let pick = ((g.rng.next_u64() as u128 * self.centres() as u128) >> 64) as usize;
        let scale = self.noise as f64 / (self.dims as f64).sqrt();
        for (o, c) in out.iter_mut().zip(self.centre(pick)) {
            *o = (*c as f64 + g.next() * scale) as f32;
        }
        normalize(out);
        pick
    }

    /// Base vector `row` into `out` (`dims` wide); returns the index of its centre.
    pub fn base_row(&self, row: u64, out: &mut [f32]) -> usize {
        self.draw(Kind::Base, row, out)
    }

    /// Query `q` into `out`: the same distribution as the base, from a stream of its own (so the
    /// queries are held out and do not depend on the base size).
    pub fn query_row(&self, q: u64, out: &mut [f32]) -> usize {
        self.draw(Kind::Query, q, out)
    }

    /// Base rows `start..start + out.len() / dims`, row-major.
    pub fn base_rows(&self, start: u64, out: &mut [f32]) {
        for (i, row) in out.chunks_exact_mut(self.dims).enumerate() {
            self.base_row(start + i as u64, row);
        }
    }

    /// The first `count` queries, row-major.
    pub fn queries(&self, count: usize) -> Vec<f32> {
        let mut out = vec![0f32; count * self.dims];
        for (i, row) in out.chunks_exact_mut(self.dims).enumerate() {
            self.query_row(i as u64, row);
        }
        out
    }
}

/// Scales `x` to unit L2 norm (the norm summed in f64); a zero vector stays zero.
fn normalize(x: &mut [f32]) {
    let norm = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    if norm > 0.0 {
        x.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    #[test]
    fn centre_count_follows_the_python_generator() {
        assert_eq!(default_centres(1_000), 16);
        assert_eq!(default_centres(200_000), 781);
        assert_eq!(default_centres(1_000_000), 3906);
        assert_eq!(default_centres(21_015_324), 8192);
    }

    #[test]
    fn rows_depend_only_on_seed_and_row_number() {
        let s = Synthetic::new(48, 20, 0.75, 7).unwrap();
        let n = 300;
        // In order, in one buffer.
        let mut all = vec![0f32; n * 48];
        s.base_rows(0, &mut all);
        // Backwards, one row at a time, from another instance of the same seed.
        let t = Synthetic::new(48, 20, 0.75, 7).unwrap();
        let mut row = vec![0f32; 48];
        for r in (0..n).rev() {
            t.base_row(r as u64, &mut row);
            assert_eq!(&row[..], &all[r * 48..(r + 1) * 48], "row {r}");
        }
        // In uneven chunks from threads.
        let mut chunked = vec![0f32; n * 48];
        std::thread::scope(|sc| {
            let mut rest = &mut chunked[..];
            let mut start = 0u64;
            for rows in [7usize, 100, 1, 192] {
                let (head, tail) = rest.split_at_mut(rows * 48);
                rest = tail;
                let st = start;
                let s = &s;
                sc.spawn(move || s.base_rows(st, head));
                start += rows as u64;
            }
        });
        assert_eq!(chunked, all);
        // Another seed, other vectors; queries are not base rows.
        let u = Synthetic::new(48, 20, 0.75, 8).unwrap();
        u.base_row(0, &mut row);
        assert_ne!(&row[..], &all[..48]);
        s.query_row(0, &mut row);
        assert_ne!(&row[..], &all[..48]);
        assert_eq!(
            s.queries(3)[48..96],
            {
                let mut q = vec![0f32; 48];
                s.query_row(1, &mut q);
                q
            }[..]
        );
    }

    #[test]
    fn vectors_are_unit_and_as_close_to_their_centre_as_the_model_says() {
        // x = c + e with |c| = 1, e ~ N(0, noise² I/d): |e|² ≈ noise², c·e ≈ 0, so the cosine of
        // x with c is about 1/sqrt(1 + noise²) = 0.8 for noise 0.75 (spread ~ noise/sqrt(d)).
        let d = 768;
        let s = Synthetic::new(d, 50, 0.75, 0).unwrap();
        for i in 0..s.centres() {
            assert!((dot(s.centre(i), s.centre(i)) - 1.0).abs() < 1e-5);
        }
        // Random centres in 768-d are nearly orthogonal (|cos| ~ 1/sqrt(768) = 0.036).
        assert!(dot(s.centre(0), s.centre(1)).abs() < 0.2);
        let mut row = vec![0f32; d];
        let mut cos = Vec::new();
        let mut picks = vec![0usize; s.centres()];
        for r in 0..2000 {
            let c = s.base_row(r, &mut row);
            picks[c] += 1;
            assert!((dot(&row, &row) - 1.0).abs() < 1e-5);
            cos.push(dot(&row, s.centre(c)));
        }
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        assert!((mean - 0.8).abs() < 0.01, "mean cosine with the centre {mean}");
        // Uniform picks: 40 per centre expected; every centre used, none more than 3x.
        assert!(picks.iter().all(|&p| p > 0 && p < 120), "{picks:?}");
    }

    #[test]
    fn normals_have_unit_variance() {
        let s = Synthetic::new(4, 1, 0.0, 3).unwrap();
        let mut g = s.normals(Kind::Base, 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| g.next()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 1/sqrt(n) = 0.0022 for the mean, sqrt(2/n) = 0.0032 for the variance.
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.015, "mean {mean} var {var}");
        let tail = xs.iter().filter(|x| x.abs() > 1.96).count() as f64 / n as f64;
        assert!((tail - 0.05).abs() < 0.003, "P(|x| > 1.96) = {tail}");
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Synthetic::new(0, 1, 0.5, 0).is_err());
        assert!(Synthetic::new(4, 0, 0.5, 0).is_err());
        assert!(Synthetic::new(4, 1, f32::NAN, 0).is_err());
    }
}
