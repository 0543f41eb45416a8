//! `calibrate`: the governance loop. Replays the latest score run's matured predictions in
//! T0 order — per model run and value label, continuing where the last replay of that model
//! stopped — through adaptive conformal inference, surprisal, the guards, κ/κ⁺, the
//! hysteresis state machine and execution gating (`t0-acceptance`); decides the acceptance
//! state (PASS / DERISK / BLOCK) that gates the next `score` and sets the level its next
//! intervals are issued at; keeps the CI gate's EMA; and writes a report, catalog rows and
//! Prometheus text-format metrics. `--grid` searches the governance profile (see [`search`]).

pub mod export;
pub mod profile;
pub mod search;
pub mod steps;

use duckdb::params;
use t0_acceptance::State;
use t0_acceptance::cigate::CiGate;
use t0_acceptance::replay::{self, Calibration, Carry, Summary};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root, Verdict};
use t0_manifest::{Loaded, Location, StageRun};

pub const STAGE: t0_core::Stage = t0_core::Stage::Calibrate;

pub struct CalibrateArgs {
    pub project: t0_project::Project,
    pub max_age_days: i64,
    /// The machine's state at a model's first replay.
    pub initial_state: Verdict,
    /// A profile file laid over the project's (`--profile`).
    pub profile: Option<std::path::PathBuf>,
    /// `--set path=value` overrides, applied last.
    pub set: Vec<(String, t0_acceptance::grid::Value)>,
    /// The grid search, when asked.
    pub grid: Option<search::GridArgs>,
}

/// One label's replay.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabelReplay {
    pub label: String,
    /// `split` or `normalized`: which calibration scores the intervals come from.
    pub interval_method: String,
    /// Matured predictions replayed by this run (after the previous replay's last step).
    pub new_steps: u64,
    /// The last step replayed so far (T0 in µs and as text, entity): the next replay starts
    /// after it.
    pub last_t0_us: Option<i64>,
    pub last_t0: Option<String>,
    pub last_entity: Option<String>,
    pub state: State,
    /// Why the label is in its state.
    pub why: String,
    /// This run's steps.
    pub summary: Summary,
    /// The state the next replay continues from (and `score` issues intervals at).
    pub carry: Carry,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CalibrateReport {
    pub run_id: String,
    pub score_run: String,
    /// The train-suite run whose model made the predictions: the state applies to it alone.
    pub model_run: String,
    /// The primary label (the train-suite target).
    pub label: String,
    pub state: Verdict,
    pub reason: String,
    /// The primary label's served intervals: nominal level and empirical coverage on every
    /// matured prediction of the score run.
    pub nominal: f64,
    pub coverage: Option<f64>,
    /// The coverage the adaptive α steers to (1 − the profile's α target).
    #[serde(default)]
    pub coverage_target: Option<f64>,
    pub matured: u64,
    pub scored: u64,
    pub mean_abs_error: Option<f64>,
    /// Where the governance profile came from, and its hash.
    pub profile: String,
    pub profile_hash: String,
    /// The calibrate run this replay continued from (same model, same profile), if any.
    pub continued_from: Option<String>,
    pub labels: Vec<LabelReplay>,
    /// Labels not replayed, and why (binary and time-to-event labels have no interval).
    pub skipped: Vec<(String, String)>,
    pub ci_gate: CiGate,
    /// |replay coverage − target| of this run's new steps (the CI gate's input).
    pub ci_gap: Option<f64>,
    pub grid: Option<search::GridReport>,
    pub report: String,
    /// Every replayed step (`steps::write_trace`); absent from reports before it was kept.
    #[serde(default)]
    pub steps: String,
    pub metrics: String,
}

pub fn verdict(s: State) -> Verdict {
    match s {
        State::Pass => Verdict::Pass,
        State::Derisk => Verdict::Derisk,
        State::Block => Verdict::Block,
    }
}

fn state_of(v: Verdict) -> State {
    match v {
        Verdict::Pass => State::Pass,
        Verdict::Block => State::Block,
        _ => State::Derisk,
    }
}

