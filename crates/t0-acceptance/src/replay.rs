//! The replay: matured predictions in T0 order, each a step of adaptive conformal
//! inference, surprisal, the guards, κ/κ⁺, the state machine and execution gating, summed up
//! into the figures the acceptance state, the grid's objective and the metrics export read.
//! The carry (ACI and machine state, the recent windows) is what calibrate persists per model
//! run and label, so the next replay continues where this one stopped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aci::AciState;
use crate::fsm::{self, Fsm, Severity};
use crate::gating::{self, Reason};
use crate::objective::{Metrics, References};
use crate::totals::Totals;
use crate::{Profile, State, quantile, surprisal};

/// One matured prediction as the replay sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Outcome minus prediction.
    pub residual: f64,
    /// The row's interval scale: ŝ(x) for normalised intervals, 1 for split ones.
    pub scale: f64,
    /// The decision latency `score` recorded for the row's batch (NaN: none recorded).
    pub latency_ms: f64,
}

/// The model's calibration, which every step's interval is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Calibration scores |y − ŷ| / ŝ(x), ascending.
    pub scores: Vec<f64>,
    /// The scores' threshold at the nominal level: the interval as trained (rel width 1).
    pub nominal_threshold: f64,
    /// σ of the scores for surprisal: their median / 0.6745 (the normal's MAD).
    pub sigma: f64,
}

impl Calibration {
    pub fn new(mut scores: Vec<f64>, nominal: f64) -> Calibration {
        scores.sort_by(f64::total_cmp);
        let nominal_threshold = crate::conformal_quantile(&scores, nominal);
        let sigma = quantile(&scores, 0.5) / 0.674_489_750_196_081_7;
        Calibration { scores, nominal_threshold, sigma }
    }
}

/// What a replay carries from one run to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carry {
    pub aci: AciState,
    pub fsm: Fsm,
    /// The last `guards.window` surprisals and latencies, oldest first.
    pub surprisals: Vec<f64>,
    pub latencies: Vec<f64>,
    /// Every step's counts since the model's first replay (the metrics' counters).
    pub totals: Totals,
}

impl Carry {
    /// A model's first replay starts from the profile's target and `initial` state.
    pub fn new(p: &Profile, initial: State) -> Carry {
        Carry {
            aci: AciState::new(&p.aci),
            fsm: Fsm::new(initial),
            surprisals: Vec::new(),
            latencies: Vec::new(),
            totals: Totals::default(),
        }
    }
}

/// Each guard's severity at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub coverage_ema: Severity,
    pub miss_streak: Severity,
    pub surprisal_p95: Severity,
    pub latency_p95: Severity,
    pub rel_width: Severity,
    pub kappa_plus: Severity,
}

impl Judged {
    /// (violation type, severity), the type as the metrics' `type` label.
    pub fn each(&self) -> [(&'static str, Severity); 6] {
        [
            ("coverage_ema", self.coverage_ema),
            ("miss_streak", self.miss_streak),
            ("surprisal_p95", self.surprisal_p95),
            ("latency_p95", self.latency_p95),
            ("rel_width", self.rel_width),
            ("kappa_plus", self.kappa_plus),
        ]
    }

    pub fn worst(&self) -> Severity {
        self.each().iter().map(|(_, s)| *s).max().unwrap_or(Severity::Clean)
    }

    /// The gating reasons of the guards at a hard breach (a guard "fires").
    fn firing(&self) -> Vec<Reason> {
        let map = |t: &str| match t {
            "surprisal_p95" => Reason::Surprisal,
            "coverage_ema" | "miss_streak" => Reason::Coverage,
            "latency_p95" => Reason::Latency,
            _ => Reason::Width,
        };
        self.each().iter().filter(|(_, s)| *s == Severity::Hard).map(|(t, _)| map(t)).collect()
    }
}

/// One step's record.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub alpha: f64,
    /// The interval's half-width issued before the outcome (score scale × row scale).
    pub halfwidth: f64,
    pub miss: bool,
    pub jump: bool,
    /// The coverage EMA after the outcome.
    pub coverage_ema: f64,
    pub surprisal: f64,
    pub latency_ms: f64,
    pub rel_width: f64,
    pub kappa: f64,
    pub kappa_plus: f64,
    pub judged: Judged,
    pub state: State,
    pub transition: Option<(State, State)>,
    pub risk_scale: f64,
    pub reason: Option<Reason>,
}

/// A replay's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub steps: usize,
    pub pass_share: f64,
    pub derisk_share: f64,
    pub block_share: f64,
    /// Share of steps whose outcome fell inside the interval issued before it (none without
    /// steps).
    pub coverage: Option<f64>,
    pub surprisal_p95: Option<f64>,
    /// None when no latency was recorded.
    pub latency_p95_ms: Option<f64>,
    pub flap_rate_k: f64,
    pub mean_risk_scale: f64,
    /// Share of steps blocked (risk scale 0) for each reason that occurred.
    pub block_rate_by_reason: BTreeMap<String, f64>,
    /// Share of steps with a soft or hard breach of any guard, and of each type.
    pub violation_rate: f64,
    pub violations_by_type: BTreeMap<String, usize>,
    /// (from, to) → count.
    pub transitions: BTreeMap<String, usize>,
    pub final_alpha: f64,
    pub final_state: State,
}

