//! `acquire`: source files (CSV, Parquet, NDJSON, media) -> raw landing Parquet -> canonical,
//! versioned, two-clock tables. The only stage that touches source formats: strict, lossless,
//! resumable, and it accounts for every row.

/// Source mappings are project declarations: parsed in `t0-project` (no catalog, fuzzed).
pub use t0_project::sources as config;
pub mod infer;
pub mod ingest;
pub mod media;
mod split;
pub use t0_source::reader;

use std::path::{Path, PathBuf};

use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};
use t0_project::Project;
pub use t0_project::vocab::{CANONICAL, canonical_name};

pub use config::{AcquireConfig, Availability, SourceConfig};
pub use ingest::FileReport;

pub const STAGE: t0_core::Stage = t0_core::Stage::Acquire;

pub use t0_project::canonical_outputs;

pub struct AcquireArgs {
    pub project: Project,
    pub input: PathBuf,
    /// Source mapping; default: the project's.
    pub config: Option<PathBuf>,
    /// Add measures the project declares that a root with data lacks (a recorded change).
    pub evolve_schema: bool,
    /// Rows per committed chunk (the unit of resume).
    pub chunk_rows: usize,
    /// A file under `input` that no source reads is an error (exit 4) instead of a warning.
    pub deny_unmatched: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AcquireReport {
    pub run_id: String,
    pub files: Vec<FileReport>,
    /// Sources whose glob matched no file in the input directory.
    pub sources_without_files: Vec<String>,
    /// Files under the input directory that no source's glob matches and no media root holds:
    /// not read, so named (relative to the input directory).
    pub unmatched_files: Vec<String>,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
    /// Rows of entities in other buckets (`--bucket k/N`): read and left to their buckets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_other_buckets: u64,
    /// The change made to the measure columns of `observations` since the last finished
    /// acquire (by this run, or by an interrupted one it completes), if any.
    pub schema_change: Option<t0_project::schema::SchemaChange>,
    /// The last `schema_changes` entry this report accounts for.
    pub schema_seq: i64,
}

/// The source mapping (`path`, else the project's) validated against the project. Returns
/// the mapping and the hash of its text and the project's.
pub fn load_config(path: Option<&Path>, project: &Project) -> Result<(AcquireConfig, String)> {
    let (name, text) = project.read_or(path, &project.def.sources)?;
    let mut cfg: AcquireConfig = t0_core::config::parse_yaml(&name, &text)?;
    cfg.validate(&name, project)?;
    cfg.origin = name;
    let hash = t0_core::blake3_hex(format!("{}|{}", t0_core::blake3_hex(text.as_bytes()), project.hash).as_bytes());
    Ok((cfg, hash))
}

/// `path` resolved (symlinks followed) when it stays inside `input` (resolved), else None.
fn inside(input: &Path, path: &Path) -> Result<Option<PathBuf>> {
    let base = input.canonicalize().map_err(|e| Error::io(input, e))?;
    Ok(path.canonicalize().ok().filter(|p| p.starts_with(&base)))
}

/// Files of `input` matching the source's glob, in name order. A directory or file that
/// leads outside `input` (a symlink) is refused, never followed (exit 4).
fn matching_files(input: &Path, src: &SourceConfig) -> Result<Vec<PathBuf>> {
    let (dir, pattern) = match src.glob.rsplit_once('/') {
        Some((d, p)) => (input.join(d), p.to_string()),
        None => (input.to_path_buf(), src.glob.clone()),
    };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let outside = |p: &Path| {
        Error::BadInput(format!(
            "{} (source {}) leads outside --input {} (a symlink): not read",
            p.display(),
            src.name,
            input.display()
        ))
    };
    inside(input, &dir)?.ok_or_else(|| outside(&dir))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if config::glob_match(&pattern, &name) && e.path().is_file() {
            inside(input, &e.path())?.ok_or_else(|| outside(&e.path()))?;
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Every file under `dir` (symlinks listed, not followed), relative to `base`, except those
/// under a directory in `skip` (normalised paths).
fn files_under(base: &Path, dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<()> {
    if skip.contains(&dir.components().collect::<PathBuf>()) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let path = e.path();
        let ty = e.file_type().map_err(|e| Error::io(&path, e))?;
        if ty.is_dir() {
            files_under(base, &path, skip, out)?;
        } else if ty.is_file() || ty.is_symlink() {
            out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// Files under `input` no source reads: not matched by a glob and not inside a media root.
fn unmatched(input: &Path, cfg: &AcquireConfig, matched: &[PathBuf]) -> Result<Vec<String>> {
    let media: Vec<PathBuf> = cfg
        .sources
        .iter()
        .filter_map(|s| s.media_root.as_ref())
        .map(|m| input.join(m).components().collect())
        .collect();
    let mut all = Vec::new();
    files_under(input, input, &media, &mut all)?;
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|f| !matched.iter().any(|m| m.strip_prefix(input).is_ok_and(|m| m == f)))
        .map(|f| f.display().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Each source with the files its glob matched.
type Planned<'a> = Vec<(&'a SourceConfig, Vec<PathBuf>)>;

/// The sources in ingest order (entities first, so references from the other tables can be
/// checked against them) with their files, and the files under `input` no source reads
/// (refused with `deny_unmatched`).
fn plan<'a>(args: &AcquireArgs, cfg: &'a AcquireConfig) -> Result<(Planned<'a>, Vec<String>)> {
    confine_media_roots(&args.input, cfg)?;
    let mut sources: Vec<&SourceConfig> = cfg.sources.iter().collect();
    sources.sort_by_key(|s| CANONICAL.iter().position(|t| *t == s.table));
    let planned: Planned =
        sources.into_iter().map(|s| matching_files(&args.input, s).map(|f| (s, f))).collect::<Result<_>>()?;
    let matched: Vec<PathBuf> = planned.iter().flat_map(|(_, f)| f.iter().cloned()).collect();
    let unmatched_files = unmatched(&args.input, cfg, &matched)?;
    if args.deny_unmatched && !unmatched_files.is_empty() {
        return Err(Error::BadInput(format!(
            "{} file(s) under --input {} match no source and would not be read: {}",
            unmatched_files.len(),
            args.input.display(),
            unmatched_files.join(", ")
        )));
    }
    Ok((planned, unmatched_files))
}

/// Each source's media root must resolve inside `input` (exit 2 naming the mapping).
fn confine_media_roots(input: &Path, cfg: &AcquireConfig) -> Result<()> {
    for s in &cfg.sources {
        let Some(m) = &s.media_root else { continue };
        let dir = input.join(m);
        if dir.exists() && inside(input, &dir)?.is_none() {
            return Err(Error::config(
                &cfg.origin,
                format!(
                    "source {}: media_root {m:?} leads outside --input {} (a symlink to {})",
                    s.name,
                    input.display(),
                    dir.canonicalize().map(|p| p.display().to_string()).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

pub fn run(root: &Root, clock: Clock, args: &AcquireArgs, progress: &dyn Progress) -> Result<AcquireReport> {
    let (cfg, config_hash) = load_config(args.config.as_deref(), &args.project)?;
    if !args.input.is_dir() {
        return Err(Error::Usage(format!("--input {} is not a directory", args.input.display())));
    }
    if args.chunk_rows == 0 {
        return Err(Error::Usage("--chunk-rows must be at least 1".into()));
    }
    let (planned, unmatched_files) = plan(args, &cfg)?;
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::ensure(&catalog, &args.project, args.evolve_schema, &clock.stamp())?;
    let (schema_change, schema_seq) = t0_project::schema::since(&catalog, reported_schema_seq(root, &catalog)?)?;
    let recorded = recorded_batches(root, &catalog)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash.clone());
    let ingest = ingest::Ingest {
        recorded: &recorded,
        root,
        catalog: &catalog,
        clock: &clock,
        chunk_rows: args.chunk_rows,
        progress,
        project: &args.project,
        config_hash: &config_hash,
    };
    let mut files = Vec::new();
    let mut without = Vec::new();
    for (src, matched) in planned {
        if matched.is_empty() {
            without.push(src.name.clone());
        }
        for path in matched {
            progress.phase(&src.name, None);
            let rep = ingest.file(src, &args.input, &path)?;
            progress.finish();
            run.add_input(t0_manifest::Output {
                name: format!("source.{}.{}", src.name, path.file_name().unwrap_or_default().to_string_lossy()),
                location: Location::File { path: path.display().to_string() },
                content_hash: rep.file_hash.clone(),
                rows: Some(rep.rows_read),
                files: Default::default(),
            });
            files.push(rep);
        }
    }
    let run_id = run.run_id("");
    let report = AcquireReport {
        run_id: run_id.clone(),
        rows_read: files.iter().map(|f| f.rows_read).sum(),
        rows_ingested: files.iter().map(|f| f.rows_ingested).sum(),
        rows_unchanged: files.iter().map(|f| f.rows_unchanged).sum(),
        rows_quarantined: files.iter().map(|f| f.rows_quarantined).sum(),
        rows_other_buckets: files.iter().map(|f| f.rows_other_buckets).sum(),
        sources_without_files: without,
        unmatched_files,
        files,
        schema_change,
        schema_seq,
    };
    if report.files.iter().all(|f| f.skipped_already_ingested) {
        return Err(Error::NothingToDo(if report.files.is_empty() {
            format!("no file in {} matches any source", args.input.display())
        } else {
            "every source file was ingested before".into()
        }));
    }
    // A bucket that read facts only of other buckets still records its run: it landed the
    // file (landing copies are replicated) and `commit` needs every bucket to have read the
    // same files.
    if report.rows_ingested == 0 && report.rows_other_buckets == 0 {
        return Err(Error::NothingToDo(format!(
            "no new facts: {} rows read, {} unchanged, {} quarantined",
            report.rows_read, report.rows_unchanged, report.rows_quarantined
        )));
    }
    let mut outputs = canonical_outputs(root, &catalog)?;
    outputs.extend(landing_outputs(root, &catalog, &report.files)?);
    // The manifest states what was ingested, not where an interrupted run left off: a resumed
    // run's manifest is byte for byte an uninterrupted one's.
    let mut summary = serde_json::to_value(&report).expect("plain struct");
    for f in summary["files"].as_array_mut().into_iter().flatten() {
        f["resumed_after_row"] = 0.into();
    }
    run.finish(&run_id, None, outputs, summary)?;
    Ok(report)
}

/// The landing copy of every file this run ingested, one output per batch: a byte changed in
/// `lake/raw` after the run is found by `verify` like any other output's. (A file whose rows
/// were all unchanged or quarantined lands parts too, but its run records no manifest: it
/// exits 99; `verify` then checks only that its landing copy is there.)
fn landing_outputs(root: &Root, catalog: &Catalog, files: &[FileReport]) -> Result<Vec<t0_manifest::Output>> {
    files
        .iter()
        .filter(|f| !f.skipped_already_ingested && f.chunks > 0)
        .map(|f| {
            let loc = Location::Parquet {
                path: format!("lake/raw/{}/{}", f.source, f.batch_id),
                key: vec!["source_line".into()],
            };
            t0_manifest::record_output(root, catalog, &format!("{LANDING_OUTPUT}{}.{}", f.source, f.batch_id), loc)
        })
        .collect()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The prefix of a landing copy's output name: `landing.<source>.<batch_id>`.
pub const LANDING_OUTPUT: &str = "landing.";

/// The last schema change a finished acquire reported: a run that completes an interrupted
/// one reports the changes that run made, so the two manifests are the same. (A manifest from
/// before `schema_seq` existed reported everything up to now.)
fn reported_schema_seq(root: &Root, catalog: &Catalog) -> Result<i64> {
    if t0_manifest::latest_run_id(catalog, STAGE)?.is_none() {
        return Ok(0);
    }
    let last = t0_manifest::load(root, catalog, STAGE, None)?;
    Ok(last.manifest.summary.get("schema_seq").and_then(serde_json::Value::as_i64).unwrap_or(i64::MAX))
}

/// The ingest batches the inputs of finished acquire runs name (a source file's batch is its
/// source and the first 16 hex digits of its content hash).
fn recorded_batches(root: &Root, catalog: &Catalog) -> Result<std::collections::BTreeSet<String>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT run_id FROM manifests WHERE stage = ? ORDER BY seq")
        .map_err(|e| Error::internal("acquire manifests", e))?;
    let runs: Vec<String> = stmt
        .query_map([STAGE.as_str()], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| Error::internal("acquire manifests", e))?;
    let mut batches = std::collections::BTreeSet::new();
    for run in runs {
        let m = t0_manifest::load(root, catalog, STAGE, Some(&run))?;
        for input in &m.manifest.inputs {
            if let Some(source) = input.name.strip_prefix("source.").and_then(|n| n.split('.').next()) {
                batches.insert(format!("{source}-{}", &input.content_hash[..16.min(input.content_hash.len())]));
            }
        }
    }
    Ok(batches)
}