/// The latest calibrate run that judged `model_run` (verified and consumed), and its report.
pub fn previous(
    root: &Root,
    catalog: &Catalog,
    run: &mut StageRun,
    model_run: &str,
) -> Result<Option<(Loaded, CalibrateReport)>> {
    for run_id in t0_manifest::run_ids(catalog, STAGE)?.iter().rev() {
        let cal = t0_manifest::load(root, catalog, STAGE, Some(run_id))?;
        if cal.manifest.summary["model_run"].as_str() != Some(model_run) {
            continue;
        }
        let out = run.consume(&cal, &cal.recorded(&["calib.report", "calib.state"]))?;
        let path = out[0].path(root)?;
        let text = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
        // Reports from before the replay lack its fields: nothing to continue from.
        return Ok(serde_json::from_slice::<CalibrateReport>(&text).ok().map(|r| (cal, r)));
    }
    Ok(None)
}

/// The CI gate as the latest calibrate run (of any model) left it.
fn last_gate(root: &Root, catalog: &Catalog, run: &mut StageRun) -> Result<CiGate> {
    let Some(id) = t0_manifest::run_ids(catalog, STAGE)?.pop() else { return Ok(CiGate::default()) };
    let cal = t0_manifest::load(root, catalog, STAGE, Some(&id))?;
    let out = run.consume(&cal, &cal.recorded(&["calib.report", "calib.ci_gate"]))?;
    let path = out[0].path(root)?;
    let text = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v["ci_gate"].clone()).ok())
        .unwrap_or_default())
}

/// The model's calibration: the scores of the interval method it serves.
fn calibration(model: &t0_model::Model) -> Calibration {
    let scores = match (model.interval_method, &model.scale) {
        (t0_model::conformal::Method::Normalized, Some(_)) => model.normalized_scores.clone(),
        _ => model.calibration_scores.clone(),
    };
    Calibration::new(scores, model.nominal)
}

/// Why a label is in its state: the last transition and the guards breached at the last step.
fn why(records: &[replay::StepRecord], carry: &Carry, new_steps: usize) -> String {
    let since = format!("{} for {} steps", carry.fsm.state, carry.fsm.in_state);
    let Some(last) = records.last() else {
        return if carry.aci.steps == 0 {
            format!("{since}: no matured outcomes yet")
        } else {
            format!("{since}: no new matured outcomes")
        };
    };
    let guards = steps::breached(last).unwrap_or_else(|| "no guard breached".to_string());
    format!(
        "{since} ({new_steps} new steps, coverage EMA {:.3}, α {:.4}); last step: {guards}",
        carry.aci.coverage_ema, carry.aci.alpha
    )
}

/// What a label's replay reads besides its model.
struct ReplayInputs<'a> {
    catalog: &'a Catalog,
    preds: String,
    labels: String,
    latency: &'a dyn Fn(&str) -> f64,
}

/// Replay one value label from the previous replay's carry (else from `initial`).
fn replay_label(
    inp: &ReplayInputs,
    profile: &t0_acceptance::Profile,
    model: &t0_model::Model,
    prev: Option<&LabelReplay>,
    initial: State,
) -> Result<(LabelReplay, Vec<steps::Step>, Vec<replay::StepRecord>)> {
    let after = prev.and_then(|p| Some((p.last_t0_us?, p.last_entity.clone()?)));
    let steps = steps::matured(
        inp.catalog,
        &inp.preds,
        &inp.labels,
        &model.target,
        after.as_ref(),
        (inp.latency)(&model.target),
    )?;
    let mut carry = prev.map_or_else(|| Carry::new(profile, initial), |p| p.carry.clone());
    let obs: Vec<_> = steps.iter().map(|s| s.obs).collect();
    let (records, summary) = replay::replay(profile, &calibration(model), &mut carry, &obs);
    let last = steps.last().map(|s| (s.t0, s.entity_id.clone())).or(after);
    let r = LabelReplay {
        label: model.target.clone(),
        interval_method: model.interval_method.as_str().to_string(),
        new_steps: steps.len() as u64,
        last_t0_us: last.as_ref().map(|l| l.0),
        last_t0: last
            .as_ref()
            .and_then(|l| chrono::DateTime::from_timestamp_micros(l.0))
            .map(t0_core::clock::format_utc),
        last_entity: last.map(|l| l.1),
        state: carry.fsm.state,
        // Nothing new: the state and its reason stand as the last replay left them.
        why: match prev {
            Some(p) if steps.is_empty() => p.why.clone(),
            _ => why(&records, &carry, steps.len()),
        },
        summary,
        carry,
    };
    Ok((r, steps, records))
}

