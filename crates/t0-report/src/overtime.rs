//! The intervals over T0: every step calibrate replayed (`calib.steps` of each calibrate run
//! of the latest judged model, in run order — a replay continues where the last one of its
//! model stopped, so together they are the model's whole replay), per value label: rolling
//! empirical coverage against the target with the level the adaptive α issued at, and the
//! served interval's width.

use std::collections::BTreeMap;

use t0_core::{Result, Stage};

use crate::Part;
use crate::outcomes::{bools, f64s, strs, times};
use crate::plot::{self, Series};
use crate::sections::{Reader, table};

/// Steps in the rolling coverage window.
pub(crate) const WINDOW: usize = 20;
/// At most this many points (and table rows) per plot: longer replays are drawn in equal
/// runs of consecutive steps, each point the run's last step.
const POINTS: usize = 100;

/// One replayed step of a label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub t0: i64,
    pub miss: bool,
    pub alpha: f64,
    pub coverage_ema: f64,
    pub halfwidth: f64,
    pub state: String,
}

/// One point of the plots: the last step of a run of `steps` consecutive steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub t0: i64,
    pub steps: usize,
    /// Share of the last [`WINDOW`] steps (fewer at the start) whose outcome was covered.
    pub rolling: f64,
    pub coverage_ema: f64,
    /// 1 − α: the level the step's interval was issued at.
    pub issued: f64,
    /// Mean full width (2 × half-width) over the run's steps.
    pub width: f64,
    pub state: String,
}

/// Fold a label's steps (T0 order) into at most [`POINTS`] points.
pub(crate) fn points(steps: &[Step]) -> Vec<Point> {
    let chunk = steps.len().div_ceil(POINTS).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < steps.len() {
        let end = (start + chunk).min(steps.len());
        let last = &steps[end - 1];
        let window = &steps[end.saturating_sub(WINDOW)..end];
        let hits = window.iter().filter(|s| !s.miss).count();
        let run = &steps[start..end];
        out.push(Point {
            t0: last.t0,
            steps: run.len(),
            rolling: hits as f64 / window.len() as f64,
            coverage_ema: last.coverage_ema,
            issued: 1.0 - last.alpha,
            width: run.iter().map(|s| 2.0 * s.halfwidth).sum::<f64>() / run.len() as f64,
            state: last.state.clone(),
        });
        start = end;
    }
    out
}

/// Each label's replayed steps, in T0 order.
type ByLabel = BTreeMap<String, Vec<Step>>;

/// Every step of the latest judged model's replays, per label; and the coverage target.
fn steps(r: &Reader) -> Result<(ByLabel, Option<f64>)> {
    let runs = r.runs(Stage::Calibrate)?;
    let Some(latest) = runs.last() else { return Ok((BTreeMap::new(), None)) };
    let model = latest.manifest.summary["model_run"].clone();
    let target = latest.manifest.summary["coverage_target"].as_f64();
    let mut by_label = ByLabel::new();
    for run in runs.iter().filter(|c| c.manifest.summary["model_run"] == model) {
        // Runs from before the trace was kept have none.
        if run.manifest.outputs.iter().all(|o| o.name != "calib.steps") {
            continue;
        }
        let b = r.parquet(run, "calib.steps")?;
        let (label, t0, miss) = (strs(&b, "label"), times(&b, "t0"), bools(&b, "miss"));
        let (alpha, ema, half, state) =
            (f64s(&b, "alpha"), f64s(&b, "coverage_ema"), f64s(&b, "halfwidth"), strs(&b, "state"));
        for i in 0..label.len() {
            let (Some(l), Some(t0)) = (&label[i], t0[i]) else { continue };
            by_label.entry(l.clone()).or_default().push(Step {
                t0,
                miss: miss[i].unwrap_or(false),
                alpha: alpha[i].unwrap_or(f64::NAN),
                coverage_ema: ema[i].unwrap_or(f64::NAN),
                halfwidth: half[i].unwrap_or(f64::NAN),
                state: state[i].clone().unwrap_or_default(),
            });
        }
    }
    Ok((by_label, target))
}

