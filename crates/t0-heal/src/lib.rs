//! `heal`: deterministic repairs of what audit found, under declared rules, recorded cell by
//! cell in an append-only, hash-chained ledger.
//!
//! Invariants:
//! - Repairs never overwrite: each appends a new version of the fact with
//!   `available_at = max(patched_at, the repaired version's available_at)`, so an as-of replay
//!   before the repair sees the original data. A removed fact is a tombstone version.
//! - All patches of a run, their ledger entries and quarantine rows commit in one transaction.
//! - Every ledger entry carries the hash of the one before; `verify_ledger` recomputes the chain.
//! - A rule runs only while the audit it answers reports its finding failing, and only on data
//!   that audit saw; a second heal on healed (and re-audited) data makes zero patches.

pub mod apply;
pub mod scope;

use std::collections::BTreeMap;
use std::path::PathBuf;

use duckdb::{OptionalExt, params};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub use apply::{GENESIS, Patch, entry_hash};
use rules::{PlanContext, RuleSet};
/// Heal rules are project declarations: parsed, and compiled to plans, in `t0-project` (no
/// catalog, fuzzed).
pub use t0_project::rules;

pub const STAGE: t0_core::Stage = t0_core::Stage::Heal;

/// The batch id of the versions a revert run appends (and of a heal run's on roots healed
/// before `heal_batches` was recorded).
pub fn batch_id(run_id: &str) -> String {
    format!("heal-{run_id}")
}

/// The batch id of the versions a heal run appends, named after what it repairs: its rules and
/// the canonical tables its audit passed judgement on — a bucket's, the whole population's as
/// its audit's commit joined them. A bucket's repairs so carry the batch one root's would, and
/// the healed tables are the same whatever the bucket count (issue 31).
fn repair_batch(root: &Root, rules_hash: &str, audit: &t0_manifest::Loaded) -> Result<String> {
    let m = &audit.manifest;
    let mut population: Vec<(String, String)> = if root.bucket().is_whole() {
        m.inputs
            .iter()
            .filter(|i| i.name.starts_with("canonical."))
            .map(|i| (i.name.clone(), i.content_hash.clone()))
            .collect()
    } else {
        t0_bucket::committed(root, t0_core::Stage::Audit, &m.run_id)?
            .outputs
            .into_iter()
            .filter(|o| o.name.starts_with("canonical."))
            .map(|o| (o.name, o.content_hash.unwrap_or_default()))
            .collect()
    };
    population.sort();
    let mut text = rules_hash.to_string();
    for (name, hash) in population {
        text.push_str(&format!("|{name}={hash}"));
    }
    Ok(format!("heal-{}", &t0_core::blake3_hex(text.as_bytes())[..16]))
}

/// Record which batch run `run_id`'s versions carry (so a crashed run's are found again).
fn record_batch(c: &duckdb::Connection, run_id: &str, batch: &str) -> Result<()> {
    c.execute("INSERT INTO heal_batches VALUES (?, ?)", params![run_id, batch]).ctx(|| "record heal batch".into())?;
    Ok(())
}

/// The batch of run `run_id`'s versions, unless a recorded run's versions carry it too.
fn batch_of_unrecorded(c: &duckdb::Connection, run_id: &str) -> Result<Option<String>> {
    let batch: String = c
        .query_row("SELECT batch_id FROM heal_batches WHERE run_id = ?", params![run_id], |r| r.get(0))
        .optional()
        .ctx(|| "read heal batch".into())?
        .unwrap_or_else(|| batch_id(run_id));
    let shared: i64 = c
        .query_row(
            "SELECT count(*) FROM heal_batches b JOIN manifests m ON m.run_id = b.run_id AND m.stage = 'heal'
             WHERE b.batch_id = ?",
            params![batch],
            |r| r.get(0),
        )
        .ctx(|| "read heal batch".into())?;
    Ok((shared == 0).then_some(batch))
}

