//! `score explain ENTITY`: one entity's predictions (every label, or one), with intervals,
//! decisions, time bounds and reasons, read back from a recorded score run's predictions
//! (verified against the run's manifest first).

use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Error, Result, Root, Stage, Verdict};

/// One named contribution.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub feature: String,
    /// The feature's value as the model saw it; none when missing.
    pub value: Option<f64>,
    pub contribution: f64,
}

/// What one label's served model says about the entity.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelPrediction {
    pub label: String,
    /// `value`, `binary` or `time_to_event`.
    pub kind: String,
    pub model: String,
    /// A value on the label's scale, a calibrated probability, or a median time in hours.
    pub prediction: f64,
    /// Value labels: the nominal interval.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Binary labels: the decision and its threshold.
    pub decision: Option<bool>,
    pub threshold: Option<f64>,
    /// Time-to-event labels: the 10% and 90% time quantiles and the conformal lower bound at
    /// the nominal level (hours).
    pub q10: Option<f64>,
    pub q90: Option<f64>,
    pub lower_bound: Option<f64>,
    /// The scale the base value and contributions add up on, and the output there.
    pub scale: String,
    pub output: f64,
    pub base_value: f64,
    /// By decreasing |contribution|, as many as the run recorded (`--top-k`).
    pub reasons: Vec<Reason>,
}

/// An entity's predictions at one T0, one per label scored there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EntityExplanation {
    pub score_run: String,
    pub model_run: String,
    pub acceptance: Verdict,
    pub entity_id: String,
    pub t0: String,
    pub nominal: f64,
    pub predictions: Vec<LabelPrediction>,
}

/// The predictions file's column names.
fn columns(conn: &t0_catalog::duckdb::Connection, file: &str) -> Result<Vec<String>> {
    let mut s = conn.prepare(&format!("DESCRIBE SELECT * FROM read_parquet({file})")).ctx(|| "describe".into())?;
    let rows = s.query_map([], |r| r.get(0)).ctx(|| "describe".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "describe".into())
}

/// Explain `entity` at `t0` (default: its latest scored T0) from score run `run` (default:
/// the latest), every label or only `label`.
pub fn explain(
    root: &Root,
    run: Option<&str>,
    entity: &str,
    t0: Option<chrono::DateTime<chrono::Utc>>,
    label: Option<&str>,
) -> Result<EntityExplanation> {
    let catalog = Catalog::open_read_only(root)?;
    let score = t0_manifest::load(root, &catalog, Stage::Score, run)?;
    let out = score.manifest.output("predictions")?;
    t0_manifest::verify_output(root, &catalog, &score.manifest, out)?;
    let report: crate::ScoreReport = serde_json::from_value(score.manifest.summary.clone())
        .map_err(|e| Error::Refused(format!("score run {}: not a score report: {e}", score.manifest.run_id)))?;
    let file = t0_catalog::quote_literal(&out.path(root)?.display().to_string());
    let conn = catalog.conn();
    let names = columns(conn, &file)?;
    let k = (1..).take_while(|r| names.contains(&format!("reason{r}_feature"))).count();
    // Each label's selected model (`--models all` adds others, for comparison).
    let selected = if names.iter().any(|n| n == "selected") { " AND selected" } else { "" };
    let or_null = |c: &str| {
        if names.iter().any(|n| n == c) {
            c.to_string()
        } else {
            format!("NULL::{}", if c == "decision" { "BOOLEAN" } else { "DOUBLE" })
        }
    };
    let optional: Vec<String> =
        ["lower", "upper", "decision", "threshold", "q10", "q90", "lower_bound"].iter().map(|c| or_null(c)).collect();
    let reasons: String =
        (1..=k).map(|r| format!(", reason{r}_feature, reason{r}_value, reason{r}_contribution")).collect();
    let at = t0.map_or("(SELECT max(t0) FROM p)".to_string(), |t| format!("make_timestamp({})", t.timestamp_micros()));
    let sql = format!(
        "WITH p AS (SELECT * FROM read_parquet({file}) WHERE entity_id = ? AND (? IS NULL OR label = ?){selected})
         SELECT strftime(t0, '%Y-%m-%dT%H:%M:%SZ'), label, label_kind, model, prediction, {},
                explanation_scale, explanation_output, base_value{reasons}
         FROM p WHERE t0 = {at} ORDER BY label",
        optional.join(", ")
    );
    let mut stmt = conn.prepare(&sql).ctx(|| "prepare entity lookup".into())?;
    let mut rows = stmt.query(t0_catalog::duckdb::params![entity, label, label]).ctx(|| "entity lookup".into())?;
    let (mut when, mut predictions) = (None, Vec::new());
    while let Some(r) = rows.next().ctx(|| "entity lookup".into())? {
        when = Some(r.get::<_, String>(0).ctx(|| "t0".into())?);
        predictions.push(label_prediction(r, k)?);
    }
    let Some(when) = when else {
        let at = t0.map_or(String::new(), |t| format!(" at T0 {}", t0_core::clock::format_utc(t)));
        let of = label.map_or(String::new(), |l| format!(" of label {l:?}"));
        return Err(Error::Usage(format!(
            "entity {entity:?} has no prediction{of}{at} in score run {} ({} rows, {})",
            score.manifest.run_id, report.rows, report.selected
        )));
    };
    Ok(EntityExplanation {
        score_run: score.manifest.run_id.clone(),
        model_run: report.model_run.clone(),
        acceptance: report.acceptance,
        entity_id: entity.to_string(),
        t0: when,
        nominal: report.nominal,
        predictions,
    })
}

