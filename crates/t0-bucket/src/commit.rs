//! `commit <stage>`: every bucket's latest run of a stage verified and joined into one record
//! in the base root (`commits/<stage>/<commit_id>.json` and a `commits` row).

use std::collections::BTreeMap;

use duckdb::{OptionalExt, params};
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Bucket, Clock, Damage, Error, Progress, Result, Root, Stage, Verdict};
use t0_manifest::{Manifest, Output};

use crate::{bucket_count, in_bucket};

/// Version of the commit file's layout.
const COMMIT_SCHEMA: u32 = 1;

#[derive(Debug, Clone)]
pub struct CommitArgs {
    pub stage: Stage,
    /// The bucket count; default: the root's layout.
    pub buckets: Option<u32>,
}

/// How an output is spread over the buckets of a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Every bucket holds all of it (the entity directory, the landing copy of a file): the
    /// buckets must agree, and the joined hash is theirs.
    Replicated,
    /// Each bucket holds the rows of its entities: the joined hash is the union's.
    Partitioned,
    /// Each bucket's own record (findings, ledger, verdicts): listed, not joined.
    PerBucket,
}

/// How the output `name` is spread: the canonical facts, certified surfaces, labels and
/// embeddings are partitioned by entity, the entity directory and landing copies replicated (see
/// `t0_acquire::ingest`), the rest is each bucket's own.
pub fn spread(name: &str) -> Spread {
    if name == "canonical.entities" || name.starts_with(LANDING_PREFIX) {
        Spread::Replicated
    } else if ["canonical.", "surface.", "embeddings.", "fused."].iter().any(|p| name.starts_with(p))
        || name == "labels"
    {
        Spread::Partitioned
    } else {
        Spread::PerBucket
    }
}

/// The prefix of landing outputs (`t0_acquire::LANDING_OUTPUT`; this crate does not depend on
/// the stages).
const LANDING_PREFIX: &str = "landing.";

/// One bucket's run in a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub bucket: String,
    pub run_id: String,
    /// The run's manifest, relative to the base root, and its blake3.
    pub manifest: String,
    pub manifest_hash: String,
    pub gate: Option<Verdict>,
}

/// One output of the stage, joined over the buckets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Combined {
    pub name: String,
    pub spread: Spread,
    /// The joined content hash and rows (replicated, partitioned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Each bucket's hash, in bucket order (per bucket).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// The commit file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub schema: u32,
    pub stage: Stage,
    pub buckets: u32,
    pub commit_id: String,
    /// The buckets' gates joined: the first that stops the loop (exit 1), else DERISK if any
    /// bucket is, else theirs.
    pub gate: Option<Verdict>,
    pub parts: Vec<Part>,
    pub outputs: Vec<Combined>,
    /// An audit commit that lets the loop go on: the population it passed, for the stages
    /// after it that need every entity's facts ([`POPULATION_DIR`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub population: Vec<PopulationFile>,
    pub committed_at: String,
}

/// Where an audit commit keeps the population it passed, under the base root: one Parquet
/// file per canonical table and bucket (`<commit id>/<table>/<k>-of-<N>.parquet`; a replicated
/// table once). A bucket's certify reads it: cohort priors aggregate over every entity, an
/// interaction into a bucket's entity is kept by its source's bucket, and the grid's bound is
/// the latest availability of all observations.
pub const POPULATION_DIR: &str = "lake/population";

/// One file of a committed population.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PopulationFile {
    /// The canonical table (`observations`).
    pub table: String,
    pub bucket: String,
    /// Relative to the base root.
    pub path: String,
    /// The blake3 of the file's bytes (what a reader checks before reading it).
    pub file_hash: String,
    pub content_hash: String,
    pub rows: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CommitReport {
    /// The commit file, relative to the base root.
    pub path: String,
    #[serde(flatten)]
    pub commit: Commit,
    /// The run the commit gathered into the base root, if its stage has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gathered: Option<Gathered>,
}

