//! `train-suite`: train on certified surfaces with a chronological split.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Train the model suite on the certified surfaces, embeddings and labels the project's
/// `features:` declares, with a chronological train/valid/test split, and write an immutable
/// run snapshot under runs/.
///
/// Exit codes: 0 done, 1 too little data to train or a leakage column selected, 2 a feature
/// declaration naming a missing column or label, 3 certificate or upstream mismatch or lock
/// held, 99 this run already exists.
#[derive(Parser)]
#[command(name = "train-suite", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    freshness: Freshness,
    /// The label to fit. Default: the project's features.target.
    #[arg(long, value_name = "LABEL")]
    target: Option<String>,
    #[command(subcommand)]
    cmd: Option<t0_cli::ShowCmd>,
}

fn human(r: &t0_train::TrainReport) -> String {
    let m = &r.metrics;
    let mut human = format!(
        "run {} -> {}: {} on {} features: test RMSE {:.4} (baseline {:.4}), interval coverage {:.3}; {}/{}/{} rows train/valid/test",
        r.run_id,
        r.snapshot,
        r.target,
        r.features,
        m.test_rmse,
        m.baseline_test_rmse,
        m.test_coverage,
        m.rows_train,
        m.rows_valid,
        m.rows_test
    );
    for s in &r.skipped_columns {
        human.push_str(&format!("\n  not a feature: {s}"));
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "train-suite", |root, clock, progress| {
        if let Some(t0_cli::ShowCmd::Show { run }) = &cli.cmd {
            let r: t0_train::TrainReport = t0_cli::show(root, t0_train::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let args = t0_train::TrainArgs {
            project: cli.common.project()?,
            max_age_days: cli.freshness.max_age_days,
            target: cli.target.clone(),
        };
        let r = t0_train::run(root, clock, &args, progress)?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
