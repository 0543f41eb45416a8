//! The Prometheus text export (`metrics/calibrate.prom`, for a node-exporter textfile
//! collector). One prefix, `t0clip_`; labels stay low-cardinality — the profile's name, the
//! label, state, from/to, reason and violation type — never a run id (those live in the
//! report). Counters and histograms are cumulative since each model's first replay (they are
//! carried with the ACI state), so `rate()` and `histogram_quantile()` mean what they say.

use std::fmt::Write;

use t0_acceptance::State;
use t0_acceptance::cigate::GateState;
use t0_acceptance::totals::Histogram;

use crate::CalibrateReport;

/// A per-label gauge's value.
type Gauge = fn(&crate::LabelReplay) -> f64;

/// Escape a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
    format!("{{{}}}", parts.join(","))
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The text of every family, HELP and TYPE once each.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP t0clip_{name} {help}\n# TYPE t0clip_{name} {kind}");
    }

    fn sample(&mut self, name: &str, l: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.out, "t0clip_{name}{} {}", labels(l), num(v));
    }

    /// Dividing by `per` converts the histogram's unit to the exported one (ms to seconds).
    fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &Histogram, per: f64) {
        for (bound, count) in h.cumulative() {
            let le = num(bound / per);
            let mut with = l.to_vec();
            with.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with, count as f64);
        }
        self.sample(&format!("{name}_sum"), l, h.sum / per);
        self.sample(&format!("{name}_count"), l, h.count as f64);
    }
}

/// Long because: one family after another, each with its help text; splitting it would
/// only scatter the list of what is exported.
pub fn prom(r: &CalibrateReport, profile: &str, alpha_target: f64, gate_tolerance: f64) -> String {
    let mut t = Text::default();
    let p = ("profile", profile);
    t.family("acceptance_state", "gauge", "1 for the model's current acceptance state, 0 for the others.");
    for s in State::ALL {
        t.sample("acceptance_state", &[p, ("state", s.as_str())], f64::from(u8::from(r.state.as_str() == s.as_str())));
    }
    t.family("interval_coverage", "gauge", "Empirical coverage of the served intervals on matured outcomes.");
    t.sample("interval_coverage", &[p, ("label", &r.label)], r.coverage.unwrap_or(f64::NAN));
    t.family("interval_nominal", "gauge", "Nominal coverage of the served intervals.");
    t.sample("interval_nominal", &[p, ("label", &r.label)], r.nominal);
    t.family("matured_predictions", "gauge", "Predictions of the latest score run whose outcome has matured.");
    t.sample("matured_predictions", &[p, ("label", &r.label)], r.matured as f64);
    let counters: [(&str, &str, &str); 4] = [
        ("decisions_total", "state", "Replayed decisions per acceptance state."),
        ("transitions_total", "from_to", "Acceptance state transitions."),
        ("violations_total", "type", "Soft or hard guard breaches per guard type."),
        ("blocks_total", "reason", "Steps blocked (risk scale 0) per reason."),
    ];
    for (name, key, help) in counters {
        t.family(name, "counter", help);
        for l in &r.labels {
            let tot = &l.carry.totals;
            let map = match key {
                "state" => &tot.decisions,
                "from_to" => &tot.transitions,
                "type" => &tot.violations,
                _ => &tot.blocks,
            };
            for (k, v) in map {
                let lbl = ("label", l.label.as_str());
                match k.split_once("->") {
                    Some((from, to)) if key == "from_to" => {
                        t.sample(name, &[p, lbl, ("from", from), ("to", to)], *v as f64)
                    }
                    _ => t.sample(name, &[p, lbl, (key, k)], *v as f64),
                }
            }
        }
    }
    t.family("aci_alpha_target", "gauge", "The miss rate adaptive conformal inference aims at.");
    t.sample("aci_alpha_target", &[p], alpha_target);
    let gauges: [(&str, &str, Gauge); 6] = [
        ("aci_alpha", "The adapted miss rate the next intervals are issued at.", |l| l.carry.aci.alpha),
        ("aci_inflation", "The widening-only interval inflation after a regime jump.", |l| l.carry.aci.inflation),
        ("coverage_ema", "Exponential moving average of interval hits.", |l| l.carry.aci.coverage_ema),
        ("miss_streak", "Consecutive interval misses at the last step.", |l| l.carry.aci.miss_streak as f64),
        ("risk_scale", "Mean risk scale execution gating allowed over this replay's steps.", |l| {
            if l.new_steps == 0 { f64::NAN } else { l.summary.mean_risk_scale }
        }),
        ("flap_rate_per_1k", "Acceptance state transitions per 1,000 steps of this replay.", |l| l.summary.flap_rate_k),
    ];
    for (name, help, f) in gauges {
        t.family(name, "gauge", help);
        for l in &r.labels {
            t.sample(name, &[p, ("label", &l.label)], f(l));
        }
    }
    // (exported name, totals' name, unit divisor, help); Prometheus names carry base units.
    for (name, key, per, help) in [
        ("surprisal", "surprisal", 1.0, "Surprisal v2 of each replayed outcome."),
        (
            "decision_latency_seconds",
            "latency_ms",
            1e3,
            "Amortised decision latency score recorded, per replayed decision.",
        ),
        ("rel_width", "rel_width", 1.0, "Issued interval half-width over the model's nominal half-width."),
        ("kappa", "kappa", 1.0, "κ, the acceptance score from interval width."),
        ("kappa_plus", "kappa_plus", 1.0, "κ⁺, κ after guard penalties (below 0 blocks)."),
    ] {
        t.family(name, "histogram", help);
        for l in &r.labels {
            if let Some(h) = l.carry.totals.histograms.get(key) {
                t.histogram(name, &[p, ("label", &l.label)], h, per);
            }
        }
    }
    t.family("ci_gate_state", "gauge", "1 for the CI gate's current state, 0 for the others.");
    for s in [GateState::Stable, GateState::Observe, GateState::Warn] {
        t.sample("ci_gate_state", &[p, ("state", s.as_str())], f64::from(u8::from(r.ci_gate.state == s)));
    }
    t.family("ci_gate_ema", "gauge", "EMA of |coverage − target| across calibrate runs.");
    t.sample("ci_gate_ema", &[p], r.ci_gate.ema.unwrap_or(f64::NAN));
    t.family("ci_gate_tolerance", "gauge", "The EMA above which a calibrate run violates the CI gate.");
    t.sample("ci_gate_tolerance", &[p], gate_tolerance);
    t.out
}