/// A run of the committed stage recorded in the base root over the whole population (its
/// outputs the buckets' joined), so that the stages that need every entity at once
/// (train-suite, calibrate) and those not split yet read one root as they always have.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gathered {
    pub stage: Stage,
    pub run_id: String,
    /// The run's manifest, relative to the base root.
    pub manifest: String,
    /// False when an earlier attempt at this commit had recorded it already.
    pub new: bool,
}

/// What gathers a commit into the base root (`t0_certify::gather` for certify and labels;
/// this crate does not depend on the stages): given the base root, its catalog (whose lock
/// the commit holds), the clock and the commit about to be recorded.
pub type Gather = dyn Fn(&Root, &Catalog, &Clock, &Commit) -> Result<Option<Gathered>>;

/// What one bucket contributed: its part, and per output its recorded form and, for a
/// partitioned one, the hasher over its rows.
struct Verified {
    part: Part,
    inputs: Vec<(String, String)>,
    outputs: BTreeMap<String, (Output, Option<t0_table::ContentHasher>)>,
}

/// Verify every bucket's latest run of `args.stage` and record them joined in `base`.
pub fn run(base: &Root, clock: Clock, args: &CommitArgs, progress: &dyn Progress) -> Result<CommitReport> {
    run_gathering(base, clock, args, progress, &|_, _, _, _| Ok(None))
}

