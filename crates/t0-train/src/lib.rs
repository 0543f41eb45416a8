//! `train-suite`: trains the model suite on certified surfaces, embeddings and labels, on a
//! time-respecting split, and writes an immutable run snapshot under `runs/<run_id>/`.
//!
//! Per declared label of a fitting kind:
//! - value / flow (real): `ridge` (exact leave-one-out penalty), `gbdt` (squared error) and a
//!   `stack` of both over out-of-fold predictions from expanding time folds;
//! - threshold / event_within (binary): the `woe` prior baseline and the `gate` (a logistic
//!   GBDT, isotonic-calibrated on the calibration block, its threshold chosen there);
//! - time_to_event (censored): parametric `aft-weibull`, `aft-lognormal`, `aft-loglogistic`
//!   and `gbdt-aft`, with time quantiles and S(t) at declared times.
//!
//! The split is chronological by T0 with an embargo as long as the longest label horizon;
//! time-to-event labels of earlier blocks are censored at the next block's start. Models are
//! selected on the validation block, thresholds and calibration fitted on the calibration
//! block, and the test block is only scored. Everything is a function of the inputs: the same
//! inputs give the same bytes, whatever the thread count (`train-suite reproduce`).

pub mod drift;
pub mod features;
pub mod head;
pub mod metrics;
pub mod models;
pub mod split;
pub mod suite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, Output, StageRun};

pub use features::{ColumnSpec, Frame, Source};
pub use models::Fitted;
use t0_project::Project;

pub const STAGE: t0_core::Stage = t0_core::Stage::TrainSuite;
pub const NOMINAL: f64 = 0.9;
/// The manifest output name of each label's served model is this prefix and the label.
pub const SERVED_PREFIX: &str = "run.served.";
/// Every leaderboard model, served form: this prefix, the label, `.`, the model's id.
pub const MODELS_PREFIX: &str = "run.models.";
/// Bumped when the suite's outputs change for the same inputs.
pub const SUITE_VERSION: &str = "suite-v1";

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
    pub interval_method: suite::conformal::Method,
    /// The normalised method's scale model, and its calibration scores |y − ŷ| / ŝ(x),
    /// ascending (kept whichever method was chosen, for comparison and re-calibration).
    #[serde(default)]
    pub scale: Option<suite::conformal::Scale>,
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
    pub mondrian: Option<suite::conformal::Mondrian>,
}

impl Model {
    /// The split-conformal half-width at coverage `level`.
    pub fn halfwidth(&self, level: f64) -> f64 {
        suite::conformal::halfwidth(&self.calibration_scores, level)
    }

    /// The half-width at coverage `level` for the row `x`, by the chosen method.
    pub fn halfwidth_at(&self, x: &[f64], level: f64) -> f64 {
        let (scores, scale) = match (self.interval_method, &self.scale) {
            (suite::conformal::Method::Normalized, Some(s)) => (&self.normalized_scores, s.at(x)),
            _ => (&self.calibration_scores, 1.0),
        };
        let scores = self.mondrian.as_ref().and_then(|m| m.scores_at(x, level)).unwrap_or(scores);
        suite::conformal::halfwidth(scores, level) * scale
    }

    /// Prediction and per-feature contributions.
    pub fn predict(&self, x: &[f64]) -> (f64, Vec<f64>) {
        (self.predictor.predict(x), self.predictor.explain(x))
    }
}

pub struct TrainArgs {
    pub project: Project,
    pub max_age_days: i64,
    /// The label the serving model fits; default: the project's `features.target`.
    pub target: Option<String>,
}

/// The serving model's figures (the target label), as the one-line summary shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    pub model: String,
    pub rows_train: usize,
    pub rows_calibration: usize,
    pub rows_valid: usize,
    pub rows_test: usize,
    pub rows_embargoed: usize,
    pub valid_rmse: f64,
    pub test_rmse: f64,
    pub test_mae: f64,
    pub test_coverage: f64,
    pub baseline_test_rmse: f64,
}

/// One leaderboard row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub label: String,
    pub label_kind: String,
    pub model: String,
    /// The fusion variant (`none` without fusion).
    pub fusion: String,
    /// The metric models of this label are selected by, on validation and on test.
    pub metric: String,
    /// None where the metric is undefined (e.g. one class in the block).
    pub valid: Option<f64>,
    pub test: Option<f64>,
    pub selected: bool,
}

