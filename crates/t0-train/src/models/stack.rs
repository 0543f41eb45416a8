//! Stacking: base models of the label's kind, and a meta-learner fitted on their
//! out-of-fold predictions. The folds are expanding windows in time with an embargo (from
//! `split::expanding_folds`), so no base model predicts a row earlier than, or overlapping,
//! what it was fitted on. The meta-learner follows the target:
//!
//! - real-valued: y ≈ Σ wₖ pₖ, a convex blend (weights ≥ 0 summing to 1, least squares). No
//!   intercept: under drift, early folds' bases (fitted on short histories) are biased, and
//!   an intercept learned from that bias misfits the bases refitted on all training rows
//!   (measured on gapminder: a free intercept made the stack worse than both bases);
//! - binary: P(y = 1) = σ(a + Σ wₖ mₖ) over the bases' log-odds margins mₖ, logistic
//!   regression with non-negative weights (margins, not the logit of a rounded probability,
//!   so the stack's explanation adds up exactly);
//! - censored times: a parametric AFT whose covariates are the bases' log-time locations, so
//!   the stack has a distribution and scale, and with them time quantiles and S(t).

use serde::Serialize;

use super::aft::{Aft, AftConfig};
use super::gbdt::{Gbdt, GbdtConfig};
use super::ridge::{Ridge, RidgeConfig};
use super::woe::{Woe, WoeConfig};
pub use t0_model::stack::{Meta, Stack};

use super::dist::sigmoid;
use super::{Design, FitError, Fitted, Learner, Target};

/// A base model of a stack.
#[derive(Debug, Clone, Serialize)]
pub enum Base {
    Ridge(RidgeConfig),
    Gbdt(GbdtConfig),
    Woe(WoeConfig),
    Aft(AftConfig),
}

impl Base {
    /// Fit on `train`. Out-of-fold fits (`valid` None) train GBDT for its fixed rounds.
    fn fit(&self, train: &Design, valid: Option<&Design>) -> Result<Fitted, FitError> {
        Ok(match self {
            Base::Ridge(c) => Fitted::Ridge(Ridge::fit(c, train, valid)?),
            Base::Gbdt(c) if valid.is_none() => {
                Fitted::Gbdt(Gbdt::fit(&GbdtConfig { early_stopping_rounds: 0, ..c.clone() }, train, None)?)
            }
            Base::Gbdt(c) => Fitted::Gbdt(Gbdt::fit(c, train, valid)?),
            Base::Woe(c) => Fitted::Woe(Woe::fit(c, train, valid)?),
            Base::Aft(c) => Fitted::Aft(Aft::fit(c, train, valid)?),
        })
    }
}

#[derive(Debug, Clone)]
pub struct StackConfig {
    /// (fit rows, predict rows) of the training design, in time order.
    pub folds: Vec<(Vec<usize>, Vec<usize>)>,
    pub bases: Vec<Base>,
    /// The meta-learner of a censored target (its distribution; the penalty is fixed small).
    pub meta_aft: Option<AftConfig>,
}

/// Weights over `k` columns forced non-negative by an active set: `solve(active)` fits the
/// active columns and returns a solution whose entries `lead..lead + active.len()` are their
/// weights (entries before them, e.g. an intercept, are unconstrained); the column of the
/// first negative weight is dropped and the rest refitted. Returns the final solution and the
/// weights of all `k` columns (0 for dropped ones).
fn non_negative(k: usize, lead: usize, solve: impl Fn(&[usize]) -> Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let mut active: Vec<usize> = (0..k).collect();
    loop {
        let sol = solve(&active);
        if let Some(neg) = (0..active.len()).find(|&r| sol[lead + r] < 0.0) {
            active.remove(neg);
            continue;
        }
        let mut w = vec![0.0; k];
        for (r, &c) in active.iter().enumerate() {
            w[c] = sol[lead + r];
        }
        return (sol, w);
    }
}

/// Rows of the design `[1, p[active[0]][i], …]`.
fn design_row(p: &[Vec<f64>], active: &[usize], i: usize) -> Vec<f64> {
    std::iter::once(1.0).chain(active.iter().map(|&c| p[c][i])).collect()
}

