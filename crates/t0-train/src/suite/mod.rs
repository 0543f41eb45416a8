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
use crate::head::{Head, TIME_QUANTILES};
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
    /// What serving this model derives from its output (calibration, threshold, bound).
    head: Head,
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

/// The design of one training run of the suite: one variant's features over every row.
struct Ctx<'a> {
    x: &'a [f64],
    d: usize,
    t0: &'a [i64],
    folds: usize,
}

impl Ctx<'_> {
    fn design(&self, y: &Target, rows: &[usize]) -> Design {
        Design::select(self.x, self.d, y, rows)
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
    /// The label's own split (`Unlabelled` where it is not known) and embargo.
    blocks: &'a [Block],
    horizons: &'a [Horizon],
    tr: Vec<usize>,
    ca: Vec<usize>,
    va: Vec<usize>,
    te: Vec<usize>,
}

impl Job<'_> {
    fn rows(&self, b: Block, keep: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..self.blocks.len()).filter(|&i| self.blocks[i] == b && keep(i)).collect()
    }
    /// Expanding time folds over the training rows `tr`, as indices of the training design.
    fn stack_folds(&self, tr: &[usize]) -> Vec<(Vec<usize>, Vec<usize>)> {
        let pos: BTreeMap<usize, usize> = tr.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        split::expanding_folds(self.ctx.t0, tr, self.ctx.folds, self.horizons)
            .into_iter()
            .map(|(a, b)| (a.iter().map(|i| pos[i]).collect(), b.iter().map(|i| pos[i]).collect()))
            .collect()
    }
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
            head: Head::Value { transform: self.label.transform() },
        }
    }
}

/// Why a label was not trained; `refuse` when, as the target, it stops the run.
struct Skip {
    msg: String,
    refuse: bool,
}

/// A reference predictor on a label's rows (not a model: never selected, nothing to serve).
struct Baseline {
    label: String,
    model: String,
    valid: BTreeMap<String, f64>,
    test: BTreeMap<String, f64>,
}

