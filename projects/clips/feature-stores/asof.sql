-- As-of helpers: the only way feature blocks read the canonical tables.
-- A row is visible at T0 only if it was observed AND available at or before T0; among the
-- visible versions of one fact the newest wins (a repair made after T0 stays invisible), and a
-- fact whose newest visible version is a tombstone is gone.
CREATE OR REPLACE TEMP VIEW obs_asof AS
SELECT g.entity_id, g.t0, o.observed_at, o.available_at, o.views, o.likes, o.comments, o.status
FROM t0_grid g
JOIN observations o
  ON o.entity_id = g.entity_id AND o.observed_at <= g.t0 AND o.available_at <= g.t0
QUALIFY row_number() OVER (PARTITION BY g.entity_id, g.t0, o.observed_at ORDER BY o.version DESC) = 1
    AND NOT o.deleted;

CREATE OR REPLACE TEMP VIEW self_asof AS
SELECT g.entity_id, g.t0, e.kind, e.parent_id, e.created_at, e.attrs
FROM t0_grid g
JOIN entities e
  ON e.entity_id = g.entity_id AND e.observed_at <= g.t0 AND e.available_at <= g.t0
QUALIFY row_number() OVER (PARTITION BY g.entity_id, g.t0 ORDER BY e.version DESC) = 1
    AND NOT e.deleted;

CREATE OR REPLACE TEMP VIEW artifacts_asof AS
SELECT g.entity_id, g.t0, a.kind, a.text, a.path, a.content_hash, a.observed_at, a.available_at
FROM t0_grid g
JOIN artifacts a
  ON a.entity_id = g.entity_id AND a.observed_at <= g.t0 AND a.available_at <= g.t0
QUALIFY row_number() OVER (PARTITION BY g.entity_id, g.t0, a.kind ORDER BY a.version DESC) = 1
    AND NOT a.deleted;
