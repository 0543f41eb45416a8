//! `score explain ENTITY`: one entity's prediction, interval and reasons, read back from a
//! recorded score run's predictions (verified against the run's manifest first).

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

/// An entity's prediction at one T0.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EntityExplanation {
    pub score_run: String,
    pub model_run: String,
    pub label: String,
    pub acceptance: Verdict,
    pub entity_id: String,
    pub t0: String,
    pub prediction: f64,
    pub lower: f64,
    pub upper: f64,
    pub nominal: f64,
    /// The scale the base value and contributions add up on.
    pub scale: String,
    pub base_value: f64,
    /// By decreasing |contribution|, as many as the run recorded (`--top-k`).
    pub reasons: Vec<Reason>,
}

/// Explain `entity` at `t0` (default: its latest scored T0) from score run `run` (default:
/// the latest).
pub fn explain(
    root: &Root,
    run: Option<&str>,
    entity: &str,
    t0: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<EntityExplanation> {
    let catalog = Catalog::open_read_only(root)?;
    let score = t0_manifest::load(root, &catalog, Stage::Score, run)?;
    let out = score.manifest.output("predictions")?;
    t0_manifest::verify_output(root, &catalog, &score.manifest, out)?;
    let report: crate::ScoreReport = serde_json::from_value(score.manifest.summary.clone())
        .map_err(|e| Error::Refused(format!("score run {}: not a score report: {e}", score.manifest.run_id)))?;
    let file = t0_catalog::quote_literal(&out.path(root)?.display().to_string());
    let conn = catalog.conn();
    let names: Vec<String> = {
        let mut s = conn.prepare(&format!("DESCRIBE SELECT * FROM read_parquet({file})")).ctx(|| "describe".into())?;
        let rows = s.query_map([], |r| r.get(0)).ctx(|| "describe".into())?;
        rows.collect::<std::result::Result<_, _>>().ctx(|| "describe".into())?
    };
    let k = (1..).take_while(|r| names.contains(&format!("reason{r}_feature"))).count();
    let reasons: String =
        (1..=k).map(|r| format!(", reason{r}_feature, reason{r}_value, reason{r}_contribution")).collect();
    let at = t0.map_or("(SELECT max(t0) FROM p)".to_string(), |t| format!("make_timestamp({})", t.timestamp_micros()));
    let sql = format!(
        "WITH p AS (SELECT * FROM read_parquet({file}) WHERE entity_id = ?)
         SELECT strftime(t0, '%Y-%m-%dT%H:%M:%SZ'), prediction, lower, upper, explanation_scale, base_value{reasons}
         FROM p WHERE t0 = {at}"
    );
    let mut stmt = conn.prepare(&sql).ctx(|| "prepare entity lookup".into())?;
    let mut rows = stmt.query([entity]).ctx(|| "entity lookup".into())?;
    let Some(r) = rows.next().ctx(|| "entity lookup".into())? else {
        let when = t0.map_or(String::new(), |t| format!(" at T0 {}", t0_core::clock::format_utc(t)));
        return Err(Error::Usage(format!(
            "entity {entity:?} has no prediction{when} in score run {} ({} rows, {})",
            score.manifest.run_id, report.rows, report.selected
        )));
    };
    let get = |i: usize| r.get::<_, f64>(i).ctx(|| format!("column {i}"));
    let reasons = (0..k)
        .map(|j| {
            let c = 6 + 3 * j;
            Ok(Reason {
                feature: r.get(c).ctx(|| "reason feature".into())?,
                value: r.get(c + 1).ctx(|| "reason value".into())?,
                contribution: get(c + 2)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EntityExplanation {
        score_run: score.manifest.run_id.clone(),
        model_run: report.model_run.clone(),
        label: report.label.clone(),
        acceptance: report.acceptance,
        entity_id: entity.to_string(),
        t0: r.get(0).ctx(|| "t0".into())?,
        prediction: get(1)?,
        lower: get(2)?,
        upper: get(3)?,
        nominal: report.nominal,
        scale: r.get(4).ctx(|| "scale".into())?,
        base_value: get(5)?,
        reasons,
    })
}

/// The explanation in plain words, for a terminal.
pub fn plain(e: &EntityExplanation) -> String {
    let mut s = format!(
        "{} at {}: {} is predicted {:.4} ({:.0}% interval {:.4} to {:.4}); model {} (score run {}, acceptance {}).\n",
        e.entity_id,
        e.t0,
        e.label,
        e.prediction,
        100.0 * e.nominal,
        e.lower,
        e.upper,
        e.model_run,
        e.score_run,
        e.acceptance
    );
    s.push_str(&format!(
        "On the {} scale the model starts from {:.4}, its output with no feature known, and\n",
        e.scale, e.base_value
    ));
    for r in &e.reasons {
        let value = r.value.map_or("missing".to_string(), |v| format!("{v:.4}"));
        let way = if r.contribution >= 0.0 { "raises" } else { "lowers" };
        s.push_str(&format!("  {} = {value} {way} it by {:.4}\n", r.feature, r.contribution.abs()));
    }
    let named: f64 = e.reasons.iter().map(|r| r.contribution).sum();
    let rest = e.prediction_on_scale() - e.base_value - named;
    s.push_str(&format!("  the other features together: {rest:+.4}\n"));
    s
}

impl EntityExplanation {
    /// The output on the explanation's scale: the prediction itself for values; for
    /// probabilities and times the model's margin, which the reasons add up to.
    fn prediction_on_scale(&self) -> f64 {
        match self.scale.as_str() {
            "log-odds" => (self.prediction / (1.0 - self.prediction)).ln(),
            _ => self.prediction,
        }
    }
}
