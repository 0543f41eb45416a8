//! Fitting the normalised method's scale model ŝ(x); the intervals themselves (split,
//! normalised, Mondrian) are the served model's (`t0-model`'s `conformal`).

pub use t0_model::conformal::*;

use crate::models::ridge::{Ridge, RidgeConfig};
use crate::models::{Design, Fitted, Learner, Target};

/// Fit ŝ on training rows `x` (`d` columns) and their absolute residuals; `None` when it
/// cannot be fitted or the residuals are all zero.
pub fn fit_scale(x: &[f64], d: usize, abs_residuals: &[f64]) -> Option<Scale> {
    let mut sorted = abs_residuals.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = *sorted.get(sorted.len() / 2)?;
    if median <= 0.0 || !median.is_finite() {
        return None;
    }
    let design = Design { x: x.to_vec(), d, y: Target::Real(abs_residuals.to_vec()) };
    let model = Ridge::fit(&RidgeConfig::default(), &design, None).ok()?;
    Some(Scale { model: Fitted::Ridge(model), floor: SCALE_FLOOR * median })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Predict;

    /// (x with two columns, y) of n rows: y = 2·x₀ + noise whose spread grows with x₀ when
    /// `hetero` (from 0.1 to 3.1), constant 1 otherwise; x₁ is noise.
    fn draw(rng: &mut t0_core::rng::SplitMix, n: usize, hetero: bool) -> (Vec<f64>, Vec<f64>) {
        let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
        for _ in 0..n {
            let (a, b) = (rng.unit(), rng.unit());
            let sd = if hetero { 0.1 + 3.0 * a } else { 1.0 };
            x.extend([a, b]);
            y.push(2.0 * a + sd * rng.normal());
        }
        (x, y)
    }

    /// Fit a ridge mean model and ŝ on 5,000 rows, calibrate on 5,000, test on 5,000: the
    /// (coverage, mean half-width) of the split and the normalised intervals at 0.9.
    fn both(hetero: bool) -> ((f64, f64), (f64, f64)) {
        let mut rng = t0_core::rng::SplitMix::new(if hetero { 7 } else { 8 });
        let (xt, yt) = draw(&mut rng, 5000, hetero);
        let (xc, yc) = draw(&mut rng, 5000, hetero);
        let (xs, ys) = draw(&mut rng, 5000, hetero);
        let mean =
            Ridge::fit(&RidgeConfig::default(), &Design { x: xt.clone(), d: 2, y: Target::Real(yt.clone()) }, None)
                .unwrap();
        let res = |x: &[f64], y: &[f64]| -> Vec<f64> {
            y.iter().enumerate().map(|(i, v)| (v - mean.predict(&x[2 * i..2 * i + 2])).abs()).collect()
        };
        let scale = fit_scale(&xt, 2, &res(&xt, &yt)).unwrap();
        let s = |x: &[f64], i: usize| scale.at(&x[2 * i..2 * i + 2]);
        let split = halfwidth(&res(&xc, &yc), 0.9);
        let norm: Vec<f64> = res(&xc, &yc).iter().enumerate().map(|(i, r)| r / s(&xc, i)).collect();
        let q = halfwidth(&norm, 0.9);
        let rs = res(&xs, &ys);
        let n = rs.len() as f64;
        let split_cov = rs.iter().filter(|r| **r <= split).count() as f64 / n;
        let norm_cov = rs.iter().enumerate().filter(|(i, r)| **r <= q * s(&xs, *i)).count() as f64 / n;
        let norm_width = (0..rs.len()).map(|i| q * s(&xs, i)).sum::<f64>() / n;
        ((split_cov, split), (norm_cov, norm_width))
    }

    /// Measured 2026-12-05: homoscedastic split 0.912 (width 1.680), normalised 0.912 (1.680);
    /// heteroscedastic split 0.904 (3.167), normalised 0.895 (mean 2.601, 18 % narrower).
    #[test]
    fn normalised_intervals_cover_like_split_ones_and_are_narrower_where_noise_varies() {
        for hetero in [false, true] {
            let ((sc, sw), (nc, nw)) = both(hetero);
            assert!((sc - 0.9).abs() <= 0.015 && (nc - 0.9).abs() <= 0.015, "hetero {hetero}: coverage {sc} {nc}");
            if hetero {
                assert!(nw < 0.9 * sw, "normalised mean width {nw} vs split {sw}");
            }
        }
    }

    #[test]
    fn the_rank_is_the_finite_sample_corrected_quantile() {
        // n = 9, nominal 0.9: rank ⌈10·0.9⌉ = 9, the largest.
        let r: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(halfwidth(&r, 0.9), 9.0);
        // n = 19: rank ⌈20·0.9⌉ = 18; signs do not matter.
        let r: Vec<f64> = (1..=19).map(|v| -f64::from(v)).collect();
        assert_eq!(halfwidth(&r, 0.9), 18.0);
        assert_eq!(halfwidth(&[], 0.9), f64::INFINITY);
    }

    /// 5,000 calibration and 5,000 test rows of one exchangeable (heavy-tailed) law: the
    /// interval at every level covers within 1.5 points of it.
    #[test]
    fn split_conformal_covers_its_level_on_exchangeable_rows() {
        let mut rng = t0_core::rng::SplitMix::new(28);
        // Prediction 0, value: a normal scaled by an independent log-normal factor.
        let mut draw = || rng.normal() * (0.5 * rng.normal()).exp();
        let calib: Vec<f64> = (0..5000).map(|_| draw()).collect();
        let test: Vec<f64> = (0..5000).map(|_| draw()).collect();
        for level in [0.5, 0.8, 0.9, 0.95] {
            let c = coverage(&vec![0.0; test.len()], &test, halfwidth(&calib, level));
            assert!((c - level).abs() <= 0.015, "level {level}: coverage {c}");
        }
    }

    #[test]
    fn coverage_counts_the_closed_interval() {
        assert_eq!(coverage(&[0.0, 0.0, 0.0, 0.0], &[1.0, -1.0, 1.5, 0.2], 1.0), 0.75);
        assert_eq!(coverage(&[], &[], 1.0), 0.0);
    }

    /// Two groups of 5,000 calibration and 5,000 test rows each, noise spread 1 and 4: the
    /// pooled interval over-covers the quiet group and under-covers the noisy one; Mondrian
    /// covers each within 1.5 points. Rows are (one-hot a, one-hot b), prediction 0.
    #[test]
    fn mondrian_intervals_cover_each_group_where_the_pooled_one_covers_only_the_mix() {
        let mut rng = t0_core::rng::SplitMix::new(29);
        let mut rows = |n: usize| -> (Vec<f64>, Vec<f64>) {
            let (mut x, mut r) = (Vec::new(), Vec::new());
            for i in 0..n {
                let noisy = i % 2 == 1;
                x.extend(if noisy { [0.0, 1.0] } else { [1.0, 0.0] });
                r.push((if noisy { 4.0 } else { 1.0 } * rng.normal()).abs());
            }
            (x, r)
        };
        let ((xc, rc), (xt, rt)) = (rows(10_000), rows(10_000));
        let names = ["g=a".to_string(), "g=b".to_string()];
        let pairs: Vec<(usize, f64)> = rc.iter().copied().enumerate().collect();
        let m = Mondrian::fit("g", vec![0, 1], &names, &xc, 2, &pairs);
        assert_eq!(m.groups, ["g=a", "g=b", "missing"]);
        assert!(m.scores[2].is_empty() && m.scores_at(&[0.0, 0.0], 0.9).is_none(), "no missing rows: pooled");
        let pooled = halfwidth(&rc, 0.9);
        for g in 0..2 {
            let rows: Vec<usize> = (0..rt.len()).filter(|i| i % 2 == g).collect();
            let cov =
                |w: &dyn Fn(usize) -> f64| rows.iter().filter(|&&i| rt[i] <= w(i)).count() as f64 / rows.len() as f64;
            let own = cov(&|i| halfwidth(m.scores_at(&xt[2 * i..2 * i + 2], 0.9).unwrap(), 0.9));
            let pool = cov(&|_| pooled);
            assert!((own - 0.9).abs() <= 0.015, "group {g}: Mondrian coverage {own}");
            assert!((pool - 0.9).abs() > 0.05, "group {g}: the pooled interval already covers it ({pool})");
        }
    }
}
