//! `verify`: prove a whole root untampered.
use clap::Parser;
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;

/// Walk a root and prove it: every manifest file against its catalog row, every recorded
/// output against its content hash (files, Parquet datasets, catalog tables and per-run rows),
/// the upstream links between manifests, the heal ledger (hash chain, every run's anchor and
/// rows), certificates against their surfaces, and files under the root that no manifest
/// names. With --project (or T0CLIP_PROJECT), first checks that the root's schema is that
/// project's. Reads only; takes the root lock for a consistent view.
///
/// Exit codes: 0 everything holds, 1 problems found (listed), 2 usage, 3 lock held or no
/// catalog.
#[derive(Parser)]
#[command(name = "verify", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Verify only what this run and every run built on it produced.
    #[arg(long, value_name = "RUN")]
    since: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "verify", |root, _clock, progress| {
        // Only a project named by --project or T0CLIP_PROJECT is checked: the built-in default
        // would refuse every root another project wrote.
        let project = cli.common.project.is_some().then(|| cli.common.project()).transpose()?;
        let r = t0_verify::run(root, cli.since.as_deref(), project.as_ref(), progress)?;
        let scope = match &r.since {
            Some(runs) => {
                format!(" (run {} and {} descendants)", cli.since.clone().unwrap_or_default(), runs.len() - 1)
            }
            None => String::new(),
        };
        let mut human = format!(
            "{}{scope}: {} manifests, {} outputs verified ({} superseded), {} ledger entries, {} files seen; {:.1} s, of which {:.1} s recomputing content hashes",
            if r.problems.is_empty() { "root verified" } else { "root NOT verified" },
            r.manifests,
            r.outputs_verified,
            r.outputs_superseded,
            r.ledger_entries,
            r.files_seen,
            r.seconds_total,
            r.seconds_hashing
        );
        for p in &r.problems {
            human.push_str(&format!("\n  {:?} {}: {}", p.kind, p.object, p.detail));
        }
        let code = if r.problems.is_empty() { ExitCode::Done } else { ExitCode::Gate };
        Ok(Outcome::done(&r, human).with_code(code))
    })
}
