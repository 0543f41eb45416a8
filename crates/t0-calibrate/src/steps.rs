//! The replay's steps: a label's matured, selected predictions of a score run joined to their
//! outcomes, in T0 order (ties by entity), after the last step an earlier replay of the same
//! model saw.

use t0_acceptance::replay::Observation;
use t0_catalog::{Catalog, quote_literal};
use t0_core::Result;
use t0_core::error::Context;

/// One step, keyed so that the next replay can continue after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub t0: i64,
    pub entity_id: String,
    pub obs: Observation,
}

/// Where the last replay stopped: (T0 in µs, entity).
pub type Key = (i64, String);

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Does the parquet file have `column`?
fn has_column(catalog: &Catalog, file: &str, column: &str) -> Result<bool> {
    let sql = format!("SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet({file})) WHERE column_name = ?");
    let n: i64 = catalog.conn().query_row(&sql, [column], |r| r.get(0)).ctx(|| format!("describe {file}"))?;
    Ok(n > 0)
}

/// The matured steps of `label` after `after`, each with the amortised `latency_ms` its
/// score run recorded (NaN: none). `preds` and `labels` are quoted file literals.
pub fn matured(
    catalog: &Catalog,
    preds: &str,
    labels: &str,
    label: &str,
    after: Option<&Key>,
    latency_ms: f64,
) -> Result<Vec<Step>> {
    // Predictions written before interval scales were recorded: split intervals (scale 1).
    let scale = if has_column(catalog, preds, "interval_scale")? { "p.interval_scale" } else { "1.0" };
    let after = match after {
        None => "TRUE".to_string(),
        Some((t0, e)) => {
            format!("(epoch_us(p.t0) > {t0} OR (epoch_us(p.t0) = {t0} AND p.entity_id > {}))", quote_literal(e))
        }
    };
    let y = format!("l.{}", ident(label));
    let sql = format!(
        "SELECT epoch_us(p.t0), p.entity_id, CAST({y} AS DOUBLE) - p.prediction, CAST({scale} AS DOUBLE)
         FROM read_parquet({preds}) p
         JOIN read_parquet({labels}) l ON l.entity_id = p.entity_id AND l.t0 = p.t0
         WHERE p.label = ? AND p.selected AND {y} IS NOT NULL AND p.prediction IS NOT NULL AND {after}
         ORDER BY p.t0, p.entity_id"
    );
    let what = || format!("read the matured predictions of label {label}");
    let mut stmt = catalog.conn().prepare(&sql).ctx(what)?;
    let rows = stmt
        .query_map([label], |r| {
            let scale: Option<f64> = r.get(3)?;
            Ok(Step {
                t0: r.get(0)?,
                entity_id: r.get(1)?,
                obs: Observation { residual: r.get(2)?, scale: scale.unwrap_or(1.0), latency_ms },
            })
        })
        .ctx(what)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(what)
}

/// One replayed step as `calib/<run>/steps.parquet` keeps it: what the report's coverage,
/// α and width over T0 are drawn from.
pub struct Traced<'a> {
    pub label: &'a str,
    pub step: &'a Step,
    pub record: &'a t0_acceptance::replay::StepRecord,
}

/// The guards breached (soft or hard) at a step, comma-separated; None when none was.
pub(crate) fn breached(r: &t0_acceptance::replay::StepRecord) -> Option<String> {
    use t0_acceptance::fsm::Severity;
    let b: Vec<String> = r
        .judged
        .each()
        .iter()
        .filter(|(_, s)| *s >= Severity::Soft)
        .map(|(t, s)| format!("{t} {}", if *s == Severity::Hard { "hard" } else { "soft" }))
        .collect();
    (!b.is_empty()).then(|| b.join(", "))
}

/// Write every replayed step, in label order then T0 order: (label, t0, entity, residual,
/// the interval's half-width and α as issued before the outcome, miss, the coverage EMA after
/// it, the state, the transition and the guards breached).
pub fn write_trace(path: &std::path::Path, rows: &[Traced]) -> Result<()> {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let f64s =
        |f: &dyn Fn(&Traced) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) };
    let strs =
        |f: &dyn Fn(&Traced) -> Option<String>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<StringArray>()) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("t0", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("residual", DataType::Float64, false),
        Field::new("halfwidth", DataType::Float64, false),
        Field::new("alpha", DataType::Float64, false),
        Field::new("miss", DataType::Boolean, false),
        Field::new("coverage_ema", DataType::Float64, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("transition", DataType::Utf8, true),
        Field::new("breached", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.label))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.step.t0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.step.entity_id.as_str()))),
        f64s(&|r| r.step.obs.residual),
        f64s(&|r| r.record.halfwidth),
        f64s(&|r| r.record.alpha),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.record.miss).collect::<Vec<_>>())),
        f64s(&|r| r.record.coverage_ema),
        strs(&|r| Some(r.record.state.as_str().to_string())),
        strs(&|r| r.record.transition.map(|(a, b)| format!("{a}→{b}"))),
        strs(&|r| breached(r.record)),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), cols).ctx(|| "step trace batch".into())?;
    t0_table::write_parquet(path, schema, &[batch])
}