/// One row of the lookup: columns as `explain` selects them.
fn label_prediction(r: &t0_catalog::duckdb::Row, k: usize) -> Result<LabelPrediction> {
    let f = |i: usize| r.get::<_, Option<f64>>(i).ctx(|| format!("column {i}"));
    let text = |i: usize| r.get::<_, String>(i).ctx(|| format!("column {i}"));
    let reasons = (0..k)
        .map(|j| {
            let c = 15 + 3 * j;
            Ok(Reason { feature: text(c)?, value: f(c + 1)?, contribution: f(c + 2)?.unwrap_or(f64::NAN) })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LabelPrediction {
        label: text(1)?,
        kind: text(2)?,
        model: text(3)?,
        prediction: f(4)?.unwrap_or(f64::NAN),
        lower: f(5)?,
        upper: f(6)?,
        decision: r.get(7).ctx(|| "decision".into())?,
        threshold: f(8)?,
        q10: f(9)?,
        q90: f(10)?,
        lower_bound: f(11)?,
        scale: text(12)?,
        output: f(13)?.unwrap_or(f64::NAN),
        base_value: f(14)?.unwrap_or(f64::NAN),
        reasons: reasons.into_iter().filter(|r| !r.contribution.is_nan()).collect(),
    })
}

/// The explanation in plain words, for a terminal.
pub fn plain(e: &EntityExplanation) -> String {
    let mut s = format!(
        "{} at {}: model run {} (score run {}, acceptance {}).\n",
        e.entity_id, e.t0, e.model_run, e.score_run, e.acceptance
    );
    for p in &e.predictions {
        s.push_str(&headline(p, e.nominal));
        s.push_str(&format!(
            "  On the {} scale the model starts from {:.4}, its output with no feature known, and reaches {:.4}:\n",
            p.scale, p.base_value, p.output
        ));
        for r in &p.reasons {
            let value = r.value.map_or("missing".to_string(), |v| format!("{v:.4}"));
            let way = if r.contribution >= 0.0 { "raises" } else { "lowers" };
            s.push_str(&format!("    {} = {value} {way} it by {:.4}\n", r.feature, r.contribution.abs()));
        }
        let named: f64 = p.reasons.iter().map(|r| r.contribution).sum();
        s.push_str(&format!("    the other features together: {:+.4}\n", p.output - p.base_value - named));
    }
    s
}

/// What one label's model says, in one sentence.
fn headline(p: &LabelPrediction, nominal: f64) -> String {
    let pct = 100.0 * nominal;
    let what = match p.kind.as_str() {
        "binary" => format!(
            "probability {:.4}, decided {} at threshold {:.4}",
            p.prediction,
            if p.decision == Some(true) { "positive" } else { "negative" },
            p.threshold.unwrap_or(f64::NAN)
        ),
        "time_to_event" => {
            let bound =
                p.lower_bound.map_or(String::new(), |b| format!("; at least {b:.1} h with {pct:.0}% confidence"));
            let (q10, q90) = (p.q10.unwrap_or(f64::NAN), p.q90.unwrap_or(f64::NAN));
            format!("median time {:.1} h (10%–90%: {q10:.1} to {q90:.1} h){bound}", p.prediction)
        }
        _ => {
            let (lo, hi) = (p.lower.unwrap_or(f64::NAN), p.upper.unwrap_or(f64::NAN));
            format!("predicted {:.4} ({pct:.0}% interval {lo:.4} to {hi:.4})", p.prediction)
        }
    };
    format!("{} ({}): {what}.\n", p.label, p.model)
}
