//! `score`: applies a train-suite run to the certified surface at new T0s and writes
//! predictions with intervals and per-row exact explanations (contributions that add up to
//! the model's output, checked on every row). Refuses on train/serve skew (the model's
//! certified view definition differs from the scoring surface's) and stops on an acceptance
//! state of BLOCK that calibration gave *this* model (a new model starts in a configured
//! initial state), unless the BLOCK is overridden with a recorded reason.

pub mod drift;
pub mod entity;
pub mod explain;

use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root, Stage, Verdict};
use t0_manifest::{Location, StageRun};

pub const STAGE: t0_core::Stage = t0_core::Stage::Score;

pub struct ScoreArgs {
    pub project: t0_project::Project,
    pub max_age_days: i64,
    /// Which T0s to score.
    pub rows: Rows,
    /// The acceptance state of a model no calibration has judged yet.
    pub initial_state: Verdict,
    /// Score despite a BLOCK; the reason is recorded in the manifest.
    pub override_block: Option<String>,
    /// Contributions named per row (`reason1_…` to `reason{k}_…`).
    pub top_k: usize,
    /// Coverage levels of the extra intervals (`lower_<pct>`, `upper_<pct>`) and survival
    /// lower bounds (`lower_bound_<pct>`).
    pub levels: Vec<f64>,
    /// Also write every feature's contribution (`explanations.parquet`).
    pub explain_all: bool,
    /// Also score every other leaderboard model (rows with `selected` false).
    pub all_models: bool,
}

/// One served label of a score run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabelScored {
    pub label: String,
    /// `value`, `binary` or `time_to_event`.
    pub kind: String,
    /// The model (`+<fusion>` when fused), and whether it is the label's selected one (the
    /// others are scored for comparison, `--models all`).
    pub model: String,
    pub selected: bool,
    pub rows: u64,
    /// Which T0s were scored for this label.
    pub t0s: String,
    /// Value labels: (level, mean half-width) of each interval, the nominal one first, and
    /// the interval method chosen at training.
    pub intervals: Vec<(f64, f64)>,
    pub interval_method: Option<String>,
    /// Binary labels: the decision threshold and the share of rows decided positive.
    pub threshold: Option<f64>,
    pub positive_share: Option<f64>,
    /// Time-to-event labels: the lower bound's truncation threshold c0 (hours), when the
    /// model has a conformal lower bound.
    pub bound_c0: Option<f64>,
    /// PSI of this label's prediction against its training block.
    pub prediction_psi: Option<f64>,
    /// Value labels scored at the level calibrate's adaptive conformal inference left for
    /// this model (instead of the nominal one): (level, inflation, calibrate run).
    #[serde(default)]
    pub adapted: Option<(f64, f64, String)>,
    /// The amortised decision latency: this label's scoring time (features, predictions,
    /// explanations) over its rows, in ms. None under a pinned clock (a replay or a test
    /// records no wall time, so its outputs stay bit-identical).
    #[serde(default)]
    pub latency_ms: Option<f64>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ScoreReport {
    pub run_id: String,
    pub model_run: String,
    /// Every label scored, in label order (the predictions file has one row per entity, T0
    /// and label).
    #[serde(default)]
    pub labels: Vec<LabelScored>,
    /// The primary label (the train-suite target, else the first served), and the nominal
    /// coverage of its interval; the fields below describe it.
    pub label: String,
    pub nominal: f64,
    /// Rows written over every label.
    pub rows: u64,
    /// Which T0s were scored (of the primary label).
    pub selected: String,
    /// The acceptance state of this model when it was scored.
    pub acceptance: Verdict,
    /// The calibrate run that judged this model's predictions; none: the initial state of a
    /// model not yet calibrated.
    pub acceptance_from: Option<String>,
    /// Why a BLOCK was overridden, when it was.
    pub override_reason: Option<String>,
    pub path: String,
    /// The full contribution matrix, when asked for (`--explain-all`).
    pub explanations: Option<String>,
    /// (level, mean half-width) of each interval written, the nominal one first.
    pub intervals: Vec<(f64, f64)>,
    /// `split` (one half-width) or `normalized` (proportional to a fitted scale), as chosen
    /// on the calibration block at training.
    pub interval_method: String,
    /// PSI of the prediction against the training block (the drift file has every feature's).
    pub prediction_psi: Option<f64>,
    /// The feature of largest PSI, and its PSI.
    pub worst_feature_psi: Option<(String, f64)>,
}