/// [`run`], with `gather` run before the commit is recorded when the commit lets the loop go
/// on (a crash between the two re-gathers to the same run, which `gather` finds recorded).
pub fn run_gathering(
    base: &Root,
    clock: Clock,
    args: &CommitArgs,
    progress: &dyn Progress,
    gather: &Gather,
) -> Result<CommitReport> {
    let n = bucket_count(base, args.buckets)?;
    if let Some((id, path)) = already_committed(base, args.stage, n)? {
        return Err(Error::NothingToDo(format!(
            "{} commit {id} of these bucket runs is recorded ({path})",
            args.stage
        )));
    }
    progress.phase(&format!("commit {}: verify {n} buckets", args.stage), Some(u64::from(n)));
    let mut verified = Vec::new();
    for b in Bucket::all(n)? {
        let root = Root::bucketed(base.path(), b);
        verified.push(verify_bucket(base, &root, args.stage).map_err(|e| in_bucket(b, &root, e))?);
        progress.advance(1);
    }
    progress.finish();
    // The input files every bucket read (acquire): their split step is done with.
    let mut read_files = Vec::new();
    if args.stage == Stage::Acquire {
        same_inputs(&verified)?;
        read_files = verified[0].inputs.iter().map(|(_, h)| h.clone()).collect();
    }
    let outputs = join(&verified)?;
    let commit_id = commit_id(args.stage, n, verified.iter().map(|v| v.part.manifest_hash.as_str()));
    let mut commit = Commit {
        schema: COMMIT_SCHEMA,
        stage: args.stage,
        buckets: n,
        commit_id,
        gate: join_gates(&verified),
        parts: verified.into_iter().map(|v| v.part).collect(),
        outputs,
        population: Vec::new(),
        committed_at: clock.stamp(),
    };
    let _lock = RootLock::acquire(base)?;
    let catalog = Catalog::open(base)?;
    if let Some(path) = recorded(&catalog, commit.stage, &commit.commit_id)? {
        return Err(Error::NothingToDo(format!(
            "{} commit {} of these bucket runs is recorded ({path})",
            commit.stage, commit.commit_id
        )));
    }
    let goes_on = commit.gate.is_none_or(|g| g.exit_code() == t0_core::ExitCode::Done);
    if args.stage == Stage::Audit && goes_on {
        progress.phase("export the population", Some(u64::from(n)));
        commit.population = export_population(base, &commit, progress)?;
        progress.finish();
    }
    let gathered = if goes_on { gather(base, &catalog, &clock, &commit)? } else { None };
    let mut report = record(base, &catalog, &clock, commit)?;
    report.gathered = gathered;
    for h in read_files {
        let dir = t0_core::bucket::split_dir(base.path(), &h);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                progress.note(&format!("{}: split step not removed ({e}); it may be deleted", dir.display()));
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Write the population an audit commit passed ([`POPULATION_DIR`]): each bucket's partitioned
/// canonical tables, a replicated one from bucket 0, read under the bucket's lock and checked
/// to join to the hashes just committed (a bucket changed meanwhile is refused).
fn export_population(base: &Root, commit: &Commit, progress: &dyn Progress) -> Result<Vec<PopulationFile>> {
    let tables: Vec<&Combined> = commit.outputs.iter().filter(|o| o.name.starts_with("canonical.")).collect();
    let mut files = Vec::new();
    let mut joined: BTreeMap<&str, t0_table::ContentHasher> = BTreeMap::new();
    for b in Bucket::all(commit.buckets)? {
        let root = Root::bucketed(base.path(), b);
        let _lock = RootLock::acquire(&root)?;
        let catalog = Catalog::open_read_only(&root).map_err(|e| in_bucket(b, &root, e))?;
        for c in tables.iter().filter(|c| c.spread == Spread::Partitioned || b.index() == 0) {
            let table = &c.name["canonical.".len()..];
            // Ordered, so that the file's bytes (their hash is in the commit file) do not depend
            // on the order DuckDB's threads scan in.
            let (schema, batches) = catalog.query_arrow(&format!("SELECT * FROM {table} ORDER BY ALL"), &[])?;
            let leaf = b.dir(std::path::Path::new("")).file_name().map(|f| f.to_string_lossy().into_owned());
            let rel = format!("{POPULATION_DIR}/{}/{table}/{}.parquet", commit.commit_id, leaf.unwrap_or_default());
            t0_table::write_parquet(&base.join(&rel), schema.clone(), &batches)?;
            let mut h = t0_table::ContentHasher::new(&schema).map_err(|e| Error::internal("hash population", e))?;
            for batch in &batches {
                h.push(batch).map_err(|e| Error::internal("hash population", e))?;
            }
            let file_hash = t0_core::fsio::file_hash(&base.join(&rel))?;
            files.push(PopulationFile {
                table: table.to_string(),
                bucket: b.to_string(),
                path: rel,
                file_hash,
                content_hash: h.finish(),
                rows: h.state().rows,
            });
            // Columns that differ between buckets fail the comparison below.
            if let Some(whole) = joined.get_mut(c.name.as_str()) {
                whole.merge(&h);
            } else {
                joined.insert(&c.name, h);
            }
        }
        progress.advance(1);
    }
    for c in tables {
        let now = joined.get(c.name.as_str()).map(|h| h.finish());
        if now.as_ref() != c.content_hash.as_ref() {
            return Err(Error::Refused(format!(
                "{} changed in a bucket while it was committed: re-run the audit and the commit",
                c.name
            )));
        }
    }
    Ok(files)
}

/// The id of the commit of `stage` over the bucket runs whose manifests hash to `manifests`.
fn commit_id<'a>(stage: Stage, n: u32, manifests: impl Iterator<Item = &'a str>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(format!("{stage}|{n}").as_bytes());
    for m in manifests {
        h.update(b"|");
        h.update(m.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The commit of every bucket's latest run of `stage`, when it is recorded already (its id
/// and file) and every run is still on its bucket's data: 99 before verifying outputs, since
/// a later stage's recorded run may have changed what a committed run recorded (heal appends
/// to acquire's canonical tables). None when a bucket has no run to name or a stale one, or
/// the base root no catalog yet: the verification says.
fn already_committed(base: &Root, stage: Stage, n: u32) -> Result<Option<(String, String)>> {
    if !base.catalog().exists() {
        return Ok(None);
    }
    let mut hashes = Vec::new();
    for b in Bucket::all(n)? {
        let root = Root::bucketed(base.path(), b);
        let _lock = RootLock::acquire(&root)?;
        let Ok(catalog) = Catalog::open_read_only(&root) else { return Ok(None) };
        let Ok(loaded) = t0_manifest::load(&root, &catalog, stage, None) else { return Ok(None) };
        // A run no longer on its bucket's data: the verification names it stale.
        if stale_input(&catalog, &loaded.manifest)?.is_some() {
            return Ok(None);
        }
        hashes.push(loaded.manifest_hash);
    }
    let id = commit_id(stage, n, hashes.iter().map(String::as_str));
    let _lock = RootLock::acquire(base)?;
    let catalog = Catalog::open_read_only(base)?;
    Ok(recorded(&catalog, stage, &id)?.map(|path| (id, path)))
}

/// Where the commit `id` of `stage` is recorded, if it is.
fn recorded(catalog: &Catalog, stage: Stage, id: &str) -> Result<Option<String>> {
    catalog
        .conn()
        .query_row(
            "SELECT commit_path FROM commits WHERE stage = ? AND commit_id = ?",
            params![stage.as_str(), id],
            |r| r.get(0),
        )
        .optional()
        .ctx(|| "commit lookup".into())
}

/// A bucket's latest run of `stage`, verified: manifest, outputs, and that it ran on the
/// bucket's current data.
fn verify_bucket(base: &Root, root: &Root, stage: Stage) -> Result<Verified> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open_read_only(root)
        .map_err(|_| Error::Refused(format!("no catalog: run `{stage} --bucket {}` first", root.bucket())))?;
    let loaded = t0_manifest::load(root, &catalog, stage, None)?;
    let m = &loaded.manifest;
    if let Some(stale) = stale_input(&catalog, m)? {
        return Err(Error::Refused(format!(
            "stale: its latest {stage} run {} {stale}: re-run `{stage} --bucket {}`",
            m.run_id,
            root.bucket()
        )));
    }
    // The run's outputs, and the shared data it read (an audit's canonical tables: what it
    // passed is what the commit joins).
    let read = m.inputs.iter().filter(|i| spread(&i.name) != Spread::PerBucket);
    let mut outputs = BTreeMap::new();
    for out in m.outputs.iter().chain(read) {
        if outputs.contains_key(&out.name) {
            continue;
        }
        let hasher = match spread(&out.name) {
            Spread::Partitioned => Some(rows_as_recorded(root, &catalog, m, out)?),
            _ => {
                t0_manifest::verify_output(root, &catalog, m, out)?;
                None
            }
        };
        outputs.insert(out.name.clone(), (out.clone(), hasher));
    }
    let inputs = m.inputs.iter().map(|i| (i.name.clone(), i.content_hash.clone())).collect();
    let part = Part {
        bucket: root.bucket().to_string(),
        run_id: m.run_id.clone(),
        manifest: base.relative(&loaded.path),
        manifest_hash: loaded.manifest_hash.clone(),
        gate: m.gate,
    };
    Ok(Verified { part, inputs, outputs })
}

/// The hasher over `out`'s rows, which must hash as recorded (exit 3 naming it otherwise).
fn rows_as_recorded(root: &Root, catalog: &Catalog, m: &Manifest, out: &Output) -> Result<t0_table::ContentHasher> {
    let h = t0_manifest::output_hasher(root, catalog, out)?;
    if h.finish() != out.content_hash {
        return Err(Error::Integrity {
            damage: Damage::Changed,
            message: format!(
                "content hash mismatch in {} ({}): expected {}, actual {}; recorded by {} run {}",
                out.name,
                out.location.describe(),
                out.content_hash,
                h.finish(),
                m.stage,
                m.run_id
            ),
        });
    }
    Ok(h)
}

/// The first input of run `m` that the catalog now holds at another hash, described; None
/// when the run is on the current data. (Inputs that are not catalog outputs — acquire's
/// source files — are not compared here.)
pub(crate) fn stale_input(catalog: &Catalog, m: &Manifest) -> Result<Option<String>> {
    for i in &m.inputs {
        let now: Option<String> = catalog
            .conn()
            .query_row(
                "SELECT content_hash FROM outputs WHERE name = ? ORDER BY seq DESC LIMIT 1",
                params![i.name],
                |r| r.get(0),
            )
            .optional()
            .ctx(|| "output lookup".into())?;
        if let Some(now) = now.filter(|h| *h != i.content_hash) {
            return Ok(Some(format!("read {} at {}, which is now {now}", i.name, short(&i.content_hash))));
        }
    }
    Ok(None)
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

/// Every bucket's acquire read the same files (the same names and bytes): a bucket that
/// acquired another input would join rows of two inputs.
fn same_inputs(verified: &[Verified]) -> Result<()> {
    let first = &verified[0];
    for v in &verified[1..] {
        if v.inputs != first.inputs {
            return Err(Error::Refused(format!(
                "bucket {}'s acquire run {} read other input files than bucket {}'s run {}: acquire every bucket from the same --input",
                v.part.bucket, v.part.run_id, first.part.bucket, first.part.run_id
            )));
        }
    }
    Ok(())
}

/// The outputs joined: every bucket must have recorded the same names.
fn join(verified: &[Verified]) -> Result<Vec<Combined>> {
    let first = &verified[0];
    for v in &verified[1..] {
        let (a, b): (Vec<_>, Vec<_>) = (first.outputs.keys().collect(), v.outputs.keys().collect());
        if a != b {
            let odd: Vec<&String> =
                b.iter().filter(|n| !a.contains(n)).chain(a.iter().filter(|n| !b.contains(n))).copied().collect();
            return Err(Error::Refused(format!(
                "buckets {} and {} recorded different outputs ({}): re-run the stage on every bucket",
                first.part.bucket,
                v.part.bucket,
                odd.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    first.outputs.keys().map(|name| join_one(name, verified)).collect()
}

fn join_one(name: &str, verified: &[Verified]) -> Result<Combined> {
    let spread = spread(name);
    fn part<'a>(v: &'a Verified, name: &str) -> &'a (Output, Option<t0_table::ContentHasher>) {
        &v.outputs[name]
    }
    let each = |v| part(v, name);
    let mut c = Combined { name: name.to_string(), spread, content_hash: None, rows: None, parts: Vec::new() };
    match spread {
        Spread::Replicated => {
            let (first, _) = each(&verified[0]);
            if let Some(v) = verified.iter().find(|v| each(v).0.content_hash != first.content_hash) {
                return Err(Error::Refused(format!(
                    "{name} should be the same in every bucket, but bucket {} holds {} and bucket {} {}: the buckets did not see the same input",
                    v.part.bucket,
                    short(&each(v).0.content_hash),
                    verified[0].part.bucket,
                    short(&first.content_hash)
                )));
            }
            c.content_hash = Some(first.content_hash.clone());
            c.rows = first.rows;
        }
        Spread::Partitioned => {
            let hasher = |v| each(v).1.as_ref().expect("partitioned outputs carry their hasher");
            let mut whole = hasher(&verified[0]).clone();
            for v in &verified[1..] {
                if !whole.merge(hasher(v)) {
                    // A store's column typed by its values (a wide integer sum is stored as
                    // BIGINT where every value fits, else DOUBLE: `t0_certify::store`).
                    let hint = if name.starts_with("surface.") {
                        ": a column the store's SQL leaves to be typed by its values came out differently in the two buckets; cast it in the store's SQL (e.g. CAST(sum(x) AS DOUBLE))"
                    } else {
                        ""
                    };
                    return Err(Error::Refused(format!(
                        "{name} has other columns in bucket {} than in bucket {} ({}){hint}",
                        verified[0].part.bucket,
                        v.part.bucket,
                        hasher(&verified[0]).differences(hasher(v)).join(", ")
                    )));
                }
            }
            c.content_hash = Some(whole.finish());
            c.rows = Some(whole.state().rows);
        }
        Spread::PerBucket => c.parts = verified.iter().map(|v| each(v).0.content_hash.clone()).collect(),
    }
    Ok(c)
}

/// The buckets' gates joined: the first that stops the loop, else DERISK if any bucket is,
/// else the first bucket's.
fn join_gates(verified: &[Verified]) -> Option<Verdict> {
    let gates: Vec<Verdict> = verified.iter().filter_map(|v| v.part.gate).collect();
    gates
        .iter()
        .find(|g| g.exit_code() != t0_core::ExitCode::Done)
        .or_else(|| gates.iter().find(|g| **g == Verdict::Derisk))
        .or(gates.first())
        .copied()
}

/// Write the commit file and its row in the base root (whose lock the caller holds).
fn record(base: &Root, catalog: &Catalog, clock: &Clock, commit: Commit) -> Result<CommitReport> {
    let rel = format!("commits/{}/{}.json", commit.stage, commit.commit_id);
    let mut bytes = serde_json::to_vec_pretty(&commit).ctx(|| "serialise commit".into())?;
    bytes.push(b'\n');
    t0_core::fsio::write_atomic(&base.join(&rel), &bytes)?;
    catalog.transaction(|c| {
        c.execute(
            "INSERT INTO commits VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM commits), ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![
                commit.commit_id,
                commit.stage.as_str(),
                commit.buckets,
                rel,
                t0_core::blake3_hex(&bytes),
                commit.gate.map(|g| g.as_str()),
                clock.stamp().trim_end_matches('Z')
            ],
        )
        .ctx(|| "record commit".into())?;
        Ok(())
    })?;
    Ok(CommitReport { path: rel, commit, gathered: None })
}

/// The latest commit of `stage` in the base root of bucket root `root`, which must hold
/// `root`'s bucket at its run `run_id`. A bucket's stage that needs what the whole population
/// passed reads it: exit 3 when the bucket's run is not committed yet, or when the commit file
/// is not the one recorded.
pub fn committed(root: &Root, stage: Stage, run_id: &str) -> Result<Commit> {
    let base = root.base();
    let first = || format!("run `commit {stage}` on {} first", base.path().display());
    let catalog =
        Catalog::open_read_only(&base).map_err(|_| Error::Refused(format!("no base catalog: {}", first())))?;
    let row: Option<(String, String)> = catalog
        .conn()
        .query_row(
            "SELECT commit_path, commit_hash FROM commits WHERE stage = ? ORDER BY seq DESC LIMIT 1",
            params![stage.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx(|| "commit lookup".into())?;
    let Some((rel, hash)) = row else {
        return Err(Error::Refused(format!("no {stage} commit is recorded: {}", first())));
    };
    let bytes = std::fs::read(base.join(&rel)).map_err(|e| Error::Integrity {
        damage: Damage::Missing,
        message: format!("{rel}, the latest {stage} commit, cannot be read: {e}"),
    })?;
    let actual = t0_core::blake3_hex(&bytes);
    let changed = |why: String| Error::Integrity {
        damage: Damage::Changed,
        message: format!("{rel}, the latest {stage} commit, is not the file recorded: {why}"),
    };
    if actual != hash {
        return Err(changed(format!("content hash mismatch: expected {}, actual {}", short(&hash), short(&actual))));
    }
    let commit: Commit = serde_json::from_slice(&bytes).map_err(|e| changed(e.to_string()))?;
    let bucket = root.bucket().to_string();
    match commit.parts.iter().find(|p| p.bucket == bucket) {
        Some(p) if p.run_id == run_id => Ok(commit),
        _ => Err(Error::Refused(format!(
            "bucket {bucket}'s {stage} run {run_id} is not in the latest {stage} commit {}: {}",
            commit.commit_id,
            first()
        ))),
    }
}
