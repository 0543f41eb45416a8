//! `verify`: prove a whole root untampered. Walks every manifest the catalog records and every
//! file under the root, and reports what is missing, changed or unrecorded:
//!
//! - each manifest file against its catalog row (present, same blake3, parses); manifest files
//!   no catalog row names;
//! - each recorded output against its content hash: files, Parquet datasets, per-run catalog
//!   rows, and table-wide outputs (the canonical tables) for their latest producer (an older
//!   producer's table-wide output is rightly superseded);
//! - the upstream links between manifests (the named run is recorded with that hash);
//! - the heal ledger: its hash chain and every heal/revert run's anchor and ledger rows;
//! - each certificate against its surface (same dataset hash, same view definition);
//! - files under the root that no manifest and no ingest batch names.
//!
//! `since` limits the walk to one run and every run that builds on it (transitively).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Damage, Error, Progress, Result, Root};
use t0_manifest::{Location, Manifest};

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Missing,
    Changed,
    Unrecorded,
    BrokenLink,
    Ledger,
    /// A run that committed catalog rows but whose manifest was never recorded (killed): the
    /// stage's next run removes them or completes it.
    Incomplete,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub kind: Kind,
    /// The file, table or run the problem is about.
    pub object: String,
    pub detail: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub manifests: u64,
    pub outputs_verified: u64,
    /// Table-wide outputs of older producers, replaced by a later run (not damage).
    pub outputs_superseded: u64,
    pub files_seen: u64,
    pub ledger_entries: u64,
    /// Wall time of the whole walk, and the part spent recomputing content hashes of
    /// outputs (the cost any verification must pay): the rest is verify's own overhead.
    pub seconds_total: f64,
    pub seconds_hashing: f64,
    /// The run and its descendants, when `--since` limited the walk.
    pub since: Option<Vec<String>>,
    pub problems: Vec<Problem>,
}

struct Row {
    stage: String,
    run_id: String,
    path: String,
    hash: String,
}

fn rows(catalog: &Catalog) -> Result<Vec<Row>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT stage, run_id, manifest_path, manifest_hash FROM manifests ORDER BY seq")
        .ctx(|| "read manifests".into())?;
    let rows = stmt
        .query_map([], |r| Ok(Row { stage: r.get(0)?, run_id: r.get(1)?, path: r.get(2)?, hash: r.get(3)? }))
        .ctx(|| "read manifests".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "read manifests".into())
}

/// The latest manifest seq that produced each output name.
fn latest_producers(catalog: &Catalog) -> Result<BTreeMap<String, (String, String)>> {
    let mut stmt = catalog
        .conn()
        .prepare("SELECT name, arg_max(stage, seq), arg_max(run_id, seq) FROM outputs GROUP BY name")
        .ctx(|| "read outputs".into())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get::<_, String>(1)?, r.get::<_, String>(2)?))))
        .ctx(|| "read outputs".into())?;
    rows.collect::<std::result::Result<_, _>>().ctx(|| "read outputs".into())
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Run ids of `since` and every run whose upstream chain reaches it.
fn descendants(manifests: &[Loaded], since: &str) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = BTreeSet::from([since.to_string()]);
    loop {
        let before = set.len();
        for (row, m) in manifests {
            if let Some(m) = m
                && m.upstream.iter().any(|u| set.contains(&u.run_id))
            {
                set.insert(row.run_id.clone());
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// A manifest row with its parsed file (None when missing, changed or unparsable).
type Loaded = (Row, Option<Manifest>);
/// A problem with the run it belongs to, before `--since` decides whether it is in scope.
type RunProblem = (String, Problem);

/// What the walk has found so far, and how long it spent hashing.
struct Walk<'a> {
    root: &'a Root,
    catalog: &'a Catalog,
    /// Run ids in scope (`None`: all).
    scope: Option<BTreeSet<String>>,
    report: VerifyReport,
    problems: Vec<Problem>,
    hashing: std::time::Duration,
}

impl Walk<'_> {
    fn problem(&mut self, kind: Kind, object: String, detail: String) {
        self.problems.push(Problem { kind, object, detail });
    }

    fn in_scope(&self, run_id: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(run_id))
    }

    /// Time `f` as hashing (the cost any verification pays).
    fn timed<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = std::time::Instant::now();
        let out = f();
        self.hashing += t.elapsed();
        out
    }
}

