"""Empirical coverage of a score run against the matured labels, per label and level.

Usage: python scripts/coverage.py ROOT [SCORE_RUN]

Reads ROOT's latest (or the named) score run's predictions and the labels file of its
certify run, and prints, per served label:
- value / flow: the share of rows whose matured value lies in [lower, upper] (the nominal
  level) and in each [lower_<pct>, upper_<pct>];
- time-to-event: the share of rows whose time is at least `lower_bound` (each level): an event
  row is judged by its time; a censored row is covered when it was censored at or after the
  bound and left out when censored before it (its time is not known to reach the bound);
- binary: the Brier score, the mean probability against the observed rate, and the decision's
  precision and recall.

A peer-side check (DuckDB's Python package), never a runtime dependency: the numbers it prints
are those the closing notes quote. It reads the files directly and does not verify hashes:
run `verify` first when that matters.
"""

import glob
import json
import os
import sys

import duckdb


def latest(pattern):
    hits = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not hits:
        sys.exit(f"nothing matches {pattern}")
    return hits[-1]


def main():
    root = sys.argv[1]
    run = sys.argv[2] if len(sys.argv) > 2 else None
    manifest = f"{root}/manifests/score/{run}.json" if run else latest(f"{root}/manifests/score/*.json")
    m = json.load(open(manifest))
    preds = f"{root}/{m['summary']['path']}"
    labels = latest(f"{root}/lake/labels/*/labels.parquet")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW p AS SELECT * FROM read_parquet('{preds}')")
    con.execute(f"CREATE VIEW l AS SELECT * FROM read_parquet('{labels}')")
    pcols = [r[0] for r in con.execute("DESCRIBE p").fetchall()]
    lcols = [r[0] for r in con.execute("DESCRIBE l").fetchall()]
    print(f"score run {m['run_id']} ({preds})")
    for label, kind in con.execute("SELECT DISTINCT label, label_kind FROM p ORDER BY label").fetchall():
        join = f"FROM p JOIN l USING (entity_id, t0) WHERE p.label = '{label}' AND l.\"{label}\" IS NOT NULL"
        y = f'CAST(l."{label}" AS DOUBLE)'
        if kind == "value":
            levels = [("nominal", "lower", "upper")] + [
                (c[len("lower_"):], c, "upper_" + c[len("lower_"):])
                for c in pcols
                if c.startswith("lower_") and c not in ("lower_raw", "lower_bound") and not c.startswith("lower_bound")
            ]
            for name, lo, hi in levels:
                n, cov = con.execute(
                    f"SELECT count(*), avg(CASE WHEN {y} BETWEEN p.{lo} AND p.{hi} THEN 1.0 ELSE 0.0 END) {join}"
                ).fetchone()
                print(f"  {label} (value) level {name}: coverage {cov:.4f} on {n} matured rows")
        elif kind == "time_to_event":
            event = next((c for c in (f"{label}_event", "event") if c in lcols), None)
            if event is None:
                print(f"  {label}: no event column in {labels}")
                continue
            for c in [c for c in pcols if c.startswith("lower_bound")]:
                n, cov, unknown = con.execute(
                    f"""SELECT count(*) FILTER (known), avg(CASE WHEN known THEN CAST(covered AS DOUBLE) END),
                               count(*) FILTER (NOT known AND p.{c} IS NOT NULL)
                        FROM (SELECT p.{c}, ({y} >= p.{c}) AS covered,
                                     (CAST(l."{event}" AS BOOLEAN) OR {y} >= p.{c}) AS known {join} AND p.{c} IS NOT NULL) p"""
                ).fetchone()
                cov = float("nan") if cov is None else cov
                print(f"  {label} (time_to_event) {c}: coverage {cov:.4f} on {n} rows ({unknown} censored before the bound, left out)")
        else:
            n, brier, mean_p, rate, tp, pp, pos = con.execute(
                f"""SELECT count(*), avg(power(prediction - {y}, 2)), avg(prediction), avg({y}),
                           count(*) FILTER (decision AND {y} > 0.5), count(*) FILTER (decision),
                           count(*) FILTER ({y} > 0.5) {join}"""
            ).fetchone()
            prec = tp / pp if pp else float("nan")
            rec = tp / pos if pos else float("nan")
            print(
                f"  {label} (binary): Brier {brier:.4f}, mean probability {mean_p:.4f} vs rate {rate:.4f}, "
                f"precision {prec:.3f}, recall {rec:.3f} on {n} matured rows"
            )


if __name__ == "__main__":
    main()
