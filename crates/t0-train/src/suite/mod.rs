//! The suite as a pure function of verified inputs: frame, split, every model of every
//! label, metrics, and the snapshot files as bytes. `run` writes them; `reproduce` compares.
//!
//! One question per file: how a value ([`value`]), binary ([`binary`]) or time-to-event
//! ([`survival`]) label is trained, how the serving model is chosen ([`select`]), how its
//! interval is computed ([`conformal`]) and how the snapshot is written ([`snapshot`]).

mod binary;
pub mod conformal;
mod select;
mod snapshot;
mod survival;
mod value;

use std::collections::BTreeMap;

use t0_catalog::Catalog;
use t0_core::{Error, Progress, Result};
use t0_project::def::{Horizon, SplitKind};
use t0_project::{LabelKind, Project};

use crate::features::{self, ColumnKind, ColumnSpec, LabelRead};
use crate::metrics as m;
use crate::models::dist::Dist;
use crate::models::gbdt::{Gbdt, Objective};
use crate::models::{Design, Fitted, Target};
use crate::split::{self, Block, Fractions};
use crate::{Inputs, TrainArgs, TrainReport};

/// One snapshot file: its name under `runs/<run_id>/`, its manifest output name, its bytes.
pub(crate) struct File {
    pub name: String,
    pub output: String,
    pub bytes: Vec<u8>,
    pub per_entity_t0: bool,
}

pub(crate) struct Built {
    pub files: Vec<File>,
    pub report: TrainReport,
}

/// Quantiles of time-to-event reported beside the median.
const TIME_QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// The GBDT objective of time-to-event labels: XGBoost's AFT, log-normal, scale 1.
const GBDT_AFT: Objective = Objective::Aft { dist: Dist::Normal, sigma: 1.0 };

/// The ridge penalties the parametric AFT chooses among on the validation block.
const AFT_PENALTIES: [f64; 3] = [1e-3, 1e-2, 1e-1];

/// A fitted model's predictions on the validation and test rows, with its metrics.
struct Scored {
    label: String,
    model: String,
    /// The fusion variant the model was trained on (an index into the variants).
    variant: usize,
    fitted: Fitted,
    valid_rows: Vec<usize>,
    test_rows: Vec<usize>,
    valid_pred: Vec<f64>,
    test_pred: Vec<f64>,
    /// Survival: per test/valid row, the time quantiles (TIME_QUANTILES) and S(t).
    valid_surv: Option<Vec<Vec<f64>>>,
    test_surv: Option<Vec<Vec<f64>>>,
    valid_metrics: BTreeMap<String, f64>,
    test_metrics: BTreeMap<String, f64>,
    /// (name, valid value, test value); larger is better when `higher`.
    select_by: (&'static str, bool),
    curves: Option<serde_json::Value>,
}

impl Scored {
    /// The model's name in file names and summaries: the family, with `+<strategy>` when it
    /// was trained on a fused embedding.
    fn id(&self, variants: &[Variant]) -> String {
        match variants[self.variant].fusion.as_str() {
            NO_FUSION => self.model.clone(),
            f => format!("{}+{f}", self.model),
        }
    }
    fn primary(&self) -> (f64, f64) {
        let k = self.select_by.0;
        (self.valid_metrics.get(k).copied().unwrap_or(f64::NAN), self.test_metrics.get(k).copied().unwrap_or(f64::NAN))
    }
}

/// The fusion name of the variant without fused embeddings.
const NO_FUSION: &str = "none";

/// The columns one training of the suite sees: every surface and plain embedding column,
/// and the vector of one fused embedding (none without fusion).
struct Variant {
    fusion: String,
    specs: Vec<ColumnSpec>,
    /// Indices of the variant's features in the full frame.
    cols: Vec<usize>,
    names: Vec<String>,
}

impl Variant {
    /// The frame's rows restricted to the variant's features, row-major.
    fn matrix(&self, frame: &features::Frame) -> Vec<f64> {
        let d = frame.names.len();
        if self.cols.len() == d {
            return frame.x.clone();
        }
        (0..frame.rows()).flat_map(|i| self.cols.iter().map(move |&j| frame.x[i * d + j])).collect()
    }
}

/// One variant per declared fusion strategy, or one without fusion.
fn variants(specs: &[ColumnSpec], fusion: &[t0_project::def::FusionStrategy]) -> Vec<Variant> {
    let mut ranges = Vec::new();
    let mut at = 0;
    for s in specs {
        let k = s.feature_names().len();
        ranges.push(at..at + k);
        at += k;
    }
    let variant = |name: &str, keep: &dyn Fn(&ColumnSpec) -> bool| {
        let picked: Vec<usize> = (0..specs.len()).filter(|&k| keep(&specs[k])).collect();
        Variant {
            fusion: name.to_string(),
            specs: picked.iter().map(|&k| specs[k].clone()).collect(),
            cols: picked.iter().flat_map(|&k| ranges[k].clone()).collect(),
            names: picked.iter().flat_map(|&k| specs[k].feature_names()).collect(),
        }
    };
    if fusion.is_empty() {
        return vec![variant(NO_FUSION, &|_| true)];
    }
    let fused_vector =
        |c: &ColumnSpec| c.source.starts_with("fused.") && matches!(c.kind, ColumnKind::Embedding { .. });
    fusion
        .iter()
        .map(|st| {
            let own = format!("fused.{}", st.as_str());
            variant(st.as_str(), &|c| !fused_vector(c) || c.source == own)
        })
        .collect()
}

/// The rows of one training run of the suite: one variant's design over the split.
struct Ctx<'a> {
    x: &'a [f64],
    d: usize,
    t0: &'a [i64],
    blocks: &'a [Block],
    horizons: &'a [Horizon],
    folds: usize,
}

