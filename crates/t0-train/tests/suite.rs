//! The model families against references computed once with the Python peers
//! (scripts/reference/suite.py; fixtures in tests/fixtures), and their determinism.

use std::path::PathBuf;

use t0_train::metrics;
use t0_train::models::aft::AftConfig;
use t0_train::models::aft::fit_aft;
use t0_train::models::dist::{Dist, aft_loss};
use t0_train::models::gate;
use t0_train::models::gbdt::{Gbdt, GbdtConfig, Node, Objective, Tree};
use t0_train::models::isotonic::Isotonic;
use t0_train::models::ridge::{Ridge, RidgeConfig, ridge_loo};
use t0_train::models::stack::{Base, Meta, Stack, StackConfig, convex_blend, nn_logistic};
use t0_train::models::woe::WoeConfig;
use t0_train::models::{Design, Fitted, Learner, Predict, Scale, Target};
use t0_train::split::SplitMix;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// (header, rows) of a numeric CSV fixture.
fn csv(name: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut r = ::csv::Reader::from_path(fixture(name)).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(|v| v.parse().unwrap()).collect()).collect();
    (header, rows)
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b} (tolerance {tol})");
}

fn diabetes() -> (Vec<f64>, Vec<f64>) {
    let (_, rows) = csv("diabetes.csv");
    let x = rows.iter().flat_map(|r| r[..10].to_vec()).collect();
    let y = rows.iter().map(|r| r[10]).collect();
    (x, y)
}

#[test]
fn ridge_loo_matches_sklearn_ridgecv() {
    let r = json("ridge_reference.json");
    let (x, y) = diabetes();
    let fit = ridge_loo(&x, 10, &y, &floats(&r["alphas"])).unwrap();
    assert_eq!(fit.alpha, r["alpha"].as_f64().unwrap());
    for (a, b) in fit.loo_mse.iter().zip(floats(&r["loo_mse"])) {
        close(*a, b, 1e-8, "LOO MSE");
    }
    for (a, b) in fit.coef.iter().zip(floats(&r["coef"])) {
        close(*a, b, 1e-7, "coefficient");
    }
    close(fit.intercept, r["intercept"].as_f64().unwrap(), 1e-8, "intercept");
}

fn rossi() -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let (h, rows) = csv("rossi.csv");
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let covs = ["fin", "age", "race", "wexp", "mar", "paro", "prio"];
    let x = rows.iter().flat_map(|r| covs.iter().map(|c| r[col(c)]).collect::<Vec<_>>()).collect();
    let t = rows.iter().map(|r| r[col("week")]).collect();
    let e = rows.iter().map(|r| r[col("arrest")] > 0.5).collect();
    (x, t, e)
}

