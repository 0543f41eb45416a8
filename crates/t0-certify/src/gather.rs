//! A certify or labels commit gathered into the base root (issue 31).
//!
//! Buckets certify and label their own entities; `train-suite` and `calibrate` need every
//! training row at once, and `score`'s drift and row selection are the population's. So the
//! commit of certify (and then of labels; of embed in `t0_embed::gather`) also records, in the
//! base root, one run of that stage whose outputs are the buckets' joined (`t0_bucket::gather`):
//! each surface (and the labels) as one Parquet file of every bucket's rows in the order one
//! root writes them, `(entity_id, t0)`, whose content hash must be the one the commit joined,
//! with a certificate per store. The stages after it run on the base root as on a root that
//! was never split: the guard, the hash chain and `verify` apply unchanged.
//!
//! The gathered run stands on the bucket runs the commit verified: each is loaded from its
//! bucket's catalog and must be the manifest the commit lists (exit 3 otherwise), and every
//! file read is checked against its run's recorded hash first.

use serde::{Deserialize, Serialize};
use t0_bucket::gather::{BucketRun, agreed, begin, bucket_runs, join_rows, made_from, recorded};
use t0_bucket::{Commit, Gathered, Part};
use t0_catalog::Catalog;
use t0_core::{Clock, Error, Result, Root, Verdict};
use t0_manifest::{Loaded, Location, Output};

use crate::labels::{LabelCount, LabelsReport};
use crate::{CertifyReport, StoreResult};

/// Where a gathered certify run came from: the commit and the bucket runs it joined (a
/// gathered labels run checks that each bucket labelled the grid of these runs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatheredFrom {
    pub commit: String,
    pub parts: Vec<Part>,
}

/// The [`t0_bucket::Gather`] of certify and labels commits; other stages gather nothing.
pub fn gather(base: &Root, catalog: &Catalog, clock: &Clock, commit: &Commit) -> Result<Option<Gathered>> {
    match commit.stage {
        crate::STAGE => certify(base, catalog, clock, commit).map(Some),
        crate::labels::STAGE => labels(base, catalog, clock, commit).map(Some),
        _ => Ok(None),
    }
}

