//! The suite as a pure function of verified inputs: frame, split, every model of every
//! label, metrics, and the snapshot files as bytes. `run` writes them; `reproduce` compares.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use serde_json::json;
use t0_catalog::Catalog;
use t0_core::{Error, Progress, Result};
use t0_project::def::{Horizon, SplitKind};
use t0_project::{LabelKind, Project};

use crate::features::{self, ColumnKind, ColumnSpec, LabelRead};
use crate::metrics as m;
use crate::models::aft::{Aft, AftConfig, Dist};
use crate::models::gbdt::{Gbdt, GbdtConfig, Objective};
use crate::models::isotonic::Isotonic;
use crate::models::ridge::{Ridge, RidgeConfig};
use crate::models::stack::{Base, Stack, StackConfig};
use crate::models::woe::{Woe, WoeConfig};
use crate::models::{Design, Fitted, Learner, Target};
use crate::split::{self, Block, Fractions};
use crate::{Entry, Inputs, Metrics, Model, NOMINAL, SUITE_VERSION, TrainArgs, TrainReport};

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

fn fin(x: f64) -> serde_json::Value {
    if x.is_finite() { json!(x) } else { serde_json::Value::Null }
}

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

fn fit_err(label: &str, model: &str, e: impl std::fmt::Display) -> Error {
    Error::Gate(format!("label {label}, model {model}: {e}"))
}

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

fn classification_metrics(p: &[f64], y: &[f64], thresholds: &[f64]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::from([("roc_auc".into(), m::roc_auc(p, y)), ("pr_auc".into(), m::average_precision(p, y))]);
    for t in thresholds {
        let (pr, rc, f1) = m::prf(p, y, *t);
        out.insert(format!("precision_at_{t}"), pr);
        out.insert(format!("recall_at_{t}"), rc);
        out.insert(format!("f1_at_{t}"), f1);
    }
    out
}

/// A GBDT's loss per round (the early-stopping record).
fn curves_of(g: &Gbdt) -> serde_json::Value {
    json!({"train": g.train_curve, "valid": g.valid_curve, "best_iteration": g.best_iteration})
}

/// The threshold of best F1 on (p, y) (ties: the lower threshold).
fn best_f1_threshold(p: &[f64], y: &[f64]) -> f64 {
    let mut cands: Vec<f64> = p.to_vec();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    let mut best = (f64::NEG_INFINITY, 0.5);
    for t in cands {
        let f = m::prf(p, y, t).2;
        if f > best.0 {
            best = (f, t);
        }
    }
    best.1
}

/// The tail gate: a logistic GBDT, its probability isotonic-calibrated on the calibration
/// block, its threshold the best-F1 one on that block.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gate {
    pub model: Gbdt,
    pub calibration: Option<Isotonic>,
    pub threshold: f64,
}

impl Gate {
    pub fn probability(&self, row: &[f64]) -> f64 {
        let p = self.model.predict(row);
        self.calibration.as_ref().map(|c| c.predict(p)).unwrap_or(p)
    }
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
    let settings = &project.def.train;
    let f = &project.def.features;
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
    features::fit_levels(&raw, &mut specs, &train_rows, f.max_levels);
    let frame = features::encode(raw, &specs);
    let d = frame.names.len();
    let variants = variants(&specs, &f.fusion);
    let variant_x: Vec<Vec<f64>> = variants.iter().map(|v| v.matrix(&frame)).collect();
    // First T0 of each block (the boundaries time-to-event labels are censored at).
    let block_start = |b: Block| (0..n).find(|&i| blocks[i] == b).map(|i| frame.t0[i]);
    // Training labels are censored where the evaluation period begins.
    let next_start = |b: Block| -> Option<i64> {
        match b {
            Block::Train => block_start(Block::Calibration),
            _ => None,
        }
    };

