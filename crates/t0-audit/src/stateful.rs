//! Checks that compare the data with what earlier audit runs stored: metric anomalies against
//! the metric history, and distribution drift against a baseline.

use duckdb::{OptionalExt, params};
use t0_catalog::Catalog;
use t0_core::Result;
use t0_core::error::Context;

use crate::checks::source;
use crate::contract::{Check, Kind};

/// What a stateful check found and what it leaves for later runs.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One entry per violation, readable on its own.
    pub failing: Vec<String>,
    /// Why the check could not judge yet (no history, baseline just taken).
    pub skipped: Option<String>,
    /// (metric, value) to append to the history.
    pub metrics: Vec<(String, f64)>,
    /// (column, baseline JSON, rows) to store.
    pub baseline: Option<(String, String, i64)>,
}

/// Thresholds of an anomaly check.
pub struct Limits {
    pub max_abs_change: Option<f64>,
    pub max_rel_change: Option<f64>,
    pub max_z: Option<f64>,
    pub window: usize,
}

/// The last `window` values of a metric, newest first.
/// Only finished runs count: a run killed after its commit but before its manifest left rows
/// its re-run replaces, and must not read as history (issue 30's crash test).
pub fn history(catalog: &Catalog, table: &str, metric: &str, window: usize) -> Result<Vec<f64>> {
    let mut stmt = catalog
        .conn()
        .prepare(
            "SELECT value FROM audit_metrics WHERE table_name = ? AND metric = ? AND value IS NOT NULL
               AND run_id IN (SELECT run_id FROM manifests WHERE stage = 'audit')
             ORDER BY recorded_at DESC, rowid DESC LIMIT ?",
        )
        .ctx(|| "read metric history".into())?;
    let rows = stmt
        .query_map(params![table, metric, window as i64], |r| r.get::<_, f64>(0))
        .ctx(|| "read metric history".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "read metric history".into())
}

/// Judge `value` against `past` (newest first): absolute and relative change from the last
/// run, and the z-score over the window.
pub fn judge(metric: &str, value: f64, past: &[f64], l: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    let Some(&prev) = past.first() else { return out };
    let delta = value - prev;
    if let Some(m) = l.max_abs_change
        && delta.abs() > m
    {
        out.push(format!("{metric} {value} vs previous {prev}: change {delta:+} exceeds {m}"));
    }
    if let Some(m) = l.max_rel_change {
        let rel = if prev == 0.0 { if value == 0.0 { 0.0 } else { f64::INFINITY } } else { delta / prev.abs() };
        if rel.abs() > m {
            out.push(format!(
                "{metric} {value} vs previous {prev}: relative change {:+.1}% exceeds {:.1}%",
                rel * 100.0,
                m * 100.0
            ));
        }
    }
    if let Some(m) = l.max_z
        && past.len() >= 3
    {
        let n = past.len() as f64;
        let mean = past.iter().sum::<f64>() / n;
        let sd = (past.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let z = if sd > 0.0 {
            (value - mean) / sd
        } else if value == mean {
            0.0
        } else {
            f64::INFINITY
        };
        if z.abs() > m {
            out.push(format!("{metric} {value}: z-score {z:.2} over the last {} runs exceeds {m}", past.len()));
        }
    }
    out
}

fn scalar(catalog: &Catalog, sql: &str) -> Result<Option<f64>> {
    catalog.conn().query_row(sql, [], |r| r.get::<_, Option<f64>>(0)).ctx(|| format!("evaluate {sql}"))
}

/// Percentile points of the baseline: 0%, 1%, ..., 100%.
const POINTS: usize = 101;

#[derive(serde::Serialize, serde::Deserialize)]
struct Baseline {
    /// The column's value at each percentile point.
    q: Vec<f64>,
    /// The baseline's own CDF at each of those values (exact, ties included).
    cdf: Vec<f64>,
}

/// Fraction of non-null values of `column` at or below each of `points`.
fn cdf_at(catalog: &Catalog, from: &str, column: &str, points: &[f64]) -> Result<Vec<f64>> {
    let cols: Vec<String> = points
        .iter()
        .map(|p| {
            format!("avg(CASE WHEN t.{column} <= {p:?} THEN 1.0 ELSE 0.0 END) FILTER (WHERE t.{column} IS NOT NULL)")
        })
        .collect();
    let sql = format!("SELECT {} FROM {from} t", cols.join(", "));
    catalog
        .conn()
        .query_row(&sql, [], |r| {
            (0..points.len()).map(|i| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(0.0))).collect()
        })
        .ctx(|| format!("CDF of {column}"))
}

