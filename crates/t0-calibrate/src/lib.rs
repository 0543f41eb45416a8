//! `calibrate`: joins scored predictions to matured outcomes, measures the empirical coverage
//! of their intervals and decides the acceptance state (PASS / DERISK / BLOCK) that gates the
//! next `score`. Writes a report, a catalog row and Prometheus text-format metrics.
//!
//! Skeleton scope: interval coverage only. Replay metrics, the calibration grid and top-k come
//! with the calibration issue.

use duckdb::params;
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root, Verdict};
use t0_manifest::{Location, StageRun};

pub const STAGE: t0_core::Stage = t0_core::Stage::Calibrate;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// |coverage - nominal| at most this: PASS.
    pub pass_tolerance: f64,
    /// ... at most this: DERISK; beyond: BLOCK.
    pub derisk_tolerance: f64,
    /// Fewer matured predictions than this cannot PASS.
    pub min_matured: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { pass_tolerance: 0.05, derisk_tolerance: 0.15, min_matured: 20 }
    }
}

pub struct CalibrateArgs {
    pub project: t0_project::Project,
    pub thresholds: Thresholds,
    pub max_age_days: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CalibrateReport {
    pub run_id: String,
    pub score_run: String,
    /// The train-suite run whose model made the predictions: the state applies to it alone.
    pub model_run: String,
    /// The label the intervals predict.
    pub label: String,
    pub state: Verdict,
    pub reason: String,
    pub nominal: f64,
    pub coverage: Option<f64>,
    pub matured: u64,
    pub scored: u64,
    pub mean_abs_error: Option<f64>,
    pub thresholds: Thresholds,
    pub report: String,
    pub metrics: String,
}

/// The acceptance state for an observed coverage.
pub fn decide(t: &Thresholds, nominal: f64, coverage: Option<f64>, matured: u64) -> (Verdict, String) {
    let Some(c) = coverage else {
        return (Verdict::Derisk, "no matured outcomes yet".into());
    };
    let gap = (c - nominal).abs();
    if gap > t.derisk_tolerance {
        (Verdict::Block, format!("coverage {c:.3} is {gap:.3} from nominal {nominal} (> {})", t.derisk_tolerance))
    } else if gap > t.pass_tolerance {
        (Verdict::Derisk, format!("coverage {c:.3} is {gap:.3} from nominal {nominal} (> {})", t.pass_tolerance))
    } else if matured < t.min_matured {
        (Verdict::Derisk, format!("only {matured} matured predictions (< {})", t.min_matured))
    } else {
        (Verdict::Pass, format!("coverage {c:.3} within {} of nominal {nominal}", t.pass_tolerance))
    }
}

/// The Prometheus text export. Labels stay low-cardinality (the label's name, the state):
/// run ids live in the report, never in a series name.
fn prom(report: &CalibrateReport) -> String {
    let label = report.label.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{label=\"{label}\"}} {value}\n"));
    };
    gauge(
        "t0clip_interval_coverage",
        "Empirical coverage of prediction intervals on matured outcomes.",
        report.coverage.unwrap_or(f64::NAN),
    );
    gauge("t0clip_interval_nominal", "Nominal coverage of the prediction intervals.", report.nominal);
    gauge("t0clip_matured_predictions", "Predictions whose outcome has matured.", report.matured as f64);
    s.push_str("# HELP t0clip_acceptance_state 1 for the current acceptance state, 0 for the others.\n");
    s.push_str("# TYPE t0clip_acceptance_state gauge\n");
    for st in [Verdict::Pass, Verdict::Derisk, Verdict::Block] {
        s.push_str(&format!("t0clip_acceptance_state{{state=\"{st}\"}} {}\n", u8::from(report.state == st)));
    }
    s
}

