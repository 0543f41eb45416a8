//! What every served model shares: [`Predict`], the any-family [`Fitted`], explanations that
//! add up ([`Explanation`]) and the [`Standardiser`] linear models read their features through.

use serde::{Deserialize, Serialize};

use crate::aft::Aft;
use crate::gate::Gate;
use crate::gbdt::Gbdt;
use crate::ridge::Ridge;
use crate::stack::Stack;
use crate::woe::Woe;

/// A fitted model of one family, as served.
pub trait Predict {
    /// The model's score of one row: a value, a probability, or a log-time (AFT).
    fn predict(&self, row: &[f64]) -> f64;
    /// Per-feature contributions; with the model's base value they add up to `predict` on
    /// the model's link scale.
    fn explain(&self, row: &[f64]) -> Vec<f64>;
}

/// Median imputation and standardisation, fitted on the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardiser {
    pub median: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardiser {
    /// Fit on `x`, row-major with `d` columns (NaN = missing).
    pub fn fit(x: &[f64], d: usize) -> Standardiser {
        let n = x.len().checked_div(d).unwrap_or(0);
        let mut median = vec![0.0; d];
        let mut mean = vec![0.0; d];
        let mut std = vec![1.0; d];
        let mut col = Vec::with_capacity(n);
        for j in 0..d {
            col.clear();
            col.extend((0..n).map(|i| x[i * d + j]).filter(|v| !v.is_nan()));
            if col.is_empty() {
                continue;
            }
            col.sort_by(f64::total_cmp);
            let m = col.len();
            median[j] = if m % 2 == 1 { col[m / 2] } else { 0.5 * (col[m / 2 - 1] + col[m / 2]) };
            // Moments of the imputed column (missing rows count at the median).
            let missing = (n - m) as f64;
            let mu = (col.iter().sum::<f64>() + missing * median[j]) / n as f64;
            let var =
                (col.iter().map(|v| (v - mu).powi(2)).sum::<f64>() + missing * (median[j] - mu).powi(2)) / n as f64;
            mean[j] = mu;
            std[j] = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
        }
        Standardiser { median, mean, std }
    }
    pub fn value(&self, j: usize, v: f64) -> f64 {
        let v = if v.is_nan() { self.median[j] } else { v };
        (v - self.mean[j]) / self.std[j]
    }
    /// Every value of `x` (row-major, `d` columns) imputed and standardised.
    pub fn transform_all(&self, x: &[f64], d: usize) -> Vec<f64> {
        x.iter().enumerate().map(|(k, v)| self.value(k % d, *v)).collect()
    }
}

/// The scale a model's explanation adds up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// The label's (transformed) value.
    Value,
    /// The log-odds of the positive class (before any isotonic calibration).
    LogOdds,
    /// The location of log T (AFT models).
    LogTime,
}

impl Scale {
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Value => "value",
            Scale::LogOdds => "log-odds",
            Scale::LogTime => "log-time",
        }
    }
}

/// Why a model scored a row what it did: `base + Σ contributions = output` on `scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub scale: Scale,
    /// The output with every feature absent (the training mean for linear models, the
    /// cover-weighted expected margin for trees).
    pub base: f64,
    pub contributions: Vec<f64>,
    pub output: f64,
}

/// Contributions must add up to the output within this, relative to max(1, |output|).
pub const ADDITIVITY_TOLERANCE: f64 = 1e-9;

impl Explanation {
    /// `Err(gap)` when the contributions do not add up to the output.
    pub fn check(&self) -> Result<(), f64> {
        let gap = (self.base + self.contributions.iter().sum::<f64>() - self.output).abs();
        if gap <= ADDITIVITY_TOLERANCE * self.output.abs().max(1.0) { Ok(()) } else { Err(gap) }
    }
}

/// A fitted model of any family: what snapshots store and score replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Fitted {
    Ridge(Ridge),
    Gbdt(Gbdt),
    Aft(Aft),
    Woe(Woe),
    Stack(Stack),
    /// The tail gate: a calibrated probability and its threshold.
    Gate(Box<Gate>),
}

impl Fitted {
    pub fn kind(&self) -> String {
        match self {
            Fitted::Ridge(_) => "ridge".into(),
            Fitted::Gbdt(g) => format!("gbdt-{}", g.objective.name()),
            Fitted::Aft(a) => format!("aft-{}", a.dist.name()),
            Fitted::Woe(_) => "woe".into(),
            Fitted::Stack(_) => "stack".into(),
            Fitted::Gate(_) => "gate".into(),
        }
    }
    pub fn predict(&self, row: &[f64]) -> f64 {
        match self {
            Fitted::Ridge(m) => m.predict(row),
            Fitted::Gbdt(m) => m.predict(row),
            Fitted::Aft(m) => m.predict(row),
            Fitted::Woe(m) => m.predict(row),
            Fitted::Stack(m) => m.predict(row),
            Fitted::Gate(g) => g.probability(row),
        }
    }
    pub fn explain(&self, row: &[f64]) -> Vec<f64> {
        match self {
            Fitted::Ridge(m) => m.explain(row),
            Fitted::Gbdt(m) => m.explain(row),
            Fitted::Aft(m) => m.explain(row),
            Fitted::Woe(m) => m.explain(row),
            Fitted::Stack(m) => m.explain(row),
            Fitted::Gate(g) => g.model.explain(row),
        }
    }
    /// The link-scale score: the value, the log-odds (uncalibrated for the gate) or the
    /// location of log T.
    pub fn margin(&self, row: &[f64]) -> f64 {
        match self {
            Fitted::Ridge(m) => m.predict(row),
            Fitted::Gbdt(m) => m.margin(row),
            Fitted::Aft(m) => m.location(row),
            Fitted::Woe(m) => m.margin(row),
            Fitted::Stack(m) => m.margin(row),
            Fitted::Gate(g) => g.model.margin(row),
        }
    }
    /// The output with every feature absent, on the margin's scale.
    pub fn base_value(&self) -> f64 {
        match self {
            Fitted::Ridge(m) => m.intercept,
            Fitted::Aft(m) => m.intercept,
            Fitted::Woe(m) => m.prior,
            Fitted::Gbdt(m) => m.expected_margin(),
            Fitted::Gate(g) => g.model.expected_margin(),
            Fitted::Stack(m) => m.base_value(),
        }
    }
    pub fn scale(&self) -> Scale {
        match self {
            Fitted::Ridge(_) => Scale::Value,
            Fitted::Aft(_) => Scale::LogTime,
            Fitted::Woe(_) | Fitted::Gate(_) => Scale::LogOdds,
            Fitted::Gbdt(m) => m.scale(),
            Fitted::Stack(m) => m.bases.first().map(Fitted::scale).unwrap_or(Scale::Value),
        }
    }
    /// Exact contributions on [`Fitted::scale`]: linear terms for linear models, TreeSHAP for
    /// trees, meta-weighted base contributions for stacks.
    pub fn explanation(&self, row: &[f64]) -> Explanation {
        Explanation {
            scale: self.scale(),
            base: self.base_value(),
            contributions: self.explain(row),
            output: self.margin(row),
        }
    }
}
