//! Manifests, the hash chain and the upstream guard.
//!
//! Every stage run writes a [`Manifest`] (JSON under `manifests/<stage>/<run_id>.json` and a
//! row in the catalog with the blake3 of that file). A consumer loads its upstream manifest,
//! checks the file against the catalog row, recomputes the content hash of every output it is
//! about to read and refuses (exit 3) on any difference, naming the file or table.

pub mod kinds;

use std::collections::BTreeMap;
use std::path::PathBuf;

use duckdb::params;
use serde::{Deserialize, Serialize};
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Clock, Damage, Error, Result, Root, Stage, Verdict};
use t0_table::ParquetSet;

pub const MANIFEST_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub schema: u32,
    pub stage: Stage,
    pub run_id: String,
    pub status: String,
    /// The gate's decision where the stage has one (audit PASS/FAIL, certify CERTIFIED/FAILED,
    /// calibrate PASS/DERISK/BLOCK).
    pub gate: Option<Verdict>,
    pub inputs: Vec<Output>,
    pub outputs: Vec<Output>,
    pub config_hash: String,
    pub code_version: String,
    pub upstream: Vec<UpstreamRef>,
    pub started_at: String,
    pub finished_at: String,
    pub summary: serde_json::Value,
    /// The bucket this run worked on (`k/N`, issue 31); absent for a whole root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