pub struct HealArgs {
    pub project: t0_project::Project,
    pub dry_run: bool,
    /// Rules file; the project's when `None`.
    pub rules: Option<PathBuf>,
    /// Patches kept in the report (the ledger has them all).
    pub limit: usize,
}

impl Default for HealArgs {
    fn default() -> Self {
        HealArgs { project: t0_project::Project::builtin(), dry_run: false, rules: None, limit: 50 }
    }
}

/// What one rule did (or would do) in a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuleReport {
    pub id: String,
    pub version: u32,
    pub rule_hash: String,
    pub answers: String,
    /// `<audit run>:<check>` when the audit reports the finding failing; `None` when the rule
    /// did not run.
    pub finding: Option<String>,
    /// Why the rule did not run.
    pub skipped: Option<String>,
    /// The rows the rule could change: those its finding flagged, the partitions holding
    /// them, or every current row when the check names no rows.
    pub scope: Option<String>,
    pub rows: u64,
    pub cells: u64,
    pub tombstones: u64,
}

/// (Deserialized from a manifest summary by `heal show`, which records no patch list.)
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HealReport {
    pub run_id: String,
    pub dry_run: bool,
    pub audit_run: String,
    pub rules_source: String,
    /// The batch id of the versions the run appended (see `repair_batch`).
    pub batch: String,
    pub rows_repaired: u64,
    pub cells_patched: u64,
    pub quarantined: u64,
    pub rules: Vec<RuleReport>,
    /// The first `limit` patches in ledger order.
    pub patches: Vec<Patch>,
    pub patches_truncated: bool,
}

/// The failing count of each check of an audit run, by (table, check name).
fn open_findings(catalog: &Catalog, audit_run: &str) -> Result<BTreeMap<(String, String), i64>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT table_name, check_name, failing FROM audit_findings WHERE run_id = ?")
        .ctx(|| "read findings".into())?;
    let rows = stmt
        .query_map(params![audit_run], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .ctx(|| "read findings".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "read findings".into())
}

/// Remove what a heal or revert that crashed between its commit and its manifest left behind:
/// versions, ledger entries and quarantine rows of runs no manifest records.
fn purge_unrecorded_runs(catalog: &Catalog) -> Result<Vec<String>> {
    let mut stmt = catalog
        .conn()
        .prepare(
            "SELECT DISTINCT run_id FROM heal_ledger
             WHERE run_id NOT IN (SELECT run_id FROM manifests WHERE stage = 'heal') ORDER BY run_id",
        )
        .ctx(|| "find unrecorded heal runs".into())?;
    let runs: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .ctx(|| "find unrecorded heal runs".into())?
        .collect::<std::result::Result<_, _>>()
        .ctx(|| "find unrecorded heal runs".into())?;
    for run in &runs {
        catalog.transaction(|c| {
            if let Some(batch) = batch_of_unrecorded(c, run)? {
                for t in t0_project::vocab::CANONICAL {
                    c.execute(&format!("DELETE FROM {t} WHERE batch_id = ?"), params![batch])
                        .ctx(|| format!("purge {t}"))?;
                }
            }
            c.execute("DELETE FROM heal_batches WHERE run_id = ?", params![run]).ctx(|| "purge batch".into())?;
            c.execute("DELETE FROM heal_ledger WHERE run_id = ?", params![run]).ctx(|| "purge ledger".into())?;
            c.execute("DELETE FROM heal_quarantine WHERE run_id = ?", params![run])
                .ctx(|| "purge quarantine".into())?;
            c.execute("UPDATE heal_quarantine SET released_by = NULL WHERE released_by = ?", params![run])
                .ctx(|| "purge releases".into())?;
            Ok(())
        })?;
    }
    Ok(runs)
}