/// Verify `root`; with `project`, first check that the root's schema is the project's (a root
/// verified without one is proved as recorded, whatever project wrote it).
pub fn run(
    root: &Root,
    since: Option<&str>,
    project: Option<&t0_project::Project>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let mut report = verify_root(root, since, project, progress)?;
    if since.is_none() && root.bucket().is_whole() {
        buckets(root, project, progress, &mut report)?;
    }
    Ok(report)
}

/// The bucket roots of a split base root (issue 31), each walked like a root, their findings
/// added to the base's with paths from the base. A bucket that never ran has nothing to prove.
fn buckets(
    base: &Root,
    project: Option<&t0_project::Project>,
    progress: &dyn Progress,
    report: &mut VerifyReport,
) -> Result<()> {
    let Some(n) = t0_core::bucket::layout(base.path())? else { return Ok(()) };
    for b in t0_core::Bucket::all(n)? {
        let root = Root::bucketed(base.path(), b);
        if !root.catalog().exists() {
            continue;
        }
        let r = verify_root(&root, None, project, progress)?;
        let at = base.relative(root.path());
        report.manifests += r.manifests;
        report.outputs_verified += r.outputs_verified;
        report.outputs_superseded += r.outputs_superseded;
        report.files_seen += r.files_seen;
        report.ledger_entries += r.ledger_entries;
        report.seconds_hashing += r.seconds_hashing;
        report.seconds_total += r.seconds_total;
        report.problems.extend(r.problems.into_iter().map(|p| Problem { object: format!("{at}/{}", p.object), ..p }));
    }
    Ok(())
}

fn verify_root(
    root: &Root,
    since: Option<&str>,
    project: Option<&t0_project::Project>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    if !root.catalog().exists() {
        return Err(Error::Refused(format!("no catalog at {}: nothing to verify", root.catalog().display())));
    }
    let started = std::time::Instant::now();
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    if let Some(p) = project {
        t0_project::schema::check(&catalog, p)?;
    }
    // A table dropped by hand is damage to report (exit 1), not a query to fail on.
    let missing = catalog.missing_tables()?;
    if !missing.is_empty() {
        return Ok(missing_tables_report(&missing, started));
    }
    let (manifests, manifest_problems) = load_manifests(root, &catalog)?;
    let scope: Option<BTreeSet<String>> = match since {
        None => None,
        Some(s) => {
            if !manifests.iter().any(|(r, _)| r.run_id == s) {
                return Err(Error::Usage(format!("--since {s}: no run with that id is recorded")));
            }
            Some(descendants(&manifests, s))
        }
    };
    let mut walk = Walk {
        root,
        catalog: &catalog,
        scope,
        report: VerifyReport::default(),
        problems: Vec::new(),
        hashing: std::time::Duration::ZERO,
    };
    for (run_id, p) in manifest_problems {
        if walk.in_scope(&run_id) {
            walk.problems.push(p);
        }
    }
    walk.report.since = walk.scope.as_ref().map(|s| s.iter().cloned().collect());
    let recorded: BTreeMap<(String, String), String> =
        manifests.iter().map(|(r, _)| ((r.stage.clone(), r.run_id.clone()), r.hash.clone())).collect();
    let latest = latest_producers(&catalog)?;

    progress.phase("manifests", Some(manifests.len() as u64));
    let mut named_files: BTreeSet<String> = manifests.iter().map(|(r, _)| r.path.clone()).collect();
    for (row, m) in &manifests {
        progress.advance(1);
        let Some(m) = m else { continue };
        named_files.extend(m.outputs.iter().flat_map(named_by));
        if walk.in_scope(&row.run_id) {
            walk.report.manifests += 1;
            walk.links(row, m, &recorded);
            walk.outputs(row, m, &latest);
            if m.stage == t0_core::Stage::Certify {
                walk.certificates(m);
            }
        }
    }
    progress.finish();
    if walk.scope.is_none() {
        walk.incomplete_runs()?;
        named_files.extend(walk.commits()?);
    }
    // The heal ledger: chain, anchors and rows of every heal run.
    if walk.scope.is_none() || manifests.iter().any(|(r, _)| r.stage == "heal" && walk.in_scope(&r.run_id)) {
        walk.ledger()?;
    }
    // Files no manifest names (the whole root only).
    if walk.scope.is_none() {
        walk.files(&named_files, progress)?;
    }
    let mut report = walk.report;
    report.problems = walk.problems;
    report.problems.sort_by(|a, b| (&a.kind, &a.object).cmp(&(&b.kind, &b.object)));
    report.seconds_total = started.elapsed().as_secs_f64();
    report.seconds_hashing = walk.hashing.as_secs_f64();
    Ok(report)
}

