//! `certify`: build and certify the T0 feature surfaces.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;

/// Build the T0 feature surfaces through as-of views (a row is visible at T0 only if it was
/// observed and available by T0), check each SQL closure for wall-clock and label reads and
/// view-definition and dataset drift and SLA violations, and export certified surfaces with
/// their certificates. `certify labels` then builds the outcomes for that run's T0 grid.
///
/// Exit codes: 0 CERTIFIED, 1 FAILED, 2 bad config/SQL, 3 audit not passed/stale or lock held,
/// 99 already certified for this data and definition.
#[derive(Parser)]
#[command(name = "certify", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Certify config (YAML): T0 grid (`t0`), store parameters, SLA, baseline days and stores
    /// (see projects/clips/certify.yaml). Default: the project's certify.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of feature-store SQL files. Default: the project's feature-stores/.
    #[arg(long)]
    stores: Option<PathBuf>,
    /// Accept a changed view definition or dataset in a strict store as its new baseline.
    #[arg(long)]
    rebaseline: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the labels the project declares (values and flows at a horizon, thresholds,
    /// events within a horizon, time to an end event with censoring) for every (entity, T0) of
    /// the latest certified run, from the current data. Outside every feature closure; joined
    /// only by train-suite and calibrate.
    Labels,
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Show a recorded `certify labels` run's summary again (the latest, or RUN).
    ShowLabels {
        /// Run id (see manifests/labels/).
        run: Option<String>,
    },
}

fn labels_human(r: &t0_certify::labels::LabelsReport) -> String {
    format!(
        "run {}: {} labels ({} matured) for certify run {} -> {}",
        r.run_id, r.rows, r.matured, r.certify_run, r.path
    )
}

fn human(r: &t0_certify::CertifyReport) -> String {
    let mut human = format!("run {}: {}", r.run_id, r.status);
    for s in &r.stores {
        human.push_str(&format!(
            "\n  {} {}: {} rows, view-def {}",
            s.entrypoint,
            s.status,
            s.rows,
            &s.view_def_hash[..16.min(s.view_def_hash.len())]
        ));
        for n in &s.notes {
            human.push_str(&format!("\n    {n}"));
        }
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "certify", |root, clock, progress| {
        match &cli.cmd {
            Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) => {
                let r: t0_certify::CertifyReport = t0_cli::show(root, t0_certify::STAGE, run.as_deref())?;
                return Ok(Outcome::done(&r, human(&r)));
            }
            Some(Cmd::ShowLabels { run }) => {
                let r: t0_certify::labels::LabelsReport =
                    t0_cli::show(root, t0_certify::labels::STAGE, run.as_deref())?;
                return Ok(Outcome::done(&r, labels_human(&r)));
            }
            _ => {}
        }
        let args = t0_certify::CertifyArgs {
            project: cli.common.project()?,
            config: cli.config.clone(),
            stores_dir: cli.stores.clone(),
            rebaseline: cli.rebaseline,
        };
        if let Some(Cmd::Labels) = cli.cmd {
            let r = t0_certify::labels::run(root, clock, &args, progress)?;
            return Ok(Outcome::done(&r, labels_human(&r)));
        }
        let r = t0_certify::run(root, clock, &args, progress)?;
        let code = if r.status == "CERTIFIED" { ExitCode::Done } else { ExitCode::Gate };
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