/// Apply (or, with `dry_run`, plan) the rules that answer the latest audit's failing findings.
///
/// Long because the plan-and-apply loop runs inside one transaction closure that borrows the
/// working tables, the patch sink, the ledger and the report together; cut into functions it
/// would pass those eight borrowed pieces around instead of reading top to bottom.
pub fn run(root: &Root, clock: Clock, args: &HealArgs, progress: &dyn Progress) -> Result<HealReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let ruleset = RuleSet::load(args.rules.as_deref(), &args.project)?;
    ruleset.validate(&catalog)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, ruleset.hash.clone());
    let audit = t0_manifest::load(root, &catalog, t0_core::Stage::Audit, None)?;
    run.consume(&audit, &["audit.findings", "audit.failing"])?;
    let run_id = run.run_id("");
    // The same audit answered with the same rules by the same code: already done.
    if !args.dry_run {
        run.ensure_new(&run_id)?;
    }
    // A heal killed between its commit and its manifest left versions no manifest records:
    // removed first, since they are what would make the audit look stale.
    if !args.dry_run {
        for r in purge_unrecorded_runs(&catalog)? {
            progress.note(&format!("removed the uncommitted leftovers of crashed heal run {r}"));
        }
    }
    check_upstream(root, &catalog, &audit)?;
    let audit_run = audit.manifest.run_id.clone();
    let findings = open_findings(&catalog, &audit_run)?;
    ruleset.check_answers(&audit_run, &findings.keys().cloned().collect())?;

    let patched_at = clock.stamp();
    let now = t0_core::clock::sql_timestamp(clock.now());
    let batch = repair_batch(root, &ruleset.hash, &audit)?;
    let mut reports = Vec::new();
    // The report keeps the first `limit` patches; the ledger takes the rest as they are planned.
    let mut patches: Vec<Patch> = Vec::new();
    let mut quarantined = 0;
    // Per table: the working rows (and each running rule's scope) and the column types.
    let mut working: BTreeMap<String, (scope::Working, BTreeMap<String, String>)> = BTreeMap::new();
    // The rules that will run: their findings fail in the audit.
    let running: Vec<usize> = (0..ruleset.rules.len())
        .filter(|&i| {
            let r = &ruleset.rules[i];
            findings.get(&(r.table.clone(), r.answers.clone())).is_some_and(|n| *n > 0)
        })
        .collect();
    progress.phase("heal", Some(ruleset.rules.len() as u64));
    // Plan and apply rule after rule inside one transaction; a dry run rolls it back.
    let outcome = catalog.transaction(|c| {
        for (i, rule) in ruleset.rules.iter().enumerate() {
            let mut rep = RuleReport {
                id: rule.id.clone(),
                version: rule.version,
                rule_hash: rule.hash(),
                answers: rule.answers.clone(),
                finding: None,
                skipped: None,
                scope: None,
                rows: 0,
                cells: 0,
                tombstones: 0,
            };
            match findings.get(&(rule.table.clone(), rule.answers.clone())) {
                None => {
                    rep.skipped = Some(format!("audit run {audit_run} has no check {} on {}", rule.answers, rule.table))
                }
                Some(0) => rep.skipped = Some(format!("{} passes", rule.answers)),
                Some(_) => {
                    rep.finding = Some(format!("{audit_run}:{}", rule.answers));
                    if !working.contains_key(&rule.table) {
                        let on_table: Vec<(usize, &rules::Rule)> =
                            running.iter().map(|&j| (j, &ruleset.rules[j])).collect();
                        let w = scope::create_working(c, &rule.table, &audit_run, &on_table)?;
                        working.insert(rule.table.clone(), (w, catalog.column_types(&rule.table)?));
                    }
                    let (w, types) = &working[&rule.table];
                    let (current, scope) = (w.name.clone(), &w.scopes[&i]);
                    rep.scope = Some(scope.described.clone());
                    let ctx = PlanContext {
                        now: now.clone(),
                        types: types.clone(),
                        current: format!("(SELECT * FROM {current} t WHERE {})", scope.within),
                    };
                    let rule_id = format!("{}@{}", rule.id, rule.version);
                    let (rule_hash, finding) = (rule.hash(), rep.finding.clone().unwrap_or_default());
                    let mut sink = |c: &duckdb::Connection, cells: &[apply::PlannedCell]| -> Result<()> {
                        let room = args.limit.saturating_sub(patches.len());
                        patches.extend(cells.iter().take(room).map(|p| p.patch(&rule.table)));
                        if args.dry_run {
                            return Ok(());
                        }
                        let entries = cells.iter().map(|p| apply::LedgerEntry {
                            patch: p.patch(&rule.table),
                            rule_id: rule_id.clone(),
                            rule_hash: rule_hash.clone(),
                            finding: finding.clone(),
                        });
                        apply::append_ledger(c, &run_id, &patched_at, entries)?;
                        apply::record_quarantine(c, &run_id, &rule.table, &rule.id, cells, &now)
                    };
                    for plan in rule.plans(&ctx) {
                        let n = apply::apply_plan(
                            c,
                            &rule.table,
                            &ctx.types,
                            &plan,
                            &now,
                            &batch,
                            Some(&current),
                            &mut sink,
                        )?;
                        rep.rows += n.rows;
                        rep.cells += n.cells;
                        rep.tombstones += n.tombstones;
                        quarantined += n.quarantined;
                    }
                }
            }
            progress.note(&format!(
                "rule {} ({}): {}",
                rule.id,
                rule.answers,
                match &rep.skipped {
                    Some(why) => format!("skipped, {why}"),
                    None => format!("{} cells in {} rows", rep.cells, rep.rows),
                }
            ));
            progress.advance(1);
            reports.push(rep);
            t0_core::fault::pause_point("heal.apply");
        }
        // The ledger and quarantine entries were appended step by step, inside this transaction.
        if args.dry_run || reports.iter().all(|r| r.cells == 0) {
            return Err(Error::NothingToDo(String::new()));
        }
        record_batch(c, &run_id, &batch)?;
        t0_core::fault::pause_point("heal.commit");
        Ok(())
    });
    progress.finish();
    let cells_patched: u64 = reports.iter().map(|r| r.cells).sum();
    let report = HealReport {
        run_id: run_id.clone(),
        dry_run: args.dry_run,
        audit_run,
        rules_source: ruleset.source.display().to_string(),
        batch: batch.clone(),
        rows_repaired: reports.iter().map(|r| r.rows).sum(),
        cells_patched,
        quarantined,
        rules: reports,
        patches_truncated: cells_patched > args.limit as u64,
        patches,
    };
    match outcome {
        Ok(()) => {}
        Err(Error::NothingToDo(_)) if args.dry_run => return Ok(report),
        Err(Error::NothingToDo(_)) => {
            return Err(Error::NothingToDo(format!(
                "no rule found anything to repair in audit run {}'s findings",
                report.audit_run
            )));
        }
        Err(e) => return Err(e),
    }

    let mut outputs = t0_project::canonical_outputs(root, &catalog)?;
    outputs.push(ledger_output(root, &catalog, &run_id)?);
    let summary = serde_json::json!({
        "run_id": run_id, "audit_run": report.audit_run, "rows_repaired": report.rows_repaired,
        "cells_patched": report.cells_patched, "quarantined": report.quarantined,
        "rules": report.rules, "patched_at": patched_at, "batch": batch,
        "ledger": apply::anchor(catalog.conn(), &run_id)?,
    });
    run.finish(&run_id, None, outputs, summary)?;
    Ok(report)
}

