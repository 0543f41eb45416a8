//! Execution gating: the share of full size (`risk_scale`) the acceptance state allows, forced
//! to 0 when `hard_block_on_guard` and any gating guard fires, with the reason a step was
//! blocked (priority surprisal > coverage > latency > width > decision).

use serde::{Deserialize, Serialize};

use crate::State;

/// Why a step's risk scale is 0, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Surprisal,
    Coverage,
    Latency,
    Width,
    /// The state's own scale is 0 (BLOCK), no guard firing.
    Decision,
}

impl Reason {
    pub const ALL: [Reason; 5] =
        [Reason::Surprisal, Reason::Coverage, Reason::Latency, Reason::Width, Reason::Decision];

    /// The Prometheus `reason` label (`guard_<name>` for guards, as the seed's counter).
    pub fn label(self) -> &'static str {
        match self {
            Reason::Surprisal => "guard_surprisal",
            Reason::Coverage => "guard_coverage",
            Reason::Latency => "guard_latency",
            Reason::Width => "guard_width",
            Reason::Decision => "decision",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gating {
    /// Scale per state: PASS, DERISK, BLOCK.
    pub scale_pass: f64,
    pub scale_derisk: f64,
    pub scale_block: f64,
    pub hard_block_on_guard: bool,
    pub min_scale: f64,
    pub max_scale: f64,
}

impl Default for Gating {
    fn default() -> Self {
        Gating {
            scale_pass: 1.0,
            scale_derisk: 0.5,
            scale_block: 0.0,
            hard_block_on_guard: true,
            min_scale: 0.0,
            max_scale: 1.0,
        }
    }
}

/// The risk scale of one step in `state` with the guards `firing`, and why it is 0.
pub fn risk_scale(g: &Gating, state: State, firing: &[Reason]) -> (f64, Option<Reason>) {
    let base = match state {
        State::Pass => g.scale_pass,
        State::Derisk => g.scale_derisk,
        State::Block => g.scale_block,
    };
    let scale = base.clamp(g.min_scale, g.max_scale.max(g.min_scale));
    let guard = firing.iter().filter(|r| **r != Reason::Decision).min();
    if let (true, Some(r)) = (g.hard_block_on_guard, guard) {
        return (0.0, Some(*r));
    }
    if scale == 0.0 { (0.0, Some(Reason::Decision)) } else { (scale, None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_sets_the_scale_and_any_guard_zeroes_it_naming_the_first_reason() {
        let g = Gating::default();
        assert_eq!(risk_scale(&g, State::Pass, &[]), (1.0, None));
        assert_eq!(risk_scale(&g, State::Derisk, &[]), (0.5, None));
        assert_eq!(risk_scale(&g, State::Block, &[]), (0.0, Some(Reason::Decision)));
        let firing = [Reason::Width, Reason::Latency, Reason::Coverage];
        assert_eq!(risk_scale(&g, State::Pass, &firing), (0.0, Some(Reason::Coverage)));
        let soft = Gating { hard_block_on_guard: false, ..Gating::default() };
        assert_eq!(risk_scale(&soft, State::Derisk, &firing), (0.5, None));
    }

    #[test]
    fn the_scale_is_clipped_to_its_bounds() {
        let g = Gating { scale_pass: 3.0, max_scale: 2.0, scale_derisk: 0.1, min_scale: 0.25, ..Gating::default() };
        assert_eq!(risk_scale(&g, State::Pass, &[]).0, 2.0);
        assert_eq!(risk_scale(&g, State::Derisk, &[]).0, 0.25);
    }
}