impl Manifest {
    pub fn output(&self, name: &str) -> Result<&Output> {
        self.outputs.iter().find(|o| o.name == name).ok_or_else(|| {
            Error::Refused(format!("{} run {} recorded no output named {name:?}", self.stage, self.run_id))
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamRef {
    pub stage: Stage,
    pub run_id: String,
    pub manifest_hash: String,
}

/// One named output of a stage and where it lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub name: String,
    pub location: Location,
    pub content_hash: String,
    pub rows: Option<u64>,
    /// blake3 of the raw bytes of each file (relative path -> hash): a fast path for
    /// verification; the content hash decides when bytes differ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl Output {
    /// Absolute path of a Parquet or file output.
    pub fn path(&self, root: &Root) -> Result<PathBuf> {
        match &self.location {
            Location::Parquet { path, .. } | Location::File { path } => Ok(root.join(path)),
            Location::Table { .. } => Err(Error::Refused(format!("{} is a catalog table, not a file", self.name))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// Rows of a catalog table, optionally only those whose `run_id` column equals `run_id`.
    /// `key` names the columns that identify a row, for readers; the content hash is of the
    /// multiset of rows and does not depend on it.
    Table { table: String, key: Vec<String>, run_id: Option<String> },
    /// A Parquet file or a directory of Parquet files, relative to the root (`key` as above).
    Parquet { path: String, key: Vec<String> },
    /// Any other file (JSON model, report), relative to the root; hashed by its bytes.
    File { path: String },
}

impl Location {
    /// A Parquet dataset with one row per (entity_id, t0): surfaces, labels, embeddings,
    /// predictions.
    pub fn per_entity_t0(path: impl Into<String>) -> Self {
        Location::Parquet { path: path.into(), key: vec!["entity_id".into(), "t0".into()] }
    }

    pub fn describe(&self) -> String {
        match self {
            Location::Table { table, run_id: None, .. } => format!("catalog table {table}"),
            Location::Table { table, run_id: Some(r), .. } => format!("catalog table {table} (run_id {r})"),
            Location::Parquet { path, .. } | Location::File { path } => path.clone(),
        }
    }
}

fn table_sql(table: &str, run_id: &Option<String>) -> String {
    match run_id {
        // run ids are hex produced by this code; quoting keeps the SQL valid regardless.
        Some(r) => format!("SELECT * FROM {table} WHERE run_id = '{}'", r.replace('\'', "''")),
        None => format!("SELECT * FROM {table}"),
    }
}

/// The content hasher over an output's rows as they are now (a table's or a Parquet set's;
/// a file output has no rows: refused), decoded whatever its bytes, so that its state can be
/// added to other parts' (`commit`).
pub fn output_hasher(root: &Root, catalog: &Catalog, out: &Output) -> Result<t0_table::ContentHasher> {
    match &out.location {
        Location::Table { table, run_id, .. } => {
            t0_catalog::content_hasher(catalog.conn(), &table_sql(table, run_id), &[])
        }
        Location::Parquet { path, .. } => {
            let set = ParquetSet::open(&root.join(path)).map_err(|e| Error::Integrity {
                damage: if root.join(path).exists() { Damage::Changed } else { Damage::Missing },
                message: format!("cannot open {path}: {e}"),
            })?;
            Ok(set.content_hasher()?)
        }
        Location::File { .. } => Err(Error::Refused(format!("{} is a file, not rows", out.name))),
    }
}

/// Describe and hash an output that has just been written.
pub fn record_output(root: &Root, catalog: &Catalog, name: &str, location: Location) -> Result<Output> {
    // Every kind of output is registered, so that the tamper test covers it.
    if kinds::kind_of(name).is_none() {
        return Err(Error::internal(format!("output {name}"), "no output kind in t0_manifest::kinds matches it"));
    }
    let (content_hash, rows, files) = measure(root, catalog, &location)?;
    Ok(Output { name: name.to_string(), location, content_hash, rows, files })
}

type Measured = (String, Option<u64>, BTreeMap<String, String>);

fn measure(root: &Root, catalog: &Catalog, location: &Location) -> Result<Measured> {
    match location {
        Location::Table { table, run_id, .. } => {
            let (h, rows) = catalog.content_hash(&table_sql(table, run_id), &[])?;
            Ok((h, Some(rows), BTreeMap::new()))
        }
        Location::Parquet { path, .. } => {
            let set = ParquetSet::open(&root.join(path))?;
            let mut files = BTreeMap::new();
            for f in &set.files {
                files.insert(root.relative(f), t0_core::fsio::file_hash(f)?);
            }
            let (h, rows) = set.content_hash()?;
            Ok((h, Some(rows), files))
        }
        Location::File { path } => {
            let h = t0_core::fsio::file_hash(&root.join(path))?;
            Ok((h, None, BTreeMap::new()))
        }
    }
}

/// Recompute `out` and refuse unless it matches what `producer` recorded.
pub fn verify_output(root: &Root, catalog: &Catalog, producer: &Manifest, out: &Output) -> Result<()> {
    let refuse = |damage: Damage, what: String| Error::Integrity {
        damage,
        message: format!(
            "{what}; recorded by {} run {} ({}). Re-run {} or restore the file.",
            producer.stage,
            producer.run_id,
            root.relative(&root.manifest(producer.stage, &producer.run_id)),
            producer.stage
        ),
    };
    // A path that is not there is missing; one that is there but unreadable is changed.
    let gone = |p: &str| if root.join(p).exists() { Damage::Changed } else { Damage::Missing };
    match &out.location {
        Location::Table { table, run_id, .. } => {
            let (actual, _) = catalog.content_hash(&table_sql(table, run_id), &[])?;
            if actual != out.content_hash {
                return Err(refuse(
                    Damage::Changed,
                    format!(
                        "content hash mismatch in {}: expected {}, actual {actual}",
                        out.location.describe(),
                        out.content_hash
                    ),
                ));
            }
        }
        Location::Parquet { path, .. } => {
            let set = ParquetSet::open(&root.join(path))
                .map_err(|e| refuse(gone(path), format!("cannot open {path}: {e}")))?;
            let mut changed = Vec::new();
            for f in &set.files {
                let rel = root.relative(f);
                let h = t0_core::fsio::file_hash(f)?;
                if out.files.get(&rel) != Some(&h) {
                    changed.push(rel);
                }
            }
            let missing: Vec<&String> =
                out.files.keys().filter(|k| !set.files.iter().any(|f| &&root.relative(f) == k)).collect();
            if changed.is_empty() && missing.is_empty() {
                return Ok(());
            }
            // Bytes differ: only the rows decide (a rewrite with other row groups is fine).
            let (what, damage) = if missing.is_empty() {
                (format!("{} changed on disk", changed.join(", ")), Damage::Changed)
            } else {
                let names = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                (format!("{names} missing"), Damage::Missing)
            };
            match set.content_hash() {
                Ok((actual, _)) if actual == out.content_hash => {}
                Ok((actual, _)) => {
                    return Err(refuse(
                        damage,
                        format!(
                            "content hash mismatch in {path}: {what}; expected {}, actual {actual}",
                            out.content_hash
                        ),
                    ));
                }
                Err(e) => return Err(refuse(Damage::Changed, format!("{what} and cannot be read: {e}"))),
            }
        }
        Location::File { path } => {
            let actual = t0_core::fsio::file_hash(&root.join(path))
                .map_err(|e| refuse(gone(path), format!("cannot read {path}: {e}")))?;
            if actual != out.content_hash {
                return Err(refuse(
                    Damage::Changed,
                    format!("content hash mismatch in {path}: expected {}, actual {actual}", out.content_hash),
                ));
            }
        }
    }
    Ok(())
}

/// A manifest read back from disk and checked against the catalog row that recorded it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub manifest: Manifest,
    pub manifest_hash: String,
    pub path: PathBuf,
}

impl Loaded {
    /// Those of `names` this run recorded (outputs added by later versions of a stage are
    /// verified where present).
    pub fn recorded<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names.iter().copied().filter(|n| self.manifest.outputs.iter().any(|o| o.name == *n)).collect()
    }
}

/// Load `stage`'s manifest `run_id`, or the latest one recorded when `run_id` is `None`.
pub fn load(root: &Root, catalog: &Catalog, stage: Stage, run_id: Option<&str>) -> Result<Loaded> {
    let row: Option<(String, String, String)> = {
        let sql = "SELECT run_id, manifest_path, manifest_hash FROM manifests \
                   WHERE stage = ? AND (? IS NULL OR run_id = ?) ORDER BY seq DESC LIMIT 1";
        let mut stmt = catalog.conn().prepare(sql).ctx(|| "prepare manifest lookup".into())?;
        let mut rows = stmt.query(params![stage.as_str(), run_id, run_id]).ctx(|| "manifest lookup".into())?;
        match rows.next().ctx(|| "manifest lookup".into())? {
            Some(r) => Some((
                r.get(0).ctx(|| "run_id".into())?,
                r.get(1).ctx(|| "manifest_path".into())?,
                r.get(2).ctx(|| "manifest_hash".into())?,
            )),
            None => None,
        }
    };
    let Some((run_id, rel, expected)) = row else {
        return Err(Error::Refused(match run_id {
            Some(r) => format!("no {stage} run {r} is recorded in {}", root.catalog().display()),
            None => format!("no {stage} run is recorded in {}: run `{stage}` first", root.catalog().display()),
        }));
    };
    let path = root.join(&rel);
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::Refused(format!("manifest {rel} of {stage} run {run_id} cannot be read: {e}")))?;
    let actual = t0_core::blake3_hex(&bytes);
    if actual != expected {
        return Err(Error::Refused(format!("manifest {rel} was modified: expected hash {expected}, actual {actual}")));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Refused(format!("manifest {rel} is not a valid manifest: {e}")))?;
    Ok(Loaded { manifest, manifest_hash: actual, path })
}

/// Every recorded run id of `stage`, oldest first.
pub fn run_ids(catalog: &Catalog, stage: Stage) -> Result<Vec<String>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT run_id FROM manifests WHERE stage = ? ORDER BY seq")
        .ctx(|| "prepare run lookup".into())?;
    let rows = stmt.query_map(params![stage.as_str()], |r| r.get(0)).ctx(|| "run lookup".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "run lookup".into())
}

/// The run id of `stage`'s latest recorded run, if any.
pub fn latest_run_id(catalog: &Catalog, stage: Stage) -> Result<Option<String>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT run_id FROM manifests WHERE stage = ? ORDER BY seq DESC LIMIT 1")
        .ctx(|| "prepare run lookup".into())?;
    let mut rows = stmt.query(params![stage.as_str()]).ctx(|| "run lookup".into())?;
    match rows.next().ctx(|| "run lookup".into())? {
        Some(r) => Ok(Some(r.get(0).ctx(|| "run_id".into())?)),
        None => Ok(None),
    }
}

/// Remove rows that an earlier, crashed attempt at `run_id` left in `tables` (the attempt never
/// recorded a manifest, so nothing refers to them). Call after `StageRun::ensure_new`.
pub fn purge_unrecorded(catalog: &Catalog, run_id: &str, tables: &[&str]) -> Result<()> {
    for t in tables {
        catalog
            .conn()
            .execute(&format!("DELETE FROM {t} WHERE run_id = ?"), params![run_id])
            .ctx(|| format!("purge unrecorded rows of {t}"))?;
    }
    Ok(())
}

/// The stage and run that last produced output `name` (e.g. canonical tables are produced by
/// acquire and later by heal).
pub fn latest_producer(catalog: &Catalog, name: &str) -> Result<Option<(Stage, String)>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT stage, run_id FROM outputs WHERE name = ? ORDER BY seq DESC LIMIT 1")
        .ctx(|| "prepare producer lookup".into())?;
    let mut rows = stmt.query(params![name]).ctx(|| "producer lookup".into())?;
    match rows.next().ctx(|| "producer lookup".into())? {
        Some(r) => {
            let stage: String = r.get(0).ctx(|| "stage".into())?;
            let stage = stage.parse().map_err(|e| Error::Refused(format!("output {name}: {e}")))?;
            Ok(Some((stage, r.get(1).ctx(|| "run_id".into())?)))
        }
        None => Ok(None),
    }
}

