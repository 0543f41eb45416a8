//! The acceptance state machine with hysteresis. Each step the guards are judged on the
//! replay's signals ([`Guard::judge`]) and the worst [`Severity`] drives the machine:
//!
//! - PASS → DERISK after `dwell_down` consecutive soft breaches, at once on a hard one;
//! - DERISK → BLOCK on a hard breach once DERISK has lasted `dwell_block_after` steps;
//! - DERISK → PASS after `dwell_pass` consecutive clean steps (every signal back inside its
//!   *up* threshold, which sits inside the soft one: the hysteresis band);
//! - BLOCK → PASS after `clean_window` consecutive clean steps (the extended window);
//!   BLOCK → DERISK after `cooldown` consecutive steps below every hard threshold that are not
//!   clean (or also clean ones when `fast_path` is off).

use serde::{Deserialize, Serialize};

use crate::State;

/// How bad one step is, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Every signal inside its up threshold.
    Clean,
    /// Inside the soft thresholds but not every one inside its up threshold.
    Hold,
    Soft,
    Hard,
}

/// One guard on one signal: where it breaches softly, hard, and where it counts as clean
/// again. `higher_is_worse` false for signals like coverage, where low is bad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub soft: f64,
    pub hard: f64,
    pub up: f64,
    pub higher_is_worse: bool,
}

impl Guard {
    /// The severity of `value` (NaN: not measured, judged clean).
    pub fn judge(&self, value: f64) -> Severity {
        if value.is_nan() {
            return Severity::Clean;
        }
        let worse = |limit: f64| if self.higher_is_worse { value > limit } else { value < limit };
        if worse(self.hard) {
            Severity::Hard
        } else if worse(self.soft) {
            Severity::Soft
        } else if worse(self.up) {
            Severity::Hold
        } else {
            Severity::Clean
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hysteresis {
    pub dwell_down: usize,
    pub dwell_block_after: usize,
    pub dwell_pass: usize,
    pub cooldown: usize,
    pub clean_window: usize,
    pub fast_path: bool,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            dwell_down: 3,
            dwell_block_after: 1,
            dwell_pass: 10,
            cooldown: 20,
            clean_window: 50,
            fast_path: true,
        }
    }
}

/// The machine's state between steps (persisted with the ACI state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fsm {
    pub state: State,
    /// Steps since the state was entered.
    pub in_state: usize,
    pub breach_run: usize,
    pub clean_run: usize,
    pub below_hard_run: usize,
    pub transitions: usize,
}

impl Fsm {
    pub fn new(state: State) -> Fsm {
        Fsm { state, in_state: 0, breach_run: 0, clean_run: 0, below_hard_run: 0, transitions: 0 }
    }

    /// One step at severity `s`: the transition made, if any.
    pub fn step(&mut self, h: &Hysteresis, s: Severity) -> Option<(State, State)> {
        self.in_state += 1;
        self.breach_run = if s >= Severity::Soft { self.breach_run + 1 } else { 0 };
        self.clean_run = if s == Severity::Clean { self.clean_run + 1 } else { 0 };
        let counts_below = s < Severity::Hard && (s != Severity::Clean || !h.fast_path);
        self.below_hard_run = if counts_below { self.below_hard_run + 1 } else { 0 };
        let next = match self.state {
            State::Pass if s == Severity::Hard || self.breach_run >= h.dwell_down.max(1) => State::Derisk,
            State::Derisk if s == Severity::Hard && self.in_state > h.dwell_block_after => State::Block,
            State::Derisk if self.clean_run >= h.dwell_pass.max(1) => State::Pass,
            State::Block if h.fast_path && self.clean_run >= h.clean_window.max(1) => State::Pass,
            State::Block if self.below_hard_run >= h.cooldown.max(1) => State::Derisk,
            other => other,
        };
        (next != self.state).then(|| {
            let from = self.state;
            *self = Fsm { state: next, transitions: self.transitions + 1, ..Fsm::new(next) };
            (from, next)
        })
    }

    /// Transitions per 1,000 steps of `steps`.
    pub fn flap_rate(&self, steps: usize) -> f64 {
        if steps == 0 { 0.0 } else { self.transitions as f64 * 1000.0 / steps as f64 }
    }
}

/// κ, the acceptance score from interval width: 1 at a zero-width interval, 0 at
/// `max_rel_width`, negative beyond (NaN width: 1, nothing measured against it).
pub fn kappa(rel_width: f64, max_rel_width: f64) -> f64 {
    if rel_width.is_nan() || max_rel_width <= 0.0 { 1.0 } else { 1.0 - rel_width / max_rel_width }
}

/// κ⁺: κ less `penalty` per soft breach. Not clipped (the seed clipped it to [0, 1], so its
/// "block if κ⁺ < 0" never fired): κ⁺ < 0 is a hard breach.
pub fn kappa_plus(kappa: f64, soft_breaches: usize, penalty: f64) -> (f64, Severity) {
    let k = kappa - penalty * soft_breaches as f64;
    (k, if k < 0.0 { Severity::Hard } else { Severity::Clean })
}

