//! Replay invariance, checked on every certify run. Every fact is versioned on two clocks, so
//! a surface row for a T0 that the previous certified run already covered must come out the
//! same unless the store's definition changed — or a fact arrived since that claims to have
//! been available by that T0 (a backfill whose declared availability is in the past, which
//! legitimately rewrites what "known at T0" means there).
//!
//! So the check compares, for each store, the previous certified surface of the same
//! definition with the new one over the T0s that (a) the previous grid could reach
//! (`t0 <= its through`) and (b) lie before the earliest `available_at` of any version the
//! previous run did not know (`t0 < horizon`). Which versions are new is exact: the previous
//! run recorded the rows per (table, batch) it saw ([`Knowledge`]); a batch that is new or has
//! grown counts whole.

use std::collections::BTreeMap;
use std::path::Path;

use crate::population::Raw;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, quote_literal};
use t0_core::Result;
use t0_core::error::Context;

/// Rows per batch of each canonical table: what a certify run knew.
pub type Knowledge = BTreeMap<String, BTreeMap<String, u64>>;

/// Rows a store's replay found different, and where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Replay {
    /// The certify run whose surface was compared.
    pub against: String,
    /// The condition on t0 of the rows compared.
    pub window: String,
    pub compared: u64,
    /// Rows present in both with a different value.
    pub changed: u64,
    /// Rows the new surface has and the previous one did not.
    pub appeared: u64,
    /// Rows the previous surface had and the new one lacks.
    pub disappeared: u64,
    /// Changed rows per column.
    pub columns: BTreeMap<String, u64>,
    /// Up to five differing rows: `entity_id @ t0: what`.
    pub sample: Vec<String>,
}

impl Replay {
    pub fn differs(&self) -> bool {
        self.changed + self.appeared + self.disappeared > 0
    }

    /// One line naming what differs.
    pub fn describe(&self) -> String {
        let cols = self.columns.iter().map(|(c, n)| format!("{c} ({n})")).collect::<Vec<_>>().join(", ");
        format!(
            "replay of certify run {} over {} rows ({}): {} changed, {} appeared, {} disappeared{}{}",
            self.against,
            self.compared,
            self.window,
            self.changed,
            self.appeared,
            self.disappeared,
            if cols.is_empty() { String::new() } else { format!("; columns {cols}") },
            if self.sample.is_empty() { String::new() } else { format!("; e.g. {}", self.sample.join("; ")) }
        )
    }
}

