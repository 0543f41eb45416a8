//! The GBDT explanation bench (`bash bench/explain.sh`): rows/s of the GBDT's prediction and of
//! its exact TreeSHAP contributions over every row, on synthetic data that the peer script
//! (`bench/explain_peer.py`, XGBoost's `pred_contribs` and `shap.TreeExplainer` on a model of
//! the same number of trees and leaves) reads back from the same files.
//!
//!     explain_bench OUT_DIR [ROWS] [TRAIN_ROWS]
//!
//! Writes OUT_DIR/x.f64 (row-major, little-endian, 10 columns), OUT_DIR/y.f64 and
//! OUT_DIR/rust.json. Threads: rayon's (RAYON_NUM_THREADS).
#![expect(clippy::print_stdout, reason = "a bench binary reports on stdout")]

use std::io::Write;
use std::time::Instant;

use rayon::prelude::*;
use t0_train::models::gbdt::{Gbdt, GbdtConfig, Objective};
use t0_train::models::{Design, Fitted, Learner, Predict, Target};

const D: usize = 10;
const TREES: usize = 100;
const LEAVES: usize = 31;

fn write_f64(path: &std::path::Path, v: &[f64]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for x in v {
        f.write_all(&x.to_le_bytes()).expect("write");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).expect("usage: explain_bench OUT_DIR [ROWS] [TRAIN_ROWS]"));
    let rows: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("ROWS"));
    let train_rows: usize = args.get(3).map_or(200_000, |s| s.parse().expect("TRAIN_ROWS"));
    let n = rows.max(train_rows);
    let mut rng = t0_core::rng::SplitMix::new(42);
    let (mut x, mut y) = (Vec::with_capacity(n * D), Vec::with_capacity(n));
    for _ in 0..n {
        let r: [f64; D] = std::array::from_fn(|_| rng.normal());
        y.push(r[0] * r[1] + 2.0 * r[2].sin() + r[3].abs() + 0.5 * rng.normal());
        x.extend(r);
    }
    std::fs::create_dir_all(&out).expect("out dir");
    write_f64(&out.join("x.f64"), &x);
    write_f64(&out.join("y.f64"), &y);

    let cfg = GbdtConfig {
        iterations: TREES,
        max_leaves: LEAVES,
        early_stopping_rounds: 0,
        ..GbdtConfig::new(Objective::Squared)
    };
    let t = Instant::now();
    let train = Design { x: x[..train_rows * D].to_vec(), d: D, y: Target::Real(y[..train_rows].to_vec()) };
    let model = Gbdt::fit(&cfg, &train, None).expect("fit");
    let train_s = t.elapsed().as_secs_f64();
    let row = |i: usize| &x[i * D..(i + 1) * D];

    let t = Instant::now();
    let pred: Vec<f64> = (0..rows).into_par_iter().map(|i| model.predict(row(i))).collect();
    let predict_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let phi: Vec<Vec<f64>> = (0..rows).into_par_iter().map(|i| model.explain(row(i))).collect();
    let explain_s = t.elapsed().as_secs_f64();
    // The contributions must add up, or the figures mean nothing.
    let base = model.expected_margin();
    let gap = (0..rows).map(|i| (base + phi[i].iter().sum::<f64>() - pred[i]).abs()).fold(0.0, f64::max);
    let fitted = Fitted::Gbdt(model.clone());
    assert!(fitted.explanation(row(0)).check().is_ok(), "additivity");
    let leaves = model.trees.iter().map(|t| t.nodes.iter().filter(|n| n.feature.is_none()).count()).max();
    let report = serde_json::json!({
        "rows": rows,
        "train_rows": train_rows,
        "features": D,
        "trees": model.trees.len(),
        "leaves": LEAVES,
        "max_leaves_grown": leaves,
        "learning_rate": cfg.learning_rate,
        "threads": rayon::current_num_threads(),
        "train_s": train_s,
        "predict_s": predict_s,
        "explain_s": explain_s,
        "predict_rows_per_s": rows as f64 / predict_s,
        "explain_rows_per_s": rows as f64 / explain_s,
        "max_additivity_gap": gap,
    });
    std::fs::write(out.join("rust.json"), serde_json::to_vec_pretty(&report).expect("json")).expect("write");
    println!("{report}");
}