fn date(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or_else(|| us.to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// The two plots of each replayed label: coverage and the issued level over T0, and the
/// interval's width over T0. None when no step was replayed.
pub(crate) fn parts(r: &Reader) -> Result<Vec<Part>> {
    let (by_label, target) = steps(r)?;
    let mut parts = Vec::new();
    for (label, steps) in &by_label {
        let pts = points(steps);
        let Some(first) = pts.first().map(|p| p.t0) else { continue };
        let x = |p: &Point| (p.t0 - first) as f64 / 86_400e6;
        let axis = format!("days since {}", date(first));
        let series = |name: &str, f: &dyn Fn(&Point) -> f64| Series {
            name: name.into(),
            points: pts.iter().map(|p| (x(p), f(p))).collect(),
        };
        let mut cov = vec![
            series(&format!("rolling coverage (last {WINDOW} steps)"), &|p| p.rolling),
            series("coverage EMA", &|p| p.coverage_ema),
            series("issued level 1 − α", &|p| p.issued),
        ];
        if let Some(t) = target {
            cov.push(series("target", &|_| t));
        }
        let rows = |f: &dyn Fn(&Point) -> Vec<String>| pts.iter().map(f).collect::<Vec<_>>();
        parts.push(Part::Plot {
            svg: plot::lines(&format!("{label}: coverage over T0"), (&axis, "coverage"), &cov, false)?,
            table: table(
                &["T0", "steps", "rolling coverage", "coverage EMA", "1 − α", "state"],
                rows(&|p| {
                    vec![
                        date(p.t0),
                        p.steps.to_string(),
                        format!("{:.3}", p.rolling),
                        format!("{:.3}", p.coverage_ema),
                        format!("{:.4}", p.issued),
                        p.state.clone(),
                    ]
                }),
            ),
        });
        parts.push(Part::Plot {
            svg: plot::lines(
                &format!("{label}: interval width over T0"),
                (&axis, "width"),
                &[series("width", &|p| p.width)],
                false,
            )?,
            table: table(
                &["T0", "steps", "mean width"],
                rows(&|p| vec![date(p.t0), p.steps.to_string(), format!("{:.4}", p.width)]),
            ),
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t0: i64, miss: bool, halfwidth: f64) -> Step {
        Step { t0, miss, alpha: 0.1, coverage_ema: 0.9, halfwidth, state: "PASS".into() }
    }

    #[test]
    fn rolling_coverage_counts_the_last_window_and_long_replays_are_folded() {
        // 25 steps, misses at 0..5: the window at step 24 holds steps 5..25, all covered.
        let s: Vec<Step> = (0..25).map(|i| step(i, i < 5, 1.0)).collect();
        let p = points(&s);
        assert_eq!(p.len(), 25);
        assert_eq!(p[4].rolling, 0.0);
        assert!((p[9].rolling - 0.5).abs() < 1e-12, "5 of 10 covered: {}", p[9].rolling);
        assert_eq!(p[24].rolling, 1.0);
        assert_eq!(p[0].width, 2.0);
        // 250 steps fold into 84 runs of 3 (the last of 1); widths are the run's mean.
        let s: Vec<Step> = (0..250).map(|i| step(i, false, i as f64)).collect();
        let p = points(&s);
        assert_eq!(p.len(), 84);
        assert_eq!(p[0].steps, 3);
        assert_eq!(p[0].t0, 2);
        assert_eq!(p[0].width, 2.0 * (0.0 + 1.0 + 2.0) / 3.0);
        assert_eq!(p.iter().map(|p| p.steps).sum::<usize>(), 250);
        assert_eq!(p.last().unwrap().t0, 249);
    }
}
