//! `train-suite`: trains on certified surfaces, embeddings and labels with a chronological
//! split, and writes an immutable run snapshot (model, metrics, leaderboard, split manifest,
//! test predictions).
//!
//! Skeleton scope: a ridge regression (linfa-elasticnet, L1 ratio 0) on the project's target
//! label over the features its `features:` declaration selects, its penalty picked on the
//! validation block, and split-conformal intervals. Survival, tail gates and stacking come with
//! the training issue.

pub mod features;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, Output, StageRun};

pub use features::{ColumnSpec, Frame, Source};
use t0_project::Project;

pub const STAGE: &str = "train-suite";
pub const PENALTIES: &[f64] = &[0.001, 0.01, 0.1, 1.0];
pub const NOMINAL: f64 = 0.9;

/// Everything needed to score: written as `runs/<run_id>/model.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub kind: String,
    pub target: String,
    /// Manifest outputs the features come from, in join order (surfaces, then embeddings).
    pub sources: Vec<String>,
    /// How each source column becomes features (levels fitted on the training block).
    pub columns: Vec<ColumnSpec>,
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub penalty: f64,
    /// Split-conformal half-width of the `nominal` prediction interval.
    pub interval_halfwidth: f64,
    pub nominal: f64,
    /// View-definition hash of each surface the model was trained on (train/serve skew guard).
    pub surface_view_defs: BTreeMap<String, String>,
    pub certify_run: String,
    pub embed_run: Option<String>,
    pub project: String,
    /// T0 (µs) at which validation and test blocks begin.
    pub valid_from: i64,
    pub test_from: i64,
}

impl Model {
    /// Prediction and per-feature contributions (coef x standardised value; a missing value
    /// is imputed with the training mean, so it contributes nothing).
    pub fn predict(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let contrib: Vec<f64> =
            x.iter().enumerate().map(|(j, v)| self.coef[j] * standardise(*v, self.mean[j], self.std[j])).collect();
        (self.intercept + contrib.iter().sum::<f64>(), contrib)
    }
}

pub struct TrainArgs {
    pub project: Project,
    pub max_age_days: i64,
    /// The label to fit; default: the project's `features.target`.
    pub target: Option<String>,
}

fn standardise(v: f64, mean: f64, std: f64) -> f64 {
    if v.is_nan() { 0.0 } else { (v - mean) / std }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub rows_train: usize,
    pub rows_valid: usize,
    pub rows_test: usize,
    pub valid_rmse: f64,
    pub test_rmse: f64,
    pub test_mae: f64,
    pub test_coverage: f64,
    pub baseline_test_rmse: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub run_id: String,
    pub snapshot: String,
    pub metrics: Metrics,
    pub target: String,
    pub features: usize,
    /// Surface columns that are not a feature kind, with the reason.
    pub skipped_columns: Vec<String>,
    /// (penalty, validation RMSE) per candidate.
    pub leaderboard: Vec<(f64, f64)>,
}

/// Latest embed run, which must have been made from the certify run `cert`.
pub fn embed_for(root: &Root, catalog: &Catalog, cert: &Loaded) -> Result<Loaded> {
    let emb = t0_manifest::load(root, catalog, "embed", None)?;
    if !emb.manifest.upstream.iter().any(|u| u.manifest_hash == cert.manifest_hash) {
        return Err(Error::Refused(format!(
            "embed run {} was made from another certify run than the current {}: run embed again",
            emb.manifest.run_id, cert.manifest.run_id
        )));
    }
    Ok(emb)
}

fn rmse(a: &[f64], b: &[f64]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len().max(1) as f64).sqrt()
}

fn to_array(f: &Frame, idx: &[usize], mean: &[f64], std: &[f64]) -> Array2<f64> {
    let d = f.names.len();
    Array2::from_shape_fn((idx.len(), d), |(i, j)| standardise(f.row(idx[i])[j], mean[j], std[j]))
}