/// Per stage, a table whose rows carry the run that wrote them, committed before the manifest.
const RUN_TABLES: [(&str, &str); 4] =
    [("audit", "audit_verdicts"), ("heal", "heal_ledger"), ("certify", "certificates"), ("calibrate", "acceptance")];

/// The report on a catalog whose schema lost tables: each is named; nothing else is walked,
/// since every later check reads the tables the schema defines.
fn missing_tables_report(missing: &[String], started: std::time::Instant) -> VerifyReport {
    let problems = missing
        .iter()
        .map(|t| Problem {
            kind: Kind::Missing,
            object: format!("catalog table {t}"),
            detail: format!("the catalog's schema defines table {t}, which is gone (dropped outside t0-clip)"),
        })
        .collect();
    VerifyReport { problems, seconds_total: started.elapsed().as_secs_f64(), ..Default::default() }
}

/// Every recorded manifest against its file (present, same blake3, parses), with the problems
/// found, each kept with its run (scoped by the caller).
fn load_manifests(root: &Root, catalog: &Catalog) -> Result<(Vec<Loaded>, Vec<RunProblem>)> {
    let mut manifests: Vec<Loaded> = Vec::new();
    let mut problems: Vec<RunProblem> = Vec::new();
    for row in rows(catalog)? {
        let bad = |kind: Kind, detail: String| (row.run_id.clone(), Problem { kind, object: row.path.clone(), detail });
        let m = match std::fs::read(root.join(&row.path)) {
            Err(e) => {
                problems.push(bad(Kind::Missing, format!("manifest of {} run {}: {e}", row.stage, row.run_id)));
                None
            }
            Ok(bytes) if t0_core::blake3_hex(&bytes) != row.hash => {
                problems.push(bad(
                    Kind::Changed,
                    format!(
                        "manifest of {} run {}: blake3 differs from the catalog's {}",
                        row.stage, row.run_id, row.hash
                    ),
                ));
                None
            }
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => Some(m),
                Err(e) => {
                    problems.push(bad(Kind::Changed, format!("not a manifest: {e}")));
                    None
                }
            },
        };
        manifests.push((row, m));
    }
    Ok((manifests, problems))
}

/// The files (relative to the root) an output names.
fn named_by(o: &t0_manifest::Output) -> Vec<String> {
    match &o.location {
        Location::File { path } => vec![path.clone()],
        Location::Parquet { path, .. } => std::iter::once(path.clone()).chain(o.files.keys().cloned()).collect(),
        Location::Table { .. } => Vec::new(),
    }
}