#[test]
fn parametric_aft_matches_lifelines() {
    let r = json("aft_reference.json");
    let (x, t, e) = rossi();
    let covs = ["fin", "age", "race", "wexp", "mar", "paro", "prio"];
    for (name, dist) in [("weibull", Dist::Extreme), ("lognormal", Dist::Normal), ("loglogistic", Dist::Logistic)] {
        let f = fit_aft(dist, &x, 7, &t, &e, 0.0).unwrap();
        let want = &r[name];
        let ll = want["log_likelihood"].as_f64().unwrap();
        close(f.log_likelihood, ll, 1e-6, &format!("{name} log-likelihood"));
        // Newton reaches the maximum at least as well as lifelines' L-BFGS.
        assert!(f.log_likelihood >= ll - 1e-9, "{name}: {} below lifelines' {ll}", f.log_likelihood);
        // lifelines stops its log-logistic fit 9.5e-5 short of the maximum, where the
        // likelihood is flat along `paro`: its coefficients are 1.7e-3 from the optimum there.
        let tol = if dist == Dist::Logistic { 2.5e-3 } else { 1e-3 };
        close(f.intercept, want["intercept"].as_f64().unwrap(), tol, &format!("{name} intercept"));
        for (k, c) in covs.iter().enumerate() {
            close(f.coef[k], want["coef"][c].as_f64().unwrap(), tol, &format!("{name} {c}"));
        }
        // lifelines' ancillary: log rho (Weibull), log sigma (log-normal), log beta (log-logistic).
        let anc = if dist == Dist::Normal { f.log_sigma } else { -f.log_sigma };
        close(anc, want["log_ancillary"].as_f64().unwrap(), 1e-3, &format!("{name} shape"));
        // Median survival and S(t) of the first rows.
        let sigma = f.log_sigma.exp();
        let loc = |i: usize| f.intercept + (0..7).map(|j| f.coef[j] * x[i * 7 + j]).sum::<f64>();
        for (i, m) in floats(&want["median_first5"]).iter().enumerate() {
            close((loc(i) + sigma * dist.quantile(0.5)).exp(), *m, tol, &format!("{name} median row {i}"));
        }
        for (i, row) in want["survival_first3_at_10_30_52"].as_array().unwrap().iter().enumerate() {
            for (k, tt) in [10.0f64, 30.0, 52.0].iter().enumerate() {
                let s = dist.log_surv((tt.ln() - loc(i)) / sigma).exp();
                close(s, row[k].as_f64().unwrap(), tol / 10.0, &format!("{name} S({tt}) row {i}"));
            }
        }
    }
}

#[test]
fn gbdt_aft_loss_matches_xgboost_nloglik() {
    let r = json("xgb_aft_loss.json");
    let lower = floats(&r["lower"]);
    let upper: Vec<f64> = r["upper"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::INFINITY)).collect();
    let margin = floats(&r["margin"]);
    assert!(upper.iter().zip(&lower).any(|(u, l)| u.is_finite() && u > l), "the fixture has interval rows");
    for (dist, key) in [(Dist::Normal, "normal_1.0"), (Dist::Logistic, "logistic_1.0"), (Dist::Extreme, "extreme_1.0")]
    {
        let mean = (0..lower.len()).map(|i| aft_loss(dist, 1.0, lower[i], upper[i], margin[i])).sum::<f64>()
            / lower.len() as f64;
        // XGBoost computes in float32.
        close(mean, r["loss"][key].as_f64().unwrap(), 1e-6, key);
    }
}

#[test]
fn gbdt_aft_gradients_match_finite_differences() {
    let r = json("xgb_aft_loss.json");
    let lower = floats(&r["lower"]);
    let upper: Vec<f64> = r["upper"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::INFINITY)).collect();
    for dist in [Dist::Normal, Dist::Logistic, Dist::Extreme] {
        for i in 0..40 {
            let f = lower[i].ln() + 0.3;
            let (g, h) = t0_train::models::dist::aft_grad_hess(dist, 1.3, lower[i], upper[i], f);
            let loss = |f: f64| {
                // The exact negative log-likelihood (no epsilon floor) for the derivative check.
                aft_loss(dist, 1.3, lower[i], upper[i], f)
            };
            let e = 1e-5;
            let gd = (loss(f + e) - loss(f - e)) / (2.0 * e);
            let hd = (loss(f + e) - 2.0 * loss(f) + loss(f - e)) / (e * e);
            close(g, gd, 1e-5, &format!("{dist:?} gradient row {i}"));
            close(h, hd, 1e-3, &format!("{dist:?} hessian row {i}"));
        }
    }
}

#[test]
fn isotonic_matches_sklearn() {
    let r = json("isotonic_reference.json");
    let m = Isotonic::fit(&floats(&r["x"]), &floats(&r["y"]), 0.0, 1.0).unwrap();
    for (q, want) in floats(&r["query"]).iter().zip(floats(&r["fitted"])) {
        close(m.predict(*q), want, 1e-12, &format!("isotonic at {q}"));
    }
}

