//! The acceptance logic of t0-clip's governance loop (the AURORA v1.2 design, followed as its
//! README states it): pure functions and plain state, no I/O, no clock, no randomness.
//!
//! - [`aci`]: adaptive conformal inference (Gibbs & Candès 2021) over a model's stored
//!   calibration scores, with a widening-only inflation after a regime jump;
//! - [`surprisal`]: surprisal v2 = log1p(3 · huber(r / σ_eff)), Huber δ = 1.345;
//! - [`fsm`]: the PASS / DERISK / BLOCK state machine with hysteresis and dwell, κ and κ⁺;
//! - [`gating`]: the risk scale a state and the guards allow, and why it is zero;
//! - [`grid`]: the calibration grid's syntax and its cartesian product;
//! - [`objective`]: ScoreV1 and the hard constraints.
//!
//! PLACEHOLDER STATUS (issue 29 open): these are the building blocks with their unit tests.
//! `calibrate` does not drive them yet: its replay, the persisted ACI/FSM state, the grid
//! command, the CI gate and the Prometheus export are still to be wired.

pub mod aci;
pub mod fsm;
pub mod gating;
pub mod grid;
pub mod objective;
pub mod surprisal;

use serde::{Deserialize, Serialize};

/// The acceptance state of a model: whether the system may keep acting on its predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Healthy: act at full size.
    Pass,
    /// Degraded: act at reduced size.
    Derisk,
    /// Severe breach: do not act.
    Block,
}

impl State {
    pub const ALL: [State; 3] = [State::Pass, State::Derisk, State::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pass => "PASS",
            State::Derisk => "DERISK",
            State::Block => "BLOCK",
        }
    }

    /// The process exit code of a stage that ends in this state (DESIGN.md: 1 = the gate
    /// said no).
    pub fn exit_code(self) -> i32 {
        match self {
            State::Pass | State::Derisk => 0,
            State::Block => 1,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ⌈(n + 1)·level⌉-th smallest of the ascending `scores` (infinite when that rank passes
/// n): the split-conformal quantile at `level`, as the served model computes it.
pub fn conformal_quantile(sorted: &[f64], level: f64) -> f64 {
    if level <= 0.0 {
        return 0.0;
    }
    let k = ((sorted.len() + 1) as f64 * level).ceil() as usize;
    if k == 0 {
        return 0.0;
    }
    sorted.get(k - 1).copied().unwrap_or(f64::INFINITY)
}

/// The `q`-quantile (0..=1) of `values` by linear interpolation between order statistics
/// (numpy's default), NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conformal_quantile_is_the_corrected_rank() {
        let s: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(conformal_quantile(&s, 0.9), 9.0);
        assert_eq!(conformal_quantile(&s, 0.5), 5.0);
        assert!(conformal_quantile(&s, 0.95).is_infinite());
        assert_eq!(conformal_quantile(&s, 0.0), 0.0);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.95) = 3.85
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.95) - 3.85).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn only_block_stops_a_stage() {
        assert_eq!(State::ALL.map(State::exit_code), [0, 0, 1]);
        assert_eq!(State::Derisk.to_string(), "DERISK");
    }
}
