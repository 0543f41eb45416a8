//! `calibrate`: interval coverage on matured outcomes and the acceptance state.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Join the latest predictions to matured outcomes, measure interval coverage and decide the
/// acceptance state (PASS / DERISK / BLOCK) that gates the next `score`. Writes a report under
/// calib/, a catalog row and Prometheus metrics under metrics/.
///
/// Exit codes: 0 PASS or DERISK, 1 BLOCK, 3 predictions not from a certified run, upstream
/// mismatch or lock held, 99 already calibrated.
#[derive(Parser)]
#[command(name = "calibrate", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// PASS when |coverage - nominal| is at most this.
    #[arg(long, default_value_t = 0.05)]
    pass_tolerance: f64,
    /// DERISK when at most this; BLOCK beyond.
    #[arg(long, default_value_t = 0.15)]
    derisk_tolerance: f64,
    /// Fewer matured predictions than this cannot PASS.
    #[arg(long, default_value_t = 20)]
    min_matured: u64,
    #[command(flatten)]
    freshness: Freshness,
    #[command(subcommand)]
    cmd: Option<t0_cli::ShowCmd>,
}

fn human(r: &t0_calibrate::CalibrateReport) -> String {
    format!(
        "run {}: {} ({}); {} of {} predictions matured -> {}",
        r.run_id, r.state, r.reason, r.matured, r.scored, r.report
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "calibrate", |root, clock, progress| {
        if let Some(t0_cli::ShowCmd::Show { run }) = &cli.cmd {
            let r: t0_calibrate::CalibrateReport = t0_cli::show(root, t0_calibrate::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let thresholds = t0_calibrate::Thresholds {
            pass_tolerance: cli.pass_tolerance,
            derisk_tolerance: cli.derisk_tolerance,
            min_matured: cli.min_matured,
        };
        let r = t0_calibrate::run(
            root,
            clock,
            &t0_calibrate::CalibrateArgs {
                project: cli.common.project()?,
                thresholds,
                max_age_days: cli.freshness.max_age_days,
            },
            progress,
        )?;
        let code = r.state.exit_code();
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