#[test]
fn survival_metrics_match_lifelines_and_scikit_survival() {
    let r = json("survival_metrics_reference.json");
    let (_, t, e) = rossi();
    let (tr_t, tr_e) = (&t[..300], &e[..300]);
    let (te_t, te_e) = (&t[300..], &e[300..]);
    let risk = floats(&r["risk"]);
    let score: Vec<f64> = risk.iter().map(|v| -v).collect();
    close(metrics::harrell_c(te_t, te_e, &score), r["harrell"].as_f64().unwrap(), 1e-12, "Harrell's C");
    let cens = metrics::CensoringKm::fit(tr_t, tr_e);
    close(
        metrics::uno_c(&cens, te_t, te_e, &risk, r["uno_tau"].as_f64().unwrap()),
        r["uno"].as_f64().unwrap(),
        1e-10,
        "Uno's C",
    );
    let surv: Vec<Vec<f64>> = r["survival"].as_array().unwrap().iter().map(floats).collect();
    close(
        metrics::integrated_brier(&cens, te_t, te_e, &surv, &floats(&r["times"])),
        r["ibs"].as_f64().unwrap(),
        1e-10,
        "integrated Brier score",
    );
}

#[test]
fn survival_calibration_matches_lifelines_kaplan_meier_and_survival_eval_d_calibration() {
    let r = json("survival_calibration_reference.json");
    let t = floats(&r["time"]);
    let e: Vec<bool> = r["event"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    for (at, want) in floats(&r["km_times"]).iter().zip(floats(&r["km"])) {
        close(metrics::kaplan_meier(&t, &e, *at), want, 1e-12, &format!("Kaplan-Meier S({at})"));
    }
    let s = floats(&r["s_own"]);
    let (stat, p) = metrics::d_calibration(&s, &e);
    close(stat, r["d_cal_stat"].as_f64().unwrap(), 1e-9, "D-calibration statistic");
    close(p, r["d_cal_p"].as_f64().unwrap(), 1e-9, "D-calibration p-value");
    // A miscalibrated model fails the test, with the same figures as the peer.
    let worse: Vec<f64> = s.iter().map(|v| v.powi(5)).collect();
    let (stat, p) = metrics::d_calibration(&worse, &e);
    close(stat, r["d_cal_stat_pow5"].as_f64().unwrap(), 1e-9, "D-calibration statistic (S^5)");
    let want = r["d_cal_p_pow5"].as_f64().unwrap();
    assert!((p / want - 1.0).abs() < 1e-6, "D-calibration p-value (S^5): {p} vs {want}");
    assert!(p < 0.05, "S^5 is not calibrated: p {p}");
}

fn split(n: usize, frac: f64) -> (Vec<usize>, Vec<usize>) {
    let k = (n as f64 * frac) as usize;
    ((0..k).collect(), (k..n).collect())
}

#[test]
fn gbdt_comes_within_reach_of_sklearn_hist_gradient_boosting() {
    let r = json("gbdt_reference.json");
    let p = &r["params"];
    let cfg = |obj| GbdtConfig {
        iterations: p["iterations"].as_u64().unwrap() as usize,
        learning_rate: p["learning_rate"].as_f64().unwrap(),
        max_leaves: p["max_leaves"].as_u64().unwrap() as usize,
        min_leaf: p["min_leaf"].as_u64().unwrap() as usize,
        // scikit-learn's default l2_regularization is 0.
        l2: 0.0,
        early_stopping_rounds: 0,
        ..GbdtConfig::new(obj)
    };
    let (x, y) = diabetes();
    let (tr, te) = split(y.len(), 0.75);
    let all = Target::Real(y.clone());
    let dt = Design::select(&x, 10, &all, &tr);
    let g = Gbdt::fit(&cfg(Objective::Squared), &dt, None).unwrap();
    let pred: Vec<f64> = te.iter().map(|&i| g.predict(&x[i * 10..(i + 1) * 10])).collect();
    let truth: Vec<f64> = te.iter().map(|&i| y[i]).collect();
    let rmse = metrics::rmse(&pred, &truth);
    let want = r["regression_rmse"].as_f64().unwrap();
    assert!(rmse <= want * 1.05, "GBDT RMSE {rmse} vs scikit-learn {want}: more than 5% worse");

    let (_, rows) = csv("breast_cancer.csv");
    let xb: Vec<f64> = rows.iter().flat_map(|r| r[..30].to_vec()).collect();
    let yb: Vec<f64> = rows.iter().map(|r| r[30]).collect();
    let (tr, te) = split(yb.len(), 0.75);
    let dt = Design::select(&xb, 30, &Target::Binary(yb.clone()), &tr);
    let c = Gbdt::fit(&cfg(Objective::Logistic), &dt, None).unwrap();
    let p: Vec<f64> = te.iter().map(|&i| c.predict(&xb[i * 30..(i + 1) * 30])).collect();
    let t: Vec<f64> = te.iter().map(|&i| yb[i]).collect();
    let auc = metrics::roc_auc(&p, &t);
    let want = r["classifier_auc"].as_f64().unwrap();
    assert!(auc >= want - 0.01, "GBDT AUC {auc} vs scikit-learn {want}");
}

#[test]
fn gbdt_is_bit_identical_across_thread_counts_and_explains_its_margin() {
    let (x, y) = diabetes();
    // Missing values in one column exercise the missing-value routing.
    let mut x = x;
    for i in (0..y.len()).step_by(7) {
        x[i * 10 + 2] = f64::NAN;
    }
    let all = Target::Real(y.clone());
    let (tr, va) = split(y.len(), 0.8);
    let dt = Design::select(&x, 10, &all, &tr);
    let dv = Design::select(&x, 10, &all, &va);
    let cfg = GbdtConfig { iterations: 60, ..GbdtConfig::new(Objective::Squared) };
    let fit_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| Gbdt::fit(&cfg, &dt, Some(&dv)).unwrap())
    };
    let (a, b) = (fit_with(1), fit_with(2));
    assert_eq!(a.save(), b.save(), "model bytes differ between 1 and 2 threads");
    assert!(a.best_iteration >= 1 && a.trees.len() == a.best_iteration);
    // TreeSHAP values add up to the margin from the cover-weighted expected margin.
    for i in 0..20 {
        let row = &x[i * 10..(i + 1) * 10];
        close(a.expected_margin() + a.explain(row).iter().sum::<f64>(), a.margin(row), 1e-9, "contributions");
    }
    // Round trip through the saved bytes.
    let back = Gbdt::load(&a.save()).unwrap();
    assert_eq!(back, a);
}

