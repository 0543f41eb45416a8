//! The parametric accelerated-failure-time model as served: log T = x'β + σ·ε over
//! standardised features, with S(t) and the location of log T. Fitting is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::dist::Dist;
use crate::{Predict, Standardiser};

/// A parametric AFT model over standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aft {
    pub dist: Dist,
    pub scaler: Standardiser,
    pub intercept: f64,
    pub coef: Vec<f64>,
    pub log_sigma: f64,
    pub penalty: f64,
    pub train_log_likelihood: f64,
}

impl Aft {
    /// Location of log T for a row.
    pub fn location(&self, row: &[f64]) -> f64 {
        self.intercept + self.explain(row).iter().sum::<f64>()
    }
    pub fn sigma(&self) -> f64 {
        self.log_sigma.exp()
    }
    /// S(t) for a row.
    pub fn survival(&self, row: &[f64], t: f64) -> f64 {
        self.dist.log_surv((t.ln() - self.location(row)) / self.sigma()).exp()
    }
}

impl Predict for Aft {
    /// The location of log T (larger: longer survival).
    fn predict(&self, row: &[f64]) -> f64 {
        self.location(row)
    }

    fn explain(&self, row: &[f64]) -> Vec<f64> {
        (0..row.len()).map(|j| self.coef[j] * self.scaler.value(j, row[j])).collect()
    }
}
