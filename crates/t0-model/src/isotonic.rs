//! Isotonic (monotone increasing) calibration by pool-adjacent-violators, predicting by linear
//! interpolation between the fitted points and clipping outside them, as scikit-learn's
//! `IsotonicRegression(out_of_bounds="clip")` does.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    /// Distinct inputs, increasing.
    pub x: Vec<f64>,
    /// Fitted values at `x`, non-decreasing.
    pub y: Vec<f64>,
}

impl Isotonic {
    /// Fit on (x, y) pairs (equal x are pooled first, by their mean y).
    pub fn fit(x: &[f64], y: &[f64], lo: f64, hi: f64) -> Option<Isotonic> {
        let mut pairs: Vec<(f64, f64)> =
            x.iter().copied().zip(y.iter().copied()).filter(|(a, b)| a.is_finite() && b.is_finite()).collect();
        if pairs.is_empty() {
            return None;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // (x, sum of y, weight) per distinct x.
        let mut ux: Vec<(f64, f64, f64)> = Vec::new();
        for (a, b) in pairs {
            match ux.last_mut() {
                Some(last) if last.0 == a => {
                    last.1 += b;
                    last.2 += 1.0;
                }
                _ => ux.push((a, b, 1.0)),
            }
        }
        // Blocks of (mean, weight, count of points).
        let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
        for &(_, s, w) in &ux {
            blocks.push((s / w, w, 1));
            while blocks.len() > 1 && blocks[blocks.len() - 2].0 >= blocks[blocks.len() - 1].0 {
                let b = blocks.pop().expect("two blocks");
                let a = blocks.last_mut().expect("two blocks");
                let w = a.1 + b.1;
                a.0 = (a.0 * a.1 + b.0 * b.1) / w;
                a.1 = w;
                a.2 += b.2;
            }
        }
        let y: Vec<f64> = blocks.iter().flat_map(|(m, _, c)| std::iter::repeat_n(m.clamp(lo, hi), *c)).collect();
        Some(Isotonic { x: ux.iter().map(|p| p.0).collect(), y })
    }

    pub fn predict(&self, v: f64) -> f64 {
        let n = self.x.len();
        if v.is_nan() {
            return f64::NAN;
        }
        if v <= self.x[0] {
            return self.y[0];
        }
        if v >= self.x[n - 1] {
            return self.y[n - 1];
        }
        let k = self.x.partition_point(|a| *a <= v);
        let (x0, x1, y0, y1) = (self.x[k - 1], self.x[k], self.y[k - 1], self.y[k]);
        y0 + (y1 - y0) * (v - x0) / (x1 - x0)
    }
}
