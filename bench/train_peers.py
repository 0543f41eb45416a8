"""Data and Python peers for bench/train.sh.

  train_peers.py gen KIND DIR N_TRAIN      write a seeded synthetic dataset (see fit_bench.rs)
  train_peers.py peer KIND DIR THREADS     fit the peer on it, print {"fit_seconds", accuracy}

KIND: gbdt (HistGradientBoostingRegressor), gbdt-aft (XGBoost survival:aft),
aft-weibull / aft-lognormal / aft-loglogistic (lifelines), ridge (RidgeCV).
Settings match the Rust side: 100 rounds, learning rate 0.1, 31 leaves, 20 rows per leaf,
L2 1.0, 255 bins, no early stopping.
"""

import json
import os
import sys
import time

import numpy as np

ITERATIONS = 100
ALPHAS = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4]


def write(dir, name, a):
    np.ascontiguousarray(a, dtype="<f8").tofile(os.path.join(dir, name))


def read(dir, name, d=None):
    a = np.fromfile(os.path.join(dir, name), dtype="<f8")
    return a.reshape(-1, d) if d else a


def gen(kind, dir, n_train):
    os.makedirs(dir, exist_ok=True)
    rng = np.random.default_rng(20261124)
    n_test = max(n_train // 5, 1000)
    n = n_train + n_test
    meta = {"n_train": n_train, "n_test": n_test, "iterations": ITERATIONS}
    if kind == "gbdt":
        d = 20
        x = rng.normal(size=(n, d))
        y = (
            10 * np.sin(np.pi * x[:, 0] * x[:, 1])
            + 20 * (x[:, 2] - 0.5) ** 2
            + 10 * x[:, 3]
            + 5 * x[:, 4]
            + 3 * np.where(x[:, 5] > 0, x[:, 6], -x[:, 7])
            + rng.normal(size=n)
        )
        # 5% missing in four informative columns: the learner must route them.
        for j in (0, 3, 5, 8):
            x[rng.random(n) < 0.05, j] = np.nan
        write(dir, "y_train", y[:n_train])
        write(dir, "y_test", y[n_train:])
    elif kind == "ridge":
        d = 100
        x = rng.normal(size=(n, d))
        beta = rng.normal(size=d) * (rng.random(d) < 0.3)
        y = x @ beta + 3.0 * rng.normal(size=n)
        write(dir, "y_train", y[:n_train])
        write(dir, "y_test", y[n_train:])
        meta["alphas"] = ALPHAS
    else:
        d = 20 if kind == "gbdt-aft" else 10
        x = rng.normal(size=(n, d))
        if kind == "gbdt-aft":
            loc = 2.0 + 0.6 * x[:, 0] - 0.4 * x[:, 1] + 0.5 * np.sin(2 * x[:, 2]) + 0.3 * x[:, 3] * x[:, 4]
            noise = rng.normal(size=n) * 0.5
        else:
            beta = np.linspace(-0.5, 0.5, d)
            loc = 2.0 + x @ beta
            if kind == "aft-weibull":
                noise = 0.7 * np.log(rng.exponential(size=n))  # extreme-value (Gumbel min)
            elif kind == "aft-lognormal":
                noise = 0.7 * rng.normal(size=n)
            else:
                noise = 0.7 * rng.logistic(size=n)
        t = np.exp(loc + noise)
        c = np.exp(rng.uniform(1.0, 4.5, size=n))  # about a third censored
        time_ = np.minimum(t, c)
        event = (t <= c).astype(float)
        upper = np.where(event > 0, time_, np.inf)
        write(dir, "lower_train", time_[:n_train])
        write(dir, "upper_train", upper[:n_train])
        write(dir, "time_test", time_[n_train:])
        write(dir, "event_test", event[n_train:])
        meta["sigma"] = 1.0
    write(dir, "x_train", x[:n_train])
    write(dir, "x_test", x[n_train:])
    meta["d"] = d
    with open(os.path.join(dir, "meta.json"), "w") as f:
        json.dump(meta, f)


def peer(kind, dir, threads):
    meta = json.load(open(os.path.join(dir, "meta.json")))
    d = meta["d"]
    xtr, xte = read(dir, "x_train", d), read(dir, "x_test", d)
    if kind == "gbdt":
        from sklearn.ensemble import HistGradientBoostingRegressor

        ytr, yte = read(dir, "y_train"), read(dir, "y_test")
        m = HistGradientBoostingRegressor(
            max_iter=ITERATIONS,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=20,
            l2_regularization=1.0,
            max_bins=255,
            early_stopping=False,
            random_state=0,
        )
        t = time.perf_counter()
        m.fit(xtr, ytr)
        secs = time.perf_counter() - t
        rmse = float(np.sqrt(np.mean((m.predict(xte) - yte) ** 2)))
        return {"fit_seconds": secs, "rmse": rmse}
    if kind == "gbdt-aft":
        import xgboost as xgb
        from lifelines.utils import concordance_index

        lo, up = read(dir, "lower_train"), read(dir, "upper_train")
        dm = xgb.DMatrix(xtr, label_lower_bound=lo, label_upper_bound=up, nthread=threads)
        params = {
            "objective": "survival:aft",
            "eval_metric": "aft-nloglik",
            "aft_loss_distribution": "normal",
            "aft_loss_distribution_scale": meta["sigma"],
            "tree_method": "hist",
            "max_bin": 255,
            "grow_policy": "lossguide",
            "max_leaves": 31,
            "max_depth": 0,
            "eta": 0.1,
            "lambda": 1.0,
            "min_child_weight": 0.0,
            "nthread": threads,
            "seed": 0,
        }
        t = time.perf_counter()
        b = xgb.train(params, dm, num_boost_round=ITERATIONS)
        secs = time.perf_counter() - t
        tt, et = read(dir, "time_test"), read(dir, "event_test")
        dt = xgb.DMatrix(xte, label_lower_bound=tt, label_upper_bound=np.where(et > 0, tt, np.inf))
        nll = float(b.eval(dt).split(":")[1])
        margin = b.predict(dt, output_margin=True)
        return {"fit_seconds": secs, "aft_nloglik": nll, "c_index": float(concordance_index(tt, margin, et))}
    if kind.startswith("aft-"):
        import pandas as pd
        from lifelines import LogLogisticAFTFitter, LogNormalAFTFitter, WeibullAFTFitter

        cls = {"weibull": WeibullAFTFitter, "lognormal": LogNormalAFTFitter, "loglogistic": LogLogisticAFTFitter}
        lo, up = read(dir, "lower_train"), read(dir, "upper_train")
        df = pd.DataFrame(xtr, columns=[f"x{j}" for j in range(d)])
        df["T"] = lo
        df["E"] = np.isfinite(up).astype(int)
        m = cls[kind[4:]]()
        t = time.perf_counter()
        m.fit(df, "T", "E")
        secs = time.perf_counter() - t
        return {"fit_seconds": secs, "log_likelihood": float(m.log_likelihood_)}
    if kind == "ridge":
        from sklearn.linear_model import RidgeCV

        ytr, yte = read(dir, "y_train"), read(dir, "y_test")
        m = RidgeCV(alphas=meta["alphas"])
        t = time.perf_counter()
        m.fit(xtr, ytr)
        secs = time.perf_counter() - t
        rmse = float(np.sqrt(np.mean((m.predict(xte) - yte) ** 2)))
        return {"fit_seconds": secs, "alpha": float(m.alpha_), "rmse": rmse}
    raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    cmd, kind, dir, arg = sys.argv[1:5]
    if cmd == "gen":
        gen(kind, dir, int(arg))
    else:
        print(json.dumps(peer(kind, dir, int(arg))))
