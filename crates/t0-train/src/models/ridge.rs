//! Ridge regression with the penalty chosen by exact leave-one-out error, from one symmetric
//! eigendecomposition of the centred Gram matrix (the SVD of the design, without a refit per
//! fold or per penalty). The intercept is not penalised, as in scikit-learn's RidgeCV.
//!
//! With Z centred and Z'Z = V diag(λ) V', for a penalty α: β = V diag(1/(λ+α)) V'Z'y, fitted
//! ŷ = ȳ + Zβ, and the hat matrix diagonal h_i = 1/n + Σ_k (Z_i·v_k)² / (λ_k + α). The exact
//! leave-one-out residual is (y_i − ŷ_i) / (1 − h_i).

use serde::{Deserialize, Serialize};

use super::{Design, FitError, Learner, Standardiser};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RidgeConfig {
    pub alphas: Vec<f64>,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        RidgeConfig { alphas: vec![1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4] }
    }
}

/// The solution of [`ridge_loo`].
#[derive(Debug, Clone)]
pub struct RidgeFit {
    pub alpha: f64,
    pub coef: Vec<f64>,
    pub intercept: f64,
    /// Mean squared leave-one-out error per candidate penalty.
    pub loo_mse: Vec<f64>,
}

/// Ridge on the rows of `x` (row-major, `d` columns, no missing values) with the penalty of
/// least leave-one-out error among `alphas` (ties: the first).
pub fn ridge_loo(x: &[f64], d: usize, y: &[f64], alphas: &[f64]) -> Result<RidgeFit, FitError> {
    let n = y.len();
    if n < 2 || x.len() != n * d {
        return Err(FitError::TooFewRows { rows: n, need: 2 });
    }
    if alphas.is_empty() || alphas.iter().any(|a| a.is_nan() || *a <= 0.0) {
        return Err(FitError::Config("ridge penalties must be positive".into()));
    }
    let xmean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64).collect();
    let ymean = y.iter().sum::<f64>() / n as f64;
    let mut gram = nalgebra::DMatrix::<f64>::zeros(d, d);
    let mut zy = vec![0.0; d];
    let mut z = vec![0.0; d];
    for i in 0..n {
        for j in 0..d {
            z[j] = x[i * d + j] - xmean[j];
        }
        let yc = y[i] - ymean;
        for a in 0..d {
            zy[a] += z[a] * yc;
            for b in a..d {
                gram[(a, b)] += z[a] * z[b];
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            gram[(a, b)] = gram[(b, a)];
        }
    }
    let eig = nalgebra::SymmetricEigen::new(gram);
    let lambda: Vec<f64> = eig.eigenvalues.iter().map(|l| l.max(0.0)).collect();
    let v = eig.eigenvectors;
    // Z'y in the eigenbasis, and each row's projections P_ik = Z_i · v_k.
    let vty: Vec<f64> = (0..d).map(|k| (0..d).map(|j| v[(j, k)] * zy[j]).sum()).collect();
    let mut proj = vec![0.0; n * d];
    for i in 0..n {
        for k in 0..d {
            proj[i * d + k] = (0..d).map(|j| (x[i * d + j] - xmean[j]) * v[(j, k)]).sum();
        }
    }
    let mut loo_mse = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        let c: Vec<f64> = (0..d).map(|k| vty[k] / (lambda[k] + alpha)).collect();
        let mut sse = 0.0;
        for i in 0..n {
            let p = &proj[i * d..(i + 1) * d];
            let fitted = ymean + (0..d).map(|k| p[k] * c[k]).sum::<f64>();
            let h = 1.0 / n as f64 + (0..d).map(|k| p[k] * p[k] / (lambda[k] + alpha)).sum::<f64>();
            let r = (y[i] - fitted) / (1.0 - h).max(1e-12);
            sse += r * r;
        }
        loo_mse.push(sse / n as f64);
    }
    let best = (0..alphas.len()).fold(0, |b, i| if loo_mse[i] < loo_mse[b] { i } else { b });
    let alpha = alphas[best];
    let c: Vec<f64> = (0..d).map(|k| vty[k] / (lambda[k] + alpha)).collect();
    let coef: Vec<f64> = (0..d).map(|j| (0..d).map(|k| v[(j, k)] * c[k]).sum()).collect();
    let intercept = ymean - (0..d).map(|j| coef[j] * xmean[j]).sum::<f64>();
    Ok(RidgeFit { alpha, coef, intercept, loo_mse })
}

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

impl Learner for Ridge {
    type Config = RidgeConfig;
    const KIND: &'static str = "ridge";

    fn fit(cfg: &RidgeConfig, train: &Design, _valid: Option<&Design>) -> Result<Self, FitError> {
        let y = train.y.real()?;
        let scaler = Standardiser::fit(train);
        let z = scaler.transform_all(train);
        let f = ridge_loo(&z, train.d, y, &cfg.alphas)?;
        Ok(Ridge {
            scaler,
            coef: f.coef,
            intercept: f.intercept,
            alpha: f.alpha,
            loo_mse: cfg.alphas.iter().copied().zip(f.loo_mse).collect(),
        })
    }

    fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + self.explain(row).iter().sum::<f64>()
    }

    fn explain(&self, row: &[f64]) -> Vec<f64> {
        (0..row.len()).map(|j| self.coef[j] * self.scaler.value(j, row[j])).collect()
    }
}
