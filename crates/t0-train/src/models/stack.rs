//! Stacking for a real-valued label: ridge and GBDT base models, a non-negative linear
//! meta-learner fitted on their out-of-fold predictions. The folds are expanding windows in
//! time with an embargo (from `split::expanding_folds`), so no base model predicts a row
//! earlier than, or overlapping, what it was fitted on.

use serde::{Deserialize, Serialize};

use super::gbdt::{Gbdt, GbdtConfig};
use super::ridge::{Ridge, RidgeConfig};
use super::{Design, FitError, Fitted, Learner, Target};

#[derive(Debug, Clone)]
pub struct StackConfig {
    /// (fit rows, predict rows) of the training design, in time order.
    pub folds: Vec<(Vec<usize>, Vec<usize>)>,
    pub ridge: RidgeConfig,
    pub gbdt: GbdtConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub bases: Vec<Fitted>,
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Training rows that had an out-of-fold prediction.
    pub oof_rows: usize,
}

/// Least squares of y on the columns `cols` of `p` with an intercept, weights forced
/// non-negative by dropping negative ones and refitting.
fn nnls(p: &[Vec<f64>], y: &[f64]) -> (f64, Vec<f64>) {
    let k = p.len();
    let mut active: Vec<usize> = (0..k).collect();
    loop {
        let m = active.len() + 1;
        let n = y.len();
        let mut a = nalgebra::DMatrix::<f64>::zeros(m, m);
        let mut b = nalgebra::DVector::<f64>::zeros(m);
        for i in 0..n {
            let row: Vec<f64> = std::iter::once(1.0).chain(active.iter().map(|&c| p[c][i])).collect();
            for r in 0..m {
                b[r] += row[r] * y[i];
                for c in 0..m {
                    a[(r, c)] += row[r] * row[c];
                }
            }
        }
        for r in 1..m {
            a[(r, r)] += 1e-9 * n as f64;
        }
        let sol = a.lu().solve(&b).unwrap_or_else(|| nalgebra::DVector::zeros(m));
        if let Some(neg) = (1..m).find(|&r| sol[r] < 0.0) {
            active.remove(neg - 1);
            continue;
        }
        let mut w = vec![0.0; k];
        for (r, &c) in active.iter().enumerate() {
            w[c] = sol[r + 1];
        }
        return (sol[0], w);
    }
}

impl Learner for Stack {
    type Config = StackConfig;
    const KIND: &'static str = "stack";

    fn fit(cfg: &StackConfig, train: &Design, valid: Option<&Design>) -> Result<Self, FitError> {
        let y = match &train.y {
            Target::Real(y) => y,
            other => return Err(FitError::WrongTarget { want: "real-valued", found: other.name() }),
        };
        let mut oof: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
        let mut oof_y = Vec::new();
        let fixed = GbdtConfig { early_stopping_rounds: 0, ..cfg.gbdt.clone() };
        for (fit, pred) in &cfg.folds {
            let d = Design::select(&train.x, train.d, &train.y, fit);
            let (Ok(r), Ok(g)) = (Ridge::fit(&cfg.ridge, &d, None), Gbdt::fit(&fixed, &d, None)) else { continue };
            for &i in pred {
                oof[0].push(r.predict(train.row(i)));
                oof[1].push(g.predict(train.row(i)));
                oof_y.push(y[i]);
            }
        }
        if oof_y.len() < 10 {
            return Err(FitError::TooFewRows { rows: oof_y.len(), need: 10 });
        }
        let (intercept, weights) = nnls(&oof, &oof_y);
        let bases = vec![
            Fitted::Ridge(Ridge::fit(&cfg.ridge, train, valid)?),
            Fitted::Gbdt(Gbdt::fit(&cfg.gbdt, train, valid)?),
        ];
        Ok(Stack { bases, weights, intercept, oof_rows: oof_y.len() })
    }

    fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + self.bases.iter().zip(&self.weights).map(|(b, w)| w * b.predict(row)).sum::<f64>()
    }

    fn explain(&self, row: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; row.len()];
        for (b, w) in self.bases.iter().zip(&self.weights) {
            for (acc, v) in c.iter_mut().zip(b.explain(row)) {
                *acc += w * v;
            }
        }
        c
    }
}