impl Ctx<'_> {
    fn rows(&self, b: Block, keep: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..self.blocks.len()).filter(|&i| self.blocks[i] == b && keep(i)).collect()
    }
    fn design(&self, y: &Target, rows: &[usize]) -> Design {
        Design::select(self.x, self.d, y, rows)
    }
    /// Expanding time folds over the training rows `tr`, as indices of the training design.
    fn stack_folds(&self, tr: &[usize]) -> Vec<(Vec<usize>, Vec<usize>)> {
        let pos: BTreeMap<usize, usize> = tr.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        split::expanding_folds(self.t0, tr, self.folds, self.horizons)
            .into_iter()
            .map(|(a, b)| (a.iter().map(|i| pos[i]).collect(), b.iter().map(|i| pos[i]).collect()))
            .collect()
    }
}

/// One label of one variant, ready to train: its rows per block (where it has matured).
#[derive(Clone)]
struct Job<'a> {
    ctx: &'a Ctx<'a>,
    frame: &'a features::Frame,
    label: &'a LabelKind,
    name: String,
    col: &'a [Option<f64>],
    variant: usize,
    fusion: &'a str,
    split: SplitKind,
    thresholds: &'a [f64],
    /// The model families the project asks for (all when empty).
    models: &'a [String],
    tr: Vec<usize>,
    ca: Vec<usize>,
    va: Vec<usize>,
    te: Vec<usize>,
}

impl Job<'_> {
    fn wants(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| model.starts_with(m.as_str()))
    }
    fn y(&self) -> Vec<f64> {
        self.col.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
    }
    fn t0s(&self, rows: &[usize]) -> Vec<i64> {
        rows.iter().map(|&i| self.frame.t0[i]).collect()
    }
    fn fit_err(&self, model: &str, e: impl std::fmt::Display) -> Error {
        Error::Gate(format!("label {}, model {model}: {e}", self.name))
    }
    fn no_stack(&self, e: impl std::fmt::Display) -> String {
        format!("label {}, fusion {}: no stack: {e}", self.name, self.fusion)
    }
    /// A scored model over the job's validation and test rows (no survival columns).
    fn scored(
        &self,
        model: String,
        fitted: Fitted,
        (valid_pred, test_pred): (Vec<f64>, Vec<f64>),
        (valid_metrics, test_metrics): (BTreeMap<String, f64>, BTreeMap<String, f64>),
        select_by: (&'static str, bool),
        curves: Option<serde_json::Value>,
    ) -> Scored {
        Scored {
            label: self.name.clone(),
            model,
            variant: self.variant,
            fitted,
            valid_rows: self.va.clone(),
            test_rows: self.te.clone(),
            valid_pred,
            test_pred,
            valid_surv: None,
            test_surv: None,
            valid_metrics,
            test_metrics,
            select_by,
            curves,
        }
    }
}

