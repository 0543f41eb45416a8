//! The CI gate: |coverage − target| of each calibrate run, smoothed as an EMA across runs;
//! STABLE → OBSERVE on the first run whose EMA is beyond tolerance, → WARN after
//! `warn_after` consecutive such runs, back to STABLE after `stable_after` consecutive clean
//! runs. The streaks are persisted with the EMA (the seed lost them between runs).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiGateConfig {
    /// Weight of the newest run's gap in the EMA.
    pub ema_beta: f64,
    /// An EMA above this is a violation.
    pub tolerance: f64,
    pub warn_after: usize,
    pub stable_after: usize,
}

impl Default for CiGateConfig {
    fn default() -> Self {
        CiGateConfig { ema_beta: 0.3, tolerance: 0.05, warn_after: 3, stable_after: 2 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateState {
    Stable,
    Observe,
    Warn,
}

impl GateState {
    pub fn as_str(self) -> &'static str {
        match self {
            GateState::Stable => "STABLE",
            GateState::Observe => "OBSERVE",
            GateState::Warn => "WARN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiGate {
    pub state: GateState,
    /// None until a run has measured a gap.
    pub ema: Option<f64>,
    pub violation_run: usize,
    pub clean_run: usize,
}

impl Default for CiGate {
    fn default() -> Self {
        CiGate { state: GateState::Stable, ema: None, violation_run: 0, clean_run: 0 }
    }
}

impl CiGate {
    /// One calibrate run's coverage `gap` (None: nothing matured, the gate holds).
    pub fn observe(&mut self, cfg: &CiGateConfig, gap: Option<f64>) {
        let Some(gap) = gap else { return };
        let ema = self.ema.map_or(gap, |e| cfg.ema_beta * gap + (1.0 - cfg.ema_beta) * e);
        self.ema = Some(ema);
        if ema > cfg.tolerance {
            self.violation_run += 1;
            self.clean_run = 0;
            self.state = if self.violation_run >= cfg.warn_after.max(1) { GateState::Warn } else { GateState::Observe };
        } else {
            self.clean_run += 1;
            self.violation_run = 0;
            if self.clean_run >= cfg.stable_after.max(1) {
                self.state = GateState::Stable;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_observes_then_warns_and_needs_clean_runs_to_settle() {
        let cfg = CiGateConfig::default();
        let mut g = CiGate::default();
        let mut states = Vec::new();
        for gap in [Some(0.01), Some(0.2), None, Some(0.2), Some(0.2), Some(0.0), Some(0.0), Some(0.0), Some(0.0)] {
            g.observe(&cfg, gap);
            states.push(g.state);
        }
        use GateState::*;
        // The EMA lags: 0.066 after two clean gaps is still a violation, 0.046 is the
        // first clean run, and STABLE needs two.
        assert_eq!(states, [Stable, Observe, Observe, Observe, Warn, Warn, Warn, Warn, Stable]);
        // The EMA: 0.01, then 0.3·0.2 + 0.7·0.01 = 0.067 (> 0.05).
        let mut g = CiGate::default();
        g.observe(&cfg, Some(0.01));
        g.observe(&cfg, Some(0.2));
        assert!((g.ema.unwrap() - 0.067).abs() < 1e-12);
    }

    /// The streaks survive a round trip through the persisted form.
    #[test]
    fn streaks_are_persisted_with_the_ema() {
        let cfg = CiGateConfig::default();
        let mut g = CiGate::default();
        g.observe(&cfg, Some(0.3));
        g.observe(&cfg, Some(0.3));
        let mut back: CiGate = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        back.observe(&cfg, Some(0.3));
        assert_eq!((back.state, back.violation_run), (GateState::Warn, 3));
    }
}