    let mut scored: Vec<Scored> = Vec::new();
    let mut skipped_labels = Vec::new();
    let mut gates: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut survival_times: Vec<f64> = settings.survival_times.clone();
    let wants =
        |model: &str| settings.models.is_empty() || settings.models.iter().any(|m| model.starts_with(m.as_str()));
    let label_count = (project.def.labels.len() * variants.len()) as u64;
    progress.phase("fit", Some(label_count));
    for (vi, variant) in variants.iter().enumerate() {
        let ctx = Ctx {
            x: &variant_x[vi],
            d: variant.names.len(),
            t0: &frame.t0,
            blocks: &blocks,
            horizons: &horizons,
            folds: settings.folds,
        };
        // Label-level refusals are the same in every variant: say them once.
        let mut skip = |msg: String| {
            if vi == 0 {
                skipped_labels.push(msg);
            }
        };
        for label in &project.def.labels {
            let name = label.name().to_string();
            let col = frame.label(&name).expect("every label column is read");
            let present = |i: usize| col[i].is_some();
            let (tr, ca, va, te) = (
                ctx.rows(Block::Train, &present),
                ctx.rows(Block::Calibration, &present),
                ctx.rows(Block::Validation, &present),
                ctx.rows(Block::Test, &present),
            );
            let too_few = tr.len() < 20 || va.len() < 2 || te.len() < 2 || ca.len() < 2;
            if too_few {
                let msg = format!(
                    "label {name}: {}/{}/{}/{} matured rows train/calibration/validation/test: too few to train (need 20/2/2/2)",
                    tr.len(),
                    ca.len(),
                    va.len(),
                    te.len()
                );
                if name == target {
                    return Err(Error::Gate(msg));
                }
                skip(msg);
                progress.advance(1);
                continue;
            }
            let yv: Vec<f64> = col.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
            match label {
                LabelKind::Value { .. } | LabelKind::Flow { .. } => {
                    let y = Target::Real(yv.clone());
                    let (dt, dv) = (ctx.design(&y, &tr), ctx.design(&y, &va));
                    let dte = ctx.design(&y, &te);
                    let transform = label.transform();
                    let mut fitted: Vec<(String, Fitted, Option<serde_json::Value>)> = Vec::new();
                    if wants("ridge") {
                        let r = Ridge::fit(&RidgeConfig::default(), &dt, Some(&dv))
                            .map_err(|e| fit_err(&name, "ridge", e))?;
                        fitted.push(("ridge".into(), Fitted::Ridge(r), None));
                    }
                    let gcfg = GbdtConfig::new(Objective::Squared);
                    if wants("gbdt") {
                        let g = Gbdt::fit(&gcfg, &dt, Some(&dv)).map_err(|e| fit_err(&name, "gbdt", e))?;
                        let curves = curves_of(&g);
                        fitted.push(("gbdt-squared".into(), Fitted::Gbdt(g), Some(curves)));
                    }
                    if wants("stack") {
                        let bases = vec![Base::Ridge(RidgeConfig::default()), Base::Gbdt(gcfg.clone())];
                        let cfg = StackConfig { folds: ctx.stack_folds(&tr), bases, meta_aft: None };
                        match Stack::fit(&cfg, &dt, Some(&dv)) {
                            Ok(s) => fitted.push(("stack".into(), Fitted::Stack(s), None)),
                            Err(e) => warnings.push(format!("label {name}, fusion {}: no stack: {e}", variant.fusion)),
                        }
                    }
                    for (model, fit, curves) in fitted {
                        let vp: Vec<f64> = (0..dv.rows()).map(|i| fit.predict(dv.row(i))).collect();
                        let tp: Vec<f64> = (0..dte.rows()).map(|i| fit.predict(dte.row(i))).collect();
                        let vy = dv.y.real().expect("real").to_vec();
                        let ty = dte.y.real().expect("real").to_vec();
                        let vt: Vec<i64> = va.iter().map(|&i| frame.t0[i]).collect();
                        let tt: Vec<i64> = te.iter().map(|&i| frame.t0[i]).collect();
                        scored.push(Scored {
                            label: name.clone(),
                            model,
                            variant: vi,
                            fitted: fit,
                            valid_rows: va.clone(),
                            test_rows: te.clone(),
                            valid_metrics: regression_metrics(&vp, &vy, &vt, transform),
                            test_metrics: regression_metrics(&tp, &ty, &tt, transform),
                            valid_pred: vp,
                            test_pred: tp,
                            valid_surv: None,
                            test_surv: None,
                            select_by: ("rmse", false),
                            curves,
                        });
                    }
                }
                LabelKind::Threshold { .. } | LabelKind::EventWithin { .. } => {
                    let y = Target::Binary(yv.clone());
                    let (dt, dc, dv, dte) =
                        (ctx.design(&y, &tr), ctx.design(&y, &ca), ctx.design(&y, &va), ctx.design(&y, &te));
                    let ybin = |d: &Design| d.y.real().expect("binary").to_vec();
                    let classes = ybin(&dt).iter().filter(|v| **v > 0.5).count();
                    if classes == 0 || classes == dt.rows() {
                        let msg = format!("label {name}: one class only in the {} training rows", dt.rows());
                        if name == target {
                            return Err(Error::Gate(msg));
                        }
                        skip(msg);
                        progress.advance(1);
                        continue;
                    }
                    let mut fitted: Vec<(String, Fitted, Option<serde_json::Value>, Option<Gate>)> = Vec::new();
                    if wants("woe") {
                        let w = Woe::fit(&WoeConfig { bins: 5 }, &dt, None).map_err(|e| fit_err(&name, "woe", e))?;
                        fitted.push(("woe".into(), Fitted::Woe(w), None, None));
                    }
                    if wants("gate") {
                        let g = Gbdt::fit(&GbdtConfig::new(Objective::Logistic), &dt, Some(&dv))
                            .map_err(|e| fit_err(&name, "gate", e))?;
                        let raw_cal: Vec<f64> = (0..dc.rows()).map(|i| g.predict(dc.row(i))).collect();
                        let calibration = Isotonic::fit(&raw_cal, &ybin(&dc), 0.0, 1.0);
                        let cal_p: Vec<f64> =
                            raw_cal.iter().map(|p| calibration.as_ref().map(|c| c.predict(*p)).unwrap_or(*p)).collect();
                        let threshold = best_f1_threshold(&cal_p, &ybin(&dc));
                        let curves = curves_of(&g);
                        let gate = Gate { model: g.clone(), calibration, threshold };
                        fitted.push(("gate".into(), Fitted::Gbdt(g), Some(curves), Some(gate)));
                    }
                    if wants("stack") {
                        let bases =
                            vec![Base::Woe(WoeConfig { bins: 5 }), Base::Gbdt(GbdtConfig::new(Objective::Logistic))];
                        let cfg = StackConfig { folds: ctx.stack_folds(&tr), bases, meta_aft: None };
                        match Stack::fit(&cfg, &dt, Some(&dv)) {
                            Ok(s) => fitted.push(("stack".into(), Fitted::Stack(s), None, None)),
                            Err(e) => warnings.push(format!("label {name}, fusion {}: no stack: {e}", variant.fusion)),
                        }
                    }
                    for (model, fit, curves, gate) in fitted {
                        let prob = |d: &Design| -> Vec<f64> {
                            (0..d.rows())
                                .map(|i| match &gate {
                                    Some(g) => g.probability(d.row(i)),
                                    None => fit.predict(d.row(i)),
                                })
                                .collect()
                        };
                        let (vp, tp) = (prob(&dv), prob(&dte));
                        let mut thresholds = settings.thresholds.clone();
                        if let Some(g) = &gate {
                            thresholds.push(g.threshold);
                            gates.entry(name.clone()).or_default().insert(variant.fusion.clone(), g.threshold);
                        }
                        let mut tm = classification_metrics(&tp, &ybin(&dte), &thresholds);
                        let mut vm = classification_metrics(&vp, &ybin(&dv), &thresholds);
                        if let Some(g) = &gate {
                            for (mm, p, yy) in [(&mut tm, &tp, ybin(&dte)), (&mut vm, &vp, ybin(&dv))] {
                                let (pr, rc, f1) = m::prf(p, &yy, g.threshold);
                                mm.insert("gate_threshold".into(), g.threshold);
                                mm.insert("gate_precision".into(), pr);
                                mm.insert("gate_recall".into(), rc);
                                mm.insert("gate_f1".into(), f1);
                            }
                        }
                        let fit = match gate {
                            Some(g) => Fitted::Gate(Box::new(g)),
                            None => fit,
                        };
                        scored.push(Scored {
                            label: name.clone(),
                            model,
                            variant: vi,
                            fitted: fit,
                            valid_rows: va.clone(),
                            test_rows: te.clone(),
                            valid_pred: vp,
                            test_pred: tp,
                            valid_surv: None,
                            test_surv: None,
                            valid_metrics: vm,
                            test_metrics: tm,
                            select_by: ("roc_auc", true),
                            curves,
                        });
                    }
                }
                LabelKind::TimeToEvent { .. } => {
                    let event_col = label.columns()[1].clone();
                    let ev = frame.label(&event_col).expect("event column is read");
                    // Hours to µs; training rows are censored where the calibration block begins.
                    const HOUR: f64 = 3_600_000_000.0;
                    let mut lower = vec![f64::NAN; n];
                    let mut upper = vec![f64::NAN; n];
                    let mut censored_at_boundary = 0;
                    let mut dropped = 0;
                    for i in 0..n {
                        let Some(t) = col[i] else { continue };
                        let mut e = ev[i].unwrap_or(0.0) > 0.5;
                        let mut t = t;
                        if let (SplitKind::Chronological, Some(b)) = (settings.split, next_start(blocks[i])) {
                            let limit = (b - frame.t0[i]) as f64 / HOUR;
                            if t > limit {
                                t = limit;
                                e = false;
                                censored_at_boundary += 1;
                            }
                        }
                        if t <= 0.0 {
                            dropped += 1;
                            continue;
                        }
                        lower[i] = t;
                        upper[i] = if e { t } else { f64::INFINITY };
                    }
                    if dropped > 0 && vi == 0 {
                        warnings.push(format!("label {name}: {dropped} rows with a time of 0 hours left out"));
                    }
                    let ok = |i: usize| !lower[i].is_nan();
                    let (tr, va, te) =
                        (ctx.rows(Block::Train, &ok), ctx.rows(Block::Validation, &ok), ctx.rows(Block::Test, &ok));
                    let y = Target::Censored { lower: lower.clone(), upper: upper.clone() };
                    let (dt, dv, dte) = (ctx.design(&y, &tr), ctx.design(&y, &va), ctx.design(&y, &te));
                    let events = |rows: &[usize]| rows.iter().filter(|&&i| upper[i].is_finite()).count();
                    if tr.len() < 20 || events(&tr) == 0 || va.len() < 2 || te.len() < 2 {
                        let msg = format!(
                            "label {name}: {} training rows with {} events ({censored_at_boundary} censored at a block boundary): too few to train",
                            tr.len(),
                            events(&tr)
                        );
                        skip(msg);
                        progress.advance(1);
                        continue;
                    }
                    if survival_times.is_empty() {
                        let mut et: Vec<f64> =
                            tr.iter().filter(|&&i| upper[i].is_finite()).map(|&i| lower[i]).collect();
                        et.sort_by(f64::total_cmp);
                        survival_times =
                            [0.25, 0.5, 0.75].iter().map(|q| et[((et.len() - 1) as f64 * q) as usize]).collect();
                        survival_times.dedup();
                    }
                    let train_t: Vec<f64> = tr.iter().map(|&i| lower[i]).collect();
                    let train_e: Vec<bool> = tr.iter().map(|&i| upper[i].is_finite()).collect();
                    let cens = m::CensoringKm::fit(&train_t, &train_e);
                    let mut fitted: Vec<(String, Fitted, Dist, f64, Option<serde_json::Value>)> = Vec::new();
                    for dist in [Dist::Extreme, Dist::Normal, Dist::Logistic] {
                        let model = format!("aft-{}", dist.name());
                        if !wants(&model) && !wants("aft") {
                            continue;
                        }
                        let cfg = AftConfig { dist, penalties: vec![1e-3, 1e-2, 1e-1] };
                        match Aft::fit(&cfg, &dt, Some(&dv)) {
                            Ok(a) => {
                                let s = a.sigma();
                                fitted.push((model, Fitted::Aft(a), dist, s, None));
                            }
                            Err(e) => {
                                warnings.push(format!("label {name}, model {model}, fusion {}: {e}", variant.fusion))
                            }
                        }
                    }
                    if wants("gbdt") {
                        let g = Gbdt::fit(&GbdtConfig::new(GBDT_AFT), &dt, Some(&dv))
                            .map_err(|e| fit_err(&name, "gbdt-aft", e))?;
                        let curves = curves_of(&g);
                        fitted.push(("gbdt-aft-lognormal".into(), Fitted::Gbdt(g), Dist::Normal, 1.0, Some(curves)));
                    }
                    if wants("stack") {
                        let aft = |dist| AftConfig { dist, penalties: vec![1e-3, 1e-2, 1e-1] };
                        let bases = vec![Base::Aft(aft(Dist::Extreme)), Base::Gbdt(GbdtConfig::new(GBDT_AFT))];
                        let cfg = StackConfig { folds: ctx.stack_folds(&tr), bases, meta_aft: Some(aft(Dist::Normal)) };
                        match Stack::fit(&cfg, &dt, Some(&dv)) {
                            Ok(s) => {
                                let meta = s.aft().expect("a censored stack has a meta AFT");
                                let (dist, sigma) = (meta.dist, meta.sigma());
                                fitted.push(("stack".into(), Fitted::Stack(s), dist, sigma, None));
                            }
                            Err(e) => warnings.push(format!("label {name}, fusion {}: no stack: {e}", variant.fusion)),
                        }
                    }
                    for (model, fit, dist, sigma, curves) in fitted {
                        let evaluate = |d: &Design| -> (Vec<f64>, Vec<Vec<f64>>, BTreeMap<String, f64>) {
                            let Target::Censored { lower, upper } = &d.y else { unreachable!("censored design") };
                            let loc: Vec<f64> = (0..d.rows()).map(|i| fit.predict(d.row(i))).collect();
                            let surv: Vec<Vec<f64>> = loc
                                .iter()
                                .map(|l| {
                                    TIME_QUANTILES
                                        .iter()
                                        .map(|q| (l + sigma * dist.quantile(*q)).exp())
                                        .chain(survival_times.iter().map(|t| dist.log_surv((t.ln() - l) / sigma).exp()))
                                        .collect()
                                })
                                .collect();
                            let e: Vec<bool> = upper.iter().map(|u| u.is_finite()).collect();
                            let risk: Vec<f64> = loc.iter().map(|v| -v).collect();
                            let s_at: Vec<Vec<f64>> = surv.iter().map(|r| r[TIME_QUANTILES.len()..].to_vec()).collect();
                            let ll: f64 = (0..d.rows())
                                .map(|i| {
                                    let z = (lower[i].ln() - loc[i]) / sigma;
                                    if e[i] { dist.log_pdf(z) - sigma.ln() - lower[i].ln() } else { dist.log_surv(z) }
                                })
                                .sum();
                            let met = BTreeMap::from([
                                ("harrell_c".to_string(), m::harrell_c(lower, &e, &loc)),
                                ("uno_c".to_string(), m::uno_c(&cens, lower, &e, &risk, f64::INFINITY)),
                                (
                                    "integrated_brier".to_string(),
                                    m::integrated_brier(&cens, lower, &e, &s_at, &survival_times),
                                ),
                                ("log_likelihood".to_string(), ll),
                            ]);
                            (loc, surv, met)
                        };
                        let (vp, vs, vm) = evaluate(&dv);
                        let (tp, ts, tm) = evaluate(&dte);
                        scored.push(Scored {
                            label: name.clone(),
                            model,
                            variant: vi,
                            fitted: fit,
                            valid_rows: va.clone(),
                            test_rows: te.clone(),
                            valid_pred: vp,
                            test_pred: tp,
                            valid_surv: Some(vs),
                            test_surv: Some(ts),
                            valid_metrics: vm,
                            test_metrics: tm,
                            select_by: ("harrell_c", true),
                            curves,
                        });
                    }
                }
            }
            progress.advance(1);
        }
    }
    progress.finish();
    if scored.is_empty() {
        return Err(Error::Gate("no model was trained: no metrics produced".into()));
    }

