//! `certify`: builds the T0 feature surfaces from the canonical tables through as-of views,
//! proves their SQL closures free of wall-clock and label reads, and writes them to Parquet
//! with a certificate. Labels are written beside them, outside every certified closure.
//!
//! The stores are the project's: SQL files (`feature-stores/`) run in order in a sandbox that
//! shows them only the as-of views, the T0 grid and the parameters (`sandbox`); the last
//! defines `surface_<entrypoint>`, one row per (entity, T0) of the grid (`grid`, decided as of
//! each T0). Parameters reach the SQL through the one-row `certify_params` table, so the files
//! themselves are fixed and hashed. Every run compares the rows the previous certified run
//! already covered (`replay`); `certify attack` injects late facts and measures what moves.

pub mod attack;
pub mod columns;
pub mod declared;
pub mod gather;
pub mod grid;
pub mod labels;
pub mod population;
pub mod replay;
pub mod sandbox;
pub mod sqlcheck;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use duckdb::params;
use population::Raw;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root, Stage, Verdict};
use t0_manifest::{Loaded, Location, StageRun};
use t0_project::Project;

pub const STAGE: t0_core::Stage = t0_core::Stage::Certify;

/// The configuration's types and checks are project declarations: in `t0-project` (no
/// catalog, fuzzed).
pub use t0_project::certify_config::{
    CertifyConfig, Every, GatedColumn, GridConfig, GridMode, MAX_OFFSET_HOURS, Param, SlaConfig, StoreConfig, Weekday,
    WindowEnd, WindowStart, validate,
};

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
    pub status: Verdict,
    pub view_def_hash: String,
    pub dataset_hash: Option<String>,
    pub rows: u64,
    pub path: Option<String>,
    pub notes: Vec<String>,
    /// The view definition with the grid, parameters and SLA: surfaces of equal definition
    /// are comparable row by row.
    #[serde(default)]
    pub definition_hash: String,
    /// The comparison with the previous certified surface of the same definition, if any.
    #[serde(default)]
    pub replay: Option<replay::Replay>,
    /// Which canonical columns each surface column reads (`columns`); none for a store that
    /// did not run, or a run from before lineage was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_lineage: Option<columns::Lineage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CertifyReport {
    pub run_id: String,
    /// Where the store SQL came from (absolute); `None` for the built-in project's stores.
    pub stores_dir: Option<String>,
    pub project: serde_json::Value,
    pub status: Verdict,
    pub stores: Vec<StoreResult>,
    /// The latest moment a T0 could take (the clock, and the data's latest availability).
    #[serde(default)]
    pub grid_through: Option<String>,
    /// Rows per (table, batch) the run knew: the next run's replay check starts from it.
    #[serde(default)]
    pub knowledge: replay::Knowledge,
    /// A bucket's run: the audit commit whose exported population it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<String>,
    /// A run gathered into the base root from a certify commit (`gather`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gathered: Option<gather::GatheredFrom>,
}

/// Store SQL `file` from `dir` (a project's feature stores or `--stores`), or the built-in
/// project's when `None`; `asof.sql` is the built-in as-of views. A file name must stay inside
/// its directory, and a directory may not ship its own `asof.sql` (exit 2).
fn read_sql(project: &Project, dir: Option<&Path>, file: &str) -> Result<String> {
    let plain = Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || file.is_empty() {
        return Err(Error::config(
            file,
            "a store file must be a relative path inside the stores directory (no `..`, no absolute path)",
        ));
    }
    if let Some(d) = dir
        && d.join(sandbox::ASOF_FILE).exists()
    {
        return Err(Error::config(
            d.join(sandbox::ASOF_FILE),
            "the as-of views are built into certify (the sandbox provides them to every store); a project cannot replace them: remove this file",
        ));
    }
    if file == sandbox::ASOF_FILE {
        return Ok(sandbox::ASOF_TEMPLATE.to_string());
    }
    if file.ends_with(declared::SUFFIX) {
        return Err(Error::config(
            file,
            format!(
                "names ending in {} are the stores certify generates from features.declared: rename the file",
                declared::SUFFIX
            ),
        ));
    }
    match dir {
        Some(d) => {
            let path = d.join(file);
            let (real, base) = (std::fs::canonicalize(&path), std::fs::canonicalize(d));
            if let (Ok(real), Ok(base)) = (&real, &base)
                && !real.starts_with(base)
            {
                return Err(Error::config(
                    &path,
                    format!("resolves to {}, outside the stores directory", real.display()),
                ));
            }
            t0_core::config::read_text(&path)
        }
        None => project.store_sql(file).map(|(_, sql)| sql),
    }
}

