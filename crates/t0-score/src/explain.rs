//! Per-row predictions and their exact explanations, as the predictions file's columns: one
//! part per served label, joined into one long table (one row per entity, T0 and label).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use rayon::prelude::*;
use t0_core::{Error, Result};
use t0_model::Explanation;
use t0_model::head::{Head, TIME_QUANTILES, survival_figures};
use t0_model::{Frame, Model};

/// Named columns of the predictions file.
pub type Columns = Vec<(String, ArrayRef)>;

/// How many contributions each row names, unless asked otherwise.
pub const DEFAULT_TOP_K: usize = 3;

/// One scored row: the prediction and why.
pub struct Scored {
    prediction: f64,
    explanation: Explanation,
    /// Feature indices by decreasing |contribution| (ties: the earlier feature).
    order: Vec<usize>,
}

fn score_row(model: &Model, row: &[f64]) -> std::result::Result<Scored, f64> {
    let explanation = model.predictor.explanation(row);
    explanation.check()?;
    let c = &explanation.contributions;
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[b].abs().total_cmp(&c[a].abs()).then(a.cmp(&b)));
    Ok(Scored { prediction: model.predictor.predict(row), explanation, order })
}

/// Every row's prediction and exact explanation, in frame order. Rows are explained in
/// parallel and collected in order, so nothing depends on the thread count. A row whose
/// contributions do not add up to the model's output is an error, never a warning.
pub fn score_rows(model: &Model, frame: &Frame, model_path: &str) -> Result<Vec<Scored>> {
    let scored: Vec<std::result::Result<Scored, f64>> =
        (0..frame.rows()).into_par_iter().map(|i| score_row(model, frame.row(i))).collect();
    let mut rows = Vec::with_capacity(scored.len());
    for (i, s) in scored.into_iter().enumerate() {
        let s = s.map_err(|gap| Error::Internal {
            context: format!("explain row {i} (entity {}) with model {model_path}", frame.entity_id[i]),
            message: format!(
                "the contributions miss the model's output by {gap} (tolerance {} relative to the output)",
                t0_model::ADDITIVITY_TOLERANCE
            ),
        })?;
        rows.push(s);
    }
    Ok(rows)
}

/// The predictions of scored rows.
pub fn predictions(rows: &[Scored]) -> Vec<f64> {
    rows.iter().map(|s| s.prediction).collect()
}

/// The full contribution matrix (`score --explain-all`): the label, the explanation's scale,
/// output and base value, then one column per feature, named as the feature.
pub fn matrix(model: &Model, frame: &Frame, rows: &[Scored]) -> Result<Columns> {
    let fixed = ["entity_id", "t0", "label", "explanation_scale", "explanation_output", "base_value"];
    if let Some(f) = frame.names.iter().find(|n| fixed.contains(&n.as_str())) {
        return Err(Error::Usage(format!("--explain-all: feature {f:?} has the name of a fixed column")));
    }
    let mut cols: Columns = vec![("label".into(), repeat(&model.target, rows.len()))];
    cols.extend(explanation_columns(rows));
    for (j, name) in frame.names.iter().enumerate() {
        let c = Float64Array::from_iter_values(rows.iter().map(|s| s.explanation.contributions[j]));
        cols.push((name.clone(), Arc::new(c)));
    }
    Ok(cols)
}

/// One string repeated `n` times.
fn repeat(v: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)))
}

