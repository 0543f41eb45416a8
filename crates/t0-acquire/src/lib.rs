//! `acquire`: source files -> raw landing Parquet -> canonical, versioned, two-clock tables.

pub mod generate;
pub mod ingest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub use ingest::{Availability, FileReport};

pub const STAGE: &str = "acquire";

/// The canonical tables and the key each is hashed in.
pub const CANONICAL: &[(&str, &[&str])] = &[
    ("entities", &["entity_id", "version"]),
    ("observations", &["entity_id", "observed_at", "version"]),
    ("events", &["entity_id", "event_type", "observed_at", "version"]),
    ("artifacts", &["entity_id", "kind", "version"]),
];

/// Output name of a canonical table in manifests.
pub fn canonical_name(table: &str) -> String {
    format!("canonical.{table}")
}

/// Describe every canonical table as a manifest output.
pub fn canonical_outputs(root: &Root, catalog: &Catalog) -> Result<Vec<t0_manifest::Output>> {
    CANONICAL
        .iter()
        .map(|(t, key)| {
            let loc = Location::Table {
                table: t.to_string(),
                key: key.iter().map(|k| k.to_string()).collect(),
                run_id: None,
            };
            t0_manifest::record_output(root, catalog, &canonical_name(t), loc)
        })
        .collect()
}

/// `configs/acquire.yaml`: one entry per source, keyed by canonical table.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireConfig {
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// File name relative to the input directory.
    pub file: String,
    /// `ingest_time`, `observed_time` or `observed_time + <n><s|m|h|d>`.
    pub availability: String,
    #[serde(default = "csv_format")]
    pub format: String,
}

fn csv_format() -> String {
    "csv".into()
}

impl Default for AcquireConfig {
    fn default() -> Self {
        let src = |file: &str, availability: &str| SourceConfig {
            file: file.into(),
            availability: availability.into(),
            format: csv_format(),
        };
        AcquireConfig {
            sources: BTreeMap::from([
                ("entities".into(), src("entities.csv", "observed_time")),
                ("observations".into(), src("observations.csv", "observed_time + 1h")),
                ("events".into(), src("events.csv", "observed_time + 1h")),
                ("artifacts".into(), src("artifacts.csv", "observed_time")),
            ]),
        }
    }
}

pub struct AcquireArgs {
    pub input: PathBuf,
    pub config: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct AcquireReport {
    pub run_id: String,
    pub files: Vec<FileReport>,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
}

fn load_config(path: Option<&Path>) -> Result<(AcquireConfig, String)> {
    let (cfg, hash) = match path {
        Some(p) => t0_core::config::load_yaml::<AcquireConfig>(p)?,
        None => {
            let c = AcquireConfig::default();
            let h = t0_core::config::value_hash(&c);
            (c, h)
        }
    };
    let origin = path.map(|p| p.display().to_string()).unwrap_or_else(|| "<default config>".into());
    for (table, src) in &cfg.sources {
        if ingest::spec(table).is_none() {
            return Err(Error::config(&origin, format!("sources.{table}: unknown canonical table")));
        }
        if Availability::parse(&src.availability).is_none() {
            return Err(Error::config(
                &origin,
                format!(
                    "sources.{table}.availability: {:?} is not ingest_time, observed_time or observed_time + <n>h",
                    src.availability
                ),
            ));
        }
        if src.format != "csv" {
            return Err(Error::config(&origin, format!("sources.{table}.format: only csv is supported so far")));
        }
    }
    Ok((cfg, hash))
}

pub fn run(root: &Root, clock: Clock, args: &AcquireArgs, progress: &dyn Progress) -> Result<AcquireReport> {
    let (cfg, config_hash) = load_config(args.config.as_deref())?;
    if !args.input.is_dir() {
        return Err(Error::Usage(format!("--input {} is not a directory", args.input.display())));
    }
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let mut files = Vec::new();
    progress.phase("ingest", Some(cfg.sources.len() as u64));
    // Entities first so that references from the other tables can be checked against them.
    for (table, _) in CANONICAL {
        let Some(src) = cfg.sources.get(*table) else { continue };
        let path = args.input.join(&src.file);
        if !path.exists() {
            return Err(Error::BadInput(format!("{}: no such file (sources.{table}.file)", path.display())));
        }
        let spec = ingest::spec(table).expect("validated");
        let avail = Availability::parse(&src.availability).expect("validated");
        progress.note(&format!("{table}: {}", path.display()));
        let rep = ingest::ingest_csv(root, &catalog, &clock, table, spec, &avail, &path)?;
        run.add_input(t0_manifest::Output {
            name: format!("source.{table}"),
            location: Location::File { path: path.display().to_string() },
            content_hash: rep.file_hash.clone(),
            rows: Some(rep.rows_read),
            files: Default::default(),
        });
        files.push(rep);
        progress.advance(1);
    }
    progress.finish();
    let run_id = run.run_id("");
    let new_rows: u64 = files.iter().map(|f| f.rows_ingested).sum();
    if files.iter().all(|f| f.skipped_already_ingested) || new_rows == 0 {
        return Err(Error::NothingToDo("every source file was ingested before; no new rows".into()));
    }
    let outputs = canonical_outputs(root, &catalog)?;
    let report = AcquireReport {
        run_id: run_id.clone(),
        rows_read: files.iter().map(|f| f.rows_read).sum(),
        rows_ingested: new_rows,
        rows_unchanged: files.iter().map(|f| f.rows_unchanged).sum(),
        rows_quarantined: files.iter().map(|f| f.rows_quarantined).sum(),
        files,
    };
    run.finish(&run_id, None, outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}
