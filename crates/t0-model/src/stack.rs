//! A stack as served: its base models and the meta-learner over their link-scale scores.
//! The out-of-fold fitting is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::aft::Aft;
use crate::dist::sigmoid;
use crate::{Fitted, Predict};

/// How the bases' predictions are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Meta {
    /// `Σ wₖ pₖ` (the intercept is 0: a convex blend).
    Linear { intercept: f64, weights: Vec<f64> },
    /// `σ(a + Σ wₖ mₖ)` over the bases' log-odds.
    Logistic { intercept: f64, weights: Vec<f64> },
    /// An AFT over the bases' locations; predicts the location of log T.
    Aft(Aft),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub bases: Vec<Fitted>,
    pub meta: Meta,
    /// Training rows that had an out-of-fold prediction.
    pub oof_rows: usize,
}

impl Stack {
    /// The meta AFT of a censored stack (distribution and scale of its survival outputs).
    pub fn aft(&self) -> Option<&Aft> {
        match &self.meta {
            Meta::Aft(a) => Some(a),
            _ => None,
        }
    }

    /// The meta-learner's input from each base's prediction of a row.
    /// The bases' link-scale scores (their margins: a probability's log-odds exactly, not
    /// the logit of a rounded probability), the meta-learner's inputs.
    fn inputs(&self, row: &[f64]) -> Vec<f64> {
        self.bases.iter().map(|b| b.margin(row)).collect()
    }

    /// The stack's link-scale score: the value, the log-odds or the location of log T.
    pub fn margin(&self, row: &[f64]) -> f64 {
        self.link_score(&self.inputs(row))
    }

    /// The link-scale score of given base inputs.
    fn link_score(&self, x: &[f64]) -> f64 {
        match &self.meta {
            Meta::Linear { intercept, weights } | Meta::Logistic { intercept, weights } => {
                intercept + weights.iter().zip(x).map(|(w, p)| w * p).sum::<f64>()
            }
            Meta::Aft(a) => a.location(x),
        }
    }

    /// The score with every feature absent: the meta-learner applied to the bases' base values.
    pub fn base_value(&self) -> f64 {
        let x: Vec<f64> = self.bases.iter().map(Fitted::base_value).collect();
        self.link_score(&x)
    }

    /// The weight of each base's link-scale score in the stack's link-scale score.
    fn effective_weights(&self) -> Vec<f64> {
        match &self.meta {
            Meta::Linear { weights, .. } | Meta::Logistic { weights, .. } => weights.clone(),
            Meta::Aft(a) => a.coef.iter().zip(&a.scaler.std).map(|(c, s)| c / s).collect(),
        }
    }
}

impl Predict for Stack {
    /// Real: the value; binary: the probability; censored: the location of log T.
    fn predict(&self, row: &[f64]) -> f64 {
        let m = self.margin(row);
        if matches!(self.meta, Meta::Logistic { .. }) { sigmoid(m) } else { m }
    }

    /// The bases' contributions weighted as the meta-learner weighs their scores (on the
    /// link scale: logit for binary, log T for censored).
    fn explain(&self, row: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; row.len()];
        for (b, w) in self.bases.iter().zip(self.effective_weights()) {
            for (acc, v) in c.iter_mut().zip(b.explain(row)) {
                *acc += w * v;
            }
        }
        c
    }
}
