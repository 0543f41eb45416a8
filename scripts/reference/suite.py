"""Reference values for the train-suite models, computed once with the Python peers and
committed as fixtures under crates/t0-train/tests/fixtures/.

Data: datasets that ship inside the peers' own packages (scikit-learn's diabetes and breast
cancer, lifelines' rossi), written beside the references so the Rust tests read the same rows.

  ridge      scikit-learn RidgeCV (efficient leave-one-out, unpenalised intercept)
  aft        lifelines WeibullAFTFitter / LogNormalAFTFitter / LogLogisticAFTFitter
  xgb_aft    XGBoost's own aft-nloglik of fixed predictions (the loss the GBDT objective minimises)
  isotonic   scikit-learn IsotonicRegression (increasing, clipped)
  surv       lifelines concordance_index (Harrell), scikit-survival concordance_index_ipcw
             (Uno) and integrated_brier_score
  surv_cal   lifelines KaplanMeierFitter S(t) and SurvivalEVAL's d_calibration (Haider et
             al. 2020) of a Weibull AFT's survival at each row's own time
  gbdt       scikit-learn HistGradientBoosting{Regressor,Classifier} accuracy on a fixed split
             (the Rust learner must come within a stated margin, not equal it)
  linear_explain  scikit-learn StandardScaler + RidgeCV: contributions coef × (x − mean) on
             original-scale coefficients (what the ridge model's explanation must equal)
  stack_meta the stacking meta-learners on fixed inputs: a convex blend by SciPy's SLSQP, and
             scikit-learn LogisticRegression (ridge on the weights, not the intercept)

Usage: python scripts/reference/suite.py [NAME...]  (with scikit-learn, lifelines,
scikit-survival, xgboost, SurvivalEVAL and pandas installed; names pick references to write)
"""

import json
import os

import numpy as np
import pandas as pd

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "t0-train", "tests", "fixtures")
os.makedirs(OUT, exist_ok=True)


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def ridge():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import RidgeCV

    x, y = load_diabetes(return_X_y=True, scaled=False)
    pd.DataFrame(np.column_stack([x, y]), columns=[f"x{i}" for i in range(10)] + ["y"]).to_csv(
        os.path.join(OUT, "diabetes.csv"), index=False, float_format="%.17g"
    )
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    m = RidgeCV(alphas=alphas, store_cv_results=True).fit(x, y)
    loo = m.cv_results_.mean(axis=0).tolist()  # mean squared LOO error per alpha
    return {"alphas": alphas, "alpha": float(m.alpha_), "coef": m.coef_.tolist(),
            "intercept": float(m.intercept_), "loo_mse": loo}


def linear_explain():
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    x, y = load_diabetes(return_X_y=True, scaled=False)
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    sc = StandardScaler().fit(x)
    m = RidgeCV(alphas=alphas).fit(sc.transform(x), y)
    coef = m.coef_ / sc.scale_  # original-scale coefficients
    rows = x[:25]
    return {"alphas": alphas, "alpha": float(m.alpha_), "base_value": float(m.intercept_),
            "contributions": (coef * (rows - sc.mean_)).tolist(), "prediction": m.predict(sc.transform(rows)).tolist()}


def aft():
    from lifelines import LogLogisticAFTFitter, LogNormalAFTFitter, WeibullAFTFitter
    from lifelines.datasets import load_rossi

    d = load_rossi()
    d.to_csv(os.path.join(OUT, "rossi.csv"), index=False)
    out = {}
    covs = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    for name, cls, loc, scale in [
        ("weibull", WeibullAFTFitter, "lambda_", "rho_"),
        ("lognormal", LogNormalAFTFitter, "mu_", "sigma_"),
        ("loglogistic", LogLogisticAFTFitter, "alpha_", "beta_"),
    ]:
        f = cls().fit(d, duration_col="week", event_col="arrest")
        p = f.params_
        med = f.predict_median(d.iloc[:5]).tolist()
        surv = f.predict_survival_function(d.iloc[:3], times=[10.0, 30.0, 52.0])
        out[name] = {
            "coef": {c: float(p[loc][c]) for c in covs},
            "intercept": float(p[loc]["Intercept"]),
            # lifelines' ancillary intercept: log(rho) / log(sigma) / log(beta).
            "log_ancillary": float(p[scale]["Intercept"]),
            "log_likelihood": float(f.log_likelihood_),
            "median_first5": med,
            "survival_first3_at_10_30_52": surv.T.values.tolist(),
        }
    return out