fn f64s(rows: &[Scored], f: impl Fn(&Scored) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

/// The scale the contributions add up on, the model's output there and the base value.
fn explanation_columns(rows: &[Scored]) -> Columns {
    let scale = StringArray::from_iter_values(rows.iter().map(|s| s.explanation.scale.as_str()));
    vec![
        ("explanation_scale".into(), Arc::new(scale)),
        ("explanation_output".into(), f64s(rows, |s| s.explanation.output)),
        ("base_value".into(), f64s(rows, |s| s.explanation.base)),
    ]
}

/// The model's name as the predictions file gives it: the family, `+<fusion>` when fused.
pub fn model_name(model: &Model) -> String {
    match model.fusion.as_str() {
        "none" | "" => model.kind.clone(),
        f => format!("{}+{f}", model.kind),
    }
}

/// One label's columns after (entity_id, t0): `label`, `label_kind`, `model`, `prediction`
/// (a value on the label's scale, a calibrated probability, or a median time in hours), what
/// the label's kind serves (see [`served_columns`]), the explanation, and for r = 1..=top_k
/// `reason{r}_feature`, `reason{r}_value` (the feature as the model saw it, null when
/// missing) and `reason{r}_contribution`.
pub fn columns(model: &Model, frame: &Frame, rows: &[Scored], top_k: usize, levels: &[f64]) -> Columns {
    let n = rows.len();
    let mut cols: Columns = vec![
        ("label".into(), repeat(&model.target, n)),
        ("label_kind".into(), repeat(model.head.kind(), n)),
        ("model".into(), repeat(&model_name(model), n)),
    ];
    cols.extend(served_columns(model, frame, rows, levels));
    cols.extend(explanation_columns(rows));
    for r in 0..top_k.min(frame.names.len()) {
        let feature = rows.iter().map(|s| frame.names[s.order[r]].as_str());
        cols.push((format!("reason{}_feature", r + 1), Arc::new(StringArray::from_iter_values(feature))));
        let value = rows.iter().enumerate().map(|(i, s)| {
            let v = frame.row(i)[s.order[r]];
            (!v.is_nan()).then_some(v)
        });
        cols.push((format!("reason{}_value", r + 1), Arc::new(value.collect::<Float64Array>())));
        cols.push((format!("reason{}_contribution", r + 1), f64s(rows, |s| s.explanation.contributions[s.order[r]])));
    }
    cols
}

/// What the label's kind serves, beginning with `prediction`:
/// - value / flow: `prediction_raw` (the transform inverted), the nominal interval as
///   `lower`/`upper` (what calibrate judges) and `lower_raw`/`upper_raw`, then
///   `lower_<pct>`/`upper_<pct>` at each level, by the interval method chosen at training;
/// - binary: the calibrated probability, `decision` (probability ≥ threshold) and `threshold`;
/// - time-to-event: the median time, `q10`/`q50`/`q90`, `s_at_<t>h` at the declared times,
///   and the conformal lower predictive bound `lower_bound` (nominal level) and
///   `lower_bound_<pct>` at each level (null where the model has none).
pub fn served_columns(model: &Model, frame: &Frame, rows: &[Scored], levels: &[f64]) -> Columns {
    let named = || {
        std::iter::once((model.nominal, String::new()))
            .chain(levels.iter().map(|l| (*l, format!("_{}", level_name(*l)))))
    };
    match &model.head {
        Head::Value { transform } => {
            let mut cols: Columns = vec![
                ("prediction".into(), f64s(rows, |s| s.prediction)),
                ("prediction_raw".into(), f64s(rows, |s| transform.invert(s.prediction))),
            ];
            for (level, suffix) in named() {
                let w: Vec<f64> = (0..rows.len()).map(|i| model.halfwidth_at(frame.row(i), level)).collect();
                let bound = |sign: f64, raw: bool| -> ArrayRef {
                    let v = rows.iter().zip(&w).map(|(s, w)| s.prediction + sign * w);
                    Arc::new(Float64Array::from_iter_values(v.map(|v| if raw { transform.invert(v) } else { v })))
                };
                cols.push((format!("lower{suffix}"), bound(-1.0, false)));
                cols.push((format!("upper{suffix}"), bound(1.0, false)));
                if suffix.is_empty() {
                    cols.push(("lower_raw".into(), bound(-1.0, true)));
                    cols.push(("upper_raw".into(), bound(1.0, true)));
                    // What calibrate's replay reads: the level the interval was issued at
                    // (the nominal one, or the level ACI adapted it to) and the row's scale.
                    cols.push(("interval_level".into(), f64s_at(rows.len(), |_| model.nominal)));
                    let scale = (0..rows.len()).map(|i| model.interval_scale(frame.row(i)));
                    cols.push(("interval_scale".into(), Arc::new(Float64Array::from_iter_values(scale))));
                }
            }
            cols
        }
        Head::Binary { threshold, .. } => {
            let p: Vec<f64> = rows.iter().map(|s| model.head.probability(s.prediction)).collect();
            vec![
                ("prediction".into(), Arc::new(Float64Array::from(p.clone()))),
                ("decision".into(), Arc::new(BooleanArray::from_iter(p.iter().map(|p| Some(*p >= *threshold))))),
                ("threshold".into(), Arc::new(Float64Array::from(vec![*threshold; p.len()]))),
            ]
        }
        Head::Survival { dist, sigma, times, bound } => {
            let figures: Vec<(Vec<f64>, Vec<f64>)> =
                rows.iter().map(|s| survival_figures(*dist, *sigma, times, s.prediction)).collect();
            let median = |k: usize| figures[k].0[1];
            let mut cols: Columns = vec![("prediction".into(), f64s_at(rows.len(), median))];
            for (j, q) in TIME_QUANTILES.iter().enumerate() {
                cols.push((format!("q{}", (q * 100.0).round()), f64s_at(rows.len(), |k| figures[k].0[j])));
            }
            for (j, t) in times.iter().enumerate() {
                let name = format!("s_at_{}h", format!("{t}").replace('.', "_"));
                cols.push((name, f64s_at(rows.len(), |k| figures[k].1[j])));
            }
            for (level, suffix) in named() {
                let v = (0..rows.len()).map(|k| bound.as_ref().map(|b| b.at(median(k), level)));
                cols.push((format!("lower_bound{suffix}"), Arc::new(v.collect::<Float64Array>())));
            }
            cols
        }
    }
}

fn f64s_at(n: usize, f: impl Fn(usize) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values((0..n).map(f)))
}