impl Walk<'_> {
    /// Each upstream a manifest names is recorded, with the hash it names.
    fn links(&mut self, row: &Row, m: &Manifest, recorded: &BTreeMap<(String, String), String>) {
        for u in &m.upstream {
            match recorded.get(&(u.stage.as_str().to_string(), u.run_id.clone())) {
                None => self.problem(
                    Kind::BrokenLink,
                    row.path.clone(),
                    format!("names upstream {} run {}, which is not recorded", u.stage, u.run_id),
                ),
                Some(h) if *h != u.manifest_hash => self.problem(
                    Kind::BrokenLink,
                    row.path.clone(),
                    format!(
                        "names upstream {} run {} with hash {}, the catalog records {h}",
                        u.stage, u.run_id, u.manifest_hash
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// Each output against its content hash; a table-wide output only for its latest producer.
    fn outputs(&mut self, row: &Row, m: &Manifest, latest: &BTreeMap<String, (String, String)>) {
        for o in &m.outputs {
            if let Location::Table { run_id: None, .. } = o.location
                && latest.get(&o.name) != Some(&(row.stage.clone(), row.run_id.clone()))
            {
                self.report.outputs_superseded += 1;
                continue;
            }
            self.report.outputs_verified += 1;
            let (root, catalog) = (self.root, self.catalog);
            if let Err(e) = self.timed(|| t0_manifest::verify_output(root, catalog, m, o)) {
                // A file that is there but unreadable (a flipped byte in a compressed page)
                // is changed, not missing.
                let kind = match &e {
                    Error::Integrity { damage: Damage::Missing, .. } => Kind::Missing,
                    _ => Kind::Changed,
                };
                self.problem(
                    kind,
                    o.location.describe(),
                    format!("output {} of {} run {}: {e}", o.name, m.stage, m.run_id),
                );
            }
        }
    }

    /// Each certificate of a certify run states its surface's recorded dataset hash.
    fn certificates(&mut self, m: &Manifest) {
        for o in m.outputs.iter().filter(|o| o.name.starts_with("certificate.")) {
            let entry = o.name.trim_start_matches("certificate.");
            let Ok(path) = o.path(self.root) else { continue };
            let Ok(Ok(cert)) = std::fs::read(&path).map(|b| serde_json::from_slice::<serde_json::Value>(&b)) else {
                continue;
            };
            let surface = m.outputs.iter().find(|s| s.name == format!("surface.{entry}"));
            let stated = cert["dataset_hash"].as_str();
            if let Some(s) = surface
                && stated != Some(s.content_hash.as_str())
            {
                self.problem(
                    Kind::Changed,
                    self.root.relative(&path),
                    format!(
                        "certificate states dataset hash {stated:?}, its surface was recorded as {}",
                        s.content_hash
                    ),
                );
            }
        }
    }

    /// Runs that committed rows to the catalog but never recorded a manifest: what a kill
    /// between a stage's commit and its manifest leaves (named, so that the damage it may
    /// explain elsewhere in the report is attributed).
    fn incomplete_runs(&mut self) -> Result<()> {
        for (stage, table) in RUN_TABLES {
            let sql = format!(
                "SELECT DISTINCT run_id FROM {table} WHERE run_id NOT IN \
                 (SELECT run_id FROM manifests WHERE stage = '{stage}') ORDER BY run_id"
            );
            let mut stmt = self.catalog.conn().prepare(&sql).ctx(|| format!("runs of {table}"))?;
            let runs: Vec<String> =
                stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).ctx(|| format!("runs of {table}"))?;
            for run in runs {
                self.problem(
                    Kind::Incomplete,
                    format!("{stage} run {run}"),
                    format!("its rows are in {table} but no manifest records the run (killed before it finished?): run {stage} again"),
                );
            }
        }
        Ok(())
    }

    /// The heal ledger's chain, anchors and rows, for the heal runs in scope.
    fn ledger(&mut self) -> Result<()> {
        let (root, catalog) = (self.root, self.catalog);
        let ledger = self.timed(|| t0_heal::verify_ledger_with(root, catalog))?;
        self.report.ledger_entries = ledger.entries;
        for p in ledger.problems {
            if p.run.as_deref().is_none_or(|r| self.in_scope(r)) {
                let object = match (&p.run, p.seq) {
                    (Some(r), Some(s)) => format!("heal_ledger (heal run {r}, seq {s})"),
                    (Some(r), None) => format!("heal_ledger (heal run {r})"),
                    (None, Some(s)) => format!("heal_ledger (seq {s})"),
                    (None, None) => "heal_ledger".into(),
                };
                self.problem(Kind::Ledger, object, p.what);
            }
        }
        Ok(())
    }

    /// Every file under the root: media store files hold the content their name records, the
    /// rest must be named by a manifest or an ingest batch (or be known scratch); recorded
    /// landing copies must still be there.
    /// Every bucket commit's file against its catalog row, and the population files an audit
    /// commit exported against the commit (issue 31); returns their paths. (Each bucket's root
    /// is proven by `verify --bucket k/N`.)
    fn commits(&mut self) -> Result<Vec<String>> {
        let mut stmt = self
            .catalog
            .conn()
            .prepare("SELECT commit_path, commit_hash FROM commits ORDER BY seq")
            .ctx(|| "read commits".into())?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .ctx(|| "read commits".into())?;
        let mut named = Vec::new();
        for (rel, hash) in &rows {
            match std::fs::read(self.root.join(rel)) {
                Err(_) => self.problem(Kind::Missing, rel.clone(), "bucket commit file is gone".into()),
                Ok(b) if t0_core::blake3_hex(&b) != *hash => {
                    self.problem(Kind::Changed, rel.clone(), "bucket commit file changed since it was recorded".into())
                }
                Ok(b) => named.extend(self.population(rel, &b)),
            }
        }
        named.extend(rows.into_iter().map(|(rel, _)| rel));
        Ok(named)
    }

    /// The population files commit `rel` (its bytes `b`) lists, each checked against it.
    fn population(&mut self, rel: &str, b: &[u8]) -> Vec<String> {
        let commit: serde_json::Value = serde_json::from_slice(b).unwrap_or_default();
        let mut named = Vec::new();
        for f in commit["population"].as_array().into_iter().flatten() {
            let (Some(path), Some(want)) = (f["path"].as_str(), f["file_hash"].as_str()) else { continue };
            match t0_core::fsio::file_hash(&self.root.join(path)) {
                Err(_) => self.problem(Kind::Missing, path.into(), format!("population file of {rel} is gone")),
                Ok(h) if h != want => {
                    self.problem(Kind::Changed, path.into(), format!("population file changed since {rel} recorded it"))
                }
                Ok(_) => {}
            }
            named.push(path.to_string());
        }
        named
    }

    fn files(&mut self, named_files: &BTreeSet<String>, progress: &dyn Progress) -> Result<()> {
        let (landing, media) = self.landing_and_media()?;
        let mut files = Vec::new();
        files_under(self.root.path(), &mut files);
        progress.phase("files", Some(files.len() as u64));
        for f in files {
            progress.advance(1);
            self.report.files_seen += 1;
            let rel = self.root.relative(&f);
            if media.contains(&rel) {
                let bytes = self.timed(|| std::fs::read(&f)).map_err(|e| Error::io(&f, e))?;
                let h = self.timed(|| blake3::hash(&bytes).to_hex().to_string());
                if !rel.ends_with(&h) {
                    self.problem(
                        Kind::Changed,
                        rel,
                        format!("media store file holds content {h}, not the content its name records"),
                    );
                }
                continue;
            }
            let known = named_files.contains(&rel)
                // The embed vector cache: each entry carries its own checksum and a bad one is
                // recomputed, so it is not a recorded output.
                || rel.starts_with("cache/")
                // A bucketed acquire's split step: parsed chunks for the other buckets, each
                // checked against its chunk record before use, removed by `commit acquire`.
                || rel.starts_with(&format!("{}/", t0_core::bucket::SPLIT_DIR))
                // DuckDB's spill files (`--temp-dir` default), scratch while a stage runs.
                || rel.starts_with("tmp/")
                || named_files.iter().any(|n| rel.starts_with(&format!("{n}/")))
                || landing.iter().any(|l| rel.starts_with(&format!("{l}/")))
                // The catalog, its write-ahead log, the lock, and the latest metrics export
                // (replaced every calibrate run, by design) are not stage outputs.
                || rel.starts_with("catalog.duckdb")
                // The OpenLineage events: a log of what ran, not an output (the manifests
                // they name are what verify proves).
                || rel == t0_lineage::EVENTS_FILE
                || rel == ".lock"
                // Bucket roots, each proven by `verify --bucket k/N`.
                || rel.starts_with(&format!("{}/", t0_core::bucket::BUCKETS_DIR))
                || (rel.starts_with("metrics/") && rel.ends_with(".prom"));
            if !known {
                self.problem(Kind::Unrecorded, rel, "no manifest or ingest batch names this file".into());
            }
        }
        progress.finish();
        for l in &landing {
            if !self.root.join(l).is_dir() {
                self.problem(Kind::Missing, l.clone(), "landing copy of an ingest batch is gone".into());
            }
        }
        Ok(())
    }

    /// The landing directories of every ingest batch, and the media store's file names (one
    /// per artifact content hash acquire accepted).
    fn landing_and_media(&self) -> Result<(Vec<String>, std::collections::HashSet<String>)> {
        let mut landing: Vec<String> = Vec::new();
        let conn = self.catalog.conn();
        let mut stmt = conn.prepare("SELECT landing_path FROM ingest_batches").ctx(|| "batches".into())?;
        for p in stmt.query_map([], |r| r.get::<_, String>(0)).ctx(|| "batches".into())? {
            landing.push(p.ctx(|| "batches".into())?);
        }
        let mut media = std::collections::HashSet::new();
        let mut stmt = conn
            .prepare("SELECT DISTINCT content_hash FROM artifacts WHERE content_hash IS NOT NULL")
            .ctx(|| "artifacts".into())?;
        for h in stmt.query_map([], |r| r.get::<_, String>(0)).ctx(|| "artifacts".into())? {
            media.insert(t0_project::vocab::media_path(&h.ctx(|| "artifacts".into())?));
        }
        // A bucket lands every row of a file, so its media store also holds the files of
        // other buckets' artifacts: their recorded landing copies name them.
        if !self.root.bucket().is_whole() {
            for l in &landing {
                let glob = t0_catalog::quote_literal(&format!("{}/*.parquet", self.root.join(l).display()));
                let sql =
                    format!("SELECT DISTINCT content_hash FROM read_parquet({glob}) WHERE content_hash IS NOT NULL");
                let Ok(mut stmt) = conn.prepare(&sql) else { continue };
                for h in stmt.query_map([], |r| r.get::<_, String>(0)).ctx(|| format!("landing {l}"))? {
                    media.insert(t0_project::vocab::media_path(&h.ctx(|| format!("landing {l}"))?));
                }
            }
        }
        Ok((landing, media))
    }
}
