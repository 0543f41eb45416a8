//! `report`: one self-contained HTML page of what the loop did.
use std::path::PathBuf;

use clap::Parser;
use t0_cli::{Common, Outcome};

/// Write one static HTML page of a root: the leaderboard, the acceptance state over the
/// calibrate runs, interval coverage and width, drift, audit findings and heal patches over
/// time, and the certificate chain. Each plot is inline SVG with its numbers in a table
/// beside it; no script, nothing fetched when the page is viewed. Read from the root's
/// verified manifests (a tampered one is refused) and the outputs they name, each checked
/// against its content hash; byte-identical for an identical root. Reads only.
///
/// Exit codes: 0 written · 2 usage · 3 no catalog, or a manifest or output changed.
#[derive(Parser)]
#[command(name = "report", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Where to write the page (default: <root>/report/index.html).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "report", |root, _clock, progress| {
        let r = t0_report::run(root, &t0_report::ReportArgs { out: cli.out.clone() }, progress)?;
        let plots: usize = r.sections.iter().map(|s| s.1).sum();
        let mut human = format!(
            "wrote {} ({} KiB): {} sections, {} plots, from {} manifests",
            r.path,
            r.bytes.div_ceil(1024),
            r.sections.len(),
            plots,
            r.manifests.len()
        );
        for (id, why) in &r.empty {
            human.push_str(&format!("\n  {id}: not shown ({why})"));
        }
        Ok(Outcome::done(&r, human))
    })
}
