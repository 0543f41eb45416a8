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
pub mod declared;
pub mod grid;
pub mod labels;
pub mod replay;
pub mod sandbox;
pub mod sqlcheck;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use duckdb::params;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root, Stage, Verdict};
use t0_manifest::{Loaded, Location, StageRun};
use t0_project::Project;

pub const STAGE: t0_core::Stage = t0_core::Stage::Certify;

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
    /// Hand-written stores (project.yaml's `features.declared` adds the generated ones).
    #[serde(default)]
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
    pub(crate) fn sql(&self) -> String {
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
    /// T0 = every calendar point of `every` (day, week on `weekday`, month end, quarter end,
    /// year end, or the listed `dates`) + `offset_hours`, inside each entity's window: from
    /// `from` (its first observation known, or its creation) while it is live and not ended,
    /// up to the data (`until: data`) or the observations' completeness watermark.
    Calendar,
}

/// The calendar points of a [`GridMode::Calendar`] grid. A period's point is the instant it
/// ends (the first instant of the next period): a month-end T0 sees the whole month.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    Day,
    /// Every `weekday` at 00:00.
    Week,
    Month,
    Quarter,
    Year,
    /// The listed `dates` only.
    Dates,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Where a calendar grid's entity window starts.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WindowStart {
    /// Once an observation of the entity is known (it has been seen).
    #[default]
    FirstSeen,
    /// Once the entity's known creation time has passed.
    Created,
}

/// Where every calendar grid ends besides the entity's end.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WindowEnd {
    /// The clock and the latest availability in the observations.
    #[default]
    Data,
    /// Also the observations' completeness watermark (sources.yaml `complete_through`).
    Watermark,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    pub mode: GridMode,
    pub offset_hours: i64,
    #[serde(default = "seven")]
    pub every_days: i64,
    /// The first this many T0s of each entity (default 12; a calendar grid: no limit).
    #[serde(default)]
    pub max_per_entity: Option<i64>,
    // The calendar fields are left out of the serialised form when unset, so the definition
    // hash of a grid that does not use them is what it was before they existed.
    /// Calendar grid: the period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Every>,
    /// Calendar grid, `every: week`: the day of the week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<Weekday>,
    /// Calendar grid, `every: dates`: the dates (YYYY-MM-DD) or UTC times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<String>,
    /// Calendar grid: where each entity's window starts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub from: WindowStart,
    /// Calendar grid: where T0s stop besides the entity's end.
    #[serde(default, skip_serializing_if = "is_default")]
    pub until: WindowEnd,
    /// Only entities of this kind get T0s (others, e.g. parents, are context); default: all.
    #[serde(default)]
    pub entity_kind: Option<String>,
    /// Event types after which an entity gets no more T0s (every_k_days, at_observations).
    #[serde(default)]
    pub end_events: Vec<String>,
}

/// The largest T0 offset: a century either way (more is a typo, and overflows time).
pub const MAX_OFFSET_HOURS: i64 = 100 * 366 * 24;

