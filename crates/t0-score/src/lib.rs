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
    /// Coverage levels of the extra split-conformal intervals (`lower_<pct>`, `upper_<pct>`).
    pub levels: Vec<f64>,
    /// Also write every feature's contribution (`explanations.parquet`).
    pub explain_all: bool,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ScoreReport {
    pub run_id: String,
    pub model_run: String,
    /// The label predicted, and the nominal coverage of its interval.
    pub label: String,
    pub nominal: f64,
    pub rows: u64,
    /// Which T0s were scored.
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
    fn select(&self, model: &t0_train::Model, first: &std::path::Path) -> (String, String) {
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

/// The acceptance state of the model of train-suite run `model_run`: the verdict of the latest
/// calibrate run that judged that model's predictions (verified and consumed), and that run's
/// id; `None` before any calibration of this model. Verdicts on other models never apply: a
/// retrained model starts afresh, so a BLOCK cannot lock the loop.
pub fn acceptance(
    root: &Root,
    catalog: &Catalog,
    run: &mut StageRun,
    model_run: &str,
) -> Result<Option<(Verdict, String)>> {
    for run_id in t0_manifest::run_ids(catalog, Stage::Calibrate)?.iter().rev() {
        let cal = t0_manifest::load(root, catalog, Stage::Calibrate, Some(run_id))?;
        if cal.manifest.summary["model_run"].as_str() != Some(model_run) {
            continue;
        }
        run.consume(&cal, &["calib.report"])?;
        return Ok(cal.manifest.gate.map(|g| (g, run_id.clone())));
    }
    Ok(None)
}

/// Every column the model reads must be in its source file: exit 3 naming the column, the
/// source and its file, rather than a query error.
fn check_columns(
    catalog: &Catalog,
    sources: &[t0_train::Source],
    specs: &[t0_train::ColumnSpec],
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
fn gate(args: &ScoreArgs, judged: Option<(Verdict, String)>, model_run: &str) -> Result<(Verdict, Option<String>)> {
    let (state, from) = match judged {
        Some((v, r)) => (v, Some(r)),
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
fn skew(model: &t0_train::Model, cert: &t0_manifest::Loaded, model_path: &str) -> Result<()> {
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

/// The model being served: itself, its file and its train-suite run.
#[derive(Clone, Copy)]
struct Served<'a> {
    model: &'a t0_train::Model,
    path: &'a str,
    run: &'a str,
}

/// What a score run wrote, and the drift its report quotes.
struct Written {
    outputs: Vec<t0_manifest::Output>,
    path: String,
    explanations: Option<String>,
    drift: Vec<drift::Drift>,
    /// (level, mean half-width) of each interval, the nominal one first.
    intervals: Vec<(f64, f64)>,
}

/// Predict and explain every row of `frame`; write the predictions (and, when asked, the
/// full contribution matrix), the drift file, table and metrics; record them as outputs.
fn write_outputs(
    root: &Root,
    catalog: &Catalog,
    run_id: &str,
    served: Served,
    frame: &t0_train::Frame,
    args: &ScoreArgs,
) -> Result<Written> {
    let (model, n) = (served.model, frame.rows());
    let scored = explain::score_rows(model, frame, served.path)?;
    let write = |rel: &str, cols: &explain::Columns| {
        let cols: Vec<(&str, arrow::array::ArrayRef)> = cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
        t0_train::write_rows(&root.join(rel), &frame.entity_id, &frame.t0, cols)
    };
    let rel = format!("lake/predictions/{run_id}/predictions.parquet");
    write(&rel, &explain::columns(model, frame, &scored, args.top_k, &args.levels))?;
    let mut outputs =
        vec![t0_manifest::record_output(root, catalog, "predictions", Location::per_entity_t0(rel.clone()))?];
    let explanations = if args.explain_all {
        let m = format!("lake/predictions/{run_id}/explanations.parquet");
        write(&m, &explain::matrix(frame, &scored)?)?;
        outputs.push(t0_manifest::record_output(root, catalog, "explanations", Location::per_entity_t0(m.clone()))?);
        Some(m)
    } else {
        None
    };
    let drift = drift::measure(model, frame, &explain::predictions(&scored));
    let drift_rel = drift::rel(run_id);
    drift::write(&root.join(&drift_rel), &model.target, &drift, n)?;
    t0_manifest::purge_unrecorded(catalog, run_id, &["drift"])?;
    drift::record(catalog, run_id, served.run, &model.target, &drift, n)?;
    drift::export(root, &model.target, &drift)?;
    let key = vec!["kind".into(), "name".into()];
    outputs.push(t0_manifest::record_output(root, catalog, "drift", Location::Parquet { path: drift_rel, key })?);
    let table = Location::Table { table: "drift".into(), key: vec!["name".into()], run_id: Some(run_id.to_string()) };
    outputs.push(t0_manifest::record_output(root, catalog, "drift.table", table)?);
    let levels = std::iter::once(model.nominal).chain(args.levels.iter().copied().filter(|l| *l != model.nominal));
    let mean = |l: f64| (0..n).map(|i| model.halfwidth_at(frame.row(i), l)).sum::<f64>() / n.max(1) as f64;
    let intervals = levels.map(|l| (l, mean(l))).collect();
    Ok(Written { outputs, path: rel, explanations, drift, intervals })
}

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
            "score-v1",
            format!("{:?}", args.rows),
            args.initial_state.as_str(),
            &args.override_block,
            args.top_k,
            &args.levels,
            args.explain_all,
        )),
    );
    let train = t0_manifest::load(root, &catalog, t0_train::STAGE, None)?;
    if train.manifest.summary["target"].is_null() {
        // Placeholder until score serves every label's selected model (issue 28).
        return Err(Error::Refused(format!(
            "train-suite run {} serves no model: the project has no value or flow label to serve with an interval (binary and time-to-event labels are trained and selected, not yet served)",
            train.manifest.run_id
        )));
    }
    let model_out = run.consume(&train, &["run.model"])?;
    let model = t0_train::read_model(root, &model_out[0])?;
    let model_path = root.relative(&model_out[0].path(root)?);
    let judged = acceptance(root, &catalog, &mut run, &train.manifest.run_id)?;
    let (state, acceptance_from) = gate(args, judged, &train.manifest.run_id)?;
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    skew(&model, &cert, &model_path)?;
    let surfaces: Vec<String> =
        model.sources.iter().filter_map(|s| s.strip_prefix("surface.").map(str::to_string)).collect();
    let embeddings: Vec<String> =
        model.sources.iter().filter(|s| s.starts_with("embeddings.") || s.starts_with("fused.")).cloned().collect();
    let (sources, _) =
        t0_train::feature_sources(root, &catalog, &args.project, &cert, &mut run, &surfaces, &embeddings)?;
    check_columns(&catalog, &sources, &model.columns, &model_path)?;
    let (where_sql, selected) = args.rows.select(&model, &sources[0].path);
    let run_id = run.run_id(&selected);
    run.ensure_new(&run_id)?;
    progress.phase("score", None);
    let raw = t0_train::features::load(&catalog, &sources, &model.columns, None, &where_sql)?;
    let frame = t0_train::features::encode(raw, &model.columns);
    if frame.names != model.features {
        return Err(Error::Refused(format!(
            "model {model_path} expects features {:?}, the surface gives {:?}",
            model.features, frame.names
        )));
    }
    let n = frame.rows();
    let served = Served { model: &model, path: &model_path, run: &train.manifest.run_id };
    let w = write_outputs(root, &catalog, &run_id, served, &frame, args)?;
    progress.advance(n as u64);
    progress.finish();
    let drift = &w.drift;
    let worst = drift.iter().filter(|d| d.kind == "feature").max_by(|a, b| a.psi.total_cmp(&b.psi));
    let report = ScoreReport {
        run_id: run_id.clone(),
        model_run: train.manifest.run_id.clone(),
        label: model.target.clone(),
        nominal: model.nominal,
        rows: n as u64,
        selected,
        acceptance: state,
        acceptance_from,
        override_reason: if state == Verdict::Block { args.override_block.clone() } else { None },
        path: w.path.clone(),
        explanations: w.explanations.clone(),
        intervals: w.intervals.clone(),
        interval_method: model.interval_method.as_str().to_string(),
        prediction_psi: drift.iter().find(|d| d.kind == "prediction").map(|d| d.psi),
        worst_feature_psi: worst.map(|d| (d.name.clone(), d.psi)),
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
        }
    }

    #[test]
    fn a_source_without_a_column_the_model_reads_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surface.parquet");
        let x: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::Float64Array::from(vec![1.0]));
        t0_train::write_rows(&path, &["e1".into()], &[0], vec![("x1", x)]).unwrap();
        let sources = [t0_train::Source { output: "surface.base".into(), path: path.clone() }];
        let spec = |column: &str| t0_train::ColumnSpec {
            source: "surface.base".into(),
            column: column.into(),
            kind: t0_train::features::ColumnKind::Categorical { levels: vec![] },
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
        let judged = |v| Some((v, "cal1".to_string()));
        let ok = |a: &ScoreArgs, j| gate(a, j, "m1").map_err(|e| e.to_string());
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
