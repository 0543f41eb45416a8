//! The tail gate as served: a logistic GBDT, the isotonic calibration of its probability and
//! its decision threshold. Fitting is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::Predict;
use crate::gbdt::Gbdt;
use crate::isotonic::Isotonic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub model: Gbdt,
    pub calibration: Option<Isotonic>,
    pub threshold: f64,
}

impl Gate {
    pub fn probability(&self, row: &[f64]) -> f64 {
        let p = self.model.predict(row);
        self.calibration.as_ref().map(|c| c.predict(p)).unwrap_or(p)
    }
}