/// Rows per (table, batch) of the canonical tables now.
pub fn knowledge(catalog: &Catalog, raw: &Raw) -> Result<Knowledge> {
    let mut out = Knowledge::new();
    for t in t0_project::vocab::CANONICAL {
        let mut stmt = catalog
            .conn()
            .prepare(&format!(
                "SELECT batch_id, count(*) FROM {}.{t} GROUP BY batch_id ORDER BY batch_id",
                raw.qualifier()
            ))
            .ctx(|| format!("batches of {t}"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .ctx(|| format!("batches of {t}"))?
            .collect::<std::result::Result<BTreeMap<_, _>, _>>()
            .ctx(|| format!("batches of {t}"))?;
        out.insert(t.to_string(), rows);
    }
    Ok(out)
}

/// The earliest `available_at` among rows of batches that `before` did not know whole (new
/// batches, or batches that grew); `None` when nothing is new.
pub fn horizon(catalog: &Catalog, raw: &Raw, before: &Knowledge, now: &Knowledge) -> Result<Option<String>> {
    let mut earliest: Option<String> = None;
    for (t, batches) in now {
        let known = before.get(t);
        let new: Vec<String> = batches
            .iter()
            .filter(|(b, n)| known.and_then(|k| k.get(*b)).is_none_or(|old| old < n))
            .map(|(b, _)| quote_literal(b))
            .collect();
        if new.is_empty() {
            continue;
        }
        let at: Option<String> = catalog
            .conn()
            .query_row(
                &format!(
                    "SELECT CAST(min(available_at) AS VARCHAR) FROM {}.{t} WHERE batch_id IN ({})",
                    raw.qualifier(),
                    new.join(", ")
                ),
                [],
                |r| r.get(0),
            )
            .ctx(|| format!("new versions of {t}"))?;
        if let Some(at) = at
            && earliest.as_ref().is_none_or(|e| at < *e)
        {
            earliest = Some(at);
        }
    }
    Ok(earliest)
}

/// The t0 condition of a replay window: covered by the previous grid (`through`) and before
/// the first availability of anything new (`horizon`).
pub fn window(through: &str, horizon: Option<&str>) -> String {
    let mut w = format!("t0 <= TIMESTAMP {}", quote_literal(through));
    if let Some(h) = horizon {
        w.push_str(&format!(" AND t0 < TIMESTAMP {}", quote_literal(h)));
    }
    w
}

/// Compare the surfaces `before` and `after` (Parquet files keyed by (entity_id, t0)) on the
/// rows `window` selects, column by column (NULL equals NULL).
pub fn compare(against: &str, before: &Path, after: &Path, window: &str) -> Result<Replay> {
    let scratch = Catalog::scratch()?;
    let c = scratch.conn();
    let read = |p: &Path| format!("read_parquet({})", quote_literal(&p.display().to_string()));
    c.execute_batch(&format!(
        "CREATE TEMP TABLE p AS SELECT * FROM {} WHERE {window};
         CREATE TEMP TABLE n AS SELECT * FROM {} WHERE {window};",
        read(before),
        read(after)
    ))
    .ctx(|| format!("read surfaces {} and {}", before.display(), after.display()))?;
    let cols = |t: &str| -> Result<Vec<String>> {
        let mut stmt = c.prepare(&format!("SELECT * FROM {t} LIMIT 0")).ctx(|| "surface columns".into())?;
        stmt.execute([]).ctx(|| "surface columns".into())?;
        Ok(stmt.column_names())
    };
    let (pc, nc) = (cols("p")?, cols("n")?);
    let values: Vec<&String> = pc.iter().filter(|c| *c != "entity_id" && *c != "t0" && nc.contains(c)).collect();
    // A column only one side has differs on every row both have.
    let only: Vec<&String> = pc.iter().chain(&nc).filter(|c| !(pc.contains(c) && nc.contains(c))).collect();
    let diff = |c: &str| format!("p.\"{c}\" IS DISTINCT FROM n.\"{c}\"");
    let mut any: Vec<String> = values.iter().map(|c| diff(c)).collect();
    if !only.is_empty() {
        any.push("true".into());
    }
    let any = if any.is_empty() { "false".to_string() } else { any.join(" OR ") };
    let both = "p.entity_id IS NOT NULL AND n.entity_id IS NOT NULL";
    let per_col: String =
        values.iter().map(|col| format!(", count(*) FILTER (WHERE {both} AND {})", diff(col))).collect();
    let sql = format!(
        "SELECT count(*), count(*) FILTER (WHERE {both} AND ({any})), count(*) FILTER (WHERE p.entity_id IS NULL),
                count(*) FILTER (WHERE n.entity_id IS NULL){per_col}
         FROM p FULL OUTER JOIN n ON p.entity_id = n.entity_id AND p.t0 = n.t0"
    );
    let counts: Vec<i64> = c
        .query_row(&sql, [], |r| (0..4 + values.len()).map(|i| r.get::<_, i64>(i)).collect())
        .ctx(|| "compare surfaces".into())?;
    let mut columns: BTreeMap<String, u64> =
        values.iter().zip(&counts[4..]).filter(|(_, n)| **n > 0).map(|(c, n)| (c.to_string(), *n as u64)).collect();
    for c in &only {
        columns.insert(format!("{c} (on one side only)"), counts[1] as u64);
    }
    let changed = counts[1] as u64;
    let mut replay = Replay {
        against: against.to_string(),
        window: window.to_string(),
        compared: (counts[0] - counts[2]) as u64,
        changed,
        appeared: counts[2] as u64,
        disappeared: counts[3] as u64,
        columns,
        sample: Vec::new(),
    };
    if replay.differs() {
        replay.sample = sample(c, &values, &any)?;
    }
    Ok(replay)
}

/// Up to five differing rows, smallest keys first, with the columns that differ.
fn sample(c: &duckdb::Connection, values: &[&String], any: &str) -> Result<Vec<String>> {
    let which = values
        .iter()
        .map(|col| format!("CASE WHEN p.\"{col}\" IS DISTINCT FROM n.\"{col}\" THEN '{col}' END"))
        .collect::<Vec<_>>();
    let what =
        if which.is_empty() { "'changed'".to_string() } else { format!("concat_ws(', ', {})", which.join(", ")) };
    let sql = format!(
        "SELECT coalesce(p.entity_id, n.entity_id) || ' @ ' || CAST(coalesce(p.t0, n.t0) AS VARCHAR) || ': ' ||
                CASE WHEN p.entity_id IS NULL THEN 'appeared' WHEN n.entity_id IS NULL THEN 'disappeared' ELSE {what} END
         FROM p FULL OUTER JOIN n ON p.entity_id = n.entity_id AND p.t0 = n.t0
         WHERE p.entity_id IS NULL OR n.entity_id IS NULL OR ({any})
         ORDER BY coalesce(p.entity_id, n.entity_id), coalesce(p.t0, n.t0) LIMIT 5"
    );
    t0_catalog::column(c, &sql, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(cat: &Catalog, batch: &str, day: u32) {
        cat.conn()
            .execute_batch(&format!(
                "INSERT INTO observations (entity_id, observed_at, available_at, version, batch_id)
                 VALUES ('e', TIMESTAMP '2026-01-{day:02} 00:00:00', TIMESTAMP '2026-01-{day:02} 00:00:00', 1, '{batch}')"
            ))
            .unwrap();
    }

    #[test]
    fn the_window_ends_where_newly_arrived_versions_claim_availability() {
        let cat = Catalog::in_memory().unwrap();
        add(&cat, "b1", 5);
        let raw = Raw::catalog(&cat).unwrap();
        let before = knowledge(&cat, &raw).unwrap();
        assert_eq!(horizon(&cat, &raw, &before, &before).unwrap(), None, "nothing new");
        // A new batch that claims availability on the 20th bounds the window there ...
        add(&cat, "b2", 20);
        assert_eq!(
            horizon(&cat, &raw, &before, &knowledge(&cat, &raw).unwrap()).unwrap().as_deref(),
            Some("2026-01-20 00:00:00")
        );
        // ... a known batch that grew counts whole, from its earliest row (a backfill) ...
        add(&cat, "b1", 9);
        assert_eq!(
            horizon(&cat, &raw, &before, &knowledge(&cat, &raw).unwrap()).unwrap().as_deref(),
            Some("2026-01-05 00:00:00")
        );
        // ... and the window is the previous grid's reach cut at that moment.
        assert_eq!(
            window("2026-01-31 00:00:00", Some("2026-01-05 00:00:00")),
            "t0 <= TIMESTAMP '2026-01-31 00:00:00' AND t0 < TIMESTAMP '2026-01-05 00:00:00'"
        );
    }
}
