//! Value labels (a number at the horizon, or a flow over it): ridge, a squared-loss GBDT and
//! their stack, scored by RMSE on validation.

use t0_core::Result;

use super::{Gathered, Job, curves_of, regression_metrics};
use crate::models::gbdt::{Gbdt, GbdtConfig, Objective};
use crate::models::ridge::{Ridge, RidgeConfig};
use crate::models::stack::{Base, Stack, StackConfig};
use crate::models::{Fitted, Learner, Target};

pub(super) fn train(job: &Job, got: &mut Gathered) -> Result<()> {
    let ctx = job.ctx;
    let y = Target::Real(job.y());
    let (dt, dv, dte) = (ctx.design(&y, &job.tr), ctx.design(&y, &job.va), ctx.design(&y, &job.te));
    let transform = job.label.transform();
    let mut fitted: Vec<(String, Fitted, Option<serde_json::Value>)> = Vec::new();
    if job.wants("ridge") {
        let r = Ridge::fit(&RidgeConfig::default(), &dt, Some(&dv)).map_err(|e| job.fit_err("ridge", e))?;
        fitted.push(("ridge".into(), Fitted::Ridge(r), None));
    }
    let gcfg = GbdtConfig::new(Objective::Squared);
    if job.wants("gbdt") {
        let g = Gbdt::fit(&gcfg, &dt, Some(&dv)).map_err(|e| job.fit_err("gbdt", e))?;
        let curves = curves_of(&g);
        fitted.push(("gbdt-squared".into(), Fitted::Gbdt(g), Some(curves)));
    }
    if job.wants("stack") {
        let bases = vec![Base::Ridge(RidgeConfig::default()), Base::Gbdt(gcfg.clone())];
        let cfg = StackConfig { folds: job.stack_folds(&job.tr), bases, meta_aft: None };
        match Stack::fit(&cfg, &dt, Some(&dv)) {
            Ok(s) => fitted.push(("stack".into(), Fitted::Stack(s), None)),
            Err(e) => got.warnings.push(job.no_stack(e)),
        }
    }
    let (vy, ty) = (dv.y.real().expect("real").to_vec(), dte.y.real().expect("real").to_vec());
    let (vt, tt) = (job.t0s(&job.va), job.t0s(&job.te));
    for (model, fit, curves) in fitted {
        let vp: Vec<f64> = (0..dv.rows()).map(|i| fit.predict(dv.row(i))).collect();
        let tp: Vec<f64> = (0..dte.rows()).map(|i| fit.predict(dte.row(i))).collect();
        let metrics = (regression_metrics(&vp, &vy, &vt, transform), regression_metrics(&tp, &ty, &tt, transform));
        got.scored.push(job.scored(model, fit, (vp, tp), metrics, ("rmse", false), curves));
    }
    if job.variant == 0 {
        persistence(job, (&vy, &ty), got);
    }
    Ok(())
}

/// "Nothing changes" on the job's validation and test rows: the label's last value (or last
/// window) known at T0, from the labels file; the training mean where nothing was known. On
/// the leaderboard beside the models, never selected: a model that does not beat it says so.
fn persistence(job: &Job, (vy, ty): (&[f64], &[f64]), got: &mut Gathered) {
    let Some(p) = job.frame.label(&format!("{}{}", t0_certify::labels::PERSIST, job.name)) else { return };
    let y = job.y();
    let mean = job.tr.iter().map(|&i| y[i]).sum::<f64>() / job.tr.len().max(1) as f64;
    let pred = |rows: &[usize]| rows.iter().map(|&i| p[i].unwrap_or(mean)).collect::<Vec<f64>>();
    let (vp, tp) = (pred(&job.va), pred(&job.te));
    let transform = job.label.transform();
    let valid = regression_metrics(&vp, vy, &job.t0s(&job.va), transform);
    let test = regression_metrics(&tp, ty, &job.t0s(&job.te), transform);
    got.baselines.push(super::Baseline { label: job.name.clone(), model: "persistence".into(), valid, test });
}
