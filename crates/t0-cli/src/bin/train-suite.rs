//! `train-suite`: train the model suite on certified surfaces with a time-respecting split.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Train the model suite on the certified surfaces, embeddings and labels the project's
/// `features:` declares, and write an immutable run snapshot under runs/<run_id>/.
///
/// Per label: value/flow labels get ridge (penalty by exact leave-one-out), a histogram GBDT
/// and a stack of both; threshold/event_within labels the WOE prior and the tail gate
/// (logistic GBDT, isotonic-calibrated, threshold chosen on the calibration block);
/// time_to_event labels Weibull, log-normal and log-logistic AFT models and a GBDT with the
/// AFT objective. The split is chronological by T0 (train, calibration, validation, test)
/// with an embargo of the longest label horizon (`train:` in project.yaml). Models are
/// selected on validation; the test block is only scored. The target label's selected model
/// is the serving model score uses.
///
/// Exit codes: 0 done, 1 too little data to train, a leakage column selected, or a run that
/// does not reproduce, 2 a feature declaration naming a missing column or label, 3
/// certificate or upstream mismatch or lock held, 99 this run already exists.
#[derive(Parser)]
#[command(name = "train-suite", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    freshness: Freshness,
    /// The label of the serving model. Default: the project's features.target.
    #[arg(long, value_name = "LABEL")]
    target: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Retrain RUN from the upstream runs it recorded and compare every snapshot file byte
    /// for byte; exit 1 naming the first file that differs.
    Reproduce {
        /// Run id (see runs/).
        run: String,
    },
}

fn human(r: &t0_train::TrainReport) -> String {
    let mut human = match (&r.target, &r.metrics) {
        (Some(t), Some(m)) => format!(
            "run {} -> {}: {} ({}) on {} features: test RMSE {:.4} (baseline {:.4}), interval coverage {:.3}; {}/{}/{}/{} rows train/calibration/valid/test, {} embargoed",
            r.run_id,
            r.snapshot,
            t,
            m.model,
            r.features,
            m.test_rmse,
            m.baseline_test_rmse,
            m.test_coverage,
            m.rows_train,
            m.rows_calibration,
            m.rows_valid,
            m.rows_test,
            m.rows_embargoed
        ),
        _ => format!(
            "run {} -> {}: {} features; no value or flow label to serve with an interval (every label is trained and selected below)",
            r.run_id, r.snapshot, r.features
        ),
    };
    for l in &r.labels {
        let part = |b: &str| {
            let x = &l.blocks[b];
            match x.events {
                Some(e) => format!("{} ({e} ev)", x.rows),
                None => x.rows.to_string(),
            }
        };
        human.push_str(&format!(
            "\n  rows {:<14} {:<13} train {} / calibration {} / valid {} / test {} / embargoed {}",
            l.label,
            l.kind,
            part("train"),
            part("calibration"),
            part("validation"),
            part("test"),
            part("embargo")
        ));
    }
    for e in &r.leaderboard {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        // One row per family and fusion strategy: name the strategy, or the rows repeat.
        let model = if e.fusion.is_empty() || e.fusion == "none" {
            e.model.clone()
        } else {
            format!("{}+{}", e.model, e.fusion)
        };
        human.push_str(&format!(
            "\n  {:<14} {:<28} {} valid {} test {}{}",
            e.label,
            model,
            e.metric,
            f(e.valid),
            f(e.test),
            if e.selected { "  *" } else { "" }
        ));
    }
    for s in &r.skipped_labels {
        human.push_str(&format!("\n  not trained: {s}"));
    }
    for s in &r.skipped_columns {
        human.push_str(&format!("\n  not a feature: {s}"));
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "train-suite", cli.cmd.is_none(), |root, clock, progress| {
        if let Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) = &cli.cmd {
            let r: t0_train::TrainReport = t0_cli::show(root, t0_train::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let args = t0_train::TrainArgs {
            project: cli.common.project()?,
            max_age_days: cli.freshness.max_age_days,
            target: cli.target.clone(),
        };
        if let Some(Cmd::Reproduce { run }) = &cli.cmd {
            let r = t0_train::reproduce(root, clock, &args, run, progress)?;
            let h = format!("run {}: all {} snapshot files reproduced byte for byte", r.run_id, r.files);
            return Ok(Outcome::done(&r, h));
        }
        let r = t0_train::run(root, clock, &args, progress)?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
