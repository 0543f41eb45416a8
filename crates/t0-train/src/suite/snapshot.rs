//! The run snapshot as bytes: configuration used, data summary, metrics, slices, leaderboard,
//! the serving model and every model, learning curves, the split and the predictions on the
//! validation and test blocks. Deterministic: maps are ordered, floats written round-trip.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray};
use serde_json::json;
use t0_core::Result;
use t0_project::Project;
use t0_project::def::SplitKind;

use super::{Built, File, GBDT_AFT, Gathered, Loaded, TIME_QUANTILES, Variant, fin};
use crate::metrics as m;
use crate::models::gbdt::{GbdtConfig, Objective};
use crate::models::ridge::RidgeConfig;
use crate::split::Block;
use crate::{
    BlockRows, Entry, Inputs, LabelRows, MODELS_PREFIX, Metrics, Model, SERVED_PREFIX, SUITE_VERSION, TrainReport,
};

/// Everything the snapshot is written from.
pub(super) struct Parts<'a> {
    pub project: &'a Project,
    pub target: Option<&'a str>,
    pub inputs: &'a Inputs,
    pub run_id: &'a str,
    pub loaded: Loaded,
    pub variants: &'a [Variant],
    pub got: Gathered,
    pub selected: BTreeMap<String, usize>,
    /// The served label's model and figures, when there is one.
    pub serving: Option<(Model, Metrics)>,
    /// Every trained label's served model, in label order.
    pub served: Vec<Model>,
    /// Every scored model in its served form, in the order of `got.scored`.
    pub models: Vec<Model>,
}

struct Files(Vec<File>);

impl Files {
    fn add(&mut self, name: impl Into<String>, output: impl Into<String>, bytes: Vec<u8>, per_entity_t0: bool) {
        self.0.push(File { name: name.into(), output: output.into(), bytes, per_entity_t0 })
    }
    fn json(&mut self, name: &str, output: &str, v: &impl serde::Serialize) -> Result<()> {
        self.add(name, output, crate::json_bytes(v)?, false);
        Ok(())
    }
}

pub(super) fn write(mut p: Parts) -> Result<Built> {
    let labels = label_rows(&p);
    for l in &labels {
        for (b, r) in &l.blocks {
            if let Some(e) = r.events.filter(|e| *e < p.project.def.train.min_events && b != "embargo") {
                p.got.warnings.push(format!(
                    "label {}: the {b} block holds {e} events in {} rows (train.min_events {}): its figures rest on few outcomes",
                    l.label, r.rows, p.project.def.train.min_events
                ));
            }
        }
    }
    let calibration = survival_calibration_warnings(&p);
    p.got.warnings.extend(calibration);
    let leaderboard = leaderboard(&p);
    let mut files = Files(Vec::new());
    files.json("config_used.json", "run.config", &config_used(&p))?;
    files.json("data_summary.json", "run.data_summary", &data_summary(&p))?;
    files.json("metrics_summary.json", "run.metrics", &metrics_summary(&p))?;
    files.json("slice_metrics.json", "run.slices", &json!(slices(&p)))?;
    files.add("leaderboard.csv", "run.leaderboard", leaderboard_csv(&leaderboard).into_bytes(), false);
    if let Some((model, _)) = &p.serving {
        files.json("model.json", "run.model", model)?;
    }
    for model in &p.served {
        files.json(&format!("served/{}.json", model.target), &format!("{SERVED_PREFIX}{}", model.target), model)?;
    }
    for (s, model) in p.got.scored.iter().zip(&p.models) {
        let id = s.id(p.variants);
        let stem = format!("{}__{id}", s.label);
        files.json(&format!("models/{stem}.json"), &format!("{MODELS_PREFIX}{}.{id}", s.label), model)?;
        if let Some(c) = &s.curves {
            files.json(&format!("curves/{stem}.json"), &format!("run.curves.{}.{id}", s.label), c)?;
        }
    }
    let frame = &p.loaded.frame;
    // One block column per label: each label is split over its own rows.
    let columns: Vec<(String, ArrayRef)> = p
        .loaded
        .splits
        .iter()
        .map(|(l, s)| {
            let blocks: Vec<&str> = s.blocks.iter().map(|b| b.as_str()).collect();
            (l.clone(), Arc::new(StringArray::from(blocks)) as ArrayRef)
        })
        .collect();
    let split =
        crate::rows_batch(&frame.entity_id, &frame.t0, columns.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())?;
    files.add("split_manifest.parquet", "run.split", t0_table::parquet_bytes(split.schema(), &[split])?, true);
    for (which, valid) in [("valid", true), ("test", false)] {
        let bytes = predictions(&p, valid)?;
        files.add(format!("predictions/{which}.parquet"), format!("run.predictions.{which}"), bytes, false);
    }
    let report = TrainReport {
        run_id: p.run_id.to_string(),
        snapshot: format!("runs/{}", p.run_id),
        metrics: p.serving.map(|(_, m)| m),
        target: p.target.map(str::to_string),
        labels,
        features: frame.names.len(),
        skipped_columns: p.loaded.skipped_columns,
        leaderboard,
        skipped_labels: p.got.skipped_labels,
        warnings: p.got.warnings,
        replaces: None,
    };
    Ok(Built { files: files.0, report })
}