/// More columns than events (as with embeddings): the events alone could be fitted exactly,
/// and only a penalty on β/σ (not on β) keeps the likelihood bounded as σ → 0. Every
/// distribution converges to a finite scale, and a larger penalty shrinks β/σ.
#[test]
fn penalised_aft_converges_on_a_design_wider_than_its_events() {
    let (n, d) = (60, 80);
    let mut rng = SplitMix(7u64);
    let mut unit = move || rng.unit();
    let x: Vec<f64> = (0..n * d).map(|_| unit() * 2.0 - 1.0).collect();
    let t: Vec<f64> = (0..n).map(|i| (2.0 + x[i * d] + 0.3 * unit()).exp()).collect();
    let e: Vec<bool> = (0..n).map(|i| i % 6 == 0).collect();
    for dist in [Dist::Extreme, Dist::Normal, Dist::Logistic] {
        let small = fit_aft(dist, &x, d, &t, &e, 1e-3).unwrap_or_else(|err| panic!("{}: {err}", dist.name()));
        let large = fit_aft(dist, &x, d, &t, &e, 1e-1).unwrap();
        assert!(small.log_sigma.is_finite() && small.log_sigma > -6.0, "{}: log σ {}", dist.name(), small.log_sigma);
        // The penalised quantity, |β/σ|², cannot grow with the penalty.
        let norm =
            |f: &t0_train::models::aft::AftFit| f.coef.iter().map(|b| b * b).sum::<f64>() * (-2.0 * f.log_sigma).exp();
        assert!(norm(&large) < norm(&small), "{}: the larger penalty did not shrink β/σ", dist.name());
    }
    // Unpenalised, the maximum does not exist: refused for too few rows, not looped on.
    assert!(fit_aft(Dist::Extreme, &x, d, &t, &e, 0.0).is_err());
}

