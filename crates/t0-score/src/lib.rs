//! `score`: applies a train-suite run to the certified surface at new T0s and writes
//! predictions with intervals and per-row explanations. Refuses on train/serve skew (the
//! model's certified view definition differs from the scoring surface's) and stops on an
//! acceptance state of BLOCK from the calibration loop.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray};
use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root, Stage, Verdict};
use t0_manifest::{Location, StageRun};

pub const STAGE: t0_core::Stage = t0_core::Stage::Score;

pub struct ScoreArgs {
    pub project: t0_project::Project,
    pub max_age_days: i64,
    /// Score rows with T0 at or after this time; default: the model's test block.
    pub t0_from: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ScoreReport {
    pub run_id: String,
    pub model_run: String,
    pub rows: u64,
    pub t0_from: String,
    pub acceptance: Option<Verdict>,
    pub path: String,
}

/// The acceptance state of the latest calibrate run, verified; `None` before any calibration.
pub fn acceptance(root: &Root, catalog: &Catalog, run: &mut StageRun) -> Result<Option<Verdict>> {
    let Some(run_id) = t0_manifest::latest_run_id(catalog, Stage::Calibrate)? else {
        return Ok(None);
    };
    let cal = t0_manifest::load(root, catalog, Stage::Calibrate, Some(&run_id))?;
    run.consume(&cal, &["calib.report"])?;
    Ok(cal.manifest.gate)
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
        t0_core::config::value_hash(&("score-v1", args.t0_from.map(|t| t.timestamp_micros()))),
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
    let state = acceptance(root, &catalog, &mut run)?;
    if state == Some(Verdict::Block) {
        return Err(Error::Gate(
            "the acceptance state is BLOCK: the latest calibration found the intervals unreliable; retrain and calibrate before scoring".into(),
        ));
    }
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    for (surface, trained) in &model.surface_view_defs {
        let now = t0_certify::certified_view_def(&cert, surface).unwrap_or_default();
        if &now != trained {
            return Err(Error::Refused(format!(
                "train/serve skew: model {model_path} was trained on view definition {trained} of store {surface}, the scoring surface (certify run {}) has {now}",
                cert.manifest.run_id
            )));
        }
    }
    let surfaces: Vec<String> =
        model.sources.iter().filter_map(|s| s.strip_prefix("surface.").map(str::to_string)).collect();
    let embeddings: Vec<String> =
        model.sources.iter().filter(|s| s.starts_with("embeddings.") || s.starts_with("fused.")).cloned().collect();
    let (sources, _) =
        t0_train::feature_sources(root, &catalog, &args.project, &cert, &mut run, &surfaces, &embeddings)?;
    let t0_from = args.t0_from.map(|t| t.timestamp_micros()).unwrap_or(model.test_from);
    let run_id = run.run_id(&t0_from.to_string());
    run.ensure_new(&run_id)?;
    progress.phase("score", None);
    let raw =
        t0_train::features::load(&catalog, &sources, &model.columns, None, &format!("epoch_us(s0.t0) >= {t0_from}"))?;
    let frame = t0_train::features::encode(raw, &model.columns);
    if frame.names != model.features {
        return Err(Error::Refused(format!(
            "model {model_path} expects features {:?}, the surface gives {:?}",
            model.features, frame.names
        )));
    }
    let n = frame.rows();
    let (mut pred, mut lo, mut hi, mut top, mut top_c, mut expl) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let (p, contrib) = model.predict(frame.row(i));
        let mut order: Vec<usize> = (0..contrib.len()).collect();
        order.sort_by(|&a, &b| contrib[b].abs().total_cmp(&contrib[a].abs()).then(a.cmp(&b)));
        pred.push(p);
        lo.push(p - model.interval_halfwidth);
        hi.push(p + model.interval_halfwidth);
        top.push(model.features[order[0]].clone());
        top_c.push(contrib[order[0]]);
        let top3: Vec<String> =
            order.iter().take(3).map(|&j| format!("{}:{:+.4}", model.features[j], contrib[j])).collect();
        expl.push(top3.join(";"));
    }
    progress.advance(n as u64);
    progress.finish();
    let rel = format!("lake/predictions/{run_id}/predictions.parquet");
    t0_train::write_rows(
        &root.join(&rel),
        &frame.entity_id,
        &frame.t0,
        vec![
            ("prediction", Arc::new(Float64Array::from(pred))),
            ("lower", Arc::new(Float64Array::from(lo))),
            ("upper", Arc::new(Float64Array::from(hi))),
            ("top_feature", Arc::new(StringArray::from(top))),
            ("top_contribution", Arc::new(Float64Array::from(top_c))),
            ("explanation", Arc::new(StringArray::from(expl))),
        ],
    )?;
    let out = t0_manifest::record_output(root, &catalog, "predictions", Location::per_entity_t0(rel.clone()))?;
    let report = ScoreReport {
        run_id: run_id.clone(),
        model_run: train.manifest.run_id.clone(),
        rows: n as u64,
        t0_from: chrono::DateTime::from_timestamp_micros(t0_from).map(t0_core::clock::format_utc).unwrap_or_default(),
        acceptance: state,
        path: rel,
    };
    run.finish(&run_id, None, vec![out], serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}