fn leaderboard(p: &Parts) -> Vec<Entry> {
    let scored = &p.got.scored;
    let kind = |l: &str| p.project.label(l).map(|l| l.kind_name()).unwrap_or("").to_string();
    let baselines = p.got.baselines.iter().map(|b| {
        let get = |m: &BTreeMap<String, f64>| m.get("rmse").copied().filter(|v| v.is_finite());
        Entry {
            label: b.label.clone(),
            label_kind: kind(&b.label),
            model: b.model.clone(),
            fusion: super::NO_FUSION.into(),
            metric: "rmse".into(),
            valid: get(&b.valid),
            test: get(&b.test),
            selected: false,
        }
    });
    (0..scored.len())
        .map(|k| {
            let s = &scored[k];
            let (v, t) = s.primary();
            Entry {
                label: s.label.clone(),
                label_kind: p.project.label(&s.label).map(|l| l.kind_name()).unwrap_or("").to_string(),
                model: s.model.clone(),
                fusion: p.variants[s.variant].fusion.clone(),
                metric: s.select_by.0.to_string(),
                valid: v.is_finite().then_some(v),
                test: t.is_finite().then_some(t),
                selected: p.selected.get(&s.label) == Some(&k),
            }
        })
        .chain(baselines)
        .collect()
}

fn leaderboard_csv(leaderboard: &[Entry]) -> String {
    let mut csv = String::from("label,label_kind,model,fusion,metric,valid,test,selected\n");
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for e in leaderboard {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.label,
            e.label_kind,
            e.model,
            e.fusion,
            e.metric,
            num(e.valid),
            num(e.test),
            e.selected
        ));
    }
    csv
}

/// A selected time-to-event model whose survival is not calibrated on a block (D-calibration
/// rejects uniformity at 5 %, or the mean predicted S(t) misses Kaplan–Meier's by over 0.1)
/// is said, with the figures: ranking alone hides it.
fn survival_calibration_warnings(p: &Parts) -> Vec<String> {
    let mut out = Vec::new();
    for (label, &k) in &p.selected {
        let s = &p.got.scored[k];
        for (block, mm) in [("validation", &s.valid_metrics), ("test", &s.test_metrics)] {
            let (Some(pv), Some(gap)) = (mm.get("d_calibration_p"), mm.get("km_gap_max")) else { continue };
            if *pv < 0.05 || *gap > 0.1 {
                let at: Vec<String> = p
                    .got
                    .survival_times
                    .iter()
                    .filter_map(|t| {
                        let (a, b) =
                            (mm.get(&format!("s_predicted_at_{t}"))?, mm.get(&format!("s_kaplan_meier_at_{t}"))?);
                        Some(format!("S({t}) {a:.3} vs {b:.3}"))
                    })
                    .collect();
                out.push(format!(
                    "label {label}, model {}: survival not calibrated on the {block} block (D-calibration p {pv:.3}; predicted vs Kaplan-Meier {})",
                    s.id(p.variants),
                    at.join(", ")
                ));
            }
        }
    }
    out
}

/// Each label's rows (and events) per block of its own split.
fn label_rows(p: &Parts) -> Vec<LabelRows> {
    let frame = &p.loaded.frame;
    p.project
        .def
        .labels
        .iter()
        .map(|l| {
            let blocks = p.loaded.blocks(l.name());
            let flag = l.has_events().then(|| frame.label(l.columns().last().expect("a column")).expect("read"));
            let mut out = BTreeMap::new();
            for b in [Block::Train, Block::Calibration, Block::Validation, Block::Test, Block::Embargo] {
                let rows: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i] == b).collect();
                let events = flag.map(|f| rows.iter().filter(|&&i| f[i].is_some_and(|v| v > 0.5)).count());
                out.insert(b.as_str().to_string(), BlockRows { rows: rows.len(), events });
            }
            LabelRows { label: l.name().to_string(), kind: l.kind_name().to_string(), blocks: out }
        })
        .collect()
}

