-- Entrypoint `panel`: as-of features of a country at T0 from the visible (published)
-- estimates: the last values, their change and rate over the ten years before the last
-- estimate, the number of estimates, and the continent (an entity attribute).
CREATE OR REPLACE TEMP VIEW panel_last AS
SELECT entity_id, t0,
       max(observed_at)                          AS last_seen,
       count(*)                                  AS n_obs,
       arg_max(life_exp, observed_at)            AS life_exp_last,
       arg_max(pop, observed_at)                 AS pop_last,
       arg_max(gdp_per_cap, observed_at)         AS gdp_last
FROM obs_asof
GROUP BY entity_id, t0;

CREATE OR REPLACE TEMP VIEW panel_prev AS
SELECT o.entity_id, o.t0,
       max(o.observed_at)                        AS prev_seen,
       arg_max(o.life_exp, o.observed_at)        AS life_exp_prev,
       arg_max(o.pop, o.observed_at)             AS pop_prev,
       arg_max(o.gdp_per_cap, o.observed_at)     AS gdp_prev
FROM obs_asof o
JOIN panel_last l ON l.entity_id = o.entity_id AND l.t0 = o.t0
WHERE o.observed_at <= l.last_seen - INTERVAL '10 years'
GROUP BY o.entity_id, o.t0;

CREATE OR REPLACE TEMP VIEW surface_panel AS
SELECT g.entity_id,
       g.t0,
       coalesce(l.n_obs, 0)                                                   AS n_obs,
       date_diff('day', l.last_seen, g.t0) / 365.25                           AS years_since_last,
       l.life_exp_last,
       l.pop_last,
       l.gdp_last,
       l.life_exp_last - p.life_exp_prev                                      AS life_exp_change_10y,
       (l.life_exp_last - p.life_exp_prev) / (date_diff('day', p.prev_seen, l.last_seen) / 365.25)
                                                                              AS life_exp_per_year,
       ln(l.gdp_last / p.gdp_prev)                                            AS gdp_log_growth_10y,
       ln(l.pop_last / p.pop_prev)                                            AS pop_log_growth_10y,
       -- A static attribute kept by acquire in `attrs` (JSON text; read without the JSON extension).
       regexp_extract(s.attrs, '"continent":\s*"([^"]*)"', 1)                 AS continent
FROM t0_grid g
LEFT JOIN self_asof s  ON s.entity_id = g.entity_id AND s.t0 = g.t0
LEFT JOIN panel_last l ON l.entity_id = g.entity_id AND l.t0 = g.t0
LEFT JOIN panel_prev p ON p.entity_id = g.entity_id AND p.t0 = g.t0;
