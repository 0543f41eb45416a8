//! Time-to-event labels: parametric AFT in three distributions, XGBoost-style AFT GBDT and
//! their stack, scored by Harrell's C on validation, with time quantiles and S(t) per row.
//! Training rows are censored where the calibration block begins, so no training label reaches
//! into the evaluation period.

use std::collections::BTreeMap;

use t0_core::Result;
use t0_project::def::SplitKind;

use super::{AFT_PENALTIES, Ctx, GBDT_AFT, Gathered, Job, Skip, TIME_QUANTILES, curves_of};
use crate::head::{Head, SurvivalBound};
use crate::metrics as m;
use crate::models::aft::{Aft, AftConfig};
use crate::models::dist::Dist;
use crate::models::gbdt::{Gbdt, GbdtConfig};
use crate::models::stack::{Base, Stack, StackConfig};
use crate::models::{Design, Fitted, Learner, Target};
use crate::split::Block;

/// Hours per microsecond of T0: event times are in hours.
const HOUR: f64 = 3_600_000_000.0;

pub(super) fn train(job: &Job, got: &mut Gathered) -> Result<std::result::Result<(), Skip>> {
    let ctx = job.ctx;
    let (lower, upper, censored_at_boundary) = bounds(job, got);
    let ok = |i: usize| !lower[i].is_nan();
    let (tr, va, te) = (job.rows(Block::Train, &ok), job.rows(Block::Validation, &ok), job.rows(Block::Test, &ok));
    let y = Target::Censored { lower: lower.clone(), upper: upper.clone() };
    let (dt, dv, dte) = (ctx.design(&y, &tr), ctx.design(&y, &va), ctx.design(&y, &te));
    let events = |rows: &[usize]| rows.iter().filter(|&&i| upper[i].is_finite()).count();
    if tr.len() < 20 || events(&tr) == 0 || va.len() < 2 || te.len() < 2 {
        let msg = format!(
            "label {}: {} training rows with {} events ({censored_at_boundary} censored at a block boundary): too few to train",
            job.name,
            tr.len(),
            events(&tr)
        );
        return Ok(Err(Skip { msg, refuse: false }));
    }
    if got.survival_times.is_empty() {
        let mut et: Vec<f64> = tr.iter().filter(|&&i| upper[i].is_finite()).map(|&i| lower[i]).collect();
        et.sort_by(f64::total_cmp);
        got.survival_times = [0.25, 0.5, 0.75].iter().map(|q| et[((et.len() - 1) as f64 * q) as usize]).collect();
        got.survival_times.dedup();
    }
    let train_t: Vec<f64> = tr.iter().map(|&i| lower[i]).collect();
    let train_e: Vec<bool> = tr.iter().map(|&i| upper[i].is_finite()).collect();
    let cens = m::CensoringKm::fit(&train_t, &train_e);
    let calibration = Calibration::of(job, &lower, &upper);
    // The job's validation and test rows are those with a usable time.
    let job = Job { va, te, tr, ..job.clone() };
    for (model, fit, dist, sigma, curves) in fit_models(&job, (&dt, &dv), got)? {
        let eval = Evaluation { dist, sigma, times: &got.survival_times, cens: &cens };
        let (vp, vs, vm) = eval.run(&fit, &dv);
        let (tp, ts, tm) = eval.run(&fit, &dte);
        let bound = calibration.bound(&fit, dist, sigma, ctx);
        let mut s = job.scored(model, fit, (vp, tp), (vm, tm), ("harrell_c", true), curves);
        (s.valid_surv, s.test_surv) = (Some(vs), Some(ts));
        s.head = Head::Survival { dist, sigma, times: got.survival_times.clone(), bound };
        got.scored.push(s);
    }
    Ok(Ok(()))
}

/// The calibration block's rows with a usable time: observed time, event, and censoring time
/// in hours. A censored row's censoring time is its observed time; an event row's is where
/// the block's outcomes end (the validation block's start), the end of the window in which it
/// was observed — infinite under a random split, which has no such end (conservative: rows
/// censored early drop out of the bound's calibration, events never do).
struct Calibration {
    rows: Vec<usize>,
    time: Vec<f64>,
    event: Vec<bool>,
    censor: Vec<f64>,
}

impl Calibration {
    fn of(job: &Job, lower: &[f64], upper: &[f64]) -> Calibration {
        let frame = job.frame;
        let ends = (0..job.blocks.len()).find(|&i| job.blocks[i] == Block::Validation).map(|i| frame.t0[i]);
        let rows = job.rows(Block::Calibration, &|i| !lower[i].is_nan());
        let event: Vec<bool> = rows.iter().map(|&i| upper[i].is_finite()).collect();
        let censor = rows
            .iter()
            .zip(&event)
            .map(|(&i, &e)| match (e, ends, job.split) {
                (false, ..) => lower[i],
                (true, Some(end), SplitKind::Chronological) => (end - frame.t0[i]) as f64 / HOUR,
                (true, ..) => f64::INFINITY,
            })
            .collect();
        Calibration { time: rows.iter().map(|&i| lower[i]).collect(), rows, event, censor }
    }