impl Summary {
    /// The objective's view.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            pass_share: self.pass_share,
            derisk_share: self.derisk_share,
            block_share: self.block_share,
            violation_rate: self.violation_rate,
            coverage: self.coverage.unwrap_or(f64::NAN),
            surprisal_p95: self.surprisal_p95.unwrap_or(f64::NAN),
            latency_p95_ms: self.latency_p95_ms.unwrap_or(f64::NAN),
            flap_rate_k: self.flap_rate_k,
        }
    }
}

/// The references the objective and the constraints are relative to: the coverage and
/// surprisal guards' soft thresholds and the latency guard's soft threshold as the SLO.
pub fn references(p: &Profile) -> References {
    References {
        coverage_lower_bound: p.guards.coverage_ema.soft,
        surprisal_guard: p.guards.surprisal_p95.soft,
        latency_slo_ms: p.guards.latency_p95_ms.soft,
    }
}

fn push_window(v: &mut Vec<f64>, x: f64, window: usize) {
    v.push(x);
    if v.len() > window.max(1) {
        v.remove(0);
    }
}

/// One step: issue, observe, judge, move the machine, gate.
pub fn step(p: &Profile, cal: &Calibration, carry: &mut Carry, o: &Observation) -> StepRecord {
    let scale = if o.scale.is_finite() && o.scale > 0.0 { o.scale } else { 1.0 };
    let s = carry.aci.observe(&p.aci, &cal.scores, o.residual.abs() / scale);
    let sur = surprisal::surprisal(o.residual, scale * cal.sigma);
    push_window(&mut carry.surprisals, sur, p.guards.window);
    if !o.latency_ms.is_nan() {
        push_window(&mut carry.latencies, o.latency_ms, p.guards.window);
    }
    let rel_width = if cal.nominal_threshold > 0.0 && cal.nominal_threshold.is_finite() {
        s.threshold / cal.nominal_threshold
    } else {
        1.0
    };
    let g = &p.guards;
    let mut judged = Judged {
        coverage_ema: g.coverage_ema.judge(carry.aci.coverage_ema),
        miss_streak: g.miss_streak.judge(carry.aci.miss_streak as f64),
        surprisal_p95: g.surprisal_p95.judge(quantile(&carry.surprisals, 0.95)),
        latency_p95: g.latency_p95_ms.judge(quantile(&carry.latencies, 0.95)),
        rel_width: g.rel_width.judge(rel_width),
        kappa_plus: Severity::Clean,
    };
    let soft = judged.each().iter().filter(|(_, s)| *s == Severity::Soft).count();
    let kappa = fsm::kappa(rel_width, p.kappa.max_rel_width);
    let (kappa_plus, ks) = fsm::kappa_plus(kappa, soft, p.kappa.penalty);
    judged.kappa_plus = ks;
    let transition = carry.fsm.step(&p.hysteresis, judged.worst());
    let (risk_scale, reason) = gating::risk_scale(&p.gating, carry.fsm.state, &judged.firing());
    let record = StepRecord {
        alpha: s.alpha,
        halfwidth: s.threshold * scale,
        miss: s.miss,
        jump: s.jump,
        coverage_ema: carry.aci.coverage_ema,
        surprisal: sur,
        latency_ms: o.latency_ms,
        rel_width,
        kappa,
        kappa_plus,
        judged,
        state: carry.fsm.state,
        transition,
        risk_scale,
        reason,
    };
    carry.totals.add(&record);
    record
}

