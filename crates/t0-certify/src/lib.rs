//! `certify`: builds the T0 feature surfaces from the canonical tables through as-of views,
//! proves their SQL closures free of wall-clock and label reads, and writes them to Parquet
//! with a certificate. Labels are written beside them, outside every certified closure.
//!
//! The stores are the project's: SQL files (`feature-stores/`) run in order, the last defining
//! `surface_<entrypoint>`, one row per (entity, T0) of the grid. Parameters reach the SQL
//! through the one-row `certify_params` table, so the files themselves are fixed and hashed.

pub mod labels;
pub mod sqlcheck;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use duckdb::arrow::array::RecordBatch;
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::params;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};
use t0_project::Project;

pub const STAGE: &str = "certify";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyConfig {
    #[serde(default)]
    pub t0: GridConfig,
    /// Named values the store SQL reads from the one-row `certify_params` table (besides
    /// `sla_hours`): integers become BIGINT, decimals DOUBLE, booleans BOOLEAN, text VARCHAR.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    #[serde(default)]
    pub sla: SlaConfig,
    /// T0 days (YYYY-MM-DD) whose dataset hash is a baseline; default: the days already
    /// baselined for a store, or else the earliest `baseline_days_default` T0 days.
    #[serde(default)]
    pub baseline_days: Vec<String>,
    #[serde(default = "three")]
    pub baseline_days_default: usize,
    pub stores: Vec<StoreConfig>,
}

/// A store parameter.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Param {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Param {
    fn sql(&self) -> String {
        match self {
            Param::Int(v) => format!("CAST({v} AS BIGINT)"),
            Param::Float(v) => format!("CAST({v:?} AS DOUBLE)"),
            Param::Bool(v) => format!("{v}"),
            Param::Text(v) => t0_catalog::quote_literal(v),
        }
    }
}