def xgb_aft():
    import xgboost as xgb
    from lifelines.datasets import load_rossi

    d = load_rossi()
    t = d["week"].to_numpy(float)
    lower = t
    upper = np.where(d["arrest"].to_numpy() == 1, t, np.inf)
    # A few interval-censored rows: event known to lie in [t, t + 4].
    upper = upper.copy()
    upper[:20] = np.where(np.isinf(upper[:20]), upper[:20], t[:20] + 4.0)
    rng = np.random.default_rng(3)
    margin = np.log(t) + rng.normal(0.0, 0.7, len(t))
    out = {"lower": lower.tolist(), "upper": [None if np.isinf(u) else u for u in upper],
           "margin": margin.tolist(), "loss": {}}
    for dist in ["normal", "logistic", "extreme"]:
        # XGBoost 3.2's aft-nloglik metric evaluates at scale 1 whatever the objective's
        # aft_loss_distribution_scale says (checked by hand: 0.7 and 1.3 give the scale-1
        # value), so the reference is taken at scale 1.
        for scale in [1.0]:
            dm = xgb.DMatrix(np.zeros((len(t), 1)), base_margin=margin)
            dm.set_float_info("label_lower_bound", lower)
            dm.set_float_info("label_upper_bound", upper)
            params = {"objective": "survival:aft", "eval_metric": "aft-nloglik",
                      "aft_loss_distribution": dist, "aft_loss_distribution_scale": scale,
                      "base_score": 0.0, "learning_rate": 0.0}
            # One round of zero step: the booster is configured, the margins stay as given.
            b = xgb.train(params, dm, num_boost_round=1)
            r = b.eval(dm)
            out["loss"][f"{dist}_{scale}"] = float(r.split(":")[1])
    return out


def isotonic():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(11)
    p = rng.uniform(0, 1, 300)
    y = (rng.uniform(0, 1, 300) < p ** 2).astype(float)
    m = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    q = np.linspace(-0.1, 1.1, 25)
    return {"x": p.tolist(), "y": y.tolist(), "query": q.tolist(), "fitted": m.predict(q).tolist()}


def surv_metrics():
    from lifelines import WeibullAFTFitter
    from lifelines.datasets import load_rossi
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_ipcw, integrated_brier_score

    d = load_rossi()
    train, test = d.iloc[:300], d.iloc[300:]
    f = WeibullAFTFitter().fit(train, duration_col="week", event_col="arrest")
    risk = -np.log(f.predict_median(test).to_numpy())
    harrell = concordance_index(test["week"], -risk, test["arrest"])
    st = lambda df: np.array(list(zip(df["arrest"].astype(bool), df["week"].astype(float))),
                             dtype=[("e", bool), ("t", float)])
    tau = 45.0
    uno = concordance_index_ipcw(st(train), st(test), risk, tau=tau)[0]
    times = np.array([10.0, 20.0, 30.0, 40.0])
    sf = f.predict_survival_function(test, times=times).T.to_numpy()
    ibs = integrated_brier_score(st(train), st(test), sf, times)
    return {"risk": risk.tolist(), "harrell": float(harrell), "uno_tau": tau, "uno": float(uno),
            "times": times.tolist(), "survival": sf.tolist(), "ibs": float(ibs)}


def gbdt():
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import roc_auc_score

    d = pd.read_csv(os.path.join(OUT, "diabetes.csv"))
    x, y = d.drop(columns="y").to_numpy(), d["y"].to_numpy()
    n = len(y)
    tr, te = slice(0, int(n * 0.75)), slice(int(n * 0.75), n)
    r = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                      min_samples_leaf=20, early_stopping=False, random_state=0)
    r.fit(x[tr], y[tr])
    rmse = float(np.sqrt(np.mean((r.predict(x[te]) - y[te]) ** 2)))
    xb, yb = load_breast_cancer(return_X_y=True)
    pd.DataFrame(np.column_stack([xb, yb])).to_csv(os.path.join(OUT, "breast_cancer.csv"), index=False,
                                                   header=[f"x{i}" for i in range(30)] + ["y"],
                                                   float_format="%.10g")
    nb = len(yb)
    trb, teb = slice(0, int(nb * 0.75)), slice(int(nb * 0.75), nb)
    c = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                       min_samples_leaf=20, early_stopping=False, random_state=0)
    c.fit(xb[trb], yb[trb])
    auc = float(roc_auc_score(yb[teb], c.predict_proba(xb[teb])[:, 1]))
    return {"regression_rmse": rmse, "classifier_auc": auc, "train_fraction": 0.75,
            "params": {"iterations": 200, "learning_rate": 0.05, "max_leaves": 15, "min_leaf": 20}}