/// A label not replayed, and why.
type Skipped = (String, String);

/// The served value models of a train-suite run (verified and consumed), and the other
/// labels with why they are not replayed.
fn value_models(root: &Root, run: &mut StageRun, train: &Loaded) -> Result<(Vec<t0_model::Model>, Vec<Skipped>)> {
    let mut names: Vec<&str> = train
        .manifest
        .outputs
        .iter()
        .filter(|o| o.name.starts_with(t0_model::SERVED_PREFIX))
        .map(|o| o.name.as_str())
        .collect();
    // `model.json` (the target's model) is verified too, whoever reads it next.
    if train.manifest.outputs.iter().any(|o| o.name == "run.model") {
        names.push("run.model");
    }
    let (mut models, mut skipped) = (Vec::new(), Vec::new());
    let served = names.iter().any(|n| n.starts_with(t0_model::SERVED_PREFIX));
    for o in run.consume(train, &names)? {
        let m = t0_model::read_model(root, &o)?;
        if served && o.name == "run.model" {
            continue;
        }
        match m.head {
            t0_model::head::Head::Value { .. } => models.push(m),
            ref h => skipped.push((m.target.clone(), format!("{} label: no prediction interval to replay", h.kind()))),
        }
    }
    Ok((models, skipped))
}

/// The served intervals' coverage of the primary label on every matured prediction:
/// (scored, matured, coverage, mean absolute error).
fn served_coverage(
    catalog: &Catalog,
    preds: &str,
    labels: &str,
    label: &str,
) -> Result<(i64, i64, Option<f64>, Option<f64>)> {
    let y = format!("l.{}", steps::ident(label));
    catalog
        .conn()
        .query_row(
            &format!(
                "SELECT count(*), count({y}),
                        avg(CASE WHEN {y} IS NULL THEN NULL
                                 WHEN CAST({y} AS DOUBLE) BETWEEN p.lower AND p.upper THEN 1.0 ELSE 0.0 END),
                        avg(abs(CAST({y} AS DOUBLE) - p.prediction))
                 FROM read_parquet({preds}) p
                 LEFT JOIN read_parquet({labels}) l ON l.entity_id = p.entity_id AND l.t0 = p.t0
                 WHERE p.label = ? AND p.selected"
            ),
            [label],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ctx(|| "join predictions to outcomes".into())
}

/// The score run's amortised decision latency per label (ms per row), from its verified
/// manifest; NaN where none was recorded (a pinned clock records none).
fn latencies(score: &Loaded) -> impl Fn(&str) -> f64 + '_ {
    move |label: &str| {
        score.manifest.summary["labels"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["label"].as_str() == Some(label) && l["selected"] == true))
            .and_then(|l| l["latency_ms"].as_f64())
            .unwrap_or(f64::NAN)
    }
}

/// The score run, its train-suite run, and the check that the predictions come from a
/// certified surface.
fn upstream(root: &Root, catalog: &Catalog) -> Result<(Loaded, Loaded)> {
    let score = t0_manifest::load(root, catalog, t0_score::STAGE, None)?;
    let train_ref = score
        .manifest
        .upstream
        .iter()
        .find(|u| u.stage == t0_model::STAGE)
        .ok_or_else(|| Error::Refused(format!("score run {} names no train-suite run", score.manifest.run_id)))?;
    let train = t0_manifest::load(root, catalog, t0_model::STAGE, Some(&train_ref.run_id))?;
    if train.manifest_hash != train_ref.manifest_hash {
        return Err(Error::Refused(format!(
            "train-suite manifest {} differs from the one score used",
            train.path.display()
        )));
    }
    let certified = train.manifest.upstream.iter().filter(|u| u.stage == t0_certify::STAGE).any(|u| {
        t0_manifest::load(root, catalog, t0_certify::STAGE, Some(&u.run_id))
            .is_ok_and(|c| c.manifest_hash == u.manifest_hash && c.manifest.gate == Some(Verdict::Certified))
    });
    if !certified {
        return Err(Error::Refused(format!(
            "predictions of score run {} do not come from a certified run",
            score.manifest.run_id
        )));
    }
    Ok((score, train))
}

