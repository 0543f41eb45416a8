//! Running totals of every replayed step, carried across replays: what the metrics export's
//! counters and histograms report (cumulative, so a scrape's `rate()` means something).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::replay::StepRecord;

/// A cumulative histogram with fixed upper bounds (the last bucket, +Inf, implied).
/// Non-finite values count in +Inf and add nothing to the sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    /// Per bucket (not cumulative), one more than `bounds` for +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram { bounds: bounds.to_vec(), counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = if v.is_finite() {
            self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len())
        } else {
            self.bounds.len()
        };
        self.counts[i] += 1;
        self.count += 1;
        if v.is_finite() {
            self.sum += v;
        }
    }

    /// (upper bound, cumulative count) per bucket, +Inf last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let bounds = self.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        bounds.zip(&self.counts).map(|(b, c)| (b, (acc += c, acc).1)).collect()
    }
}

/// The histograms exported, by name, with their bucket bounds.
pub const HISTOGRAMS: [(&str, &[f64]); 5] = [
    ("surprisal", &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0]),
    ("latency_ms", &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 300.0, 500.0, 1000.0]),
    ("rel_width", &[0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 4.0]),
    ("kappa", &[-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0]),
    ("kappa_plus", &[-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0]),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Steps decided in each state.
    pub decisions: BTreeMap<String, u64>,
    /// `FROM->TO` → count.
    pub transitions: BTreeMap<String, u64>,
    /// Soft or hard breaches per guard type.
    pub violations: BTreeMap<String, u64>,
    /// Steps with risk scale 0, per reason label.
    pub blocks: BTreeMap<String, u64>,
    pub risk_scale_sum: f64,
    pub histograms: BTreeMap<String, Histogram>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            decisions: BTreeMap::new(),
            transitions: BTreeMap::new(),
            violations: BTreeMap::new(),
            blocks: BTreeMap::new(),
            risk_scale_sum: 0.0,
            histograms: HISTOGRAMS.iter().map(|(n, b)| (n.to_string(), Histogram::new(b))).collect(),
        }
    }
}

impl Totals {
    pub fn add(&mut self, r: &StepRecord) {
        *self.decisions.entry(r.state.as_str().into()).or_default() += 1;
        if let Some((from, to)) = r.transition {
            *self.transitions.entry(format!("{from}->{to}")).or_default() += 1;
        }
        for (t, s) in r.judged.each() {
            if s >= crate::fsm::Severity::Soft {
                *self.violations.entry(t.into()).or_default() += 1;
            }
        }
        if let Some(reason) = r.reason {
            *self.blocks.entry(reason.label().into()).or_default() += 1;
        }
        self.risk_scale_sum += r.risk_scale;
        let values = [r.surprisal, r.latency_ms, r.rel_width, r.kappa, r.kappa_plus];
        for ((name, _), v) in HISTOGRAMS.iter().zip(values) {
            if let Some(h) = self.histograms.get_mut(*name) {
                h.observe(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_put_the_unbounded_in_inf() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 7.0, f64::INFINITY, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.cumulative(), vec![(1.0, 2), (2.0, 3), (f64::INFINITY, 5)]);
        assert_eq!((h.count, h.sum), (5, 10.0));
    }
}
