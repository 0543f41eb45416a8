//! `plan`: the buckets of a root where a stage may have work.
use clap::Parser;
use t0_cli::{Common, Outcome};

/// List the buckets of a root split with --bucket k/N where STAGE may have work, for a
/// scheduler to map one task over each (Airflow's dynamic task mapping): every bucket for
/// acquire; for the other stages, the buckets with data whose latest run of STAGE is missing
/// or no longer on the bucket's current data. A listed bucket that finds nothing new exits 99
/// (skipped). Reads only.
///
/// Exit codes: 0 listed (possibly none), 2 usage (an unknown stage, --buckets against the
/// root's layout), 3 a bucket's record cannot be read.
#[derive(Parser)]
#[command(name = "plan", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// The stage to plan (acquire, audit, heal, ...).
    #[arg(value_parser = t0_bucket::parse_stage)]
    stage: t0_core::Stage,
    /// How many buckets; default: the count the root was split into (needed before the
    /// first bucketed run).
    #[arg(long, value_name = "N")]
    buckets: Option<u32>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "plan", |root, _clock, _progress| {
        let r = t0_bucket::plan(root, &t0_bucket::PlanArgs { stage: cli.stage, buckets: cli.buckets })?;
        Ok(Outcome::done(&r, r.human()))
    })
}
