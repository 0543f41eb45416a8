//! `audit`: decides whether the canonical data is fit to certify. Runs the checks of the
//! declarative contracts (a project's `contracts/*.yaml`) on a read-only connection, stores
//! findings with samples of failing keys, and records a PASS/FAIL verdict bound to the content
//! hash of the data it audited (write-audit-publish: certify accepts only that hash).
//! Anomaly checks compare row counts and metrics with the history earlier runs stored in
//! `audit_metrics`; drift checks compare a column's distribution with its stored baseline.

pub mod checks;
pub mod stateful;

use std::path::{Path, PathBuf};

use duckdb::params;
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

/// Contracts are project declarations: parsed in `t0-project` (no catalog, fuzzed).
pub use t0_project::contract::{self, Contract, Severity};

pub const STAGE: t0_core::Stage = t0_core::Stage::Audit;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub check: String,
    pub table: String,
    pub severity: Severity,
    /// Contract file and line of the check.
    pub defined_at: String,
    pub failing: u64,
    pub sample: Vec<String>,
    /// Why the check did not run, when it did not.
    pub skipped: Option<String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditReport {
    pub run_id: String,
    pub verdict: t0_core::Verdict,
    pub data_hash: String,
    pub as_of: String,
    pub errors: u64,
    pub warnings: u64,
    pub findings: Vec<Finding>,
}

pub struct AuditArgs {
    pub project: t0_project::Project,
    /// How many failing keys to keep per finding (the count is never capped).
    pub sample: usize,
    /// Directory of contract files; default: the project's.
    pub contracts: Option<PathBuf>,
    /// The pinned time freshness and future-timestamp checks measure against; default: the
    /// newest `available_at` in the data (freshness checks are then skipped).
    pub as_of: Option<String>,
    /// Take new drift baselines instead of comparing with the stored ones.
    pub rebaseline: bool,
}

