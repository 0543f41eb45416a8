//! `acquire`: source files (CSV, Parquet, NDJSON, media) -> raw landing Parquet -> canonical,
//! versioned, two-clock tables. The only stage that touches source formats: strict, lossless,
//! resumable, and it accounts for every row.

pub mod config;
pub mod infer;
pub mod ingest;
pub mod media;
pub mod reader;

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
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AcquireReport {
    pub run_id: String,
    pub files: Vec<FileReport>,
    /// Sources whose glob matched no file in the input directory.
    pub sources_without_files: Vec<String>,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
    /// The change made to the measure columns of `observations`, if any.
    pub schema_change: Option<t0_project::schema::SchemaChange>,
}

/// The source mapping (`path`, else the project's) validated against the project. Returns
/// the mapping and the hash of its text and the project's.
pub fn load_config(path: Option<&Path>, project: &Project) -> Result<(AcquireConfig, String)> {
    let (name, text) = project.read_or(path, &project.def.sources)?;
    let cfg: AcquireConfig = t0_core::config::parse_yaml(&name, &text)?;
    cfg.validate(&name, project)?;
    let hash = t0_core::blake3_hex(format!("{}|{}", t0_core::blake3_hex(text.as_bytes()), project.hash).as_bytes());
    Ok((cfg, hash))
}

/// Files of `input` matching the source's glob, in name order.
fn matching_files(input: &Path, src: &SourceConfig) -> Result<Vec<PathBuf>> {
    let (dir, pattern) = match src.glob.rsplit_once('/') {
        Some((d, p)) => (input.join(d), p.to_string()),
        None => (input.to_path_buf(), src.glob.clone()),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if config::glob_match(&pattern, &name) && e.path().is_file() {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

pub fn run(root: &Root, clock: Clock, args: &AcquireArgs, progress: &dyn Progress) -> Result<AcquireReport> {
    let (cfg, config_hash) = load_config(args.config.as_deref(), &args.project)?;
    if !args.input.is_dir() {
        return Err(Error::Usage(format!("--input {} is not a directory", args.input.display())));
    }
    if args.chunk_rows == 0 {
        return Err(Error::Usage("--chunk-rows must be at least 1".into()));
    }
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let schema_change = t0_project::schema::ensure(&catalog, &args.project, args.evolve_schema, &clock.stamp())?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let ingest = ingest::Ingest {
        root,
        catalog: &catalog,
        clock: &clock,
        chunk_rows: args.chunk_rows,
        progress,
        project: &args.project,
    };
    // Entities first, so references from the other tables can be checked against them.
    let mut sources: Vec<&SourceConfig> = cfg.sources.iter().collect();
    sources.sort_by_key(|s| CANONICAL.iter().position(|t| *t == s.table));
    let mut files = Vec::new();
    let mut without = Vec::new();
    for src in sources {
        let matched = matching_files(&args.input, src)?;
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
        sources_without_files: without,
        files,
        schema_change,
    };
    if report.files.iter().all(|f| f.skipped_already_ingested) {
        return Err(Error::NothingToDo(if report.files.is_empty() {
            format!("no file in {} matches any source", args.input.display())
        } else {
            "every source file was ingested before".into()
        }));
    }
    if report.rows_ingested == 0 {
        return Err(Error::NothingToDo(format!(
            "no new facts: {} rows read, {} unchanged, {} quarantined",
            report.rows_read, report.rows_unchanged, report.rows_quarantined
        )));
    }
    let outputs = canonical_outputs(root, &catalog)?;
    run.finish(&run_id, None, outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}