def stack_meta():
    """Meta-learner inputs built from fixed columns of the peers' datasets, standardised
    (population deviation), signed and scaled."""
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    def cols(x, idx_signs):
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        return np.column_stack([s * z[:, i] for i, s in idx_signs])

    # Convex blend (weights >= 0 summing to 1, no intercept) of three "predictions" of
    # diabetes progression: mean + deviation * signed standardised bmi, s5, and -3 bmi.
    d = pd.read_csv(os.path.join(OUT, "diabetes.csv"))
    x, y = d.drop(columns="y").to_numpy(), d["y"].to_numpy()
    lin_cols = [(2, 1.0), (8, 1.0), (2, -3.0)]
    p = y.mean() + y.std() * cols(x, lin_cols)
    scale = np.sum((y - y.mean()) ** 2)
    blend = minimize(lambda w: np.sum((y - p @ w) ** 2) / scale, np.array([0.5, 0.3, 0.2]),
                     jac=lambda w: -2 * p.T @ (y - p @ w) / scale, method="SLSQP", bounds=[(0, 1)] * 3,
                     constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(3)}],
                     options={"ftol": 1e-15, "maxiter": 1000})
    # Logistic regression on logits with a ridge on the weights only (scikit-learn leaves
    # the intercept unpenalised). y = 1 is benign: mean radius and worst concave points
    # relate negatively, so they are negated; the third column (not negated) gets weight 0,
    # so the reference is fitted on the first two.
    b = pd.read_csv(os.path.join(OUT, "breast_cancer.csv"))
    xb, yb = b.drop(columns="y").to_numpy(), b["y"].to_numpy()
    pb = cols(xb, [(0, -1.0), (27, -1.0), (27, 1.0)])
    pen = 1e-4 * len(yb)
    log = LogisticRegression(C=1.0 / pen, tol=1e-12, max_iter=100000).fit(pb[:, :2], yb)
    return {
        "blend": {"columns": [[j, s] for j, s in lin_cols], "weights": [float(w) for w in blend.x]},
        "logistic": {"columns": [[0, -1], [27, -1], [27, 1]], "penalty_per_row": 1e-4,
                     "intercept": float(log.intercept_[0]),
                     "weights": [float(w) for w in log.coef_[0]] + [0.0]},
    }


def surv_calibration():
    import sys
    import types

    from lifelines import KaplanMeierFitter, WeibullAFTFitter
    from lifelines.datasets import load_rossi

    # SurvivalEVAL's package imports torch at the top of a helper module; d_calibration itself
    # is numpy and scipy. Without torch installed (a CUDA download), an empty module stands in
    # for the import so the peer's own function runs unchanged.
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            stand_in = types.ModuleType("torch")
            stand_in.Tensor = type("Tensor", (), {})  # named in a type alias only
            sys.modules["torch"] = stand_in
    from SurvivalEVAL.evaluations.calibration.distributional.distribution_calibration import d_calibration

    d = load_rossi()
    train, test = d.iloc[:300], d.iloc[300:]
    f = WeibullAFTFitter().fit(train, duration_col="week", event_col="arrest")
    t, e = test["week"].to_numpy(float), test["arrest"].to_numpy(bool)
    # Each row's predicted survival at its own time (the diagonal of the survival matrix).
    s_own = np.array([f.predict_survival_function(test.iloc[[i]], times=[t[i]]).to_numpy()[0, 0]
                      for i in range(len(test))])
    stat, p, _ = d_calibration(s_own, e.astype(int))
    times = [10.0, 20.0, 30.0, 40.0, 52.0]
    km = KaplanMeierFitter().fit(t, e).survival_function_at_times(times).to_numpy()
    # A deliberately miscalibrated model: survival raised to the fifth power.
    stat5, p5, _ = d_calibration(s_own ** 5, e.astype(int))
    return {"time": t.tolist(), "event": e.tolist(), "s_own": s_own.tolist(), "d_cal_stat": float(stat),
            "d_cal_p": float(p), "d_cal_stat_pow5": float(stat5), "d_cal_p_pow5": float(p5),
            "km_times": times, "km": km.tolist()}


REFERENCES = {
    "ridge": ("ridge_reference.json", ridge),
    "aft": ("aft_reference.json", aft),
    "xgb_aft": ("xgb_aft_loss.json", xgb_aft),
    "isotonic": ("isotonic_reference.json", isotonic),
    "surv": ("survival_metrics_reference.json", surv_metrics),
    "gbdt": ("gbdt_reference.json", gbdt),
    "stack_meta": ("stack_meta_reference.json", stack_meta),
    "linear_explain": ("linear_explain_reference.json", linear_explain),
    "surv_cal": ("survival_calibration_reference.json", surv_calibration),
}

if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or REFERENCES:
        file, make = REFERENCES[name]
        dump(file, make())
    print("wrote", sorted(os.listdir(OUT)))
