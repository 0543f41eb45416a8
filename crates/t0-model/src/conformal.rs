//! Split-conformal prediction intervals: the half-width is an order statistic of the absolute
//! residuals on a calibration block the model never saw, so that on exchangeable rows a new
//! value falls within ±half-width of its prediction with probability at least `nominal`.
//!
//! The locally adaptive variant (normalised residuals, Lei et al. 2018 §5.2): a scale model
//! ŝ(x) of |residual| is fitted on the *training* block, the calibration scores are
//! |y − ŷ| / ŝ(x), and the half-width at x is their order statistic times ŝ(x). Validity needs
//! only that ŝ never saw the calibration rows; how well ŝ tracks the noise decides the width.
//! The suite picks, per label on the calibration block, whichever has the smaller mean width
//! (both reach the nominal coverage there by construction). Fitting ŝ is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::Fitted;

/// How a model's intervals are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A constant half-width.
    #[default]
    Split,
    /// A half-width proportional to the fitted scale ŝ(x).
    Normalized,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Split => "split",
            Method::Normalized => "normalized",
        }
    }
}

/// The scale model of the normalised method: a ridge fit of |residual|, floored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub model: Fitted,
    /// The least scale: a share of the median training |residual| (a linear fit can reach 0).
    pub floor: f64,
}

/// Mondrian (group-conditional) conformal: one set of calibration scores per level of a
/// categorical feature, so each group's rows are covered at the level, not only the pool's
/// (Vovk et al. 2005; Romano et al. 2020). The scores are the chosen method's (absolute or
/// normalised residuals). A group whose scores cannot reach a level (fewer than
/// ⌈level·(n + 1)⌉ − 1 rows) falls back to the pooled scores: that group keeps only the
/// marginal guarantee, and the model says how many rows each group has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mondrian {
    /// The source column, as `train.mondrian` names it.
    pub column: String,
    /// Positions of the column's one-hot features in the model's design, by group.
    pub features: Vec<usize>,
    /// The group names: the feature names, then `missing` (no level set).
    pub groups: Vec<String>,
    /// Per group (as `groups`), its calibration scores, ascending.
    pub scores: Vec<Vec<f64>>,
}

impl Mondrian {
    /// The group of a row: the one-hot feature set, else `missing`.
    pub fn group(&self, x: &[f64]) -> usize {
        self.features.iter().position(|&j| x[j] == 1.0).unwrap_or(self.features.len())
    }

    /// The row's group's scores where they reach `level`.
    pub fn scores_at(&self, x: &[f64], level: f64) -> Option<&[f64]> {
        let s = &self.scores[self.group(x)];
        let k = ((s.len() + 1) as f64 * level).ceil() as usize;
        (k >= 1 && k <= s.len()).then_some(s.as_slice())
    }

    /// Group the (row, score) pairs of the calibration block; `rows` are design rows of `d`
    /// columns in `x`.
    pub fn fit(
        column: &str,
        features: Vec<usize>,
        names: &[String],
        x: &[f64],
        d: usize,
        pairs: &[(usize, f64)],
    ) -> Mondrian {
        let mut groups: Vec<String> = features.iter().map(|&j| names[j].clone()).collect();
        groups.push("missing".into());
        let mut m = Mondrian { column: column.to_string(), features, groups, scores: Vec::new() };
        m.scores = vec![Vec::new(); m.groups.len()];
        for &(i, s) in pairs {
            let g = m.group(&x[i * d..(i + 1) * d]);
            m.scores[g].push(s);
        }
        for s in &mut m.scores {
            s.sort_by(f64::total_cmp);
        }
        m
    }
}

/// The floor of ŝ, as a share of the median absolute training residual.
pub const SCALE_FLOOR: f64 = 0.05;

impl Scale {
    pub fn at(&self, row: &[f64]) -> f64 {
        let s = self.model.predict(row);
        if s.is_nan() { self.floor } else { s.max(self.floor) }
    }
}

/// The ⌈(n+1)·nominal⌉-th smallest of the n absolute `residuals` (the largest when that rank
/// passes n); infinite without residuals, so an uncalibrated interval is never too narrow.
pub fn halfwidth(residuals: &[f64], nominal: f64) -> f64 {
    let mut res: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
    res.sort_by(f64::total_cmp);
    let k = (((res.len() + 1) as f64 * nominal).ceil() as usize).clamp(1, res.len().max(1));
    res.get(k - 1).copied().unwrap_or(f64::INFINITY)
}

/// The share of `(prediction, value)` pairs within ±`halfwidth` (0 when there are none).
pub fn coverage(predictions: &[f64], values: &[f64], halfwidth: f64) -> f64 {
    let covered = predictions.iter().zip(values).filter(|(p, y)| (*p - *y).abs() <= halfwidth).count();
    covered as f64 / values.len().max(1) as f64
}