/// The ledger this run appends to must be what its runs recorded, and the audit must have
/// seen the data as it is now: stale findings are not repaired.
fn check_upstream(root: &Root, catalog: &Catalog, audit: &t0_manifest::Loaded) -> Result<()> {
    if let Some((stage, last)) = t0_manifest::latest_producer(catalog, t0_project::LEDGER_OUTPUT)? {
        let m = t0_manifest::load(root, catalog, stage, Some(&last))?;
        t0_manifest::verify_output(root, catalog, &m.manifest, m.manifest.output(t0_project::LEDGER_OUTPUT)?).map_err(
            |e| Error::Refused(format!("the heal ledger of run {last} changed: {e}; see `heal verify-ledger`")),
        )?;
    }
    for input in audit.manifest.inputs.iter().filter(|i| i.name.starts_with("canonical.")) {
        t0_manifest::verify_output(root, catalog, &audit.manifest, input).map_err(|e| {
            Error::Refused(format!(
                "the canonical data changed after audit run {}: audit again ({e})",
                audit.manifest.run_id
            ))
        })?;
    }
    Ok(())
}

fn ledger_output(root: &Root, catalog: &Catalog, run_id: &str) -> Result<t0_manifest::Output> {
    t0_manifest::record_output(
        root,
        catalog,
        "heal.ledger",
        Location::Table { table: "heal_ledger".into(), key: vec!["seq".into()], run_id: Some(run_id.into()) },
    )
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RevertReport {
    pub run_id: String,
    pub reverted_run: String,
    pub rows_restored: u64,
    pub cells_restored: u64,
    pub patches: Vec<Patch>,
    pub patches_truncated: bool,
}

/// Restore the pre-images of every cell that heal run `target` changed, as new versions with
/// their own ledger entries. Refuses when a later change touched one of those cells.
pub fn revert(root: &Root, clock: Clock, target: &str, limit: usize, progress: &dyn Progress) -> Result<RevertReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_manifest::load(root, &catalog, STAGE, Some(target))
        .map_err(|_| Error::Usage(format!("no heal run {target} is recorded (see manifests/heal/)")))?;
    // The data must be what the chain says it is before we build on it.
    let mut run =
        StageRun::begin(root, &catalog, STAGE, clock, t0_core::blake3_hex(format!("revert:{target}").as_bytes()));
    let (latest, names) = t0_project::canonical_producer(root, &catalog)?;
    run.consume(&latest, &names.iter().map(String::as_str).collect::<Vec<_>>())?;
    let run_id = run.run_id(&format!("revert:{target}"));
    run.ensure_new(&run_id)?;
    purge_unrecorded_runs(&catalog)?;

    let patched_at = clock.stamp();
    let now = t0_core::clock::sql_timestamp(clock.now());
    let batch = batch_id(&run_id);
    let rule_id = format!("revert:{target}");
    let rule_hash = t0_core::blake3_hex(rule_id.as_bytes());
    progress.phase("revert", None);
    let mut restored = Vec::new();
    catalog.transaction(|c| {
        for table in t0_project::vocab::CANONICAL {
            let types = catalog.column_types(table)?;
            restored
                .extend(apply::revert_table(c, table, &types, target, &now, &batch)?.into_iter().map(|p| (table, p)));
        }
        if restored.is_empty() {
            return Err(Error::NothingToDo(format!(
                "every cell heal run {target} changed already holds its pre-image"
            )));
        }
        let entries = restored.iter().map(|(t, p)| apply::LedgerEntry {
            patch: p.patch(t),
            rule_id: rule_id.clone(),
            rule_hash: rule_hash.clone(),
            finding: rule_id.clone(),
        });
        apply::append_ledger(c, &run_id, &patched_at, entries)?;
        c.execute(
            "UPDATE heal_quarantine SET released_by = ? WHERE run_id = ? AND released_by IS NULL",
            params![run_id, target],
        )
        .ctx(|| "release quarantine".into())?;
        record_batch(c, &run_id, &batch)
    })?;
    progress.finish();
    let mut outputs = t0_project::canonical_outputs(root, &catalog)?;
    outputs.push(ledger_output(root, &catalog, &run_id)?);
    let rows = restored.iter().map(|(t, p)| (*t, p.rid)).collect::<std::collections::BTreeSet<_>>().len() as u64;
    let summary = serde_json::json!({
        "run_id": run_id, "reverted_run": target, "rows_restored": rows,
        "cells_restored": restored.len(), "patched_at": patched_at,
        "ledger": apply::anchor(catalog.conn(), &run_id)?,
    });
    run.finish(&run_id, None, outputs, summary)?;
    let cells = restored.len() as u64;
    Ok(RevertReport {
        run_id,
        reverted_run: target.to_string(),
        rows_restored: rows,
        cells_restored: cells,
        patches_truncated: restored.len() > limit,
        patches: restored.into_iter().take(limit).map(|(t, p)| p.patch(t)).collect(),
    })
}