pub fn run(root: &Root, clock: Clock, args: &CalibrateArgs, progress: &dyn Progress) -> Result<CalibrateReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, t0_core::config::value_hash(&args.thresholds));
    let score = t0_manifest::load(root, &catalog, t0_score::STAGE, None)?;
    // Predictions must come from a run trained on a certified surface.
    let train_ref = score
        .manifest
        .upstream
        .iter()
        .find(|u| u.stage == t0_model::STAGE)
        .ok_or_else(|| Error::Refused(format!("score run {} names no train-suite run", score.manifest.run_id)))?;
    let train = t0_manifest::load(root, &catalog, t0_model::STAGE, Some(&train_ref.run_id))?;
    if train.manifest_hash != train_ref.manifest_hash {
        return Err(Error::Refused(format!(
            "train-suite manifest {} differs from the one score used",
            train.path.display()
        )));
    }
    let certified = train.manifest.upstream.iter().filter(|u| u.stage == t0_certify::STAGE).any(|u| {
        t0_manifest::load(root, &catalog, t0_certify::STAGE, Some(&u.run_id))
            .is_ok_and(|c| c.manifest_hash == u.manifest_hash && c.manifest.gate == Some(Verdict::Certified))
    });
    if !certified {
        return Err(Error::Refused(format!(
            "predictions of score run {} do not come from a certified run",
            score.manifest.run_id
        )));
    }
    // The drift file is consumed (verified) too: a tampered one is exit 3 here.
    let preds = run.consume(&score, &["predictions", "drift"])?;
    let model_out = run.consume(&train, &["run.model"])?;
    let model = t0_model::read_model(root, &model_out[0])?;
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    let labels = t0_certify::labels::labels_for(root, &catalog, &cert)?;
    let labels = run.consume(&labels, &["labels"])?;
    let run_id = run.run_id("");
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["acceptance"])?;
    let lit = |o: &t0_manifest::Output| Ok::<_, Error>(t0_catalog::quote_literal(&o.path(root)?.display().to_string()));

    let nominal = model.nominal;
    let y = format!("l.\"{}\"", model.target);

    progress.phase("join outcomes", None);
    let (scored, matured, coverage, mae): (i64, i64, Option<f64>, Option<f64>) = catalog
        .conn()
        .query_row(
            &format!(
                "SELECT count(*), count({y}),
                        avg(CASE WHEN {y} IS NULL THEN NULL
                                 WHEN CAST({y} AS DOUBLE) BETWEEN p.lower AND p.upper THEN 1.0 ELSE 0.0 END),
                        avg(abs(CAST({y} AS DOUBLE) - p.prediction))
                 FROM read_parquet({}) p
                 LEFT JOIN read_parquet({}) l ON l.entity_id = p.entity_id AND l.t0 = p.t0
                 WHERE p.label = {} AND p.selected",
                lit(&preds[0])?,
                lit(&labels[0])?,
                t0_catalog::quote_literal(&model.target)
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ctx(|| "join predictions to outcomes".into())?;
    progress.finish();
    let (state, reason) = decide(&args.thresholds, nominal, coverage, matured as u64);
    let report_rel = format!("calib/{run_id}/report.json");
    let metrics_rel = "metrics/calibrate.prom".to_string();
    let report = CalibrateReport {
        run_id: run_id.clone(),
        score_run: score.manifest.run_id.clone(),
        model_run: train.manifest.run_id.clone(),
        label: model.target.clone(),
        state,
        reason,
        nominal,
        coverage,
        matured: matured as u64,
        scored: scored as u64,
        mean_abs_error: mae,
        thresholds: args.thresholds.clone(),
        report: report_rel.clone(),
        metrics: metrics_rel.clone(),
    };
    t0_core::fsio::write_atomic(&root.join(&report_rel), &t0_model::json_bytes(&report)?)?;
    // The metrics file is the latest export for a textfile collector: replaced every run.
    t0_core::fsio::write_atomic(&root.join(&metrics_rel), prom(&report).as_bytes())?;
    catalog
        .conn()
        .execute(
            "INSERT INTO acceptance VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![run_id, state.as_str(), coverage, nominal, matured, clock.stamp().trim_end_matches('Z')],
        )
        .ctx(|| "record acceptance".into())?;
    let outputs = vec![
        t0_manifest::record_output(root, &catalog, "calib.report", Location::File { path: report_rel })?,
        t0_manifest::record_output(
            root,
            &catalog,
            "calib.acceptance",
            Location::Table { table: "acceptance".into(), key: vec!["run_id".into()], run_id: Some(run_id.clone()) },
        )?,
    ];
    run.finish(&run_id, Some(state), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_states_follow_the_coverage_gap() {
        let t = Thresholds::default();
        assert_eq!(decide(&t, 0.9, Some(0.91), 100).0, Verdict::Pass);
        assert_eq!(decide(&t, 0.9, Some(0.80), 100).0, Verdict::Derisk);
        assert_eq!(decide(&t, 0.9, Some(0.60), 100).0, Verdict::Block);
        assert_eq!(decide(&t, 0.9, Some(0.90), 5).0, Verdict::Derisk);
        assert_eq!(decide(&t, 0.9, None, 0).0, Verdict::Derisk);
    }
}