fn data_summary(p: &Parts) -> serde_json::Value {
    let frame = &p.loaded.frame;
    let iso = |t: Option<&i64>| t.and_then(|t| chrono::DateTime::from_timestamp_micros(*t)).map(|d| d.to_rfc3339());
    let labels: Vec<serde_json::Value> = label_rows(p)
        .into_iter()
        .map(|l| {
            let split = &p.loaded.splits[&l.label];
            let range = |b: &str| {
                let ts: Vec<i64> =
                    (0..split.blocks.len()).filter(|&i| split.blocks[i].as_str() == b).map(|i| frame.t0[i]).collect();
                json!({"first_t0": iso(ts.first()), "last_t0": iso(ts.last())})
            };
            let blocks: BTreeMap<String, serde_json::Value> = l
                .blocks
                .iter()
                .map(|(b, r)| {
                    let mut v = range(b);
                    v["rows"] = json!(r.rows);
                    v["events"] = json!(r.events);
                    (b.clone(), v)
                })
                .collect();
            json!({
                "name": l.label,
                "kind": l.kind,
                "known": split.blocks.iter().filter(|b| **b != Block::Unlabelled).count(),
                "embargo": split.horizons.iter().map(|h| String::from(h.clone())).collect::<Vec<_>>(),
                "split_error": split.error,
                "blocks": blocks,
            })
        })
        .collect();
    json!({
        "rows": frame.rows(),
        "features": frame.names.len(),
        "fusion_variants": p.variants.iter().map(|v| json!({"fusion": v.fusion, "features": v.names.len()})).collect::<Vec<_>>(),
        "skipped_columns": p.loaded.skipped_columns,
        "split": match p.project.def.train.split { SplitKind::Chronological => "chronological", SplitKind::Random => "random" },
        "labels": labels,
        "skipped_labels": p.got.skipped_labels,
        "survival_times": p.got.survival_times,
        "time_quantiles": TIME_QUANTILES,
        "gate_thresholds": p.got.gates,
        "warnings": p.got.warnings,
    })
}

fn config_used(p: &Parts) -> serde_json::Value {
    let project = p.project;
    json!({
        "suite_version": SUITE_VERSION,
        "code_version": t0_core::CODE_VERSION,
        "project": project.name(),
        "project_hash": project.hash,
        "target": p.target,
        "train": project.def.train,
        "features": project.def.features,
        "models": {
            "ridge": RidgeConfig::default(),
            "gbdt_squared": GbdtConfig::new(Objective::Squared),
            "gbdt_logistic": GbdtConfig::new(Objective::Logistic),
            "gbdt_aft": GbdtConfig::new(GBDT_AFT),
            "aft_penalties": super::AFT_PENALTIES,
            "stack_folds": project.def.train.folds,
            "stack_bases": {"value": ["ridge", "gbdt-squared"], "binary": ["woe", "gbdt-logistic"],
                            "time_to_event": ["aft-weibull", "gbdt-aft-lognormal"]},
            "stack_meta": {"value": "non-negative least squares", "binary": "non-negative logistic regression on logits",
                           "time_to_event": "log-normal AFT on the bases' locations"},
        },
        "certify_run": p.inputs.cert.manifest.run_id,
        "embed_run": p.inputs.emb.as_ref().map(|e| e.manifest.run_id.clone()),
        "run_id": p.run_id,
    })
}

fn metrics_summary(p: &Parts) -> BTreeMap<String, BTreeMap<String, serde_json::Value>> {
    let mut out: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    let conv = |mm: &BTreeMap<String, f64>| mm.iter().map(|(k, v)| (k.clone(), fin(*v))).collect::<BTreeMap<_, _>>();
    for s in &p.got.scored {
        out.entry(s.label.clone())
            .or_default()
            .insert(s.id(p.variants), json!({"valid": conv(&s.valid_metrics), "test": conv(&s.test_metrics)}));
    }
    for b in &p.got.baselines {
        out.entry(b.label.clone())
            .or_default()
            .insert(b.model.clone(), json!({"valid": conv(&b.valid), "test": conv(&b.test)}));
    }
    out
}