/// The model run's state: the worst of its labels' (the initial state when none replayed),
/// and the reason naming the label that set it.
fn decide(labels: &[LabelReplay], initial: State) -> (State, String) {
    match labels.iter().max_by_key(|l| l.state) {
        Some(l) => (l.state, format!("{}: {}", l.label, l.why)),
        None => (initial, "no value label to replay: the initial state holds".into()),
    }
}

/// Long because: the stage's sequence — verify every input, replay each label, keep the
/// CI gate, search the grid when asked, then write and record every output.
pub fn run(root: &Root, clock: Clock, args: &CalibrateArgs, progress: &dyn Progress) -> Result<CalibrateReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let loaded = profile::load(&args.project, args.profile.as_deref(), &args.set)?;
    let grid_key = args.grid.as_ref().map(search::GridArgs::key);
    let config = ("calibrate-v2", &loaded.hash, args.initial_state.as_str(), grid_key);
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, t0_core::config::value_hash(&config));
    let (score, train) = upstream(root, &catalog)?;
    // The drift file is consumed (verified) too: a tampered one is exit 3 here.
    let preds = run.consume(&score, &["predictions", "drift"])?;
    let (models, skipped) = value_models(root, &mut run, &train)?;
    // A replay continues from the previous one of this model under the same profile; a
    // changed profile replays from the start (its state was reached under other rules).
    let prev =
        previous(root, &catalog, &mut run, &train.manifest.run_id)?.filter(|(_, r)| r.profile_hash == loaded.hash);
    if let (Some((c, r)), None) = (&prev, &args.grid)
        && r.score_run == score.manifest.run_id
    {
        return Err(Error::NothingToDo(format!(
            "calibrate run {} already replayed score run {} under this profile: nothing new to replay",
            c.manifest.run_id, r.score_run
        )));
    }
    let mut gate = last_gate(root, &catalog, &mut run)?;
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    let labels = t0_certify::labels::labels_for(root, &catalog, &cert)?;
    let labels = run.consume(&labels, &["labels"])?;
    let run_id = run.run_id("");
    run.ensure_new(&run_id)?;
    t0_manifest::purge_unrecorded(&catalog, &run_id, &["acceptance", "governance_state", "ci_gate"])?;
    let lit = |o: &t0_manifest::Output| Ok::<_, Error>(t0_catalog::quote_literal(&o.path(root)?.display().to_string()));
    let latency = latencies(&score);
    let inputs =
        ReplayInputs { catalog: &catalog, preds: lit(&preds[0])?, labels: lit(&labels[0])?, latency: &latency };

    progress.phase("replay", Some(models.len() as u64));
    let initial = state_of(args.initial_state);
    let (mut replays, mut traces) = (Vec::new(), Vec::new());
    for m in &models {
        let before = prev.as_ref().and_then(|(_, r)| r.labels.iter().find(|l| l.label == m.target));
        let (r, steps, records) = replay_label(&inputs, &loaded.profile, m, before, initial)?;
        replays.push(r);
        traces.push((m.target.clone(), steps, records));
        progress.advance(1);
    }
    progress.finish();
    let grid = match &args.grid {
        Some(g) => {
            // The grid replays every matured step of the score run from a fresh start.
            let all = models
                .iter()
                .map(|m| {
                    let s =
                        steps::matured(&catalog, &inputs.preds, &inputs.labels, &m.target, None, latency(&m.target));
                    Ok((m, s?))
                })
                .collect::<Result<Vec<_>>>()?;
            Some(search::run(root, &run_id, &loaded, g, &all, initial, progress)?)
        }
        None => None,
    };
    let (state, reason) = decide(&replays, initial);
    let target = train.manifest.summary["target"].as_str().map(str::to_string);
    let primary = models.iter().find(|m| Some(&m.target) == target.as_ref()).or(models.first());
    let (scored, matured, coverage, mae) = match primary {
        Some(m) => served_coverage(&catalog, &inputs.preds, &inputs.labels, &m.target)?,
        None => (0, 0, None, None),
    };
    let ci_gap = {
        let (hits, n) = replays.iter().fold((0.0, 0u64), |(h, n), r| {
            (h + r.summary.coverage.unwrap_or(0.0) * r.new_steps as f64, n + r.new_steps)
        });
        (n > 0).then(|| (hits / n as f64 - (1.0 - loaded.profile.aci.alpha_target)).abs())
    };
    gate.observe(&loaded.profile.ci_gate, ci_gap);
    let report = CalibrateReport {
        run_id: run_id.clone(),
        score_run: score.manifest.run_id.clone(),
        model_run: train.manifest.run_id.clone(),
        label: primary.map_or_else(|| target.clone().unwrap_or_default(), |m| m.target.clone()),
        state: verdict(state),
        reason,
        nominal: primary.map_or(f64::NAN, |m| m.nominal),
        coverage,
        coverage_target: Some(1.0 - loaded.profile.aci.alpha_target),
        matured: matured as u64,
        scored: scored as u64,
        mean_abs_error: mae,
        profile: loaded.source.clone(),
        profile_hash: loaded.hash.clone(),
        continued_from: prev.as_ref().map(|(c, _)| c.manifest.run_id.clone()),
        labels: replays,
        skipped,
        ci_gate: gate,
        ci_gap,
        grid,
        report: format!("calib/{run_id}/report.json"),
        steps: format!("calib/{run_id}/steps.parquet"),
        metrics: "metrics/calibrate.prom".to_string(),
    };
    let traced: Vec<steps::Traced> = traces
        .iter()
        .flat_map(|(label, steps, records)| {
            steps.iter().zip(records).map(move |(step, record)| steps::Traced { label, step, record })
        })
        .collect();
    steps::write_trace(&root.join(&report.steps), &traced)?;
    let outputs = write_outputs(root, &catalog, &clock, &report, &loaded)?;
    run.finish(&run_id, Some(report.state), outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// Write the report and metrics, insert the catalog rows, and record the outputs.
fn write_outputs(
    root: &Root,
    catalog: &Catalog,
    clock: &Clock,
    report: &CalibrateReport,
    loaded: &profile::Loaded,
) -> Result<Vec<t0_manifest::Output>> {
    let run_id = &report.run_id;
    t0_core::fsio::write_atomic(&root.join(&report.report), &t0_model::json_bytes(report)?)?;
    // The metrics file is the latest export for a textfile collector: replaced every run.
    t0_core::fsio::write_atomic(
        &root.join(&report.metrics),
        export::prom(report, &loaded.name, loaded.profile.aci.alpha_target, loaded.profile.ci_gate.tolerance)
            .as_bytes(),
    )?;
    let at = clock.stamp();
    let at = at.trim_end_matches('Z');
    catalog.transaction(|c| {
        c.execute(
            "INSERT INTO acceptance VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![run_id, report.state.as_str(), report.coverage, report.nominal, report.matured, at],
        )
        .ctx(|| "record acceptance".into())?;
        for l in &report.labels {
            let a = &l.carry.aci;
            c.execute(
                "INSERT INTO governance_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(?), ?, ?)",
                params![
                    run_id,
                    report.model_run,
                    l.label,
                    l.state.as_str(),
                    a.alpha,
                    a.inflation,
                    a.coverage_ema,
                    a.miss_streak as i64,
                    a.steps as i64,
                    l.last_t0_us,
                    l.last_entity,
                    serde_json::to_string(&l.carry).expect("plain struct"),
                ],
            )
            .ctx(|| format!("record the governance state of label {}", l.label))?;
        }
        let g = &report.ci_gate;
        c.execute(
            "INSERT INTO ci_gate VALUES (?, ?, ?, ?, ?, ?)",
            params![run_id, report.ci_gap, g.ema, g.state.as_str(), g.violation_run as i64, g.clean_run as i64],
        )
        .ctx(|| "record the CI gate".into())?;
        Ok(())
    })?;
    let table = |name: &str, table: &str, key: &[&str]| {
        let key = key.iter().map(|k| k.to_string()).collect();
        t0_manifest::record_output(
            root,
            catalog,
            name,
            Location::Table { table: table.into(), key, run_id: Some(run_id.clone()) },
        )
    };
    let mut outputs = vec![
        t0_manifest::record_output(root, catalog, "calib.report", Location::File { path: report.report.clone() })?,
        t0_manifest::record_output(root, catalog, "calib.steps", Location::File { path: report.steps.clone() })?,
        table("calib.acceptance", "acceptance", &["run_id"])?,
        table("calib.state", "governance_state", &["label"])?,
        table("calib.ci_gate", "ci_gate", &["run_id"])?,
    ];
    if let Some(g) = &report.grid {
        outputs.extend(search::record(root, catalog, g)?);
    }
    Ok(outputs)
}

/// `calibrate status`: where the loop stands.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub model_run: String,
    pub state: Verdict,
    pub reason: String,
    /// The calibrate run from which the model has been in this state, and when it decided.
    pub since_run: String,
    pub since: Option<String>,
    /// The latest calibrate run.
    pub run_id: String,
    pub profile: String,
    pub labels: Vec<LabelStatus>,
    pub ci_gate: CiGate,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LabelStatus {
    pub label: String,
    pub state: State,
    pub why: String,
    pub alpha: f64,
    pub inflation: f64,
    pub coverage_ema: f64,
    pub miss_streak: usize,
    /// Steps replayed since the model's first replay.
    pub steps: usize,
    pub last_t0: Option<String>,
}

/// The latest calibrate run's state, and since when (verified manifests; read-only).
pub fn status(root: &Root) -> Result<Status> {
    if !root.catalog().exists() {
        return Err(Error::Refused(format!("no catalog at {}", root.catalog().display())));
    }
    let catalog = Catalog::open_read_only(root)?;
    let ids = t0_manifest::run_ids(&catalog, STAGE)?;
    let Some(latest) = ids.last() else {
        return Err(Error::Usage("no calibrate run is recorded yet: run calibrate first".into()));
    };
    let report = |id: &str| -> Result<CalibrateReport> {
        let cal = t0_manifest::load(root, &catalog, STAGE, Some(id))?;
        serde_json::from_value(cal.manifest.summary.clone())
            .map_err(|e| Error::Refused(format!("calibrate run {id} has no replay summary ({e}): run calibrate again")))
    };
    let r = report(latest)?;
    let mut since_run = latest.clone();
    for id in ids.iter().rev().skip(1) {
        match report(id) {
            Ok(p) if p.model_run == r.model_run && p.state == r.state => since_run = id.clone(),
            _ => break,
        }
    }
    let since: Option<String> = catalog
        .conn()
        .query_row(
            "SELECT strftime(decided_at, '%Y-%m-%dT%H:%M:%SZ') FROM acceptance WHERE run_id = ?",
            [&since_run],
            |row| row.get(0),
        )
        .ok();
    let labels = r
        .labels
        .iter()
        .map(|l| LabelStatus {
            label: l.label.clone(),
            state: l.state,
            why: l.why.clone(),
            alpha: l.carry.aci.alpha,
            inflation: l.carry.aci.inflation,
            coverage_ema: l.carry.aci.coverage_ema,
            miss_streak: l.carry.aci.miss_streak,
            steps: l.carry.aci.steps,
            last_t0: l.last_t0.clone(),
        })
        .collect();
    Ok(Status {
        model_run: r.model_run,
        state: r.state,
        reason: r.reason,
        since_run,
        since,
        run_id: r.run_id,
        profile: r.profile,
        labels,
        ci_gate: r.ci_gate,
    })
}