/// The target label: `--target`, else the project's `features.target`; refused unless a
/// number per row can be trained on.
pub fn target(project: &Project, arg: Option<&str>) -> Result<String> {
    let t = arg.map(str::to_string).or_else(|| project.def.features.target.clone()).ok_or_else(|| {
        Error::config(
            project.display(t0_project::PROJECT_FILE),
            "no target: set features.target or pass --target LABEL",
        )
    })?;
    match project.label(&t) {
        None => Err(Error::Usage(format!(
            "target {t:?} is not a label of project {} (labels: {})",
            project.name(),
            project.def.labels.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
        ))),
        Some(l) if l.kind_name() == "time_to_event" => Err(Error::Usage(format!(
            "target {t:?} is a time-to-event label: the survival models come with the model-suite issue"
        ))),
        Some(_) => Ok(t),
    }
}

/// The certified surfaces and embed outputs (`embeddings.<name>`, `fused.<strategy>`) the
/// project's features read, consumed (verified) into `run`: (sources, embed run if any).
pub fn feature_sources(
    root: &Root,
    catalog: &Catalog,
    project: &Project,
    cert: &Loaded,
    run: &mut StageRun,
    surfaces: &[String],
    embeddings: &[String],
) -> Result<(Vec<Source>, Option<Loaded>)> {
    if surfaces.is_empty() {
        return Err(Error::config(
            project.display(t0_project::PROJECT_FILE),
            "features.surfaces is empty: name the certified stores that feed the models",
        ));
    }
    let mut sources = Vec::new();
    for s in surfaces {
        let name = format!("surface.{s}");
        if cert.manifest.outputs.iter().all(|o| o.name != name) {
            return Err(Error::config(
                project.display(t0_project::PROJECT_FILE),
                format!("features.surfaces names {s:?}, which certify run {} did not certify", cert.manifest.run_id),
            ));
        }
        let out = run.consume(cert, &[name.as_str()])?;
        sources.push(Source { output: name, path: out[0].path(root)? });
    }
    let mut emb = None;
    if !embeddings.is_empty() {
        let e = embed_for(root, catalog, cert)?;
        for output in embeddings {
            let out = run.consume(&e, &[output.as_str()])?;
            sources.push(Source { output: output.clone(), path: out[0].path(root)? });
        }
        emb = Some(e);
    }
    Ok((sources, emb))
}

