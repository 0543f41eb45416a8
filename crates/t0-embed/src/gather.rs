//! An embed commit gathered into the base root (issue 31; see `t0_bucket::gather`). Vectors
//! are a function of each input alone and the fusion projections are fixed, so each bucket
//! embeds its own rows and the union is what one root computes. The gathered run is made from
//! the base root's gathered certify run (its upstream, its surfaces consumed), each bucket's
//! run from that bucket's certify run in it (exit 3 otherwise), so train-suite finds the
//! embeddings of the certificate it reads, as on one root.

use t0_bucket::gather::{BucketRun, agreed, begin, bucket_runs, join_rows, made_from, recorded};
use t0_bucket::{Commit, Gathered};
use t0_catalog::Catalog;
use t0_core::{Clock, Error, Result, Root};

use crate::{EmbedReport, STAGE};

/// The [`t0_bucket::Gather`] of an embed commit.
pub fn gather(base: &Root, catalog: &Catalog, clock: &Clock, commit: &Commit) -> Result<Gathered> {
    let (mut run, run_id, done) = begin(base, catalog, clock, STAGE, commit)?;
    if let Some(done) = done {
        return Ok(done);
    }
    let (cert, from) = t0_certify::gather::latest_gathered(base, catalog)?;
    let runs = bucket_runs(base, commit)?;
    for r in &runs {
        made_from(r, t0_certify::STAGE, &from.parts, &from.commit)?;
    }
    let read: Vec<&str> = runs[0]
        .loaded
        .manifest
        .inputs
        .iter()
        .filter(|i| i.name.starts_with("surface."))
        .map(|i| i.name.as_str())
        .collect();
    run.consume(&cert, &read)?;
    let reports = runs
        .iter()
        .map(|r| {
            serde_json::from_value::<EmbedReport>(r.loaded.manifest.summary.clone())
                .map_err(|e| Error::Refused(format!("embed run {}: unreadable summary: {e}", r.loaded.manifest.run_id)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut report = joined(&runs, reports, &run_id)?;
    let mut outputs = Vec::new();
    for o in &mut report.outputs {
        o.path = format!("lake/embeddings/{}/{run_id}/{}.parquet", o.name, o.name);
        outputs.push(join_rows(base, catalog, &runs, commit, &format!("embeddings.{}", o.name), &o.path)?);
    }
    for f in &mut report.fused {
        f.path = format!("lake/fused/{}/{run_id}/fused_manifest.parquet", f.strategy);
        outputs.push(join_rows(base, catalog, &runs, commit, &format!("fused.{}", f.strategy), &f.path)?);
    }
    let mut summary = serde_json::to_value(&report).expect("plain struct");
    for k in ["seconds", "computed_per_second", "threads", "cache_dir"] {
        summary.as_object_mut().expect("object").remove(k);
    }
    run.finish(&run_id, None, outputs, summary)?;
    Ok(recorded(base, STAGE, &run_id))
}

/// The buckets' reports added up (an input two buckets share is counted by each), once they
/// agree on the models and on what was embedded and fused.
fn joined(runs: &[BucketRun], reports: Vec<EmbedReport>, run_id: &str) -> Result<EmbedReport> {
    let each = |f: &dyn Fn(&EmbedReport) -> String| reports.iter().map(f).collect::<Vec<_>>();
    agreed(runs, "the models", &each(&|r| format!("{:?}", r.models)))?;
    let shape = |r: &EmbedReport| {
        let o: Vec<_> = r.outputs.iter().map(|o| (&o.name, &o.surface, &o.column, &o.extractor, o.dim)).collect();
        let f: Vec<_> = r.fused.iter().map(|f| (&f.strategy, f.dim, &f.modalities)).collect();
        format!("{o:?} {f:?}")
    };
    agreed(runs, "the embeddings and fusions", &each(&shape))?;
    let mut reports = reports.into_iter();
    let mut sum = reports.next().expect("a commit has buckets");
    for r in reports {
        for (s, o) in sum.outputs.iter_mut().zip(r.outputs) {
            s.rows += o.rows;
            s.present += o.present;
            s.distinct_inputs += o.distinct_inputs;
            s.computed += o.computed;
            s.cached += o.cached;
            s.quarantined += o.quarantined;
        }
        for (s, f) in sum.fused.iter_mut().zip(r.fused) {
            s.rows += f.rows;
        }
        for q in r.quarantined {
            if !sum.quarantined.iter().any(|x| x.embedding == q.embedding && x.content_hash == q.content_hash) {
                sum.quarantined.push(q);
            }
        }
        sum.seconds += r.seconds;
    }
    sum.run_id = run_id.to_string();
    Ok(sum)
}