/// Why a label was not trained; `refuse` when, as the target, it stops the run.
struct Skip {
    msg: String,
    refuse: bool,
}

/// What training the labels gathers beside the scored models.
#[derive(Default)]
struct Gathered {
    scored: Vec<Scored>,
    warnings: Vec<String>,
    skipped_labels: Vec<String>,
    /// label → fusion → the gate's threshold.
    gates: BTreeMap<String, BTreeMap<String, f64>>,
    /// The times S(t) is reported at: the project's, else quartiles of the first trained
    /// time-to-event label's training event times.
    survival_times: Vec<f64>,
}

/// A GBDT's loss per round (the early-stopping record).
fn curves_of(g: &Gbdt) -> serde_json::Value {
    serde_json::json!({"train": g.train_curve, "valid": g.valid_curve, "best_iteration": g.best_iteration})
}

/// The frame, its split and the horizons that embargo it: what every model is trained on.
struct Loaded {
    frame: features::Frame,
    specs: Vec<ColumnSpec>,
    skipped_columns: Vec<String>,
    blocks: Vec<Block>,
    horizons: Vec<Horizon>,
    warnings: Vec<String>,
}

impl Loaded {
    /// The first T0 of block `b`, if it has rows.
    fn block_start(&self, b: Block) -> Option<i64> {
        self.blocks.iter().position(|x| *x == b).map(|i| self.frame.t0[i])
    }
}

