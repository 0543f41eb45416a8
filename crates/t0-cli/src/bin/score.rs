//! `score`: predictions with intervals and explanations at new T0s.
use clap::Parser;
use t0_cli::{Common, Freshness, Outcome};

/// Score the certified surface at new T0s with the latest train-suite run: every trained label
/// with its selected model, one row per entity, T0 and label — values with conformal
/// intervals, binary labels as a calibrated probability and a decision at the gate's
/// threshold, time-to-event labels as median and q10/q50/q90 times, S(t) and a conformal lower
/// bound — and the top contributing features per row (exact contributions: with the base value
/// they add up to the model's output on the stated explanation_scale, checked on every row).
///
/// The acceptance gate is keyed to the model: the latest `calibrate` verdict on *this* model's
/// predictions applies; a model not calibrated yet starts in --initial-state. BLOCK stops
/// scoring unless --override-block --reason TEXT, which the manifest records.
///
/// Exit codes: 0 done, 1 acceptance state BLOCK, 2 --override-block without --reason, 3
/// train/serve skew, certificate or upstream mismatch, or lock held, 99 already scored.
#[derive(Parser)]
#[command(name = "score", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Score rows with T0 at or after this UTC time. Without --t0-from, --t0-to or --latest:
    /// from the start of the model's test block on.
    #[arg(long)]
    t0_from: Option<String>,
    /// Score rows with T0 at or before this UTC time.
    #[arg(long)]
    t0_to: Option<String>,
    /// Score each entity's latest certified T0 (the population to act on today).
    #[arg(long, conflicts_with_all = ["t0_from", "t0_to"])]
    latest: bool,
    /// The acceptance state of a model no calibration has judged yet: PASS, DERISK or BLOCK.
    #[arg(long, default_value = "DERISK", value_parser = t0_cli::parse_state)]
    initial_state: t0_core::Verdict,
    /// Score despite a BLOCK (needs --reason, recorded in the manifest).
    #[arg(long, requires = "reason")]
    override_block: bool,
    /// How many contributions each row names (reason1_… to reason{k}_… columns: feature,
    /// its value as the model saw it, contribution on the stated explanation_scale).
    #[arg(long, default_value_t = t0_score::explain::DEFAULT_TOP_K)]
    top_k: usize,
    /// Also write every feature's contribution for every row and label to explanations.parquet
    /// beside the predictions (label, explanation_scale, explanation_output, base_value, then
    /// one column per feature, null where a label's model has no such feature).
    #[arg(long)]
    explain_all: bool,
    /// Coverage levels of extra intervals, comma-separated (each adds lower_<pct>/upper_<pct>
    /// columns for value labels and lower_bound_<pct> for time-to-event labels; `lower`/`upper`
    /// and `lower_bound` stay at the model's nominal level).
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.9", value_parser = parse_level)]
    levels: Vec<f64>,
    /// Which models to score: `selected` (each label's selected model) or `all` (every model on
    /// the leaderboard too, for comparison: rows with `selected` false; drift, the report's
    /// headline and calibrate use the selected rows only).
    #[arg(long, default_value = "selected", value_parser = ["selected", "all"])]
    models: String,
    /// Why a BLOCK is overridden.
    #[arg(long, requires = "override_block")]
    reason: Option<String>,
    #[command(flatten)]
    freshness: Freshness,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// One entity's predictions, intervals, decisions and reasons in plain words, every label
    /// (`--json`: the same as data), from the latest score run or --run.
    Explain {
        /// The entity's id.
        entity: String,
        /// The T0 to explain (UTC). Default: the entity's latest scored T0.
        #[arg(long)]
        t0: Option<String>,
        /// Score run id (see manifests/score/). Default: the latest.
        #[arg(long)]
        run: Option<String>,
        /// Only this label. Default: every label scored at that T0.
        #[arg(long)]
        label: Option<String>,
    },
}

fn parse_time(flag: &str, v: &Option<String>) -> t0_core::Result<Option<chrono::DateTime<chrono::Utc>>> {
    v.as_deref()
        .map(|s| {
            t0_core::clock::parse_utc(s)
                .ok_or_else(|| t0_core::Error::Usage(format!("{flag}: cannot parse {s:?} as a UTC time")))
        })
        .transpose()
}

fn parse_level(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a coverage level strictly between 0 and 1")),
    }
}

fn human(r: &t0_score::ScoreReport) -> String {
    let from = r
        .acceptance_from
        .as_deref()
        .map_or("initial state, not calibrated yet".to_string(), |c| format!("calibrate run {c}"));
    let over = r.override_reason.as_deref().map_or(String::new(), |w| format!(", BLOCK overridden: {w}"));
    let mut labels: Vec<String> =
        r.labels.iter().filter(|l| l.selected).map(|l| format!("{} {} ({} rows)", l.label, l.model, l.rows)).collect();
    let compared = r.labels.iter().filter(|l| !l.selected).count();
    if compared > 0 {
        labels.push(format!("{compared} more models for comparison"));
    }
    format!(
        "run {}: {} predictions of {}, {} (model {}, acceptance {} from {from}{over}) -> {}",
        r.run_id,
        r.rows,
        labels.join(", "),
        r.selected,
        r.model_run,
        r.acceptance,
        r.path
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "score", cli.cmd.is_none(), |root, clock, progress| {
        match &cli.cmd {
            Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) => {
                let r: t0_score::ScoreReport = t0_cli::show(root, t0_score::STAGE, run.as_deref())?;
                return Ok(Outcome::done(&r, human(&r)));
            }
            Some(Cmd::Explain { entity, t0, run, label }) => {
                let t0 = parse_time("--t0", t0)?;
                let e = t0_score::entity::explain(root, run.as_deref(), entity, t0, label.as_deref())?;
                return Ok(Outcome::done(&e, t0_score::entity::plain(&e)));
            }
            None => {}
        }
        let (from, to) = (parse_time("--t0-from", &cli.t0_from)?, parse_time("--t0-to", &cli.t0_to)?);
        let rows = match (cli.latest, from, to) {
            (true, ..) => t0_score::Rows::Latest,
            (false, None, None) => t0_score::Rows::TestBlock,
            (false, from, to) => t0_score::Rows::Range { from, to },
        };
        let r = t0_score::run(
            root,
            clock,
            &t0_score::ScoreArgs {
                project: cli.common.project()?,
                max_age_days: cli.freshness.max_age_days,
                rows,
                initial_state: cli.initial_state,
                override_block: cli.reason.clone().filter(|_| cli.override_block),
                top_k: cli.top_k,
                levels: cli.levels.clone(),
                explain_all: cli.explain_all,
                all_models: cli.models == "all",
            },
            progress,
        )?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
