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
//! count is the sum) and derives each tree's root histogram from the last tree's leaves
//! instead of summing every row again, a leaf's gradients are gathered once, its column
//! loads are prefetched and issued four features at a time, a split sums the smaller
//! child, subtracts the larger and searches both in one parallel region (split gains are
//! computed in a vectorised loop), rows live in one buffer partitioned in place
//! (branch-free, chunked in parallel), and the last split of a tree builds no histograms.

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use t0_model::gbdt::{Gbdt, Node, Objective, Tree};

use super::dist::{aft_grad_hess, aft_loss, sigmoid};
use super::{Design, FitError, Learner, Target};

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
type OpenLeaf = (u32, Range<usize>, Hist, Option<Split>);

/// Below this many (row, feature) cells a histogram or split search runs on one thread:
/// the work is smaller than the cost of waking the pool.
const PARALLEL_CELLS: usize = 1 << 15;

#[derive(Clone, Copy)]
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

/// The best split of one feature's histogram (ties: the lower threshold, then missing
/// values right). The gains of every threshold are computed first, in a branch-free loop
/// the compiler vectorises, then scanned in order.
fn best_split_feature(j: usize, hj: &[Bin], edges: &[f64], cfg: &GbdtConfig) -> Option<Split> {
    let nb = edges.len() + 1;
    let miss = hj[MISSING];
    let (mut g, mut h, mut c) = (miss.g, miss.h, miss.n);
    for b in &hj[..nb] {
        g += b.g;
        h += b.h;
        c += b.n;
    }
    // Left-side sums of each threshold t (bins 0..=t); counts as f64 (exact) so that every
    // lane of the gain loop is the same width.
    let m = nb - 1;
    let (mut gl, mut hl, mut cl) = ([0.0; NB], [0.0; NB], [0.0; NB]);
    let (mut ga, mut ha, mut ca) = (0.0, 0.0, 0u32);
    for (t, b) in hj[..m].iter().enumerate() {
        ga += b.g;
        ha += b.h;
        ca += b.n;
        (gl[t], hl[t], cl[t]) = (ga, ha, ca as f64);
    }
    let (l2, min_leaf, parent, cf) = (cfg.l2, cfg.min_leaf as f64, score(g, h, cfg.l2), c as f64);
    // The gain of each threshold with the missing values' sums `add` on the left side;
    // NEG_INFINITY where a side is too small.
    let gains = |add: (f64, f64, f64), out: &mut [f64; NB]| {
        for (((o, &gl), &hl), &cl) in out[..m].iter_mut().zip(&gl[..m]).zip(&hl[..m]).zip(&cl[..m]) {
            let (ga, ha, ca) = (gl + add.0, hl + add.1, cl + add.2);
            let (gb, hb, cb) = (g - ga, h - ha, cf - ca);
            // `&`, not `&&`: no branches, so the loop vectorises.
            let ok = (ca >= min_leaf) & (cb >= min_leaf) & (ha >= 1e-3) & (hb >= 1e-3);
            let gain = score(ga, ha, l2) + score(gb, hb, l2) - parent;
            *o = if ok { gain } else { f64::NEG_INFINITY };
        }
    };
    let (mut right, mut left) = ([f64::NEG_INFINITY; NB], [f64::NEG_INFINITY; NB]);
    gains((0.0, 0.0, 0.0), &mut right);
    if miss.n > 0 {
        gains((miss.g, miss.h, miss.n as f64), &mut left);
    }
    // The first threshold (missing values right before left) that reaches the top gain.
    let top = right[..m].iter().chain(&left[..m]).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    if top.is_nan() || top <= 1e-12 {
        return None;
    }
    let t = (0..m).find(|&t| right[t] == top || left[t] == top)?;
    // Unseen missing values follow the larger side.
    let missing_left = if miss.n == 0 { cl[t] >= cf - cl[t] } else { right[t] != top };
    Some(Split { gain: top, feature: j, bin: t, missing_left })
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
const CHUNK: usize = 1 << 13;

/// How many rows ahead a leaf's histogram asks for the bin it will read.
const PREFETCH: usize = 32;

/// Hint the cache to load `col[r]`: a leaf's rows are scattered over the column, and
/// waiting for each miss is what bounds its histogram.
#[inline(always)]
#[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "the prefetch intrinsic is unsafe by signature"))]
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

/// `out[k] = v[rows[k]]` for every k, prefetching ahead (`out` keeps its capacity).
fn gather(out: &mut Vec<f32>, v: &[f32], rows: &[u32]) {
    out.clear();
    for (k, &r) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(k + PREFETCH) {
            prefetch(v, ahead as usize);
        }
        out.push(v[r as usize]);
    }
}

