//! Which rows a rule may change: the rows the audit finding it answers flagged (audit records
//! every failing row key in `audit_failing`), or, for a rule that works along a partition
//! (`key`: dedupe, state machine, monotonic), every current row of the partitions holding a
//! flagged row, so its windows see whole partitions. A check whose failing items are not rows
//! (custom SQL, uniqueness groups) leaves its rules the whole table.
//!
//! Why: a heal run plans against a working table of current rows; restricted to the flagged
//! rows and partitions it is a fraction of the table, and rules do not scan rows nobody flagged.
//! A rule therefore repairs what audit found, not whatever else its plan would match; what it
//! leaves (and any defect an earlier rule's patch creates elsewhere) the next audit finds.

use std::collections::BTreeMap;

use duckdb::Connection;
use t0_catalog::quote_literal;
use t0_core::Result;
use t0_core::error::Context;

use crate::rules::{Fix, Rule, current_with_rowid, key_text};

/// The flagged current rows of `table`'s running rules, with the check that flagged each
/// (`__check`, `__row_key`), materialised once per table.
fn flagged_table(table: &str) -> String {
    format!("heal_flagged_{table}")
}

/// The partition columns of a rule that works along a partition.
fn partition(rule: &Rule) -> Option<&[String]> {
    match &rule.fix {
        Fix::Dedupe { key, .. } | Fix::StateMachine { key, .. } | Fix::Monotonic { key, .. } => Some(key),
        Fix::Quarantine { .. } | Fix::MapValues { .. } | Fix::Clamp { .. } => None,
    }
}

fn flagged_count(c: &Connection, rule: &Rule, audit_run: &str) -> Result<i64> {
    c.query_row(
        "SELECT count(*) FROM audit_failing WHERE run_id = ? AND table_name = ? AND check_name = ?",
        duckdb::params![audit_run, rule.table, rule.answers],
        |r| r.get(0),
    )
    .ctx(|| format!("flagged rows of {}", rule.answers))
}

/// What one rule may change: a condition over rows aliased `t`, and its description for the
/// report.
#[derive(Debug, Clone)]
pub struct Scope {
    pub within: String,
    pub described: String,
}

/// A table's working rows: its name and each running rule's scope within it, by rule index.
#[derive(Debug, Clone)]
pub struct Working {
    pub name: String,
    pub scopes: BTreeMap<usize, Scope>,
}

fn of_rule(c: &Connection, rule: &Rule, audit_run: &str) -> Result<Scope> {
    let n = flagged_count(c, rule, audit_run)?;
    if n == 0 {
        let described = format!("every current row ({} names no rows)", rule.answers);
        return Ok(Scope { within: "true".into(), described });
    }
    let flagged = flagged_table(&rule.table);
    let check = quote_literal(&rule.answers);
    Ok(match partition(rule) {
        None => Scope {
            within: format!("{} IN (SELECT __row_key FROM {flagged} WHERE __check = {check})", key_text(&rule.table)),
            described: format!("{n} flagged rows"),
        },
        Some(key) => {
            let on = key.iter().map(|k| format!("s.{k} = t.{k}")).collect::<Vec<_>>().join(" AND ");
            let parts: i64 = c
                .query_row(
                    &format!(
                        "SELECT count(*) FROM (SELECT DISTINCT {} FROM {flagged} WHERE __check = {check})",
                        key.join(", ")
                    ),
                    [],
                    |r| r.get(0),
                )
                .ctx(|| format!("partitions flagged by {}", rule.answers))?;
            Scope {
                within: format!("EXISTS (SELECT 1 FROM {flagged} s WHERE s.__check = {check} AND {on})"),
                described: format!("{parts} partitions by {} holding {n} flagged rows", key.join(", ")),
            }
        }
    })
}

/// The working table of `table` (current live rows with `__rid`) restricted to what any of the
/// running `rules` (index, rule) on it may change, with each one's scope.
pub fn create_working(c: &Connection, table: &str, audit_run: &str, rules: &[(usize, &Rule)]) -> Result<Working> {
    let rules: Vec<(usize, &Rule)> = rules.iter().copied().filter(|(_, r)| r.table == table).collect();
    let checks = rules.iter().map(|(_, r)| quote_literal(&r.answers)).collect::<Vec<_>>().join(", ");
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {flagged} AS
         SELECT f.check_name AS __check, f.row_key AS __row_key, t.* FROM {current} t
         JOIN (SELECT check_name, row_key FROM audit_failing
               WHERE run_id = {run} AND table_name = {tab} AND check_name IN ({checks})) f ON f.row_key = {key}",
        flagged = flagged_table(table),
        current = current_with_rowid(table),
        run = quote_literal(audit_run),
        tab = quote_literal(table),
        checks = if checks.is_empty() { "NULL".into() } else { checks },
        key = key_text(table),
    ))
    .ctx(|| format!("flagged rows of {table}"))?;
    let mut scopes = BTreeMap::new();
    for (i, r) in &rules {
        scopes.insert(*i, of_rule(c, r, audit_run)?);
    }
    let within = if scopes.is_empty() {
        "false".into()
    } else {
        scopes.values().map(|s| s.within.as_str()).collect::<Vec<_>>().join(" OR ")
    };
    let name = format!("heal_current_{table}");
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {} t WHERE {within}",
        current_with_rowid(table)
    ))
    .ctx(|| format!("current rows of {table}"))?;
    Ok(Working { name, scopes })
}
