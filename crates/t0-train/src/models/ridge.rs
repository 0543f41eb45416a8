//! Ridge regression with the penalty chosen by exact leave-one-out error, from one symmetric
//! eigendecomposition of the centred Gram matrix (the SVD of the design, without a refit per
//! fold or per penalty). The intercept is not penalised, as in scikit-learn's RidgeCV.
//!
//! With Z centred and Z'Z = V diag(λ) V', for a penalty α: β = V diag(1/(λ+α)) V'Z'y, fitted
//! ŷ = ȳ + Zβ, and the hat matrix diagonal h_i = 1/n + Σ_k (Z_i·v_k)² / (λ_k + α). The exact
//! leave-one-out residual is (y_i − ŷ_i) / (1 − h_i).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use t0_model::ridge::Ridge;

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

/// Rows per partial Gram matrix.
const CHUNK: usize = 4096;

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
    // Z'Z (upper triangle) and Z'y in fixed chunks of rows, added in chunk order: the same
    // sums on any number of threads.
    let part = |c: usize| {
        let mut gram = vec![0.0; d * d];
        let mut zy = vec![0.0; d];
        let mut z = vec![0.0; d];
        for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
            for j in 0..d {
                z[j] = x[i * d + j] - xmean[j];
            }
            let yc = y[i] - ymean;
            for a in 0..d {
                zy[a] += z[a] * yc;
                let za = z[a];
                for (g, zb) in gram[a * d + a..(a + 1) * d].iter_mut().zip(&z[a..]) {
                    *g += za * zb;
                }
            }
        }
        (gram, zy)
    };
    let parts: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(CHUNK)).into_par_iter().map(part).collect();
    let mut parts = parts.into_iter();
    let (mut upper, mut zy) = parts.next().expect("n >= 2");
    for (g, v) in parts {
        upper.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        zy.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
    }
    let gram = nalgebra::DMatrix::from_fn(d, d, |a, b| upper[a.min(b) * d + a.max(b)]);
    let eig = nalgebra::SymmetricEigen::new(gram);
    let lambda: Vec<f64> = eig.eigenvalues.iter().map(|l| l.max(0.0)).collect();
    let v = eig.eigenvectors;
    // V' row-major, so each projection is a contiguous dot product.
    let vt: Vec<f64> = (0..d).flat_map(|k| (0..d).map(move |j| (j, k))).map(|(j, k)| v[(j, k)]).collect();
    // Z'y in the eigenbasis, and each row's projections P_ik = Z_i · v_k.
    let vty: Vec<f64> = (0..d).map(|k| vt[k * d..(k + 1) * d].iter().zip(&zy).map(|(a, b)| a * b).sum()).collect();
    let mut proj = vec![0.0; n * d];
    proj.par_chunks_mut(d.max(1)).enumerate().for_each(|(i, out)| {
        let z: Vec<f64> = (0..d).map(|j| x[i * d + j] - xmean[j]).collect();
        for (k, o) in out.iter_mut().enumerate() {
            *o = vt[k * d..(k + 1) * d].iter().zip(&z).map(|(a, b)| a * b).sum();
        }
    });
    let mut loo_mse = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        let inv: Vec<f64> = lambda.iter().map(|l| 1.0 / (l + alpha)).collect();
        let c: Vec<f64> = (0..d).map(|k| vty[k] * inv[k]).collect();
        let part = |ch: usize| {
            let mut sse = 0.0;
            for i in ch * CHUNK..((ch + 1) * CHUNK).min(n) {
                let p = &proj[i * d..(i + 1) * d];
                let fitted = ymean + p.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>();
                let h = 1.0 / n as f64 + p.iter().zip(&inv).map(|(a, b)| a * a * b).sum::<f64>();
                let r = (y[i] - fitted) / (1.0 - h).max(1e-12);
                sse += r * r;
            }
            sse
        };
        let parts: Vec<f64> = (0..n.div_ceil(CHUNK)).into_par_iter().map(part).collect();
        loo_mse.push(parts.iter().sum::<f64>() / n as f64);
    }
    let best = (0..alphas.len()).fold(0, |b, i| if loo_mse[i] < loo_mse[b] { i } else { b });
    let alpha = alphas[best];
    let c: Vec<f64> = (0..d).map(|k| vty[k] / (lambda[k] + alpha)).collect();
    let coef: Vec<f64> = (0..d).map(|j| (0..d).map(|k| v[(j, k)] * c[k]).sum()).collect();
    let intercept = ymean - (0..d).map(|j| coef[j] * xmean[j]).sum::<f64>();
    Ok(RidgeFit { alpha, coef, intercept, loo_mse })
}

impl Learner for Ridge {
    type Config = RidgeConfig;
    const KIND: &'static str = "ridge";

    fn fit(cfg: &RidgeConfig, train: &Design, _valid: Option<&Design>) -> Result<Self, FitError> {
        let y = train.y.real()?;
        let scaler = Standardiser::fit(&train.x, train.d);
        let z = scaler.transform_all(&train.x, train.d);
        let f = ridge_loo(&z, train.d, y, &cfg.alphas)?;
        Ok(Ridge {
            scaler,
            coef: f.coef,
            intercept: f.intercept,
            alpha: f.alpha,
            loo_mse: cfg.alphas.iter().copied().zip(f.loo_mse).collect(),
        })
    }
}