    /// The conformal lower bound of a fitted model, from its median on these rows.
    fn bound(&self, fit: &Fitted, dist: Dist, sigma: f64, ctx: &Ctx) -> Option<SurvivalBound> {
        let z = sigma * dist.quantile(0.5);
        let median: Vec<f64> =
            self.rows.iter().map(|&i| (fit.predict(&ctx.x[i * ctx.d..(i + 1) * ctx.d]) + z).exp()).collect();
        SurvivalBound::fit(&median, &self.time, &self.event, &self.censor)
    }
}

/// Each row's censored interval in hours, censored where the next block begins under a
/// chronological split (training rows at the calibration block, calibration rows at the
/// validation block, validation rows at the test block), so no block's outcome reaches into
/// a later one; rows with a time of 0 hours are left out (said once). NaN where the label
/// is not known.
fn bounds(job: &Job, got: &mut Gathered) -> (Vec<f64>, Vec<f64>, usize) {
    let (frame, blocks) = (job.frame, job.blocks);
    let n = frame.rows();
    let event_col = job.label.columns()[1].clone();
    let ev = frame.label(&event_col).expect("event column is read");
    let start = |b: Block| (0..n).find(|&i| blocks[i] == b).map(|i| frame.t0[i]);
    let next_start = |b: Block| match b {
        Block::Train => start(Block::Calibration),
        Block::Calibration => start(Block::Validation),
        Block::Validation => start(Block::Test),
        _ => None,
    };
    let starts: BTreeMap<Block, Option<i64>> =
        [Block::Train, Block::Calibration, Block::Validation].into_iter().map(|b| (b, next_start(b))).collect();
    let (mut lower, mut upper) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    let (mut censored_at_boundary, mut dropped) = (0, 0);
    for i in 0..n {
        let Some(mut t) = job.col[i] else { continue };
        let mut e = ev[i].unwrap_or(0.0) > 0.5;
        let boundary = starts.get(&blocks[i]).copied().flatten();
        if let (SplitKind::Chronological, Some(b)) = (job.split, boundary) {
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
    if dropped > 0 && job.variant == 0 {
        got.warnings.push(format!("label {}: {dropped} rows with a time of 0 hours left out", job.name));
    }
    (lower, upper, censored_at_boundary)
}

/// A fitted model with the distribution and scale its locations are read through.
type FitSurv = (String, Fitted, Dist, f64, Option<serde_json::Value>);

/// The parametric AFTs, the AFT GBDT and their stack the project asks for.
fn fit_models(job: &Job, (dt, dv): (&Design, &Design), got: &mut Gathered) -> Result<Vec<FitSurv>> {
    let mut fitted: Vec<FitSurv> = Vec::new();
    let aft = |dist| AftConfig { dist, penalties: AFT_PENALTIES.to_vec() };
    for dist in [Dist::Extreme, Dist::Normal, Dist::Logistic] {
        let model = format!("aft-{}", dist.name());
        if !job.wants(&model) && !job.wants("aft") {
            continue;
        }
        match Aft::fit(&aft(dist), dt, Some(dv)) {
            Ok(a) => {
                let s = a.sigma();
                fitted.push((model, Fitted::Aft(a), dist, s, None));
            }
            Err(e) => got.warnings.push(format!("label {}, model {model}, fusion {}: {e}", job.name, job.fusion)),
        }
    }
    if job.wants("gbdt") {
        let g = Gbdt::fit(&GbdtConfig::new(GBDT_AFT), dt, Some(dv)).map_err(|e| job.fit_err("gbdt-aft", e))?;
        let curves = curves_of(&g);
        fitted.push(("gbdt-aft-lognormal".into(), Fitted::Gbdt(g), Dist::Normal, 1.0, Some(curves)));
    }
    if job.wants("stack") {
        let bases = vec![Base::Aft(aft(Dist::Extreme)), Base::Gbdt(GbdtConfig::new(GBDT_AFT))];
        let cfg = StackConfig { folds: job.stack_folds(&job.tr), bases, meta_aft: Some(aft(Dist::Normal)) };
        match Stack::fit(&cfg, dt, Some(dv)) {
            Ok(s) => {
                let meta = s.aft().expect("a censored stack has a meta AFT");
                let (dist, sigma) = (meta.dist, meta.sigma());
                fitted.push(("stack".into(), Fitted::Stack(s), dist, sigma, None));
            }
            Err(e) => got.warnings.push(job.no_stack(e)),
        }
    }
    Ok(fitted)
}

/// How one model's log-time locations become quantiles, S(t) and survival metrics.
struct Evaluation<'a> {
    dist: Dist,
    sigma: f64,
    times: &'a [f64],
    cens: &'a m::CensoringKm,
}

impl Evaluation<'_> {
    /// Locations, per-row [time quantiles…, S(t)…], and the metrics on one design.
    fn run(&self, fit: &Fitted, d: &Design) -> (Vec<f64>, Vec<Vec<f64>>, BTreeMap<String, f64>) {
        let Target::Censored { lower, upper } = &d.y else { unreachable!("censored design") };
        let (dist, sigma) = (self.dist, self.sigma);
        let loc: Vec<f64> = (0..d.rows()).map(|i| fit.predict(d.row(i))).collect();
        let surv: Vec<Vec<f64>> = loc
            .iter()
            .map(|l| {
                TIME_QUANTILES
                    .iter()
                    .map(|q| (l + sigma * dist.quantile(*q)).exp())
                    .chain(self.times.iter().map(|t| dist.log_surv((t.ln() - l) / sigma).exp()))
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
        let mut met = BTreeMap::from([
            ("harrell_c".to_string(), m::harrell_c(lower, &e, &loc)),
            ("uno_c".to_string(), m::uno_c(self.cens, lower, &e, &risk, f64::INFINITY)),
            ("integrated_brier".to_string(), m::integrated_brier(self.cens, lower, &e, &s_at, self.times)),
            ("log_likelihood".to_string(), ll),
        ]);
        // Calibration, not only ranking: each row's S at its own time should be uniform
        // (D-calibration), and the mean predicted S(t) should meet Kaplan–Meier's.
        let own: Vec<f64> = (0..d.rows()).map(|i| dist.log_surv((lower[i].ln() - loc[i]) / sigma).exp()).collect();
        let (chi2, p) = m::d_calibration(&own, &e);
        met.insert("d_calibration_chi2".into(), chi2);
        met.insert("d_calibration_p".into(), p);
        let mut gap: f64 = 0.0;
        for (k, t) in self.times.iter().enumerate() {
            let predicted = s_at.iter().map(|r| r[k]).sum::<f64>() / s_at.len().max(1) as f64;
            let observed = m::kaplan_meier(lower, &e, *t);
            met.insert(format!("s_predicted_at_{t}"), predicted);
            met.insert(format!("s_kaplan_meier_at_{t}"), observed);
            gap = gap.max((predicted - observed).abs());
        }
        met.insert("km_gap_max".into(), gap);
        (loc, surv, met)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Frame;
    use crate::suite::Ctx;
    use t0_project::{LabelKind, Project};

    #[test]
    fn each_block_is_censored_where_the_next_begins_so_no_outcome_reaches_a_later_block() {
        // Eight rows 10 h apart, every one an event 100 h after its T0, of the built-in
        // project's time-to-event label.
        let project = Project::builtin();
        let label = project.def.labels.iter().find(|l| matches!(l, LabelKind::TimeToEvent { .. })).unwrap();
        let (name, flag) = (label.name().to_string(), label.columns()[1].clone());
        let t0: Vec<i64> = (0..8).map(|i| i * 10 * HOUR as i64).collect();
        let frame = Frame {
            entity_id: (0..8).map(|i| format!("e{i}")).collect(),
            t0: t0.clone(),
            x: Vec::new(),
            labels: vec![(name.clone(), vec![Some(100.0); 8]), (flag, vec![Some(1.0); 8])],
            names: Vec::new(),
        };
        use Block::*;
        let blocks = [Train, Train, Train, Train, Calibration, Validation, Test, Test];
        let ctx = Ctx { x: &[], d: 0, t0: &t0, folds: 2 };
        let job = Job {
            ctx: &ctx,
            frame: &frame,
            label,
            col: frame.label(&name).unwrap(),
            name,
            variant: 0,
            fusion: "none",
            split: SplitKind::Chronological,
            thresholds: &[],
            models: &[],
            blocks: &blocks,
            horizons: &[],
            tr: Vec::new(),
            ca: Vec::new(),
            va: Vec::new(),
            te: Vec::new(),
        };
        let (lower, upper, censored) = bounds(&job, &mut Gathered::default());
        // Training rows end where calibration begins (40 h), calibration where validation
        // begins (50 h), validation where test begins (60 h); test keeps its outcome.
        assert_eq!(lower, vec![40.0, 30.0, 20.0, 10.0, 10.0, 10.0, 100.0, 100.0]);
        assert!(upper[..6].iter().all(|u| u.is_infinite()) && upper[6..] == [100.0, 100.0], "{upper:?}");
        assert_eq!(censored, 6);
    }
}
