//! `commit`: a stage's buckets verified and joined in the base root.
use clap::Parser;
use t0_cli::{Common, Outcome};

/// The single writer of a root split with --bucket k/N: verify every bucket's latest run of
/// STAGE (its manifest against the bucket's catalog, every output against its content hash,
/// the run against the bucket's current data; for acquire, that every bucket read the same
/// input) and record them joined in the base root: commits/<stage>/<id>.json and a catalog
/// row. The canonical facts and certified surfaces are partitioned by entity and their joined
/// hash is the hash of the union, whatever N and whatever order the buckets finished in; the
/// entity directory and landing copies are replicated and must agree; findings, ledgers,
/// verdicts and certificates are listed per bucket. A passing audit's commit also exports the
/// population it passed (lake/population/<id>/), which the buckets' heal and certify read.
/// A certify, labels or embed commit also gathers the buckets' surfaces, labels or vectors
/// into one run of that stage in the base root, each file the union of the buckets' rows in
/// (entity_id, t0) order and hashed as the commit joined it: train-suite, score and calibrate
/// then run on the base root as on a root that was never split.
///
/// Exit codes: 0 committed, 1 committed with a gate that stops the loop (a bucket's audit
/// FAIL), 2 usage, 3 a bucket missing, stale or tampered (named), 99 these bucket runs are
/// already committed.
#[derive(Parser)]
#[command(name = "commit", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// The stage whose buckets to commit (acquire, audit, heal, ...).
    #[arg(value_parser = t0_bucket::parse_stage)]
    stage: t0_core::Stage,
    /// How many buckets; default: the count the root was split into.
    #[arg(long, value_name = "N")]
    buckets: Option<u32>,
}

fn human(r: &t0_bucket::CommitReport) -> String {
    let c = &r.commit;
    let gate = c.gate.map(|g| format!(", gate {g}")).unwrap_or_default();
    let mut s = format!("{} commit {} of {} buckets{gate}: {}", c.stage, c.commit_id, c.buckets, r.path);
    for o in &c.outputs {
        let spread =
            serde_json::to_value(o.spread).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        match (&o.content_hash, o.rows) {
            (Some(h), rows) => s.push_str(&format!(
                "\n  {} ({spread}): {}{}",
                o.name,
                &h[..16],
                rows.map(|r| format!(", {r} rows")).unwrap_or_default()
            )),
            (None, _) => s.push_str(&format!("\n  {} ({spread}): {} parts", o.name, o.parts.len())),
        }
    }
    if let Some(g) = &r.gathered {
        let again = if g.new { "" } else { " (recorded by an earlier attempt)" };
        s.push_str(&format!("\n  gathered into the base root: {} run {}{again}: {}", g.stage, g.run_id, g.manifest));
    }
    if !c.population.is_empty() {
        let rows: u64 = c.population.iter().map(|f| f.rows).sum();
        s.push_str(&format!(
            "\n  population: {} files, {rows} rows under {}/{}",
            c.population.len(),
            t0_bucket::POPULATION_DIR,
            c.commit_id
        ));
    }
    s
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "commit", true, |root, clock, progress| {
        let args = t0_bucket::CommitArgs { stage: cli.stage, buckets: cli.buckets };
        let gather = |base: &_, catalog: &_, clock: &_, commit: &t0_bucket::Commit| match commit.stage {
            t0_embed::STAGE => t0_embed::gather::gather(base, catalog, clock, commit).map(Some),
            _ => t0_certify::gather::gather(base, catalog, clock, commit),
        };
        let r = t0_bucket::commit_gathering(root, clock, &args, progress, &gather)?;
        let code = r.commit.gate.map(|g| g.exit_code()).unwrap_or(t0_core::ExitCode::Done);
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
