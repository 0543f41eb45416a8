//! Histogram gradient-boosted trees: features binned once on the training rows (up to 255
//! quantile bins plus one for missing values), trees grown leaf-wise (best gain first) with
//! the sibling histogram obtained by subtraction, missing values routed to whichever side
//! gains more, early stopping on the validation rows, and pluggable objectives: squared
//! error, logistic, and XGBoost's accelerated-failure-time loss (normal, logistic, extreme;
//! right- and interval-censored bounds).
//!
//! Deterministic by construction: histograms are built per feature in row order (features
//! run in parallel, each summed by one thread), ties between splits go to the lower feature
//! and threshold, and nothing is sampled.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::aft::{Dist, sigmoid};
use super::{Design, FitError, Learner, Target};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Objective {
    Squared,
    Logistic,
    /// `survival:aft`: the margin is the location of log T; `sigma` the fixed scale.
    Aft {
        dist: Dist,
        sigma: f64,
    },
}

impl Objective {
    pub fn name(&self) -> String {
        match self {
            Objective::Squared => "squared".into(),
            Objective::Logistic => "logistic".into(),
            Objective::Aft { dist, .. } => format!("aft-{}", dist.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtConfig {
    pub objective: Objective,
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    pub min_leaf: usize,
    pub l2: f64,
    pub max_bins: usize,
    /// Stop when the validation loss has not improved for this many rounds (0: never).
    pub early_stopping_rounds: usize,
}

impl GbdtConfig {
    pub fn new(objective: Objective) -> Self {
        GbdtConfig {
            objective,
            iterations: 300,
            learning_rate: 0.1,
            max_leaves: 31,
            min_leaf: 20,
            l2: 1.0,
            max_bins: 255,
            early_stopping_rounds: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Split feature, or None for a leaf.
    pub feature: Option<u32>,
    /// Rows with `x <= threshold` go left.
    pub threshold: f64,
    pub missing_left: bool,
    pub left: u32,
    pub right: u32,
    /// The node's value (learning rate applied) as if it were a leaf: leaves predict it,
    /// inner nodes give the path contributions of `explain`.
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    fn leaf(&self, row: &[f64]) -> usize {
        let mut k = 0;
        while let Some(f) = self.nodes[k].feature {
            let n = &self.nodes[k];
            let v = row[f as usize];
            let left = if v.is_nan() { n.missing_left } else { v <= n.threshold };
            k = if left { n.left } else { n.right } as usize;
        }
        k
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub objective: Objective,
    pub base: f64,
    pub trees: Vec<Tree>,
    /// Validation loss after each round (empty without validation rows).
    pub valid_curve: Vec<f64>,
    pub train_curve: Vec<f64>,
    pub best_iteration: usize,
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

/// Per-feature bin edges of the training rows; the last bin index is for missing values.
struct Binned {
    edges: Vec<Vec<f64>>,
    /// Column-major bin of every training row.
    bins: Vec<Vec<u8>>,
}

const MISSING: usize = 255;

fn bin_features(x: &Design, max_bins: usize) -> Binned {
    let (n, d) = (x.rows(), x.d);
    let max_bins = max_bins.clamp(2, 255);
    let cols: Vec<(Vec<f64>, Vec<u8>)> = (0..d)
        .into_par_iter()
        .map(|j| {
            let mut v: Vec<f64> = (0..n).map(|i| x.x[i * d + j]).filter(|v| !v.is_nan()).collect();
            v.sort_by(f64::total_cmp);
            let mut distinct = v.clone();
            distinct.dedup();
            // Edges: a row with value <= edges[k] (and > edges[k-1]) is in bin k; values above
            // the last edge are in bin edges.len().
            let edges: Vec<f64> = if distinct.len() <= max_bins {
                distinct.iter().take(distinct.len().saturating_sub(1)).copied().collect()
            } else {
                let mut e: Vec<f64> = (1..max_bins).map(|k| v[k * v.len() / max_bins]).collect();
                e.dedup();
                e
            };
            let bins = (0..n)
                .map(|i| {
                    let val = x.x[i * d + j];
                    if val.is_nan() { MISSING as u8 } else { edges.partition_point(|e| *e < val) as u8 }
                })
                .collect();
            (edges, bins)
        })
        .collect();
    let (edges, bins) = cols.into_iter().unzip();
    Binned { edges, bins }
}

/// An open leaf: node index, rows, histogram, best split.
type OpenLeaf = (u32, Vec<u32>, Vec<Vec<Bin>>, Option<Split>);

struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    missing_left: bool,
}

fn leaf_weight(g: f64, h: f64, l2: f64) -> f64 {
    -g / (h + l2)
}

fn score(g: f64, h: f64, l2: f64) -> f64 {
    g * g / (h + l2)
}

fn best_split(hist: &[Vec<Bin>], edges: &[Vec<f64>], cfg: &GbdtConfig) -> Option<Split> {
    let mut best: Option<Split> = None;
    for (j, hj) in hist.iter().enumerate() {
        let nb = edges[j].len() + 1;
        let miss = hj[MISSING];
        let (mut g, mut h, mut c) = (miss.g, miss.h, miss.n);
        for b in &hj[..nb] {
            g += b.g;
            h += b.h;
            c += b.n;
        }
        let parent = score(g, h, cfg.l2);
        let (mut gl, mut hl, mut cl) = (0.0, 0.0, 0u32);
        for (t, b) in hj[..nb - 1].iter().enumerate() {
            gl += b.g;
            hl += b.h;
            cl += b.n;
            for missing_left in [false, true] {
                if missing_left && miss.n == 0 {
                    continue;
                }
                let (ga, ha, ca) = if missing_left { (gl + miss.g, hl + miss.h, cl + miss.n) } else { (gl, hl, cl) };
                let (gb, hb, cb) = (g - ga, h - ha, c - ca);
                if (ca as usize) < cfg.min_leaf || (cb as usize) < cfg.min_leaf || ha < 1e-3 || hb < 1e-3 {
                    continue;
                }
                let gain = score(ga, ha, cfg.l2) + score(gb, hb, cfg.l2) - parent;
                if gain > 1e-12 && best.as_ref().is_none_or(|s| gain > s.gain) {
                    // Unseen missing values follow the larger side.
                    let ml = if miss.n == 0 { ca >= cb } else { missing_left };
                    best = Some(Split { gain, feature: j, bin: t, missing_left: ml });
                }
            }
        }
    }
    best
}

fn histogram(rows: &[u32], bins: &[Vec<u8>], grad: &[(f64, f64)]) -> Vec<Vec<Bin>> {
    bins.par_iter()
        .map(|col| {
            let mut h = vec![Bin::default(); 256];
            for &r in rows {
                let b = &mut h[col[r as usize] as usize];
                let (g, hh) = grad[r as usize];
                b.g += g;
                b.h += hh;
                b.n += 1;
            }
            h
        })
        .collect()
}

fn subtract(parent: &[Vec<Bin>], child: &[Vec<Bin>]) -> Vec<Vec<Bin>> {
    parent
        .iter()
        .zip(child)
        .map(|(p, c)| p.iter().zip(c).map(|(a, b)| Bin { g: a.g - b.g, h: a.h - b.h, n: a.n - b.n }).collect())
        .collect()
}

/// Gradient and Hessian of the objective at margin `f` for row `i`.
fn grad_hess(obj: &Objective, y: &Target, i: usize, f: f64) -> (f64, f64) {
    match (obj, y) {
        (Objective::Squared, Target::Real(y) | Target::Binary(y)) => (f - y[i], 1.0),
        (Objective::Logistic, Target::Real(y) | Target::Binary(y)) => {
            let p = sigmoid(f);
            (p - y[i], (p * (1.0 - p)).max(1e-16))
        }
        (Objective::Aft { dist, sigma }, Target::Censored { lower, upper }) => {
            aft_grad_hess(*dist, *sigma, lower[i], upper[i], f)
        }
        _ => (0.0, 1e-16),
    }
}

/// XGBoost's AFT gradient and Hessian (clipped to ±15 and [1e-16, 15] as XGBoost does).
pub fn aft_grad_hess(dist: Dist, sigma: f64, lower: f64, upper: f64, f: f64) -> (f64, f64) {
    let (g, h) = if lower == upper {
        let z = (lower.ln() - f) / sigma;
        let (d1, d2) = dist.dlog_pdf(z);
        (d1 / sigma, -d2 / (sigma * sigma))
    } else if upper.is_infinite() {
        let z = (lower.ln() - f) / sigma;
        let (d1, d2) = dist.dlog_surv(z);
        (d1 / sigma, -d2 / (sigma * sigma))
    } else {
        let zu = (upper.ln() - f) / sigma;
        let (fu, cu, dfu) = pdf_cdf_dpdf(dist, zu);
        let (fl, cl, dfl) = if lower > 0.0 { pdf_cdf_dpdf(dist, (lower.ln() - f) / sigma) } else { (0.0, 0.0, 0.0) };
        let dd = (cu - cl).max(1e-12);
        let n = fu - fl;
        (n / (sigma * dd), (-(dfu - dfl) * dd + n * n) / (sigma * sigma * dd * dd))
    };
    let g = if g.is_finite() { g.clamp(-15.0, 15.0) } else { 0.0 };
    let h = if h.is_finite() { h.clamp(1e-16, 15.0) } else { 1e-16 };
    (g, h)
}

fn pdf_cdf_dpdf(dist: Dist, z: f64) -> (f64, f64, f64) {
    let f = dist.pdf(z);
    (f, dist.cdf(z), f * dist.dlog_pdf(z).0)
}

/// XGBoost's `aft-nloglik` of one row at margin `f`.
pub fn aft_loss(dist: Dist, sigma: f64, lower: f64, upper: f64, f: f64) -> f64 {
    const EPS: f64 = 1e-12;
    if lower == upper {
        let z = (lower.ln() - f) / sigma;
        -(dist.pdf(z) / (sigma * lower)).max(EPS).ln()
    } else {
        let cu = if upper.is_infinite() { 1.0 } else { dist.cdf((upper.ln() - f) / sigma) };
        let cl = if lower <= 0.0 { 0.0 } else { dist.cdf((lower.ln() - f) / sigma) };
        -(cu - cl).max(EPS).ln()
    }
}

/// Mean loss of margins `f` on target `y` (the early-stopping metric).
pub fn mean_loss(obj: &Objective, y: &Target, f: &[f64]) -> f64 {
    let n = f.len().max(1) as f64;
    let s: f64 = match (obj, y) {
        (Objective::Squared, Target::Real(y) | Target::Binary(y)) => {
            f.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum()
        }
        (Objective::Logistic, Target::Real(y) | Target::Binary(y)) => f
            .iter()
            .zip(y)
            .map(|(m, y)| {
                let p = sigmoid(*m).clamp(1e-15, 1.0 - 1e-15);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum(),
        (Objective::Aft { dist, sigma }, Target::Censored { lower, upper }) => {
            (0..f.len()).map(|i| aft_loss(*dist, *sigma, lower[i], upper[i], f[i])).sum()
        }
        _ => f64::NAN,
    };
    s / n
}

fn check_target(obj: &Objective, y: &Target) -> Result<(), FitError> {
    let ok = matches!(
        (obj, y),
        (Objective::Squared, Target::Real(_) | Target::Binary(_))
            | (Objective::Logistic, Target::Binary(_))
            | (Objective::Aft { .. }, Target::Censored { .. })
    );
    if ok {
        Ok(())
    } else {
        Err(FitError::Config(format!("objective {} cannot fit a {} target", obj.name(), y.name())))
    }
}

fn base_score(obj: &Objective, y: &Target) -> f64 {
    match (obj, y) {
        (Objective::Squared, Target::Real(y) | Target::Binary(y)) => y.iter().sum::<f64>() / y.len() as f64,
        (Objective::Logistic, Target::Real(y) | Target::Binary(y)) => {
            let p = (y.iter().sum::<f64>() / y.len() as f64).clamp(1e-6, 1.0 - 1e-6);
            (p / (1.0 - p)).ln()
        }
        (Objective::Aft { .. }, Target::Censored { lower, upper }) => {
            let v: Vec<f64> = lower
                .iter()
                .zip(upper)
                .map(|(l, u)| if u.is_finite() && *l > 0.0 { (l * u).sqrt() } else { l.max(1e-9) })
                .map(f64::ln)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        }
        _ => 0.0,
    }
}

impl Gbdt {
    /// Raw margin (link scale) of a row.
    pub fn margin(&self, row: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| t.nodes[t.leaf(row)].value).sum::<f64>()
    }
}

fn grow(cfg: &GbdtConfig, binned: &Binned, grad: &[(f64, f64)]) -> (Tree, Vec<(u32, Vec<u32>)>) {
    let n = grad.len();
    let all: Vec<u32> = (0..n as u32).collect();
    let total = grad.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let mut nodes = vec![Node {
        feature: None,
        threshold: 0.0,
        missing_left: false,
        left: 0,
        right: 0,
        value: cfg.learning_rate * leaf_weight(total.0, total.1, cfg.l2),
    }];
    // Open leaves: (node index, rows, histogram, best split).
    let root_hist = histogram(&all, &binned.bins, grad);
    let root_split = best_split(&root_hist, &binned.edges, cfg);
    let mut open: Vec<OpenLeaf> = vec![(0, all, root_hist, root_split)];
    let mut done: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut leaves = 1;
    while leaves < cfg.max_leaves {
        // The open leaf of greatest gain (ties: the earliest node).
        let pick = open
            .iter()
            .enumerate()
            .filter_map(|(k, o)| o.3.as_ref().map(|s| (k, s.gain)))
            .fold(None, |b: Option<(usize, f64)>, (k, g)| if b.is_none_or(|b| g > b.1) { Some((k, g)) } else { b });
        let Some((k, _)) = pick else { break };
        let (node, rows, hist, split) = open.swap_remove(k);
        let split = split.expect("picked a leaf with a split");
        let col = &binned.bins[split.feature];
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for &i in &rows {
            let b = col[i as usize] as usize;
            let left = if b == MISSING { split.missing_left } else { b <= split.bin };
            if left { l.push(i) } else { r.push(i) }
        }
        let (lh, rh) = if l.len() <= r.len() {
            let lh = histogram(&l, &binned.bins, grad);
            let rh = subtract(&hist, &lh);
            (lh, rh)
        } else {
            let rh = histogram(&r, &binned.bins, grad);
            (subtract(&hist, &rh), rh)
        };
        let sums = |h: &[Vec<Bin>]| h[0].iter().fold((0.0, 0.0), |a, b| (a.0 + b.g, a.1 + b.h));
        let mut child = |rows: Vec<u32>, h: Vec<Vec<Bin>>| {
            let (g, hh) = sums(&h);
            nodes.push(Node {
                feature: None,
                threshold: 0.0,
                missing_left: false,
                left: 0,
                right: 0,
                value: cfg.learning_rate * leaf_weight(g, hh, cfg.l2),
            });
            let idx = (nodes.len() - 1) as u32;
            let s = best_split(&h, &binned.edges, cfg);
            (idx, rows, h, s)
        };
        let lc = child(l, lh);
        let rc = child(r, rh);
        let n = &mut nodes[node as usize];
        n.feature = Some(split.feature as u32);
        n.threshold = binned.edges[split.feature][split.bin];
        n.missing_left = split.missing_left;
        n.left = lc.0;
        n.right = rc.0;
        open.push(lc);
        open.push(rc);
        leaves += 1;
    }
    for (node, rows, _, _) in open {
        done.push((node, rows));
    }
    (Tree { nodes }, done)
}

impl Learner for Gbdt {
    type Config = GbdtConfig;
    const KIND: &'static str = "gbdt";

    fn fit(cfg: &GbdtConfig, train: &Design, valid: Option<&Design>) -> Result<Self, FitError> {
        let n = train.rows();
        if n < 2 * cfg.min_leaf.max(1) {
            return Err(FitError::TooFewRows { rows: n, need: 2 * cfg.min_leaf.max(1) });
        }
        check_target(&cfg.objective, &train.y)?;
        let binned = bin_features(train, cfg.max_bins);
        let base = base_score(&cfg.objective, &train.y);
        let mut f = vec![base; n];
        let mut fv: Vec<f64> = valid.map(|v| vec![base; v.rows()]).unwrap_or_default();
        let mut trees = Vec::new();
        let mut valid_curve = Vec::new();
        let mut train_curve = Vec::new();
        let (mut best, mut best_it) = (f64::INFINITY, 0);
        for it in 0..cfg.iterations {
            let grad: Vec<(f64, f64)> = (0..n).map(|i| grad_hess(&cfg.objective, &train.y, i, f[i])).collect();
            let (tree, leaves) = grow(cfg, &binned, &grad);
            for (node, rows) in &leaves {
                let v = tree.nodes[*node as usize].value;
                for &r in rows {
                    f[r as usize] += v;
                }
            }
            train_curve.push(mean_loss(&cfg.objective, &train.y, &f));
            if let Some(v) = valid {
                for (i, m) in fv.iter_mut().enumerate() {
                    *m += tree.nodes[tree.leaf(v.row(i))].value;
                }
                let loss = mean_loss(&cfg.objective, &v.y, &fv);
                valid_curve.push(loss);
                if loss < best - 1e-12 {
                    best = loss;
                    best_it = it + 1;
                }
            } else {
                best_it = it + 1;
            }
            let single_leaf = tree.nodes.len() == 1;
            trees.push(tree);
            if single_leaf
                || (cfg.early_stopping_rounds > 0 && valid.is_some() && it + 1 - best_it >= cfg.early_stopping_rounds)
            {
                break;
            }
        }
        trees.truncate(best_it.max(1));
        Ok(Gbdt { objective: cfg.objective, base, trees, valid_curve, train_curve, best_iteration: best_it })
    }

    /// Squared: the value; logistic: the probability; AFT: the location of log T.
    fn predict(&self, row: &[f64]) -> f64 {
        let m = self.margin(row);
        match self.objective {
            Objective::Logistic => sigmoid(m),
            _ => m,
        }
    }

    /// Path contributions on the margin: each split adds (child value − node value) to its
    /// feature; with `base` and the roots' values they sum to the margin.
    fn explain(&self, row: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; row.len()];
        for t in &self.trees {
            let mut k = 0;
            while let Some(f) = t.nodes[k].feature {
                let n = &t.nodes[k];
                let v = row[f as usize];
                let left = if v.is_nan() { n.missing_left } else { v <= n.threshold };
                let next = if left { n.left } else { n.right } as usize;
                c[f as usize] += t.nodes[next].value - n.value;
                k = next;
            }
        }
        c
    }
}
