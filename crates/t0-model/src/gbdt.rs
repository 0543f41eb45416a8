//! Gradient-boosted trees as served: the trees, the objective that says what the margin
//! means, prediction and exact TreeSHAP explanations. Fitting is `t0-train`'s.

use serde::{Deserialize, Serialize};

use crate::dist::{Dist, sigmoid};
use crate::{Predict, Scale};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Objective {
    Squared,
    Logistic,
    /// `survival:aft`: the margin is the location of log T; `sigma` the fixed scale.
    Aft {
        dist: Dist,
        sigma: f64,
    },
}

impl Objective {
    pub fn name(&self) -> String {
        match self {
            Objective::Squared => "squared".into(),
            Objective::Logistic => "logistic".into(),
            Objective::Aft { dist, .. } => format!("aft-{}", dist.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Split feature, or None for a leaf.
    pub feature: Option<u32>,
    /// Rows with `x <= threshold` go left.
    pub threshold: f64,
    pub missing_left: bool,
    pub left: u32,
    pub right: u32,
    /// The node's value (learning rate applied) as if it were a leaf: leaves predict it.
    pub value: f64,
    /// Training rows that reached the node: TreeSHAP integrates an absent feature out by it.
    pub cover: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn leaf(&self, row: &[f64]) -> usize {
        let mut k = 0;
        while let Some(f) = self.nodes[k].feature {
            let n = &self.nodes[k];
            let v = row[f as usize];
            let left = if v.is_nan() { n.missing_left } else { v <= n.threshold };
            k = if left { n.left } else { n.right } as usize;
        }
        k
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub objective: Objective,
    pub base: f64,
    pub trees: Vec<Tree>,
    /// Validation loss after each round (empty without validation rows).
    pub valid_curve: Vec<f64>,
    pub train_curve: Vec<f64>,
    pub best_iteration: usize,
}

impl Gbdt {
    /// Raw margin (link scale) of a row.
    pub fn margin(&self, row: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| t.nodes[t.leaf(row)].value).sum::<f64>()
    }

    /// The margin with every feature absent (each tree's cover-weighted mean leaf): the base
    /// value TreeSHAP's contributions start from.
    pub fn expected_margin(&self) -> f64 {
        self.base + self.trees.iter().map(crate::treeshap::expected_value).sum::<f64>()
    }

    /// The scale the margin is on.
    pub fn scale(&self) -> Scale {
        match self.objective {
            Objective::Logistic => Scale::LogOdds,
            Objective::Squared => Scale::Value,
            Objective::Aft { .. } => Scale::LogTime,
        }
    }
}

impl Predict for Gbdt {
    /// Squared: the value; logistic: the probability; AFT: the location of log T.
    fn predict(&self, row: &[f64]) -> f64 {
        let m = self.margin(row);
        match self.objective {
            Objective::Logistic => sigmoid(m),
            _ => m,
        }
    }

    /// Exact path-dependent TreeSHAP values on the margin; with [`Gbdt::expected_margin`]
    /// they add up to the margin.
    fn explain(&self, row: &[f64]) -> Vec<f64> {
        let mut phi = vec![0.0; row.len()];
        crate::treeshap::add_all(&self.trees, row, &mut phi);
        phi
    }
}
