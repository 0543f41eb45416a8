//! ScoreV1, the objective a calibration grid maximises, and its hard constraints. Weights
//! parse from `w_pass=1,w_derisk=0.5,...` or the profile's `coverage:0.4,latency:0.15,...`
//! form (the seed ignored the former); constraints from `coverage>=bound`,
//! `surprisal<=guard*1.05`, `latency_p95<=slo*1.15` or `coverage_min:0.86`,
//! `latency_p95_max:450`, `blocked_ratio_max:0.25`, `surprisal_p95_max:2.5` (the seed's
//! latency form never matched). An unknown key is an error naming it.

/// What a replay measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub pass_share: f64,
    pub derisk_share: f64,
    pub block_share: f64,
    /// Guard violations per step.
    pub violation_rate: f64,
    pub coverage: f64,
    pub surprisal_p95: f64,
    /// NaN when no latency was recorded.
    pub latency_p95_ms: f64,
    /// Transitions per 1,000 steps.
    pub flap_rate_k: f64,
}

/// The profile's references the objective and the constraints are relative to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct References {
    pub coverage_lower_bound: f64,
    pub surprisal_guard: f64,
    pub latency_slo_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Weights {
    pub pass: f64,
    pub derisk: f64,
    pub block: f64,
    pub violations: f64,
    pub latency: f64,
    pub surprisal: f64,
    pub flap: f64,
    pub coverage: f64,
}

/// The score a constraint violation forces: such points rank last.
pub const SENTINEL: f64 = -1e9;

impl Weights {
    pub const KEYS: [&str; 8] = ["w_pass", "w_derisk", "w_block", "w_viol", "w_lat", "w_sur", "w_flap", "w_cov"];

    /// `key=value` or `key:value` pairs separated by commas; keys as [`Weights::KEYS`] or
    /// the profile's names (`pass`, `derisk`, `blocked`, `violations`, `latency`,
    /// `surprisal`, `flap`, `coverage`). Unset weights are 0.
    pub fn parse(spec: &str) -> Result<Weights, String> {
        let mut w = Weights::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once(['=', ':']).ok_or_else(|| format!("weight {part:?}: expected key=value"))?;
            let v: f64 = v.trim().parse().map_err(|_| format!("weight {part:?}: {:?} is not a number", v.trim()))?;
            let slot = match k.trim() {
                "w_pass" | "pass" => &mut w.pass,
                "w_derisk" | "derisk" => &mut w.derisk,
                "w_block" | "blocked" | "block" => &mut w.block,
                "w_viol" | "violations" => &mut w.violations,
                "w_lat" | "latency" => &mut w.latency,
                "w_sur" | "surprisal" => &mut w.surprisal,
                "w_flap" | "flap" => &mut w.flap,
                "w_cov" | "coverage" => &mut w.coverage,
                other => return Err(format!("unknown weight {other:?} (known: {})", Weights::KEYS.join(", "))),
            };
            *slot = v;
        }
        Ok(w)
    }

    /// ScoreV1 of `m` (before constraints). The coverage term is signed: surplus over the
    /// lower bound earns, a deficit costs, both at `w_cov`. A term whose metric or reference
    /// is missing (NaN, zero) contributes 0.
    pub fn score(&self, m: &Metrics, r: &References) -> f64 {
        let ratio = |v: f64, by: f64| if v.is_finite() && by > 0.0 { v / by } else { 0.0 };
        self.pass * m.pass_share
            - self.derisk * m.derisk_share
            - self.block * m.block_share
            - self.violations * m.violation_rate
            - self.latency * ratio(m.latency_p95_ms, r.latency_slo_ms)
            - self.surprisal * ratio(m.surprisal_p95, r.surprisal_guard)
            - self.flap * m.flap_rate_k / 10.0
            + self.coverage * (m.coverage - r.coverage_lower_bound)
    }
}

/// One hard constraint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constraint {
    /// coverage ≥ factor × the lower bound (or an absolute value).
    CoverageAtLeast(Limit),
    SurprisalAtMost(Limit),
    LatencyAtMost(Limit),
    BlockedAtMost(f64),
}

/// A limit relative to the profile's reference (`bound*1.05`) or absolute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Relative(f64),
    Absolute(f64),
}

impl Limit {
    fn of(self, reference: f64) -> f64 {
        match self {
            Limit::Relative(f) => f * reference,
            Limit::Absolute(v) => v,
        }
    }
}

impl Constraint {
    /// Parse a comma-separated list of constraints.
    pub fn parse_all(spec: &str) -> Result<Vec<Constraint>, String> {
        spec.split(',').map(str::trim).filter(|p| !p.is_empty()).map(Constraint::parse).collect()
    }