/// A [`StageRun`] without its catalog connection: everything the run has gathered.
pub struct Detached {
    stage: Stage,
    clock: Clock,
    config_hash: String,
    started_at: String,
    upstream: Vec<UpstreamRef>,
    inputs: Vec<Output>,
}

impl Detached {
    pub fn attach<'a>(self, root: &'a Root, catalog: &'a Catalog) -> StageRun<'a> {
        StageRun { root, catalog, state: self }
    }
}

/// One stage run in progress: collects verified inputs and upstream references, derives the
/// deterministic run id, and records the manifest at the end.
pub struct StageRun<'a> {
    root: &'a Root,
    catalog: &'a Catalog,
    state: Detached,
}

impl<'a> StageRun<'a> {
    pub fn begin(root: &'a Root, catalog: &'a Catalog, stage: Stage, clock: Clock, config_hash: String) -> Self {
        // A bucket's run is another run than the whole root's on the same inputs.
        let config_hash = match root.bucket() {
            b if b.is_whole() => config_hash,
            b => t0_core::blake3_hex(format!("{config_hash}|bucket {b}").as_bytes()),
        };
        let state =
            Detached { stage, clock, config_hash, started_at: clock.stamp(), upstream: Vec::new(), inputs: Vec::new() };
        StageRun { root, catalog, state }
    }