/// blake3 over the canonical inputs' names and content hashes: what a verdict is bound to.
pub fn data_hash(inputs: &[t0_manifest::Output]) -> String {
    let mut h = blake3::Hasher::new();
    for o in inputs.iter().filter(|o| o.name.starts_with("canonical.")) {
        h.update(o.name.as_bytes());
        h.update(b"=");
        h.update(o.content_hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Contracts from `dir`, else the project's contract folder.
pub fn load_contracts(dir: Option<&Path>, project: &t0_project::Project) -> Result<Vec<Contract>> {
    match dir {
        Some(d) => Contract::load_dir(d),
        None => project
            .read_dir(&project.def.contracts, &["yaml", "yml"])?
            .iter()
            .map(|(name, text)| Contract::parse(Path::new(name), text))
            .collect(),
    }
}

pub fn run(root: &Root, clock: Clock, args: &AuditArgs, progress: &dyn Progress) -> Result<AuditReport> {
    // A malformed contract is refused before anything runs.
    let contracts = load_contracts(args.contracts.as_deref(), &args.project)?;
    let as_of_pinned = match &args.as_of {
        Some(s) => {
            Some(t0_core::clock::parse_utc(s).ok_or_else(|| Error::Usage(format!("--as-of: cannot parse {s:?}")))?)
        }
        None => None,
    };
    let _lock = RootLock::acquire(root)?;
    if !root.catalog().exists() {
        return Err(Error::Refused(format!("no catalog at {}: run `acquire` first", root.catalog().display())));
    }
    // Bring an older catalog's schema up to date (a writable open migrates), then run every
    // check, custom SQL included, on a read-only connection.
    drop(Catalog::open(root)?);
    let ro = Catalog::open_read_only(root)?;
    // Contract SQL (custom checks, metric expressions) reads the catalog only: no file, no
    // ATTACH, no COPY, for the life of this database instance.
    ro.conn().execute_batch("SET enable_external_access = false").ctx(|| "lock the audit connection".into())?;
    t0_project::schema::check(&ro, &args.project)?;
    for c in &contracts {
        checks::validate(&ro, c)?;
    }
    let config_hash = t0_core::config::value_hash(&(
        &contracts.iter().map(|c| (&c.table, &c.columns, &c.checks)).collect::<Vec<_>>(),
        args.sample,
        &args.as_of,
        args.rebaseline,
    ));
    let mut run = StageRun::begin(root, &ro, STAGE, clock, config_hash);
    let (up, names) = t0_project::canonical_producer(root, &ro)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let inputs = run.consume(&up, &names)?;
    let data_hash = data_hash(&inputs);
    let run_id = run.run_id("");
    run.ensure_new(&run_id)?;
    let as_of = match as_of_pinned {
        Some(t) => t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => ro
            .conn()
            .query_row("SELECT coalesce(CAST(max(available_at) AS VARCHAR), '1970-01-01') FROM observations", [], |r| {
                r.get(0)
            })
            .ctx(|| "data horizon".into())?,
    };

    let ev = evaluate(&ro, &contracts, args, &as_of, progress)?;
    let failing = |s: Severity| ev.findings.iter().filter(|f| f.severity == s && f.failing > 0).count() as u64;
    let (errors, warnings) = (failing(Severity::Error), failing(Severity::Warn));
    let verdict = if errors == 0 { t0_core::Verdict::Pass } else { t0_core::Verdict::Fail };

    // Record through a writable connection, opened once the read-only one is closed.
    let pending = run.detach();
    drop(ro);
    let catalog = Catalog::open(root)?;
    let run = pending.attach(root, &catalog);
    t0_manifest::purge_unrecorded(
        &catalog,
        &run_id,
        &["audit_findings", "audit_failing", "audit_verdicts", "audit_metrics", "audit_baselines"],
    )?;
    record(&catalog, &run_id, &clock, &data_hash, verdict, (errors, warnings), &ev)?;
    let table = |t: &str, key: &[&str]| Location::Table {
        table: t.into(),
        key: key.iter().map(|k| k.to_string()).collect(),
        run_id: Some(run_id.clone()),
    };
    let outputs = vec![
        t0_manifest::record_output(
            root,
            &catalog,
            "audit.findings",
            table("audit_findings", &["table_name", "check_name"]),
        )?,
        t0_manifest::record_output(
            root,
            &catalog,
            "audit.failing",
            table("audit_failing", &["table_name", "check_name", "row_key"]),
        )?,
        t0_manifest::record_output(root, &catalog, "audit.verdict", table("audit_verdicts", &["run_id"]))?,
    ];
    let findings = ev.findings;
    let report = AuditReport { run_id: run_id.clone(), verdict, data_hash, as_of, errors, warnings, findings };
    run.finish(&run_id, Some(verdict), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// What the checks found: one finding per check, the metrics and drift baselines the stateful
/// checks computed (and every audited table's row count), and the failing rows of the checks
/// that name rows (by finding index), for heal to restrict its repairs to.
struct Evaluated {
    findings: Vec<Finding>,
    metrics: Vec<(String, String, f64)>,
    baselines: Vec<(String, String, String, i64)>,
    flagged: Vec<(usize, Vec<String>)>,
}

/// A check answered by an SQL probe: (finding index, contract, check, probe).
type Pending<'a> = (usize, &'a Contract, &'a contract::Check, checks::Probe);

/// Run every check of `contracts` on the read-only connection: stateful ones first, then the
/// row probes.
fn evaluate(
    ro: &Catalog,
    contracts: &[Contract],
    args: &AuditArgs,
    as_of: &str,
    progress: &dyn Progress,
) -> Result<Evaluated> {
    let total: usize = contracts.iter().map(|c| c.checks.len()).sum();
    progress.phase("checks", Some(total as u64));
    let mut findings = Vec::new();
    let mut metrics: Vec<(String, String, f64)> = Vec::new();
    let mut baselines: Vec<(String, String, String, i64)> = Vec::new();
    // Checks answered by SQL probes, run after the stateful ones: (finding, contract, check).
    let mut probes: Vec<Pending> = Vec::new();
    for c in contracts {
        for check in &c.checks {
            let defined_at = format!("{}:{}", c.file.display(), check.line);
            let mut f = Finding {
                check: check.name.clone(),
                table: c.table.clone(),
                severity: check.severity,
                defined_at,
                failing: 0,
                sample: Vec::new(),
                skipped: None,
            };
            if stateful::is_stateful(&check.kind) {
                let o = stateful::evaluate(ro, &c.table, check, args.rebaseline)
                    .map_err(|e| c.error_at(check.line, format!("{}: {e}", check.name)))?;
                f.failing = o.failing.len() as u64;
                f.sample = o.failing.into_iter().take(args.sample).collect();
                f.skipped = o.skipped;
                metrics.extend(o.metrics.into_iter().map(|(m, v)| (c.table.clone(), m, v)));
                if let Some((col, json, rows)) = o.baseline {
                    baselines.push((c.table.clone(), col, json, rows));
                }
                progress.advance(1);
            } else if matches!(check.kind, contract::Kind::Freshness { .. }) && args.as_of.is_none() {
                f.skipped = Some("freshness needs a pinned --as-of".into());
                progress.advance(1);
            } else {
                let p = checks::probe(&c.table, check, as_of, findings.len());
                probes.push((findings.len(), c, check, p));
            }
            findings.push(f);
        }
    }
    let flagged = run_probes(ro, &probes, args.sample, &mut findings, progress)?;
    // Every audited table's row count joins the history, checked or not.
    let mut tables: Vec<&str> = contracts.iter().map(|c| c.table.as_str()).collect();
    tables.dedup();
    for t in tables {
        if !metrics.iter().any(|(mt, m, _)| mt == t && m == "row_count") {
            let n: i64 = ro
                .conn()
                .query_row(&format!("SELECT count(*) FROM {}", checks::source(t, false)), [], |r| r.get(0))
                .ctx(|| format!("row count of {t}"))?;
            metrics.push((t.to_string(), "row_count".into(), n as f64));
        }
    }
    Ok(Evaluated { findings, metrics, baselines, flagged })
}

/// Run the row probes, fused where they share a scan; fill their findings and return the
/// failing rows of the checks that name rows.
fn run_probes(
    ro: &Catalog,
    probes: &[Pending],
    sample: usize,
    findings: &mut [Finding],
    progress: &dyn Progress,
) -> Result<Vec<(usize, Vec<String>)>> {
    // Row probes over the same rows (and window partition) share one scan; a fused query that
    // fails is re-run probe by probe so the error names the check that caused it.
    let mut groups: Vec<(Option<checks::Group>, Vec<usize>)> = Vec::new();
    for (i, (_, c, _, p)) in probes.iter().enumerate() {
        let g = p.group().map(|(source, w)| (format!("{}\u{0}{source}", c.table), w));
        match groups.iter_mut().find(|(k, _)| k.is_some() && *k == g) {
            Some((_, members)) => members.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    // Every failing row of the checks that name rows, for heal to restrict its repairs to.
    let mut flagged: Vec<(usize, Vec<String>)> = Vec::new();
    for (_, members) in &groups {
        let (_, c, _, _) = &probes[members[0]];
        let group: Vec<&checks::Probe> = members.iter().map(|&i| &probes[i].3).collect();
        let keys = match checks::run_fused(ro, &c.table, &group) {
            Ok(keys) => keys,
            Err(_) if members.len() > 1 => members
                .iter()
                .map(|&i| {
                    let (_, c, check, p) = &probes[i];
                    checks::run_fused(ro, &c.table, &[p]).map(|mut k| k.remove(0)).map_err(|e| (c, check, e))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|(c, check, e)| c.error_at(check.line, format!("{}: {e}", check.name)))?,
            Err(e) => {
                let (_, c, check, _) = &probes[members[0]];
                return Err(c.error_at(check.line, format!("{}: {e}", check.name)));
            }
        };
        for (&i, keys) in members.iter().zip(keys) {
            let f = &mut findings[probes[i].0];
            f.failing = keys.len() as u64;
            f.sample = keys.iter().take(sample).cloned().collect();
            if checks::names_rows(&probes[i].2.kind) && !keys.is_empty() {
                flagged.push((probes[i].0, keys));
            }
        }
        progress.advance(members.len() as u64);
    }
    progress.finish();
    Ok(flagged)
}

/// Record the findings, failing rows, metrics, baselines and verdict in one transaction.
fn record(
    catalog: &Catalog,
    run_id: &str,
    clock: &Clock,
    data_hash: &str,
    verdict: t0_core::Verdict,
    (errors, warnings): (u64, u64),
    ev: &Evaluated,
) -> Result<()> {
    let now = clock.stamp();
    catalog.transaction(|c| {
        for f in &ev.findings {
            let sev = if f.severity == Severity::Error { "error" } else { "warn" };
            let sample = serde_json::to_string(&f.sample).expect("strings");
            c.execute(
                "INSERT INTO audit_findings VALUES (?, ?, ?, ?, ?, ?)",
                params![run_id, f.check, f.table, sev, f.failing as i64, sample],
            )
            .ctx(|| "record finding".into())?;
        }
        let mut app = c.appender("audit_failing").ctx(|| "failing rows appender".into())?;
        for (i, keys) in &ev.flagged {
            let f = &ev.findings[*i];
            for k in keys {
                app.append_row(params![run_id, f.table, f.check, k]).ctx(|| "record failing row".into())?;
            }
        }
        app.flush().ctx(|| "record failing rows".into())?;
        drop(app);
        for (t, m, v) in &ev.metrics {
            c.execute(
                "INSERT INTO audit_metrics VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMP))",
                params![run_id, t, m, if v.is_finite() { Some(*v) } else { None }, now.trim_end_matches('Z')],
            )
            .ctx(|| "record metric".into())?;
        }
        for (t, col, json, rows) in &ev.baselines {
            c.execute(
                "INSERT INTO audit_baselines VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
                params![t, col, run_id, json, rows, now.trim_end_matches('Z')],
            )
            .ctx(|| "record drift baseline".into())?;
        }
        c.execute(
            "INSERT INTO audit_verdicts VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![run_id, data_hash, verdict.as_str(), errors as i64, warnings as i64, now.trim_end_matches('Z')],
        )
        .ctx(|| "record verdict".into())?;
        Ok(())
    })
}
