//! Histogram gradient-boosted trees: features binned once on the training rows (up to 255
//! quantile bins plus one for missing values), trees grown leaf-wise (best gain first) with
//! the sibling histogram obtained by subtraction, missing values routed to whichever side
//! gains more, early stopping on the validation rows, and pluggable objectives: squared
//! error, logistic, and XGBoost's accelerated-failure-time loss (normal, logistic, extreme;
//! right- and interval-censored bounds).
//!
//! Deterministic by construction: histograms are built per feature in row order (features
//! run in parallel, each summed by one thread), ties between splits go to the lower feature
//! and threshold, and nothing is sampled at random (bin edges come from evenly spaced rows).
//!
//! Speed, as measured by bench/train.sh against scikit-learn's HistGradientBoosting: per-row
//! gradients are f32 (as scikit-learn's; sums are f64), the squared loss skips Hessians (the
//! count is the sum), a leaf's gradients are gathered once, its column loads are prefetched
//! and issued four features at a time, partitions are branch-free and chunked in parallel,
//! and the last split of a tree builds no histograms.

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

/// Per-feature bin edges of the training rows, and the bins of every row, column-major.
struct Binned {
    edges: Vec<Vec<f64>>,
    /// `bins[j][i]`: the bin of row i, feature j; [`MISSING`] for a missing value.
    bins: Vec<Vec<u8>>,
}

const MISSING: usize = 255;

/// Rows that bin edges are computed from.
const BIN_SAMPLE: usize = 200_000;