fn seven() -> i64 {
    7
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

impl GridConfig {
    /// The most T0s one entity may have (`None`: no limit).
    pub fn max_t0s(&self) -> Option<i64> {
        match (self.max_per_entity, self.mode) {
            (Some(n), _) => Some(n.max(1)),
            (None, GridMode::Calendar) => None,
            (None, _) => Some(12),
        }
    }

    /// Cross-field rules of `t0:` (exit 2 naming the file).
    fn validate(&self, name: &str) -> Result<()> {
        let bad = |m: &str| Err(Error::config(name, format!("t0: {m}")));
        let calendar = self.mode == GridMode::Calendar;
        match (calendar, self.every) {
            (true, None) => return bad("mode calendar needs `every` (day, week, month, quarter, year or dates)"),
            (false, Some(_)) => return bad("`every` is for mode calendar (every_k_days counts `every_days`)"),
            _ => {}
        }
        if (self.every == Some(Every::Week)) != self.weekday.is_some() {
            return bad("`weekday` (monday … sunday) goes with `every: week`, and only with it");
        }
        if (self.every == Some(Every::Dates)) == self.dates.is_empty() {
            return bad("`dates` (a list of YYYY-MM-DD) goes with `every: dates`, and only with it");
        }
        if let Some(d) = self.dates.iter().find(|d| t0_core::clock::parse_utc(d).is_none()) {
            return bad(&format!("date {d:?} is not YYYY-MM-DD or a UTC time"));
        }
        if !calendar && (self.from != WindowStart::FirstSeen || self.until != WindowEnd::Data) {
            return bad("`from` and `until` are for mode calendar");
        }
        if self.max_per_entity.is_some_and(|n| n < 1) {
            return bad("max_per_entity must be at least 1");
        }
        if self.every_days < 1 {
            return bad("every_days must be at least 1 (0 would repeat every T0 of an entity)");
        }
        if self.offset_hours.abs() > MAX_OFFSET_HOURS {
            return bad(&format!(
                "offset_hours {} is more than a century ({MAX_OFFSET_HOURS} hours)",
                self.offset_hours
            ));
        }
        Ok(())
    }

    /// The calendar dates as SQL timestamps (UTC, normalised).
    pub(crate) fn date_literals(&self) -> Vec<String> {
        self.dates
            .iter()
            .filter_map(|d| t0_core::clock::parse_utc(d))
            .map(|t| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S")))
            .collect()
    }
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            mode: GridMode::FirstSeen,
            offset_hours: 24,
            every_days: 7,
            max_per_entity: None,
            every: None,
            weekday: None,
            dates: Vec::new(),
            from: WindowStart::FirstSeen,
            until: WindowEnd::Data,
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
    /// Why this store may change rows of T0s a previous run certified (a reason, recorded in
    /// every certificate). Without it a replay difference fails the store, tolerant or not.
    #[serde(default)]
    pub may_change_past: Option<String>,
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
    let dir = stores_dir(args);
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

fn validate(cfg: &CertifyConfig, name: &str) -> Result<()> {
    let bad = |m: String| Error::config(name, m);
    cfg.t0.validate(name)?;
    if cfg.stores.is_empty() {
        return Err(bad(
            "stores: at least one store is needed (here, or declared in project.yaml features.declared)".into()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &cfg.stores {
        if !t0_project::def::is_identifier(&s.entrypoint) || !seen.insert(&s.entrypoint) {
            return Err(bad(format!(
                "stores: entrypoint {:?} must be a unique lower-case identifier (a store declared in project.yaml counts)",
                s.entrypoint
            )));
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
            let horizon = replay::horizon(catalog, &report.knowledge, knowledge)?;
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
    };
    // A closure that reads the clock or a label never runs.
    if !p.notes.is_empty() {
        return Ok(Certified { result, output: None, days: Vec::new() });
    }
    let mut drift = view_def_drift(catalog, entry, &p.view_def_hash, ctx.rebaseline)?;
    let built = store::build(catalog, p, &ctx.params)?;
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
    // Every store's SQL is checked and dry-run before a store reads real data (exit 2).
    let prepared = store::prepare(&catalog, &cfg, &closures)?;
    let run_id = run.run_id(&defs.join(","));
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["certificates", "certify_baselines"])?;
    let now = clock.stamp();
    let watermark = grid_watermark(&catalog, &cfg.t0, &args.project)?;
    let through = grid::build(&catalog, &cfg.t0, &ts(&now), watermark.as_deref())?;
    let knowledge = replay::knowledge(&catalog)?;
    let mut windows = BTreeMap::new();
    let previous: Vec<Option<Previous>> = prepared
        .iter()
        .map(|p| previous(root, &catalog, &p.store.entrypoint, &knowledge, &mut windows))
        .collect::<Result<_>>()?;
    let ctx = RunCtx { root, cfg: &cfg, run_id: &run_id, rebaseline: args.rebaseline, params: store::params_sql(&cfg) };

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
    let stores_dir = match stores_dir(args) {
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
    };
    run.finish(&run_id, Some(status), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// The observations' completeness watermark when the grid stops there (`until: watermark`).
pub(crate) fn grid_watermark(catalog: &Catalog, g: &GridConfig, project: &Project) -> Result<Option<String>> {
    match g.until {
        WindowEnd::Watermark => {
            let declared = t0_project::completeness::declared(project)?;
            labels::watermark(catalog, &declared, "observations")
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
