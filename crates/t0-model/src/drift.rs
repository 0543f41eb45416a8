//! Population stability: each feature's and the prediction's training distribution, binned
//! once at training time and stored with the model, against what `score` sees.
//!
//! PSI = Σ (aₖ − eₖ) ln(aₖ / eₖ) over the bins (missing values are a bin of their own), with
//! each share floored at [`FLOOR`] so that an empty bin is large, not infinite. Rules of
//! thumb: below 0.1 stable, 0.1–0.25 shifting, above 0.25 shifted.

use serde::{Deserialize, Serialize};

/// Quantile bins per feature (fewer where values repeat).
pub const BINS: usize = 10;
/// The name the prediction's reference goes by (after the features').
pub const PREDICTION: &str = "(prediction)";
/// The least share a bin counts with.
pub const FLOOR: f64 = 1e-4;

/// One variable's training distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    /// Upper bin edges: `v <= edges[k]` is bin k, above the last edge bin `edges.len()`.
    pub edges: Vec<f64>,
    /// Training share of each bin (`edges.len() + 1` of them), then of missing values.
    pub share: Vec<f64>,
}

impl Reference {
    /// Bin `values` at their deciles (distinct edges only).
    pub fn fit(name: &str, values: &[f64]) -> Reference {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mut edges: Vec<f64> = (1..BINS).filter(|k| k * n / BINS > 0).map(|k| sorted[k * n / BINS - 1]).collect();
        edges.dedup();
        if edges.last() == sorted.last() {
            edges.pop();
        }
        let mut r = Reference { name: name.to_string(), edges, share: Vec::new() };
        r.share = r.shares(values);
        r
    }

    fn bin(&self, v: f64) -> usize {
        if v.is_nan() { self.edges.len() + 1 } else { self.edges.partition_point(|e| *e < v) }
    }

    /// The share of `values` in each bin (missing last); all zero for no values.
    pub fn shares(&self, values: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; self.edges.len() + 2];
        for v in values {
            c[self.bin(*v)] += 1.0;
        }
        let n = values.len().max(1) as f64;
        c.iter().map(|k| k / n).collect()
    }

    /// PSI of `values` against the training distribution.
    pub fn psi(&self, values: &[f64]) -> f64 {
        self.shares(values)
            .iter()
            .zip(&self.share)
            .map(|(a, e)| {
                let (a, e) = (a.max(FLOOR), e.max(FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_on_the_training_rows_and_grows_with_a_shift() {
        let train: Vec<f64> = (0..1000).map(|i| f64::from(i % 100)).collect();
        let r = Reference::fit("x", &train);
        assert_eq!(r.edges.len(), BINS - 1);
        assert!((r.share.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(r.psi(&train).abs() < 1e-12);
        let shifted: Vec<f64> = train.iter().map(|v| v + 30.0).collect();
        let far: Vec<f64> = train.iter().map(|v| v + 90.0).collect();
        let (a, b) = (r.psi(&shifted), r.psi(&far));
        assert!(0.25 < a && a < b, "{a} {b}");
        // Missing values are a bin of their own; a 0/1 flag has two bins.
        let mut holes = train.clone();
        holes.iter_mut().step_by(2).for_each(|v| *v = f64::NAN);
        assert!(r.psi(&holes) > 1.0);
        let flag = Reference::fit("f", &[0.0, 1.0, 1.0, 0.0]);
        assert_eq!((flag.edges.as_slice(), flag.share.as_slice()), (&[0.0][..], &[0.5, 0.5, 0.0][..]));
    }

    /// PSI by hand for two bins: shares (0.5, 0.5) against (0.8, 0.2).
    #[test]
    fn psi_matches_its_formula() {
        let r = Reference::fit("f", &[0.0, 1.0]);
        // The missing bin is empty on both sides: floored alike, it adds nothing.
        let want = (0.8f64 - 0.5) * (0.8f64 / 0.5).ln() + (0.2f64 - 0.5) * (0.2f64 / 0.5).ln();
        let got = r.psi(&[0.0, 0.0, 0.0, 0.0, 1.0]);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