/// One label's rows (and events, for binary and time-to-event labels) in one block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockRows {
    pub rows: usize,
    pub events: Option<usize>,
}

/// The rows each label trained and was evaluated on, per block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelRows {
    pub label: String,
    pub kind: String,
    /// Block name → rows (train, calibration, validation, test, embargo).
    pub blocks: BTreeMap<String, BlockRows>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub run_id: String,
    pub snapshot: String,
    /// The serving model's figures; none when no value or flow label is served.
    pub metrics: Option<Metrics>,
    /// The label `model.json` serves (score and calibrate read it); none when the project
    /// has no value or flow target.
    pub target: Option<String>,
    /// Every label's own rows per block.
    pub labels: Vec<LabelRows>,
    pub features: usize,
    /// Surface columns that are not a feature kind, with the reason.
    pub skipped_columns: Vec<String>,
    pub leaderboard: Vec<Entry>,
    /// Labels not trained, with the reason (e.g. too few matured rows).
    pub skipped_labels: Vec<String>,
    pub warnings: Vec<String>,
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

/// The served label: `--target`, else the project's `features.target`, else its first value or
/// flow label; none when the project names none and has none (every label is still trained
/// and selected). A named target must be a value or flow label: `model.json` serves a number
/// with an interval.
pub fn target(project: &Project, arg: Option<&str>) -> Result<Option<String>> {
    let named = arg.map(str::to_string).or_else(|| project.def.features.target.clone());
    let Some(t) = named else {
        return Ok(project.def.labels.iter().find(|l| l.is_numeric()).map(|l| l.name().to_string()));
    };
    if arg.is_none() && project.label(&t).is_some_and(|l| !l.is_numeric()) {
        // A project whose headline label is binary or time-to-event trains it like every
        // other; it has no interval-serving model until score serves every label.
        return Ok(None);
    }
    match project.label(&t) {
        None => Err(Error::Usage(format!(
            "target {t:?} is not a label of project {} (labels: {})",
            project.name(),
            project.def.labels.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
        ))),
        Some(l) if !l.is_numeric() => Err(Error::Usage(format!(
            "target {t:?} is a {} label: the serving model fits a value or flow label (the suite trains the others too)",
            l.kind_name()
        ))),
        Some(_) => Ok(Some(t)),
    }
}