/// Buffers a fit reuses from split to split and tree to tree: large allocations cost page
/// faults, and a tree makes dozens of them.
#[derive(Default)]
struct Work {
    /// The rows of every leaf of the tree being grown: each leaf owns a contiguous range.
    rows: Vec<u32>,
    /// The right-hand rows of a partition before they are copied back.
    scratch: Vec<u32>,
    /// A leaf's gathered gradients and Hessians.
    g: Vec<f32>,
    h: Vec<f32>,
}

/// Add the rows of a leaf (None: every row, in order) to the histograms of features
/// `[j0, j0 + out.len() / NB)`, block by block. `g` and `h` are the rows' gradients and
/// Hessians in the order of `rows`. Each feature receives its rows in order, so a sum does
/// not depend on how features are grouped.
fn sum_group(rows: Option<&[u32]>, g: &[f32], h: Option<&[f32]>, binned: &Binned, j0: usize, out: &mut [Bin]) {
    let n = g.len();
    let Some(rows) = rows else {
        for lo in (0..n).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(n);
            for (k, hist) in out.chunks_exact_mut(NB).enumerate() {
                let col: &[u8] = &binned.bins[j0 + k];
                let hist: &mut [Bin; NB] = hist.try_into().expect("NB bins");
                match h {
                    None => {
                        for (&b, &g) in col[lo..hi].iter().zip(&g[lo..hi]) {
                            let bin = &mut hist[b as usize];
                            bin.g += g as f64;
                            bin.n += 1;
                        }
                    }
                    Some(h) => {
                        for ((&b, &g), &h) in col[lo..hi].iter().zip(&g[lo..hi]).zip(&h[lo..hi]) {
                            let bin = &mut hist[b as usize];
                            bin.g += g as f64;
                            bin.h += h as f64;
                            bin.n += 1;
                        }
                    }
                }
            }
        }
        return;
    };
    // A leaf's rows four features at a time: each row index and gradient is read once for
    // four columns, and four independent loads are in flight.
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

/// A built histogram and the best split found in it (None: not searched, or no split).
type Searched = (Hist, Option<Split>);

/// One pass over groups of features (one group per thread, a single group for small
/// work): sums the histogram of `rows` (None: every row), derives its sibling as
/// `parent − it` when a parent is given, and searches each for its best split where
/// `search` asks. One parallel region per split: waking the pool costs more than most
/// leaves' work. Best splits are reduced in feature order (ties: the lower feature).
fn build(
    rows: Option<&[u32]>,
    parent: Option<&[Bin]>,
    search: (bool, bool),
    binned: &Binned,
    grads: &Grads,
    bufs: (&mut Vec<f32>, &mut Vec<f32>),
    cfg: &GbdtConfig,
) -> (Searched, Searched) {
    // Gather the leaf's gradients once, contiguous, rather than once per feature.
    let (g, h): (&[f32], Option<&[f32]>) = match rows {
        None => (&grads.g, grads.h.as_deref()),
        Some(rows) => {
            gather(bufs.0, &grads.g, rows);
            if let Some(h) = &grads.h {
                gather(bufs.1, h, rows);
            }
            (bufs.0, grads.h.as_ref().map(|_| bufs.1.as_slice()))
        }
    };
    let d = binned.bins.len();
    let mut own = vec![Bin::default(); d * NB];
    let mut sib = if parent.is_some() { vec![Bin::default(); d * NB] } else { Vec::new() };
    let per = if g.len() * d >= PARALLEL_CELLS { d.div_ceil(rayon::current_num_threads()).max(1) } else { d.max(1) };
    let group = |(k, (own, sib)): (usize, (&mut [Bin], &mut [Bin]))| {
        let j0 = k * per;
        sum_group(rows, g, h, binned, j0, own);
        if h.is_none() {
            // Every Hessian is 1: the sum is the count, exactly.
            for b in own.iter_mut() {
                b.h = b.n as f64;
            }
        }
        if let Some(parent) = parent {
            let parent = &parent[j0 * NB..j0 * NB + own.len()];
            for ((s, a), b) in sib.iter_mut().zip(parent).zip(own.iter()) {
                *s = Bin { g: a.g - b.g, h: a.h - b.h, n: a.n - b.n };
            }
        }
        let find = |hist: &[Bin], on: bool| {
            let per_feature = hist.chunks_exact(NB).enumerate().filter(|_| on);
            first_best(per_feature.map(|(q, hj)| best_split_feature(j0 + q, hj, &binned.edges[j0 + q], cfg)))
        };
        (find(own, search.0), find(sib, search.1))
    };
    // A zero-length sibling still needs one (empty) chunk per group.
    let sib_per = if sib.is_empty() { 0 } else { per * NB };
    let found: Vec<(Option<Split>, Option<Split>)> = if per < d {
        let sibs: Vec<&mut [Bin]> = if sib_per == 0 {
            (0..d.div_ceil(per)).map(|_| <&mut [Bin]>::default()).collect()
        } else {
            sib.chunks_mut(sib_per).collect()
        };
        own.par_chunks_mut(per * NB).zip(sibs).enumerate().map(group).collect()
    } else {
        vec![group((0, (&mut own, &mut sib)))]
    };
    let so = first_best(found.iter().map(|f| f.0));
    let ss = first_best(found.iter().map(|f| f.1));
    ((own, so), (sib, ss))
}