fn three() -> usize {
    3
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum GridMode {
    /// One T0 per entity: its first observation plus `offset_hours`.
    FirstSeen,
    /// T0 = first observation + `offset_hours` + i * `every_days`, while the entity is live
    /// (before an end event) and its T0 is within the data (`max_per_entity` at most).
    EveryKDays,
    /// T0 = each observation time + `offset_hours` (the first `max_per_entity`), before an end
    /// event: the natural grid of a panel observed at regular times.
    AtObservations,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    pub mode: GridMode,
    pub offset_hours: i64,
    #[serde(default = "seven")]
    pub every_days: i64,
    #[serde(default = "twelve")]
    pub max_per_entity: i64,
    /// Only entities of this kind get T0s (others, e.g. parents, are context); default: all.
    #[serde(default)]
    pub entity_kind: Option<String>,
    /// Event types after which an entity gets no more T0s (every_k_days, at_observations).
    #[serde(default)]
    pub end_events: Vec<String>,
}

fn seven() -> i64 {
    7
}
fn twelve() -> i64 {
    12
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            mode: GridMode::FirstSeen,
            offset_hours: 24,
            every_days: 7,
            max_per_entity: 12,
            entity_kind: None,
            end_events: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// An artifact counts only if it arrived within this many hours of being observed.
    pub hours: i64,
    /// Gated columns: certification fails if one is non-NULL while its artifact was late.
    #[serde(default)]
    pub gated: Vec<GatedColumn>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatedColumn {
    pub store: String,
    pub column: String,
    /// Artifact kind the column derives from.
    pub artifact: String,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig { hours: 6, gated: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub entrypoint: String,
    /// SQL files of the closure, in execution order; the last defines `surface_<entrypoint>`.
    pub files: Vec<String>,
    /// A strict store fails on view-definition or dataset drift against its baselines; a
    /// tolerant one records the drift in its notes and rebaselines.
    #[serde(default)]
    pub strict: bool,
}

pub struct CertifyArgs {
    pub project: Project,
    /// Certify configuration; default: the project's.
    pub config: Option<PathBuf>,
    /// Directory of store SQL; default: the project's feature stores.
    pub stores_dir: Option<PathBuf>,
    /// Accept a view-definition change in a strict store and make it the new baseline.
    pub rebaseline: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StoreResult {
    pub entrypoint: String,
    /// The closure's files, in order (the guard re-hashes them).
    pub files: Vec<String>,
    pub status: String,
    pub view_def_hash: String,
    pub dataset_hash: Option<String>,
    pub rows: u64,
    pub path: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CertifyReport {
    pub run_id: String,
    /// Where the store SQL came from (absolute); `None` for the built-in project's stores.
    pub stores_dir: Option<String>,
    pub project: serde_json::Value,
    pub status: String,
    pub stores: Vec<StoreResult>,
}

/// Store SQL `file` from `dir` (a project's feature stores or `--stores`), or the built-in
/// project's when `None`. A directory without `asof.sql` gets the generic as-of views.
fn read_sql(dir: Option<&Path>, file: &str) -> Result<String> {
    match dir {
        Some(d) if file == "asof.sql" && !d.join(file).exists() => Ok(t0_project::GENERIC_ASOF.to_string()),
        Some(d) => t0_core::config::read_text(&d.join(file)),
        None => Project::builtin().store_sql(file).map(|(_, sql)| sql),
    }
}

/// The directory store SQL is read from: `--stores`, else the project's folder (`None` for
/// the built-in project).
fn stores_dir(args: &CertifyArgs) -> Option<PathBuf> {
    args.stores_dir.clone().or_else(|| args.project.path(&args.project.def.feature_stores))
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

/// Load the config (or the default) and each store's closure: (store, [(file, sql)]).
/// A store's SQL closure: (file name, SQL) in execution order.
pub type Closure = Vec<(String, String)>;
/// A baseline T0 day: (day, dataset hash, rows).
type DayHash = (String, String, u64);

/// A loaded configuration: the config, its hash, and each store with its closure.
pub struct LoadedConfig {
    pub cfg: CertifyConfig,
    pub hash: String,
    pub closures: Vec<(StoreConfig, Closure)>,
}

pub fn load_config(args: &CertifyArgs) -> Result<LoadedConfig> {
    let (name, text) = match &args.config {
        Some(p) => (p.display().to_string(), t0_core::config::read_text(p)?),
        None => args.project.read(&args.project.def.certify)?,
    };
    let cfg: CertifyConfig = t0_core::config::parse_yaml(&name, &text)?;
    validate(&cfg, &name)?;
    let cfg_hash =
        t0_core::blake3_hex(format!("{}|{}", t0_core::blake3_hex(text.as_bytes()), args.project.hash).as_bytes());
    let dir = stores_dir(args);
    let mut closures = Vec::new();
    for s in &cfg.stores {
        let files =
            s.files.iter().map(|f| Ok((f.clone(), read_sql(dir.as_deref(), f)?))).collect::<Result<Vec<_>>>()?;
        closures.push((s.clone(), files));
    }
    Ok(LoadedConfig { cfg, hash: cfg_hash, closures })
}

fn validate(cfg: &CertifyConfig, name: &str) -> Result<()> {
    let bad = |m: String| Error::config(name, m);
    if cfg.stores.is_empty() {
        return Err(bad("stores: at least one store is needed".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &cfg.stores {
        if !t0_project::def::is_identifier(&s.entrypoint) || !seen.insert(&s.entrypoint) {
            return Err(bad(format!("stores: entrypoint {:?} must be a unique lower-case identifier", s.entrypoint)));
        }
    }
    for k in cfg.params.keys() {
        if !t0_project::def::is_identifier(k) || k == "sla_hours" {
            return Err(bad(format!("params: {k:?} must be a lower-case identifier other than sla_hours")));
        }
    }
    for g in &cfg.sla.gated {
        if !seen.contains(&g.store) {
            return Err(bad(format!("sla.gated: {}.{} names no store", g.store, g.column)));
        }
    }
    Ok(())
}

/// Create the T0 grid and the parameter row every feature block reads (temp tables of the
/// connection). The grid only decides *when* decisions are made; features read the data as
/// of each T0 through the as-of views.
pub fn prepare(catalog: &Catalog, cfg: &CertifyConfig) -> Result<()> {
    let entities = t0_project::vocab::current_sql("entities", true).expect("canonical table");
    let events = t0_project::vocab::current_sql("events", true).expect("canonical table");
    let observations = t0_project::vocab::current_sql("observations", true).expect("canonical table");
    let g = &cfg.t0;
    let list = |v: &[String]| v.iter().map(|e| t0_catalog::quote_literal(e)).collect::<Vec<_>>().join(", ");
    let kind = match &g.entity_kind {
        Some(k) => format!("e.kind = {} AND ", t0_catalog::quote_literal(k)),
        None => String::new(),
    };
    let ends = if g.end_events.is_empty() {
        "SELECT NULL::VARCHAR AS entity_id, NULL::TIMESTAMP AS ended_at WHERE false".to_string()
    } else {
        format!(
            "SELECT entity_id, min(observed_at) AS ended_at FROM {events} WHERE event_type IN ({}) GROUP BY entity_id",
            list(&g.end_events)
        )
    };
    let off = "to_hours(CAST(p.off AS BIGINT))";
    let grid = match g.mode {
        GridMode::FirstSeen => format!("SELECT f.entity_id, f.first_seen + {off} AS t0 FROM first f, p"),
        GridMode::EveryKDays => format!(
            "SELECT f.entity_id, f.first_seen + {off} + to_days(CAST(r.i * {k} AS INTEGER)) AS t0
             FROM first f CROSS JOIN p CROSS JOIN range(0, {n}) r(i)
             LEFT JOIN ends x ON x.entity_id = f.entity_id
             WHERE x.ended_at IS NULL OR f.first_seen + {off} + to_days(CAST(r.i * {k} AS INTEGER)) < x.ended_at",
            k = g.every_days,
            n = g.max_per_entity.max(1),
        ),
        GridMode::AtObservations => format!(
            "SELECT o.entity_id, o.observed_at + {off} AS t0
             FROM (SELECT DISTINCT entity_id, observed_at FROM {observations}) o
             JOIN first f ON f.entity_id = o.entity_id CROSS JOIN p
             LEFT JOIN ends x ON x.entity_id = o.entity_id
             WHERE x.ended_at IS NULL OR o.observed_at + {off} < x.ended_at
             QUALIFY row_number() OVER (PARTITION BY o.entity_id ORDER BY o.observed_at) <= {n}",
            n = g.max_per_entity.max(1),
        ),
    };
    let mut params: Vec<String> = cfg.params.iter().map(|(k, v)| format!("{} AS {k}", v.sql())).collect();
    params.push(format!("CAST({} AS BIGINT) AS sla_hours", cfg.sla.hours));
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE t0_grid AS
         WITH p AS (SELECT {off_h} AS off),
              first AS (SELECT e.entity_id, min(e.observed_at) AS first_seen FROM entities e
                        WHERE {kind}e.entity_id IN (SELECT entity_id FROM {entities})
                        GROUP BY e.entity_id),
              ends AS ({ends}),
              grid AS ({grid}),
              horizon AS (SELECT max(available_at) AS as_of FROM observations)
         SELECT g.entity_id, g.t0 FROM grid g, horizon WHERE g.t0 <= horizon.as_of
         ORDER BY g.entity_id, g.t0;
         CREATE OR REPLACE TEMP TABLE certify_params AS SELECT {params};",
        off_h = g.offset_hours,
        params = params.join(", "),
    );
    catalog.conn().execute_batch(&sql).ctx(|| "build T0 grid".into())
}

/// Run a store's closure and return its surface, ordered by (entity_id, t0).
pub fn build_surface(
    catalog: &Catalog,
    entry: &str,
    files: &[(String, String)],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    for (name, sql) in files {
        catalog.conn().execute_batch(sql).map_err(|e| Error::config(name, format!("feature-store SQL failed: {e}")))?;
    }
    catalog.query_arrow(&format!("SELECT * FROM surface_{entry} ORDER BY entity_id, t0"), &[])
}

/// Gated columns of `entry` that are non-NULL although no version of their artifact visible
/// at T0 arrived within the SLA. Checked against the canonical table, not the store's views.
fn sla_violations(catalog: &Catalog, cfg: &CertifyConfig, entry: &str) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for g in cfg.sla.gated.iter().filter(|g| g.store == entry) {
        let n: i64 = catalog
            .conn()
            .query_row(
                &format!(
                    "SELECT count(*) FROM surface_{entry} s WHERE s.{col} IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM artifacts a WHERE a.entity_id = s.entity_id AND a.kind = ? AND NOT a.deleted
                          AND a.observed_at <= s.t0 AND a.available_at <= s.t0
                          AND a.available_at <= a.observed_at + to_hours(CAST(? AS BIGINT)))",
                    col = g.column
                ),
                params![g.artifact, cfg.sla.hours],
                |r| r.get(0),
            )
            .map_err(|e| Error::config(format!("surface_{entry}"), format!("SLA check of {}: {e}", g.column)))?;
        if n > 0 {
            notes.push(format!(
                "SLA violation: {entry}.{} is non-NULL in {n} rows whose {} artifact was not available within {} h by T0",
                g.column, g.artifact, cfg.sla.hours
            ));
        }
    }
    Ok(notes)
}

/// Dataset hashes of the surface's rows on each baseline T0 day, compared with the stored
/// baselines. Returns (day, hash, rows) for every day and the drift notes.
fn dataset_baselines(
    catalog: &Catalog,
    cfg: &CertifyConfig,
    entry: &str,
    rebaseline: bool,
) -> Result<(Vec<DayHash>, Vec<String>)> {
    let conn = catalog.conn();
    let strings = |sql: &str, p: &[&dyn duckdb::ToSql]| -> Result<Vec<String>> {
        let mut stmt = conn.prepare(sql).ctx(|| "baselines".into())?;
        let rows = stmt.query_map(p, |r| r.get::<_, String>(0)).ctx(|| "baselines".into())?;
        rows.collect::<std::result::Result<_, _>>().ctx(|| "baselines".into())
    };
    let mut days = cfg.baseline_days.clone();
    if days.is_empty() {
        days = strings(
            "SELECT DISTINCT CAST(t0_day AS VARCHAR) FROM certify_baselines WHERE entrypoint = ? ORDER BY 1",
            &[&entry],
        )?;
    }
    if days.is_empty() || rebaseline && cfg.baseline_days.is_empty() {
        days = strings(
            &format!(
                "SELECT DISTINCT CAST(CAST(t0 AS DATE) AS VARCHAR) FROM surface_{entry} ORDER BY 1 LIMIT {}",
                cfg.baseline_days_default
            ),
            &[],
        )?;
    }
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for day in days {
        let (hash, rows) = catalog.content_hash(
            &format!("SELECT * FROM surface_{entry} WHERE CAST(t0 AS DATE) = CAST(? AS DATE)"),
            &[&day],
        )?;
        let previous: Option<String> = conn
            .query_row(
                "SELECT dataset_hash FROM certify_baselines WHERE entrypoint = ? AND t0_day = CAST(? AS DATE)
                 ORDER BY recorded_at DESC, run_id DESC LIMIT 1",
                params![entry, day],
                |r| r.get(0),
            )
            .ok();
        if let Some(prev) = previous.filter(|p| *p != hash)
            && !rebaseline
        {
            notes.push(format!("dataset drift on T0 day {day}: baseline {prev}, now {hash} ({rows} rows)"));
        }
        out.push((day, hash, rows));
    }
    Ok((out, notes))
}

pub fn run(root: &Root, clock: Clock, args: &CertifyArgs, progress: &dyn Progress) -> Result<CertifyReport> {
    let LoadedConfig { cfg, hash: cfg_hash, closures } = load_config(args)?;
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
    t0_project::schema::check(&catalog, &args.project)?;
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
    for input in
        audit.manifest.inputs.iter().filter(|i| i.name.starts_with("canonical.") || i.name == t0_project::LEDGER_OUTPUT)
    {
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
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["certificates", "certify_baselines"])?;
    prepare(&catalog, &cfg)?;
    let conn = catalog.conn();

    let mut stores = Vec::new();
    let mut outputs = Vec::new();
    let mut baselines: Vec<(String, Vec<DayHash>)> = Vec::new();
    let mut all_ok = true;
    progress.phase("surfaces", Some(closures.len() as u64));
    for (store, files) in &closures {
        let entry = &store.entrypoint;
        let vdh = view_def_hash(files);
        let mut notes: Vec<String> =
            files.iter().flat_map(|(name, sql)| sqlcheck::violations(name, &sqlcheck::normalise(sql))).collect();
        let previous: Option<String> = conn
            .query_row(
                "SELECT view_def_hash FROM certificates WHERE entrypoint = ? AND status = 'CERTIFIED' ORDER BY certified_at DESC, run_id DESC LIMIT 1",
                params![entry],
                |r| r.get(0),
            )
            .ok();
        let mut drift = Vec::new();
        if let Some(prev) = previous.filter(|p| *p != vdh)
            && !args.rebaseline
        {
            drift.push(format!("view-definition drift in store {entry}: baseline {prev}, now {vdh}"));
        }
        let mut result = StoreResult {
            entrypoint: entry.clone(),
            files: files.iter().map(|(f, _)| f.clone()).collect(),
            status: "FAILED".into(),
            view_def_hash: vdh.clone(),
            dataset_hash: None,
            rows: 0,
            path: None,
            notes: Vec::new(),
        };
        // A closure that reads the clock or a label never runs.
        if notes.is_empty() {
            let (schema, batches) = build_surface(&catalog, entry, files)?;
            notes.extend(sla_violations(&catalog, &cfg, entry)?);
            let (days, dataset_drift) = dataset_baselines(&catalog, &cfg, entry, args.rebaseline)?;
            drift.extend(dataset_drift);
            if store.strict && !drift.is_empty() {
                notes.extend(drift.iter().map(|d| format!("{d} (strict store; --rebaseline accepts it)")));
            }
            if notes.is_empty() {
                if !drift.is_empty() {
                    notes.extend(drift.iter().map(|d| format!("{d} (drift-tolerant store: recorded and rebaselined)")));
                }
                let rel = format!("lake/surfaces/{entry}/{run_id}/surface.parquet");
                t0_table::write_parquet(&root.join(&rel), schema, &batches)?;
                let out = t0_manifest::record_output(
                    root,
                    &catalog,
                    &format!("surface.{entry}"),
                    Location::per_entity_t0(&rel),
                )?;
                result.status = "CERTIFIED".into();
                result.dataset_hash = Some(out.content_hash.clone());
                result.rows = out.rows.unwrap_or(0);
                result.path = Some(rel);
                outputs.push(out);
                baselines.push((entry.clone(), days));
            }
        }
        result.notes = notes;
        all_ok &= result.status == "CERTIFIED";
        stores.push(result);
        progress.advance(1);
    }
    progress.finish();

    let (t0_min, t0_max): (Option<String>, Option<String>) = conn
        .query_row("SELECT CAST(min(t0) AS VARCHAR), CAST(max(t0) AS VARCHAR) FROM t0_grid", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ctx(|| "T0 range".into())?;
    let now = clock.stamp();
    for s in &stores {
        let days = baselines.iter().find(|(e, _)| *e == s.entrypoint).map(|(_, d)| d.clone()).unwrap_or_default();
        let cert = serde_json::json!({
            "entrypoint": s.entrypoint, "status": s.status, "view_def_hash": s.view_def_hash,
            "dataset_hash": s.dataset_hash, "t0_min": t0_min, "t0_max": t0_max, "rows": s.rows,
            "certified_at": now, "run_id": run_id, "notes": s.notes,
            "baselines": days.iter().map(|(d, h, n)| serde_json::json!({"t0_day": d, "dataset_hash": h, "rows": n})).collect::<Vec<_>>(),
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
        for (day, hash, rows) in &days {
            conn.execute(
                "INSERT INTO certify_baselines VALUES (?, ?, CAST(? AS DATE), ?, ?, CAST(? AS TIMESTAMP))",
                params![run_id, s.entrypoint, day, hash, *rows as i64, ts(&now)],
            )
            .ctx(|| "record baseline".into())?;
        }
    }
    let status = if all_ok { "CERTIFIED" } else { "FAILED" };
    let stores_dir = match stores_dir(args) {
        Some(d) => {
            Some(std::fs::canonicalize(&d).map_err(|e| t0_core::config::unreadable(&d, e))?.display().to_string())
        }
        None => None,
    };
    let report = CertifyReport {
        run_id: run_id.clone(),
        stores_dir,
        project: args.project.provenance(),
        status: status.into(),
        stores,
    };
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
    view_def_unchanged(&cert)?;
    Ok(cert)
}

/// Refuse a certificate whose stores' SQL has changed since it was issued: re-hash each
/// certified closure from where it was read (the built-in stores, or the recorded directory).
fn view_def_unchanged(cert: &Loaded) -> Result<()> {
    let summary = &cert.manifest.summary;
    let dir = summary["stores_dir"].as_str().map(PathBuf::from);
    for s in summary["stores"].as_array().into_iter().flatten().filter(|s| s["status"] == "CERTIFIED") {
        let entry = s["entrypoint"].as_str().unwrap_or_default();
        let files: Vec<String> =
            s["files"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_string)).collect();
        let closure =
            files
                .iter()
                .map(|f| Ok((f.clone(), read_sql(dir.as_deref(), f)?)))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| Error::Refused(format!("store {entry} of certify run {}: {e}", cert.manifest.run_id)))?;
        let now = view_def_hash(&closure);
        let certified = s["view_def_hash"].as_str().unwrap_or_default();
        if now != certified {
            return Err(Error::Refused(format!(
                "view-definition drift: store {entry} was certified (run {}) as {certified}, its SQL now hashes to {now}; certify again",
                cert.manifest.run_id
            )));
        }
    }
    Ok(())
}

/// View-definition hash the certificate recorded for `entrypoint`.
pub fn certified_view_def(cert: &Loaded, entrypoint: &str) -> Option<String> {
    cert.manifest.summary["stores"].as_array()?.iter().find(|s| s["entrypoint"] == entrypoint)?["view_def_hash"]
        .as_str()
        .map(str::to_string)
}
