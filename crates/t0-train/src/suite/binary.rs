//! Binary labels (a threshold crossed, an event within the horizon): weight of evidence, the
//! calibrated gate and their stack, scored by ROC AUC on validation.

use std::collections::BTreeMap;

use t0_core::Result;

use super::{Gathered, Job, Skip, curves_of};
use crate::metrics as m;
use crate::models::gate::Gate;
use crate::models::gbdt::{GbdtConfig, Objective};
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
        let g = Gate::fit(&dt, &dv, &dc).map_err(|e| job.fit_err("gate", e))?;
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
        got.scored.push(job.scored(model, fit, (vp, tp), (vm, tm), ("roc_auc", true), curves));
    }
    Ok(Ok(()))
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
