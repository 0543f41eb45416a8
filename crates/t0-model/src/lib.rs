//! The served model: what `train-suite` writes and `score` and `calibrate` read, with no
//! training code. A [`Model`] file holds the fitted predictor of one family ([`Fitted`]), the
//! column specs its features are rebuilt from ([`features`]), its head (what the output means
//! for the label's kind: a value, a calibrated probability, a survival distribution), the
//! conformal state its intervals come from (calibration scores, the normalised method's scale
//! model, Mondrian groups) and the training-block references drift is measured against.
//!
//! Every family predicts and explains through [`Predict`]; explanations add up to the output
//! on the stated scale ([`Explanation::check`]).

pub mod aft;
pub mod conformal;
pub mod dist;
pub mod drift;
pub mod features;
pub mod fitted;
pub mod gate;
pub mod gbdt;
pub mod head;
pub mod isotonic;
pub mod ridge;
pub mod stack;
pub mod treeshap;
pub mod woe;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Error, Result, Root};
use t0_manifest::{Loaded, Output, StageRun};
use t0_project::Project;

pub use features::{ColumnSpec, Frame, Source};
pub use fitted::{ADDITIVITY_TOLERANCE, Explanation, Fitted, Predict, Scale, Standardiser};

/// The stage that writes served models.
pub const STAGE: t0_core::Stage = t0_core::Stage::TrainSuite;
/// The manifest output name of each label's served model is this prefix and the label.
pub const SERVED_PREFIX: &str = "run.served.";
/// Every leaderboard model, served form: this prefix, the label, `.`, the model's id.
pub const MODELS_PREFIX: &str = "run.models.";

/// A served model: one label's model selected on the validation block, with everything score
/// needs to rebuild its features (`runs/<run_id>/served/<label>.json` for every trained label;
/// `model.json` is the target's). The interval fields apply to value heads; other heads keep
/// none (empty scores) and serve what their [`head::Head`] derives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// The selected family (`ridge`, `gbdt-squared`, `stack`).
    pub kind: String,
    /// The fused embedding it was trained with (`none` without fusion).
    pub fusion: String,
    pub target: String,
    /// Manifest outputs the features come from, in join order (surfaces, then embeddings).
    pub sources: Vec<String>,
    /// How each source column becomes features (levels fitted on the training block).
    pub columns: Vec<ColumnSpec>,
    pub features: Vec<String>,
    pub predictor: Fitted,
    /// Split-conformal half-width of the `nominal` prediction interval (calibration block).
    pub interval_halfwidth: f64,
    pub nominal: f64,
    /// The calibration block's absolute residuals, ascending: a split-conformal interval at
    /// any level is an order statistic of them (`score --levels`), and calibrate can
    /// re-conformalize without retraining.
    pub calibration_scores: Vec<f64>,
    /// The interval method chosen on the calibration block (smaller mean width).
    #[serde(default)]
    pub interval_method: conformal::Method,
    /// The normalised method's scale model, and its calibration scores |y − ŷ| / ŝ(x),
    /// ascending (kept whichever method was chosen, for comparison and re-calibration).
    #[serde(default)]
    pub scale: Option<conformal::Scale>,
    #[serde(default)]
    pub normalized_scores: Vec<f64>,
    /// View-definition hash of each surface the model was trained on (train/serve skew guard).
    pub surface_view_defs: BTreeMap<String, String>,
    pub certify_run: String,
    pub embed_run: Option<String>,
    pub project: String,
    /// T0 (µs) at which the validation and test blocks begin.
    pub valid_from: i64,
    pub test_from: i64,
    /// Each feature's training-block distribution, then the prediction's (`score` drift).
    pub drift: Vec<drift::Reference>,
    /// What the output means for the label's kind (value, probability, log-time).
    #[serde(default)]
    pub head: head::Head,
    /// Group-conditional calibration scores (`train.mondrian`), by the chosen method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mondrian: Option<conformal::Mondrian>,
}

impl Model {
    /// The split-conformal half-width at coverage `level`.
    pub fn halfwidth(&self, level: f64) -> f64 {
        conformal::halfwidth(&self.calibration_scores, level)
    }

    /// The half-width at coverage `level` for the row `x`, by the chosen method.
    pub fn halfwidth_at(&self, x: &[f64], level: f64) -> f64 {
        let (scores, scale) = match (self.interval_method, &self.scale) {
            (conformal::Method::Normalized, Some(s)) => (&self.normalized_scores, s.at(x)),
            _ => (&self.calibration_scores, 1.0),
        };
        let scores = self.mondrian.as_ref().and_then(|m| m.scores_at(x, level)).unwrap_or(scores);
        conformal::halfwidth(scores, level) * scale
    }