pub fn run(root: &Root, clock: Clock, args: &TrainArgs, progress: &dyn Progress) -> Result<TrainReport> {
    let project = &args.project;
    let target = target(project, args.target.as_deref())?;
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let config_hash = t0_core::config::value_hash(&("ridge-v2", PENALTIES, NOMINAL, &project.hash, &target));
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    let labels = t0_certify::labels::labels_for(root, &catalog, &cert)?;
    let f = &project.def.features;
    let mut embed_outputs: Vec<String> = f.embeddings.iter().map(|e| format!("embeddings.{e}")).collect();
    if let Some(s) = f.fusion {
        embed_outputs.push(format!("fused.{}", s.as_str()));
    }
    let (sources, emb) = feature_sources(root, &catalog, project, &cert, &mut run, &f.surfaces, &embed_outputs)?;
    let label_out = run.consume(&labels, &["labels"])?;
    // Provenance includes the certificate: a model trained under another certification is
    // another run, as score and calibrate check.
    let run_id = run.run_id(&cert.manifest.run_id);
    run.ensure_new(&run_id)?;

    progress.phase("load features", None);
    let selection = features::select(&catalog, project, &sources)?;
    let mut specs = selection.columns;
    let raw = features::load(&catalog, &sources, &specs, Some((&label_out[0].path(root)?, &target)), "true")?;
    progress.finish();
    let n = raw.entity_id.len();
    if n < 20 {
        return Err(Error::Gate(format!("only {n} matured rows: too few to train (need 20)")));
    }
    // Chronological blocks: rows are ordered by T0; a T0 never straddles two blocks.
    let cut = |q: f64| {
        let mut i = ((n as f64) * q) as usize;
        while i > 0 && i < n && raw.t0[i] == raw.t0[i - 1] {
            i += 1;
        }
        i.min(n)
    };
    let (v0, t0c) = (cut(0.70), cut(0.85));
    let train: Vec<usize> = (0..v0).collect();
    let valid: Vec<usize> = (v0..t0c).collect();
    let test: Vec<usize> = (t0c..n).collect();
    if valid.is_empty() || test.is_empty() {
        return Err(Error::Gate("too few distinct T0 values for a train/valid/test split".into()));
    }
    features::fit_levels(&raw, &mut specs, &train, f.max_levels);
    let frame = features::encode(raw, &specs);
    let y = frame.y.clone().expect("labels were joined");
    let d = frame.names.len();
    let mut mean = vec![0.0; d];
    let mut std = vec![0.0; d];
    for j in 0..d {
        // Missing values (NaN) are left out of the moments and imputed with the mean.
        let col: Vec<f64> = train.iter().map(|&i| frame.row(i)[j]).filter(|v| !v.is_nan()).collect();
        if col.is_empty() {
            std[j] = 1.0;
            continue;
        }
        mean[j] = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|v| (v - mean[j]).powi(2)).sum::<f64>() / col.len() as f64;
        std[j] = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
    }
    let xs = |idx: &[usize]| to_array(&frame, idx, &mean, &std);
    let ys = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<f64>>();
    let (xt, yt) = (xs(&train), Array1::from(ys(&train)));
    let dataset = Dataset::new(xt, yt);

    progress.phase("fit", Some(PENALTIES.len() as u64));
    let mut leaderboard = Vec::new();
    let mut best: Option<(f64, f64, Vec<f64>, f64)> = None;
    for &p in PENALTIES {
        let m = ElasticNet::<f64>::ridge()
            .penalty(p)
            .max_iterations(10_000)
            .tolerance(1e-8)
            .fit(&dataset)
            .ctx(|| format!("ridge fit (penalty {p})"))?;
        let pv: Vec<f64> = m.predict(&xs(&valid)).to_vec();
        let score = rmse(&pv, &ys(&valid));
        leaderboard.push((p, score));
        if best.as_ref().is_none_or(|b| score < b.1) {
            best = Some((p, score, m.hyperplane().to_vec(), m.intercept()));
        }
        progress.advance(1);
    }
    progress.finish();
    let (penalty, valid_rmse, coef, intercept) = best.expect("at least one penalty");
    let mut surface_view_defs = BTreeMap::new();
    for s in &f.surfaces {
        let vdh = t0_certify::certified_view_def(&cert, s)
            .ok_or_else(|| Error::Refused(format!("certificate records no view-definition hash for {s}")))?;
        surface_view_defs.insert(s.clone(), vdh);
    }
    let mut model = Model {
        kind: "ridge".into(),
        target: target.clone(),
        sources: sources.iter().map(|s| s.output.clone()).collect(),
        columns: specs,
        features: frame.names.clone(),
        mean,
        std,
        coef,
        intercept,
        penalty,
        interval_halfwidth: 0.0,
        nominal: NOMINAL,
        surface_view_defs,
        certify_run: cert.manifest.run_id.clone(),
        embed_run: emb.as_ref().map(|e| e.manifest.run_id.clone()),
        project: project.name().to_string(),
        valid_from: frame.t0[v0],
        test_from: frame.t0[t0c],
    };
    // Split conformal: the ceil((n+1)q)-th smallest absolute validation residual.
    let mut res: Vec<f64> = valid.iter().map(|&i| (y[i] - model.predict(frame.row(i)).0).abs()).collect();
    res.sort_by(f64::total_cmp);
    let k = (((res.len() + 1) as f64 * NOMINAL).ceil() as usize).clamp(1, res.len());
    model.interval_halfwidth = res[k - 1];

    let preds: Vec<f64> = test.iter().map(|&i| model.predict(frame.row(i)).0).collect();
    let yt = ys(&test);
    let train_mean = train.iter().map(|&i| y[i]).sum::<f64>() / train.len() as f64;
    let covered = preds.iter().zip(&yt).filter(|(p, y)| (*p - *y).abs() <= model.interval_halfwidth).count();
    let metrics = Metrics {
        rows_train: train.len(),
        rows_valid: valid.len(),
        rows_test: test.len(),
        valid_rmse,
        test_rmse: rmse(&preds, &yt),
        test_mae: preds.iter().zip(&yt).map(|(p, y)| (p - y).abs()).sum::<f64>() / yt.len() as f64,
        test_coverage: covered as f64 / yt.len() as f64,
        baseline_test_rmse: rmse(&vec![train_mean; yt.len()], &yt),
    };

    let dir = format!("runs/{run_id}");
    let files = [
        ("model.json", json_bytes(&model)?),
        ("metrics.json", json_bytes(&metrics)?),
        ("leaderboard.json", json_bytes(&leaderboard)?),
    ];
    let mut outputs = Vec::new();
    for (name, bytes) in files {
        let rel = format!("{dir}/{name}");
        t0_core::fsio::write_atomic(&root.join(&rel), &bytes)?;
        let out_name = format!("run.{}", name.trim_end_matches(".json"));
        outputs.push(t0_manifest::record_output(root, &catalog, &out_name, Location::File { path: rel })?);
    }
    let split_rel = format!("{dir}/split.parquet");
    let split_names: Vec<&str> = (0..n)
        .map(|i| {
            if i < v0 {
                "train"
            } else if i < t0c {
                "valid"
            } else {
                "test"
            }
        })
        .collect();
    write_rows(
        &root.join(&split_rel),
        &frame.entity_id,
        &frame.t0,
        vec![("split", Arc::new(StringArray::from(split_names)))],
    )?;
    outputs.push(t0_manifest::record_output(root, &catalog, "run.split", Location::per_entity_t0(split_rel))?);
    let pred_rel = format!("{dir}/predictions.parquet");
    let ids: Vec<String> = test.iter().map(|&i| frame.entity_id[i].clone()).collect();
    let t0s: Vec<i64> = test.iter().map(|&i| frame.t0[i]).collect();
    write_rows(
        &root.join(&pred_rel),
        &ids,
        &t0s,
        vec![
            ("y", Arc::new(Float64Array::from(yt.clone()))),
            ("prediction", Arc::new(Float64Array::from(preds.clone()))),
        ],
    )?;
    outputs.push(t0_manifest::record_output(root, &catalog, "run.predictions", Location::per_entity_t0(pred_rel))?);

    let report = TrainReport {
        run_id: run_id.clone(),
        snapshot: dir,
        metrics,
        target,
        features: model.features.len(),
        skipped_columns: selection.skipped,
        leaderboard,
    };
    run.finish(&run_id, None, outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// Pretty JSON with a trailing newline: stable bytes for stable hashes.
pub fn json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v).ctx(|| "serialise".into())?;
    b.push(b'\n');
    Ok(b)
}

/// Write (entity_id, t0, extra columns...) to a Parquet file.
pub fn write_rows(path: &Path, ids: &[String], t0: &[i64], extra: Vec<(&str, arrow::array::ArrayRef)>) -> Result<()> {
    let mut fields = vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("t0", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ];
    let mut cols: Vec<arrow::array::ArrayRef> =
        vec![Arc::new(StringArray::from(ids.to_vec())), Arc::new(TimestampMicrosecondArray::from(t0.to_vec()))];
    for (name, col) in extra {
        fields.push(Field::new(name, col.data_type().clone(), true));
        cols.push(col);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).ctx(|| format!("batch for {}", path.display()))?;
    t0_table::write_parquet(path, schema, &[batch])
}

/// Read the model file a train-suite run recorded as `run.model`.
pub fn read_model(root: &Root, out: &Output) -> Result<Model> {
    let path = out.path(root)?;
    let bytes = t0_core::fsio::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Refused(format!("{}: not a model file: {e}", path.display())))
}