    /// Let go of the catalog connection, keeping what the run has gathered (a stage that reads
    /// through a read-only connection and records through a writable one opened later).
    pub fn detach(self) -> Detached {
        self.state
    }

    /// Verify the named outputs of `up` and record them as inputs of this run.
    pub fn consume(&mut self, up: &Loaded, names: &[&str]) -> Result<Vec<Output>> {
        let mut got = Vec::new();
        for name in names {
            let out = up.manifest.output(name)?;
            verify_output(self.root, self.catalog, &up.manifest, out)?;
            got.push(out.clone());
        }
        if !self.state.upstream.iter().any(|u| u.manifest_hash == up.manifest_hash) {
            self.state.upstream.push(UpstreamRef {
                stage: up.manifest.stage,
                run_id: up.manifest.run_id.clone(),
                manifest_hash: up.manifest_hash.clone(),
            });
        }
        self.state.inputs.extend(got.iter().cloned());
        Ok(got)
    }

    /// Add an input this stage read directly (source files for acquire).
    pub fn add_input(&mut self, out: Output) {
        self.state.inputs.push(out);
    }

    pub fn inputs(&self) -> &[Output] {
        &self.state.inputs
    }

    /// Deterministic run id: the same inputs, config, code and `extra` give the same id.
    pub fn run_id(&self, extra: &str) -> String {
        let mut h = blake3::Hasher::new();
        for part in [self.state.stage.as_str(), t0_core::CODE_VERSION, &self.state.config_hash, extra] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        for i in &self.state.inputs {
            h.update(i.name.as_bytes());
            h.update(&[0]);
            h.update(i.content_hash.as_bytes());
            h.update(&[0]);
        }
        h.finalize().to_hex()[..16].to_string()
    }