/// Slices by modality presence (fused `has_<modality>` flags): the target's models on test.
fn slices(p: &Parts) -> Vec<serde_json::Value> {
    let frame = &p.loaded.frame;
    let Some(target) = p.target else { return Vec::new() };
    let ycol = frame.label(target).expect("target column");
    let mut slices = Vec::new();
    for (j, fname) in frame.names.iter().enumerate() {
        let Some(modality) = fname.strip_prefix("has_").and_then(|r| r.strip_suffix("=true")) else { continue };
        for s in p.got.scored.iter().filter(|s| s.label == target) {
            for present in [true, false] {
                let idx: Vec<usize> =
                    (0..s.test_rows.len()).filter(|&k| (frame.row(s.test_rows[k])[j] == 1.0) == present).collect();
                if idx.is_empty() {
                    continue;
                }
                let pr: Vec<f64> = idx.iter().map(|&k| s.test_pred[k]).collect();
                let y: Vec<f64> = idx.iter().map(|&k| ycol[s.test_rows[k]].expect("present")).collect();
                slices.push(json!({"label": target, "model": s.model, "fusion": p.variants[s.variant].fusion, "modality": modality, "present": present,
                                   "rows": idx.len(), "rmse": fin(m::rmse(&pr, &y)), "mae": fin(m::mae(&pr, &y))}));
            }
        }
    }
    slices
}

/// Every model's predictions on the validation (or test) block, one row per (model, row),
/// with the time quantiles and S(t) of time-to-event models.
fn predictions(p: &Parts, valid: bool) -> Result<Vec<u8>> {
    let frame = &p.loaded.frame;
    let times = &p.got.survival_times;
    let (mut ids, mut t0s, mut lab, mut mdl, mut fus, mut ys, mut ps) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut events: Vec<Option<bool>> = Vec::new();
    let mut surv_cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); TIME_QUANTILES.len() + times.len()];
    for s in &p.got.scored {
        let (rows, pred, surv): (&[usize], &[f64], _) = if valid {
            (&s.valid_rows, &s.valid_pred, &s.valid_surv)
        } else {
            (&s.test_rows, &s.test_pred, &s.test_surv)
        };
        let ycol = frame.label(&s.label).expect("label");
        // A time-to-event row carries its event flag (false: censored).
        let flag = match p.project.label(&s.label) {
            Some(l @ t0_project::LabelKind::TimeToEvent { .. }) => frame.label(&l.columns()[1]),
            _ => None,
        };
        for (k, &i) in rows.iter().enumerate() {
            events.push(flag.and_then(|f| f[i]).map(|v| v > 0.5));
            ids.push(frame.entity_id[i].clone());
            t0s.push(frame.t0[i]);
            lab.push(s.label.clone());
            mdl.push(s.model.clone());
            fus.push(p.variants[s.variant].fusion.clone());
            ys.push(ycol[i]);
            ps.push(pred[k]);
            for (c, col) in surv_cols.iter_mut().enumerate() {
                col.push(surv.as_ref().and_then(|v: &Vec<Vec<f64>>| v[k].get(c).copied()));
            }
        }
    }
    let mut cols: Vec<(String, ArrayRef)> = vec![
        ("label".into(), Arc::new(StringArray::from(lab))),
        ("model".into(), Arc::new(StringArray::from(mdl))),
        ("fusion".into(), Arc::new(StringArray::from(fus))),
        ("y".into(), Arc::new(Float64Array::from(ys))),
        ("prediction".into(), Arc::new(Float64Array::from(ps))),
        ("event".into(), Arc::new(BooleanArray::from(events))),
    ];
    let names = TIME_QUANTILES
        .iter()
        .map(|q| format!("time_q{:02}", (q * 100.0).round() as u32))
        .chain(times.iter().map(|t| format!("s_at_{t}")));
    for (nm, col) in names.zip(surv_cols) {
        cols.push((nm, Arc::new(Float64Array::from(col))));
    }
    let batch = crate::rows_batch(&ids, &t0s, cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())?;
    t0_table::parquet_bytes(batch.schema(), &[batch])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaderboard_csv_leaves_undefined_metrics_empty() {
        let e = |valid, selected| Entry {
            label: "y".into(),
            label_kind: "value".into(),
            model: "ridge".into(),
            fusion: "none".into(),
            metric: "rmse".into(),
            valid,
            test: Some(0.5),
            selected,
        };
        let csv = leaderboard_csv(&[e(Some(1.25), true), e(None, false)]);
        assert_eq!(
            csv,
            "label,label_kind,model,fusion,metric,valid,test,selected\ny,value,ridge,none,rmse,1.25,0.5,true\ny,value,ridge,none,rmse,,0.5,false\n"
        );
    }
}
