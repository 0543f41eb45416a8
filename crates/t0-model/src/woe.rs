//! The weight-of-evidence prior as served: per-feature bins and their WOE, summed onto the
//! training log-odds. Fitting is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::Predict;
use crate::dist::sigmoid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Woe {
    pub prior: f64,
    /// Per feature: upper edges of its bins (value <= edge[k] is bin k, above the last edge
    /// the last bin), the WOE per bin, and the WOE of a missing value.
    pub edges: Vec<Vec<f64>>,
    pub woe: Vec<Vec<f64>>,
    pub missing: Vec<f64>,
}

impl Woe {
    pub fn bin(&self, j: usize, v: f64) -> Option<usize> {
        (!v.is_nan()).then(|| self.edges[j].partition_point(|e| *e < v))
    }
    /// The log-odds: the prior plus every feature's WOE.
    pub fn margin(&self, row: &[f64]) -> f64 {
        self.prior + self.explain(row).iter().sum::<f64>()
    }
}

impl Predict for Woe {
    /// Probability of the positive class.
    fn predict(&self, row: &[f64]) -> f64 {
        sigmoid(self.margin(row))
    }

    fn explain(&self, row: &[f64]) -> Vec<f64> {
        (0..row.len())
            .map(|j| match self.bin(j, row[j]) {
                Some(b) => self.woe[j][b],
                None => self.missing[j],
            })
            .collect()
    }
}
