-- Matured outcomes as they were known over time (a block of the `priors` store), read from
-- the history views only. A clip's outcome is ln(1 + views) at `prior_horizon_hours` after its
-- creation, from the last snapshot at or before that horizon; it matures once a snapshot at or
-- past the horizon is known. Both the clip (its creation time and channel) and its snapshots
-- are versioned on two clocks, so what is known about an outcome changes over system time:
-- one row per state, valid over [known_from, known_to). Readers pick the state valid at their
-- cutoff, which lies at or before T0 minus the embargo: a version that became known later
-- (a late revision of the creation time, a late snapshot) never reaches an earlier cutoff.

-- Each known version of a clip, with the horizon it implies.
CREATE OR REPLACE TEMP VIEW outcome_clips AS
SELECT e.entity_id, e.parent_id AS channel, e.created_at,
       e.created_at + to_hours(CAST(p.prior_horizon_hours AS BIGINT)) AS horizon_at,
       e.known_from AS clip_from, e.known_to AS clip_to
FROM entities_history e, certify_params p
WHERE e.kind = 'clip';

-- Versions of the snapshots that can decide an outcome (observed by the latest horizon any
-- version of the clip implies).
CREATE OR REPLACE TEMP TABLE outcome_rows AS
SELECT o.entity_id, o.observed_at, o.views, o.known_from, o.known_to
FROM observations_history o
JOIN (SELECT entity_id, max(horizon_at) AS h FROM outcome_clips GROUP BY entity_id) c
  ON c.entity_id = o.entity_id AND o.observed_at <= c.h;

-- When each clip version's outcome matured: it is known, and so is a snapshot past its horizon.
CREATE OR REPLACE TEMP VIEW outcome_matured AS
SELECT c.entity_id, c.clip_from, greatest(c.clip_from, min(o.known_from)) AS matured_at
FROM outcome_clips c
JOIN observations_history o ON o.entity_id = c.entity_id AND o.observed_at >= c.horizon_at
GROUP BY c.entity_id, c.clip_from, c.clip_to
HAVING c.clip_to IS NULL OR greatest(c.clip_from, min(o.known_from)) < c.clip_to;

-- The moments at which what is known about an outcome can change.
CREATE OR REPLACE TEMP VIEW outcome_moments AS
SELECT entity_id, clip_from, matured_at AS moment FROM outcome_matured
UNION
SELECT m.entity_id, m.clip_from, x.moment
FROM outcome_matured m
JOIN outcome_clips c ON c.entity_id = m.entity_id AND c.clip_from = m.clip_from
JOIN (SELECT entity_id, observed_at, known_from AS moment FROM outcome_rows
      UNION ALL
      SELECT entity_id, observed_at, known_to FROM outcome_rows WHERE known_to IS NOT NULL) x
  ON x.entity_id = m.entity_id AND x.observed_at <= c.horizon_at
WHERE x.moment > m.matured_at AND (c.clip_to IS NULL OR x.moment < c.clip_to);

CREATE OR REPLACE TEMP TABLE outcome_known AS
WITH states AS (
    SELECT m.entity_id, m.clip_from, m.moment, ln(1 + arg_max(r.views, r.observed_at)) AS outcome
    FROM outcome_moments m
    JOIN outcome_clips c ON c.entity_id = m.entity_id AND c.clip_from = m.clip_from
    LEFT JOIN outcome_rows r
      ON r.entity_id = m.entity_id AND r.observed_at <= c.horizon_at
     AND r.known_from <= m.moment AND (r.known_to IS NULL OR r.known_to > m.moment)
    GROUP BY m.entity_id, m.clip_from, m.moment
)
SELECT s.entity_id, c.channel, c.created_at, s.outcome, s.moment AS known_from,
       coalesce(lead(s.moment) OVER (PARTITION BY s.entity_id, s.clip_from ORDER BY s.moment), c.clip_to) AS known_to
FROM states s JOIN outcome_clips c ON c.entity_id = s.entity_id AND c.clip_from = s.clip_from;

-- One cutoff per T0 day: the day start at or before T0 minus the embargo.
CREATE OR REPLACE TEMP VIEW prior_cutoffs AS
SELECT DISTINCT g.t0,
       date_trunc('day', g.t0 - to_hours(CAST(p.embargo_hours AS BIGINT)))::TIMESTAMP AS cutoff
FROM t0_grid g, certify_params p;

-- Outcomes known strictly before each cutoff, with recency weights for the effective sample size
-- (tables, not views: three aggregates read them).
CREATE OR REPLACE TEMP TABLE prior_facts AS
SELECT c.cutoff, k.channel, k.created_at, k.outcome,
       CAST(k.outcome >= ln(1 + p.tail_views) AS DOUBLE) AS tail,
       pow(0.5, date_diff('second', k.known_from, c.cutoff) / 86400.0 / p.half_life_days) AS w
FROM (SELECT DISTINCT cutoff FROM prior_cutoffs) c
JOIN outcome_known k ON k.known_from < c.cutoff AND (k.known_to IS NULL OR k.known_to >= c.cutoff)
CROSS JOIN certify_params p
WHERE k.outcome IS NOT NULL;
