//! `certify`: builds the T0 feature surfaces from the canonical tables through as-of views,
//! proves their SQL closures free of wall-clock and label reads, and writes them to Parquet
//! with a certificate. Labels are written beside them, outside every certified closure.
//!
//! Skeleton scope: entrypoints `base` and `text`, a T0 grid of "created + offset", one horizon
//! label. Anchors, priors, WOE, SLA gating and dataset-hash baselines come with the certify
//! issue.

pub mod sqlcheck;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use duckdb::params;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};

pub const STAGE: &str = "certify";

/// The feature-store SQL shipped in `configs/feature-stores/`, built in so the binary works
/// from any directory; `--stores DIR` reads another copy instead.
const BUILTIN_SQL: &[(&str, &str)] = &[
    ("asof.sql", include_str!("../../../configs/feature-stores/asof.sql")),
    ("base.sql", include_str!("../../../configs/feature-stores/base.sql")),
    ("text.sql", include_str!("../../../configs/feature-stores/text.sql")),
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyConfig {
    /// T0 of each clip: its creation time plus this many hours.
    pub t0_offset_hours: i64,
    /// Label horizon in hours after T0.
    pub horizon_hours: i64,
    pub stores: Vec<StoreConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub entrypoint: String,
    /// SQL files of the closure, in execution order; the last defines `surface_<entrypoint>`.
    pub files: Vec<String>,
    /// A strict store fails on view-definition drift against its last certificate.
    #[serde(default)]
    pub strict: bool,
}

impl Default for CertifyConfig {
    fn default() -> Self {
        let store = |e: &str, strict| StoreConfig {
            entrypoint: e.into(),
            files: vec!["asof.sql".into(), format!("{e}.sql")],
            strict,
        };
        CertifyConfig {
            t0_offset_hours: 24,
            horizon_hours: 168,
            stores: vec![store("base", true), store("text", false)],
        }
    }
}

pub struct CertifyArgs {
    pub config: Option<PathBuf>,
    pub stores_dir: Option<PathBuf>,
    /// Accept a view-definition change in a strict store and make it the new baseline.
    pub rebaseline: bool,
}

#[derive(Debug, Serialize)]
pub struct StoreResult {
    pub entrypoint: String,
    pub status: String,
    pub view_def_hash: String,
    pub dataset_hash: Option<String>,
    pub rows: u64,
    pub path: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CertifyReport {
    pub run_id: String,
    pub status: String,
    pub stores: Vec<StoreResult>,
    pub labels_path: Option<String>,
    pub label_rows: u64,
}

fn read_sql(dir: Option<&Path>, file: &str) -> Result<String> {
    match dir {
        Some(d) => std::fs::read_to_string(d.join(file)).map_err(|e| Error::io(d.join(file), e)),
        None => BUILTIN_SQL
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, s)| s.to_string())
            .ok_or_else(|| Error::Usage(format!("no built-in feature-store file {file}; pass --stores DIR"))),
    }
}