/// Large enough for the parallel paths (chunked partitions, per-thread feature groups,
/// four-feature leaf histograms with a remainder): every objective gives the same bytes on
/// one and on three threads.
#[test]
fn gbdt_parallel_paths_are_bit_identical_for_every_objective() {
    let (n, d) = (70_000, 7);
    let mut rng = SplitMix(0x9e37_79b9_7f4a_7c15u64);
    let mut unit = move || rng.unit();
    let x: Vec<f64> = (0..n * d).map(|k| if k % 13 == 0 { f64::NAN } else { unit() * 4.0 - 2.0 }).collect();
    let signal: Vec<f64> = (0..n)
        .map(|i| x[i * d + 1].max(0.0) * 1.5 - x[i * d + 3].abs() + 0.3 * unit())
        .map(|v| if v.is_nan() { 0.0 } else { v })
        .collect();
    let targets = [
        (Objective::Squared, Target::Real(signal.clone())),
        (Objective::Logistic, Target::Binary(signal.iter().map(|v| (*v > 0.2) as u8 as f64).collect())),
        (
            Objective::Aft { dist: Dist::Logistic, sigma: 0.8 },
            Target::Censored {
                lower: signal.iter().map(|v| (1.0 + v).exp()).collect(),
                upper: signal
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if i % 3 == 0 { f64::INFINITY } else { (1.0 + v).exp() })
                    .collect(),
            },
        ),
    ];
    for (objective, y) in targets {
        let train = Design { x: x.clone(), d, y };
        let cfg = GbdtConfig { iterations: 4, early_stopping_rounds: 0, ..GbdtConfig::new(objective) };
        let fit_with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| Gbdt::fit(&cfg, &train, None).unwrap())
        };
        let (a, b) = (fit_with(1), fit_with(3));
        assert!(a.trees.iter().all(|t| t.nodes.len() > 1), "{}: trees did not split", objective.name());
        assert_eq!(a.save(), b.save(), "{}: model bytes differ between 1 and 3 threads", objective.name());
        // Training loss goes down round after round.
        assert!(a.train_curve.windows(2).all(|w| w[1] < w[0]), "{}: {:?}", objective.name(), a.train_curve);
    }
}

#[test]
fn classification_and_ranking_metrics_behave() {
    let y = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
    let p = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2];
    // scikit-learn: roc_auc_score = 0.8888..., average_precision_score = 0.9166...
    close(metrics::roc_auc(&p, &y), 8.0 / 9.0, 1e-12, "AUC");
    close(metrics::average_precision(&p, &y), 11.0 / 12.0, 1e-12, "AP");
    let (pr, rc, f1) = metrics::prf(&p, &y, 0.5);
    assert_eq!((pr, rc), (1.0, 2.0 / 3.0));
    close(f1, 0.8, 1e-12, "F1");
    close(metrics::spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 40.0, 30.0]), 0.8, 1e-12, "Spearman");
    // A perfect ranking within each group has NDCG 1.
    let g = [1, 1, 1, 2, 2];
    close(metrics::ndcg_at(10, &g, &[3.0, 2.0, 1.0, 5.0, 4.0], &[3.0, 2.0, 1.0, 2.0, 1.0]), 1.0, 1e-12, "NDCG");
}

