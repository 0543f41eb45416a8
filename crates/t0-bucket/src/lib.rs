//! Entity buckets joined (issue 31). A stage run with `--bucket k/N` works in a root of its own
//! under `<root>/buckets/` (see `t0_core::bucket`); this crate holds the two steps around the
//! fan-out that a scheduler maps over:
//!
//! - [`plan`]: which buckets of a stage may have work (so Airflow maps only those);
//! - [`commit`]: the single writer. It verifies every bucket's latest run of a stage — the
//!   manifest against the bucket's catalog, every output against its hash, the run against
//!   the bucket's current data — and records in the base root one commit: the stage's outputs
//!   joined, each by how it is spread over the buckets ([`Spread`]). A partitioned table's
//!   joined hash is the content hash of the union of its parts (states add: `t0_table`), so it
//!   does not depend on N or on the order buckets finished.

mod commit;
pub mod gather;
mod plan;

pub use commit::{
    Combined, Commit, CommitArgs, CommitReport, Gather, Gathered, POPULATION_DIR, Part, PopulationFile, Spread,
    committed, run_gathering as commit_gathering, spread,
};
pub use plan::{PlanArgs, PlanReport, parse_stage};

use t0_core::{Bucket, Error, Result, Root};

pub use commit::run as commit;
pub use plan::run as plan;

/// How many buckets `base` is split into: `requested` when given (and equal to the layout),
/// else the layout's.
fn bucket_count(base: &Root, requested: Option<u32>) -> Result<u32> {
    if !base.bucket().is_whole() {
        return Err(Error::Usage("plan and commit work on the base root: leave --bucket out".into()));
    }
    let layout = t0_core::bucket::layout(base.path())?;
    match (layout, requested) {
        (Some(n), Some(r)) if n != r => {
            Err(Error::Usage(format!("{} is split into {n} buckets, not {r} (--buckets)", base.path().display())))
        }
        (Some(n), _) => Ok(n),
        (None, Some(r)) => {
            Bucket::new(0, r)?;
            Ok(r)
        }
        (None, None) => Err(Error::Refused(format!(
            "{} is not split into buckets: no {}/{} (run a stage with --bucket k/N first, or pass --buckets)",
            base.path().display(),
            t0_core::bucket::BUCKETS_DIR,
            t0_core::bucket::LAYOUT_FILE
        ))),
    }
}

/// The error `e` met in bucket `b`, saying which bucket and where its root is.
fn in_bucket(b: Bucket, root: &Root, e: Error) -> Error {
    let at = format!("bucket {b} ({})", root.path().display());
    match e {
        Error::Refused(m) => Error::Refused(format!("{at}: {m}")),
        Error::Integrity { damage, message } => Error::Integrity { damage, message: format!("{at}: {message}") },
        Error::Internal { context, message } => Error::Internal { context: format!("{at}: {context}"), message },
        other => other,
    }
}