fn certify(base: &Root, catalog: &Catalog, clock: &Clock, commit: &Commit) -> Result<Gathered> {
    let (run, run_id, done) = begin(base, catalog, clock, crate::STAGE, commit)?;
    if let Some(done) = done {
        return Ok(done);
    }
    let runs = bucket_runs(base, commit)?;
    let reports = runs.iter().map(|r| crate::certify_report(&r.loaded)).collect::<Result<Vec<_>>>()?;
    let first = &reports[0];
    let each = |f: &dyn Fn(&CertifyReport) -> String| reports.iter().map(f).collect::<Vec<_>>();
    agreed(&runs, "the project", &each(&|r| r.project.to_string()))?;
    agreed(&runs, "the stores directory", &each(&|r| format!("{:?}", r.stores_dir)))?;
    agreed(&runs, "the population", &each(&|r| format!("{:?}", r.population)))?;
    agreed(&runs, "the grid's bound", &each(&|r| format!("{:?}", r.grid_through)))?;
    let mut outputs = Vec::new();
    let mut stores = Vec::new();
    for i in 0..first.stores.len() {
        let all: Vec<&StoreResult> =
            reports.iter().map(|r| r.stores.get(i)).collect::<Option<_>>().ok_or_else(|| {
                Error::Refused("the buckets' certify runs hold different stores: re-run certify on every bucket".into())
            })?;
        let (store, out) = store(base, catalog, &runs, commit, &run_id, &all)?;
        outputs.extend(out);
        stores.push(store);
    }
    let status =
        if stores.iter().all(|s| s.status == Verdict::Certified) { Verdict::Certified } else { Verdict::Failed };
    for s in &stores {
        outputs.push(certificate(base, catalog, &runs, &run_id, clock, s)?);
    }
    let report = CertifyReport {
        run_id: run_id.clone(),
        stores_dir: first.stores_dir.clone(),
        project: first.project.clone(),
        status,
        stores,
        grid_through: first.grid_through.clone(),
        knowledge: first.knowledge.clone(),
        population: first.population.clone(),
        gathered: Some(GatheredFrom { commit: commit.commit_id.clone(), parts: commit.parts.clone() }),
    };
    run.finish(&run_id, Some(status), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(recorded(base, crate::STAGE, &run_id))
}

/// One store of every bucket joined: its result and, when every bucket certified it, the
/// gathered surface.
fn store(
    base: &Root,
    catalog: &Catalog,
    runs: &[BucketRun],
    commit: &Commit,
    run_id: &str,
    all: &[&StoreResult],
) -> Result<(StoreResult, Option<Output>)> {
    let s = all[0];
    let what = |w: &str| format!("store {}'s {w}", s.entrypoint);
    agreed(runs, &what("name"), &all.iter().map(|x| x.entrypoint.clone()).collect::<Vec<_>>())?;
    agreed(runs, &what("view definition"), &all.iter().map(|x| x.view_def_hash.clone()).collect::<Vec<_>>())?;
    agreed(runs, &what("definition"), &all.iter().map(|x| x.definition_hash.clone()).collect::<Vec<_>>())?;
    let mut notes: Vec<String> = Vec::new();
    for n in all.iter().flat_map(|x| &x.notes) {
        if !notes.contains(n) {
            notes.push(n.clone());
        }
    }
    let mut joined = StoreResult {
        entrypoint: s.entrypoint.clone(),
        files: s.files.clone(),
        status: all.iter().map(|x| x.status).find(|v| *v != Verdict::Certified).unwrap_or(Verdict::Certified),
        view_def_hash: s.view_def_hash.clone(),
        dataset_hash: None,
        rows: 0,
        path: None,
        notes,
        definition_hash: s.definition_hash.clone(),
        // Each bucket compared its own rows with its previous run (its report keeps it).
        replay: None,
        // Every bucket ran the same view definition (checked above): the first one's lineage.
        column_lineage: s.column_lineage.clone(),
    };
    if joined.status != Verdict::Certified {
        return Ok((joined, None));
    }
    let rel = format!("lake/surfaces/{}/{run_id}/surface.parquet", s.entrypoint);
    let out = join_rows(base, catalog, runs, commit, &format!("surface.{}", s.entrypoint), &rel)?;
    joined.dataset_hash = Some(out.content_hash.clone());
    joined.rows = out.rows.unwrap_or(0);
    joined.path = Some(rel);
    Ok((joined, Some(out)))
}

/// The certificate of gathered store `s`: what certify writes, its T0 range the buckets',
/// standing on the bucket runs (each bucket's certificate checked against its run).
fn certificate(
    base: &Root,
    catalog: &Catalog,
    runs: &[BucketRun],
    run_id: &str,
    clock: &Clock,
    s: &StoreResult,
) -> Result<Output> {
    let name = format!("certificate.{}", s.entrypoint);
    let (mut t0_min, mut t0_max): (Option<String>, Option<String>) = (None, None);
    let mut upstream = Vec::new();
    for r in runs {
        let out = r.loaded.manifest.output(&name)?;
        t0_manifest::verify_output(&r.root, &r.catalog, &r.loaded.manifest, out)?;
        let path = out.path(&r.root)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let c: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Refused(format!("{}: unreadable certificate: {e}", out.location.describe())))?;
        if let Some(t) = c["t0_min"].as_str().filter(|t| t0_min.as_deref().is_none_or(|m| *t < m)) {
            t0_min = Some(t.to_string());
        }
        if let Some(t) = c["t0_max"].as_str().filter(|t| t0_max.as_deref().is_none_or(|m| *t > m)) {
            t0_max = Some(t.to_string());
        }
        upstream.push(serde_json::json!({
            "stage": "certify", "bucket": r.root.bucket().to_string(),
            "run_id": r.loaded.manifest.run_id, "manifest_hash": r.loaded.manifest_hash,
        }));
    }
    let cert = serde_json::json!({
        "entrypoint": s.entrypoint, "status": s.status, "view_def_hash": s.view_def_hash,
        "definition_hash": s.definition_hash, "dataset_hash": s.dataset_hash,
        "t0_min": t0_min, "t0_max": t0_max, "rows": s.rows, "certified_at": clock.stamp(),
        "run_id": run_id, "notes": s.notes, "replay": null, "baselines": [], "upstream": upstream,
    });
    let rel = format!("lake/surfaces/{}/{run_id}/certificate.json", s.entrypoint);
    let mut bytes = serde_json::to_vec_pretty(&cert).expect("json");
    bytes.push(b'\n');
    t0_core::fsio::write_atomic(&base.join(&rel), &bytes)?;
    t0_manifest::record_output(base, catalog, &name, Location::File { path: rel })
}