/// Which (entity, T0) rows of the certified surface a score run predicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Rows {
    /// From the start of the model's test block on (the default).
    #[default]
    TestBlock,
    /// T0 within [from, to], either end open.
    Range { from: Option<chrono::DateTime<chrono::Utc>>, to: Option<chrono::DateTime<chrono::Utc>> },
    /// Each entity's latest certified T0: the population a user acts on today.
    Latest,
}

impl Rows {
    /// (the SQL condition on `s0`, the surface's first source, and a description).
    fn select(&self, model: &t0_model::Model, first: &std::path::Path) -> (String, String) {
        let us = |t: &chrono::DateTime<chrono::Utc>| t.timestamp_micros();
        let at =
            |t: i64| chrono::DateTime::from_timestamp_micros(t).map(t0_core::clock::format_utc).unwrap_or_default();
        match self {
            Rows::TestBlock => (
                format!("epoch_us(s0.t0) >= {}", model.test_from),
                format!("T0 from {} (the model's test block)", at(model.test_from)),
            ),
            Rows::Range { from, to } => {
                let lo = from.as_ref().map_or(i64::MIN, us);
                let hi = to.as_ref().map_or(i64::MAX, us);
                (format!("epoch_us(s0.t0) BETWEEN {lo} AND {hi}"), format!("T0 in [{}, {}]", at(lo), at(hi)))
            }
            Rows::Latest => (
                format!(
                    "s0.t0 = (SELECT max(m.t0) FROM read_parquet({}) m WHERE m.entity_id = s0.entity_id)",
                    t0_catalog::quote_literal(&first.display().to_string())
                ),
                "each entity's latest certified T0".into(),
            ),
        }
    }
}

/// What the latest calibration of a model decided: its verdict, the calibrate run, and per
/// label the ACI state's (α, inflation) the next intervals are issued at.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub run_id: String,
    pub adapted: Vec<(String, f64, f64)>,
}