    /// This model with its intervals issued at coverage `level` and widened by `inflation`
    /// (the adapted level and jump inflation calibrate's ACI left): every calibration score
    /// scaled, so each half-width is the order statistic at `level` times `inflation`.
    pub fn at_level(&self, level: f64, inflation: f64) -> Model {
        let k = if inflation.is_finite() && inflation >= 1.0 { inflation } else { 1.0 };
        let scaled = |v: &[f64]| v.iter().map(|s| s * k).collect::<Vec<f64>>();
        let mut m = self.clone();
        m.nominal = level.clamp(0.0, 1.0);
        m.calibration_scores = scaled(&self.calibration_scores);
        m.normalized_scores = scaled(&self.normalized_scores);
        m.interval_halfwidth = m.halfwidth(m.nominal);
        if let Some(g) = m.mondrian.as_mut() {
            g.scores = g.scores.iter().map(|s| scaled(s)).collect();
        }
        m
    }

    /// The row's interval scale: ŝ(x) for normalised intervals, 1 for split ones.
    pub fn interval_scale(&self, x: &[f64]) -> f64 {
        match (self.interval_method, &self.scale) {
            (conformal::Method::Normalized, Some(s)) => s.at(x),
            _ => 1.0,
        }
    }

    /// Prediction and per-feature contributions.
    pub fn predict(&self, x: &[f64]) -> (f64, Vec<f64>) {
        (self.predictor.predict(x), self.predictor.explain(x))
    }
}

/// Latest embed run, which must have been made from the certify run `cert`.
pub fn embed_for(root: &Root, catalog: &Catalog, cert: &Loaded) -> Result<Loaded> {
    let emb = t0_manifest::load(root, catalog, t0_core::Stage::Embed, None)?;
    if !emb.manifest.upstream.iter().any(|u| u.manifest_hash == cert.manifest_hash) {
        return Err(Error::Refused(format!(
            "embed run {} was made from another certify run than the current {}: run embed again",
            emb.manifest.run_id, cert.manifest.run_id
        )));
    }
    Ok(emb)
}

/// The certified surfaces and embed outputs (`embeddings.<name>`, `fused.<strategy>`) the
/// project's features read, consumed (verified) into `run`: (sources, embed run if any).
/// `embed` pins the embed run (a replay); by default the latest one made from `cert`.
#[expect(
    clippy::too_many_arguments,
    reason = "the verified inputs a feature source is resolved from, and the embed run to pin"
)]
pub fn feature_sources(
    root: &Root,
    catalog: &Catalog,
    project: &Project,
    cert: &Loaded,
    run: &mut StageRun,
    surfaces: &[String],
    embeddings: &[String],
    embed: Option<Loaded>,
) -> Result<(Vec<Source>, Option<Loaded>)> {
    if surfaces.is_empty() {
        return Err(Error::config(
            project.display(t0_project::PROJECT_FILE),
            "features.surfaces is empty and features.declared declares no store: name the certified stores that feed the models",
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
        let e = match embed {
            Some(e) => e,
            None => embed_for(root, catalog, cert)?,
        };
        for output in embeddings {
            let out = run.consume(&e, &[output.as_str()])?;
            sources.push(Source { output: output.clone(), path: out[0].path(root)? });
        }
        emb = Some(e);
    }
    Ok((sources, emb))
}

/// Pretty JSON with a trailing newline: stable bytes for stable hashes.
pub fn json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v).ctx(|| "serialise".into())?;
    b.push(b'\n');
    Ok(b)
}

/// (entity_id, t0, extra columns...) as a record batch.
pub fn rows_batch(ids: &[String], t0: &[i64], extra: Vec<(&str, arrow::array::ArrayRef)>) -> Result<RecordBatch> {
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
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).ctx(|| "record batch".into())
}

/// Write (entity_id, t0, extra columns...) to a Parquet file.
pub fn write_rows(path: &Path, ids: &[String], t0: &[i64], extra: Vec<(&str, arrow::array::ArrayRef)>) -> Result<()> {
    let batch = rows_batch(ids, t0, extra)?;
    t0_table::write_parquet(path, batch.schema(), &[batch])
}

/// Read the model file a train-suite run recorded as `run.model`.
pub fn read_model(root: &Root, out: &Output) -> Result<Model> {
    let path = out.path(root)?;
    let bytes = t0_core::fsio::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Refused(format!("{}: not a model file: {e}", path.display())))
}
