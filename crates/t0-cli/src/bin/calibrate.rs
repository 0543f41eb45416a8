//! `calibrate`: the governance loop — replay, acceptance state, grid search, status.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Replay the latest score run's matured predictions in T0 order through adaptive conformal
/// inference, surprisal, the guards and the acceptance state machine with hysteresis, and
/// decide the acceptance state (PASS / DERISK / BLOCK) of the model that made them: it gates
/// the next `score`, whose intervals are issued at the adapted level. Each model's replay
/// continues where its last stopped (the state is kept in the catalog and the report).
///
/// The governance profile is configs/governance.yaml (built in), overlaid with the project's
/// governance.yaml when it has one, then --profile FILE, then --set overrides.
///
/// --grid searches the profile: `path=[v1,v2];other=[x,y]` inline, or `@file` (.txt in the
/// same syntax one per line, .yaml/.yml or .json mapping path to list). Every point replays
/// the score run from a fresh start and is scored by ScoreV1 under the hard constraints;
/// writes calib/<run>/calib_results.csv and calib_topk.json.
///
/// Writes calib/<run>/report.json, catalog rows (acceptance, governance_state, ci_gate) and
/// Prometheus metrics at metrics/calibrate.prom.
///
/// Exit codes: 0 PASS or DERISK, 1 BLOCK, 2 a malformed profile, grid, weight or
/// constraint (named), 3 predictions not from a certified run, upstream mismatch or lock held,
/// 99 already calibrated.
#[derive(Parser)]
#[command(name = "calibrate", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// The acceptance state a model's first replay starts in: PASS, DERISK or BLOCK.
    #[arg(long, default_value = "DERISK", value_parser = t0_cli::parse_state)]
    initial_state: t0_core::Verdict,
    /// A governance profile file (any subset of configs/governance.yaml's fields) laid over
    /// the project's, e.g. one `--apply-top` wrote.
    #[arg(long, value_name = "FILE")]
    profile: Option<std::path::PathBuf>,
    /// Set one profile parameter, `path=value` (e.g. `hysteresis.dwell_pass=5`); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = t0_calibrate::profile::parse_set)]
    set: Vec<(String, t0_acceptance::grid::Value)>,
    /// The grid to search (inline spec or @file).
    #[arg(long, value_name = "SPEC")]
    grid: Option<String>,
    /// ScoreV1 weights, `w_pass=1,w_derisk=0.5,...` or `pass:1,derisk:0.5,...` (default: the
    /// profile's objective.weights).
    #[arg(long, requires = "grid")]
    objective_weights: Option<String>,
    /// Hard constraints, `coverage>=bound,surprisal<=guard*1.05,latency_p95<=slo*1.15` or
    /// `coverage_min:0.86,...` (default: the profile's objective.constraints).
    #[arg(long, requires = "grid")]
    hard_constraints: Option<String>,
    /// How many of the best points calib_topk.json lists.
    #[arg(long, default_value_t = 5, requires = "grid")]
    top_k: usize,
    /// Write the grid's winner as a profile file here (e.g. the project's governance.yaml).
    #[arg(long, value_name = "FILE", requires = "grid")]
    apply_top: Option<std::path::PathBuf>,
    #[command(flatten)]
    freshness: Freshness,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// The current acceptance state, why, since when, the ACI state per label and the CI gate.
    Status,
}

fn human(r: &t0_calibrate::CalibrateReport) -> String {
    let mut s = format!(
        "run {}: {} ({}); {} of {} predictions matured, served-interval coverage {} -> {}",
        r.run_id,
        r.state,
        r.reason,
        r.matured,
        r.scored,
        r.coverage.map_or("n/a".into(), |c| format!("{c:.3}")),
        r.report
    );
    for l in &r.labels {
        let m = &l.summary;
        s += &format!(
            "\n  {}: {} after {} new steps (coverage {}, surprisal p95 {}, flap {:.1}/1k, α {:.4})",
            l.label,
            l.state,
            l.new_steps,
            m.coverage.map_or("n/a".into(), |c| format!("{c:.3}")),
            m.surprisal_p95.map_or("n/a".into(), |c| format!("{c:.2}")),
            m.flap_rate_k,
            l.carry.aci.alpha
        );
    }
    if let Some(g) = &r.grid {
        s += &format!("\n  grid: {} points -> {}, {}", g.points, g.results, g.topk);
        if let Some(best) = g.top.first() {
            let patch: Vec<String> = best.patch.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let patch = if patch.is_empty() { "the profile as it is".to_string() } else { patch.join(", ") };
            s += &format!("; best ScoreV1 {:.4} with {patch}", best.point.score);
        }
        if let Some(a) = &g.applied {
            s += &format!("; winner written to {a}");
        }
    }
    s + &format!("\n  CI gate: {}", r.ci_gate.state.as_str())
}

fn human_status(s: &t0_calibrate::Status) -> String {
    let mut out = format!(
        "model {}: {} since calibrate run {} ({}): {}\n  profile: {}; latest run {}; CI gate {} (EMA {})",
        s.model_run,
        s.state,
        s.since_run,
        s.since.as_deref().unwrap_or("time unknown"),
        s.reason,
        s.profile,
        s.run_id,
        s.ci_gate.state.as_str(),
        s.ci_gate.ema.map_or("n/a".into(), |e| format!("{e:.4}")),
    );
    for l in &s.labels {
        out += &format!(
            "\n  {}: {} — α {:.4}, inflation {:.3}, coverage EMA {:.3}, miss streak {}, {} steps, last T0 {}",
            l.label,
            l.state,
            l.alpha,
            l.inflation,
            l.coverage_ema,
            l.miss_streak,
            l.steps,
            l.last_t0.as_deref().unwrap_or("none")
        );
    }
    out
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "calibrate", cli.cmd.is_none(), |root, clock, progress| {
        match &cli.cmd {
            Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) => {
                let r: t0_calibrate::CalibrateReport = t0_cli::show(root, t0_calibrate::STAGE, run.as_deref())?;
                return Ok(Outcome::done(&r, human(&r)));
            }
            Some(Cmd::Status) => {
                let s = t0_calibrate::status(root)?;
                return Ok(Outcome::done(&s, human_status(&s)));
            }
            None => {}
        }
        let grid = match &cli.grid {
            Some(spec) => Some(t0_calibrate::search::GridArgs {
                grid: t0_calibrate::search::parse_spec(spec)?,
                spec: spec.clone(),
                weights: cli.objective_weights.clone(),
                constraints: cli.hard_constraints.clone(),
                top_k: cli.top_k,
                apply_top: cli.apply_top.clone(),
            }),
            None => None,
        };
        let r = t0_calibrate::run(
            root,
            clock,
            &t0_calibrate::CalibrateArgs {
                project: cli.common.project()?,
                max_age_days: cli.freshness.max_age_days,
                initial_state: cli.initial_state,
                profile: cli.profile.clone(),
                set: cli.set.clone(),
                grid,
            },
            progress,
        )?;
        let code = r.state.exit_code();
        Ok(Outcome::done(&r, human(&r)).with_code(code))
    })
}