/// The acceptance state of the model of train-suite run `model_run`: the verdict of the latest
/// calibrate run that judged that model's predictions (its report verified and consumed), and
/// the ACI state it left per label; `None` before any calibration of this model. Verdicts on
/// other models never apply: a retrained model starts afresh, so a BLOCK cannot lock the loop.
pub fn acceptance(root: &Root, catalog: &Catalog, run: &mut StageRun, model_run: &str) -> Result<Option<Judged>> {
    for run_id in t0_manifest::run_ids(catalog, Stage::Calibrate)?.iter().rev() {
        let cal = t0_manifest::load(root, catalog, Stage::Calibrate, Some(run_id))?;
        if cal.manifest.summary["model_run"].as_str() != Some(model_run) {
            continue;
        }
        // The state table is verified with the report (runs before the replay had none).
        let out = run.consume(&cal, &cal.recorded(&["calib.report", "calib.state"]))?;
        let path = out[0].path(root)?;
        let text = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
        let report: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        let adapted = report["labels"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| {
                        let aci = &l["carry"]["aci"];
                        Some((l["label"].as_str()?.to_string(), aci["alpha"].as_f64()?, aci["inflation"].as_f64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Ok(cal.manifest.gate.map(|verdict| Judged { verdict, run_id: run_id.clone(), adapted }));
    }
    Ok(None)
}

/// Every column the model reads must be in its source file: exit 3 naming the column, the
/// source and its file, rather than a query error.
fn check_columns(
    catalog: &Catalog,
    sources: &[t0_model::Source],
    specs: &[t0_model::ColumnSpec],
    model: &str,
) -> Result<()> {
    for s in sources {
        let file = t0_catalog::quote_literal(&s.path.display().to_string());
        let have: Vec<String> = {
            let sql = format!("SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet({file}))");
            let mut stmt = catalog.conn().prepare(&sql).ctx(|| format!("describe {}", s.path.display()))?;
            let rows = stmt.query_map([], |r| r.get(0)).ctx(|| format!("describe {}", s.path.display()))?;
            rows.collect::<std::result::Result<_, _>>().ctx(|| format!("describe {}", s.path.display()))?
        };
        if let Some(c) = specs.iter().find(|c| c.source == s.output && !have.iter().any(|h| h == c.source_column())) {
            return Err(Error::Refused(format!(
                "{} ({}) has no column {}, which model {model} needs",
                s.output,
                s.path.display(),
                c.source_column()
            )));
        }
    }
    Ok(())
}

/// The state this model is scored under: BLOCK stops it unless overridden with a reason.
fn gate(args: &ScoreArgs, judged: Option<&Judged>, model_run: &str) -> Result<(Verdict, Option<String>)> {
    let (state, from) = match judged {
        Some(j) => (j.verdict, Some(j.run_id.clone())),
        None => (args.initial_state, None),
    };
    if state == Verdict::Block && args.override_block.is_none() {
        let why = match &from {
            Some(r) => format!("calibrate run {r} found the intervals of model {model_run} unreliable"),
            None => format!("model {model_run} is not calibrated yet and the initial state is BLOCK"),
        };
        return Err(Error::Gate(format!(
            "the acceptance state is BLOCK: {why}; retrain and calibrate, or score with --override-block --reason TEXT"
        )));
    }
    Ok((state, from))
}

/// The model must have been trained on the view definitions the scoring surface certifies.
fn skew(model: &t0_model::Model, cert: &t0_manifest::Loaded, model_path: &str) -> Result<()> {
    for (surface, trained) in &model.surface_view_defs {
        let now = t0_certify::certified_view_def(cert, surface).unwrap_or_default();
        if &now != trained {
            return Err(Error::Refused(format!(
                "train/serve skew: model {model_path} was trained on view definition {trained} of store {surface}, the scoring surface (certify run {}) has {now}",
                cert.manifest.run_id
            )));
        }
    }
    Ok(())
}

/// One label's served model, its file, and the rows it scored.
struct Served {
    model: t0_model::Model,
    path: String,
    /// The label's selected model (else one scored for comparison, `--models all`).
    selected: bool,
    /// Which T0s (SQL on `s0`, and a description).
    rows: (String, String),
    /// (level, inflation, calibrate run) when its intervals are issued at an adapted level.
    adapted: Option<(f64, f64, String)>,
}

/// A value model's intervals at the level calibrate's ACI left for its label, if any.
fn adapt(model: t0_model::Model, judged: Option<&Judged>) -> (t0_model::Model, Option<(f64, f64, String)>) {
    let found = judged.and_then(|j| {
        let (_, alpha, inflation) = j.adapted.iter().find(|(l, _, _)| *l == model.target)?;
        Some((1.0 - alpha, *inflation, j.run_id.clone()))
    });
    match (found, &model.head) {
        (Some((level, inflation, from)), t0_model::head::Head::Value { .. }) => {
            (model.at_level(level, inflation), Some((level, inflation, from)))
        }
        _ => (model, None),
    }
}

/// A model to score: itself, its file, and whether it is its label's selected one.
type ToScore = (t0_model::Model, String, bool);

/// The served models of a train-suite run, one per trained label in label order (verified and
/// consumed); a run from before per-label serving gives its `model.json` alone. With `all`,
/// then every other leaderboard model (`models/<label>__<id>.json`), for comparison.
fn served_models(root: &Root, run: &mut StageRun, train: &t0_manifest::Loaded, all: bool) -> Result<Vec<ToScore>> {
    let named = |prefix: &str| -> Vec<&str> {
        train.manifest.outputs.iter().filter(|o| o.name.starts_with(prefix)).map(|o| o.name.as_str()).collect()
    };
    let mut names = named(t0_model::SERVED_PREFIX);
    if names.is_empty() && train.manifest.outputs.iter().any(|o| o.name == "run.model") {
        names.push("run.model");
    }
    if names.is_empty() {
        return Err(Error::Refused(format!(
            "train-suite run {} serves no model: no label was trained (see its skipped labels)",
            train.manifest.run_id
        )));
    }
    let read = |o: &t0_manifest::Output| -> Result<(t0_model::Model, String)> {
        Ok((t0_model::read_model(root, o)?, root.relative(&o.path(root)?)))
    };
    let mut out: Vec<ToScore> = Vec::new();
    for o in run.consume(train, &names)? {
        let (m, p) = read(&o)?;
        out.push((m, p, true));
    }
    if all {
        for o in run.consume(train, &named(t0_model::MODELS_PREFIX))? {
            let (m, p) = read(&o)?;
            let id = explain::model_name(&m);
            if !out.iter().any(|(s, _, _)| s.target == m.target && explain::model_name(s) == id) {
                out.push((m, p, false));
            }
        }
    }
    Ok(out)
}

/// What a score run wrote, and per label what its report quotes.
struct Written {
    outputs: Vec<t0_manifest::Output>,
    path: String,
    explanations: Option<String>,
    labels: Vec<LabelScored>,
    drift: Vec<(String, drift::Drift)>,
}

/// One label scored: its long-table part, its explanation matrix when asked, its drift.
struct Scored {
    part: explain::Part,
    matrix: Option<explain::Part>,
    summary: LabelScored,
    drift: Vec<drift::Drift>,
}

/// Predict and explain every selected row of one served label.
fn score_label(catalog: &Catalog, sources: &[t0_model::Source], served: &Served, args: &ScoreArgs) -> Result<Scored> {
    let model = &served.model;
    let mine: Vec<t0_model::Source> = sources.iter().filter(|s| model.sources.contains(&s.output)).cloned().collect();
    check_columns(catalog, &mine, &model.columns, &served.path)?;
    let raw = t0_model::features::load(catalog, &mine, &model.columns, None, &served.rows.0)?;
    let frame = t0_model::features::encode(raw, &model.columns);
    if frame.names != model.features {
        return Err(Error::Refused(format!(
            "model {} expects features {:?}, the surface gives {:?}",
            served.path, model.features, frame.names
        )));
    }
    let rows = explain::score_rows(model, &frame, &served.path)?;
    let part = |cols| explain::Part { entity_id: frame.entity_id.clone(), t0: frame.t0.clone(), cols };
    let mut cols = explain::columns(model, &frame, &rows, args.top_k, &args.levels);
    let flag: arrow::array::ArrayRef =
        std::sync::Arc::new(arrow::array::BooleanArray::from(vec![served.selected; frame.rows()]));
    cols.insert(3, ("selected".into(), flag));
    let matrix = match (args.explain_all, served.selected) {
        (true, true) => Some(part(explain::matrix(model, &frame, &rows)?)),
        _ => None,
    };
    // Drift is the selected model's: the others are scored for comparison only.
    let drift = if served.selected { drift::measure(model, &frame, &explain::predictions(&rows)) } else { Vec::new() };
    let summary = summarize(served, &frame, &rows, args, &drift);
    Ok(Scored { part: part(cols), matrix, summary, drift })
}

/// The report's figures of one scored label.
fn summarize(
    served: &Served,
    frame: &t0_model::Frame,
    rows: &[explain::Scored],
    args: &ScoreArgs,
    drift: &[drift::Drift],
) -> LabelScored {
    use t0_model::head::Head;
    let (model, n) = (&served.model, frame.rows());
    let mut s = LabelScored {
        label: model.target.clone(),
        kind: model.head.kind().to_string(),
        model: explain::model_name(model),
        selected: served.selected,
        rows: n as u64,
        t0s: served.rows.1.clone(),
        intervals: Vec::new(),
        interval_method: None,
        threshold: None,
        positive_share: None,
        bound_c0: None,
        prediction_psi: drift.iter().find(|d| d.kind == "prediction").map(|d| d.psi),
        adapted: served.adapted.clone(),
        latency_ms: None,
    };
    match &model.head {
        Head::Value { .. } => {
            let levels =
                std::iter::once(model.nominal).chain(args.levels.iter().copied().filter(|l| *l != model.nominal));
            let mean = |l: f64| (0..n).map(|i| model.halfwidth_at(frame.row(i), l)).sum::<f64>() / n.max(1) as f64;
            s.intervals = levels.map(|l| (l, mean(l))).collect();
            s.interval_method = Some(model.interval_method.as_str().to_string());
        }
        Head::Binary { threshold, .. } => {
            let p = explain::predictions(rows);
            let positive = p.iter().filter(|v| model.head.probability(**v) >= *threshold).count();
            s.threshold = Some(*threshold);
            s.positive_share = Some(positive as f64 / n.max(1) as f64);
        }
        Head::Survival { bound, .. } => s.bound_c0 = bound.as_ref().map(|b| b.c0),
    }
    s
}

/// Write the long predictions table (and, when asked, the long contribution matrix), the
/// drift file, table and metrics; record them as outputs.
fn write_outputs(
    root: &Root,
    catalog: &Catalog,
    run_id: &str,
    model_run: &str,
    scored: Vec<Scored>,
) -> Result<Written> {
    let write = |rel: &str, parts: &[explain::Part]| {
        let (ids, t0, cols) = explain::union(parts)?;
        let cols: Vec<(&str, arrow::array::ArrayRef)> = cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
        t0_model::write_rows(&root.join(rel), &ids, &t0, cols)
    };
    let (mut parts, mut matrices, mut labels, mut drift) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in scored {
        parts.push(s.part);
        matrices.extend(s.matrix);
        drift.extend(s.drift.into_iter().map(|d| (s.summary.label.clone(), d)));
        labels.push(s.summary);
    }
    let rel = format!("lake/predictions/{run_id}/predictions.parquet");
    write(&rel, &parts)?;
    let mut outputs =
        vec![t0_manifest::record_output(root, catalog, "predictions", Location::per_entity_t0(rel.clone()))?];
    let explanations = if matrices.is_empty() {
        None
    } else {
        let m = format!("lake/predictions/{run_id}/explanations.parquet");
        write(&m, &matrices)?;
        outputs.push(t0_manifest::record_output(root, catalog, "explanations", Location::per_entity_t0(m.clone()))?);
        Some(m)
    };
    let rows: Vec<u64> = labels.iter().map(|l| l.rows).collect();
    let rows_of = |label: &str| labels.iter().zip(&rows).find(|(l, _)| l.label == label).map_or(0, |(_, r)| *r);
    let drift_rel = drift::rel(run_id);
    drift::write(&root.join(&drift_rel), &drift, &rows_of)?;
    t0_manifest::purge_unrecorded(catalog, run_id, &["drift"])?;
    drift::record(catalog, run_id, model_run, &drift, &rows_of)?;
    drift::export(root, &drift)?;
    let key = vec!["label".into(), "kind".into(), "name".into()];
    outputs.push(t0_manifest::record_output(root, catalog, "drift", Location::Parquet { path: drift_rel, key })?);
    let table = Location::Table {
        table: "drift".into(),
        key: vec!["label".into(), "kind".into(), "name".into()],
        run_id: Some(run_id.to_string()),
    };
    outputs.push(t0_manifest::record_output(root, catalog, "drift.table", table)?);
    Ok(Written { outputs, path: rel, explanations, labels, drift })
}

/// Long because: the stage's sequence — verify every input (model files, acceptance,
/// certificate, skew, feature sources) before the run id is fixed, then score each label.
pub fn run(root: &Root, clock: Clock, args: &ScoreArgs, progress: &dyn Progress) -> Result<ScoreReport> {
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let mut run = StageRun::begin(
        root,
        &catalog,
        STAGE,
        clock,
        t0_core::config::value_hash(&(
            "score-v2",
            format!("{:?}", args.rows),
            args.initial_state.as_str(),
            &args.override_block,
            args.top_k,
            &args.levels,
            args.explain_all,
            args.all_models,
        )),
    );
    let train = t0_manifest::load(root, &catalog, t0_model::STAGE, None)?;
    let models = served_models(root, &mut run, &train, args.all_models)?;
    let judged = acceptance(root, &catalog, &mut run, &train.manifest.run_id)?;
    let (state, acceptance_from) = gate(args, judged.as_ref(), &train.manifest.run_id)?;
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    for (model, path, _) in &models {
        skew(model, &cert, path)?;
    }
    let all: Vec<&String> = {
        let mut v: Vec<&String> = Vec::new();
        for s in models.iter().flat_map(|(m, _, _)| &m.sources) {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    };
    let surfaces: Vec<String> = all.iter().filter_map(|s| s.strip_prefix("surface.").map(str::to_string)).collect();
    let embeddings: Vec<String> =
        all.iter().filter(|s| s.starts_with("embeddings.") || s.starts_with("fused.")).map(|s| s.to_string()).collect();
    let (sources, _) =
        t0_model::feature_sources(root, &catalog, &args.project, &cert, &mut run, &surfaces, &embeddings, None)?;
    let target = train.manifest.summary["target"].as_str().map(str::to_string);
    let primary = models.iter().position(|(m, _, _)| Some(&m.target) == target.as_ref()).unwrap_or(0);
    let served: Vec<Served> = models
        .into_iter()
        .map(|(model, path, selected)| {
            let rows = args.rows.select(&model, &sources[0].path);
            let (model, adapted) = adapt(model, judged.as_ref());
            Served { model, path, selected, rows, adapted }
        })
        .collect();
    let run_id = run.run_id(&served[primary].rows.1);
    run.ensure_new(&run_id)?;
    progress.phase("score", Some(served.len() as u64));
    let mut scored = Vec::new();
    for s in &served {
        let started = std::time::Instant::now();
        let mut one = score_label(&catalog, &sources, s, args)?;
        if !clock.is_pinned() {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            one.summary.latency_ms = Some(ms / one.summary.rows.max(1) as f64);
        }
        scored.push(one);
        progress.advance(1);
    }
    progress.finish();
    let w = write_outputs(root, &catalog, &run_id, &train.manifest.run_id, scored)?;
    let p = &w.labels[primary];
    let worst =
        w.drift.iter().filter(|(l, d)| *l == p.label && d.kind == "feature").max_by(|a, b| a.1.psi.total_cmp(&b.1.psi));
    let report = ScoreReport {
        run_id: run_id.clone(),
        model_run: train.manifest.run_id.clone(),
        label: p.label.clone(),
        nominal: served[primary].model.nominal,
        rows: w.labels.iter().map(|l| l.rows).sum(),
        selected: p.t0s.clone(),
        acceptance: state,
        acceptance_from,
        override_reason: if state == Verdict::Block { args.override_block.clone() } else { None },
        path: w.path.clone(),
        explanations: w.explanations.clone(),
        intervals: p.intervals.clone(),
        interval_method: p.interval_method.clone().unwrap_or_default(),
        prediction_psi: p.prediction_psi,
        worst_feature_psi: worst.map(|(_, d)| (d.name.clone(), d.psi)),
        labels: w.labels.clone(),
    };
    run.finish(&run_id, None, w.outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(initial_state: Verdict, override_block: Option<&str>) -> ScoreArgs {
        ScoreArgs {
            project: t0_project::Project::builtin(),
            max_age_days: 1,
            rows: Rows::TestBlock,
            initial_state,
            override_block: override_block.map(str::to_string),
            top_k: 3,
            levels: vec![],
            explain_all: false,
            all_models: false,
        }
    }

    #[test]
    fn a_source_without_a_column_the_model_reads_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surface.parquet");
        let x: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::Float64Array::from(vec![1.0]));
        t0_model::write_rows(&path, &["e1".into()], &[0], vec![("x1", x)]).unwrap();
        let sources = [t0_model::Source { output: "surface.base".into(), path: path.clone() }];
        let spec = |column: &str| t0_model::ColumnSpec {
            source: "surface.base".into(),
            column: column.into(),
            kind: t0_model::features::ColumnKind::Categorical { levels: vec![] },
        };
        let catalog = Catalog::scratch().unwrap();
        check_columns(&catalog, &sources, &[spec("x1")], "runs/r/model.json").unwrap();
        let e = check_columns(&catalog, &sources, &[spec("x1"), spec("x2")], "runs/r/model.json").unwrap_err();
        assert_eq!(e.exit_code(), t0_core::ExitCode::Refused);
        let m = e.to_string();
        assert!(m.contains("surface.base") && m.contains("no column x2") && m.contains("surface.parquet"), "{m}");
    }

    #[test]
    fn the_gate_follows_this_models_verdict_else_the_initial_state_and_block_needs_a_reason() {
        let judged = |verdict| Some(Judged { verdict, run_id: "cal1".into(), adapted: Vec::new() });
        let ok = |a: &ScoreArgs, j: Option<Judged>| gate(a, j.as_ref(), "m1").map_err(|e| e.to_string());
        assert_eq!(ok(&args(Verdict::Derisk, None), None), Ok((Verdict::Derisk, None)));
        assert_eq!(ok(&args(Verdict::Block, None), judged(Verdict::Pass)), Ok((Verdict::Pass, Some("cal1".into()))));
        let e = ok(&args(Verdict::Block, None), None).unwrap_err();
        assert!(e.contains("not calibrated yet") && e.contains("--override-block"), "{e}");
        let e = ok(&args(Verdict::Pass, None), judged(Verdict::Block)).unwrap_err();
        assert!(e.contains("calibrate run cal1") && e.contains("model m1"), "{e}");
        assert_eq!(
            ok(&args(Verdict::Pass, Some("review")), judged(Verdict::Block)),
            Ok((Verdict::Block, Some("cal1".into())))
        );
    }
}
