//! Ridge regression as served: standardised features, coefficients and intercept. The
//! penalty search (exact leave-one-out) is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::{Predict, Standardiser};

/// Median-imputed, standardised features; categorical indicators and embeddings are columns
/// like any other (the frame has already expanded them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    pub scaler: Standardiser,
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub alpha: f64,
    pub loo_mse: Vec<(f64, f64)>,
}

impl Predict for Ridge {
    fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + self.explain(row).iter().sum::<f64>()
    }

    fn explain(&self, row: &[f64]) -> Vec<f64> {
        (0..row.len()).map(|j| self.coef[j] * self.scaler.value(j, row[j])).collect()
    }
}
