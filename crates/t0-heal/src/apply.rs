//! Applying a plan: new versions for the planned cells, ledger entries chained by hash, and the
//! inverse (revert) computed from the ledger.

use std::collections::BTreeMap;

use duckdb::{Connection, params};
use t0_catalog::{Catalog, quote_literal};
use t0_core::error::Context;
use t0_core::{Error, Result};

/// The hash that starts the ledger chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns a patch may never set: they describe the version itself.
const VERSION_COLUMNS: [&str; 4] = ["available_at", "version", "batch_id", "observed_at"];

/// One changed cell as the ledger records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Patch {
    pub table: String,
    pub row_key: String,
    pub column: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One changed cell of a plan: the rowid of the version it repairs, and for removals made by
/// a quarantine, the reason.
#[derive(Debug, Clone)]
pub struct PlannedCell {
    pub rid: i64,
    pub row_key: String,
    pub column: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub reason: Option<String>,
}

impl PlannedCell {
    pub fn patch(&self, table: &str) -> Patch {
        Patch {
            table: table.to_string(),
            row_key: self.row_key.clone(),
            column: self.column.clone(),
            old: self.old.clone(),
            new: self.new.clone(),
        }
    }
}

/// What one applied step changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepCount {
    /// Distinct versions repaired (one new version each).
    pub rows: u64,
    pub cells: u64,
    pub tombstones: u64,
    /// Cells with a quarantine reason.
    pub quarantined: u64,
}

/// Cells handed to a step's sink at a time. The cells of a step are never all held: at 10M rows
/// a step plans over a million of them.
const CHUNK: u64 = 50_000;

/// Materialise `plan` (a query yielding `__rid, row_key, column_name, old_value, new_value,
/// reason`), append one new version per planned row, and hand the cells to `sink` in ledger
/// order (row key, then column), a chunk at a time.
#[expect(
    clippy::too_many_arguments,
    reason = "a plan step needs its table, types, plan, time, batch, working set and sink"
)]
pub fn apply_plan(
    c: &Connection,
    table: &str,
    types: &BTreeMap<String, String>,
    plan: &str,
    now: &str,
    batch: &str,
    working: Option<&str>,
    sink: &mut dyn FnMut(&Connection, &[PlannedCell]) -> Result<()>,
) -> Result<StepCount> {
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE heal_step AS
         SELECT *, row_number() OVER (ORDER BY row_key, column_name) AS __n FROM ({plan})"
    ))
    .ctx(|| format!("plan on {table}"))?;
    let count = check_step(c, table)?;
    if count.cells > 0 {
        insert_versions(c, table, types, count.rows, now, batch)?;
        if let Some(w) = working {
            refresh_working(c, table, w, batch)?;
        }
        let (mut from, mut handed) = (0, 0);
        while from < count.cells {
            let cells = read_step(c, from, from + CHUNK)?;
            handed += cells.len() as u64;
            sink(c, &cells)?;
            from += CHUNK;
        }
        if handed != count.cells {
            return Err(Error::internal(
                "apply",
                format!("{table}: planned {} cells, read back {handed}", count.cells),
            ));
        }
    }
    c.execute_batch("DROP TABLE heal_step").ctx(|| "drop plan".into())?;
    Ok(count)
}

/// After a step: the repaired versions replace the rows they repaired in the working table
/// (tombstones just leave it).
fn refresh_working(c: &Connection, table: &str, working: &str, batch: &str) -> Result<()> {
    let spec = t0_project::vocab::spec(table).expect("canonical table");
    c.execute_batch(&format!(
        "DELETE FROM {working} WHERE __rid IN (SELECT __rid FROM heal_step);
         INSERT INTO {working}
         SELECT * FROM (
             SELECT t.rowid AS __rid, t.* FROM {table} t
             WHERE t.batch_id = {batch} AND {key} IN (SELECT row_key FROM heal_step)
             QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY t.version DESC) = 1)
         WHERE NOT deleted;",
        batch = quote_literal(batch),
        key = super::rules::key_text(table),
        keys = spec.key.iter().map(|k| format!("t.{k}")).collect::<Vec<_>>().join(", "),
    ))
    .ctx(|| format!("refresh current rows of {table}"))
}