#[derive(Debug, serde::Serialize)]
pub struct LedgerCheck {
    pub entries: u64,
    /// Heal and revert runs whose anchors were checked.
    pub runs: u64,
    /// The first entry whose stored hash or chain link does not verify.
    pub first_broken: Option<i64>,
    pub reason: Option<String>,
    /// Every problem found: the chain's first break, then each run whose recorded anchor or
    /// ledger rows the ledger no longer matches.
    pub problems: Vec<LedgerProblem>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerProblem {
    pub run: Option<String>,
    pub seq: Option<i64>,
    pub what: String,
}

/// Recompute the ledger's hash chain from the first entry, and check it against the anchor
/// every recorded heal and revert run wrote into its manifest (first and last seq, head
/// hash) and against the content hash of each run's ledger rows.
pub fn verify_ledger(root: &Root) -> Result<LedgerCheck> {
    verify_ledger_with(root, &Catalog::open(root)?)
}

/// [`verify_ledger`] on an open catalog.
pub fn verify_ledger_with(root: &Root, catalog: &Catalog) -> Result<LedgerCheck> {
    let chain = apply::verify_chain(catalog)?;
    let mut problems = Vec::new();
    if let Some(seq) = chain.first_broken {
        problems.push(LedgerProblem { run: None, seq: Some(seq), what: chain.reason.clone().unwrap_or_default() });
    }
    let mut runs = 0;
    for run_id in t0_manifest::run_ids(catalog, STAGE)? {
        runs += 1;
        let m = match t0_manifest::load(root, catalog, STAGE, Some(&run_id)) {
            Ok(m) => m,
            Err(e) => {
                problems.push(LedgerProblem { run: Some(run_id), seq: None, what: format!("manifest: {e}") });
                continue;
            }
        };
        let now = apply::anchor(catalog.conn(), &run_id)?;
        let recorded: Option<apply::LedgerAnchor> = serde_json::from_value(m.manifest.summary["ledger"].clone()).ok();
        if let Some(rec) = &recorded {
            let what = match &now {
                None => Some(format!("all {} entries (seq {}..{}) are gone", rec.entries, rec.first_seq, rec.last_seq)),
                Some(n) if n.last_seq < rec.last_seq || n.entries < rec.entries => Some(format!(
                    "entries missing: seq {}..{} ({} entries) recorded, the ledger holds seq {}..{} ({})",
                    rec.first_seq, rec.last_seq, rec.entries, n.first_seq, n.last_seq, n.entries
                )),
                Some(n) if n != rec => Some(format!(
                    "anchor differs: recorded seq {}..{} head {}, the ledger has seq {}..{} head {}",
                    rec.first_seq, rec.last_seq, rec.head, n.first_seq, n.last_seq, n.head
                )),
                Some(_) => None,
            };
            if let Some(what) = what {
                let seq = now.as_ref().map(|n| n.last_seq + 1).unwrap_or(rec.first_seq).min(rec.last_seq);
                problems.push(LedgerProblem { run: Some(run_id.clone()), seq: Some(seq), what });
                continue;
            }
        }
        if let Ok(out) = m.manifest.output("heal.ledger")
            && let Err(e) = t0_manifest::verify_output(root, catalog, &m.manifest, out)
        {
            problems.push(LedgerProblem { run: Some(run_id.clone()), seq: None, what: format!("ledger rows: {e}") });
        }
    }
    let first = problems.first();
    Ok(LedgerCheck {
        entries: chain.entries,
        runs,
        first_broken: first.and_then(|p| p.seq),
        reason: first.map(|p| match &p.run {
            Some(r) => format!("heal run {r}: {}", p.what),
            None => p.what.clone(),
        }),
        problems,
    })
}
