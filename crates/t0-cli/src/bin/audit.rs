//! `audit`: check the canonical data and record a verdict bound to its content hash.
use clap::Parser;
use t0_cli::{Common, Outcome};

/// Run the checks of the project's data contracts (contracts/*.yaml: schema, not-null, unique,
/// allowed values, ranges, regexes, references, freshness, lateness, future timestamps,
/// monotonic counters, duplicate snapshots, status transitions, custom SELECTs) over the
/// canonical tables on a read-only connection; store findings with samples of failing keys;
/// record a PASS/FAIL verdict bound to the content hash of the audited data.
///
/// Exit codes: 0 PASS, 1 FAIL (error-level findings), 2 malformed contract (file, line and
/// problem), 3 upstream mismatch or lock held, 99 this data was already audited.
#[derive(Parser)]
#[command(name = "audit", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Failing keys kept per finding (the count is never capped).
    #[arg(long, default_value_t = 20)]
    sample: usize,
    /// Directory of contract files. Default: the project's contracts/.
    #[arg(long)]
    contracts: Option<std::path::PathBuf>,
    /// Pinned time for freshness and future-timestamp checks (never the wall clock). Default:
    /// the newest available_at in the data; freshness checks are then skipped.
    #[arg(long)]
    as_of: Option<String>,
    /// Take new drift baselines instead of comparing with the stored ones.
    #[arg(long)]
    rebaseline: bool,
    #[command(subcommand)]
    cmd: Option<t0_cli::ShowCmd>,
}

fn human(r: &t0_audit::AuditReport) -> String {
    let mut human =
        format!("run {}: {} ({} error, {} warning checks failing)", r.run_id, r.verdict, r.errors, r.warnings);
    for f in r.findings.iter().filter(|f| f.failing > 0) {
        human.push_str(&format!(
            "\n  {:?} {} on {}: {} failing, e.g. {}",
            f.severity,
            f.check,
            f.table,
            f.failing,
            f.sample.first().cloned().unwrap_or_default()
        ));
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "audit", cli.cmd.is_none(), |root, clock, progress| {
        if let Some(t0_cli::ShowCmd::Show { run }) = &cli.cmd {
            let r: t0_audit::AuditReport = t0_cli::show(root, t0_audit::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let args = t0_audit::AuditArgs {
            project: cli.common.project()?,
            sample: cli.sample,
            contracts: cli.contracts.clone(),
            as_of: cli.as_of.clone(),
            rebaseline: cli.rebaseline,
        };
        let r = t0_audit::run(root, clock, &args, progress)?;
        let code = r.verdict.exit_code();
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