/// PSI over the baseline's deciles and KS at its percentiles, from the two CDFs.
pub fn psi_ks(base_cdf: &[f64], cur_cdf: &[f64]) -> (f64, f64) {
    let ks = base_cdf.iter().zip(cur_cdf).map(|(b, c)| (b - c).abs()).fold(0.0, f64::max);
    let edges: Vec<usize> = (1..10).map(|d| d * 10).collect();
    let bins = |cdf: &[f64]| {
        let mut out = Vec::with_capacity(10);
        let mut prev = 0.0;
        for &e in &edges {
            out.push(cdf[e] - prev);
            prev = cdf[e];
        }
        out.push(1.0 - prev);
        out
    };
    const EPS: f64 = 1e-4;
    let psi = bins(base_cdf)
        .iter()
        .zip(bins(cur_cdf))
        .map(|(b, c)| {
            let (b, c) = (b.max(EPS), c.max(EPS));
            (c - b) * (c / b).ln()
        })
        .sum();
    (psi, ks)
}

pub fn evaluate(catalog: &Catalog, table: &str, check: &Check, rebaseline: bool) -> Result<Outcome> {
    let from = source(table, check.all_versions);
    let mut out = Outcome::default();
    match &check.kind {
        Kind::RowCount { max_abs_change, max_rel_change, max_z, window }
        | Kind::Metric { max_abs_change, max_rel_change, max_z, window, .. } => {
            let (metric, expr) = match &check.kind {
                Kind::Metric { metric, expr, .. } => (metric.as_str(), expr.as_str()),
                _ => ("row_count", "count(*)"),
            };
            let limits = Limits {
                max_abs_change: *max_abs_change,
                max_rel_change: *max_rel_change,
                max_z: *max_z,
                window: *window,
            };
            let sql = format!("SELECT CAST(({expr}) AS DOUBLE) FROM {from} t");
            anomaly(catalog, table, metric, &sql, &limits, &mut out)?;
        }
        Kind::Drift { column, max_psi, max_ks } => {
            let stored: Option<String> = catalog
                .conn()
                .query_row(
                    "SELECT quantiles FROM audit_baselines WHERE table_name = ? AND column_name = ?
                       AND run_id IN (SELECT run_id FROM manifests WHERE stage = 'audit')
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    params![table, column],
                    |r| r.get(0),
                )
                .optional()
                .ctx(|| "read drift baseline".into())?;
            let base = match stored.filter(|_| !rebaseline) {
                Some(json) => serde_json::from_str::<Baseline>(&json).ok(),
                None => None,
            };
            let Some(base) = base else {
                let fractions: Vec<String> = (0..POINTS).map(|i| format!("{:.2}", i as f64 / 100.0)).collect();
                let q: Option<Vec<f64>> = catalog
                    .conn()
                    .query_row(
                        &format!(
                            "SELECT CAST(quantile_disc(t.{column}, [{}]) AS DOUBLE[]) FROM {from} t",
                            fractions.join(", ")
                        ),
                        [],
                        |r| {
                            let v: duckdb::types::Value = r.get(0)?;
                            Ok(match v {
                                duckdb::types::Value::List(items) => Some(
                                    items
                                        .into_iter()
                                        .filter_map(|x| {
                                            if let duckdb::types::Value::Double(d) = x { Some(d) } else { None }
                                        })
                                        .collect(),
                                ),
                                _ => None,
                            })
                        },
                    )
                    .ctx(|| format!("baseline quantiles of {column}"))?;
                let Some(q) = q.filter(|q| q.len() == POINTS) else {
                    out.skipped = Some(format!("no values of {column} to take a baseline from"));
                    return Ok(out);
                };
                let cdf = cdf_at(catalog, &from, column, &q)?;
                let rows = scalar(catalog, &format!("SELECT CAST(count(t.{column}) AS DOUBLE) FROM {from} t"))?
                    .unwrap_or(0.0) as i64;
                out.baseline =
                    Some((column.clone(), serde_json::to_string(&Baseline { q, cdf }).expect("numbers"), rows));
                out.skipped = Some(format!("baseline of {column} taken now; drift is measured from the next run"));
                return Ok(out);
            };
            let cur = cdf_at(catalog, &from, column, &base.q)?;
            let (psi, ks) = psi_ks(&base.cdf, &cur);
            out.metrics.push((format!("psi({column})"), psi));
            out.metrics.push((format!("ks({column})"), ks));
            if let Some(m) = max_psi
                && psi > *m
            {
                out.failing.push(format!("PSI of {column} {psi:.4} exceeds {m}"));
            }
            if let Some(m) = max_ks
                && ks > *m
            {
                out.failing.push(format!("KS of {column} {ks:.4} exceeds {m}"));
            }
        }
        _ => unreachable!("only stateful kinds reach evaluate"),
    }
    Ok(out)
}

