//! Per-row predictions and their exact explanations, as the predictions file's columns.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use rayon::prelude::*;
use t0_core::{Error, Result};
use t0_train::models::Explanation;
use t0_train::{Frame, Model};

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
                t0_train::models::ADDITIVITY_TOLERANCE
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

/// The full contribution matrix (`score --explain-all`): the explanation's scale and base
/// value, then one column per feature, named as the feature.
pub fn matrix(frame: &Frame, rows: &[Scored]) -> Result<Columns> {
    let fixed = ["entity_id", "t0", "explanation_scale", "base_value"];
    if let Some(f) = frame.names.iter().find(|n| fixed.contains(&n.as_str())) {
        return Err(Error::Usage(format!("--explain-all: feature {f:?} has the name of a fixed column")));
    }
    let scale = StringArray::from_iter_values(rows.iter().map(|s| s.explanation.scale.as_str()));
    let mut cols: Columns = vec![
        ("explanation_scale".into(), Arc::new(scale)),
        ("base_value".into(), Arc::new(Float64Array::from_iter_values(rows.iter().map(|s| s.explanation.base)))),
    ];
    for (j, name) in frame.names.iter().enumerate() {
        let c = Float64Array::from_iter_values(rows.iter().map(|s| s.explanation.contributions[j]));
        cols.push((name.clone(), Arc::new(c)));
    }
    Ok(cols)
}

/// The columns after (entity_id, t0): prediction, interval, the explanation's scale and base
/// value, and for r = 1..=top_k `reason{r}_feature`, `reason{r}_value` (the feature as the
/// model saw it, null when missing) and `reason{r}_contribution`. `levels` add
/// `lower_<pct>`/`upper_<pct>` split-conformal bounds at each coverage level (from the
/// model's calibration scores) after the nominal `lower`/`upper` that calibrate judges.
pub fn columns(model: &Model, frame: &Frame, rows: &[Scored], top_k: usize, levels: &[f64]) -> Columns {
    let d = frame.names.len();
    let f64s =
        |f: &dyn Fn(&Scored) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) };
    let mut cols: Columns = vec![("prediction".into(), f64s(&|s| s.prediction))];
    // The nominal interval as `lower`/`upper` (what calibrate judges), then each level.
    let named = std::iter::once((model.nominal, String::new()))
        .chain(levels.iter().map(|l| (*l, format!("_{}", level_name(*l)))));
    for (level, suffix) in named {
        let w: Vec<f64> = (0..rows.len()).map(|i| model.halfwidth_at(frame.row(i), level)).collect();
        let bound = |sign: f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().zip(&w).map(|(s, w)| s.prediction + sign * w)))
        };
        cols.push((format!("lower{suffix}"), bound(-1.0)));
        cols.push((format!("upper{suffix}"), bound(1.0)));
    }
    let scale = StringArray::from_iter_values(rows.iter().map(|s| s.explanation.scale.as_str()));
    cols.push(("explanation_scale".into(), Arc::new(scale)));
    cols.push(("base_value".into(), f64s(&|s| s.explanation.base)));
    for r in 0..top_k.min(d) {
        let feature = rows.iter().map(|s| frame.names[s.order[r]].as_str());
        cols.push((format!("reason{}_feature", r + 1), Arc::new(StringArray::from_iter_values(feature))));
        let value = rows.iter().enumerate().map(|(i, s)| {
            let v = frame.row(i)[s.order[r]];
            (!v.is_nan()).then_some(v)
        });
        cols.push((format!("reason{}_value", r + 1), Arc::new(value.collect::<Float64Array>())));
        cols.push((format!("reason{}_contribution", r + 1), f64s(&|s| s.explanation.contributions[s.order[r]])));
    }
    cols
}

/// A level as a column suffix: 0.9 → `90`, 0.975 → `97_5`.
pub fn level_name(level: f64) -> String {
    let pct = (level * 1000.0).round() / 10.0;
    format!("{pct}").replace('.', "_")
}
