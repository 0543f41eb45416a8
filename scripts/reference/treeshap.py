"""Reference TreeSHAP values from `shap.TreeExplainer` (path-dependent) for random trees.

Writes crates/t0-train/tests/fixtures/treeshap_reference.json: trees in shap's dict format
(children_left/right/default, features, thresholds, values, node_sample_weight), rows with
missing values (null), shap's values and expected value. The Rust test reads the same trees
into its own node format and must agree within 1e-9.

    ~/.cache/t0-clip/pyenv/bin/pip install shap numpy
    ~/.cache/t0-clip/pyenv/bin/python scripts/reference/treeshap.py
"""

import json
import math
import pathlib

import numpy as np
import shap

rng = np.random.default_rng(20261205)
D = 6  # features


def random_tree(max_depth):
    """A random binary tree whose covers add up (children split the parent's rows)."""
    left, right, default, feat, thr, val, cover = [], [], [], [], [], [], []

    def node(depth, rows):
        k = len(left)
        for lst in (left, right, default, feat, thr, val, cover):
            lst.append(None)
        cover[k] = float(rows)
        val[k] = float(rng.normal())
        if depth >= max_depth or rows < 4 or rng.random() < 0.15 * depth:
            left[k] = right[k] = default[k] = -1
            feat[k] = -2
            thr[k] = 0.0
            return k
        # Few features so that paths split on one feature more than once.
        feat[k] = int(rng.integers(0, D))
        thr[k] = float(np.round(rng.normal(), 3))
        nl = int(rng.integers(1, rows))
        l = node(depth + 1, nl)
        r = node(depth + 1, rows - nl)
        left[k], right[k] = l, r
        default[k] = l if rng.random() < 0.5 else r
        return k

    node(0, int(rng.integers(50, 500)))
    return {
        "children_left": left,
        "children_right": right,
        "children_default": default,
        "features": feat,
        "thresholds": thr,
        "values": val,
        "node_sample_weight": cover,
    }


trees = [random_tree(int(rng.integers(1, 8))) for _ in range(12)]
x = rng.normal(size=(40, D)).round(2)
x[rng.random(size=x.shape) < 0.15] = np.nan
model = {
    "trees": [
        {
            k: np.array(v, dtype=np.float64 if k in ("thresholds", "node_sample_weight") else None)
            if k != "values"
            else np.array(v, dtype=np.float64).reshape(-1, 1)
            for k, v in t.items()
        }
        for t in trees
    ],
    "base_offset": 0.375,
}
explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
phi = explainer.shap_values(x)
out = {
    "generator": f"scripts/reference/treeshap.py with shap {shap.__version__}",
    "base_offset": 0.375,
    "trees": trees,
    "x": [[None if math.isnan(v) else v for v in row] for row in x.tolist()],
    "shap_values": phi.tolist(),
    "expected_value": float(np.ravel(explainer.expected_value)[0]),
}
path = pathlib.Path(__file__).resolve().parents[2] / "crates/t0-train/tests/fixtures/treeshap_reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}: {len(trees)} trees, {len(x)} rows, expected value {out['expected_value']:.6f}")