fn anomaly(catalog: &Catalog, table: &str, metric: &str, sql: &str, limits: &Limits, out: &mut Outcome) -> Result<()> {
    let value = scalar(catalog, sql)?.unwrap_or(f64::NAN);
    let past = history(catalog, table, metric, limits.window.max(1))?;
    if past.is_empty() {
        out.skipped = Some(format!("no history of {metric} yet; recorded {value}"));
    }
    out.failing = judge(metric, value, &past, limits);
    out.metrics.push((metric.to_string(), value));
    Ok(())
}

pub fn is_stateful(kind: &Kind) -> bool {
    matches!(kind, Kind::RowCount { .. } | Kind::Metric { .. } | Kind::Drift { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(abs: Option<f64>, rel: Option<f64>, z: Option<f64>) -> Limits {
        Limits { max_abs_change: abs, max_rel_change: rel, max_z: z, window: 10 }
    }

    #[test]
    fn anomalies_by_absolute_relative_and_z() {
        assert!(judge("n", 100.0, &[], &limits(Some(0.0), Some(0.0), Some(0.0))).is_empty());
        assert_eq!(judge("n", 120.0, &[100.0], &limits(Some(10.0), None, None)).len(), 1);
        assert!(judge("n", 105.0, &[100.0], &limits(Some(10.0), Some(0.1), None)).is_empty());
        assert_eq!(judge("n", 150.0, &[100.0], &limits(None, Some(0.1), None)).len(), 1);
        let past = [100.0, 101.0, 99.0, 100.0, 102.0];
        assert!(judge("n", 101.0, &past, &limits(None, None, Some(3.0))).is_empty());
        assert_eq!(judge("n", 130.0, &past, &limits(None, None, Some(3.0))).len(), 1);
    }

    #[test]
    fn psi_and_ks_are_zero_for_equal_distributions_and_grow_with_a_shift() {
        let base: Vec<f64> = (0..POINTS).map(|i| i as f64 / 100.0).collect();
        assert_eq!(psi_ks(&base, &base), (0.0, 0.0));
        let shifted: Vec<f64> = base.iter().map(|c| (c - 0.3).max(0.0)).collect();
        let (psi, ks) = psi_ks(&base, &shifted);
        assert!((ks - 0.3).abs() < 1e-9, "{ks}");
        assert!(psi > 0.5, "{psi}");
    }
}
