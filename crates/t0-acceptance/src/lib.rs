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
//! - [`replay`]: one step of all of the above, and a replay's summary; [`totals`]: the
//!   cumulative counts the metrics export; [`cigate`]: the CI gate; [`patch`]: setting the
//!   profile by dotted path.
//!
//! `calibrate` drives it; `score` reads the state it leaves.

pub mod aci;
pub mod cigate;
pub mod fsm;
pub mod gating;
pub mod grid;
pub mod objective;
pub mod patch;
pub mod replay;
pub mod surprisal;
pub mod totals;

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

/// The governance profile: every parameter of the loop. The default equals
/// `configs/governance.yaml` (a test compares them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub aci: aci::AciConfig,
    pub hysteresis: fsm::Hysteresis,
    pub guards: Guards,
    pub kappa: Kappa,
    pub gating: gating::Gating,
    pub objective: Objective,
    pub ci_gate: cigate::CiGateConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// How many recent steps the p95 signals (surprisal, latency) are taken over.
    pub window: usize,
    pub coverage_ema: fsm::Guard,
    pub miss_streak: fsm::Guard,
    pub surprisal_p95: fsm::Guard,
    pub latency_p95_ms: fsm::Guard,
    pub rel_width: fsm::Guard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kappa {
    pub max_rel_width: f64,
    pub penalty: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub weights: String,
    pub constraints: String,
}

impl Default for Profile {
    fn default() -> Self {
        let g = |soft, hard, up, higher_is_worse| fsm::Guard { soft, hard, up, higher_is_worse };
        Profile {
            aci: aci::AciConfig::default(),
            hysteresis: fsm::Hysteresis::default(),
            guards: Guards {
                window: 50,
                coverage_ema: g(0.82, 0.7, 0.85, false),
                miss_streak: g(5.0, 10.0, 2.0, true),
                surprisal_p95: g(2.5, 3.5, 2.2, true),
                latency_p95_ms: g(300.0, 500.0, 250.0, true),
                rel_width: g(1.5, 2.5, 1.25, true),
            },
            kappa: Kappa { max_rel_width: 3.0, penalty: 0.25 },
            gating: gating::Gating::default(),
            objective: Objective {
                weights: "w_pass=1,w_derisk=0.5,w_block=2,w_viol=3,w_lat=1,w_sur=1,w_flap=0.5,w_cov=4".into(),
                constraints: "coverage>=bound,surprisal<=guard*1.05,latency_p95<=slo*1.15".into(),
            },
            ci_gate: cigate::CiGateConfig::default(),
        }
    }
}

/// The ⌈(n + 1)·level⌉-th smallest of the ascending `scores`, infinite when that rank passes
/// n. Unlike the served model's `conformal::halfwidth` (which takes the largest score there),
/// ACI needs the infinite interval: it is what a level beyond the calibration set's reach
/// honestly issues, and it always covers, which pulls α back.
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

    /// The seed drew unseeded normal samples when a level passed the calibration set's reach;
    /// here the fallback is the infinite interval, the same on every call.
    #[test]
    fn the_quantile_fallback_is_deterministic() {
        let s = [0.5, 1.0, 2.0];
        let first = conformal_quantile(&s, 0.99);
        assert!(first.is_infinite());
        assert!((0..100).all(|_| conformal_quantile(&s, 0.99) == first));
        let cfg = aci::AciConfig::default();
        let mut a = aci::AciState::new(&cfg);
        let step = a.observe(&cfg, &[], 1e9);
        assert!(step.threshold.is_infinite() && !step.miss, "no scores: an interval that always covers");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 2, 3, 4], 0.95) = 3.85
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.95) - 3.85).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }

    /// The committed default profile is the code's default, and its objective parses.
    #[test]
    fn the_configs_profile_is_the_default_and_parses_whole() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/governance.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let p: Profile = serde_yaml::from_str(&text).unwrap();
        assert_eq!(p, Profile::default());
        objective::Weights::parse(&p.objective.weights).unwrap();
        objective::Constraint::parse_all(&p.objective.constraints).unwrap();
        let typo = text.replace("dwell_pass:", "dwell_pas:");
        assert!(serde_yaml::from_str::<Profile>(&typo).unwrap_err().to_string().contains("dwell_pas"));
    }

    #[test]
    fn only_block_stops_a_stage() {
        assert_eq!(State::ALL.map(State::exit_code), [0, 0, 1]);
        assert_eq!(State::Derisk.to_string(), "DERISK");
    }
}
