-- The as-of views: the only way a feature store reads the canonical tables. Built into
-- t0-certify and created in every store's sandbox before its own SQL runs (a project cannot
-- replace them); `asof.sql` in a store's `files` names this file.
--
-- `{history:<table>}` is every version of a canonical table with the system-time interval
-- [known_from, known_to) in which it was the known version of its fact: a version is visible
-- at t when it was observed and available by t, and among the visible versions of one fact
-- the newest wins. A fact whose known version is a tombstone is absent.

-- Every live version with its interval: the as-of state at any time t <= T0 is the filter
-- `known_from <= t AND (known_to IS NULL OR known_to > t)`. For features over other entities
-- (cohorts, siblings, priors); the per-(entity, T0) views below apply the filter at T0.
CREATE OR REPLACE TEMP VIEW entities_history AS
SELECT * EXCLUDE (version, batch_id, deleted) FROM {history:entities} WHERE NOT deleted;
CREATE OR REPLACE TEMP VIEW observations_history AS
SELECT * EXCLUDE (version, batch_id, deleted) FROM {history:observations} WHERE NOT deleted;
CREATE OR REPLACE TEMP VIEW events_history AS
SELECT * EXCLUDE (version, batch_id, deleted) FROM {history:events} WHERE NOT deleted;
CREATE OR REPLACE TEMP VIEW interactions_history AS
SELECT * EXCLUDE (version, batch_id, deleted) FROM {history:interactions} WHERE NOT deleted;
CREATE OR REPLACE TEMP VIEW artifacts_history AS
SELECT * EXCLUDE (version, batch_id, deleted) FROM {history:artifacts} WHERE NOT deleted;

-- One row per grid (entity, T0) and fact known at T0.
CREATE OR REPLACE TEMP VIEW obs_asof AS
SELECT g.entity_id, g.t0, o.* EXCLUDE (entity_id, known_from, known_to)
FROM t0_grid g
JOIN observations_history o
  ON o.entity_id = g.entity_id AND o.known_from <= g.t0 AND (o.known_to IS NULL OR o.known_to > g.t0);

CREATE OR REPLACE TEMP VIEW self_asof AS
SELECT g.entity_id, g.t0, e.kind, e.parent_id, e.created_at, e.attrs
FROM t0_grid g
JOIN entities_history e
  ON e.entity_id = g.entity_id AND e.known_from <= g.t0 AND (e.known_to IS NULL OR e.known_to > g.t0);

CREATE OR REPLACE TEMP VIEW events_asof AS
SELECT g.entity_id, g.t0, v.event_type, v.value, v.observed_at, v.available_at
FROM t0_grid g
JOIN events_history v
  ON v.entity_id = g.entity_id AND v.known_from <= g.t0 AND (v.known_to IS NULL OR v.known_to > g.t0);

CREATE OR REPLACE TEMP VIEW artifacts_asof AS
SELECT g.entity_id, g.t0, a.kind, a.text, a.path, a.content_hash, a.observed_at, a.available_at
FROM t0_grid g
JOIN artifacts_history a
  ON a.entity_id = g.entity_id AND a.known_from <= g.t0 AND (a.known_to IS NULL OR a.known_to > g.t0);

-- Interactions the grid entity takes part in, as source (`out`) or target (`in`).
CREATE OR REPLACE TEMP VIEW interactions_asof AS
SELECT g.entity_id, g.t0, 'out' AS direction, i.source_id, i.target_id, i.type, i.value, i.observed_at, i.available_at
FROM t0_grid g
JOIN interactions_history i
  ON i.source_id = g.entity_id AND i.known_from <= g.t0 AND (i.known_to IS NULL OR i.known_to > g.t0)
UNION ALL
SELECT g.entity_id, g.t0, 'in', i.source_id, i.target_id, i.type, i.value, i.observed_at, i.available_at
FROM t0_grid g
JOIN interactions_history i
  ON i.target_id = g.entity_id AND i.source_id <> i.target_id
 AND i.known_from <= g.t0 AND (i.known_to IS NULL OR i.known_to > g.t0);
