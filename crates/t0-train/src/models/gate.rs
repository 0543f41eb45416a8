//! The tail gate: a logistic GBDT whose probability is isotonic-calibrated on the calibration
//! block and whose threshold is the best-F1 one on that block. The serving form of the binary
//! labels' `gate` model.

use super::gbdt::{Gbdt, GbdtConfig, Objective};
use t0_model::Predict;
pub use t0_model::gate::Gate;

use super::isotonic::Isotonic;
use super::{Design, FitError, Learner};
use crate::metrics as m;

/// Fit the GBDT on `train` (early stopping on `valid`), then calibrate it and choose its
/// threshold on `calibration`.
pub fn fit(train: &Design, valid: &Design, calibration: &Design) -> Result<Gate, FitError> {
    let model = Gbdt::fit(&GbdtConfig::new(Objective::Logistic), train, Some(valid))?;
    let y = calibration.y.real()?;
    let raw: Vec<f64> = (0..calibration.rows()).map(|i| model.predict(calibration.row(i))).collect();
    let iso = Isotonic::fit(&raw, y, 0.0, 1.0);
    let p: Vec<f64> = raw.iter().map(|p| iso.as_ref().map(|c| c.predict(*p)).unwrap_or(*p)).collect();
    let threshold = best_f1_threshold(&p, y);
    Ok(Gate { model, calibration: iso, threshold })
}

/// The threshold of best F1 on (p, y) (ties: the lower threshold).
pub(crate) fn best_f1_threshold(p: &[f64], y: &[f64]) -> f64 {
    let mut cands: Vec<f64> = p.to_vec();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    let mut best = (f64::NEG_INFINITY, 0.5);
    for t in cands {
        let f = m::prf(p, y, t).2;
        if f > best.0 {
            best = (f, t);
        }
    }
    best.1
}