/// Columns of `x` (row-major, `d` wide) standardised (population deviation) and signed.
fn signed_columns(x: &[f64], d: usize, spec: &serde_json::Value) -> Vec<Vec<f64>> {
    let n = x.len() / d;
    spec.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let (j, sign) = (c[0].as_u64().unwrap() as usize, c[1].as_f64().unwrap());
            // Column j, standardised, times `sign` (which may also scale it).
            let col: Vec<f64> = (0..n).map(|i| x[i * d + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            col.iter().map(|v| sign * (v - mean) / sd).collect()
        })
        .collect()
}

fn breast_cancer() -> (Vec<f64>, Vec<f64>) {
    let (_, rows) = csv("breast_cancer.csv");
    (rows.iter().flat_map(|r| r[..30].to_vec()).collect(), rows.iter().map(|r| r[30]).collect())
}

#[test]
fn stack_meta_learners_match_scipy_convex_blend_and_sklearn_logistic_regression() {
    let r = json("stack_meta_reference.json");
    // Convex blend: weights non-negative, summing to 1, no intercept.
    let (x, y) = diabetes();
    let n = y.len() as f64;
    let (mean, sd) = (
        y.iter().sum::<f64>() / n,
        (y.iter().map(|v| v * v).sum::<f64>() / n - (y.iter().sum::<f64>() / n).powi(2)).sqrt(),
    );
    let p: Vec<Vec<f64>> = signed_columns(&x, 10, &r["blend"]["columns"])
        .into_iter()
        .map(|c| c.iter().map(|z| mean + sd * z).collect())
        .collect();
    let w = convex_blend(&p, &y);
    for (k, (got, want)) in w.iter().zip(floats(&r["blend"]["weights"])).enumerate() {
        close(*got, want, 1e-6, &format!("blend weight {k}"));
    }
    close(w.iter().sum(), 1.0, 1e-12, "blend weights sum");
    // Logistic regression on logits with non-negative weights, ridge on the weights only.
    let (xb, yb) = breast_cancer();
    let (a, w) = nn_logistic(&signed_columns(&xb, 30, &r["logistic"]["columns"]), &yb);
    close(a, r["logistic"]["intercept"].as_f64().unwrap(), 1e-5, "logistic meta intercept");
    for (k, (got, want)) in w.iter().zip(floats(&r["logistic"]["weights"])).enumerate() {
        close(*got, want, 1e-5, &format!("logistic meta weight {k}"));
    }
}

/// Expanding folds over `n` time-ordered rows: fit on every row before a cut, predict the
/// next `n / (k + 1)` rows.
fn expanding(n: usize, k: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let step = n / (k + 1);
    (1..=k).map(|f| ((0..f * step).collect(), (f * step..((f + 1) * step).min(n)).collect())).collect()
}

