//! Surprisal v2: how surprising an outcome is given its prediction and spread,
//! `log1p(3 · huber(r / σ_eff))` with Huber δ = 1.345 — linear in the tail, so one wild
//! outcome raises it moderately instead of quadratically.

/// Huber's δ (95 % efficiency under normal errors).
pub const HUBER_DELTA: f64 = 1.345;

/// Huber's loss of `r`: r²/2 inside ±δ, δ(|r| − δ/2) outside.
pub fn huber(r: f64, delta: f64) -> f64 {
    let a = r.abs();
    if a <= delta { 0.5 * a * a } else { delta * (a - 0.5 * delta) }
}

/// Surprisal v2 of a `residual` at effective scale `sigma` (a non-positive or non-finite
/// scale counts as 1, so a degenerate interval cannot divide by zero).
pub fn surprisal(residual: f64, sigma: f64) -> f64 {
    let s = if sigma.is_finite() && sigma > 0.0 { sigma } else { 1.0 };
    (3.0 * huber(residual / s, HUBER_DELTA)).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surprisal_follows_its_formula_inside_and_outside_the_huber_band() {
        assert_eq!(surprisal(0.0, 1.0), 0.0);
        // |r| = 1 ≤ δ: log1p(3 · 0.5) = ln 2.5.
        assert!((surprisal(1.0, 1.0) - 2.5f64.ln()).abs() < 1e-15);
        // r = 4σ: huber = 1.345 · (4 − 0.6725) = 4.4753…; log1p(3 · that).
        let h: f64 = 1.345 * (4.0 - 0.6725);
        assert!((surprisal(-8.0, 2.0) - (3.0 * h).ln_1p()).abs() < 1e-12);
        assert!(surprisal(1e6, 1.0) < 16.0, "the tail grows logarithmically");
        assert_eq!(surprisal(1.0, 0.0), surprisal(1.0, 1.0));
    }
}
