//! `plan <stage>`: the buckets of a root where the stage may have work, for a scheduler to map
//! over. It over-approximates rather than misses: a listed bucket whose run finds nothing new
//! answers 99, which Airflow skips.

use serde::{Deserialize, Serialize};
use t0_catalog::Catalog;
use t0_core::{Bucket, Result, Root, Stage};

use crate::{bucket_count, commit::stale_input};

#[derive(Debug, Clone)]
pub struct PlanArgs {
    pub stage: Stage,
    /// The bucket count; default: the root's layout (required before the first bucketed run).
    pub buckets: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlanReport {
    pub stage: Stage,
    pub buckets: u32,
    /// The buckets to run, as `k/N`, in order.
    pub work: Vec<String>,
    /// The others, each with why it has nothing to do.
    pub idle: Vec<(String, String)>,
}

/// The buckets of `base` where `args.stage` may have work: every bucket for acquire (new
/// input may hold rows of any, and every bucket keeps the entity directory) and for certify
/// (it reads the committed population: another bucket's new data is its work too); for the
/// other stages, each bucket with data whose latest run of the stage is missing or no longer
/// on the bucket's current data.
pub fn run(base: &Root, args: &PlanArgs) -> Result<PlanReport> {
    let n = bucket_count(base, args.buckets)?;
    let mut report = PlanReport { stage: args.stage, buckets: n, work: Vec::new(), idle: Vec::new() };
    for b in Bucket::all(n)? {
        let root = Root::bucketed(base.path(), b);
        match idle_because(&root, args.stage).map_err(|e| crate::in_bucket(b, &root, e))? {
            None => report.work.push(b.to_string()),
            Some(why) => report.idle.push((b.to_string(), why)),
        }
    }
    Ok(report)
}

/// Why `stage` has nothing to do in the bucket at `root`, or None when it may have work.
fn idle_because(root: &Root, stage: Stage) -> Result<Option<String>> {
    if stage == Stage::Acquire || stage == Stage::Certify {
        return Ok(None);
    }
    if !root.catalog().exists() {
        return Ok(Some("no data yet: acquire it first".into()));
    }
    let catalog = Catalog::open_read_only(root)?;
    let Some(run_id) = t0_manifest::latest_run_id(&catalog, stage)? else { return Ok(None) };
    let loaded = t0_manifest::load(root, &catalog, stage, Some(&run_id))?;
    if stale_input(&catalog, &loaded.manifest)?.is_some() {
        return Ok(None);
    }
    // Made from an upstream run that is no longer the latest (labels or embed of an earlier
    // certify run, whose surfaces may hash the same): the gather would refuse it.
    for u in &loaded.manifest.upstream {
        if t0_manifest::latest_run_id(&catalog, u.stage)?.is_some_and(|latest| latest != u.run_id) {
            return Ok(None);
        }
    }
    Ok(Some(format!("its latest {stage} run {run_id} is on the current data")))
}

impl PlanReport {
    /// One line per bucket.
    pub fn human(&self) -> String {
        let mut s = format!("{}: {} of {} buckets to run", self.stage, self.work.len(), self.buckets);
        if !self.work.is_empty() {
            s.push_str(&format!(": {}", self.work.join(" ")));
        }
        for (b, why) in &self.idle {
            s.push_str(&format!("\n  {b}: {why}"));
        }
        s
    }
}

/// A stage name from the command line.
pub fn parse_stage(s: &str) -> std::result::Result<Stage, String> {
    s.parse::<Stage>().map_err(|e| {
        format!("{e}; want one of acquire, audit, heal, certify, labels, embed, train-suite, score, calibrate")
    })
}
