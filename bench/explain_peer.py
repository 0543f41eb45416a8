"""The peers of bench/explain.sh: XGBoost's predict and pred_contribs (exact TreeSHAP in C++)
and shap.TreeExplainer on a model of the same shape as the Rust bench's (trees, leaves,
learning rate, threads), trained on the same rows the Rust binary wrote.

    python bench/explain_peer.py WORK_DIR THREADS
"""

import json
import sys
import time

import numpy as np
import shap
import xgboost as xgb

work, threads = sys.argv[1], int(sys.argv[2])
rust = json.load(open(f"{work}/rust.json"))
d, rows, train_rows = rust["features"], rust["rows"], rust["train_rows"]
x = np.fromfile(f"{work}/x.f64", dtype="<f8").reshape(-1, d)
y = np.fromfile(f"{work}/y.f64", dtype="<f8")
m = xgb.XGBRegressor(
    n_estimators=rust["trees"],
    max_leaves=rust["leaves"],
    max_depth=0,
    grow_policy="lossguide",
    tree_method="hist",
    learning_rate=rust["learning_rate"],
    min_child_weight=20,
    reg_lambda=1.0,
    n_jobs=threads,
)
m.fit(x[:train_rows], y[:train_rows])
booster = m.get_booster()
booster.set_param({"nthread": threads})
data = xgb.DMatrix(x[:rows], nthread=threads)


def timed(f):
    t = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t


pred, predict_s = timed(lambda: booster.predict(data))
contribs, contribs_s = timed(lambda: booster.predict(data, pred_contribs=True))
gap = float(np.max(np.abs(contribs.sum(axis=1) - pred)))
k = min(rows, 100_000)  # shap's explainer is slower; its rate is per row
explainer = shap.TreeExplainer(booster)
_, shap_s = timed(lambda: explainer.shap_values(x[:k]))
out = {
    "xgboost": xgb.__version__,
    "shap": shap.__version__,
    "threads": threads,
    "xgb_predict_rows_per_s": rows / predict_s,
    "xgb_pred_contribs_rows_per_s": rows / contribs_s,
    "xgb_additivity_gap": gap,
    "shap_rows": k,
    "shap_tree_explainer_rows_per_s": k / shap_s,
}
out["ratio_predict_vs_xgb"] = rust["predict_rows_per_s"] / out["xgb_predict_rows_per_s"]
out["ratio_explain_vs_xgb_pred_contribs"] = rust["explain_rows_per_s"] / out["xgb_pred_contribs_rows_per_s"]
out["ratio_explain_vs_shap"] = rust["explain_rows_per_s"] / out["shap_tree_explainer_rows_per_s"]
json.dump(out, open(f"{work}/peer.json", "w"), indent=1)
print(json.dumps({"rust": rust, "peers": out}, indent=1))
