//! `embed`: vectors from the certified text surface.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Embed the certified text surface into one vector per (entity, T0).
///
/// The current text model is a labelled PLACEHOLDER (`hashing-bow-v0`: signed feature hashing
/// projected by a fixed seeded matrix on candle) until real pretrained models arrive.
///
/// Exit codes: 0 done, 3 certificate missing/failed/stale/mismatched or lock held, 99 done before.
#[derive(Parser)]
#[command(name = "embed", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    freshness: Freshness,
    #[command(subcommand)]
    cmd: Option<t0_cli::ShowCmd>,
}

fn human(r: &t0_embed::EmbedReport) -> String {
    let mut human = format!("run {}: model {} (placeholder)", r.run_id, r.model);
    for o in &r.outputs {
        human.push_str(&format!("\n  {} ({}.{}): {} vectors -> {}", o.name, o.surface, o.column, o.rows, o.path));
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "embed", |root, clock, progress| {
        if let Some(t0_cli::ShowCmd::Show { run }) = &cli.cmd {
            let r: t0_embed::EmbedReport = t0_cli::show(root, t0_embed::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let r = t0_embed::run(
            root,
            clock,
            &t0_embed::EmbedArgs { project: cli.common.project()?, max_age_days: cli.freshness.max_age_days },
            progress,
        )?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
