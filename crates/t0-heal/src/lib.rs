//! `heal`: deterministic repairs of what audit found, recorded cell by cell in an append-only,
//! hash-chained ledger. Repairs append new versions with `available_at = patched_at`, so an
//! as-of replay before the repair still sees the original data.
//!
//! Skeleton scope: one rule (monotonic counter repair, carry the running maximum forward) and
//! `verify-ledger`. YAML rules, dedupe, clamps, state machine, revert and quarantine come with
//! the heal issue.

use duckdb::params;
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub const STAGE: &str = "heal";

pub const RULE_ID: &str = "monotonic_counter.carry_max";
pub const RULE_VERSION: u32 = 1;
const COUNTERS: [&str; 3] = ["views", "likes", "comments"];

/// The hash that starts the ledger chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn rule_hash() -> String {
    t0_core::blake3_hex(format!("{RULE_ID}@{RULE_VERSION}:max(counter) over preceding snapshots").as_bytes())
}

/// One ledger entry, before hashing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Patch {
    pub table: String,
    pub row_key: String,
    pub column: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// The hash of one ledger entry: covers every field and the previous entry's hash.
#[allow(clippy::too_many_arguments)]
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

#[derive(Debug, serde::Serialize)]
pub struct HealReport {
    pub run_id: String,
    pub dry_run: bool,
    pub rows_repaired: u64,
    pub cells_patched: u64,
    pub patches: Vec<Patch>,
}

pub struct HealArgs {
    pub dry_run: bool,
}

/// Observations whose counters fall below the running maximum of earlier snapshots, with the
/// repaired values.
const REPAIR_SQL: &str = "
WITH cur AS (
    SELECT * FROM observations
    QUALIFY row_number() OVER (PARTITION BY entity_id, observed_at ORDER BY version DESC) = 1
), fixed AS (
    SELECT *,
        greatest(views, max(views) OVER w) AS views_fix,
        greatest(likes, max(likes) OVER w) AS likes_fix,
        greatest(comments, max(comments) OVER w) AS comments_fix
    FROM cur
    WINDOW w AS (PARTITION BY entity_id ORDER BY observed_at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT entity_id, CAST(observed_at AS VARCHAR), version, views, views_fix, likes, likes_fix, comments, comments_fix
FROM fixed
WHERE views_fix IS DISTINCT FROM views OR likes_fix IS DISTINCT FROM likes OR comments_fix IS DISTINCT FROM comments
ORDER BY entity_id, observed_at";

type Row = (String, String, i32, [Option<i64>; 3], [Option<i64>; 3]);

pub fn run(root: &Root, clock: Clock, args: &HealArgs, progress: &dyn Progress) -> Result<HealReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, rule_hash());
    let audit = t0_manifest::load(root, &catalog, "audit", None)?;
    run.consume(&audit, &["audit.findings"])?;
    // The audit must have seen the data as it is now: stale findings are not repaired.
    for input in audit.manifest.inputs.iter().filter(|i| i.name.starts_with("canonical.")) {
        t0_manifest::verify_output(root, &catalog, &audit.manifest, input).map_err(|e| {
            Error::Refused(format!(
                "the canonical data changed after audit run {}: audit again ({e})",
                audit.manifest.run_id
            ))
        })?;
    }
    let finding_open: i64 = catalog
        .conn()
        .query_row(
            "SELECT count(*) FROM audit_findings WHERE run_id = ? AND check_name = 'monotonic_counter' AND failing > 0",
            params![audit.manifest.run_id],
            |r| r.get(0),
        )
        .ctx(|| "read findings".into())?;
    let finding = format!("{}:monotonic_counter", audit.manifest.run_id);
    let run_id = run.run_id("");

    progress.phase("plan repairs", None);
    let rows: Vec<Row> = if finding_open > 0 {
        let mut stmt = catalog.conn().prepare(REPAIR_SQL).ctx(|| "plan repairs".into())?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, [r.get(3)?, r.get(5)?, r.get(7)?], [r.get(4)?, r.get(6)?, r.get(8)?]))
        })
        .ctx(|| "plan repairs".into())?
        .collect::<std::result::Result<_, _>>()
        .ctx(|| "plan repairs".into())?
    } else {
        Vec::new()
    };
    let mut patches = Vec::new();
    for (entity, observed, _, old, new) in &rows {
        for (i, col) in COUNTERS.iter().enumerate() {
            if old[i] != new[i] {
                patches.push(Patch {
                    table: "observations".into(),
                    row_key: format!("{entity}@{observed}"),
                    column: col.to_string(),
                    old: old[i].map(|v| v.to_string()),
                    new: new[i].map(|v| v.to_string()),
                });
            }
        }
    }
    progress.finish();
    let mut report = HealReport {
        run_id: run_id.clone(),
        dry_run: args.dry_run,
        rows_repaired: rows.len() as u64,
        cells_patched: patches.len() as u64,
        patches,
    };
    if args.dry_run {
        return Ok(report);
    }
    if rows.is_empty() {
        return Err(Error::NothingToDo("no open finding that a heal rule answers; nothing to repair".into()));
    }
    run.ensure_new(&run_id)?;

    let patched_at = clock.stamp();
    let patched_ts = patched_at.trim_end_matches('Z').to_string();
    let rh = rule_hash();
    progress.phase("apply", Some(rows.len() as u64));
    // All patches of a run and their ledger entries commit in one transaction.
    catalog.transaction(|c| {
        let (mut seq, mut prev): (i64, String) = c
            .query_row(
                "SELECT coalesce(max(seq), 0), coalesce(arg_max(entry_hash, seq), ?) FROM heal_ledger",
                params![GENESIS],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ctx(|| "ledger head".into())?;
        for (entity, observed, version, _, new) in &rows {
            // The new version copies every other column of the version it repairs.
            c.execute(
                "INSERT INTO observations (entity_id, observed_at, available_at, views, likes, comments, price, status, version, batch_id)
                 SELECT entity_id, observed_at, CAST(? AS TIMESTAMP), ?, ?, ?, price, status, version + 1, ?
                 FROM observations WHERE entity_id = ? AND observed_at = CAST(? AS TIMESTAMP) AND version = ?",
                params![patched_ts, new[0], new[1], new[2], format!("heal-{run_id}"), entity, observed, version],
            )
            .ctx(|| format!("patch observation {entity}@{observed}"))?;
        }
        for p in &report.patches {
            seq += 1;
            let h = entry_hash(seq, &run_id, p, RULE_ID, &rh, &finding, &patched_at, &prev);
            c.execute(
                "INSERT INTO heal_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?, ?)",
                params![
                    seq, run_id, p.table, p.row_key, p.column, p.old, p.new, RULE_ID, rh, finding, patched_ts, prev, h
                ],
            )
            .ctx(|| "append ledger entry".into())?;
            prev = h;
        }
        Ok(())
    })?;
    progress.advance(rows.len() as u64);
    progress.finish();

    let mut outputs = t0_acquire::canonical_outputs(root, &catalog)?;
    outputs.push(t0_manifest::record_output(
        root,
        &catalog,
        "heal.ledger",
        Location::Table { table: "heal_ledger".into(), key: vec!["seq".into()], run_id: Some(run_id.clone()) },
    )?);
    // The manifest keeps counts; the full diff lives in the ledger.
    let summary = serde_json::json!({
        "run_id": run_id, "rows_repaired": report.rows_repaired, "cells_patched": report.cells_patched,
        "rule": RULE_ID, "rule_hash": rh, "patched_at": patched_at,
    });
    run.finish(&run_id, None, outputs, summary)?;
    report.patches.truncate(50);
    Ok(report)
}

