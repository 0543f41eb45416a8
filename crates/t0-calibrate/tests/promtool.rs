//! The metrics export and the alert rules checked by Prometheus's own `promtool` (installed by
//! scripts/install-promtool.sh; `T0CLIP_PROMTOOL` names it): `check metrics` on an export with
//! every family populated, `check rules` and `test rules` on configs/alerts.yaml, whose test
//! file fires and silences each alert. Histogram buckets are checked here too: promtool
//! passes malformed ones silently.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use t0_acceptance::replay::{self, Calibration, Carry, Observation};
use t0_acceptance::{Profile, State};
use t0_calibrate::{CalibrateReport, LabelReplay};
use t0_core::rng::SplitMix;

fn promtool() -> PathBuf {
    let cached = dirs_home().join(".cache/t0-clip/promtool/x/usr/bin/promtool");
    let found = std::env::var_os("T0CLIP_PROMTOOL").map(PathBuf::from).or_else(|| cached.exists().then_some(cached));
    let p = found.unwrap_or_else(|| PathBuf::from("promtool"));
    let ok = Command::new(&p).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "promtool not found ({}): run `bash scripts/install-promtool.sh`", p.display());
    p
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn replayed(label: &str, seed: u64, drift: bool) -> LabelReplay {
    let p = Profile::default();
    let mut rng = SplitMix::new(seed);
    let cal = Calibration::new((0..300).map(|_| rng.normal().abs()).collect(), 0.9);
    let mut obs: Vec<Observation> = Vec::new();
    for i in 0..600 {
        let sd = if drift && (200..350).contains(&i) { 5.0 } else { 1.0 };
        obs.push(Observation { residual: sd * rng.normal(), scale: 1.0, latency_ms: 40.0 + f64::from(i % 7) });
    }
    let mut carry = Carry::new(&p, State::Pass);
    let (_, summary) = replay::replay(&p, &cal, &mut carry, &obs);
    LabelReplay {
        label: label.into(),
        interval_method: "split".into(),
        new_steps: obs.len() as u64,
        last_t0_us: Some(0),
        last_t0: None,
        last_entity: Some("e".into()),
        state: carry.fsm.state,
        why: String::new(),
        summary,
        carry,
    }
}

fn report() -> CalibrateReport {
    CalibrateReport {
        run_id: "r".into(),
        score_run: "s".into(),
        model_run: "m".into(),
        label: "y \"quoted\"".into(),
        state: t0_core::Verdict::Derisk,
        reason: String::new(),
        nominal: 0.9,
        coverage: None,
        matured: 600,
        scored: 700,
        mean_abs_error: None,
        profile: "default".into(),
        profile_hash: "h".into(),
        continued_from: None,
        labels: vec![replayed("y \"quoted\"", 1, true), replayed("z", 2, false)],
        skipped: Vec::new(),
        ci_gate: Default::default(),
        ci_gap: None,
        grid: None,
        report: String::new(),
        steps: String::new(),
        coverage_target: None,
        metrics: String::new(),
    }
}

#[test]
fn the_metrics_export_passes_promtool_check_metrics_and_its_histograms_are_cumulative() {
    let text = t0_calibrate::export::prom(&report(), "default", 0.1, 0.05);
    for family in ["decisions_total", "transitions_total", "violations_total", "blocks_total", "kappa_plus_bucket"] {
        assert!(text.contains(&format!("t0clip_{family}{{")), "{family} missing:\n{text}");
    }
    assert!(text.contains(r#"label="y \"quoted\"""#), "label values are escaped");
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every histogram series: buckets non-decreasing in `le` order and +Inf equal to _count.
    let mut buckets: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        if let Some((name, rest)) = series.split_once("_bucket{") {
            let key = format!("{name}{{{}", rest.split(",le=").next().unwrap());
            buckets.entry(key).or_default().push(value);
        } else if let Some((name, rest)) = series.split_once("_count{") {
            counts.insert(format!("{name}{{{}", rest.trim_end_matches('}')), value);
        }
    }
    assert!(buckets.len() >= 10, "{buckets:?}");
    for (k, b) in &buckets {
        assert!(b.windows(2).all(|w| w[0] <= w[1]), "{k}: {b:?}");
        assert_eq!(Some(b.last().unwrap()), counts.get(k), "{k}");
    }
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let p = promtool();
    let dir = configs();
    let check =
        Command::new(&p).args(["check", "rules", "--lint-fatal", "alerts.yaml"]).current_dir(&dir).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let test = Command::new(&p).args(["test", "rules", "alerts.test.yaml"]).current_dir(&dir).output().unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // The test file exercises every alert the rules define.
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(names.len(), 6);
    for n in names {
        assert!(tests.contains(&format!("alertname: {n}")), "{n} has no test");
    }
}