/// Least squares of `y` on the columns `p` with weights that are non-negative and sum to 1
/// (a convex blend, no intercept).
pub fn convex_blend(p: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    non_negative(p.len(), 0, |active| {
        // KKT system of min |y − P w|² subject to Σ w = 1 over the active columns (the last
        // unknown is the multiplier).
        let m = active.len();
        let mut a = nalgebra::DMatrix::<f64>::zeros(m + 1, m + 1);
        let mut b = nalgebra::DVector::<f64>::zeros(m + 1);
        for (r, &cr) in active.iter().enumerate() {
            b[r] = p[cr].iter().zip(y).map(|(u, v)| u * v).sum();
            for (c, &cc) in active.iter().enumerate() {
                a[(r, c)] = p[cr].iter().zip(&p[cc]).map(|(u, v)| u * v).sum();
            }
            a[(r, r)] += 1e-9 * y.len() as f64;
            a[(r, m)] = 1.0;
            a[(m, r)] = 1.0;
        }
        b[m] = 1.0;
        let sol = a.lu().solve(&b).unwrap_or_else(|| nalgebra::DVector::from_element(m + 1, 1.0 / m as f64));
        sol.iter().copied().collect()
    })
    .1
}

/// Logistic regression with an intercept and non-negative weights, by Newton's method
/// (a small ridge on the weights keeps separable folds finite).
pub fn nn_logistic(p: &[Vec<f64>], y: &[f64]) -> (f64, Vec<f64>) {
    let (sol, w) = non_negative(p.len(), 1, |active| {
        let m = active.len() + 1;
        let n = y.len();
        let pen = 1e-4 * n as f64;
        let mut beta = nalgebra::DVector::<f64>::zeros(m);
        for _ in 0..100 {
            let mut h = nalgebra::DMatrix::<f64>::zeros(m, m);
            let mut g = nalgebra::DVector::<f64>::zeros(m);
            for (i, yi) in y.iter().enumerate() {
                let row = design_row(p, active, i);
                let z: f64 = row.iter().zip(beta.iter()).map(|(a, b)| a * b).sum();
                let mu = sigmoid(z);
                let w = (mu * (1.0 - mu)).max(1e-12);
                for r in 0..m {
                    g[r] += row[r] * (yi - mu);
                    for c in 0..m {
                        h[(r, c)] += w * row[r] * row[c];
                    }
                }
            }
            for r in 1..m {
                g[r] -= pen * beta[r];
                h[(r, r)] += pen;
            }
            let Some(step) = h.lu().solve(&g) else { break };
            beta += &step;
            if step.amax() < 1e-10 {
                break;
            }
        }
        beta.iter().copied().collect()
    });
    (sol[0], w)
}

impl Learner for Stack {
    type Config = StackConfig;
    const KIND: &'static str = "stack";

    fn fit(cfg: &StackConfig, train: &Design, valid: Option<&Design>) -> Result<Self, FitError> {
        if cfg.bases.is_empty() {
            return Err(FitError::Config("a stack needs base models".into()));
        }
        if matches!(train.y, Target::Censored { .. }) && cfg.meta_aft.is_none() {
            return Err(FitError::Config("a stack of censored times needs a meta AFT".into()));
        }
        let k = cfg.bases.len();
        let mut oof: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut oof_rows: Vec<usize> = Vec::new();
        for (fit, pred) in &cfg.folds {
            let d = Design::select(&train.x, train.d, &train.y, fit);
            // A fold where any base cannot be fitted (one class, no events) gives no rows.
            let Ok(models) = cfg.bases.iter().map(|b| b.fit(&d, None)).collect::<Result<Vec<_>, _>>() else {
                continue;
            };
            for &i in pred {
                for (col, m) in oof.iter_mut().zip(&models) {
                    col.push(m.margin(train.row(i)));
                }
                oof_rows.push(i);
            }
        }
        if oof_rows.len() < 10 {
            return Err(FitError::TooFewRows { rows: oof_rows.len(), need: 10 });
        }
        let oof_y = train.y.take(&oof_rows);
        let meta = match &oof_y {
            Target::Real(y) => Meta::Linear { intercept: 0.0, weights: convex_blend(&oof, y) },
            Target::Binary(y) => {
                if y.iter().all(|v| *v > 0.5) || y.iter().all(|v| *v <= 0.5) {
                    return Err(FitError::Config("one class only in the out-of-fold rows".into()));
                }
                let (intercept, weights) = nn_logistic(&oof, y);
                Meta::Logistic { intercept, weights }
            }
            Target::Censored { .. } => {
                let x: Vec<f64> = (0..oof_rows.len()).flat_map(|r| oof.iter().map(move |c| c[r])).collect();
                let meta = AftConfig { penalties: vec![1e-4], ..cfg.meta_aft.clone().expect("checked") };
                Meta::Aft(Aft::fit(&meta, &Design { x, d: k, y: oof_y.clone() }, None)?)
            }
        };
        let bases = cfg.bases.iter().map(|b| b.fit(train, valid)).collect::<Result<Vec<_>, _>>()?;
        Ok(Stack { bases, meta, oof_rows: oof_rows.len() })
    }
}