/// Read the certified features and the matured labels, split them in time and encode them.
fn load(
    catalog: &Catalog,
    project: &Project,
    inputs: &Inputs,
    target: &str,
    progress: &dyn Progress,
) -> Result<Loaded> {
    let settings = &project.def.train;
    progress.phase("load features", None);
    let selection = features::select(catalog, project, &inputs.sources)?;
    let mut specs = selection.columns;
    let label_cols: Vec<String> = project.def.labels.iter().flat_map(|l| l.columns()).collect();
    let raw = features::load(
        catalog,
        &inputs.sources,
        &specs,
        Some(LabelRead { path: &inputs.labels_path, columns: &label_cols, require: target }),
        "true",
    )?;
    progress.finish();
    let n = raw.entity_id.len();
    if n == 0 {
        return Err(Error::Gate(format!(
            "no rows: the join of {} with the labels has no row whose target {target} is matured",
            inputs.sources.iter().map(|s| s.output.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if n < 20 {
        return Err(Error::Gate(format!("only {n} rows with a matured {target}: too few to train (need 20)")));
    }
    let mut warnings = Vec::new();
    let horizons: Vec<Horizon> = match &settings.embargo {
        Some(h) => vec![h.clone()],
        None => project.def.labels.iter().filter_map(|l| l.horizon().cloned()).collect(),
    };
    let fractions =
        Fractions { calibration: settings.calibration, validation: settings.validation, test: settings.test };
    let blocks = match settings.split {
        SplitKind::Chronological => split::chronological(&raw.t0, fractions, &horizons).map_err(Error::Gate)?,
        SplitKind::Random => {
            warnings.push(
                "random split (train.split: random): rows of one T0 fall in several blocks and no embargo applies, so the test figures leak time; use it for comparison only".to_string(),
            );
            split::random(n, fractions, settings.seed)
        }
    };
    let train_rows: Vec<usize> = (0..n).filter(|&i| blocks[i] == Block::Train).collect();
    features::fit_levels(&raw, &mut specs, &train_rows, project.def.features.max_levels);
    let frame = features::encode(raw, &specs);
    Ok(Loaded { frame, specs, skipped_columns: selection.skipped, blocks, horizons, warnings })
}

/// Train every model of every label; assemble the snapshot.
pub(crate) fn build(
    catalog: &Catalog,
    args: &TrainArgs,
    target: &str,
    inputs: &Inputs,
    run_id: &str,
    progress: &dyn Progress,
) -> Result<Built> {
    let project: &Project = &args.project;
    let loaded = load(catalog, project, inputs, target, progress)?;
    let variants = variants(&loaded.specs, &project.def.features.fusion);
    let variant_x: Vec<Vec<f64>> = variants.iter().map(|v| v.matrix(&loaded.frame)).collect();
    let mut got = Gathered {
        warnings: loaded.warnings.clone(),
        survival_times: project.def.train.survival_times.clone(),
        ..Gathered::default()
    };
    progress.phase("fit", Some((project.def.labels.len() * variants.len()) as u64));
    for (vi, variant) in variants.iter().enumerate() {
        let ctx = Ctx {
            x: &variant_x[vi],
            d: variant.names.len(),
            t0: &loaded.frame.t0,
            blocks: &loaded.blocks,
            horizons: &loaded.horizons,
            folds: project.def.train.folds,
        };
        for label in &project.def.labels {
            let outcome = train_label(&ctx, &loaded, project, label, (vi, &variant.fusion), &mut got);
            progress.advance(1);
            let Err(skip) = outcome? else { continue };
            if skip.refuse && label.name() == target {
                return Err(Error::Gate(skip.msg));
            }
            // Label-level refusals are the same in every variant: say them once.
            if vi == 0 {
                got.skipped_labels.push(skip.msg);
            }
        }
    }
    progress.finish();
    if got.scored.is_empty() {
        return Err(Error::Gate("no model was trained: no metrics produced".into()));
    }
    let selected = select::per_label(&got.scored);
    let serving = select::Serving::pick(&got.scored, &selected, target, &variants, &variant_x)?;
    let (model, metrics) = serving.model(&loaded, project, inputs, target)?;
    snapshot::write(snapshot::Parts {
        project,
        target,
        inputs,
        run_id,
        loaded,
        variants: &variants,
        got,
        selected,
        model,
        metrics,
    })
}

/// Train one label on one variant: the models its kind calls for, scored on validation and
/// test. `Ok(Err(skip))` when the label has too few rows or classes to train.
fn train_label(
    ctx: &Ctx,
    loaded: &Loaded,
    project: &Project,
    label: &LabelKind,
    (variant, fusion): (usize, &str),
    got: &mut Gathered,
) -> Result<std::result::Result<(), Skip>> {
    let name = label.name().to_string();
    let col = loaded.frame.label(&name).expect("every label column is read");
    let present = |i: usize| col[i].is_some();
    let job = Job {
        ctx,
        frame: &loaded.frame,
        label,
        col,
        variant,
        fusion,
        split: project.def.train.split,
        thresholds: &project.def.train.thresholds,
        models: &project.def.train.models,
        tr: ctx.rows(Block::Train, &present),
        ca: ctx.rows(Block::Calibration, &present),
        va: ctx.rows(Block::Validation, &present),
        te: ctx.rows(Block::Test, &present),
        name,
    };
    let (tr, ca, va, te) = (job.tr.len(), job.ca.len(), job.va.len(), job.te.len());
    if tr < 20 || va < 2 || te < 2 || ca < 2 {
        let msg = format!(
            "label {}: {tr}/{ca}/{va}/{te} matured rows train/calibration/validation/test: too few to train (need 20/2/2/2)",
            job.name
        );
        return Ok(Err(Skip { msg, refuse: true }));
    }
    match label {
        LabelKind::Value { .. } | LabelKind::Flow { .. } => value::train(&job, got).map(Ok),
        LabelKind::Threshold { .. } | LabelKind::EventWithin { .. } => binary::train(&job, got),
        LabelKind::TimeToEvent { .. } => survival::train(&job, &loaded.blocks, got),
    }
}

/// `x` as JSON, null when not finite.
fn fin(x: f64) -> serde_json::Value {
    if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null }
}

/// Regression metrics on the label's scale and on the raw scale (its transform inverted).
fn regression_metrics(p: &[f64], y: &[f64], t0: &[i64], transform: t0_project::Transform) -> BTreeMap<String, f64> {
    let raw_p: Vec<f64> = p.iter().map(|v| transform.invert(*v)).collect();
    let raw_y: Vec<f64> = y.iter().map(|v| transform.invert(*v)).collect();
    BTreeMap::from([
        ("rmse".into(), m::rmse(p, y)),
        ("mae".into(), m::mae(p, y)),
        ("r2".into(), m::r2(p, y)),
        ("raw_rmse".into(), m::rmse(&raw_p, &raw_y)),
        ("raw_mae".into(), m::mae(&raw_p, &raw_y)),
        ("spearman".into(), m::spearman(p, y)),
        ("ndcg_at_10".into(), m::ndcg_at(10, t0, p, y)),
    ])
}