    pub fn parse(s: &str) -> Result<Constraint, String> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some((k, v)) = compact.split_once(':') {
            let v: f64 = v.parse().map_err(|_| format!("constraint {s:?}: {v:?} is not a number"))?;
            return match k {
                "coverage_min" => Ok(Constraint::CoverageAtLeast(Limit::Absolute(v))),
                "surprisal_p95_max" => Ok(Constraint::SurprisalAtMost(Limit::Absolute(v))),
                "latency_p95_max" => Ok(Constraint::LatencyAtMost(Limit::Absolute(v))),
                "blocked_ratio_max" => Ok(Constraint::BlockedAtMost(v)),
                _ => Err(format!("unknown constraint key {k:?} in {s:?}")),
            };
        }
        let (lhs, op, rhs) = ["<=", ">="]
            .iter()
            .find_map(|op| compact.split_once(op).map(|(l, r)| (l, *op, r)))
            .ok_or_else(|| format!("constraint {s:?}: expected name<=reference[*factor] or key:value"))?;
        let (reference, factor) = match rhs.split_once('*') {
            Some((r, f)) => (r, f.parse::<f64>().map_err(|_| format!("constraint {s:?}: factor {f:?}"))?),
            None => (rhs, 1.0),
        };
        let limit = match reference.parse::<f64>() {
            Ok(v) => Limit::Absolute(v * factor),
            Err(_) => Limit::Relative(factor),
        };
        let absolute = matches!(limit, Limit::Absolute(_));
        match (lhs, op) {
            ("coverage", ">=") if absolute || reference == "bound" => Ok(Constraint::CoverageAtLeast(limit)),
            ("surprisal" | "surprisal_p95", "<=") if absolute || reference == "guard" => {
                Ok(Constraint::SurprisalAtMost(limit))
            }
            ("latency" | "latency_p95", "<=") if absolute || reference == "slo" => Ok(Constraint::LatencyAtMost(limit)),
            _ => Err(format!(
                "unknown constraint {s:?} (coverage>=bound, surprisal<=guard, latency_p95<=slo, each with an optional *factor)"
            )),
        }
    }

    /// Whether `m` satisfies the constraint (a missing latency satisfies a latency limit).
    pub fn holds(&self, m: &Metrics, r: &References) -> bool {
        match *self {
            Constraint::CoverageAtLeast(l) => m.coverage >= l.of(r.coverage_lower_bound),
            Constraint::SurprisalAtMost(l) => m.surprisal_p95 <= l.of(r.surprisal_guard),
            Constraint::LatencyAtMost(l) => m.latency_p95_ms.is_nan() || m.latency_p95_ms <= l.of(r.latency_slo_ms),
            Constraint::BlockedAtMost(v) => m.block_share <= v,
        }
    }
}

/// ScoreV1 under the constraints: [`SENTINEL`] when any fails.
pub fn score_v1(w: &Weights, constraints: &[Constraint], m: &Metrics, r: &References) -> f64 {
    if constraints.iter().all(|c| c.holds(m, r)) { w.score(m, r) } else { SENTINEL }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: References = References { coverage_lower_bound: 0.85, surprisal_guard: 2.0, latency_slo_ms: 300.0 };

    fn m() -> Metrics {
        Metrics {
            pass_share: 0.7,
            derisk_share: 0.2,
            block_share: 0.1,
            violation_rate: 0.05,
            coverage: 0.9,
            surprisal_p95: 1.5,
            latency_p95_ms: 150.0,
            flap_rate_k: 20.0,
        }
    }

    #[test]
    fn both_weight_syntaxes_parse_to_the_same_weights_and_unknown_keys_are_named() {
        let a = Weights::parse("w_pass=1,w_derisk=0.5,w_block=2,w_viol=3,w_lat=1,w_sur=1,w_flap=0.5,w_cov=4").unwrap();
        let b =
            Weights::parse("pass:1, derisk:0.5, blocked:2, violations:3, latency:1, surprisal:1, flap:0.5, coverage:4")
                .unwrap();
        assert_eq!(a, b);
        assert!(Weights::parse("w_pas=1").unwrap_err().contains("\"w_pas\""));
        assert!(Weights::parse("w_pass=x").unwrap_err().contains("not a number"));
    }

    #[test]
    fn score_v1_is_its_formula() {
        let w = Weights::parse("w_pass=1,w_derisk=0.5,w_block=2,w_viol=3,w_lat=1,w_sur=1,w_flap=0.5,w_cov=4").unwrap();
        let want = 0.7 - 0.5 * 0.2 - 2.0 * 0.1 - 3.0 * 0.05 - 150.0 / 300.0 - 1.5 / 2.0 - 0.5 * 2.0 + 4.0 * 0.05;
        assert!((w.score(&m(), &R) - want).abs() < 1e-12);
        let no_latency = Metrics { latency_p95_ms: f64::NAN, ..m() };
        assert!((w.score(&no_latency, &R) - (want + 0.5)).abs() < 1e-12);
    }

    #[test]
    fn every_constraint_form_parses_and_a_failing_one_sinks_the_score() {
        let cs = Constraint::parse_all("coverage>=bound, surprisal<=guard*1.05, latency_p95<=slo*1.15").unwrap();
        assert_eq!(
            cs,
            vec![
                Constraint::CoverageAtLeast(Limit::Relative(1.0)),
                Constraint::SurprisalAtMost(Limit::Relative(1.05)),
                Constraint::LatencyAtMost(Limit::Relative(1.15)),
            ]
        );
        let kv =
            Constraint::parse_all("coverage_min:0.86,latency_p95_max:450,blocked_ratio_max:0.25,surprisal_p95_max:3")
                .unwrap();
        assert_eq!(kv.len(), 4);
        let w = Weights::parse("w_pass=1").unwrap();
        assert_eq!(score_v1(&w, &cs, &m(), &R), 0.7);
        let slow = Metrics { latency_p95_ms: 346.0, ..m() };
        assert_eq!(score_v1(&w, &cs, &slow, &R), SENTINEL, "346 > 300 × 1.15");
        let blocked = Metrics { block_share: 0.3, ..m() };
        assert_eq!(score_v1(&w, &kv, &blocked, &R), SENTINEL);
        let low = Metrics { coverage: 0.84, ..m() };
        assert_eq!(score_v1(&w, &cs, &low, &R), SENTINEL);
        for bad in ["coverage", "width<=slo", "latency_p95<=slo*x", "coverage_minimum:0.8", "coverage_min:x"] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }
}