fn bin_features(x: &Design, max_bins: usize) -> Binned {
    let (n, d) = (x.rows(), x.d);
    let max_bins = max_bins.clamp(2, 255);
    let cols: Vec<(Vec<f64>, Vec<u8>)> = (0..d)
        .into_par_iter()
        .map(|j| {
            // Edges come from at most BIN_SAMPLE evenly spaced rows (as scikit-learn bins from
            // a subsample): sorting a million values per feature costs more than the trees.
            let step = n.div_ceil(BIN_SAMPLE).max(1);
            let mut v: Vec<f64> = (0..n).step_by(step).map(|i| x.x[i * d + j]).filter(|v| !v.is_nan()).collect();
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

/// Bins per feature in a histogram (the last is for missing values).
const NB: usize = 256;

/// Per-feature histograms of one leaf, flat: feature `j` owns `[j * NB, (j + 1) * NB)`.
type Hist = Vec<Bin>;

/// An open leaf: node index, rows, histogram, best split.
type OpenLeaf = (u32, Vec<u32>, Hist, Option<Split>);

/// Below this many (row, feature) cells a histogram or split search runs on one thread:
/// the work is smaller than the cost of waking the pool.
const PARALLEL_CELLS: usize = 1 << 15;

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

/// The best split of one feature's histogram (ties: the lower threshold).
fn best_split_feature(j: usize, hj: &[Bin], edges: &[f64], cfg: &GbdtConfig) -> Option<Split> {
    let mut best: Option<Split> = None;
    let nb = edges.len() + 1;
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
    best
}

/// The best split over all features (ties: the lower feature, then the lower threshold).
fn best_split(hist: &[Bin], edges: &[Vec<f64>], cfg: &GbdtConfig, rows: usize) -> Option<Split> {
    let per = |(j, hj): (usize, &[Bin])| best_split_feature(j, hj, &edges[j], cfg);
    let found: Vec<Option<Split>> = if rows * edges.len() >= PARALLEL_CELLS {
        hist.par_chunks(NB).enumerate().map(per).collect()
    } else {
        hist.chunks(NB).enumerate().map(per).collect()
    };
    found
        .into_iter()
        .flatten()
        .fold(None, |b, s| if b.as_ref().is_none_or(|b: &Split| s.gain > b.gain) { Some(s) } else { b })
}

/// Gradients and Hessians of the training rows; `h` is None when every Hessian is 1
/// (squared error), so histograms take the Hessian sum from the count.
struct Grads {
    g: Vec<f32>,
    h: Option<Vec<f32>>,
}

/// Rows per block of histogram building: a block's gradients stay in cache while every
/// feature of a thread's group is summed over them.
const BLOCK: usize = 65536;

/// Rows per chunk of a parallel partition (fixed, so the result is the same on any
/// number of threads).
const CHUNK: usize = 1 << 15;

/// How many rows ahead a leaf's histogram asks for the bin it will read.
const PREFETCH: usize = 32;

/// Hint the cache to load `col[r]`: a leaf's rows are scattered over the column, and
/// waiting for each miss is what bounds its histogram.
#[inline(always)]
fn prefetch<T>(col: &[T], r: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(col.as_ptr().wrapping_add(r) as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (col, r);
}

/// `v[rows[k]]` for every k, prefetching ahead.
fn gather(v: &[f32], rows: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len());
    for (k, &r) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(k + PREFETCH) {
            prefetch(v, ahead as usize);
        }
        out.push(v[r as usize]);
    }
    out
}

/// The histograms of `rows` (None: every row, in order). Each feature is summed by one
/// thread in row order, so the sums do not depend on the thread count or the grouping.
fn histogram(rows: Option<&[u32]>, binned: &Binned, grads: &Grads) -> Hist {
    // Gather the leaf's gradients once, contiguous, rather than once per feature.
    let gathered;
    let (g, h): (&[f32], Option<&[f32]>) = match rows {
        None => (&grads.g, grads.h.as_deref()),
        Some(rows) => {
            let og = gather(&grads.g, rows);
            let oh = grads.h.as_ref().map(|h| gather(h, rows));
            gathered = (og, oh);
            (&gathered.0, gathered.1.as_deref())
        }
    };
    let n = g.len();
    let d = binned.bins.len();
    // Sum features [j0, j0 + out.len() / NB) over every row, block by block.
    let group = |(j0, out): (usize, &mut [Bin])| {
        for lo in (0..n).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(n);
            for (k, hist) in out.chunks_exact_mut(NB).enumerate() {
                let col: &[u8] = &binned.bins[j0 + k];
                let hist: &mut [Bin; NB] = hist.try_into().expect("NB bins");
                match (rows, h) {
                    (None, None) => {
                        for (&b, &g) in col[lo..hi].iter().zip(&g[lo..hi]) {
                            let bin = &mut hist[b as usize];
                            bin.g += g as f64;
                            bin.n += 1;
                        }
                    }
                    (None, Some(h)) => {
                        for ((&b, &g), &h) in col[lo..hi].iter().zip(&g[lo..hi]).zip(&h[lo..hi]) {
                            let bin = &mut hist[b as usize];
                            bin.g += g as f64;
                            bin.h += h as f64;
                            bin.n += 1;
                        }
                    }
                    (Some(_), _) => unreachable!("leaf rows are summed four features at a time"),
                }
            }
        }
    };
    // A leaf's rows, block by block, four features at a time: each row index and gradient
    // is read once for four columns, and four independent loads are in flight.
    let leaf = |(j0, out): (usize, &mut [Bin])| {
        let rows = rows.expect("a leaf's rows");
        let mut hists: Vec<&mut [Bin]> = out.chunks_exact_mut(NB).collect();
        for lo in (0..n).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(n);
            for (q, quad) in hists.chunks_mut(4).enumerate() {
                let cols = &binned.bins[j0 + 4 * q..j0 + 4 * q + quad.len()];
                match (quad.len(), h) {
                    (4, None) => scatter::<4, false>(cols, quad, rows, g, &[], lo, hi),
                    (4, Some(h)) => scatter::<4, true>(cols, quad, rows, g, h, lo, hi),
                    (3, None) => scatter::<3, false>(cols, quad, rows, g, &[], lo, hi),
                    (3, Some(h)) => scatter::<3, true>(cols, quad, rows, g, h, lo, hi),
                    (2, None) => scatter::<2, false>(cols, quad, rows, g, &[], lo, hi),
                    (2, Some(h)) => scatter::<2, true>(cols, quad, rows, g, h, lo, hi),
                    (_, None) => scatter::<1, false>(cols, quad, rows, g, &[], lo, hi),
                    (_, Some(h)) => scatter::<1, true>(cols, quad, rows, g, h, lo, hi),
                }
            }
        }
    };
    let mut hist = vec![Bin::default(); d * NB];
    if n * d >= PARALLEL_CELLS {
        // One group of features per thread (the grouping cannot change a sum).
        let per = d.div_ceil(rayon::current_num_threads()).max(1);
        let groups = hist.par_chunks_mut(per * NB).enumerate().map(|(k, out)| (k * per, out));
        if rows.is_some() { groups.for_each(leaf) } else { groups.for_each(group) }
    } else if rows.is_some() {
        leaf((0, &mut hist));
    } else {
        group((0, &mut hist));
    }
    if h.is_none() {
        // Every Hessian is 1: the sum is the count, exactly.
        for b in &mut hist {
            b.h = b.n as f64;
        }
    }
    hist
}