#[cfg(test)]
mod tests {
    use super::Severity::*;
    use super::*;

    fn run(fsm: &mut Fsm, h: &Hysteresis, steps: &[(Severity, usize)]) -> Vec<(State, State)> {
        let mut out = Vec::new();
        for &(s, n) in steps {
            for _ in 0..n {
                out.extend(fsm.step(h, s));
            }
        }
        out
    }

    #[test]
    fn guards_judge_both_directions_with_a_hysteresis_band() {
        let latency = Guard { soft: 300.0, hard: 500.0, up: 250.0, higher_is_worse: true };
        assert_eq!([200.0, 280.0, 400.0, 600.0].map(|v| latency.judge(v)), [Clean, Hold, Soft, Hard]);
        let coverage = Guard { soft: 0.85, hard: 0.7, up: 0.88, higher_is_worse: false };
        assert_eq!([0.9, 0.86, 0.8, 0.5].map(|v| coverage.judge(v)), [Clean, Hold, Soft, Hard]);
        assert_eq!(coverage.judge(f64::NAN), Clean);
    }

    #[test]
    fn pass_downgrades_after_its_dwell_of_soft_breaches_and_at_once_on_a_hard_one() {
        let h = Hysteresis::default();
        let mut f = Fsm::new(State::Pass);
        assert!(run(&mut f, &h, &[(Soft, 2), (Clean, 1), (Soft, 2)]).is_empty(), "a broken run resets the dwell");
        assert_eq!(run(&mut f, &h, &[(Soft, 1)]), vec![(State::Pass, State::Derisk)]);
        let mut g = Fsm::new(State::Pass);
        assert_eq!(run(&mut g, &h, &[(Hard, 1)]), vec![(State::Pass, State::Derisk)]);
    }

    #[test]
    fn derisk_blocks_on_a_hard_breach_after_its_minimal_dwell() {
        let h = Hysteresis { dwell_block_after: 2, ..Hysteresis::default() };
        let mut f = Fsm::new(State::Derisk);
        assert!(run(&mut f, &h, &[(Hard, 2)]).is_empty());
        assert_eq!(run(&mut f, &h, &[(Hard, 1)]), vec![(State::Derisk, State::Block)]);
    }

    #[test]
    fn upgrades_need_clean_steps_not_just_steps_inside_the_soft_band() {
        let h = Hysteresis::default();
        let mut f = Fsm::new(State::Derisk);
        assert!(run(&mut f, &h, &[(Hold, 100)]).is_empty(), "inside soft but not clean: stays");
        assert!(run(&mut f, &h, &[(Clean, 9)]).is_empty());
        assert_eq!(run(&mut f, &h, &[(Clean, 1)]), vec![(State::Derisk, State::Pass)]);
    }

    #[test]
    fn block_returns_to_pass_only_through_the_extended_clean_window() {
        let h = Hysteresis::default();
        let mut f = Fsm::new(State::Block);
        assert!(run(&mut f, &h, &[(Clean, 49)]).is_empty());
        assert_eq!(run(&mut f, &h, &[(Clean, 1)]), vec![(State::Block, State::Pass)]);
        // Below hard but not clean: the cooldown leads to DERISK instead.
        let mut g = Fsm::new(State::Block);
        assert!(run(&mut g, &h, &[(Soft, 19)]).is_empty());
        assert_eq!(run(&mut g, &h, &[(Soft, 1)]), vec![(State::Block, State::Derisk)]);
        // Without the fast path, clean steps count toward the cooldown to DERISK.
        let slow = Hysteresis { fast_path: false, ..Hysteresis::default() };
        let mut k = Fsm::new(State::Block);
        assert_eq!(run(&mut k, &slow, &[(Clean, 20)]), vec![(State::Block, State::Derisk)]);
        assert_eq!(k.transitions, 1);
        assert_eq!(k.flap_rate(20), 50.0);
    }

    #[test]
    fn kappa_plus_below_zero_is_reachable_and_blocks() {
        assert_eq!(kappa(0.5, 1.0), 0.5);
        assert_eq!(kappa(f64::NAN, 1.0), 1.0);
        assert_eq!(kappa_plus(0.5, 1, 0.25), (0.25, Clean));
        let (k, s) = kappa_plus(kappa(0.9, 1.0), 1, 0.25);
        assert!(k < 0.0 && s == Hard);
        let mut f = Fsm::new(State::Derisk);
        assert_eq!(f.step(&Hysteresis::default(), s), None, "DERISK's minimal dwell");
        assert_eq!(f.step(&Hysteresis::default(), s), Some((State::Derisk, State::Block)));
    }

    #[test]
    fn a_hard_breach_resets_the_road_back() {
        let h = Hysteresis::default();
        let mut f = Fsm::new(State::Block);
        assert!(run(&mut f, &h, &[(Clean, 40), (Hard, 1), (Clean, 40)]).is_empty());
        assert_eq!(f.state, State::Block);
    }
}
