//! Parametric accelerated-failure-time survival: log T = x'β + σ·ε with ε standard normal
//! (log-normal), logistic (log-logistic) or minimum-extreme-value (Weibull), right-censored,
//! fitted by maximum likelihood with Newton's method on (β, log σ) (analytic gradient and
//! Hessian, backtracking; an optional ridge penalty on β/σ, not the intercept).
//!
//! Parameterised as lifelines' `WeibullAFTFitter`, `LogNormalAFTFitter` and
//! `LogLogisticAFTFitter`: ρ = 1/σ for Weibull and log-logistic, σ for log-normal. The
//! distributions ([`super::dist`]) are shared with the GBDT's AFT objective.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use t0_model::aft::Aft;

use super::dist::Dist;
use super::{Design, FitError, Learner, Standardiser, Target};

/// A fitted AFT model on raw covariates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AftFit {
    pub intercept: f64,
    pub coef: Vec<f64>,
    pub log_sigma: f64,
    pub log_likelihood: f64,
    pub iterations: usize,
}

/// Rows per partial sum of the log-likelihood. Fixed, so the sums (added in chunk order) are
/// the same on any number of threads.
const LL_CHUNK: usize = 4096;

/// Log-likelihood of the times (density of T, as lifelines reports it) with its gradient and
/// Hessian in θ = (intercept, β, log σ). Chunks of rows run in parallel.
fn loglik(
    dist: Dist,
    x: &[f64],
    d: usize,
    log_t: &[f64],
    event: &[bool],
    theta: &[f64],
    want: bool,
) -> (f64, Vec<f64>, Vec<f64>) {
    let p = d + 2;
    let s = theta[d + 1];
    let sigma = s.exp();
    let chunk = |c: usize| {
        let mut ll = 0.0;
        let mut g = vec![0.0; if want { p } else { 0 }];
        // Upper triangle only; mirrored once at the end.
        let mut h = vec![0.0; if want { p * p } else { 0 }];
        let mut xi = vec![0.0; d + 1];
        for i in c * LL_CHUNK..((c + 1) * LL_CHUNK).min(log_t.len()) {
            xi[0] = 1.0;
            xi[1..].copy_from_slice(&x[i * d..(i + 1) * d]);
            let mu: f64 = xi.iter().zip(&theta[..=d]).map(|(a, b)| a * b).sum();
            let y = log_t[i];
            let z = (y - mu) / sigma;
            let (l, (d1, d2)) = if event[i] {
                (dist.log_pdf(z) - s - y, dist.dlog_pdf(z))
            } else {
                (dist.log_surv(z), dist.dlog_surv(z))
            };
            ll += l;
            if !want {
                continue;
            }
            // dz/dβ = −x/σ, dz/ds = −z.
            let gb = -d1 / sigma;
            for a in 0..=d {
                g[a] += gb * xi[a];
            }
            g[d + 1] += -d1 * z - if event[i] { 1.0 } else { 0.0 };
            let hbb = d2 / (sigma * sigma);
            let hbs = (d2 * z + d1) / sigma;
            let hss = d2 * z * z + d1 * z;
            for a in 0..=d {
                let ha = hbb * xi[a];
                let row = &mut h[a * p..(a + 1) * p];
                for (hb, xb) in row[a..=d].iter_mut().zip(&xi[a..]) {
                    *hb += ha * xb;
                }
                row[d + 1] += hbs * xi[a];
            }
            h[(d + 1) * p + d + 1] += hss;
        }
        (ll, g, h)
    };
    let chunks = log_t.len().div_ceil(LL_CHUNK).max(1);
    let parts: Vec<(f64, Vec<f64>, Vec<f64>)> = (0..chunks).into_par_iter().map(chunk).collect();
    let mut parts = parts.into_iter();
    let (mut ll, mut g, mut h) = parts.next().expect("one chunk");
    for (l, pg, ph) in parts {
        ll += l;
        g.iter_mut().zip(&pg).for_each(|(a, b)| *a += b);
        h.iter_mut().zip(&ph).for_each(|(a, b)| *a += b);
    }
    if want {
        for a in 0..p {
            for b in 0..a {
                h[a * p + b] = h[b * p + a];
            }
        }
    }
    (ll, g, h)
}

