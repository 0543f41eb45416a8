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