#[test]
fn binary_and_censored_stacks_combine_their_bases_on_time_folds_deterministically() {
    // Binary: WOE and a logistic GBDT, meta logistic on their logits.
    let (xb, yb) = breast_cancer();
    let (tr, te) = split(yb.len(), 0.75);
    let yall = Target::Binary(yb.clone());
    let (dt, dte) = (Design::select(&xb, 30, &yall, &tr), Design::select(&xb, 30, &yall, &te));
    let gbdt = GbdtConfig { iterations: 60, early_stopping_rounds: 0, ..GbdtConfig::new(Objective::Logistic) };
    let cfg = StackConfig {
        folds: expanding(tr.len(), 3),
        bases: vec![Base::Woe(WoeConfig { bins: 5 }), Base::Gbdt(gbdt)],
        meta_aft: None,
    };
    let s = Stack::fit(&cfg, &dt, None).unwrap();
    let Meta::Logistic { weights, .. } = &s.meta else { panic!("a binary stack has a logistic meta: {:?}", s.meta) };
    assert!(weights.iter().all(|w| *w >= 0.0) && weights.iter().any(|w| *w > 0.0), "{weights:?}");
    let auc = |m: &dyn Fn(&[f64]) -> f64| {
        let p: Vec<f64> = (0..dte.rows()).map(|i| m(dte.row(i))).collect();
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)), "probabilities");
        metrics::roc_auc(&p, dte.y.real().unwrap())
    };
    let stack_auc = auc(&|r| s.predict(r));
    let best_base = s.bases.iter().map(|b| auc(&|r| b.predict(r))).fold(0.0, f64::max);
    assert!(stack_auc >= 0.95 && stack_auc >= best_base - 0.02, "stack AUC {stack_auc}, best base {best_base}");
    assert_eq!(s, Stack::fit(&cfg, &dt, None).unwrap(), "refit differs");
    adds_up(&Fitted::Stack(s.clone()), &dte, Scale::LogOdds);
    for b in &s.bases {
        adds_up(b, &dte, Scale::LogOdds);
    }
    // The gate explains its uncalibrated log-odds.
    let (a, b) = (dte.rows() / 2, dte.rows());
    let half = |r: std::ops::Range<usize>| Design::select(&dte.x, 30, &dte.y, &r.collect::<Vec<_>>());
    let gate = gate::fit(&dt, &half(0..a), &half(a..b)).unwrap();
    adds_up(&Fitted::Gate(Box::new(gate)), &dte, Scale::LogOdds);

    // Censored: Weibull AFT and GBDT-AFT, meta log-normal AFT on their locations.
    let (x, t, e) = rossi();
    let upper: Vec<f64> = t.iter().zip(&e).map(|(t, e)| if *e { *t } else { f64::INFINITY }).collect();
    let y = Target::Censored { lower: t.clone(), upper };
    let (tr, te) = ((0..300).collect::<Vec<_>>(), (300..t.len()).collect::<Vec<_>>());
    let (dt, dte) = (Design::select(&x, 7, &y, &tr), Design::select(&x, 7, &y, &te));
    let aft = |dist| AftConfig { dist, penalties: vec![1e-3] };
    let gbdt = GbdtConfig {
        iterations: 40,
        early_stopping_rounds: 0,
        ..GbdtConfig::new(Objective::Aft { dist: Dist::Normal, sigma: 1.0 })
    };
    let cfg = StackConfig {
        folds: expanding(tr.len(), 3),
        bases: vec![Base::Aft(aft(Dist::Extreme)), Base::Gbdt(gbdt)],
        meta_aft: Some(aft(Dist::Normal)),
    };
    let s = Stack::fit(&cfg, &dt, None).unwrap();
    let meta = s.aft().expect("a censored stack has a meta AFT");
    assert!(meta.sigma().is_finite() && meta.sigma() > 0.0 && meta.dist == Dist::Normal);
    assert!(matches!(s.bases[0], Fitted::Aft(_)));
    let loc: Vec<f64> = (0..dte.rows()).map(|i| s.predict(dte.row(i))).collect();
    let c = metrics::harrell_c(&t[300..], &e[300..], &loc);
    assert!(c > 0.55, "stack concordance {c} on the held-out rossi rows");
    assert_eq!(s, Stack::fit(&cfg, &dt, None).unwrap(), "refit differs");

    adds_up(&Fitted::Stack(s.clone()), &dte, Scale::LogTime);
    for b in &s.bases {
        adds_up(b, &dte, Scale::LogTime);
    }

    // A stack of a censored target without a meta AFT is refused, not guessed.
    let bad = StackConfig { meta_aft: None, ..cfg };
    assert!(Stack::fit(&bad, &dt, None).is_err());
}

