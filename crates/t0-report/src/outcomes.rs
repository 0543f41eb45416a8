//! How the latest score run's predictions met what happened: the predictions file joined on
//! (entity, T0) with the latest certified labels (both checked against their content hashes),
//! per label kind — predicted against actual and residuals for values, a reliability diagram
//! for binary labels, Kaplan–Meier against the mean predicted survival for time-to-event
//! labels — and the top contributions of a few scored rows.

use std::collections::BTreeMap;

use arrow::array::{Array, BooleanArray, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use t0_core::{Result, Stage};

use crate::plot::{self, Series};
use crate::sections::{Built, Reader, table};
use crate::{Part, Section};

/// One column of every batch, as optional values.
fn column<T>(batches: &[RecordBatch], name: &str, get: impl Fn(&dyn Array, usize) -> Option<T>) -> Vec<Option<T>> {
    let mut out = Vec::new();
    for b in batches {
        match b.column_by_name(name) {
            Some(c) => out.extend((0..c.len()).map(|i| if c.is_null(i) { None } else { get(c.as_ref(), i) })),
            None => out.extend(std::iter::repeat_with(|| None).take(b.num_rows())),
        }
    }
    out
}

pub(crate) fn f64s(b: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    column(b, name, |c, i| c.as_any().downcast_ref::<Float64Array>().map(|a| a.value(i)))
}

pub(crate) fn strs(b: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    column(b, name, |c, i| c.as_any().downcast_ref::<StringArray>().map(|a| a.value(i).to_string()))
}

pub(crate) fn bools(b: &[RecordBatch], name: &str) -> Vec<Option<bool>> {
    column(b, name, |c, i| c.as_any().downcast_ref::<BooleanArray>().map(|a| a.value(i)))
}

pub(crate) fn times(b: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    column(b, name, |c, i| c.as_any().downcast_ref::<TimestampMicrosecondArray>().map(|a| a.value(i)))
}

/// A label value of a labels row: a number, or a boolean as 0/1.
fn label_values(b: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    let numbers = f64s(b, name);
    if numbers.iter().any(Option::is_some) {
        return numbers;
    }
    bools(b, name).into_iter().map(|v| v.map(|x| f64::from(u8::from(x)))).collect()
}

/// The scored rows of one label with what happened: (prediction row index, actual, event).
struct Joined {
    kind: String,
    rows: Vec<(usize, f64, Option<bool>)>,
}

/// The latest score run's predictions and the latest labels, joined per label.
struct Outcomes {
    score_run: String,
    predictions: Vec<RecordBatch>,
    by_label: BTreeMap<String, Joined>,
}

fn outcomes(r: &Reader) -> Result<Option<Outcomes>> {
    let (Some(score), Some(labels)) = (r.latest(Stage::Score)?, r.latest(Stage::Labels)?) else { return Ok(None) };
    let predictions = r.parquet(&score, "predictions")?;
    let truth = r.parquet(&labels, "labels")?;
    let key = |e: &Option<String>, t: &Option<i64>| e.clone().zip(*t);
    let (ents, t0s) = (strs(&truth, "entity_id"), times(&truth, "t0"));
    let index: BTreeMap<(String, i64), usize> =
        ents.iter().zip(&t0s).enumerate().filter_map(|(i, (e, t))| key(e, t).map(|k| (k, i))).collect();
    let events = bools(&truth, "event");
    let (p_ent, p_t0) = (strs(&predictions, "entity_id"), times(&predictions, "t0"));
    let (p_label, p_kind) = (strs(&predictions, "label"), strs(&predictions, "label_kind"));
    let mut values: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut by_label: BTreeMap<String, Joined> = BTreeMap::new();
    for i in 0..p_ent.len() {
        let (Some(label), Some(kind)) = (&p_label[i], &p_kind[i]) else { continue };
        let Some(&j) = key(&p_ent[i], &p_t0[i]).and_then(|k| index.get(&k)) else { continue };
        let actual = values.entry(label.clone()).or_insert_with(|| label_values(&truth, label))[j];
        let Some(actual) = actual else { continue };
        let joined = by_label.entry(label.clone()).or_insert_with(|| Joined { kind: kind.clone(), rows: Vec::new() });
        joined.rows.push((i, actual, events[j]));
    }
    Ok(Some(Outcomes { score_run: score.manifest.run_id.clone(), predictions, by_label }))
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

/// Predicted against actual, and the residuals, for each value label; the reliability
/// diagram for each binary label; Kaplan–Meier against predicted survival for each
/// time-to-event label.
pub(crate) fn predicted(r: &Reader) -> Result<Built> {
    let Some(o) = outcomes(r)? else {
        return Ok(Built::Empty("outcomes", "no score run or no labels yet".into()));
    };
    let pred = f64s(&o.predictions, "prediction");
    let mut parts = Vec::new();
    for (label, j) in &o.by_label {
        let part = match j.kind.as_str() {
            "value" | "flow" => value_parts(label, j, &pred)?,
            "binary" => vec![reliability(label, j, &pred)?],
            "time_to_event" => survival(label, j, &o.predictions)?.into_iter().collect(),
            _ => Vec::new(),
        };
        parts.extend(part);
    }
    if parts.is_empty() {
        return Ok(Built::Empty("outcomes", format!("no prediction of score run {} has matured yet", o.score_run)));
    }
    Ok(Built::Section(Section {
        id: "outcomes",
        title: "Predictions against outcomes",
        intro: format!(
            "Score run {}: each prediction whose label has matured, against what happened (the latest certified labels).",
            o.score_run
        ),
        parts,
    }))
}

fn value_parts(label: &str, j: &Joined, pred: &[Option<f64>]) -> Result<Vec<Part>> {
    let pts: Vec<(f64, f64)> = j.rows.iter().filter_map(|(i, y, _)| pred[*i].map(|p| (p, *y))).collect();
    let rows = pts.iter().map(|(p, y)| vec![fmt(*p), fmt(*y), fmt(y - p)]).collect();
    let head = ["predicted", "actual", "residual"];
    let scatter = plot::scatter(
        &format!("{label}: predicted against actual"),
        ("predicted", "actual"),
        &[Series { name: label.into(), points: pts.clone() }],
        true,
    )?;
    let residuals = plot::scatter(
        &format!("{label}: residual against predicted"),
        ("predicted", "actual − predicted"),
        &[Series { name: label.into(), points: pts.iter().map(|(p, y)| (*p, y - p)).collect() }],
        false,
    )?;
    Ok(vec![
        Part::Plot { svg: scatter, table: table(&head, rows) },
        Part::Plot {
            svg: residuals,
            table: table(&["rows", "mean residual", "mean |residual|"], vec![summary_row(&pts)]),
        },
    ])
}

fn summary_row(pts: &[(f64, f64)]) -> Vec<String> {
    let n = pts.len().max(1) as f64;
    let mean = pts.iter().map(|(p, y)| y - p).sum::<f64>() / n;
    let abs = pts.iter().map(|(p, y)| (y - p).abs()).sum::<f64>() / n;
    vec![pts.len().to_string(), fmt(mean), fmt(abs)]
}

/// The reliability curve of (predicted probability, outcome 0/1) pairs over ten equal-width
/// bins, as scikit-learn's `calibration_curve(strategy="uniform")` bins them (a probability on
/// an edge falls in the lower bin): per non-empty bin (bin, mean predicted, observed share,
/// rows).
pub(crate) fn reliability_curve(pairs: &[(f64, f64)]) -> Vec<(usize, f64, f64, usize)> {
    let edges: Vec<f64> = (1..10).map(|k| f64::from(k) * 0.1).collect();
    let mut bins = [(0.0_f64, 0.0_f64, 0_usize); 10];
    for (p, y) in pairs {
        let b = edges.iter().filter(|e| **e < *p).count();
        bins[b].0 += p;
        bins[b].1 += y;
        bins[b].2 += 1;
    }
    bins.iter().enumerate().filter(|b| b.1.2 > 0).map(|(k, b)| (k, b.0 / b.2 as f64, b.1 / b.2 as f64, b.2)).collect()
}

/// Ten equal-width bins of the predicted probability: mean predicted against the share that
/// happened.
fn reliability(label: &str, j: &Joined, pred: &[Option<f64>]) -> Result<Part> {
    let pairs: Vec<(f64, f64)> = j.rows.iter().filter_map(|(i, y, _)| pred[*i].map(|p| (p, *y))).collect();
    let used = reliability_curve(&pairs);
    let svg = plot::scatter(
        &format!("{label}: reliability"),
        ("mean predicted probability", "observed share"),
        &[Series { name: label.into(), points: used.iter().map(|b| (b.1, b.2)).collect() }],
        true,
    )?;
    let rows = used
        .iter()
        .map(|b| {
            vec![
                format!("{:.1}–{:.1}", b.0 as f64 / 10.0, (b.0 + 1) as f64 / 10.0),
                fmt(b.1),
                fmt(b.2),
                b.3.to_string(),
            ]
        })
        .collect();
    Ok(Part::Plot { svg, table: table(&["bin", "mean predicted", "observed", "rows"], rows) })
}

/// Kaplan–Meier of the scored rows' observed times (event or censored) against the mean of
/// the predicted survival at the horizons the predictions carry (`s_at_<h>h` columns).
fn survival(label: &str, j: &Joined, predictions: &[RecordBatch]) -> Result<Option<Part>> {
    let obs: Vec<(f64, bool)> = j.rows.iter().map(|(_, t, e)| (*t, e.unwrap_or(false))).collect();
    let mut km = vec![(0.0, 1.0)];
    for (t, s) in kaplan_meier(&obs) {
        // A step: the curve holds until the event, then drops.
        km.push((t, km.last().map_or(1.0, |p| p.1)));
        km.push((t, s));
    }
    let columns: Vec<(f64, String)> = predictions
        .first()
        .map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            n.strip_prefix("s_at_")?.strip_suffix('h')?.replace('_', ".").parse().ok().map(|h| (h, n.clone()))
        })
        .collect();
    let mut predicted = vec![(0.0, 1.0)];
    for (h, name) in &columns {
        let s = f64s(predictions, name);
        let vals: Vec<f64> = j.rows.iter().filter_map(|(i, _, _)| s[*i]).collect();
        if !vals.is_empty() {
            predicted.push((*h, vals.iter().sum::<f64>() / vals.len() as f64));
        }
    }
    if obs.is_empty() {
        return Ok(None);
    }
    let km_at = |h: f64| km.iter().take_while(|(t, _)| *t <= h).last().map_or(1.0, |p| p.1);
    let svg = plot::lines(
        &format!("{label}: Kaplan–Meier against mean predicted survival"),
        ("hours", "survival"),
        &[
            Series { name: "Kaplan–Meier".into(), points: km.clone() },
            Series { name: "predicted".into(), points: predicted.clone() },
        ],
        false,
    )?;
    let rows = predicted.iter().skip(1).map(|(h, p)| vec![fmt(*h), fmt(km_at(*h)), fmt(*p)]).collect();
    Ok(Some(Part::Plot { svg, table: table(&["horizon (hours)", "Kaplan–Meier", "mean predicted"], rows) }))
}

