//! Exact path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, "Consistent individualized
//! feature attribution for tree ensembles", Algorithm 2): the Shapley values of a tree's
//! output when a missing feature is integrated out along the tree with each node's training
//! cover. Per tree, the values plus the cover-weighted mean leaf value add up to the tree's
//! output for the row, exactly (up to rounding).
//!
//! The path of unique features down to a node lives in one flat scratch buffer: each level
//! copies its parent's path into the next free segment, so a row costs no allocation once the
//! buffer has grown to (depth+1)(depth+2)/2 elements.

use crate::gbdt::Tree;

#[derive(Clone, Copy, Default, Debug)]
struct PathElem {
    /// Feature index; -1 for the root's dummy element.
    feature: i64,
    /// Fraction of the paths through here that follow the training covers (feature absent).
    zero: f64,
    /// 1 when the row itself goes this way (feature present), else 0.
    one: f64,
    /// The permutation weight of this path length.
    weight: f64,
}

/// Reusable scratch space for [`Tree`] SHAP values.
#[derive(Default)]
pub struct Scratch {
    path: Vec<PathElem>,
}

/// The depth of the deepest leaf (a lone leaf has depth 0).
pub fn depth(tree: &Tree) -> usize {
    let mut max = 0;
    let mut stack = vec![(0usize, 0usize)];
    while let Some((k, d)) = stack.pop() {
        let n = &tree.nodes[k];
        if n.feature.is_some() {
            stack.push((n.left as usize, d + 1));
            stack.push((n.right as usize, d + 1));
        } else {
            max = max.max(d);
        }
    }
    max
}

/// The cover-weighted mean of the tree's leaf values: its output with every feature absent.
pub fn expected_value(tree: &Tree) -> f64 {
    let root = tree.nodes[0].cover;
    if root <= 0.0 {
        return tree.nodes[0].value;
    }
    tree.nodes.iter().filter(|n| n.feature.is_none()).map(|n| n.value * n.cover / root).sum()
}

thread_local! {
    /// One scratch buffer per thread: explaining a row allocates nothing once it has grown.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Adds every tree's SHAP values for `row` to `phi`, with this thread's scratch buffer.
pub fn add_all(trees: &[Tree], row: &[f64], phi: &mut [f64]) {
    SCRATCH.with_borrow_mut(|s| {
        for t in trees {
            s.add(t, row, phi);
        }
    });
}

impl Scratch {
    /// Adds the tree's SHAP values for `row` to `phi` (one per feature).
    pub fn add(&mut self, tree: &Tree, row: &[f64], phi: &mut [f64]) {
        // A binary tree of n nodes is at most n / 2 deep; each level's path is one longer.
        let d = tree.nodes.len() / 2;
        let need = (d + 1) * (d + 2) / 2;
        if self.path.len() < need {
            self.path.resize(need, PathElem::default());
        }
        let (first, rest) = self.path.split_at_mut(0);
        recurse(tree, row, phi, first, rest, 0, 0, (1.0, 1.0, -1));
    }
}

/// Grow the path by one element: (zero, one) fractions of feature `feature`.
fn extend(path: &mut [PathElem], depth: usize, zero: f64, one: f64, feature: i64) {
    path[depth] = PathElem { feature, zero, one, weight: if depth == 0 { 1.0 } else { 0.0 } };
    let l1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / l1;
        path[i].weight = zero * path[i].weight * (depth - i) as f64 / l1;
    }
}

/// Undo the extension of element `at` (the feature is split on again below).
fn unwind(path: &mut [PathElem], depth: usize, at: usize) {
    let (one, zero) = (path[at].one, path[at].zero);
    let l1 = (depth + 1) as f64;
    let mut next = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let t = path[i].weight;
            path[i].weight = next * l1 / ((i + 1) as f64 * one);
            next = t - path[i].weight * zero * (depth - i) as f64 / l1;
        } else {
            path[i].weight = path[i].weight * l1 / (zero * (depth - i) as f64);
        }
    }
    for i in at..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total weight of the path were element `at` unwound, without unwinding it.
fn unwound_sum(path: &[PathElem], depth: usize, at: usize) -> f64 {
    let (one, zero) = (path[at].one, path[at].zero);
    let mut next = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let t = next / ((i + 1) as f64 * one);
            total += t;
            next = path[i].weight - t * zero * (depth - i) as f64;
        } else {
            total += path[i].weight / (zero * (depth - i) as f64);
        }
    }
    total * (depth + 1) as f64
}

