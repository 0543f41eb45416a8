//! `audit`: runs checks over the canonical tables, stores findings with failing samples, and
//! records a PASS/FAIL verdict bound to the content hash of the data it audited.
//!
//! Skeleton scope: a fixed set of real checks. Declarative YAML contracts, metric history
//! and drift come with the audit issue.

use duckdb::params;
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub const STAGE: &str = "audit";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Error,
}

/// A check: a query returning one row per failing item as (`key` text).
pub struct Check {
    pub name: &'static str,
    pub table: &'static str,
    pub severity: Severity,
    pub sql: &'static str,
}

/// The current version of each observation (the latest version of each key).
const CURRENT_OBS: &str = "(SELECT * FROM observations QUALIFY row_number() OVER (PARTITION BY entity_id, observed_at ORDER BY version DESC) = 1)";

pub fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "unique_version",
            table: "observations",
            severity: Severity::Error,
            sql: "SELECT entity_id || '@' || observed_at || '#' || version FROM observations GROUP BY entity_id, observed_at, version HAVING count(*) > 1",
        },
        Check {
            name: "orphan_reference",
            table: "observations",
            severity: Severity::Error,
            sql: "SELECT DISTINCT o.entity_id FROM observations o ANTI JOIN entities e ON o.entity_id = e.entity_id",
        },
        Check {
            name: "orphan_reference",
            table: "artifacts",
            severity: Severity::Error,
            sql: "SELECT DISTINCT a.entity_id FROM artifacts a ANTI JOIN entities e ON a.entity_id = e.entity_id",
        },
        Check {
            name: "available_before_observed",
            table: "observations",
            severity: Severity::Error,
            sql: "SELECT entity_id || '@' || observed_at FROM observations WHERE available_at < observed_at",
        },
        Check {
            name: "negative_count",
            table: "observations",
            severity: Severity::Error,
            sql: "SELECT entity_id || '@' || observed_at FROM observations WHERE views < 0 OR likes < 0 OR comments < 0",
        },
        Check {
            name: "monotonic_counter",
            table: "observations",
            severity: Severity::Error,
            sql: "SELECT entity_id || '@' || observed_at FROM (
                    SELECT *, max(views) OVER w AS max_views, max(likes) OVER w AS max_likes,
                           max(comments) OVER w AS max_comments
                    FROM CURRENT_OBS
                    WINDOW w AS (PARTITION BY entity_id ORDER BY observed_at ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))
                  WHERE views < max_views OR likes < max_likes OR comments < max_comments",
        },
        Check {
            name: "entity_without_title",
            table: "artifacts",
            severity: Severity::Warn,
            sql: "SELECT e.entity_id FROM entities e WHERE e.kind = 'clip' AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.entity_id = e.entity_id AND a.kind = 'title')",
        },
    ]
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub check: String,
    pub table: String,
    pub severity: Severity,
    pub failing: u64,
    pub sample: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct AuditReport {
    pub run_id: String,
    pub verdict: String,
    pub data_hash: String,
    pub errors: u64,
    pub warnings: u64,
    pub findings: Vec<Finding>,
}

pub struct AuditArgs {
    /// How many failing keys to keep per finding.
    pub sample: usize,
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

pub fn run(root: &Root, clock: Clock, args: &AuditArgs, progress: &dyn Progress) -> Result<AuditReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let config_hash = t0_core::config::value_hash(&("audit-skeleton-v1", args.sample));
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let (stage, run_id) = t0_manifest::latest_producer(&catalog, "canonical.observations")?
        .ok_or_else(|| Error::Refused("no canonical data recorded: run `acquire` first".into()))?;
    let up = t0_manifest::load(root, &catalog, &stage, Some(&run_id))?;
    let names: Vec<String> = t0_acquire::CANONICAL.iter().map(|t| t0_acquire::canonical_name(t)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let inputs = run.consume(&up, &names)?;
    let data_hash = data_hash(&inputs);
    let run_id = run.run_id("");
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["audit_findings", "audit_verdicts"])?;

    let all = checks();
    progress.phase("checks", Some(all.len() as u64));
    let mut findings = Vec::new();
    for c in &all {
        let sql = c.sql.replace("CURRENT_OBS", CURRENT_OBS);
        let mut stmt = catalog.conn().prepare(&sql).ctx(|| format!("check {}", c.name))?;
        let keys: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .ctx(|| format!("check {}", c.name))?
            .collect::<std::result::Result<_, _>>()
            .ctx(|| format!("check {}", c.name))?;
        let mut sorted = keys;
        sorted.sort();
        findings.push(Finding {
            check: c.name.into(),
            table: c.table.into(),
            severity: c.severity,
            failing: sorted.len() as u64,
            sample: sorted.into_iter().take(args.sample).collect(),
        });
        progress.advance(1);
    }
    progress.finish();
    let failing = |s: Severity| findings.iter().filter(|f| f.severity == s && f.failing > 0).count() as u64;
    let (errors, warnings) = (failing(Severity::Error), failing(Severity::Warn));
    let verdict = if errors == 0 { "PASS" } else { "FAIL" };
    let now = clock.stamp();
    catalog.transaction(|c| {
        for f in &findings {
            let sev = if f.severity == Severity::Error { "error" } else { "warn" };
            let sample = serde_json::to_string(&f.sample).expect("strings");
            c.execute(
                "INSERT INTO audit_findings VALUES (?, ?, ?, ?, ?, ?)",
                params![run_id, f.check, f.table, sev, f.failing as i64, sample],
            )
            .ctx(|| "record finding".into())?;
        }
        c.execute(
            "INSERT INTO audit_verdicts VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![run_id, data_hash, verdict, errors as i64, warnings as i64, now.trim_end_matches('Z')],
        )
        .ctx(|| "record verdict".into())?;
        Ok(())
    })?;
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
            table("audit_findings", &["check_name", "table_name"]),
        )?,
        t0_manifest::record_output(root, &catalog, "audit.verdict", table("audit_verdicts", &["run_id"]))?,
    ];
    let report = AuditReport { run_id: run_id.clone(), verdict: verdict.into(), data_hash, errors, warnings, findings };
    run.finish(&run_id, Some(verdict), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}
