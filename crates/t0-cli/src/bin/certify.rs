//! `certify`: build and certify the T0 feature surfaces.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;

/// Build the T0 feature surfaces through as-of views (a row is visible at T0 only if it was
/// observed and available by T0) on a T0 grid decided from what was known at each T0. Each
/// store's SQL runs in a sandbox: only `CREATE TEMP VIEW|TABLE … AS SELECT` statements over the
/// as-of views, t0_grid and certify_params (anything else is exit 2 naming file and line).
/// Certification checks wall-clock and label reads, view-definition and dataset drift, SLA
/// violations, one row per grid (entity, T0), and replay invariance: rows of T0s the previous
/// certified run covered must come out the same. `certify labels` then builds the outcomes for
/// that run's grid; `certify attack` measures what late facts change.
///
/// Exit codes: 0 CERTIFIED, 1 FAILED, 2 bad config/SQL, 3 audit not passed/stale, previous
/// surface tampered, or lock held, 99 already certified for this data and definition.
#[derive(Parser)]
#[command(name = "certify", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Certify config (YAML): T0 grid (`t0`), store parameters, SLA, baseline days and stores
    /// (see projects/clips/certify.yaml). Default: the project's certify.yaml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory of feature-store SQL files. Default: the project's feature-stores/.
    #[arg(long, global = true)]
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
    /// The red team: copy the root's catalog, build every store, inject versions observed
    /// before existing T0s but available only after the latest one (new facts, revisions and
    /// tombstones of observations; entity versions created earlier under other parents; new
    /// entities; end and other events; artifact revisions; interactions), build again with the
    /// same clock, and count per store the rows of earlier T0s that changed, appeared or
    /// disappeared. The root is not written. Exit 0 when every store scores zero, 1 when one
    /// leaks.
    Attack {
        /// Entities attacked (spread over the grid by a hash of their id).
        #[arg(long, default_value_t = 500)]
        sample: u64,
        /// Directory for the copy (must be empty or absent). Default: a new temp directory.
        #[arg(long, value_name = "DIR")]
        work: Option<PathBuf>,
        /// Keep the copy and the surfaces built before and after the injection.
        #[arg(long)]
        keep: bool,
    },
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Show a recorded `certify labels` run's summary again (the latest, or RUN).
    ShowLabels {
        /// Run id (see manifests/labels/).
        run: Option<String>,
    },
}

fn labels_human(r: &t0_certify::labels::LabelsReport) -> String {
    let through = |w: &Option<String>| w.clone().unwrap_or_else(|| "nothing (no rows)".into());
    let mut s = format!(
        "run {}: {} (entity, T0) rows for certify run {} -> {}\n  complete through: observations {}, events {}",
        r.run_id,
        r.rows,
        r.certify_run,
        r.path,
        through(&r.coverage.observations),
        through(&r.coverage.events)
    );
    for l in &r.per_label {
        s.push_str(&format!("\n  {} ({}): {} known", l.name, l.kind, l.known));
        if let Some(e) = l.events {
            s.push_str(&format!(", {e} events"));
        }
        if !l.nulls.is_empty() {
            let why: Vec<String> = l.nulls.iter().map(|(k, v)| format!("{v} {k}")).collect();
            s.push_str(&format!("; NULL: {}", why.join(", ")));
        }
    }
    s
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
        if let Some(r) = s.replay.as_ref().filter(|r| !r.differs()) {
            human.push_str(&format!(
                "\n    replay of run {}: {} rows identical ({})",
                &r.against[..16.min(r.against.len())],
                r.compared,
                r.window
            ));
        }
        for n in &s.notes {
            human.push_str(&format!("\n    {n}"));
        }
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "certify", matches!(cli.cmd, None | Some(Cmd::Labels)), |root, clock, progress| {
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
        if !root.bucket().is_whole() && matches!(cli.cmd, Some(Cmd::Attack { .. })) {
            return Err(t0_core::Error::Usage(format!(
                "certify attack does not run on one bucket (--bucket {}): it measures the whole root",
                root.bucket()
            )));
        }
        let args = t0_certify::CertifyArgs {
            project: cli.common.project()?,
            config: cli.config.clone(),
            stores_dir: cli.stores.clone(),
            rebaseline: cli.rebaseline,
        };
        if let Some(Cmd::Attack { sample, work, keep }) = &cli.cmd {
            let a = t0_certify::attack::AttackArgs {
                certify: args,
                work: work.clone(),
                keep: *keep,
                sample: *sample,
                now: cli.common.now.as_ref().map(|_| clock.stamp()),
            };
            let r = t0_certify::attack::run(root, &a, progress)?;
            let code = if r.leaks() { ExitCode::Gate } else { ExitCode::Done };
            return Ok(Outcome::done(&r, t0_certify::attack::describe(&r)).with_code(code));
        }
        if let Some(Cmd::Labels) = cli.cmd {
            let r = t0_certify::labels::run(root, clock, &args, progress)?;
            return Ok(Outcome::done(&r, labels_human(&r)));
        }
        let r = t0_certify::run(root, clock, &args, progress)?;
        let code = r.status.exit_code();
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