/// Where a column goes in the long table: its group, so that every label's columns line up
/// whatever kinds are served (first appearance orders columns within a group).
fn group(name: &str) -> u8 {
    match name {
        "label" | "label_kind" | "model" | "selected" => 0,
        "prediction" => 1,
        "decision" | "threshold" => 3,
        "explanation_scale" | "explanation_output" | "base_value" => 5,
        n if n.starts_with("lower_bound") || n.starts_with("s_at_") || matches!(n, "q10" | "q50" | "q90") => 4,
        n if n.starts_with("prediction_") || n.starts_with("lower") || n.starts_with("upper") => 2,
        "interval_level" | "interval_scale" => 2,
        n if n.starts_with("reason") => 6,
        _ => 7,
    }
}

/// One label's rows of the long table.
pub struct Part {
    pub entity_id: Vec<String>,
    pub t0: Vec<i64>,
    pub cols: Columns,
}

/// The long table: every part's rows in order, each column null where a part lacks it.
pub fn union(parts: &[Part]) -> Result<(Vec<String>, Vec<i64>, Columns)> {
    let mut names: Vec<(String, arrow::datatypes::DataType)> = Vec::new();
    for p in parts {
        for (n, a) in &p.cols {
            if !names.iter().any(|(m, _)| m == n) {
                names.push((n.clone(), a.data_type().clone()));
            }
        }
    }
    names.sort_by_key(|(n, _)| group(n));
    let mut cols = Columns::new();
    for (name, ty) in names {
        let pieces: Vec<ArrayRef> = parts
            .iter()
            .map(|p| {
                p.cols
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or_else(|| arrow::array::new_null_array(&ty, p.entity_id.len()), |(_, a)| a.clone())
            })
            .collect();
        let refs: Vec<&dyn arrow::array::Array> = pieces.iter().map(|a| a.as_ref()).collect();
        let joined = arrow::compute::concat(&refs).map_err(|e| Error::Internal {
            context: format!("join column {name} of the predictions"),
            message: format!("{e} (one name, two types across labels)"),
        })?;
        cols.push((name, joined));
    }
    let ids = parts.iter().flat_map(|p| p.entity_id.iter().cloned()).collect();
    let t0 = parts.iter().flat_map(|p| p.t0.iter().copied()).collect();
    Ok((ids, t0, cols))
}

/// A level as a column suffix: 0.9 → `90`, 0.975 → `97_5`.
pub fn level_name(level: f64) -> String {
    let pct = (level * 1000.0).round() / 10.0;
    format!("{pct}").replace('.', "_")
}