/// The Kaplan–Meier estimate of (time, event) observations: the survival just after each
/// distinct event time, in time order. Tied events count together (1 − d/n); a row censored at
/// an event's time is still at risk then.
pub(crate) fn kaplan_meier(obs: &[(f64, bool)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, bool)> = obs.iter().filter(|o| o.0.is_finite()).copied().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    let (mut at_risk, mut s, mut i) = (sorted.len() as f64, 1.0, 0);
    while i < sorted.len() {
        let t = sorted[i].0;
        let same = sorted[i..].iter().take_while(|o| o.0 == t).count();
        let deaths = sorted[i..i + same].iter().filter(|o| o.1).count() as f64;
        if deaths > 0.0 {
            s *= 1.0 - deaths / at_risk;
            out.push((t, s));
        }
        at_risk -= same as f64;
        i += same;
    }
    out
}

/// One reason column pair of the predictions: the feature and its contribution, per row.
type Reason = (Vec<Option<String>>, Vec<Option<f64>>);

/// The three largest contributions of the first scored rows of each label, on the scale the
/// model explains (log-time, log-odds, the value).
pub(crate) fn contributions(r: &Reader) -> Result<Built> {
    let Some(score) = r.latest(Stage::Score)? else {
        return Ok(Built::Empty("contributions", "no score run yet".into()));
    };
    let b = r.parquet(&score, "predictions")?;
    let (ents, labels, scale) = (strs(&b, "entity_id"), strs(&b, "label"), strs(&b, "explanation_scale"));
    let (base, output) = (f64s(&b, "base_value"), f64s(&b, "explanation_output"));
    let reasons: Vec<Reason> = (1..=3)
        .map(|k| (strs(&b, &format!("reason{k}_feature")), f64s(&b, &format!("reason{k}_contribution"))))
        .collect();
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    let (mut rows, mut first) = (Vec::new(), None);
    for i in 0..ents.len() {
        let (Some(label), Some(_)) = (&labels[i], &base[i]) else { continue };
        let n = shown.entry(label.clone()).or_default();
        if *n == 3 {
            continue;
        }
        *n += 1;
        let mut row = vec![label.clone(), ents[i].clone().unwrap_or_default(), scale[i].clone().unwrap_or_default()];
        row.extend([base[i], output[i]].map(|v| v.map_or_else(|| "—".into(), fmt)));
        for (f, c) in &reasons {
            row.push(match (&f[i], c[i]) {
                (Some(f), Some(c)) => format!("{f}: {c:+.4}"),
                _ => "—".into(),
            });
        }
        first.get_or_insert(i);
        rows.push(row);
    }
    let Some(i) = first else {
        return Ok(Built::Empty("contributions", format!("score run {} explained no row", score.manifest.run_id)));
    };
    let bars: Vec<(String, f64)> =
        reasons.iter().filter_map(|(f, c)| Some((format!("{} ({:+.3})", f[i].clone()?, c[i]?), c[i]?.abs()))).collect();
    let caption = format!(
        "{} {}: |contribution| on the {} scale",
        labels[i].clone().unwrap_or_default(),
        ents[i].clone().unwrap_or_default(),
        scale[i].clone().unwrap_or_default()
    );
    let svg = plot::bars(&caption, "|contribution|", &bars)?;
    Ok(Built::Section(Section {
        id: "contributions",
        title: "Top contributions",
        intro: format!(
            "Score run {}: for the first three scored rows of each label, the base value, the model's output and the three largest contributions on the scale the model explains (the sign says which way each pushed).",
            score.manifest.run_id
        ),
        parts: vec![Part::Plot {
            svg,
            table: table(&["label", "entity", "scale", "base", "output", "reason 1", "reason 2", "reason 3"], rows),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// References computed by the Python peers (lifelines' `KaplanMeierFitter`, scikit-learn's
    /// `calibration_curve`) by `tests/fixtures/peer.py` on the same data, committed.
    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/peer.json")).unwrap()
    }

    fn f(v: &serde_json::Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    #[test]
    fn kaplan_meier_matches_lifelines() {
        let fx = fixture();
        let km = &fx["kaplan_meier"];
        let obs: Vec<(f64, bool)> =
            f(&km["times"]).into_iter().zip(km["events"].as_array().unwrap().iter().map(|e| e == true)).collect();
        let ours = kaplan_meier(&obs);
        let (times, survival) = (f(&km["event_times"]), f(&km["survival"]));
        assert_eq!(ours.len(), times.len());
        for ((t, s), (rt, rs)) in ours.iter().zip(times.iter().zip(&survival)) {
            assert_eq!(t, rt);
            assert!((s - rs).abs() < 1e-12, "at {t}: {s} against lifelines' {rs}");
        }
    }

    #[test]
    fn reliability_matches_scikit_learn() {
        let fx = fixture();
        let r = &fx["reliability"];
        let pairs: Vec<(f64, f64)> = f(&r["prob"]).into_iter().zip(f(&r["y"])).collect();
        let ours = reliability_curve(&pairs);
        let (pred, obs) = (f(&r["prob_pred"]), f(&r["prob_true"]));
        assert_eq!(ours.len(), pred.len());
        for ((_, p, o, _), (rp, ro)) in ours.iter().zip(pred.iter().zip(&obs)) {
            assert!((p - rp).abs() < 1e-12 && (o - ro).abs() < 1e-12, "({p}, {o}) against ({rp}, {ro})");
        }
    }
}