    /// Exit 99 when this exact run has already been recorded.
    pub fn ensure_new(&self, run_id: &str) -> Result<()> {
        let n: i64 = self
            .catalog
            .conn()
            .query_row(
                "SELECT count(*) FROM manifests WHERE stage = ? AND run_id = ?",
                params![self.state.stage.as_str(), run_id],
                |r| r.get(0),
            )
            .ctx(|| "manifest lookup".into())?;
        if n > 0 {
            return Err(Error::NothingToDo(format!(
                "{} run {run_id} already done for these inputs ({})",
                self.state.stage,
                self.root.relative(&self.root.manifest(self.state.stage, run_id))
            )));
        }
        Ok(())
    }

    /// Write the manifest file and record it (and its outputs) in the catalog.
    pub fn finish(
        self,
        run_id: &str,
        gate: Option<Verdict>,
        outputs: Vec<Output>,
        summary: serde_json::Value,
    ) -> Result<Manifest> {
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA,
            stage: self.state.stage,
            run_id: run_id.to_string(),
            status: "succeeded".into(),
            gate,
            inputs: self.state.inputs,
            outputs,
            config_hash: self.state.config_hash,
            code_version: t0_core::CODE_VERSION.to_string(),
            upstream: self.state.upstream,
            started_at: self.state.started_at,
            finished_at: self.state.clock.stamp(),
            summary,
            bucket: (!self.root.bucket().is_whole()).then(|| self.root.bucket().to_string()),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest).ctx(|| "serialise manifest".into())?;
        bytes.push(b'\n');
        let path = self.root.manifest(self.state.stage, run_id);
        let point = |at: &str| t0_core::fault::pause_point(&format!("{}.{at}", self.state.stage.as_str()));
        point("manifest");
        // A file left by a crashed run that never reached the catalog may be replaced; a recorded
        // run never reaches here (`ensure_new`).
        t0_core::fsio::write_atomic(&path, &bytes)?;
        point("record");
        let hash = t0_core::blake3_hex(&bytes);
        let rel = self.root.relative(&path);
        let now = self.state.clock.stamp();
        self.catalog.transaction(|c| {
            let seq: i64 = c
                .query_row("SELECT coalesce(max(seq), 0) + 1 FROM manifests", [], |r| r.get(0))
                .ctx(|| "manifest seq".into())?;
            c.execute(
                "INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
                params![seq, self.state.stage.as_str(), run_id, "succeeded", rel, hash, now.trim_end_matches('Z')],
            )
            .ctx(|| "record manifest".into())?;
            for o in &manifest.outputs {
                c.execute(
                    "INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?)",
                    params![seq, o.name, self.state.stage.as_str(), run_id, o.content_hash, o.rows.map(|r| r as i64)],
                )
                .ctx(|| "record output".into())?;
            }
            Ok(())
        })?;
        point("recorded");
        Ok(manifest)
    }
}
