//! i8 quantization of unit vectors for usearch's i8 storage.
//!
//! usearch converts an f32 vector to i8 by normalising it and truncating ×127, which leaves only a
//! few levels per component of a 768-d unit vector (recall@10 stalls near 0.8 on clustered data,
//! `docs/retrieval.md`). We quantize ourselves instead: each vector is scaled so that its largest
//! component is ±127, then rounded. An i8 index uses the cosine metric, which ignores that scale,
//! and queries are quantized the same way.

/// `x` scaled so that its largest |component| is 127, rounded to the nearest integer (halves
/// away from zero); all zeros stay zeros.
pub fn quantize_max_abs(x: &[f32], out: &mut [i8]) {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // `f32::max` skips NaN, and a NaN component casts to 0.
    if max <= 0.0 {
        out.iter_mut().for_each(|o| *o = 0);
        return;
    }
    let scale = 127.0 / max;
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v * scale).round().clamp(-127.0, 127.0) as i8;
    }
}