#[derive(Debug, serde::Serialize)]
pub struct LedgerCheck {
    pub entries: u64,
    /// The first entry whose stored hash or chain link does not verify.
    pub first_broken: Option<i64>,
    pub reason: Option<String>,
}

/// Recompute the ledger's hash chain from the first entry.
pub fn verify_ledger(root: &Root) -> Result<LedgerCheck> {
    let catalog = Catalog::open(root)?;
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
    while let Some(r) = rows.next().ctx(|| "read ledger".into())? {
        n += 1;
        let get = |i: usize| -> Result<String> { r.get::<_, String>(i).ctx(|| "ledger field".into()) };
        let seq: i64 = r.get(0).ctx(|| "seq".into())?;
        let p = Patch {
            table: get(2)?,
            row_key: get(3)?,
            column: get(4)?,
            old: r.get(5).ctx(|| "old".into())?,
            new: r.get(6).ctx(|| "new".into())?,
        };
        let (stored_prev, stored) = (get(11)?, get(12)?);
        if stored_prev != prev {
            return Ok(LedgerCheck {
                entries: n,
                first_broken: Some(seq),
                reason: Some("prev_hash does not link to the entry before".into()),
            });
        }
        let h = entry_hash(seq, &get(1)?, &p, &get(7)?, &get(8)?, &get(9)?, &get(10)?, &prev);
        if h != stored {
            return Ok(LedgerCheck {
                entries: n,
                first_broken: Some(seq),
                reason: Some("entry_hash does not match the entry's fields".into()),
            });
        }
        prev = stored;
    }
    Ok(LedgerCheck { entries: n, first_broken: None, reason: None })
}