/// Add rows `rows[lo..hi]` (gradients `g[lo..hi]`, Hessians `h[lo..hi]` when `HESS`) to the
/// histograms of `K` columns. Each histogram still receives its rows in order.
fn scatter<const K: usize, const HESS: bool>(
    cols: &[Vec<u8>],
    hists: &mut [&mut [Bin]],
    rows: &[u32],
    g: &[f32],
    h: &[f32],
    lo: usize,
    hi: usize,
) {
    let cols: [&[u8]; K] = std::array::from_fn(|q| cols[q].as_slice());
    let hists: &mut [&mut [Bin]; K] = hists.try_into().expect("K histograms");
    for k in lo..hi {
        let r = rows[k] as usize;
        if let Some(&ahead) = rows.get(k + PREFETCH) {
            for col in cols {
                prefetch(col, ahead as usize);
            }
        }
        let gk = g[k] as f64;
        let hk = if HESS { h[k] as f64 } else { 0.0 };
        for q in 0..K {
            let bin = &mut hists[q][cols[q][r] as usize];
            bin.g += gk;
            if HESS {
                bin.h += hk;
            }
            bin.n += 1;
        }
    }
}

fn subtract(parent: &[Bin], child: &[Bin]) -> Hist {
    parent.iter().zip(child).map(|(a, b)| Bin { g: a.g - b.g, h: a.h - b.h, n: a.n - b.n }).collect()
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

/// The rows of a leaf that go left and right of `split`, each in row order. Branch-free:
/// which side a row takes is data, not control flow, so the loop does not mispredict.
/// Large leaves are cut into fixed chunks partitioned in parallel and joined in order.
fn partition(rows: &[u32], binned: &Binned, split: &Split) -> (Vec<u32>, Vec<u32>) {
    let mut goes_left = [false; NB];
    for (b, l) in goes_left.iter_mut().enumerate() {
        *l = if b == MISSING { split.missing_left } else { b <= split.bin };
    }
    let col = &binned.bins[split.feature];
    let part = |rows: &[u32]| {
        let (mut l, mut r) = (vec![0u32; rows.len()], vec![0u32; rows.len()]);
        let (mut nl, mut nr) = (0, 0);
        for (k, &i) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(k + PREFETCH) {
                prefetch(col, ahead as usize);
            }
            let left = goes_left[col[i as usize] as usize];
            l[nl] = i;
            r[nr] = i;
            nl += left as usize;
            nr += !left as usize;
        }
        l.truncate(nl);
        r.truncate(nr);
        (l, r)
    };
    if rows.len() <= CHUNK {
        return part(rows);
    }
    let parts: Vec<(Vec<u32>, Vec<u32>)> = rows.par_chunks(CHUNK).map(part).collect();
    let (mut l, mut r) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    for (a, b) in parts {
        l.extend_from_slice(&a);
        r.extend_from_slice(&b);
    }
    (l, r)
}