/// What training the labels gathers beside the scored models.
#[derive(Default)]
struct Gathered {
    scored: Vec<Scored>,
    baselines: Vec<Baseline>,
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

/// One label's split over the frame's rows: its own labelled rows in time order, embargoed by
/// its own horizon (a time-to-event label is censored at each boundary instead).
struct LabelSplit {
    blocks: Vec<Block>,
    horizons: Vec<Horizon>,
    /// Why the label's rows could not be split (too few T0s), if so.
    error: Option<String>,
}

/// The frame and each label's split: what every model is trained on.
struct Loaded {
    frame: features::Frame,
    specs: Vec<ColumnSpec>,
    skipped_columns: Vec<String>,
    splits: BTreeMap<String, LabelSplit>,
    warnings: Vec<String>,
}

impl Loaded {
    fn blocks(&self, label: &str) -> &[Block] {
        &self.splits[label].blocks
    }
    /// The first T0 of block `b` of `label`, if it has rows.
    fn block_start(&self, label: &str, b: Block) -> Option<i64> {
        self.blocks(label).iter().position(|x| *x == b).map(|i| self.frame.t0[i])
    }
}

/// Read the certified features and every row with a known label, split each label's rows in
/// time and encode them.
fn load(catalog: &Catalog, project: &Project, inputs: &Inputs, progress: &dyn Progress) -> Result<Loaded> {
    let settings = &project.def.train;
    progress.phase("load features", None);
    let selection = features::select(catalog, project, &inputs.sources)?;
    let mut specs = selection.columns;
    let mut label_cols: Vec<String> = project.def.labels.iter().flat_map(|l| l.columns()).collect();
    // The persistence baselines, where the labels file has them.
    let in_file = features::schema_of(catalog, &inputs.labels_path)?;
    label_cols.extend(t0_certify::labels::persist_columns(project).into_iter().filter(|c| in_file.index_of(c).is_ok()));
    let names: Vec<String> = project.def.labels.iter().map(|l| l.name().to_string()).collect();
    let raw = features::load(
        catalog,
        &inputs.sources,
        &specs,
        Some(LabelRead { path: &inputs.labels_path, columns: &label_cols, any_of: &names }),
        "true",
    )?;
    progress.finish();
    let n = raw.entity_id.len();
    if n == 0 {
        return Err(Error::Gate(format!(
            "no rows: the join of {} with the labels has no row with a known label",
            inputs.sources.iter().map(|s| s.output.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if n < 20 {
        return Err(Error::Gate(format!("only {n} rows with a known label: too few to train (need 20)")));
    }
    leak_check(project, &raw)?;
    let mut warnings = Vec::new();
    if settings.split == SplitKind::Random {
        warnings.push(
            "random split (train.split: random): rows of one T0 fall in several blocks and no embargo applies, so the test figures leak time; use it for comparison only".to_string(),
        );
    }
    let mut splits = BTreeMap::new();
    for l in &project.def.labels {
        let col = &raw.labels.iter().find(|(c, _)| c == l.name()).expect("every label column is read").1;
        let split = split_label(project, l, col, &raw.t0);
        if split.horizons.is_empty()
            && matches!(l, LabelKind::Value { .. })
            && settings.split == SplitKind::Chronological
        {
            warnings.push(format!(
                "label {}: `horizon: next` matures at each entity's next observation, so no embargo guards its block boundaries; set train.embargo to the longest gap you expect",
                l.name()
            ));
        }
        splits.insert(l.name().to_string(), split);
    }
    // Levels are fitted on rows before every label's calibration block: no evaluation period
    // shapes an encoding.
    let first_eval = splits
        .values()
        .filter_map(|s| s.blocks.iter().position(|b| *b == Block::Calibration).map(|i| raw.t0[i]))
        .min()
        .unwrap_or(i64::MAX);
    let train_rows: Vec<usize> = (0..n).filter(|&i| raw.t0[i] < first_eval).collect();
    features::fit_levels(&raw, &mut specs, &train_rows, project.def.features.max_levels);
    let frame = features::encode(raw, &specs);
    Ok(Loaded { frame, specs, skipped_columns: selection.skipped, splits, warnings })
}

/// Refuse a feature column that equals a label (on its scale or untransformed) on every row
/// where both are known: a test RMSE of 0 is a leak, not a model.
fn leak_check(project: &Project, raw: &features::Raw) -> Result<()> {
    for l in &project.def.labels {
        let Some((_, y)) = raw.labels.iter().find(|(c, _)| c == l.name()) else { continue };
        let t = l.transform();
        for (source, column, col) in &raw.cols {
            let features::RawCol::Num(x) = col else { continue };
            let pairs: Vec<(f64, f64)> = (0..y.len()).filter_map(|i| Some((x[i]?, y[i]?))).collect();
            let varies = pairs.iter().any(|p| p.1 != pairs[0].1);
            let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            let equal = pairs.iter().all(|&(a, b)| same(a, b)) || pairs.iter().all(|&(a, b)| same(a, t.invert(b)));
            if pairs.len() >= 20 && varies && equal {
                return Err(Error::Gate(format!(
                    "feature column {column} of {source} equals label {} on all {} rows where both are known: the feature reads the outcome (a leak); exclude it (features.exclude) or fix its store",
                    l.name(),
                    pairs.len()
                )));
            }
        }
    }
    Ok(())
}

/// Split the rows where `col` is known; the others are `Unlabelled`.
fn split_label(project: &Project, l: &LabelKind, col: &[Option<f64>], t0: &[i64]) -> LabelSplit {
    let settings = &project.def.train;
    let horizons: Vec<Horizon> = match &settings.embargo {
        Some(h) => vec![h.clone()],
        None => project.def.horizon_of(l).cloned().into_iter().collect(),
    };
    let rows: Vec<usize> = (0..col.len()).filter(|&i| col[i].is_some()).collect();
    let t0s: Vec<i64> = rows.iter().map(|&i| t0[i]).collect();
    let fractions =
        Fractions { calibration: settings.calibration, validation: settings.validation, test: settings.test };
    let sub = match settings.split {
        SplitKind::Chronological => split::chronological(&t0s, fractions, &horizons),
        SplitKind::Random => Ok(split::random(rows.len(), fractions, settings.seed)),
    };
    let mut blocks = vec![Block::Unlabelled; col.len()];
    let error = match sub {
        Ok(sub) => {
            for (k, &i) in rows.iter().enumerate() {
                blocks[i] = sub[k];
            }
            None
        }
        Err(e) => Some(format!("label {}: {} known rows: {e}", l.name(), rows.len())),
    };
    LabelSplit { blocks, horizons, error }
}

/// Train every model of every label; assemble the snapshot.
pub(crate) fn build(
    catalog: &Catalog,
    args: &TrainArgs,
    target: Option<&str>,
    inputs: &Inputs,
    run_id: &str,
    progress: &dyn Progress,
) -> Result<Built> {
    let project: &Project = &args.project;
    let loaded = load(catalog, project, inputs, progress)?;
    let variants = variants(&loaded.specs, &project.def.features.fusion);
    let variant_x: Vec<Vec<f64>> = variants.iter().map(|v| v.matrix(&loaded.frame)).collect();
    let mut got = Gathered {
        warnings: loaded.warnings.clone(),
        survival_times: project.def.train.survival_times.clone(),
        ..Gathered::default()
    };
    progress.phase("fit", Some((project.def.labels.len() * variants.len()) as u64));
    for (vi, variant) in variants.iter().enumerate() {
        let ctx =
            Ctx { x: &variant_x[vi], d: variant.names.len(), t0: &loaded.frame.t0, folds: project.def.train.folds };
        for label in &project.def.labels {
            let outcome = train_label(&ctx, &loaded, project, label, (vi, &variant.fusion), &mut got);
            progress.advance(1);
            let Err(skip) = outcome? else { continue };
            if skip.refuse && Some(label.name()) == target {
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
    // Every scored model in its served form (score --models all), the selected ones per label.
    let mut models = Vec::with_capacity(got.scored.len());
    for (k, s) in got.scored.iter().enumerate() {
        models.push(
            select::Serving::at(&got.scored, k, &variants, &variant_x).model(&loaded, project, inputs, &s.label)?,
        );
    }
    let serving = match target {
        Some(t) => {
            let serving = select::Serving::pick(&got.scored, &selected, t, &variants, &variant_x)?;
            let model = models[selected[t]].clone();
            let metrics = serving.metrics(&loaded, t, model.interval_halfwidth);
            Some((model, metrics))
        }
        None => None,
    };
    let served = selected.values().map(|&k| models[k].clone()).collect();
    snapshot::write(snapshot::Parts {
        project,
        target,
        inputs,
        run_id,
        loaded,
        variants: &variants,
        got,
        selected,
        serving,
        served,
        models,
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
    let split = &loaded.splits[&name];
    if let Some(e) = &split.error {
        return Ok(Err(Skip { msg: e.clone(), refuse: true }));
    }
    let present = |i: usize| col[i].is_some();
    let mut job = Job {
        ctx,
        frame: &loaded.frame,
        label,
        col,
        variant,
        fusion,
        split: project.def.train.split,
        thresholds: &project.def.train.thresholds,
        models: &project.def.train.models,
        blocks: &split.blocks,
        horizons: &split.horizons,
        tr: Vec::new(),
        ca: Vec::new(),
        va: Vec::new(),
        te: Vec::new(),
        name,
    };
    (job.tr, job.ca, job.va, job.te) = (
        job.rows(Block::Train, &present),
        job.rows(Block::Calibration, &present),
        job.rows(Block::Validation, &present),
        job.rows(Block::Test, &present),
    );
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
        LabelKind::TimeToEvent { .. } => survival::train(&job, got),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in project's first value label (with a transform to invert).
    fn value_label(project: &Project) -> String {
        project.def.labels.iter().find(|l| matches!(l, LabelKind::Value { .. })).expect("a value label").name().into()
    }

    /// A frame of 30 rows with one numeric feature and the built-in project's value label.
    fn raw(feature: impl Fn(f64) -> f64) -> features::Raw {
        let y: Vec<Option<f64>> = (0..30).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)).collect();
        let x = y.iter().map(|v| v.map(&feature)).collect();
        features::Raw {
            entity_id: (0..30).map(|i| format!("e{i}")).collect(),
            t0: (0..30).collect(),
            cols: vec![("surface.s".into(), "x_last".into(), features::RawCol::Num(x))],
            labels: vec![(value_label(&Project::builtin()), y)],
        }
    }

    #[test]
    fn a_feature_equal_to_a_label_on_its_scale_or_untransformed_is_a_leak() {
        let project = Project::builtin();
        for leak in [raw(|y| y), raw(|y| y.exp() - 1.0)] {
            let e = leak_check(&project, &leak).unwrap_err().to_string();
            assert!(e.contains("x_last") && e.contains(&value_label(&project)) && e.contains("leak"), "{e}");
        }
        leak_check(&project, &raw(|y| y + 0.01)).unwrap();
    }
}
