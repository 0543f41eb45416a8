//! `score`: predictions with intervals and explanations at new T0s.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Score the certified surface at new T0s with the latest train-suite run: predictions,
/// intervals and the top contributing features per row.
///
/// Exit codes: 0 done, 1 acceptance state BLOCK, 3 train/serve skew, certificate or upstream
/// mismatch, or lock held, 99 already scored.
#[derive(Parser)]
#[command(name = "score", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Score rows with T0 at or after this UTC time. Default: the model's test block.
    #[arg(long)]
    t0_from: Option<String>,
    #[command(flatten)]
    freshness: Freshness,
    #[command(subcommand)]
    cmd: Option<t0_cli::ShowCmd>,
}

fn human(r: &t0_score::ScoreReport) -> String {
    format!("run {}: {} predictions from T0 {} (model {}) -> {}", r.run_id, r.rows, r.t0_from, r.model_run, r.path)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "score", |root, clock, progress| {
        if let Some(t0_cli::ShowCmd::Show { run }) = &cli.cmd {
            let r: t0_score::ScoreReport = t0_cli::show(root, t0_score::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let t0_from = match &cli.t0_from {
            Some(s) => Some(
                t0_core::clock::parse_utc(s)
                    .ok_or_else(|| t0_core::Error::Usage(format!("--t0-from: cannot parse {s:?}")))?,
            ),
            None => None,
        };
        let r = t0_score::run(
            root,
            clock,
            &t0_score::ScoreArgs { project: cli.common.project()?, max_age_days: cli.freshness.max_age_days, t0_from },
            progress,
        )?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
