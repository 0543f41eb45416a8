//! `acquire`: source files (CSV, Parquet, NDJSON, media) -> raw landing Parquet -> canonical,
//! versioned, two-clock tables. The only stage that touches source formats: strict, lossless,
//! resumable, and it accounts for every row.

pub mod config;
pub mod generate;
pub mod ingest;
pub mod media;
pub mod reader;
pub mod spec;

use std::path::{Path, PathBuf};

use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub use config::{AcquireConfig, Availability, SourceConfig};
pub use ingest::FileReport;

pub const STAGE: &str = "acquire";

/// The canonical tables, in dependency order (entities first).
pub const CANONICAL: &[&str] = &["entities", "observations", "events", "interactions", "artifacts"];

/// Output name of a canonical table in manifests.
pub fn canonical_name(table: &str) -> String {
    format!("canonical.{table}")
}

/// Describe every canonical table as a manifest output.
pub fn canonical_outputs(root: &Root, catalog: &Catalog) -> Result<Vec<t0_manifest::Output>> {
    CANONICAL
        .iter()
        .map(|t| {
            let key = spec::spec(t).expect("canonical table").hash_key;
            let loc = Location::Table {
                table: t.to_string(),
                key: key.iter().map(|k| k.to_string()).collect(),
                run_id: None,
            };
            t0_manifest::record_output(root, catalog, &canonical_name(t), loc)
        })
        .collect()
}

pub struct AcquireArgs {
    pub input: PathBuf,
    pub config: Option<PathBuf>,
    /// Rows per committed chunk (the unit of resume).
    pub chunk_rows: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct AcquireReport {
    pub run_id: String,
    pub files: Vec<FileReport>,
    /// Sources whose glob matched no file in the input directory.
    pub sources_without_files: Vec<String>,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
}

pub fn load_config(path: Option<&Path>) -> Result<(AcquireConfig, String)> {
    let (cfg, hash) = match path {
        Some(p) => t0_core::config::load_yaml::<AcquireConfig>(p)?,
        None => {
            let c = AcquireConfig::default_clips();
            let h = t0_core::config::value_hash(&c);
            (c, h)
        }
    };
    let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| "<default config>".into());
    cfg.validate(&origin)?;
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
    let (cfg, config_hash) = load_config(args.config.as_deref())?;
    if !args.input.is_dir() {
        return Err(Error::Usage(format!("--input {} is not a directory", args.input.display())));
    }
    if args.chunk_rows == 0 {
        return Err(Error::Usage("--chunk-rows must be at least 1".into()));
    }
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let ingest = ingest::Ingest { root, catalog: &catalog, clock: &clock, chunk_rows: args.chunk_rows, progress };
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
