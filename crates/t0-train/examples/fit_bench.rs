//! One model fit on a dataset written by bench/train_peers.py, timed, for bench/train.sh.
//!
//!   fit_bench gbdt DIR          histogram GBDT, squared error (peer: HistGradientBoosting)
//!   fit_bench gbdt-aft DIR      GBDT with the AFT objective (peer: XGBoost survival:aft)
//!   fit_bench aft-DIST DIR      parametric AFT, DIST = weibull|lognormal|loglogistic (lifelines)
//!   fit_bench ridge DIR         ridge with exact leave-one-out penalty choice (RidgeCV)
//!
//! DIR holds meta.json ({"n_train", "n_test", "d", ...}) and little-endian f64 files:
//! x_train, x_test (row-major), and y_train/y_test (regression) or lower_train/upper_train
//! and time_test/event_test (survival). Prints one JSON object: fit seconds and accuracy.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a bench prints its result and its usage")]

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use t0_train::metrics;
use t0_train::models::aft::fit_aft;
use t0_train::models::dist::{Dist, aft_loss};
use t0_train::models::gbdt::{Gbdt, GbdtConfig, Objective};
use t0_train::models::ridge::ridge_loo;
use t0_train::models::{Design, Learner, Predict, Target};

fn floats(dir: &Path, name: &str) -> Vec<f64> {
    let b = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, dir] = args.as_slice() else {
        eprintln!("usage: fit_bench gbdt|gbdt-aft|aft-weibull|aft-lognormal|aft-loglogistic|ridge DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let d = meta["d"].as_u64().unwrap() as usize;
    let iterations = meta["iterations"].as_u64().unwrap_or(100) as usize;
    let x_train = floats(dir, "x_train");
    let x_test = floats(dir, "x_test");
    // Start the thread pool before the clock, as the peers' imports and pools are.
    rayon::broadcast(|_| ());
    let out = match kind.as_str() {
        "gbdt" => {
            let y = floats(dir, "y_train");
            let yt = floats(dir, "y_test");
            let train = Design { x: x_train, d, y: Target::Real(y) };
            let cfg = GbdtConfig { iterations, early_stopping_rounds: 0, ..GbdtConfig::new(Objective::Squared) };
            let t = Instant::now();
            let m = Gbdt::fit(&cfg, &train, None).unwrap();
            let secs = t.elapsed().as_secs_f64();
            let p: Vec<f64> = x_test.chunks_exact(d).map(|r| m.predict(r)).collect();
            json!({"fit_seconds": secs, "rmse": metrics::rmse(&p, &yt), "trees": m.trees.len()})
        }
        "gbdt-aft" => {
            let sigma = meta["sigma"].as_f64().unwrap_or(1.0);
            let (lower, upper) = (floats(dir, "lower_train"), floats(dir, "upper_train"));
            let (tt, et) = (floats(dir, "time_test"), floats(dir, "event_test"));
            let train = Design { x: x_train, d, y: Target::Censored { lower, upper } };
            let obj = Objective::Aft { dist: Dist::Normal, sigma };
            let cfg = GbdtConfig { iterations, early_stopping_rounds: 0, ..GbdtConfig::new(obj) };
            let t = Instant::now();
            let m = Gbdt::fit(&cfg, &train, None).unwrap();
            let secs = t.elapsed().as_secs_f64();
            let f: Vec<f64> = x_test.chunks_exact(d).map(|r| m.margin(r)).collect();
            let ev: Vec<bool> = et.iter().map(|e| *e > 0.5).collect();
            // XGBoost's aft-nloglik is evaluated at scale 1 whatever the training scale.
            let nll = (0..tt.len())
                .map(|i| aft_loss(Dist::Normal, 1.0, tt[i], if ev[i] { tt[i] } else { f64::INFINITY }, f[i]))
                .sum::<f64>()
                / tt.len() as f64;
            json!({"fit_seconds": secs, "aft_nloglik": nll, "c_index": metrics::harrell_c(&tt, &ev, &f)})
        }
        k if k.starts_with("aft-") => {
            let dist = match &k[4..] {
                "weibull" => Dist::Extreme,
                "lognormal" => Dist::Normal,
                "loglogistic" => Dist::Logistic,
                other => panic!("unknown AFT distribution {other}"),
            };
            let (lower, upper) = (floats(dir, "lower_train"), floats(dir, "upper_train"));
            let ev: Vec<bool> = upper.iter().map(|u| u.is_finite()).collect();
            let t = Instant::now();
            let f = fit_aft(dist, &x_train, d, &lower, &ev, 0.0).unwrap();
            let secs = t.elapsed().as_secs_f64();
            json!({"fit_seconds": secs, "log_likelihood": f.log_likelihood, "iterations": f.iterations})
        }
        "ridge" => {
            let y = floats(dir, "y_train");
            let yt = floats(dir, "y_test");
            let alphas: Vec<f64> = meta["alphas"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).collect();
            let t = Instant::now();
            let f = ridge_loo(&x_train, d, &y, &alphas).unwrap();
            let secs = t.elapsed().as_secs_f64();
            let p: Vec<f64> = x_test
                .chunks_exact(d)
                .map(|r| f.intercept + r.iter().zip(&f.coef).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            json!({"fit_seconds": secs, "alpha": f.alpha, "rmse": metrics::rmse(&p, &yt)})
        }
        other => {
            eprintln!("unknown kind {other}");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