/// A file no store folder holds: the built-in as-of views or a generated store.
fn is_generated_or_asof(file: &str) -> bool {
    file == sandbox::ASOF_FILE || file.ends_with(declared::SUFFIX)
}

/// The directory store SQL is read from: `--stores`, else the project's folder (`None` for
/// the built-in project). The project's folder must be inside the project (exit 2).
fn stores_dir(args: &CertifyArgs) -> Result<Option<PathBuf>> {
    match (&args.stores_dir, args.project.dir()) {
        (Some(d), _) => Ok(Some(d.clone())),
        (None, Some(_)) => args.project.confined(&args.project.def.feature_stores).map(Some),
        (None, None) => Ok(None),
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

pub(crate) fn ts(t: &str) -> String {
    t.trim_end_matches('Z').to_string()
}

/// A store's SQL closure: (file name, SQL) in execution order.
pub type Closure = Vec<(String, String)>;
/// A baseline T0 day: (day, dataset hash, rows).
pub type DayHash = (String, String, u64);

/// A loaded configuration: the config, its hash, and each store with its closure.
pub struct LoadedConfig {
    pub cfg: CertifyConfig,
    pub hash: String,
    pub closures: Vec<(StoreConfig, Closure)>,
}

pub fn load_config(args: &CertifyArgs) -> Result<LoadedConfig> {
    let (name, text) = args.project.read_or(args.config.as_deref(), &args.project.def.certify)?;
    let mut cfg: CertifyConfig = t0_core::config::parse_yaml(&name, &text)?;
    let generated = declared::closures(&args.project.def);
    cfg.stores.extend(generated.iter().map(|(s, _)| s.clone()));
    validate(&cfg, &name)?;
    let cfg_hash =
        t0_core::blake3_hex(format!("{}|{}", t0_core::blake3_hex(text.as_bytes()), args.project.hash).as_bytes());
    let dir = stores_dir(args)?;
    let mut closures = Vec::new();
    for s in cfg.stores.iter().filter(|s| !generated.iter().any(|(g, _)| g.entrypoint == s.entrypoint)) {
        let files = s
            .files
            .iter()
            .map(|f| Ok((f.clone(), read_sql(&args.project, dir.as_deref(), f)?)))
            .collect::<Result<Vec<_>>>()?;
        closures.push((s.clone(), files));
    }
    closures.extend(generated);
    Ok(LoadedConfig { cfg, hash: cfg_hash, closures })
}

/// One store's certification: its result, and on success its output and baseline days.
struct Certified {
    result: StoreResult,
    output: Option<t0_manifest::Output>,
    days: Vec<DayHash>,
}

/// The latest run that certified a store (`?`), in recording order: with a pinned clock two
/// runs share a certification time.
const LATEST_CERTIFIED: &str = "FROM certificates c JOIN manifests m ON m.stage = 'certify' AND m.run_id = c.run_id
     WHERE c.entrypoint = ? AND c.status = 'CERTIFIED' ORDER BY m.seq DESC LIMIT 1";

/// What the previous certified run of a store offers the replay check.
struct Previous {
    run_id: String,
    definition_hash: String,
    surface: PathBuf,
    /// The t0 condition of the rows to compare ([`replay::window`]).
    window: String,
}

/// The latest run that certified `entry`, with its surface verified against its recorded
/// hash (a tampered or missing previous surface is exit 3). `None` when there is none, or it
/// predates the replay record. `windows` keeps each previous run's replay window: the scan for
/// the versions it did not know is done once per run, not once per store.
fn previous(
    root: &Root,
    catalog: &Catalog,
    raw: &Raw,
    entry: &str,
    knowledge: &replay::Knowledge,
    windows: &mut BTreeMap<String, String>,
) -> Result<Option<Previous>> {
    let run: Option<String> =
        catalog.conn().query_row(&format!("SELECT c.run_id {LATEST_CERTIFIED}"), params![entry], |r| r.get(0)).ok();
    let Some(run) = run else { return Ok(None) };
    let loaded = t0_manifest::load(root, catalog, STAGE, Some(&run))?;
    let report = certify_report(&loaded)?;
    let Some(s) = report.stores.iter().find(|s| s.entrypoint == entry) else { return Ok(None) };
    let Some(through) = report.grid_through.clone().filter(|_| !s.definition_hash.is_empty()) else {
        return Ok(None);
    };
    let out = loaded.manifest.output(&format!("surface.{entry}"))?;
    t0_manifest::verify_output(root, catalog, &loaded.manifest, out)?;
    let window = match windows.get(&run) {
        Some(w) => w.clone(),
        None => {
            let horizon = replay::horizon(catalog, raw, &report.knowledge, knowledge)?;
            let w = replay::window(&through, horizon.as_deref());
            windows.insert(run.clone(), w.clone());
            w
        }
    };
    Ok(Some(Previous { run_id: run, definition_hash: s.definition_hash.clone(), surface: out.path(root)?, window }))
}

/// Everything a run needs besides the catalog: config, root, clock-derived values.
struct RunCtx<'a> {
    root: &'a Root,
    cfg: &'a CertifyConfig,
    run_id: &'a str,
    rebaseline: bool,
    params: String,
    raw: Raw,
}

/// Build, check and (when nothing failed) write one store's surface.
fn certify_store(
    ctx: &RunCtx,
    catalog: &Catalog,
    p: &store::Prepared,
    prev: Option<&Previous>,
    progress: &dyn Progress,
) -> Result<Certified> {
    let entry = &p.store.entrypoint;
    let mut result = StoreResult {
        entrypoint: entry.clone(),
        files: p.files.iter().map(|(f, _)| f.clone()).collect(),
        status: Verdict::Failed,
        view_def_hash: p.view_def_hash.clone(),
        dataset_hash: None,
        rows: 0,
        path: None,
        notes: p.notes.clone(),
        definition_hash: p.definition_hash.clone(),
        replay: None,
        column_lineage: p.lineage.clone(),
    };
    // A closure that reads the clock or a label never runs.
    if !p.notes.is_empty() {
        return Ok(Certified { result, output: None, days: Vec::new() });
    }
    let mut drift = view_def_drift(catalog, entry, &p.view_def_hash, ctx.rebaseline)?;
    let built = store::build(catalog, p, &ctx.params, &ctx.raw)?;
    let c = built.session.conn();
    let mut notes = built.grid_notes.clone();
    result.notes.extend(built.coerced.iter().cloned());
    notes.extend(store::sla_violations(c, ctx.cfg, entry)?);
    let (days, dataset_drift) = store::dataset_baselines(c, ctx.cfg, entry, ctx.rebaseline)?;
    drift.extend(dataset_drift);
    if p.store.strict && !drift.is_empty() {
        notes.extend(drift.iter().map(|d| format!("{d} (strict store; --rebaseline accepts it)")));
    }
    let rel = format!("lake/surfaces/{entry}/{}/surface.parquet", ctx.run_id);
    let path = ctx.root.join(&rel);
    t0_table::write_parquet(&path, built.schema.clone(), &built.batches)?;
    drop(built);
    if let Some(prev) = prev.filter(|pr| pr.definition_hash == p.definition_hash) {
        let started = std::time::Instant::now();
        let r = replay::compare(&prev.run_id, &prev.surface, &path, &prev.window).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        progress.note(&format!(
            "store {entry}: replay of {} rows against run {} in {:.2} s",
            r.compared,
            &prev.run_id[..16.min(prev.run_id.len())],
            started.elapsed().as_secs_f64()
        ));
        if r.differs() {
            match &p.store.may_change_past {
                None => notes.push(format!("{} (no fact available before these T0s arrived since: a leak from after T0, or a non-deterministic store)", r.describe())),
                Some(why) => result.notes.push(format!("{} (the project declares why: {why})", r.describe())),
            }
        }
        result.replay = Some(r);
    }
    if !notes.is_empty() {
        let _ = std::fs::remove_file(&path);
        result.notes.extend(notes);
        return Ok(Certified { result, output: None, days: Vec::new() });
    }
    result.notes.extend(drift.iter().map(|d| format!("{d} (drift-tolerant store: recorded and rebaselined)")));
    let out =
        t0_manifest::record_output(ctx.root, catalog, &format!("surface.{entry}"), Location::per_entity_t0(&rel))?;
    result.status = Verdict::Certified;
    result.dataset_hash = Some(out.content_hash.clone());
    result.rows = out.rows.unwrap_or(0);
    result.path = Some(rel);
    Ok(Certified { result, output: Some(out), days })
}

/// View-definition drift against the last CERTIFIED certificate of `entry`.
fn view_def_drift(catalog: &Catalog, entry: &str, vdh: &str, rebaseline: bool) -> Result<Vec<String>> {
    let previous: Option<String> = catalog
        .conn()
        .query_row(&format!("SELECT c.view_def_hash {LATEST_CERTIFIED}"), params![entry], |r| r.get(0))
        .ok();
    Ok(match previous.filter(|p| p != vdh) {
        Some(prev) if !rebaseline => {
            vec![format!("view-definition drift in store {entry}: baseline {prev}, now {vdh}")]
        }
        _ => Vec::new(),
    })
}

/// The audit gate: the latest audit passed and the canonical data is still what it passed.
fn consume_audit(root: &Root, catalog: &Catalog, run: &mut StageRun) -> Result<Loaded> {
    let audit = t0_manifest::load(root, catalog, Stage::Audit, None)?;
    if audit.manifest.gate != Some(Verdict::Pass) {
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
        t0_manifest::verify_output(root, catalog, &audit.manifest, input).map_err(|e| {
            Error::Refused(format!(
                "the canonical data changed after the passing audit {}: audit again ({e})",
                audit.manifest.run_id
            ))
        })?;
        run.add_input(input.clone());
    }
    Ok(audit)
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
    let audit = consume_audit(root, &catalog, &mut run)?;
    let raw = population::attach(root, &catalog, &audit)?;
    // Every store's SQL is checked and dry-run before a store reads real data (exit 2).
    let prepared = store::prepare(&catalog, &cfg, &closures)?;
    let run_id = match raw.commit() {
        None => run.run_id(&defs.join(",")),
        Some(commit) => run.run_id(&format!("{}|population of audit commit {commit}", defs.join(","))),
    };
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["certificates", "certify_baselines"])?;
    let now = clock.stamp();
    let watermark = grid_watermark(&catalog, &cfg.t0, &args.project, &raw)?;
    let through = grid::build(&catalog, &cfg.t0, &ts(&now), watermark.as_deref(), &raw)?;
    let knowledge = replay::knowledge(&catalog, &raw)?;
    let mut windows = BTreeMap::new();
    let previous: Vec<Option<Previous>> = prepared
        .iter()
        .map(|p| previous(root, &catalog, &raw, &p.store.entrypoint, &knowledge, &mut windows))
        .collect::<Result<_>>()?;
    let ctx =
        RunCtx { root, cfg: &cfg, run_id: &run_id, rebaseline: args.rebaseline, params: store::params_sql(&cfg), raw };

    let mut done = Vec::new();
    progress.phase("surfaces", Some(prepared.len() as u64));
    for (p, prev) in prepared.iter().zip(&previous) {
        done.push(certify_store(&ctx, &catalog, p, prev.as_ref(), progress)?);
        progress.advance(1);
    }
    progress.finish();

    let outputs = write_certificates(&ctx, &catalog, &done, &audit, &now)?;
    let all_ok = done.iter().all(|d| d.result.status == Verdict::Certified);
    let status = if all_ok { Verdict::Certified } else { Verdict::Failed };
    let stores_dir = match stores_dir(args)? {
        // A project of declared stores only may have no store folder at all.
        Some(d) if !d.exists() && cfg.stores.iter().all(|s| s.files.iter().all(|f| is_generated_or_asof(f))) => {
            Some(d.display().to_string())
        }
        Some(d) => {
            Some(std::fs::canonicalize(&d).map_err(|e| t0_core::config::unreadable(&d, e))?.display().to_string())
        }
        None => None,
    };
    let report = CertifyReport {
        run_id: run_id.clone(),
        stores_dir,
        project: args.project.provenance(),
        status,
        stores: done.into_iter().map(|d| d.result).collect(),
        grid_through: through,
        knowledge,
        population: ctx.raw.commit().map(str::to_string),
        gathered: None,
    };
    run.finish(&run_id, Some(status), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// The observations' completeness watermark when the grid stops there (`until: watermark`).
pub(crate) fn grid_watermark(
    catalog: &Catalog,
    g: &GridConfig,
    project: &Project,
    raw: &Raw,
) -> Result<Option<String>> {
    match g.until {
        WindowEnd::Watermark => {
            let declared = t0_project::completeness::declared(project)?;
            let source = format!("{}.observations", raw.qualifier());
            labels::watermark_from(catalog, &declared, "observations", &source)
        }
        WindowEnd::Data => Ok(None),
    }
}

/// Write each store's certificate (file and catalog row) and baselines; returns every output
/// of the run (surfaces first).
fn write_certificates(
    ctx: &RunCtx,
    catalog: &Catalog,
    done: &[Certified],
    audit: &Loaded,
    now: &str,
) -> Result<Vec<t0_manifest::Output>> {
    let conn = catalog.conn();
    let (t0_min, t0_max): (Option<String>, Option<String>) = conn
        .query_row(
            &format!("SELECT CAST(min(t0) AS VARCHAR), CAST(max(t0) AS VARCHAR) FROM {}", grid::GRID_TABLE),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx(|| "T0 range".into())?;
    let mut outputs: Vec<t0_manifest::Output> = done.iter().filter_map(|d| d.output.clone()).collect();
    for Certified { result: s, days, .. } in done {
        let cert = serde_json::json!({
            "entrypoint": s.entrypoint, "status": s.status, "view_def_hash": s.view_def_hash,
            "definition_hash": s.definition_hash,
            "dataset_hash": s.dataset_hash, "t0_min": t0_min, "t0_max": t0_max, "rows": s.rows,
            "certified_at": now, "run_id": ctx.run_id, "notes": s.notes, "replay": s.replay,
            "baselines": days.iter().map(|(d, h, n)| serde_json::json!({"t0_day": d, "dataset_hash": h, "rows": n})).collect::<Vec<_>>(),
            "upstream": [{"stage": "audit", "run_id": audit.manifest.run_id, "manifest_hash": audit.manifest_hash}],
        });
        let rel = format!("lake/surfaces/{}/{}/certificate.json", s.entrypoint, ctx.run_id);
        let mut bytes = serde_json::to_vec_pretty(&cert).expect("json");
        bytes.push(b'\n');
        t0_core::fsio::write_atomic(&ctx.root.join(&rel), &bytes)?;
        outputs.push(t0_manifest::record_output(
            ctx.root,
            catalog,
            &format!("certificate.{}", s.entrypoint),
            Location::File { path: rel },
        )?);
        conn.execute(
            "INSERT INTO certificates VALUES (?, ?, ?, CAST(? AS TIMESTAMP), ?, ?, CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), ?, ?)",
            params![ctx.run_id, s.entrypoint, s.status.as_str(), ts(now), s.view_def_hash, s.dataset_hash.clone().unwrap_or_default(), t0_min, t0_max, s.rows as i64, s.notes.join("; ")],
        )
        .ctx(|| "record certificate".into())?;
        for (day, hash, rows) in days {
            conn.execute(
                "INSERT INTO certify_baselines VALUES (?, ?, CAST(? AS DATE), ?, ?, CAST(? AS TIMESTAMP))",
                params![ctx.run_id, s.entrypoint, day, hash, *rows as i64, ts(now)],
            )
            .ctx(|| "record baseline".into())?;
        }
    }
    Ok(outputs)
}

/// The downstream guard: the latest certify run must be CERTIFIED and not older than
/// `max_age_days` by `clock`. Returns the verified manifest.
pub fn guard(root: &Root, catalog: &Catalog, clock: &Clock, max_age_days: i64) -> Result<Loaded> {
    let cert = t0_manifest::load(root, catalog, STAGE, None)?;
    if cert.manifest.gate != Some(Verdict::Certified) {
        return Err(Error::Refused(format!(
            "certify run {} is {}: no training or scoring on an uncertified surface",
            cert.manifest.run_id,
            cert.manifest.gate.map_or("not certified", Verdict::as_str)
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
    // The certificates are what this guard stands on: each must be the file certify wrote.
    for o in cert.manifest.outputs.iter().filter(|o| o.name.starts_with("certificate.")) {
        t0_manifest::verify_output(root, catalog, &cert.manifest, o)?;
    }
    Ok(cert)
}

/// Refuse a certificate whose stores' SQL has changed since it was issued: re-hash each
/// certified closure from where it was read (the built-in stores, or the recorded directory).
fn view_def_unchanged(cert: &Loaded) -> Result<()> {
    let report = certify_report(cert)?;
    let dir = report.stores_dir.as_deref().map(PathBuf::from);
    // No recorded directory: the stores were the built-in project's.
    let builtin = Project::builtin();
    let mut project: Option<Project> = None;
    for s in report.stores.iter().filter(|s| s.status == Verdict::Certified) {
        let closure = s
            .files
            .iter()
            .map(|f| {
                if !f.ends_with(declared::SUFFIX) {
                    return Ok((f.clone(), read_sql(&builtin, dir.as_deref(), f)?));
                }
                // A generated store: generate it again from the project as it is now.
                if project.is_none() {
                    project = Some(certified_project(&report)?);
                }
                let def = &project.as_ref().expect("just loaded").def;
                let sql = declared::file_sql(def, f)
                    .ok_or_else(|| Error::Refused(format!("project.yaml no longer declares store {}", s.entrypoint)))?;
                Ok((f.clone(), sql))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                Error::Refused(format!("store {} of certify run {}: {e}", s.entrypoint, cert.manifest.run_id))
            })?;
        let now = view_def_hash(&closure);
        if now != s.view_def_hash {
            return Err(Error::Refused(format!(
                "view-definition drift: store {} was certified (run {}) as {}, its SQL now hashes to {now}; certify again",
                s.entrypoint, cert.manifest.run_id, s.view_def_hash
            )));
        }
    }
    Ok(())
}

/// The project a certify run read (its recorded directory, or the built-in one).
fn certified_project(report: &CertifyReport) -> Result<Project> {
    let dir = report.project["dir"].as_str().map(PathBuf::from);
    Project::load(dir.as_deref())
}

/// The report a certify run recorded in its (verified) manifest.
fn certify_report(cert: &Loaded) -> Result<CertifyReport> {
    serde_json::from_value(cert.manifest.summary.clone())
        .map_err(|e| Error::Refused(format!("certify run {}: unreadable summary: {e}", cert.manifest.run_id)))
}

/// View-definition hash the certificate recorded for `entrypoint`.
pub fn certified_view_def(cert: &Loaded, entrypoint: &str) -> Option<String> {
    let report = certify_report(cert).ok()?;
    report.stores.into_iter().find(|s| s.entrypoint == entrypoint).map(|s| s.view_def_hash)
}