/// Every row's contributions plus the base value equal the model's margin on `scale`.
fn adds_up(m: &Fitted, d: &Design, scale: Scale) {
    for i in 0..d.rows() {
        let e = m.explanation(d.row(i));
        assert_eq!(e.scale, scale, "{}", m.kind());
        assert_eq!(e.contributions.len(), d.d);
        if let Err(gap) = e.check() {
            panic!("{} row {i}: contributions miss the output {} by {gap}", m.kind(), e.output);
        }
    }
}

#[test]
fn gbdt_tree_shap_matches_shap_tree_explainer_on_random_trees_with_missing_values() {
    let r = json("treeshap_reference.json");
    let ints =
        |v: &serde_json::Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let trees = r["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let (left, right, default) =
                (ints(&t["children_left"]), ints(&t["children_right"]), ints(&t["children_default"]));
            let (feature, threshold) = (ints(&t["features"]), floats(&t["thresholds"]));
            let (value, cover) = (floats(&t["values"]), floats(&t["node_sample_weight"]));
            let nodes = (0..left.len())
                .map(|k| Node {
                    feature: (left[k] >= 0).then(|| feature[k] as u32),
                    threshold: threshold[k],
                    missing_left: left[k] >= 0 && default[k] == left[k],
                    left: left[k].max(0) as u32,
                    right: right[k].max(0) as u32,
                    value: value[k],
                    cover: cover[k],
                })
                .collect();
            Tree { nodes }
        })
        .collect();
    let g = Gbdt {
        objective: Objective::Squared,
        base: r["base_offset"].as_f64().unwrap(),
        trees,
        valid_curve: vec![],
        train_curve: vec![],
        best_iteration: 12,
    };
    close(g.expected_margin(), r["expected_value"].as_f64().unwrap(), 1e-12, "expected value");
    let rows = r["x"].as_array().unwrap();
    let want = r["shap_values"].as_array().unwrap();
    for (row, want) in rows.iter().zip(want) {
        let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let e = Fitted::Gbdt(g.clone()).explanation(&row);
        for (a, b) in e.contributions.iter().zip(floats(want)) {
            assert!((a - b).abs() <= 1e-9, "TreeSHAP {a} vs shap {b} on {row:?}");
        }
        e.check().unwrap();
    }
}

#[test]
fn ridge_explains_coef_times_deviation_from_the_mean_as_sklearn_standardised_ridge() {
    let r = json("linear_explain_reference.json");
    let (x, y) = diabetes();
    let d = Design { x: x.clone(), d: 10, y: Target::Real(y) };
    let m = Ridge::fit(&RidgeConfig { alphas: floats(&r["alphas"]) }, &d, None).unwrap();
    assert_eq!(m.alpha, r["alpha"].as_f64().unwrap());
    let fitted = Fitted::Ridge(m);
    for (i, (want, pred)) in r["contributions"].as_array().unwrap().iter().zip(floats(&r["prediction"])).enumerate() {
        let e = fitted.explanation(&x[i * 10..(i + 1) * 10]);
        close(e.base, r["base_value"].as_f64().unwrap(), 1e-9, "base value");
        for (a, b) in e.contributions.iter().zip(floats(want)) {
            close(*a, b, 1e-7, "contribution");
        }
        close(e.output, pred, 1e-9, "prediction");
        e.check().unwrap();
    }
    // A linear stack of ridge and a squared-error GBDT adds up on the value scale.
    let (tr, te) = split(d.rows(), 0.75);
    let (dt, dte) = (Design::select(&x, 10, &d.y, &tr), Design::select(&x, 10, &d.y, &te));
    let gbdt = GbdtConfig { iterations: 40, early_stopping_rounds: 0, ..GbdtConfig::new(Objective::Squared) };
    let cfg = StackConfig {
        folds: expanding(tr.len(), 3),
        bases: vec![Base::Ridge(RidgeConfig::default()), Base::Gbdt(gbdt)],
        meta_aft: None,
    };
    let s = Stack::fit(&cfg, &dt, None).unwrap();
    adds_up(&Fitted::Stack(s), &dte, Scale::Value);
}