/// Count the step's cells and refuse a plan that sets a cell twice or a version column
/// (`observed_at` only where it identifies the fact: an entity's mirrors its creation time,
/// which a quarantine may revert).
fn check_step(c: &Connection, table: &str) -> Result<StepCount> {
    let keyed = t0_project::vocab::spec(table).is_none_or(|s| s.key.contains(&"observed_at"));
    let versioned = VERSION_COLUMNS
        .iter()
        .filter(|v| keyed || **v != "observed_at")
        .map(|v| quote_literal(v))
        .collect::<Vec<_>>()
        .join(", ");
    let (count, twice, version_col): (StepCount, Option<String>, Option<String>) = c
        .query_row(
            &format!(
                "SELECT count(*), count(DISTINCT __rid),
                        count(*) FILTER (WHERE column_name = 'deleted' AND new_value = 'true'),
                        count(*) FILTER (WHERE reason IS NOT NULL),
                        (SELECT any_value(row_key || ' ' || column_name) FROM heal_step
                         GROUP BY __rid, column_name HAVING count(*) > 1 LIMIT 1),
                        any_value(column_name) FILTER (WHERE column_name IN ({versioned}))
                 FROM heal_step"
            ),
            [],
            |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
                Ok((
                    StepCount { cells: n(0)?, rows: n(1)?, tombstones: n(2)?, quarantined: n(3)? },
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .ctx(|| "check plan".into())?;
    if let Some(cell) = twice {
        return Err(Error::internal("plan", format!("cell {cell} planned twice")));
    }
    if let Some(col) = version_col {
        return Err(Error::internal("plan", format!("a patch may not set {col}")));
    }
    Ok(count)
}

/// The cells numbered (from, to] in ledger order.
fn read_step(c: &Connection, from: u64, to: u64) -> Result<Vec<PlannedCell>> {
    let mut stmt = c
        .prepare(
            "SELECT __rid, row_key, column_name, old_value, new_value, reason FROM heal_step
             WHERE __n > ? AND __n <= ? ORDER BY __n",
        )
        .ctx(|| "read plan".into())?;
    stmt.query_map(params![from as i64, to as i64], |r| {
        Ok(PlannedCell {
            rid: r.get(0)?,
            row_key: r.get(1)?,
            column: r.get(2)?,
            old: r.get(3)?,
            new: r.get(4)?,
            reason: r.get(5)?,
        })
    })
    .ctx(|| "read plan".into())?
    .collect::<std::result::Result<_, _>>()
    .ctx(|| "read plan".into())
}

/// One new version per planned row: the repaired version's values with the planned cells
/// replaced, `version + 1`, the heal batch, and an availability no earlier than the repaired
/// version's (a repair cannot be known before the fact it repairs).
fn insert_versions(
    c: &Connection,
    table: &str,
    types: &BTreeMap<String, String>,
    rows: u64,
    now: &str,
    batch: &str,
) -> Result<()> {
    let columns: Vec<String> = {
        let mut stmt =
            c.prepare("SELECT DISTINCT column_name FROM heal_step ORDER BY 1").ctx(|| "read plan columns".into())?;
        stmt.query_map([], |r| r.get(0))
            .ctx(|| "read plan columns".into())?
            .collect::<std::result::Result<_, _>>()
            .ctx(|| "read plan columns".into())?
    };
    let mut pivot = Vec::new();
    let mut replace = Vec::new();
    for (i, col) in columns.iter().enumerate() {
        let ty = types.get(col).ok_or_else(|| Error::internal("plan", format!("{table} has no column {col}")))?;
        let q = quote_literal(col);
        pivot.push(format!(
            "bool_or(column_name = {q}) AS __has_{i}, max(new_value) FILTER (WHERE column_name = {q}) AS __new_{i}"
        ));
        replace.push(format!("CASE WHEN p.__has_{i} THEN CAST(p.__new_{i} AS {ty}) ELSE t.{col} END AS {col}"));
    }
    let sql = format!(
        "INSERT INTO {table} BY NAME
         SELECT t.* REPLACE ({}, greatest(t.available_at, TIMESTAMP {now}) AS available_at,
                             t.version + 1 AS version, {} AS batch_id)
         FROM {table} t JOIN (SELECT __rid, {} FROM heal_step GROUP BY __rid) p ON t.rowid = p.__rid",
        replace.join(", "),
        quote_literal(batch),
        pivot.join(", "),
        now = quote_literal(now),
    );
    let n = c.execute(&sql, []).ctx(|| format!("append repaired versions to {table}"))?;
    if n as u64 != rows {
        return Err(Error::internal("apply", format!("{table}: planned {rows} rows, appended {n}")));
    }
    Ok(())
}

/// The hash of one ledger entry: covers every field and the previous entry's hash.
#[expect(clippy::too_many_arguments, reason = "every field of a ledger entry is hashed")]
pub fn entry_hash(
    seq: i64,
    run_id: &str,
    p: &Patch,
    rule_id: &str,
    rule_hash: &str,
    finding: &str,
    patched_at: &str,
    prev: &str,
) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        &seq.to_string(),
        run_id,
        &p.table,
        &p.row_key,
        &p.column,
        p.old.as_deref().unwrap_or("\u{0}NULL"),
        p.new.as_deref().unwrap_or("\u{0}NULL"),
        rule_id,
        rule_hash,
        finding,
        patched_at,
        prev,
    ] {
        h.update(part.as_bytes());
        h.update(&[0x1f]);
    }
    h.finalize().to_hex().to_string()
}

pub struct LedgerEntry {
    pub patch: Patch,
    /// `<rule id>@<version>`, or `revert:<run>`.
    pub rule_id: String,
    pub rule_hash: String,
    /// `<audit run>:<check>`, or `revert:<run>`.
    pub finding: String,
}

/// Append entries after the ledger's head, each chained to the one before.
pub fn append_ledger(
    c: &Connection,
    run_id: &str,
    patched_at: &str,
    entries: impl Iterator<Item = LedgerEntry>,
) -> Result<u64> {
    let (mut seq, mut prev): (i64, String) = c
        .query_row(
            "SELECT coalesce(max(seq), 0), coalesce(arg_max(entry_hash, seq), ?) FROM heal_ledger",
            params![GENESIS],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx(|| "ledger head".into())?;
    let ts = patched_at.trim_end_matches('Z');
    let mut app = c.appender("heal_ledger").ctx(|| "ledger appender".into())?;
    let mut n = 0;
    for e in entries {
        seq += 1;
        let h = entry_hash(seq, run_id, &e.patch, &e.rule_id, &e.rule_hash, &e.finding, patched_at, &prev);
        let p = &e.patch;
        app.append_row(params![
            seq,
            run_id,
            p.table,
            p.row_key,
            p.column,
            p.old,
            p.new,
            e.rule_id,
            e.rule_hash,
            e.finding,
            ts,
            prev,
            h
        ])
        .ctx(|| "append ledger entry".into())?;
        prev = h;
        n += 1;
    }
    app.flush().ctx(|| "append ledger entries".into())?;
    Ok(n)
}

/// Record the rows a quarantine removed or reverted, and those a state machine removed, with
/// their reasons (one reasoned cell per row).
pub fn record_quarantine(
    c: &Connection,
    run_id: &str,
    table: &str,
    rule_id: &str,
    cells: &[PlannedCell],
    now: &str,
) -> Result<()> {
    let mut app = c.appender("heal_quarantine").ctx(|| "quarantine appender".into())?;
    for p in cells.iter().filter(|p| p.reason.is_some()) {
        if let Some(reason) = &p.reason {
            app.append_row(params![run_id, table, p.row_key, rule_id, reason, now, None::<String>])
                .ctx(|| "append quarantine row".into())?;
        }
    }
    app.flush().ctx(|| "append quarantine rows".into())
}

/// Plan and apply the inverse of `target`'s changes on `table`: every cell it changed goes
/// back to its pre-image. Cells already holding the pre-image are skipped; a cell holding
/// neither the pre-image nor what `target` wrote was changed since, and refuses the revert.
pub fn revert_table(
    c: &Connection,
    table: &str,
    types: &BTreeMap<String, String>,
    target: &str,
    now: &str,
    batch: &str,
) -> Result<Vec<PlannedCell>> {
    let spec = t0_project::vocab::spec(table).expect("canonical table");
    let current = format!(
        "(SELECT rowid AS __rid, * FROM {table} QUALIFY row_number() OVER (PARTITION BY {} ORDER BY version DESC) = 1)",
        spec.key.join(", ")
    );
    let changed: Vec<String> = {
        let mut stmt = c
            .prepare("SELECT DISTINCT column_name FROM heal_ledger WHERE run_id = ? AND table_name = ? ORDER BY 1")
            .ctx(|| "read ledger".into())?;
        stmt.query_map(params![target, table], |r| r.get(0))
            .ctx(|| "read ledger".into())?
            .collect::<std::result::Result<_, _>>()
            .ctx(|| "read ledger".into())?
    };
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let key = super::rules::key_text(table);
    // Per changed column: its pre-image (first old value), what the run wrote (last new
    // value) and the current value, by row.
    let joined = changed
        .iter()
        .map(|col| {
            if !types.contains_key(col) {
                return Err(Error::internal("revert", format!("the ledger names {table}.{col}, which does not exist")));
            }
            Ok(format!(
                "SELECT t.__rid, l.row_key, l.column_name, CAST(t.{col} AS VARCHAR) AS cur, l.pre, l.post
                 FROM (SELECT row_key, column_name, first(old_value ORDER BY seq) AS pre, last(new_value ORDER BY seq) AS post
                       FROM heal_ledger WHERE run_id = {run} AND table_name = {tbl} AND column_name = {c}
                       GROUP BY row_key, column_name) l
                 LEFT JOIN {current} t ON {key} = l.row_key",
                run = quote_literal(target),
                tbl = quote_literal(table),
                c = quote_literal(col),
            ))
        })
        .collect::<Result<Vec<_>>>()?
        .join(" UNION ALL ");
    let conflicts: Vec<(String, String)> = {
        let mut stmt = c
            .prepare(&format!(
                "SELECT row_key, column_name FROM ({joined})
                 WHERE __rid IS NULL OR (cur IS DISTINCT FROM pre AND cur IS DISTINCT FROM post)
                 ORDER BY row_key, column_name LIMIT 5"
            ))
            .ctx(|| "check revert".into())?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx(|| "check revert".into())?
            .collect::<std::result::Result<_, _>>()
            .ctx(|| "check revert".into())?
    };
    if !conflicts.is_empty() {
        let cells = conflicts.iter().map(|(k, col)| format!("{table} {k} {col}")).collect::<Vec<_>>().join(", ");
        return Err(Error::Refused(format!(
            "cells heal run {target} changed were changed again since (e.g. {cells}): revert the later run first"
        )));
    }
    let plan = format!(
        "SELECT __rid, row_key, column_name, cur AS old_value, pre AS new_value, CAST(NULL AS VARCHAR) AS reason
         FROM ({joined}) WHERE cur IS DISTINCT FROM pre"
    );
    let mut cells = Vec::new();
    apply_plan(c, table, types, &plan, now, batch, None, &mut |_, chunk| {
        cells.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(cells)
}

/// Where a run's entries sit in the ledger: recorded in its manifest (`summary.ledger`), so a
/// deleted tail, a deleted run or a re-hashed chain cannot pass as intact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerAnchor {
    pub first_seq: i64,
    pub last_seq: i64,
    pub entries: i64,
    /// entry_hash of the run's last entry.
    pub head: String,
}

/// The anchor of `run_id`'s entries as the ledger holds them now (`None`: it holds none).
pub fn anchor(c: &Connection, run_id: &str) -> Result<Option<LedgerAnchor>> {
    let row: (Option<i64>, Option<i64>, i64, Option<String>) = c
        .query_row(
            "SELECT min(seq), max(seq), count(*), arg_max(entry_hash, seq) FROM heal_ledger WHERE run_id = ?",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ctx(|| "ledger anchor".into())?;
    Ok(match row {
        (Some(first_seq), Some(last_seq), entries, Some(head)) => {
            Some(LedgerAnchor { first_seq, last_seq, entries, head })
        }
        _ => None,
    })
}

/// Recompute the ledger's hash chain from the first entry; report the first broken one.
pub struct ChainCheck {
    pub entries: u64,
    pub first_broken: Option<i64>,
    pub reason: Option<String>,
}

pub fn verify_chain(catalog: &Catalog) -> Result<ChainCheck> {
    let mut stmt = catalog
        .conn()
        .prepare(
            "SELECT seq, run_id, table_name, row_key, column_name, old_value, new_value, rule_id, rule_hash, finding,
                    strftime(patched_at, '%Y-%m-%dT%H:%M:%S.%fZ'), prev_hash, entry_hash
             FROM heal_ledger ORDER BY seq",
        )
        .ctx(|| "read ledger".into())?;
    let mut rows = stmt.query([]).ctx(|| "read ledger".into())?;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    let broken = |n, seq, reason: &str| ChainCheck { entries: n, first_broken: Some(seq), reason: Some(reason.into()) };
    while let Some(r) = rows.next().ctx(|| "read ledger".into())? {
        n += 1;
        let get = |i: usize| -> Result<String> { r.get::<_, String>(i).ctx(|| "ledger field".into()) };
        let seq: i64 = r.get(0).ctx(|| "seq".into())?;
        if seq != n as i64 {
            return Ok(broken(n, seq, "sequence numbers are not contiguous (an entry was removed or inserted)"));
        }
        let p = Patch {
            table: get(2)?,
            row_key: get(3)?,
            column: get(4)?,
            old: r.get(5).ctx(|| "old".into())?,
            new: r.get(6).ctx(|| "new".into())?,
        };
        let (stored_prev, stored) = (get(11)?, get(12)?);
        if stored_prev != prev {
            return Ok(broken(n, seq, "prev_hash does not link to the entry before"));
        }
        let h = entry_hash(seq, &get(1)?, &p, &get(7)?, &get(8)?, &get(9)?, &get(10)?, &prev);
        if h != stored {
            return Ok(broken(n, seq, "entry_hash does not match the entry's fields"));
        }
        prev = stored;
    }
    Ok(ChainCheck { entries: n, first_broken: None, reason: None })
}
