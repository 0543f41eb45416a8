"""The `base` store's point-in-time features in pandas, the peer bench/certify.sh times against
`certify`: for each (entity, T0) of the grid, the last snapshot observed AND available by T0
(two clocks), via merge_asof on the availability clock. Prints JSON with the time, and writes
the features to a Parquet file for the value comparison."""

import json
import sys
import time

import pandas as pd

obs_path, grid_path, out_path = sys.argv[1:4]
start = time.perf_counter()
obs = pd.read_parquet(obs_path, columns=["entity_id", "observed_at", "available_at", "views", "likes", "comments", "version", "deleted"])
grid = pd.read_parquet(grid_path, columns=["entity_id", "t0"])

# Newest version per fact is what a reader sees once it is available; earlier versions stay
# visible until then. Rows arrive in availability order: the visible state after each arrival
# is the snapshot with the greatest observed_at so far (a later version of the same snapshot
# replaces it), and the number of distinct snapshots so far.
obs = obs.sort_values(["available_at", "entity_id", "observed_at", "version"], kind="stable")
g = obs.groupby("entity_id", sort=False)
best = g["observed_at"].cummax()
is_best = obs["observed_at"] >= best
first_version = ~obs.duplicated(["entity_id", "observed_at"])
state = pd.DataFrame({
    "entity_id": obs["entity_id"],
    "available_at": obs["available_at"],
    "last_seen": best,
    "views": obs["views"].where(is_best),
    "likes": obs["likes"].where(is_best),
    "comments": obs["comments"].where(is_best),
    "n": first_version.astype("int64").groupby(obs["entity_id"], sort=False).cumsum(),
})
state[["views", "likes", "comments"]] = state.groupby("entity_id", sort=False)[["views", "likes", "comments"]].ffill()
state = state.sort_values("available_at", kind="stable")
grid = grid.sort_values("t0", kind="stable")
pit = pd.merge_asof(grid, state, left_on="t0", right_on="available_at", by="entity_id", direction="backward")
pit["hours_since_last"] = (pit["t0"] - pit["last_seen"]).dt.total_seconds() / 3600.0
pit["n_snapshots"] = pit["n"].fillna(0).astype("int64")
out = pit[["entity_id", "t0", "views", "likes", "comments", "n_snapshots", "hours_since_last"]].rename(
    columns={"views": "views_t0", "likes": "likes_t0", "comments": "comments_t0"}
)
seconds = time.perf_counter() - start
out.to_parquet(out_path, index=False)
print(json.dumps({"seconds": seconds, "rows": len(out)}))
