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

pub mod features;
pub mod metrics;
pub mod models;
pub mod split;
pub mod suite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};

pub use models::Fitted;
pub use t0_model::{
    ColumnSpec, Frame, MODELS_PREFIX, Model, SERVED_PREFIX, Source, drift, embed_for, feature_sources, head,
    json_bytes, read_model, rows_batch, write_rows,
};
use t0_project::Project;

pub const STAGE: t0_core::Stage = t0_model::STAGE;
pub const NOMINAL: f64 = 0.9;
/// Bumped when the suite's outputs change for the same inputs.
pub const SUITE_VERSION: &str = "suite-v1";

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
    /// The acceptance state the latest calibration left on the model this run replaces (the
    /// governance feedback: a BLOCK is named in the warnings). Read and verified, not an input:
    /// it does not change what is trained, so it does not change the run's identity.
    #[serde(default)]
    pub replaces: Option<Replaced>,
}

/// The previous model's acceptance, as its latest calibrate run decided it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replaced {
    pub model_run: String,
    pub state: String,
    pub calibrate_run: String,
    pub reason: String,
}

/// The latest calibrate run's verdict on the model it judged, its report verified (a tampered
/// report is exit 3 naming it); none before any calibration.
fn replaced(root: &Root, catalog: &Catalog) -> Result<Option<Replaced>> {
    let Some(id) = t0_manifest::latest_run_id(catalog, t0_core::Stage::Calibrate)? else { return Ok(None) };
    let cal = t0_manifest::load(root, catalog, t0_core::Stage::Calibrate, Some(&id))?;
    for name in cal.recorded(&["calib.report"]) {
        t0_manifest::verify_output(root, catalog, &cal.manifest, cal.manifest.output(name)?)?;
    }
    let s = &cal.manifest.summary;
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    Ok(Some(Replaced { model_run: text("model_run"), state: text("state"), calibrate_run: id, reason: text("reason") }))
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
        t0_model::feature_sources(root, catalog, project, &cert, run, &f.feeding(), &embed_outputs, pinned_embed)?;
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
    let replaces = replaced(root, &catalog)?;
    let mut built = suite::build(&catalog, args, target.as_deref(), &inputs, &run_id, progress)?;
    if let Some(r) = replaces.as_ref().filter(|r| r.state == "BLOCK") {
        built.report.warnings.push(format!(
            "the model this run replaces ({}) was BLOCKed by calibrate run {}: {}; the new model starts in score's --initial-state",
            r.model_run, r.calibrate_run, r.reason
        ));
    }
    built.report.replaces = replaces;
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
