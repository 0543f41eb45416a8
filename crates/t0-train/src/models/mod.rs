//! Fitting the model families. Each is one module behind [`Learner`] (fit, save, load); the
//! fitted forms, their prediction and explanation are the served model's
//! (`t0-model`). Splits, metrics, snapshots and determinism live outside them and are shared.
//!
//! Every family sees the same [`Design`]: row-major features with NaN for a missing value,
//! and a [`Target`]. Nothing here reads a clock, a thread count or an unseeded random source.

pub mod aft;
pub mod dist;
pub mod gate;
pub mod gbdt;
pub mod ridge;
pub mod stack;
pub mod woe;

use serde::Serialize;
use serde::de::DeserializeOwned;
pub use t0_model::{ADDITIVITY_TOLERANCE, Explanation, Fitted, Predict, Scale, Standardiser, isotonic, treeshap};

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("{rows} rows: too few to fit (need {need})")]
    TooFewRows { rows: usize, need: usize },
    #[error("the target is {found}, this model needs {want}")]
    WrongTarget { want: &'static str, found: &'static str },
    #[error("{0}")]
    Config(String),
    #[error("did not converge: {0}")]
    NoConvergence(String),
}

/// What a model is fitted to.
#[derive(Debug, Clone)]
pub enum Target {
    Real(Vec<f64>),
    /// 0.0 or 1.0.
    Binary(Vec<f64>),
    /// Time-to-event bounds: the event happened in [lower, upper]; `upper` is +inf when
    /// right-censored and equal to `lower` when observed. Times are positive.
    Censored {
        lower: Vec<f64>,
        upper: Vec<f64>,
    },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Real(_) => "real-valued",
            Target::Binary(_) => "binary",
            Target::Censored { .. } => "censored times",
        }
    }
    pub fn real(&self) -> Result<&[f64], FitError> {
        match self {
            Target::Real(y) | Target::Binary(y) => Ok(y),
            other => Err(FitError::WrongTarget { want: "real-valued", found: other.name() }),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Target::Real(y) | Target::Binary(y) => y.len(),
            Target::Censored { lower, .. } => lower.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows `idx` of this target.
    pub fn take(&self, idx: &[usize]) -> Target {
        let t = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        match self {
            Target::Real(y) => Target::Real(t(y)),
            Target::Binary(y) => Target::Binary(t(y)),
            Target::Censored { lower, upper } => Target::Censored { lower: t(lower), upper: t(upper) },
        }
    }
}

/// Rows of features (row-major, `d` per row, NaN = missing) and their target.
#[derive(Debug, Clone)]
pub struct Design {
    pub x: Vec<f64>,
    pub d: usize,
    pub y: Target,
}

impl Design {
    pub fn rows(&self) -> usize {
        self.y.len()
    }
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }
    /// The rows `idx` of a frame-like matrix, with their target.
    pub fn select(x: &[f64], d: usize, y: &Target, idx: &[usize]) -> Design {
        let mut out = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            out.extend_from_slice(&x[i * d..(i + 1) * d]);
        }
        Design { x: out, d, y: y.take(idx) }
    }
}

/// One model family.
/// Prediction and explanation are the served form's ([`Predict`], in `t0-model`).
pub trait Learner: Predict + Sized + Serialize + DeserializeOwned {
    type Config;
    /// The family's name in leaderboards and file names.
    const KIND: &'static str;
    /// Fit on `train`; `valid`, when given, may only steer early stopping or a
    /// hyperparameter, never be fitted to.
    fn fit(cfg: &Self::Config, train: &Design, valid: Option<&Design>) -> Result<Self, FitError>;
    fn save(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec(self).expect("models serialise");
        b.push(b'\n');
        b
    }
    fn load(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a {} model: {e}", Self::KIND))
    }
}