fn grow(cfg: &GbdtConfig, binned: &Binned, grads: &Grads) -> (Tree, Vec<(u32, Vec<u32>)>) {
    let n = grads.g.len();
    let all: Vec<u32> = (0..n as u32).collect();
    let node = |value: f64| Node { feature: None, threshold: 0.0, missing_left: false, left: 0, right: 0, value };
    let root_hist = histogram(None, binned, grads);
    let (g, h) = sums(&root_hist);
    let mut nodes = vec![node(cfg.learning_rate * leaf_weight(g, h, cfg.l2))];
    let root_split = best_split(&root_hist, &binned.edges, cfg, n);
    let mut open: Vec<OpenLeaf> = vec![(0, all, root_hist, root_split)];
    let mut leaves = 1;
    while leaves < cfg.max_leaves {
        // The open leaf of greatest gain (ties: the earliest node).
        let pick = open
            .iter()
            .enumerate()
            .filter_map(|(k, o)| o.3.as_ref().map(|s| (k, s.gain)))
            .fold(None, |b: Option<(usize, f64)>, (k, g)| if b.is_none_or(|b| g > b.1) { Some((k, g)) } else { b });
        let Some((k, _)) = pick else { break };
        let (parent, rows, hist, split) = open.swap_remove(k);
        let split = split.expect("picked a leaf with a split");
        let (l, r) = partition(&rows, binned, &split);
        drop(rows);
        leaves += 1;
        // The last split's children are never split: their sums come from the rows and
        // nobody needs their histograms.
        let last = leaves == cfg.max_leaves;
        let (lh, rh) = if last {
            (Vec::new(), Vec::new())
        } else if l.len() <= r.len() {
            let lh = histogram(Some(&l), binned, grads);
            let rh = subtract(&hist, &lh);
            (lh, rh)
        } else {
            let rh = histogram(Some(&r), binned, grads);
            (subtract(&hist, &rh), rh)
        };
        drop(hist);
        let mut child = |rows: Vec<u32>, h: Hist| {
            let (g, hh) = if h.is_empty() { row_sums(&rows, grads) } else { sums(&h) };
            nodes.push(node(cfg.learning_rate * leaf_weight(g, hh, cfg.l2)));
            let idx = (nodes.len() - 1) as u32;
            // A leaf with fewer than two minimum leaves of rows cannot be split.
            let s = if h.is_empty() || rows.len() < 2 * cfg.min_leaf {
                None
            } else {
                best_split(&h, &binned.edges, cfg, rows.len())
            };
            (idx, rows, h, s)
        };
        let lc = child(l, lh);
        let rc = child(r, rh);
        let p = &mut nodes[parent as usize];
        p.feature = Some(split.feature as u32);
        p.threshold = binned.edges[split.feature][split.bin];
        p.missing_left = split.missing_left;
        p.left = lc.0;
        p.right = rc.0;
        open.push(lc);
        open.push(rc);
    }
    let done = open.into_iter().map(|(node, rows, _, _)| (node, rows)).collect();
    (Tree { nodes }, done)
}

/// Gradient and Hessian sums of a leaf from its histogram (any one feature holds them all).
fn sums(h: &[Bin]) -> (f64, f64) {
    h[..NB].iter().fold((0.0, 0.0), |a, b| (a.0 + b.g, a.1 + b.h))
}

/// Gradient and Hessian sums of a leaf from its rows.
fn row_sums(rows: &[u32], grads: &Grads) -> (f64, f64) {
    rows.iter().fold((0.0, 0.0), |a, &r| {
        let r = r as usize;
        (a.0 + grads.g[r] as f64, a.1 + grads.h.as_ref().map_or(1.0, |h| h[r] as f64))
    })
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
            let grads = if cfg.objective == Objective::Squared {
                let y = train.y.real()?;
                Grads { g: (0..n).into_par_iter().map(|i| (f[i] - y[i]) as f32).collect(), h: None }
            } else {
                let (g, h) = (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let (g, h) = grad_hess(&cfg.objective, &train.y, i, f[i]);
                        (g as f32, h as f32)
                    })
                    .unzip();
                Grads { g, h: Some(h) }
            };
            let (tree, leaves) = grow(cfg, &binned, &grads);
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
