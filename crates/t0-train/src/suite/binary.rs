//! Binary labels (a threshold crossed, an event within the horizon): weight of evidence, the
//! calibrated gate and their stack, scored by ROC AUC on validation.

use std::collections::BTreeMap;

use t0_core::Result;

use super::{Gathered, Job, Skip, curves_of};
use crate::head::Head;
use crate::metrics as m;
use crate::models::gate::{self, best_f1_threshold};
use crate::models::gbdt::{GbdtConfig, Objective};
use crate::models::isotonic::Isotonic;
use crate::models::stack::{Base, Stack, StackConfig};
use crate::models::woe::{Woe, WoeConfig};
use crate::models::{Design, Fitted, Learner, Target};

pub(super) fn train(job: &Job, got: &mut Gathered) -> Result<std::result::Result<(), Skip>> {
    let ctx = job.ctx;
    let y = Target::Binary(job.y());
    let (dt, dc, dv, dte) =
        (ctx.design(&y, &job.tr), ctx.design(&y, &job.ca), ctx.design(&y, &job.va), ctx.design(&y, &job.te));
    let ybin = |d: &Design| d.y.real().expect("binary").to_vec();
    let classes = ybin(&dt).iter().filter(|v| **v > 0.5).count();
    if classes == 0 || classes == dt.rows() {
        let msg = format!("label {}: one class only in the {} training rows", job.name, dt.rows());
        return Ok(Err(Skip { msg, refuse: true }));
    }
    let mut fitted: Vec<(String, Fitted, Option<serde_json::Value>)> = Vec::new();
    if job.wants("woe") {
        let w = Woe::fit(&WoeConfig { bins: 5 }, &dt, None).map_err(|e| job.fit_err("woe", e))?;
        fitted.push(("woe".into(), Fitted::Woe(w), None));
    }
    if job.wants("gate") {
        let g = gate::fit(&dt, &dv, &dc).map_err(|e| job.fit_err("gate", e))?;
        let curves = curves_of(&g.model);
        fitted.push(("gate".into(), Fitted::Gate(Box::new(g)), Some(curves)));
    }
    if job.wants("stack") {
        let bases = vec![Base::Woe(WoeConfig { bins: 5 }), Base::Gbdt(GbdtConfig::new(Objective::Logistic))];
        let cfg = StackConfig { folds: job.stack_folds(&job.tr), bases, meta_aft: None };
        match Stack::fit(&cfg, &dt, Some(&dv)) {
            Ok(s) => fitted.push(("stack".into(), Fitted::Stack(s), None)),
            Err(e) => got.warnings.push(job.no_stack(e)),
        }
    }
    for (model, fit, curves) in fitted {
        // The gate's prediction is its calibrated probability.
        let prob = |d: &Design| -> Vec<f64> { (0..d.rows()).map(|i| fit.predict(d.row(i))).collect() };
        let (vp, tp) = (prob(&dv), prob(&dte));
        let gate = match &fit {
            Fitted::Gate(g) => Some(g.threshold),
            _ => None,
        };
        let mut thresholds = job.thresholds.to_vec();
        if let Some(t) = gate {
            thresholds.push(t);
            got.gates.entry(job.name.clone()).or_default().insert(job.fusion.to_string(), t);
        }
        let mut tm = classification_metrics(&tp, &ybin(&dte), &thresholds);
        let mut vm = classification_metrics(&vp, &ybin(&dv), &thresholds);
        if let Some(t) = gate {
            for (mm, p, yy) in [(&mut tm, &tp, ybin(&dte)), (&mut vm, &vp, ybin(&dv))] {
                let (pr, rc, f1) = m::prf(p, &yy, t);
                mm.insert("gate_threshold".into(), t);
                mm.insert("gate_precision".into(), pr);
                mm.insert("gate_recall".into(), rc);
                mm.insert("gate_f1".into(), f1);
            }
        }
        let head = binary_head(&fit, &dc);
        let mut s = job.scored(model, fit, (vp, tp), (vm, tm), ("roc_auc", true), curves);
        s.head = head;
        got.scored.push(s);
    }
    Ok(Ok(()))
}

/// How a binary model serves: the gate calibrates itself and keeps its threshold; any other
/// model's probability is isotonic-calibrated on the calibration block and decided at the
/// best-F1 threshold of the calibrated probabilities there.
fn binary_head(fit: &Fitted, dc: &Design) -> Head {
    if let Fitted::Gate(g) = fit {
        return Head::Binary { calibration: None, threshold: g.threshold };
    }
    let y = dc.y.real().expect("binary");
    let raw: Vec<f64> = (0..dc.rows()).map(|i| fit.predict(dc.row(i))).collect();
    let calibration = Isotonic::fit(&raw, y, 0.0, 1.0);
    let p: Vec<f64> = raw.iter().map(|p| calibration.as_ref().map_or(*p, |c| c.predict(*p))).collect();
    Head::Binary { calibration, threshold: best_f1_threshold(&p, y) }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One feature 0..n; positive when x ≥ `cut`, and on every `every`-th row besides.
    fn design(n: usize, cut: f64, every: usize) -> Design {
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let y = x.iter().enumerate().map(|(i, v)| if *v >= cut || i % every == 0 { 1.0 } else { 0.0 }).collect();
        Design { x, d: 1, y: Target::Binary(y) }
    }

    #[test]
    fn a_model_other_than_the_gate_serves_a_probability_calibrated_on_the_calibration_block() {
        // WOE learns the training block's rates; the calibration block has more positives, so
        // only a calibration fitted there matches its rate (isotonic keeps the block's mean).
        let (dt, dc) = (design(400, 300.0, 7), design(400, 200.0, 3));
        let woe = Fitted::Woe(Woe::fit(&WoeConfig { bins: 5 }, &dt, None).unwrap());
        let Head::Binary { calibration: Some(c), threshold } = binary_head(&woe, &dc) else { panic!("calibrated") };
        let y = dc.y.real().unwrap();
        let rate = y.iter().sum::<f64>() / y.len() as f64;
        let served: Vec<f64> = (0..dc.rows()).map(|i| c.predict(woe.predict(dc.row(i)))).collect();
        let raw_mean = (0..dc.rows()).map(|i| woe.predict(dc.row(i))).sum::<f64>() / y.len() as f64;
        let mean = served.iter().sum::<f64>() / y.len() as f64;
        assert!((mean - rate).abs() < 1e-12, "calibrated mean {mean} vs rate {rate}");
        assert!((raw_mean - rate).abs() > 0.05, "the raw model was already calibrated: {raw_mean} vs {rate}");
        // The threshold is the best F1 of the calibrated probabilities there.
        let f1 = |t: f64| m::prf(&served, y, t).2;
        assert!(served.iter().all(|t| f1(*t) <= f1(threshold) + 1e-15), "threshold {threshold}");
        // The gate keeps its own calibration and threshold.
        let dv = design(200, 150.0, 7);
        let gate = gate::fit(&dt, &dv, &dc).unwrap();
        let t = gate.threshold;
        assert_eq!(binary_head(&Fitted::Gate(Box::new(gate)), &dc), Head::Binary { calibration: None, threshold: t });
    }
}
