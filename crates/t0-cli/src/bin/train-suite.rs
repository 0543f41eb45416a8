//! `train-suite`: train on certified surfaces with a chronological split.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Train the model suite on the certified surfaces, embeddings and labels with a
/// chronological train/valid/test split, and write an immutable run snapshot under runs/.
///
/// Exit codes: 0 done, 1 too little data to train, 3 certificate or upstream mismatch or lock
/// held, 99 this run already exists.
#[derive(Parser)]
#[command(name = "train-suite", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    freshness: Freshness,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "train-suite", |root, clock, progress| {
        let r =
            t0_train::run(root, clock, &t0_train::TrainArgs { max_age_days: cli.freshness.max_age_days }, progress)?;
        let m = &r.metrics;
        let human = format!(
            "run {} -> {}: test RMSE {:.4} (baseline {:.4}), interval coverage {:.3}; {}/{}/{} rows train/valid/test",
            r.run_id,
            r.snapshot,
            m.test_rmse,
            m.baseline_test_rmse,
            m.test_coverage,
            m.rows_train,
            m.rows_valid,
            m.rows_test
        );
        Ok(Outcome::done(&r, human))
    })
}
