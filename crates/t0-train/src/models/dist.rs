//! XGBoost's AFT loss, gradient and Hessian over the shared distributions (`t0-model`'s
//! [`Dist`]): what the GBDT's AFT objective fits.

pub use t0_model::dist::*;

/// XGBoost's AFT gradient and Hessian (clipped to ±15 and [1e-16, 15] as XGBoost does).
pub fn aft_grad_hess(dist: Dist, sigma: f64, lower: f64, upper: f64, f: f64) -> (f64, f64) {
    let (g, h) = if lower == upper {
        let z = (lower.ln() - f) / sigma;
        let (d1, d2) = dist.dlog_pdf(z);
        (d1 / sigma, -d2 / (sigma * sigma))
    } else if upper.is_infinite() {
        let z = (lower.ln() - f) / sigma;
        let (d1, d2) = dist.dlog_surv(z);
        (d1 / sigma, -d2 / (sigma * sigma))
    } else {
        let zu = (upper.ln() - f) / sigma;
        let (fu, cu, dfu) = pdf_cdf_dpdf(dist, zu);
        let (fl, cl, dfl) = if lower > 0.0 { pdf_cdf_dpdf(dist, (lower.ln() - f) / sigma) } else { (0.0, 0.0, 0.0) };
        let dd = (cu - cl).max(1e-12);
        let n = fu - fl;
        (n / (sigma * dd), (-(dfu - dfl) * dd + n * n) / (sigma * sigma * dd * dd))
    };
    let g = if g.is_finite() { g.clamp(-15.0, 15.0) } else { 0.0 };
    let h = if h.is_finite() { h.clamp(1e-16, 15.0) } else { 1e-16 };
    (g, h)
}

fn pdf_cdf_dpdf(dist: Dist, z: f64) -> (f64, f64, f64) {
    let f = dist.pdf(z);
    (f, dist.cdf(z), f * dist.dlog_pdf(z).0)
}

/// XGBoost's `aft-nloglik` of one row at margin `f`.
pub fn aft_loss(dist: Dist, sigma: f64, lower: f64, upper: f64, f: f64) -> f64 {
    const EPS: f64 = 1e-12;
    if lower == upper {
        let z = (lower.ln() - f) / sigma;
        -(dist.pdf(z) / (sigma * lower)).max(EPS).ln()
    } else {
        let cu = if upper.is_infinite() { 1.0 } else { dist.cdf((upper.ln() - f) / sigma) };
        let cl = if lower <= 0.0 { 0.0 } else { dist.cdf((lower.ln() - f) / sigma) };
        -(cu - cl).max(EPS).ln()
    }
}