/// One node of the recursion. `parent` holds the parent's path (its first `depth` elements
/// are copied), `space` the free buffer this node's path and its descendants' paths use.
/// `incoming` is (zero fraction, one fraction, feature) of the edge into this node.
#[expect(clippy::too_many_arguments)] // the recursion's state; a struct would only rename it
fn recurse(
    tree: &Tree,
    row: &[f64],
    phi: &mut [f64],
    parent: &[PathElem],
    space: &mut [PathElem],
    node: usize,
    depth: usize,
    incoming: (f64, f64, i64),
) {
    let (mine, rest) = space.split_at_mut(depth + 1);
    mine[..depth].copy_from_slice(&parent[..depth]);
    extend(mine, depth, incoming.0, incoming.1, incoming.2);
    let n = &tree.nodes[node];
    let Some(f) = n.feature else {
        for i in 1..=depth {
            let w = unwound_sum(mine, depth, i);
            let el = mine[i];
            phi[el.feature as usize] += w * (el.one - el.zero) * n.value;
        }
        return;
    };
    let v = row[f as usize];
    let left = if v.is_nan() { n.missing_left } else { v <= n.threshold };
    let (hot, cold) = if left { (n.left, n.right) } else { (n.right, n.left) };
    let (hot, cold) = (hot as usize, cold as usize);
    let (mut zero, mut one, mut depth) = (1.0, 1.0, depth);
    if let Some(k) = (1..=depth).find(|&k| mine[k].feature == i64::from(f)) {
        zero = mine[k].zero;
        one = mine[k].one;
        unwind(mine, depth, k);
        depth -= 1;
    }
    let cover = n.cover;
    let frac = |c: usize| tree.nodes[c].cover / cover;
    let feature = i64::from(f);
    recurse(tree, row, phi, mine, rest, hot, depth + 1, (frac(hot) * zero, one, feature));
    recurse(tree, row, phi, mine, rest, cold, depth + 1, (frac(cold) * zero, 0.0, feature));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gbdt::{Node, Tree};

    fn split(feature: u32, threshold: f64, left: u32, right: u32, cover: f64) -> Node {
        Node { feature: Some(feature), threshold, missing_left: true, left, right, value: 0.0, cover }
    }
    fn leaf(value: f64, cover: f64) -> Node {
        Node { feature: None, threshold: 0.0, missing_left: false, left: 0, right: 0, value, cover }
    }

    /// Brute-force Shapley values of the path-dependent value function v(S) (the tree's
    /// output with the features outside S integrated out by cover), over every subset.
    fn brute(tree: &Tree, row: &[f64]) -> Vec<f64> {
        fn value(tree: &Tree, row: &[f64], s: u32, k: usize) -> f64 {
            let n = &tree.nodes[k];
            let Some(f) = n.feature else { return n.value };
            if s & (1 << f) != 0 {
                let v = row[f as usize];
                let left = if v.is_nan() { n.missing_left } else { v <= n.threshold };
                value(tree, row, s, if left { n.left } else { n.right } as usize)
            } else {
                let (l, r) = (&tree.nodes[n.left as usize], &tree.nodes[n.right as usize]);
                (l.cover * value(tree, row, s, n.left as usize) + r.cover * value(tree, row, s, n.right as usize))
                    / n.cover
            }
        }
        let m = row.len();
        let fact = |k: usize| (1..=k).map(|v| v as f64).product::<f64>();
        (0..m)
            .map(|j| {
                (0u32..1 << m)
                    .filter(|s| s & (1 << j) == 0)
                    .map(|s| {
                        let k = s.count_ones() as usize;
                        let w = fact(k) * fact(m - k - 1) / fact(m);
                        w * (value(tree, row, s | (1 << j), 0) - value(tree, row, s, 0))
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn tree_shap_equals_brute_force_shapley_values_and_adds_up() {
        // Feature 0 is split on twice along one path (the unwind case), feature 2 sits
        // below both, and one row misses feature 1.
        let tree = Tree {
            nodes: vec![
                split(0, 0.5, 1, 2, 100.0),
                split(1, 1.0, 3, 4, 60.0),
                split(0, 2.0, 5, 6, 40.0),
                leaf(1.5, 25.0),
                split(2, -1.0, 7, 8, 35.0),
                leaf(-2.0, 10.0),
                split(1, 0.0, 9, 10, 30.0),
                leaf(0.25, 5.0),
                leaf(3.0, 30.0),
                leaf(-0.5, 12.0),
                leaf(4.0, 18.0),
            ],
        };
        let rows = [[0.0, 2.0, 0.0], [1.0, f64::NAN, 5.0], [3.0, -1.0, -3.0], [1.5, 0.5, 0.0]];
        let mut s = Scratch::default();
        for row in rows {
            let mut phi = vec![0.0; 3];
            s.add(&tree, &row, &mut phi);
            let want = brute(&tree, &row);
            for (a, b) in phi.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{phi:?} vs brute force {want:?} on {row:?}");
            }
            let out = tree.nodes[tree.leaf(&row)].value;
            let total = expected_value(&tree) + phi.iter().sum::<f64>();
            assert!((total - out).abs() < 1e-12, "{total} != {out}");
        }
        assert_eq!(depth(&tree), 3);
    }
}