/// The certified surfaces and embed outputs (`embeddings.<name>`, `fused.<strategy>`) the
/// project's features read, consumed (verified) into `run`: (sources, embed run if any).
/// `embed` pins the embed run (a replay); by default the latest one made from `cert`.
pub fn feature_sources(
    root: &Root,
    catalog: &Catalog,
    project: &Project,
    cert: &Loaded,
    run: &mut StageRun,
    surfaces: &[String],
    embeddings: &[String],
) -> Result<(Vec<Source>, Option<Loaded>)> {
    feature_sources_pinned(root, catalog, project, cert, run, surfaces, embeddings, None)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the verified inputs a feature source is resolved from, and the embed run to pin"
)]
fn feature_sources_pinned(
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

/// The verified inputs of one training.
struct Inputs {
    cert: Loaded,
    emb: Option<Loaded>,
    sources: Vec<Source>,
    labels_path: std::path::PathBuf,
}

/// Consume the certified surfaces, embeddings and labels into `run`. `pinned` replays the
/// upstream runs a recorded train run read (reproduce); otherwise the latest, fresh ones.
fn gather(
    root: &Root,
    catalog: &Catalog,
    clock: &Clock,
    args: &TrainArgs,
    run: &mut StageRun,
    pinned: Option<&t0_manifest::Manifest>,
) -> Result<Inputs> {
    let project = &args.project;
    let upstream = |stage: t0_core::Stage| -> Result<Option<Loaded>> {
        match pinned {
            None => Ok(None),
            Some(m) => match m.upstream.iter().find(|u| u.stage == stage) {
                Some(u) => Ok(Some(t0_manifest::load(root, catalog, stage, Some(&u.run_id))?)),
                None => Ok(None),
            },
        }
    };
    let cert = match upstream(t0_certify::STAGE)? {
        Some(c) => c,
        None => t0_certify::guard(root, catalog, clock, args.max_age_days)?,
    };
    let labels = match upstream(t0_certify::labels::STAGE)? {
        Some(l) => l,
        None => t0_certify::labels::labels_for(root, catalog, &cert)?,
    };
    let f = &project.def.features;
    let mut embed_outputs: Vec<String> = f.embeddings.iter().map(|e| format!("embeddings.{e}")).collect();
    embed_outputs.extend(f.fusion.iter().map(|s| format!("fused.{}", s.as_str())));
    let pinned_embed = upstream(t0_core::Stage::Embed)?;
    let (sources, emb) =
        feature_sources_pinned(root, catalog, project, &cert, run, &f.feeding(), &embed_outputs, pinned_embed)?;
    let label_out = run.consume(&labels, &["labels"])?;
    Ok(Inputs { cert, emb, sources, labels_path: label_out[0].path(root)? })
}

fn config_hash(args: &TrainArgs, target: Option<&str>) -> String {
    t0_core::config::value_hash(&(SUITE_VERSION, NOMINAL, &args.project.hash, target, &args.project.def.train))
}

pub fn run(root: &Root, clock: Clock, args: &TrainArgs, progress: &dyn Progress) -> Result<TrainReport> {
    let target = target(&args.project, args.target.as_deref())?;
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash(args, target.as_deref()));
    let inputs = gather(root, &catalog, &clock, args, &mut run, None)?;
    // Provenance includes the certificate: a model trained under another certification is
    // another run, as score and calibrate check.
    let run_id = run.run_id(&inputs.cert.manifest.run_id);
    run.ensure_new(&run_id)?;
    let built = suite::build(&catalog, args, target.as_deref(), &inputs, &run_id, progress)?;
    for w in &built.report.warnings {
        progress.note(&format!("warning: {w}"));
    }
    let mut outputs = Vec::new();
    for f in &built.files {
        let rel = format!("{}/{}", built.report.snapshot, f.name);
        t0_core::fsio::write_atomic(&root.join(&rel), &f.bytes)?;
        let location = if f.per_entity_t0 { Location::per_entity_t0(rel) } else { Location::File { path: rel } };
        outputs.push(t0_manifest::record_output(root, &catalog, &f.output, location)?);
    }
    let report = built.report;
    run.finish(&run_id, None, outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReproduceReport {
    pub run_id: String,
    pub files: usize,
    pub identical: bool,
    pub first_difference: Option<String>,
}

/// Retrain run `run_id` from the upstream runs it recorded and compare every snapshot file
/// byte for byte: exit 1 naming the first file that differs.
pub fn reproduce(
    root: &Root,
    clock: Clock,
    args: &TrainArgs,
    run_id: &str,
    progress: &dyn Progress,
) -> Result<ReproduceReport> {
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let recorded = t0_manifest::load(root, &catalog, STAGE, Some(run_id))?;
    if recorded.manifest.run_id != run_id {
        return Err(Error::Usage(format!("no train-suite run {run_id}")));
    }
    let target = recorded.manifest.summary["target"].as_str().map(str::to_string);
    let args = TrainArgs { project: args.project.clone(), max_age_days: args.max_age_days, target: target.clone() };
    let config = config_hash(&args, target.as_deref());
    if config != recorded.manifest.config_hash {
        return Err(Error::Usage(format!(
            "run {run_id} was trained under another configuration (project or train settings changed, or another code version): {} recorded, {config} now",
            recorded.manifest.config_hash
        )));
    }
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config);
    let inputs = gather(root, &catalog, &clock, &args, &mut run, Some(&recorded.manifest))?;
    let again = run.run_id(&inputs.cert.manifest.run_id);
    if again != run_id {
        return Err(Error::Gate(format!(
            "the recorded inputs of run {run_id} now give run id {again}: an input changed"
        )));
    }
    let built = suite::build(&catalog, &args, target.as_deref(), &inputs, run_id, progress)?;
    let mut first_difference = None;
    for f in &built.files {
        let out = recorded.manifest.output(&f.output)?;
        let path = out.path(root)?;
        let old = t0_core::fsio::read(&path)?;
        if old != f.bytes {
            first_difference = Some(path.display().to_string());
            break;
        }
    }
    if built.files.len() != recorded.manifest.outputs.len() && first_difference.is_none() {
        first_difference =
            Some(format!("{} outputs recorded, {} retrained", recorded.manifest.outputs.len(), built.files.len()));
    }
    let report = ReproduceReport {
        run_id: run_id.to_string(),
        files: built.files.len(),
        identical: first_difference.is_none(),
        first_difference: first_difference.clone(),
    };
    if let Some(d) = first_difference {
        return Err(Error::Gate(format!("run {run_id} does not reproduce: {d} differs")));
    }
    Ok(report)
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
