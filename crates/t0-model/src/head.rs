//! What a served model's output means, per label kind, and what score derives from it: a
//! value on the label's scale (with conformal intervals, see [`crate::Model`]), a calibrated
//! probability with its decision threshold, or a log-time location read through a fitted
//! distribution into quantiles, S(t) and a conformal lower predictive bound.

use serde::{Deserialize, Serialize};
use t0_project::Transform;

use crate::dist::Dist;
use crate::isotonic::Isotonic;

/// Quantiles of time-to-event served beside the median.
pub const TIME_QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Head {
    /// A value or flow label: the output is on the label's scale; `transform` inverts it to
    /// the raw scale.
    Value { transform: Transform },
    /// A binary label: the output is a probability, calibrated by `calibration` (isotonic on
    /// the calibration block; none where the model calibrates itself, as the gate does),
    /// decided positive at `threshold` (best F1 on the calibration block).
    Binary { calibration: Option<Isotonic>, threshold: f64 },
    /// A time-to-event label: the output is the log-time location of `dist` with scale
    /// `sigma`; times are in hours.
    Survival { dist: Dist, sigma: f64, times: Vec<f64>, bound: Option<SurvivalBound> },
}

impl Default for Head {
    fn default() -> Head {
        Head::Value { transform: Transform::None }
    }
}

impl Head {
    pub fn kind(&self) -> &'static str {
        match self {
            Head::Value { .. } => "value",
            Head::Binary { .. } => "binary",
            Head::Survival { .. } => "time_to_event",
        }
    }

    /// The served probability of a binary head for the model's output `p`.
    pub fn probability(&self, p: f64) -> f64 {
        match self {
            Head::Binary { calibration: Some(c), .. } => c.predict(p),
            _ => p,
        }
    }
}

/// The conformal lower predictive bound on a survival time (Candès, Lei & Ren 2023,
/// "Conformalized survival analysis"), from the model's median m(x):
///
/// on calibration rows whose censoring time C reaches the threshold `c0`, the truncated time
/// T ∧ c0 is observed; the scores V = ln m(x) − ln(T ∧ c0) are stored ascending, and at level
/// 1 − α the bound is L(x) = min(m(x) · exp(−η), c0) with η the ⌈(1 − α)(n + 1)⌉-th smallest
/// score. Then P(T ≥ L(X)) ≥ 1 − α when the selection C ≥ c0 is independent of T given X,
/// with weights 1 / P(C ≥ c0 | X): here censoring is administrative (the end of an entity's
/// observation window, known for every row), so the selection depends on T0 alone and the
/// weights are taken as constant — the unweighted form of the paper's method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurvivalBound {
    /// Hours: the truncation threshold (the median censoring time of the calibration rows).
    pub c0: f64,
    /// V on the selected calibration rows, ascending.
    pub scores: Vec<f64>,
}

impl SurvivalBound {
    /// Calibrate on rows of (model median in hours, observed time, event, censoring time);
    /// `None` when fewer than 2 rows reach the threshold.
    pub fn fit(median: &[f64], time: &[f64], event: &[bool], censor: &[f64]) -> Option<SurvivalBound> {
        let mut c: Vec<f64> = censor.iter().copied().filter(|c| c.is_finite() && *c > 0.0).collect();
        c.sort_by(f64::total_cmp);
        let c0 = *c.get(c.len() / 2)?;
        let mut scores: Vec<f64> = (0..median.len())
            .filter(|&i| censor[i] >= c0 && median[i] > 0.0)
            .filter_map(|i| {
                // Observed: an event before c0 is T; otherwise T ≥ c0 (event later, or censored
                // at C ≥ c0), so T ∧ c0 = c0.
                let truncated = if event[i] && time[i] < c0 { time[i] } else { c0 };
                (truncated > 0.0).then(|| median[i].ln() - truncated.ln())
            })
            .collect();
        if scores.len() < 2 {
            return None;
        }
        scores.sort_by(f64::total_cmp);
        Some(SurvivalBound { c0, scores })
    }

    /// The lower bound at coverage `level` for a row whose model median is `median` hours
    /// (0 when there are too few scores for the level).
    pub fn at(&self, median: f64, level: f64) -> f64 {
        let n = self.scores.len();
        let k = ((n + 1) as f64 * level).ceil() as usize;
        if k == 0 {
            return self.c0.min(median);
        }
        match self.scores.get(k - 1) {
            Some(eta) => (median * (-eta).exp()).min(self.c0),
            None => 0.0,
        }
    }
}

/// Per-row derived figures of a survival head at log-time location `loc`.
pub fn survival_figures(dist: Dist, sigma: f64, times: &[f64], loc: f64) -> (Vec<f64>, Vec<f64>) {
    let q = TIME_QUANTILES.iter().map(|q| (loc + sigma * dist.quantile(*q)).exp()).collect();
    let s = times.iter().map(|t| dist.log_surv((t.ln() - loc) / sigma).exp()).collect();
    (q, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic uniform stream (splitmix64).
    fn uniforms(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Synthetic censored rows with known event times: x ~ U(0, 2), ln T = x + ε with
    /// ε ~ N(0, 0.5²) by Box–Muller, censoring C ~ U(0, 40) hours independent of T. The model's
    /// median is deliberately off (e^{0.8x}), so coverage comes from the conformal step.
    /// (model median, true time, observed time, event, censoring time) per row.
    type Rows = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<bool>, Vec<f64>);

    fn rows(n: usize, seed: u64) -> Rows {
        let mut u = uniforms(seed);
        let (mut med, mut t_true, mut obs, mut ev, mut cens) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let x = 2.0 * u();
            let z = (-2.0 * u().max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
            let t = (x + 0.5 * z).exp();
            let c = 40.0 * u();
            med.push((0.8 * x).exp());
            t_true.push(t);
            obs.push(t.min(c));
            ev.push(t <= c);
            cens.push(c);
        }
        (med, t_true, obs, ev, cens)
    }

    #[test]
    fn the_survival_lower_bound_covers_at_its_level_on_censored_data_with_known_times() {
        let (med, _, obs, ev, cens) = rows(5_000, 1);
        let bound = SurvivalBound::fit(&med, &obs, &ev, &cens).unwrap();
        let (tmed, t_true, ..) = rows(20_000, 2);
        for level in [0.8, 0.9] {
            let covered = (0..tmed.len()).filter(|&i| t_true[i] >= bound.at(tmed[i], level)).count();
            let coverage = covered as f64 / tmed.len() as f64;
            // Valid (at least the level, within sampling error) and not trivially 0.
            assert!(coverage >= level - 0.01, "level {level}: coverage {coverage}");
            assert!(coverage <= level + 0.06, "level {level}: coverage {coverage} is needlessly conservative");
            assert!((0..100).any(|i| bound.at(tmed[i], level) > 0.1), "the bound is informative");
        }
    }

    #[test]
    fn the_bound_never_exceeds_the_threshold_and_rises_with_the_median() {
        let (med, _, obs, ev, cens) = rows(500, 3);
        let b = SurvivalBound::fit(&med, &obs, &ev, &cens).unwrap();
        assert!(b.at(1e9, 0.9) <= b.c0);
        assert!(b.at(2.0, 0.9) <= b.at(3.0, 0.9));
        assert!(b.at(2.0, 0.9) <= b.at(2.0, 0.8));
        assert_eq!(SurvivalBound::fit(&[1.0], &[1.0], &[true], &[2.0]), None);
    }
}