/// Maximum-likelihood AFT on right-censored times `t` (> 0) with event flags, covariates `x`
/// (row-major, `d` columns), and a ridge `penalty` on the coefficients in units of the scale:
/// the objective is LL − ½·penalty·n·|β/σ|². Penalising β/σ rather than β keeps the maximum
/// finite when the covariates can fit every event exactly (more columns than events): there
/// σ → 0 would send LL to +∞ at a fixed, finitely penalised β.
pub fn fit_aft(dist: Dist, x: &[f64], d: usize, t: &[f64], event: &[bool], penalty: f64) -> Result<AftFit, FitError> {
    let n = t.len();
    // Without a penalty the MLE needs more rows than parameters; with one it is unique.
    let need = if penalty > 0.0 { 3 } else { d + 3 };
    if n < need {
        return Err(FitError::TooFewRows { rows: n, need });
    }
    if let Some(i) = t.iter().position(|v| v.is_nan() || *v <= 0.0 || !v.is_finite()) {
        return Err(FitError::Config(format!("row {i}: time {} is not positive", t[i])));
    }
    if !event.iter().any(|e| *e) {
        return Err(FitError::Config("no events: every time is censored".into()));
    }
    let p = d + 2;
    let logs: Vec<f64> = t.iter().map(|v| v.ln()).collect();
    let mut theta = warm_start(dist, x, d, &logs, penalty);
    let pen = penalty * n as f64;
    // The penalised objective with its gradient and Hessian, and the plain log-likelihood.
    // Every candidate of the line search gets derivatives: the accepted one (nearly always
    // the first) needs them next, so no pass over the rows is spent twice.
    let penalised = |th: &[f64]| {
        let (ll, mut g, mut h) = loglik(dist, x, d, &logs, event, th, true);
        // P = ½·pen·|β|²/σ², with its derivatives in β and s = log σ.
        let w = pen * (-2.0 * th[d + 1]).exp();
        let b2: f64 = th[1..=d].iter().map(|b| b * b).sum();
        for j in 1..=d {
            g[j] -= w * th[j];
            h[j * p + j] -= w;
            h[j * p + d + 1] += 2.0 * w * th[j];
            h[(d + 1) * p + j] += 2.0 * w * th[j];
        }
        g[d + 1] += w * b2;
        h[(d + 1) * p + d + 1] -= 2.0 * w * b2;
        (ll - 0.5 * w * b2, g, h, ll)
    };
    let (mut f, mut g, mut h, mut ll) = penalised(&theta);
    let mut iterations = 0;
    for it in 0..200 {
        iterations = it + 1;
        // Newton direction on −H (damped towards gradient ascent when not positive definite).
        let mut step = None;
        let mut damp = 0.0;
        for _ in 0..30 {
            let mut a = nalgebra::DMatrix::from_row_slice(p, p, &h).map(|v| -v);
            for j in 0..p {
                a[(j, j)] += damp;
            }
            if let Some(c) = a.cholesky() {
                step = Some(c.solve(&nalgebra::DVector::from_column_slice(&g)));
                break;
            }
            damp = if damp == 0.0 { 1e-6 } else { damp * 10.0 };
        }
        let step = step.ok_or_else(|| FitError::NoConvergence("the Hessian is singular".into()))?;
        // The Newton decrement g'H⁻¹g/2 estimates how far the objective is below its
        // maximum: when that is negligible, the step is not worth another pass over the rows.
        let decrement: f64 = g.iter().zip(step.iter()).map(|(a, b)| a * b).sum::<f64>() / 2.0;
        if damp == 0.0 && decrement.abs() < 1e-13 * (1.0 + f.abs()) {
            return Ok(finish(&theta, d, ll, iterations));
        }
        let gmax = g.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let mut lr = 1.0;
        let mut improved = false;
        for _ in 0..60 {
            let cand: Vec<f64> = theta.iter().zip(step.iter()).map(|(a, b)| a + lr * b).collect();
            let (fc, gc, hc, llc) = penalised(&cand);
            if fc.is_finite() && fc >= f - 1e-12 * f.abs() {
                let change = (fc - f).abs();
                (theta, f, g, h, ll) = (cand, fc, gc, hc, llc);
                improved = true;
                // Converged: the step no longer moves the parameters, or (on a flat, heavily
                // censored likelihood) no longer moves the objective.
                let moved = step.iter().map(|v| (lr * v).abs()).fold(0.0, f64::max);
                if (change < 1e-12 * (1.0 + f.abs()) && moved < 1e-9) || change < 1e-14 * (1.0 + f.abs()) {
                    return Ok(finish(&theta, d, ll, iterations));
                }
                break;
            }
            lr *= 0.5;
        }
        if !improved || gmax < 1e-9 * n as f64 {
            return Ok(finish(&theta, d, ll, iterations));
        }
    }
    Err(FitError::NoConvergence(format!("{} AFT: no convergence in {iterations} Newton steps", dist.name())))
}

