"""The default audit checks of observations and entities, written in pandas: the peer that
bench/audit.sh times against `audit`. Prints JSON: failing count per check and the time."""

import json
import sys
import time

import pandas as pd

obs_path, ent_path, as_of = sys.argv[1], sys.argv[2], pd.Timestamp(sys.argv[3])
t0 = time.perf_counter()
obs_all = pd.read_parquet(obs_path)
ent_all = pd.read_parquet(ent_path)


def current(df, key):
    return df.sort_values("version").drop_duplicates(key, keep="last")


obs = current(obs_all, ["entity_id", "observed_at"])
ent = current(ent_all, ["entity_id"])
out = {}
# observations
out["observations.not_null(entity_id,observed_at,available_at)"] = int(
    obs[["entity_id", "observed_at", "available_at"]].isna().any(axis=1).sum()
)
out["observations.unique_version"] = int(
    obs_all.groupby(["entity_id", "observed_at", "version"]).size().gt(1).sum()
)
out["observations.orphan_reference"] = int((~obs["entity_id"].isin(ent_all["entity_id"])).sum())
for c in ["views", "likes", "comments"]:
    out[f"observations.range({c})"] = int((obs[c] < 0).sum())
out["observations.future_timestamps"] = int(
    ((obs.observed_at > obs.available_at) | (obs.observed_at > as_of) | (obs.available_at > as_of)).sum()
)
out["observations.lateness"] = int(((obs.available_at - obs.observed_at).dt.total_seconds() > 240 * 3600).sum())
s = obs.sort_values(["entity_id", "observed_at"])
g = s.groupby("entity_id", sort=False)
bad = pd.Series(False, index=s.index)
for c in ["views", "likes", "comments"]:
    prev_max = g[c].cummax().groupby(s["entity_id"]).shift(1)
    bad |= s[c] < prev_max
out["observations.monotonic_counter"] = int(bad.sum())
same = pd.Series(True, index=s.index)
for c in ["views", "likes", "comments"]:
    same &= s[c].eq(g[c].shift(1))
dt = (s["observed_at"] - g["observed_at"].shift(1)).dt.total_seconds()
out["observations.duplicate_snapshots"] = int((same & (dt <= 60)).sum())
# entities
out["entities.not_null(entity_id,kind,created_at)"] = int(ent[["entity_id", "kind", "created_at"]].isna().any(axis=1).sum())
out["entities.allowed_values(kind)"] = int((ent["kind"].notna() & ~ent["kind"].isin(["channel", "clip"])).sum())
out["entities.orphan_parent"] = int((ent["parent_id"].notna() & ~ent["parent_id"].isin(ent_all["entity_id"])).sum())
out["entities.regex(entity_id)"] = int((~ent["entity_id"].str.fullmatch(r"[a-z]+[0-9]+")).sum())
out["entities.unique_version"] = int(ent_all.groupby(["entity_id", "version"]).size().gt(1).sum())
out["entities.future_timestamps"] = int(
    ((ent.observed_at > ent.available_at) | (ent.observed_at > as_of) | (ent.available_at > as_of)).sum()
)
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "rows": len(obs_all) + len(ent_all), "failing": out}))
