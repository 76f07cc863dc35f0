//! Group-normalised advantages (GRPO, outcome reward).

/// `A_i = (r_i - mean_g) / (std_g + 1e-6)` over each group `g` of samples of the same prompt, with the
/// unbiased standard deviation; a group of one gets mean 0 and std 1 (as verl 0.2).
///
/// `groups[i]` names the group of sample `i` (any key; samples of one prompt share it).
pub fn group_advantages<K: Eq + std::hash::Hash>(rewards: &[f32], groups: &[K]) -> Vec<f32> {
    assert_eq!(rewards.len(), groups.len(), "one group key per reward");
    let mut members: std::collections::HashMap<&K, Vec<usize>> = std::collections::HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    let mut out = vec![0.0f32; rewards.len()];
    for idx in members.values() {
        let (mean, std) = if idx.len() == 1 {
            (0.0f64, 1.0f64)
        } else {
            let n = idx.len() as f64;
            let mean = idx.iter().map(|&i| rewards[i] as f64).sum::<f64>() / n;
            let var = idx.iter().map(|&i| (rewards[i] as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (mean, var.sqrt())
        };
        for &i in idx {
            out[i] = ((rewards[i] as f64 - mean) / (std + 1e-6)) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_groups() {
        // Group a: rewards 1, 0, 0.5 -> mean 0.5, unbiased std 0.5.
        // Group b: a single sample -> mean 0, std 1 -> A = r / (1 + 1e-6).
        // Group c: all equal -> std 0 -> A = 0.
        let r = [1.0, 0.0, 0.3, 0.5, 0.1, 0.1];
        let g = ["a", "a", "b", "a", "c", "c"];
        let a = group_advantages(&r, &g);
        let expect = [0.5 / 0.500001, -0.5 / 0.500001, 0.3 / 1.000001, 0.0, 0.0, 0.0];
        for (x, e) in a.iter().zip(expect) {
            assert!((*x as f64 - e).abs() < 1e-6, "{a:?}");
        }
    }

    #[test]
    fn five_samples_like_the_paper() {
        // n = 5: rewards 0.1 (format ok, wrong) x3, 1.0, 0.0 -> mean 0.26,
        // var = (3*0.16^2 + 0.74^2 + 0.26^2)/4 = (0.0768 + 0.5476 + 0.0676)/4 = 0.173
        let r = [0.1, 0.1, 0.1, 1.0, 0.0];
        let a = group_advantages(&r, &[7; 5]);
        let std = 0.173f64.sqrt();
        assert!((a[3] as f64 - 0.74 / (std + 1e-6)).abs() < 1e-5);
        assert!((a[4] as f64 + 0.26 / (std + 1e-6)).abs() < 1e-5);
    }
}