fn labels(base: &Root, catalog: &Catalog, clock: &Clock, commit: &Commit) -> Result<Gathered> {
    let (mut run, run_id, done) = begin(base, catalog, clock, crate::labels::STAGE, commit)?;
    if let Some(done) = done {
        return Ok(done);
    }
    let (cert, from) = latest_gathered(base, catalog)?;
    let runs = bucket_runs(base, commit)?;
    for r in &runs {
        made_from(r, crate::STAGE, &from.parts, &from.commit)?;
    }
    // The labels belong to the gathered grid, as a whole root's belong to its certify run.
    let grid = cert.manifest.outputs.iter().find(|o| o.name.starts_with("surface.")).map(|o| o.name.clone());
    let grid =
        grid.ok_or_else(|| Error::Refused(format!("certify run {} certified no surface", cert.manifest.run_id)))?;
    run.consume(&cert, &[grid.as_str()])?;
    let rel = format!("lake/labels/{run_id}/labels.parquet");
    let out = join_rows(base, catalog, &runs, commit, "labels", &rel)?;
    let reports = runs
        .iter()
        .map(|r| {
            serde_json::from_value::<LabelsReport>(r.loaded.manifest.summary.clone()).map_err(|e| {
                Error::Refused(format!("labels run {}: unreadable summary: {e}", r.loaded.manifest.run_id))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let report = joined_labels(&runs, &reports, &run_id, &cert.manifest.run_id, &rel, out.rows.unwrap_or(0))?;
    run.finish(&run_id, None, vec![out], serde_json::to_value(&report).expect("plain struct"))?;
    Ok(recorded(base, crate::labels::STAGE, &run_id))
}

/// The base root's latest certify run, which must be gathered from a commit (the runs after
/// it in a bucketed root are made from its bucket runs), and where it came from.
pub fn latest_gathered(base: &Root, catalog: &Catalog) -> Result<(Loaded, GatheredFrom)> {
    let cert = t0_manifest::load(base, catalog, crate::STAGE, None)?;
    let from = crate::certify_report(&cert)?.gathered.ok_or_else(|| {
        Error::Refused(format!(
            "the base root's latest certify run {} was not gathered from a commit: run `commit certify` first",
            cert.manifest.run_id
        ))
    })?;
    Ok((cert, from))
}

/// The buckets' labels reports added up.
fn joined_labels(
    runs: &[BucketRun],
    reports: &[LabelsReport],
    run_id: &str,
    certify_run: &str,
    path: &str,
    rows: u64,
) -> Result<LabelsReport> {
    let first = &reports[0];
    agreed(runs, "the labels", &reports.iter().map(|r| r.labels.clone()).collect::<Vec<_>>())?;
    let coverage =
        reports.iter().map(|r| serde_json::to_string(&r.coverage).expect("plain struct")).collect::<Vec<_>>();
    agreed(runs, "the labels' watermarks", &coverage)?;
    let mut per_label: Vec<LabelCount> = first.per_label.clone();
    for r in &reports[1..] {
        for (sum, l) in per_label.iter_mut().zip(&r.per_label) {
            sum.known += l.known;
            sum.events = match (sum.events, l.events) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            for (why, n) in &l.nulls {
                *sum.nulls.entry(why.clone()).or_default() += n;
            }
        }
    }
    Ok(LabelsReport {
        run_id: run_id.to_string(),
        certify_run: certify_run.to_string(),
        path: path.to_string(),
        rows,
        matured: reports.iter().map(|r| r.matured).sum(),
        labels: first.labels.clone(),
        coverage: first.coverage.clone(),
        per_label,
    })
}