/// Replay `obs` from `carry`: every step's record and the summary.
pub fn replay(p: &Profile, cal: &Calibration, carry: &mut Carry, obs: &[Observation]) -> (Vec<StepRecord>, Summary) {
    let records: Vec<StepRecord> = obs.iter().map(|o| step(p, cal, carry, o)).collect();
    let summary = summarize(&records, carry);
    (records, summary)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The summary of `records`; the final α and state are the carry's.
pub fn summarize(records: &[StepRecord], carry: &Carry) -> Summary {
    let n = records.len();
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let in_state = |s: State| share(records.iter().filter(|r| r.state == s).count());
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut transitions: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        if let Some(reason) = r.reason {
            *by_reason.entry(reason.label().to_string()).or_default() += 1;
        }
        for (t, s) in r.judged.each() {
            if s >= Severity::Soft {
                *by_type.entry(t.to_string()).or_default() += 1;
            }
        }
        if let Some((from, to)) = r.transition {
            *transitions.entry(format!("{from}->{to}")).or_default() += 1;
        }
    }
    let surprisals: Vec<f64> = records.iter().map(|r| r.surprisal).collect();
    let latencies: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    Summary {
        steps: n,
        pass_share: in_state(State::Pass),
        derisk_share: in_state(State::Derisk),
        block_share: in_state(State::Block),
        coverage: (n > 0).then(|| share(records.iter().filter(|r| !r.miss).count())),
        surprisal_p95: finite(quantile(&surprisals, 0.95)),
        latency_p95_ms: finite(quantile(&latencies, 0.95)),
        flap_rate_k: if n == 0 { 0.0 } else { transitions.values().sum::<usize>() as f64 * 1000.0 / n as f64 },
        mean_risk_scale: if n == 0 { 0.0 } else { records.iter().map(|r| r.risk_scale).sum::<f64>() / n as f64 },
        block_rate_by_reason: by_reason.into_iter().map(|(k, v)| (k, share(v))).collect(),
        violation_rate: share(records.iter().filter(|r| r.judged.worst() >= Severity::Soft).count()),
        violations_by_type: by_type,
        transitions,
        final_alpha: carry.aci.alpha,
        final_state: carry.fsm.state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use t0_core::rng::SplitMix;

    fn calibration(rng: &mut SplitMix) -> Calibration {
        Calibration::new((0..500).map(|_| rng.normal().abs()).collect(), 0.9)
    }

    fn stream(rng: &mut SplitMix, n: usize, sd: f64, latency: f64) -> Vec<Observation> {
        (0..n).map(|_| Observation { residual: sd * rng.normal(), scale: 1.0, latency_ms: latency }).collect()
    }

    #[test]
    fn exchangeable_steps_stay_in_pass_and_cover_at_target() {
        let mut rng = SplitMix::new(7);
        let (p, cal) = (Profile::default(), calibration(&mut rng));
        let mut carry = Carry::new(&p, State::Pass);
        let (_, s) = replay(&p, &cal, &mut carry, &stream(&mut rng, 5000, 1.0, 20.0));
        assert!((s.coverage.unwrap() - 0.9).abs() < 0.015, "coverage {:?}", s.coverage);
        assert!(s.pass_share > 0.95, "{s:?}");
        assert_eq!(s.block_share, 0.0, "{s:?}");
        assert!(s.flap_rate_k < 5.0, "{s:?}");
        assert!((s.surprisal_p95.unwrap() - 1.8).abs() < 0.2, "{:?}", s.surprisal_p95);
    }

    /// The loop the issue asks for: a drift drives the state down, and it recovers after.
    #[test]
    fn a_drift_drives_the_state_to_derisk_or_block_and_recovery_brings_it_back() {
        let mut rng = SplitMix::new(11);
        let (p, cal) = (Profile::default(), calibration(&mut rng));
        let mut carry = Carry::new(&p, State::Pass);
        let mut obs = stream(&mut rng, 1000, 1.0, 20.0);
        obs.extend(stream(&mut rng, 300, 4.0, 20.0));
        obs.extend(stream(&mut rng, 1500, 1.0, 20.0));
        let (records, s) = replay(&p, &cal, &mut carry, &obs);
        assert!(records[..1000].iter().all(|r| r.state == State::Pass));
        assert!(records[1000..1300].iter().any(|r| r.state == State::Block), "{s:?}");
        assert!(records[1000..1300].iter().any(|r| r.reason.is_some()));
        assert_eq!(carry.fsm.state, State::Pass, "{s:?}");
        assert!(s.transitions.contains_key("PASS->DERISK") && s.transitions.contains_key("DERISK->BLOCK"), "{s:?}");
        assert!(s.block_rate_by_reason.values().sum::<f64>() > 0.0);
    }

    #[test]
    fn a_slow_decision_path_breaches_the_latency_guard_naming_it() {
        let mut rng = SplitMix::new(3);
        let (p, cal) = (Profile::default(), calibration(&mut rng));
        let mut carry = Carry::new(&p, State::Pass);
        let (records, s) = replay(&p, &cal, &mut carry, &stream(&mut rng, 200, 1.0, 900.0));
        assert_eq!(carry.fsm.state, State::Block, "{s:?}");
        assert_eq!(records.last().unwrap().reason, Some(Reason::Latency));
        assert_eq!(s.latency_p95_ms, Some(900.0));
        assert_eq!(carry.totals.histograms["latency_ms"].counts.last(), Some(&0));
        assert_eq!(carry.totals.decisions.values().sum::<u64>(), 200);
    }

    /// A replay in two halves, the carry passed between, equals one replay of the whole.
    #[test]
    fn a_replay_continues_where_the_last_stopped() {
        let mut rng = SplitMix::new(5);
        let (p, cal) = (Profile::default(), calibration(&mut rng));
        let obs = stream(&mut rng, 600, 1.5, 10.0);
        let mut whole = Carry::new(&p, State::Pass);
        let (all, _) = replay(&p, &cal, &mut whole, &obs);
        let mut split = Carry::new(&p, State::Pass);
        let (mut a, _) = replay(&p, &cal, &mut split, &obs[..250]);
        let json = serde_json::to_string(&split).unwrap();
        let mut split: Carry = serde_json::from_str(&json).unwrap();
        let (b, _) = replay(&p, &cal, &mut split, &obs[250..]);
        a.extend(b);
        assert_eq!(a, all);
        assert_eq!(split, whole);
    }
}