/// View-definition hash of a closure: blake3 over each file's name and normalised SQL.
pub fn view_def_hash(closure: &[(String, String)]) -> String {
    let mut h = blake3::Hasher::new();
    for (name, sql) in closure {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(sqlcheck::normalise(sql).as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex().to_string()
}

fn ts(t: &str) -> String {
    t.trim_end_matches('Z').to_string()
}

pub fn run(root: &Root, clock: Clock, args: &CertifyArgs, progress: &dyn Progress) -> Result<CertifyReport> {
    let (cfg, cfg_hash) = match &args.config {
        Some(p) => t0_core::config::load_yaml::<CertifyConfig>(p)?,
        None => {
            let c = CertifyConfig::default();
            let h = t0_core::config::value_hash(&c);
            (c, h)
        }
    };
    let mut closures = Vec::new();
    for s in &cfg.stores {
        let files = s
            .files
            .iter()
            .map(|f| Ok((f.clone(), read_sql(args.stores_dir.as_deref(), f)?)))
            .collect::<Result<Vec<_>>>()?;
        closures.push((s, files));
    }
    let defs: Vec<&str> = closures.iter().map(|(s, _)| s.entrypoint.as_str()).collect();
    let config_hash = t0_core::blake3_hex(
        format!(
            "{cfg_hash}|{}|{}",
            closures.iter().map(|(_, f)| view_def_hash(f)).collect::<Vec<_>>().join(","),
            args.rebaseline
        )
        .as_bytes(),
    );

    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let audit = t0_manifest::load(root, &catalog, "audit", None)?;
    if audit.manifest.gate.as_deref() != Some("PASS") {
        return Err(Error::Refused(format!(
            "the latest audit (run {}) did not pass: open error-level findings; heal and audit again",
            audit.manifest.run_id
        )));
    }
    run.consume(&audit, &["audit.verdict"])?;
    // Write-audit-publish: the data must be exactly what the audit passed.
    for input in audit.manifest.inputs.iter().filter(|i| i.name.starts_with("canonical.")) {
        t0_manifest::verify_output(root, &catalog, &audit.manifest, input).map_err(|e| {
            Error::Refused(format!(
                "the canonical data changed after the passing audit {}: audit again ({e})",
                audit.manifest.run_id
            ))
        })?;
        run.add_input(input.clone());
    }
    let run_id = run.run_id(&defs.join(","));
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["certificates"])?;

    let conn = catalog.conn();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE t0_grid AS
         WITH horizon AS (SELECT max(available_at) AS as_of FROM observations)
         SELECT e.entity_id, min(e.created_at) + INTERVAL {off} HOUR AS t0
         FROM entities e, horizon
         WHERE e.kind = 'clip'
         GROUP BY e.entity_id, horizon.as_of
         HAVING min(e.created_at) + INTERVAL {off} HOUR <= horizon.as_of",
        off = cfg.t0_offset_hours
    ))
    .ctx(|| "build T0 grid".into())?;

    let mut stores = Vec::new();
    let mut outputs = Vec::new();
    let mut all_ok = true;
    progress.phase("surfaces", Some(closures.len() as u64));
    for (store, files) in &closures {
        let entry = &store.entrypoint;
        let vdh = view_def_hash(files);
        let mut notes: Vec<String> =
            files.iter().flat_map(|(name, sql)| sqlcheck::violations(name, &sqlcheck::normalise(sql))).collect();
        if store.strict && !args.rebaseline {
            let previous: Option<String> = conn
                .query_row(
                    "SELECT view_def_hash FROM certificates WHERE entrypoint = ? AND status = 'CERTIFIED' ORDER BY certified_at DESC, run_id DESC LIMIT 1",
                    params![entry],
                    |r| r.get(0),
                )
                .ok();
            if let Some(prev) = previous.filter(|p| *p != vdh) {
                notes.push(format!(
                    "view-definition drift in strict store {entry}: baseline {prev}, now {vdh} (pass --rebaseline to accept)"
                ));
            }
        }
        let mut result = StoreResult {
            entrypoint: entry.clone(),
            status: "FAILED".into(),
            view_def_hash: vdh.clone(),
            dataset_hash: None,
            rows: 0,
            path: None,
            notes,
        };
        if result.notes.is_empty() {
            for (name, sql) in files {
                conn.execute_batch(sql).map_err(|e| Error::config(name, format!("feature-store SQL failed: {e}")))?;
            }
            let (schema, batches) =
                catalog.query_arrow(&format!("SELECT * FROM surface_{entry} ORDER BY entity_id, t0"), &[])?;
            let rel = format!("lake/surfaces/{entry}/{run_id}/surface.parquet");
            t0_table::write_parquet(&root.join(&rel), schema, &batches)?;
            let out =
                t0_manifest::record_output(root, &catalog, &format!("surface.{entry}"), Location::per_entity_t0(&rel))?;
            result.status = "CERTIFIED".into();
            result.dataset_hash = Some(out.content_hash.clone());
            result.rows = out.rows.unwrap_or(0);
            result.path = Some(rel);
            outputs.push(out);
        } else {
            all_ok = false;
        }
        stores.push(result);
        progress.advance(1);
    }
    progress.finish();

    // Labels: outcomes after T0, built from the current (fully repaired) data and kept out of
    // every feature closure. Joined only by train-suite and calibrate.
    let mut labels_path = None;
    let mut label_rows = 0;
    if all_ok {
        let (schema, batches) = catalog.query_arrow(
            &format!(
                "WITH cur AS {current}
                 SELECT g.entity_id, g.t0, CAST({h} AS BIGINT) AS horizon_hours,
                        CASE WHEN max(o.observed_at) >= g.t0 + INTERVAL {h} HOUR
                             THEN ln(1 + arg_max(o.views, o.observed_at) FILTER (WHERE o.observed_at <= g.t0 + INTERVAL {h} HOUR))
                        END AS y_log_views
                 FROM t0_grid g LEFT JOIN cur o ON o.entity_id = g.entity_id
                 GROUP BY g.entity_id, g.t0 ORDER BY g.entity_id, g.t0",
                h = cfg.horizon_hours,
                current = t0_acquire::spec::current_sql("observations", true).expect("canonical table"),
            ),
            &[],
        )?;
        let rel = format!("lake/labels/{run_id}/labels.parquet");
        t0_table::write_parquet(&root.join(&rel), schema, &batches)?;
        let out = t0_manifest::record_output(root, &catalog, "labels", Location::per_entity_t0(&rel))?;
        label_rows = out.rows.unwrap_or(0);
        labels_path = Some(rel);
        outputs.push(out);
    }

    let (t0_min, t0_max): (Option<String>, Option<String>) = conn
        .query_row("SELECT CAST(min(t0) AS VARCHAR), CAST(max(t0) AS VARCHAR) FROM t0_grid", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ctx(|| "T0 range".into())?;
    let now = clock.stamp();
    for s in &stores {
        let cert = serde_json::json!({
            "entrypoint": s.entrypoint, "status": s.status, "view_def_hash": s.view_def_hash,
            "dataset_hash": s.dataset_hash, "t0_min": t0_min, "t0_max": t0_max, "rows": s.rows,
            "certified_at": now, "run_id": run_id, "notes": s.notes,
            "upstream": [{"stage": "audit", "run_id": audit.manifest.run_id, "manifest_hash": audit.manifest_hash}],
        });
        let rel = format!("lake/surfaces/{}/{run_id}/certificate.json", s.entrypoint);
        let mut bytes = serde_json::to_vec_pretty(&cert).expect("json");
        bytes.push(b'\n');
        t0_core::fsio::write_atomic(&root.join(&rel), &bytes)?;
        outputs.push(t0_manifest::record_output(
            root,
            &catalog,
            &format!("certificate.{}", s.entrypoint),
            Location::File { path: rel },
        )?);
        conn.execute(
            "INSERT INTO certificates VALUES (?, ?, ?, CAST(? AS TIMESTAMP), ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), ?, ?)",
            params![run_id, s.entrypoint, s.status, ts(&now), s.view_def_hash, s.dataset_hash.clone().unwrap_or_default(), t0_min, t0_max, s.rows as i64, s.notes.join("; ")],
        )
        .ctx(|| "record certificate".into())?;
    }
    let status = if all_ok { "CERTIFIED" } else { "FAILED" };
    let report = CertifyReport { run_id: run_id.clone(), status: status.into(), stores, labels_path, label_rows };
    run.finish(&run_id, Some(status), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// The downstream guard: the latest certify run must be CERTIFIED and not older than
/// `max_age_days` by `clock`. Returns the verified manifest.
pub fn guard(root: &Root, catalog: &Catalog, clock: &Clock, max_age_days: i64) -> Result<Loaded> {
    let cert = t0_manifest::load(root, catalog, STAGE, None)?;
    if cert.manifest.gate.as_deref() != Some("CERTIFIED") {
        return Err(Error::Refused(format!(
            "certify run {} is {}: no training or scoring on an uncertified surface",
            cert.manifest.run_id,
            cert.manifest.gate.as_deref().unwrap_or("not certified")
        )));
    }
    let certified: DateTime<Utc> = t0_core::clock::parse_utc(&cert.manifest.finished_at).ok_or_else(|| {
        Error::Refused(format!("certify run {} has no valid certification time", cert.manifest.run_id))
    })?;
    let age = clock.now() - certified;
    if age > chrono::Duration::days(max_age_days) {
        return Err(Error::Refused(format!(
            "certificate of run {} is stale: certified {} ({} days ago, max_age {max_age_days} days); certify again",
            cert.manifest.run_id,
            cert.manifest.finished_at,
            age.num_days()
        )));
    }
    Ok(cert)
}

/// View-definition hash the certificate recorded for `entrypoint`.
pub fn certified_view_def(cert: &Loaded, entrypoint: &str) -> Option<String> {
    cert.manifest.summary["stores"].as_array()?.iter().find(|s| s["entrypoint"] == entrypoint)?["view_def_hash"]
        .as_str()
        .map(str::to_string)
}