/// A start near the optimum: least squares of log t on x (censored times taken as if
/// observed, ridge `penalty` plus a trace-scaled jitter so it always solves), with σ from the
/// residuals by the distribution's own variance and mean. Saves Newton passes and keeps the
/// first steps from overshooting on wide designs.
fn warm_start(dist: Dist, x: &[f64], d: usize, logs: &[f64], penalty: f64) -> Vec<f64> {
    let n = logs.len();
    let mean = |j: usize| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
    let xm: Vec<f64> = (0..d).map(mean).collect();
    let ym = logs.iter().sum::<f64>() / n as f64;
    let mut gram = vec![0.0; d * d];
    let mut xy = vec![0.0; d];
    let mut z = vec![0.0; d];
    for i in 0..n {
        for j in 0..d {
            z[j] = x[i * d + j] - xm[j];
        }
        let yc = logs[i] - ym;
        for a in 0..d {
            xy[a] += z[a] * yc;
            for (g, zb) in gram[a * d + a..(a + 1) * d].iter_mut().zip(&z[a..]) {
                *g += z[a] * zb;
            }
        }
    }
    let trace: f64 = (0..d).map(|a| gram[a * d + a]).sum();
    let ridge = penalty * n as f64 + 1e-9 * (trace / d.max(1) as f64).max(1.0);
    let g = nalgebra::DMatrix::from_fn(d, d, |a, b| {
        let v = gram[a.min(b) * d + a.max(b)];
        if a == b { v + ridge } else { v }
    });
    let beta: Vec<f64> = match g.cholesky() {
        Some(c) => c.solve(&nalgebra::DVector::from_column_slice(&xy)).iter().copied().collect(),
        None => vec![0.0; d],
    };
    let fitted = |i: usize| ym + (0..d).map(|j| (x[i * d + j] - xm[j]) * beta[j]).sum::<f64>();
    let sd = ((0..n).map(|i| (logs[i] - fitted(i)).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-3);
    // ε's mean per unit σ.
    let shift = if dist == Dist::Extreme { -0.577_215_664_901_532_9 } else { 0.0 };
    let sigma = sd / dist.spread();
    let mut theta = vec![0.0; d + 2];
    theta[0] = ym - xm.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>() - shift * sigma;
    theta[1..=d].copy_from_slice(&beta);
    theta[d + 1] = sigma.ln();
    theta
}

fn finish(theta: &[f64], d: usize, ll: f64, iterations: usize) -> AftFit {
    AftFit { intercept: theta[0], coef: theta[1..=d].to_vec(), log_sigma: theta[d + 1], log_likelihood: ll, iterations }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AftConfig {
    pub dist: Dist,
    /// Candidate ridge penalties; the one of best validation log-likelihood is kept.
    pub penalties: Vec<f64>,
}

/// Right-censored (time, event) of a censored target; interval bounds are refused.
pub fn right_censored(y: &Target) -> Result<(Vec<f64>, Vec<bool>), FitError> {
    let Target::Censored { lower, upper } = y else {
        return Err(FitError::WrongTarget { want: "censored times", found: y.name() });
    };
    let mut ev = Vec::with_capacity(lower.len());
    for (i, (l, u)) in lower.iter().zip(upper).enumerate() {
        if u.is_infinite() {
            ev.push(false);
        } else if l == u {
            ev.push(true);
        } else {
            return Err(FitError::Config(format!(
                "row {i}: interval-censored; the parametric AFT takes right-censoring"
            )));
        }
    }
    Ok((lower.clone(), ev))
}

/// Log-likelihood of right-censored rows under `m` (validation scoring).
pub fn log_likelihood(m: &Aft, x: &Design) -> Result<f64, FitError> {
    let (t, ev) = right_censored(&x.y)?;
    let s = m.sigma();
    Ok((0..t.len())
        .map(|i| {
            let z = (t[i].ln() - m.location(x.row(i))) / s;
            if ev[i] { m.dist.log_pdf(z) - m.log_sigma - t[i].ln() } else { m.dist.log_surv(z) }
        })
        .sum())
}

impl Learner for Aft {
    type Config = AftConfig;
    const KIND: &'static str = "aft";

    fn fit(cfg: &AftConfig, train: &Design, valid: Option<&Design>) -> Result<Self, FitError> {
        let (t, ev) = right_censored(&train.y)?;
        let scaler = Standardiser::fit(&train.x, train.d);
        let z = scaler.transform_all(&train.x, train.d);
        let mut best: Option<(f64, Aft)> = None;
        let mut last_err = None;
        for &pen in &cfg.penalties {
            let f = match fit_aft(cfg.dist, &z, train.d, &t, &ev, pen) {
                Ok(f) => f,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let m = Aft {
                dist: cfg.dist,
                scaler: scaler.clone(),
                intercept: f.intercept,
                coef: f.coef,
                log_sigma: f.log_sigma,
                penalty: pen,
                train_log_likelihood: f.log_likelihood,
            };
            let score = match valid {
                Some(v) => log_likelihood(&m, v)?,
                None => f.log_likelihood,
            };
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, m));
            }
        }
        best.map(|(_, m)| m).ok_or_else(|| last_err.unwrap_or(FitError::Config("no AFT penalty given".into())))
    }
}