    // Selection per label on validation.
    let mut selected: BTreeMap<String, usize> = BTreeMap::new();
    for (k, s) in scored.iter().enumerate() {
        let (v, _) = s.primary();
        if !v.is_finite() {
            continue;
        }
        let better = |b: usize| {
            let (bv, _) = scored[b].primary();
            if s.select_by.1 { v > bv } else { v < bv }
        };
        match selected.get(&s.label) {
            Some(&b) if !better(b) => {}
            _ => {
                selected.insert(s.label.clone(), k);
            }
        }
    }
    let serving = *selected
        .get(target)
        .ok_or_else(|| Error::Gate(format!("no model of the target {target} produced a finite validation metric")))?;

    // The serving model: conformal half-width on the calibration block.
    let ycol = frame.label(target).expect("target column");
    let in_block = |b: Block| -> Vec<usize> { (0..n).filter(|&i| blocks[i] == b && ycol[i].is_some()).collect() };
    let cal: Vec<usize> = in_block(Block::Calibration);
    let sv = &scored[serving];
    let (sv_variant, sv_x) = (&variants[sv.variant], &variant_x[sv.variant]);
    let sv_d = sv_variant.names.len();
    let mut res: Vec<f64> = cal
        .iter()
        .map(|&i| (ycol[i].expect("present") - sv.fitted.predict(&sv_x[i * sv_d..(i + 1) * sv_d])).abs())
        .collect();
    res.sort_by(f64::total_cmp);
    let k = (((res.len() + 1) as f64 * NOMINAL).ceil() as usize).clamp(1, res.len().max(1));
    let halfwidth = res.get(k - 1).copied().unwrap_or(f64::INFINITY);
    let mut surface_view_defs = BTreeMap::new();
    for s in &f.surfaces {
        let vdh = t0_certify::certified_view_def(&inputs.cert, s)
            .ok_or_else(|| Error::Refused(format!("certificate records no view-definition hash for {s}")))?;
        surface_view_defs.insert(s.clone(), vdh);
    }
    let first = |b: Block| block_start(b).unwrap_or(i64::MAX);
    let model = Model {
        kind: sv.model.clone(),
        fusion: sv_variant.fusion.clone(),
        target: target.to_string(),
        // The surfaces, and the embedding outputs the variant's columns come from.
        sources: inputs
            .sources
            .iter()
            .map(|s| s.output.clone())
            .filter(|o| o.starts_with("surface.") || sv_variant.specs.iter().any(|c| &c.source == o))
            .collect(),
        columns: sv_variant.specs.clone(),
        features: sv_variant.names.clone(),
        predictor: sv.fitted.clone(),
        interval_halfwidth: halfwidth,
        nominal: NOMINAL,
        surface_view_defs,
        certify_run: inputs.cert.manifest.run_id.clone(),
        embed_run: inputs.emb.as_ref().map(|e| e.manifest.run_id.clone()),
        project: project.name().to_string(),
        valid_from: first(Block::Validation),
        test_from: first(Block::Test),
    };
    let ty: Vec<f64> = sv.test_rows.iter().map(|&i| ycol[i].expect("present")).collect();
    let train_y: Vec<f64> = in_block(Block::Train).iter().map(|&i| ycol[i].expect("p")).collect();
    let train_mean = train_y.iter().sum::<f64>() / train_y.len().max(1) as f64;
    let covered = sv.test_pred.iter().zip(&ty).filter(|(p, y)| (*p - *y).abs() <= halfwidth).count();
    let count = |b: Block| blocks.iter().filter(|x| **x == b).count();
    let metrics = Metrics {
        model: sv.model.clone(),
        rows_train: count(Block::Train),
        rows_calibration: count(Block::Calibration),
        rows_valid: count(Block::Validation),
        rows_test: count(Block::Test),
        rows_embargoed: count(Block::Embargo),
        valid_rmse: sv.valid_metrics["rmse"],
        test_rmse: sv.test_metrics["rmse"],
        test_mae: sv.test_metrics["mae"],
        test_coverage: covered as f64 / ty.len().max(1) as f64,
        baseline_test_rmse: m::rmse(&vec![train_mean; ty.len()], &ty),
    };