/// The split of greatest gain, in the order given (ties: the first).
fn first_best(splits: impl Iterator<Item = Option<Split>>) -> Option<Split> {
    splits.flatten().fold(None, |b, s| if b.as_ref().is_none_or(|b: &Split| s.gain > b.gain) { Some(s) } else { b })
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

/// Reorder a leaf's rows so those that go left of `split` come first, each side in row
/// order; returns how many go left. Branch-free: which side a row takes is data, not control
/// flow, so the loop does not mispredict. Large leaves are cut into fixed chunks partitioned
/// in parallel and joined in order.
fn partition(rows: &mut [u32], scratch: &mut [u32], binned: &Binned, split: &Split) -> usize {
    let mut goes_left = [false; NB];
    for (b, l) in goes_left.iter_mut().enumerate() {
        *l = if b == MISSING { split.missing_left } else { b <= split.bin };
    }
    let col = &binned.bins[split.feature];
    // Lefts are compacted to the front of `rows` in place (a left is never written past
    // where it was read), rights go to `scratch`; returns the count of lefts.
    let part = |rows: &mut [u32], scratch: &mut [u32]| {
        let (mut nl, mut nr) = (0, 0);
        for k in 0..rows.len() {
            if let Some(&ahead) = rows.get(k + PREFETCH) {
                prefetch(col, ahead as usize);
            }
            let i = rows[k];
            let left = goes_left[col[i as usize] as usize];
            rows[nl] = i;
            scratch[nr] = i;
            nl += left as usize;
            nr += !left as usize;
        }
        nl
    };
    let n = rows.len();
    let scratch = &mut scratch[..n];
    if n <= CHUNK {
        let nl = part(rows, scratch);
        rows[nl..].copy_from_slice(&scratch[..n - nl]);
        return nl;
    }
    let lefts: Vec<usize> =
        rows.par_chunks_mut(CHUNK).zip(scratch.par_chunks_mut(CHUNK)).map(|(r, s)| part(r, s)).collect();
    // Join in chunk order: a chunk's lefts move towards the front (never into a later
    // chunk), then the rights come back from `scratch`.
    let mut nl = 0;
    for (c, &l) in lefts.iter().enumerate() {
        rows.copy_within(c * CHUNK..c * CHUNK + l, nl);
        nl += l;
    }
    let mut at = nl;
    for (c, &l) in lefts.iter().enumerate() {
        let lo = c * CHUNK;
        let nr = CHUNK.min(n - lo) - l;
        rows[at..at + nr].copy_from_slice(&scratch[lo..lo + nr]);
        at += nr;
    }
    nl
}

/// A finished leaf: its node, its rows (a range of `Work::rows`) and its histogram (empty
/// when nobody asked for it).
type Leaf = (u32, Range<usize>, Hist);

/// Grow one tree from the histogram of all rows. With `leaf_hists` every leaf keeps its
/// histogram (the last split's children get theirs built too); otherwise the last split
/// builds none.
fn grow(
    cfg: &GbdtConfig,
    binned: &Binned,
    grads: &Grads,
    root: Option<Hist>,
    work: &mut Work,
    leaf_hists: bool,
) -> (Tree, Vec<Leaf>) {
    let n = grads.g.len();
    work.rows.clear();
    work.rows.extend(0..n as u32);
    work.scratch.resize(n, 0);
    let node = |value: f64, rows: usize| Node {
        feature: None,
        threshold: 0.0,
        missing_left: false,
        left: 0,
        right: 0,
        value,
        cover: rows as f64,
    };
    let (root, root_split) = match root {
        None => build(None, None, (true, false), binned, grads, (&mut work.g, &mut work.h), cfg).0,
        Some(root) => {
            let split = search_all(&root, binned, cfg);
            (root, split)
        }
    };
    let (g, h) = sums(&root);
    let mut nodes = vec![node(cfg.learning_rate * leaf_weight(g, h, cfg.l2), n)];
    let mut open: Vec<OpenLeaf> = vec![(0, 0..n, root, root_split)];
    let mut leaves = 1;
    while leaves < cfg.max_leaves {
        // The open leaf of greatest gain (ties: the earliest node).
        let pick = open
            .iter()
            .enumerate()
            .filter_map(|(k, o)| o.3.as_ref().map(|s| (k, s.gain)))
            .fold(None, |b: Option<(usize, f64)>, (k, g)| if b.is_none_or(|b| g > b.1) { Some((k, g)) } else { b });
        let Some((k, _)) = pick else { break };
        let (parent, range, hist, split) = open.swap_remove(k);
        let split = split.expect("picked a leaf with a split");
        let nl = partition(&mut work.rows[range.clone()], &mut work.scratch, binned, &split);
        let (l, r) = (range.start..range.start + nl, range.start + nl..range.end);
        leaves += 1;
        // A leaf with fewer than two minimum leaves of rows cannot be split, nor can any
        // once the tree is full.
        let splittable = |r: &Range<usize>| leaves < cfg.max_leaves && r.len() >= 2 * cfg.min_leaf;
        // Unless asked, the last split's children are never split: their sums come from
        // the rows and nobody needs their histograms.
        let ((lh, ls), (rh, rs)) = if leaves == cfg.max_leaves && !leaf_hists {
            ((Vec::new(), None), (Vec::new(), None))
        } else {
            // The smaller child is summed from its rows, the larger is the parent minus it.
            let small_left = l.len() <= r.len();
            let (small, large) = if small_left { (&l, &r) } else { (&r, &l) };
            let bufs = (&mut work.g, &mut work.h);
            let rows = Some(&work.rows[small.clone()]);
            let (s, b) = build(rows, Some(&hist), (splittable(small), splittable(large)), binned, grads, bufs, cfg);
            if small_left { (s, b) } else { (b, s) }
        };
        drop(hist);
        let mut child = |range: Range<usize>, h: Hist, s: Option<Split>| {
            let (g, hh) = if h.is_empty() { row_sums(&work.rows[range.clone()], grads) } else { sums(&h) };
            nodes.push(node(cfg.learning_rate * leaf_weight(g, hh, cfg.l2), range.len()));
            ((nodes.len() - 1) as u32, range, h, s)
        };
        let lc = child(l, lh, ls);
        let rc = child(r, rh, rs);
        let p = &mut nodes[parent as usize];
        p.feature = Some(split.feature as u32);
        p.threshold = binned.edges[split.feature][split.bin];
        p.missing_left = split.missing_left;
        p.left = lc.0;
        p.right = rc.0;
        open.push(lc);
        open.push(rc);
    }
    let done = open.into_iter().map(|(node, range, hist, _)| (node, range, hist)).collect();
    (Tree { nodes }, done)
}

/// The best split over every feature of a histogram (ties: the lower feature).
fn search_all(hist: &[Bin], binned: &Binned, cfg: &GbdtConfig) -> Option<Split> {
    let found: Vec<Option<Split>> =
        hist.par_chunks(NB).enumerate().map(|(j, hj)| best_split_feature(j, hj, &binned.edges[j], cfg)).collect();
    first_best(found.into_iter())
}

/// The histogram of every row for the next tree of a squared-error fit, from this tree's
/// leaves: the gradient of row i is f_i − y_i and the tree adds its leaf's value v to f_i,
/// so each bin's gradient sum grows by v times the leaf's count in that bin. This replaces
/// a pass over every row and feature by one over the leaves' histograms.
fn next_root_squared(tree: &Tree, leaves: &[Leaf]) -> Hist {
    let mut root = vec![Bin::default(); leaves[0].2.len()];
    for (node, _, hist) in leaves {
        let v = tree.nodes[*node as usize].value;
        for (r, b) in root.iter_mut().zip(hist) {
            r.g += b.g + v * b.n as f64;
            r.n += b.n;
            r.h += b.h;
        }
    }
    root
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
        let squared = cfg.objective == Objective::Squared;
        let mut work = Work::default();
        // Squared error: every tree after the first gets its root histogram from the last.
        let mut root: Option<Hist> = None;
        for it in 0..cfg.iterations {
            let grads = if squared {
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
            let (tree, leaves) = grow(cfg, &binned, &grads, root.take(), &mut work, squared);
            for (node, range, _) in &leaves {
                let v = tree.nodes[*node as usize].value;
                for &r in &work.rows[range.clone()] {
                    f[r as usize] += v;
                }
            }
            if squared {
                root = Some(next_root_squared(&tree, &leaves));
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
}
