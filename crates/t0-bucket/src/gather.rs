//! What a commit's gather (issue 31) is built from: the stages after certify that read every
//! entity at once run on the base root, so the commit of a stage whose outputs are rows per
//! (entity, T0) also records one run of that stage in the base root, its outputs the buckets'
//! joined into one file each. The stage crates say what their run's report and checks are
//! (`t0_certify::gather`, `t0_embed::gather`); this module loads the bucket runs a commit
//! verified and joins their rows.

use t0_catalog::{Catalog, RootLock};
use t0_core::{Bucket, Clock, Damage, Error, Result, Root, Stage};
use t0_manifest::{Loaded, Location, Output, StageRun};

use crate::{Commit, Gathered};

/// One bucket's run in a commit: loaded from the bucket's root, under its lock.
pub struct BucketRun {
    pub root: Root,
    pub catalog: Catalog,
    pub loaded: Loaded,
    _lock: RootLock,
}

/// Every bucket run of `commit`, each the manifest the commit verified (exit 3 otherwise).
pub fn bucket_runs(base: &Root, commit: &Commit) -> Result<Vec<BucketRun>> {
    commit
        .parts
        .iter()
        .map(|p| {
            let root = Root::bucketed(base.path(), Bucket::parse(&p.bucket)?);
            let lock = RootLock::acquire(&root)?;
            let catalog = Catalog::open_read_only(&root)?;
            let loaded = t0_manifest::load(&root, &catalog, commit.stage, Some(&p.run_id))?;
            if loaded.manifest_hash != p.manifest_hash {
                return Err(Error::Integrity {
                    damage: Damage::Changed,
                    message: format!(
                        "{}: bucket {}'s {} run {} is not the manifest commit {} verified (expected {}, actual {})",
                        p.manifest,
                        p.bucket,
                        commit.stage,
                        p.run_id,
                        commit.commit_id,
                        p.manifest_hash,
                        loaded.manifest_hash
                    ),
                });
            }
            Ok(BucketRun { root, catalog, loaded, _lock: lock })
        })
        .collect()
}

/// The base-root run gathered from `commit`: a new run, or the one an earlier attempt
/// recorded (the commit itself was not: a crash between the two). Its id derives from the
/// commit's, so the two attempts agree.
pub fn begin<'a>(
    base: &'a Root,
    catalog: &'a Catalog,
    clock: &Clock,
    stage: Stage,
    commit: &Commit,
) -> Result<(StageRun<'a>, String, Option<Gathered>)> {
    let config = t0_core::blake3_hex(format!("gather {stage} commit {}", commit.commit_id).as_bytes());
    let run = StageRun::begin(base, catalog, stage, *clock, config);
    let run_id = run.run_id(&commit.commit_id);
    let done = t0_manifest::run_ids(catalog, stage)?.contains(&run_id).then(|| Gathered {
        stage,
        run_id: run_id.clone(),
        manifest: base.relative(&base.manifest(stage, &run_id)),
        new: false,
    });
    Ok((run, run_id, done))
}

/// What to return for a gathered run just recorded.
pub fn recorded(base: &Root, stage: Stage, run_id: &str) -> Gathered {
    Gathered { stage, run_id: run_id.to_string(), manifest: base.relative(&base.manifest(stage, run_id)), new: true }
}

/// Output `name` of every bucket run, checked against its run, written to `rel` in the base
/// root in `(entity_id, t0)` order (one root's) and recorded; its content hash must be the
/// commit's join (exit 3 otherwise).
pub fn join_rows(
    base: &Root,
    catalog: &Catalog,
    runs: &[BucketRun],
    commit: &Commit,
    name: &str,
    rel: &str,
) -> Result<Output> {
    let mut schema = None;
    let mut batches = Vec::new();
    for r in runs {
        let out = r.loaded.manifest.output(name)?;
        t0_manifest::verify_output(&r.root, &r.catalog, &r.loaded.manifest, out)?;
        let (s, b) = t0_table::ParquetSet::open(&out.path(&r.root)?)?.read_all()?;
        let s = s.ok_or_else(|| Error::internal(format!("gather {name}"), "no Parquet file"))?;
        if *schema.get_or_insert_with(|| s.clone()) != s {
            return Err(Error::Refused(format!(
                "{name} has other columns in bucket {} than in bucket {}",
                r.root.bucket(),
                runs[0].root.bucket()
            )));
        }
        batches.extend(b);
    }
    let schema = schema.ok_or_else(|| Error::internal(format!("gather {name}"), "a commit has buckets"))?;
    let one = t0_table::sorted(&schema, &batches, &["entity_id", "t0"])?;
    drop(batches);
    t0_table::write_parquet(&base.join(rel), schema, &[one])?;
    let out = t0_manifest::record_output(base, catalog, name, Location::per_entity_t0(rel))?;
    let joined = commit.outputs.iter().find(|c| c.name == name).and_then(|c| c.content_hash.as_deref());
    if joined != Some(out.content_hash.as_str()) {
        return Err(Error::Integrity {
            damage: Damage::Changed,
            message: format!(
                "{name} gathered into {rel} hashes to {}, but commit {} joined {}: a bucket's rows changed since the commit verified them",
                out.content_hash,
                commit.commit_id,
                joined.unwrap_or("nothing")
            ),
        });
    }
    Ok(out)
}

/// The value every bucket run agrees on, or a refusal naming `what` and two buckets that
/// differ.
pub fn agreed<T: PartialEq + Clone>(runs: &[BucketRun], what: &str, values: &[T]) -> Result<T> {
    if let Some(i) = values.iter().position(|v| *v != values[0]) {
        return Err(Error::Refused(format!(
            "the buckets' runs disagree on {what} (bucket {} and bucket {}): re-run the stage on every bucket with the same project",
            runs[0].root.bucket(),
            runs[i].root.bucket()
        )));
    }
    Ok(values[0].clone())
}

/// Bucket run `r` read its bucket's run of `upstream` in `parts` (the bucket runs a gathered
/// upstream run joined, from commit `commit`): exit 3 otherwise, since its rows would belong
/// to a grid the gathered run does not hold.
pub fn made_from(r: &BucketRun, upstream: Stage, parts: &[crate::Part], commit: &str) -> Result<()> {
    let bucket = r.root.bucket().to_string();
    let want = parts.iter().find(|p| p.bucket == bucket);
    let read = r.loaded.manifest.upstream.iter().find(|u| u.stage == upstream);
    match (want, read) {
        (Some(w), Some(u)) if w.manifest_hash == u.manifest_hash => Ok(()),
        _ => Err(Error::Refused(format!(
            "bucket {bucket}'s {} run {} was made from {upstream} run {}, not from its run {} in the {upstream} commit {commit} gathered into the base root: `commit {upstream}` again if that run is newer, else re-run `{} --bucket {bucket}`",
            r.loaded.manifest.stage,
            r.loaded.manifest.run_id,
            read.map_or("(none)", |u| u.run_id.as_str()),
            want.map_or("(none)", |w| w.run_id.as_str()),
            r.loaded.manifest.stage.as_str().replace("labels", "certify labels")
        ))),
    }
}
