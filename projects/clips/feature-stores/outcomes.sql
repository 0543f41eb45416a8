-- Matured outcomes as they were known over time (a block of the `priors` store).
-- A clip's outcome is ln(1 + views) at `prior_horizon_hours` after its creation, from the last
-- snapshot at or before that horizon. It matures once a snapshot at or past the horizon is
-- visible. Its value as known at time τ uses only the versions visible at τ, so each clip has
-- one row per change of what was known: [known_from, known_to). Readers pick the row valid at
-- their cutoff, which lies at or before T0 minus the embargo.
CREATE OR REPLACE TEMP VIEW outcome_clips AS
SELECT entity_id, arg_min(parent_id, version) AS channel, min(created_at) AS created_at,
       min(created_at) + to_hours(CAST(any_value(p.prior_horizon_hours) AS BIGINT)) AS horizon_at
FROM entities, certify_params p
WHERE kind = 'clip'
GROUP BY entity_id;

-- Versions of the snapshots that decide an outcome, with the time each became visible.
CREATE OR REPLACE TEMP VIEW outcome_rows AS
SELECT o.entity_id, o.observed_at, o.version, o.views, o.deleted,
       greatest(o.observed_at, o.available_at) AS visible_at
FROM observations o
JOIN outcome_clips c ON c.entity_id = o.entity_id AND o.observed_at <= c.horizon_at;

CREATE OR REPLACE TEMP VIEW outcome_matured AS
SELECT o.entity_id, min(greatest(o.observed_at, o.available_at)) AS matured_at
FROM observations o
JOIN outcome_clips c ON c.entity_id = o.entity_id AND o.observed_at >= c.horizon_at
WHERE NOT o.deleted
GROUP BY o.entity_id;

-- The moments at which what is known about an outcome can change.
CREATE OR REPLACE TEMP VIEW outcome_moments AS
SELECT entity_id, matured_at AS moment FROM outcome_matured
UNION
SELECT r.entity_id, r.visible_at FROM outcome_rows r JOIN outcome_matured m USING (entity_id)
WHERE r.visible_at > m.matured_at;

CREATE OR REPLACE TEMP TABLE outcome_known AS
WITH visible AS (
    SELECT m.entity_id, m.moment, r.observed_at, r.views, r.deleted
    FROM outcome_moments m
    JOIN outcome_rows r ON r.entity_id = m.entity_id AND r.visible_at <= m.moment
    QUALIFY row_number() OVER (PARTITION BY m.entity_id, m.moment, r.observed_at ORDER BY r.version DESC) = 1
), states AS (
    SELECT entity_id, moment, ln(1 + arg_max(views, observed_at) FILTER (WHERE NOT deleted)) AS outcome
    FROM visible
    GROUP BY entity_id, moment
)
SELECT s.entity_id, c.channel, c.created_at, s.outcome, s.moment AS known_from,
       lead(s.moment) OVER (PARTITION BY s.entity_id ORDER BY s.moment) AS known_to
FROM states s JOIN outcome_clips c USING (entity_id);

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