    // Snapshot files.
    let mut files: Vec<File> = Vec::new();
    let mut add = |name: String, output: String, bytes: Vec<u8>, per: bool| {
        files.push(File { name, output, bytes, per_entity_t0: per })
    };
    let leaderboard: Vec<Entry> = scored
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (v, t) = s.primary();
            Entry {
                label: s.label.clone(),
                label_kind: project.label(&s.label).map(|l| l.kind_name()).unwrap_or("").to_string(),
                model: s.model.clone(),
                fusion: variants[s.variant].fusion.clone(),
                metric: s.select_by.0.to_string(),
                valid: v.is_finite().then_some(v),
                test: t.is_finite().then_some(t),
                selected: selected.get(&s.label) == Some(&k),
            }
        })
        .collect();
    let mut csv = String::from("label,label_kind,model,fusion,metric,valid,test,selected\n");
    for e in &leaderboard {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.label,
            e.label_kind,
            e.model,
            e.fusion,
            e.metric,
            e.valid.map(|v| v.to_string()).unwrap_or_default(),
            e.test.map(|v| v.to_string()).unwrap_or_default(),
            e.selected
        ));
    }
    let time_range = |b: Block| {
        let ts: Vec<i64> = (0..n).filter(|&i| blocks[i] == b).map(|i| frame.t0[i]).collect();
        let iso = |t: Option<&i64>| t.and_then(|t| chrono::DateTime::from_timestamp_micros(*t)).map(|d| d.to_rfc3339());
        json!({"rows": ts.len(), "first_t0": iso(ts.first()), "last_t0": iso(ts.last())})
    };
    let data_summary = json!({
        "rows": n,
        "features": d,
        "fusion_variants": variants.iter().map(|v| json!({"fusion": v.fusion, "features": v.names.len()})).collect::<Vec<_>>(),
        "skipped_columns": selection.skipped,
        "split": match settings.split { SplitKind::Chronological => "chronological", SplitKind::Random => "random" },
        "embargo": horizons.iter().map(|h| String::from(h.clone())).collect::<Vec<_>>(),
        "blocks": {
            "train": time_range(Block::Train),
            "calibration": time_range(Block::Calibration),
            "validation": time_range(Block::Validation),
            "test": time_range(Block::Test),
            "embargo": time_range(Block::Embargo),
        },
        "labels": project.def.labels.iter().map(|l| {
            let c = frame.label(l.name()).expect("label column");
            json!({"name": l.name(), "kind": l.kind_name(), "matured": c.iter().filter(|v| v.is_some()).count()})
        }).collect::<Vec<_>>(),
        "skipped_labels": skipped_labels,
        "survival_times": survival_times,
        "time_quantiles": TIME_QUANTILES,
        "gate_thresholds": gates,
        "warnings": warnings,
    });
    let config_used = json!({
        "suite_version": SUITE_VERSION,
        "code_version": t0_core::CODE_VERSION,
        "project": project.name(),
        "project_hash": project.hash,
        "target": target,
        "train": settings,
        "features": f,
        "models": {
            "ridge": RidgeConfig::default(),
            "gbdt_squared": GbdtConfig::new(Objective::Squared),
            "gbdt_logistic": GbdtConfig::new(Objective::Logistic),
            "gbdt_aft": GbdtConfig::new(GBDT_AFT),
            "aft_penalties": [1e-3, 1e-2, 1e-1],
            "stack_folds": settings.folds,
            "stack_bases": {"value": ["ridge", "gbdt-squared"], "binary": ["woe", "gbdt-logistic"],
                            "time_to_event": ["aft-weibull", "gbdt-aft-lognormal"]},
            "stack_meta": {"value": "non-negative least squares", "binary": "non-negative logistic regression on logits",
                           "time_to_event": "log-normal AFT on the bases' locations"},
        },
        "certify_run": inputs.cert.manifest.run_id,
        "embed_run": inputs.emb.as_ref().map(|e| e.manifest.run_id.clone()),
        "run_id": run_id,
    });
    let mut metrics_summary: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for s in &scored {
        let conv =
            |mm: &BTreeMap<String, f64>| mm.iter().map(|(k, v)| (k.clone(), fin(*v))).collect::<BTreeMap<_, _>>();
        metrics_summary
            .entry(s.label.clone())
            .or_default()
            .insert(s.id(&variants), json!({"valid": conv(&s.valid_metrics), "test": conv(&s.test_metrics)}));
    }
    // Slices by modality presence (fused `has_<modality>` flags), target models, test block.
    let mut slices = Vec::new();
    for (j, fname) in frame.names.iter().enumerate() {
        let Some(modality) = fname.strip_prefix("has_").and_then(|r| r.strip_suffix("=true")) else { continue };
        for s in scored.iter().filter(|s| s.label == target) {
            for present in [true, false] {
                let idx: Vec<usize> =
                    (0..s.test_rows.len()).filter(|&k| (frame.row(s.test_rows[k])[j] == 1.0) == present).collect();
                if idx.is_empty() {
                    continue;
                }
                let p: Vec<f64> = idx.iter().map(|&k| s.test_pred[k]).collect();
                let y: Vec<f64> = idx.iter().map(|&k| ycol[s.test_rows[k]].expect("present")).collect();
                slices.push(json!({"label": target, "model": s.model, "fusion": variants[s.variant].fusion, "modality": modality, "present": present,
                                   "rows": idx.len(), "rmse": fin(m::rmse(&p, &y)), "mae": fin(m::mae(&p, &y))}));
            }
        }
    }
    let j = |v: &serde_json::Value| crate::json_bytes(v);
    add("config_used.json".into(), "run.config".into(), j(&config_used)?, false);
    add("data_summary.json".into(), "run.data_summary".into(), j(&data_summary)?, false);
    add("metrics_summary.json".into(), "run.metrics".into(), crate::json_bytes(&metrics_summary)?, false);
    add("slice_metrics.json".into(), "run.slices".into(), j(&json!(slices))?, false);
    add("leaderboard.csv".into(), "run.leaderboard".into(), csv.into_bytes(), false);
    add("model.json".into(), "run.model".into(), crate::json_bytes(&model)?, false);
    for s in &scored {
        let id = s.id(&variants);
        let stem = format!("{}__{id}", s.label);
        add(
            format!("models/{stem}.json"),
            format!("run.models.{}.{id}", s.label),
            crate::json_bytes(&s.fitted)?,
            false,
        );
        if let Some(c) = &s.curves {
            add(format!("curves/{stem}.json"), format!("run.curves.{}.{id}", s.label), j(c)?, false);
        }
    }
    let split_batch = crate::rows_batch(
        &frame.entity_id,
        &frame.t0,
        vec![("block", Arc::new(StringArray::from(blocks.iter().map(|b| b.as_str()).collect::<Vec<_>>())) as ArrayRef)],
    )?;
    add(
        "split_manifest.parquet".into(),
        "run.split".into(),
        t0_table::parquet_bytes(split_batch.schema(), &[split_batch])?,
        true,
    );
    for (which, valid) in [("valid", true), ("test", false)] {
        let (mut ids, mut t0s, mut lab, mut mdl, mut fus, mut ys, mut ps) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let extra = TIME_QUANTILES.len() + survival_times.len();
        let mut surv_cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); extra];
        for s in &scored {
            let (rows, pred, surv) = if valid {
                (&s.valid_rows, &s.valid_pred, &s.valid_surv)
            } else {
                (&s.test_rows, &s.test_pred, &s.test_surv)
            };
            let ycol = frame.label(&s.label).expect("label");
            for (k, &i) in rows.iter().enumerate() {
                ids.push(frame.entity_id[i].clone());
                t0s.push(frame.t0[i]);
                lab.push(s.label.clone());
                mdl.push(s.model.clone());
                fus.push(variants[s.variant].fusion.clone());
                ys.push(ycol[i]);
                ps.push(pred[k]);
                for (c, col) in surv_cols.iter_mut().enumerate() {
                    col.push(surv.as_ref().and_then(|v| v[k].get(c).copied()));
                }
            }
        }
        let mut cols: Vec<(String, ArrayRef)> = vec![
            ("label".into(), Arc::new(StringArray::from(lab))),
            ("model".into(), Arc::new(StringArray::from(mdl))),
            ("fusion".into(), Arc::new(StringArray::from(fus))),
            ("y".into(), Arc::new(Float64Array::from(ys))),
            ("prediction".into(), Arc::new(Float64Array::from(ps))),
        ];
        let names: Vec<String> = TIME_QUANTILES
            .iter()
            .map(|q| format!("time_q{:02}", (q * 100.0).round() as u32))
            .chain(survival_times.iter().map(|t| format!("s_at_{t}")))
            .collect();
        for (nm, col) in names.into_iter().zip(surv_cols) {
            cols.push((nm, Arc::new(Float64Array::from(col))));
        }
        let batch = crate::rows_batch(&ids, &t0s, cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())?;
        add(
            format!("predictions/{which}.parquet"),
            format!("run.predictions.{which}"),
            t0_table::parquet_bytes(batch.schema(), &[batch])?,
            false,
        );
    }
    let report = TrainReport {
        run_id: run_id.to_string(),
        snapshot: format!("runs/{run_id}"),
        metrics,
        target: target.to_string(),
        features: d,
        skipped_columns: selection.skipped,
        leaderboard,
        skipped_labels,
        warnings,
    };
    Ok(Built { files, report })
}
