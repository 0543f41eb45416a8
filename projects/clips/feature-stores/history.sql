-- Entrypoint `history`: counts, growth and velocity over windows ending at T0 (24 h, 72 h,
-- 7 d). The start of a window is the last snapshot visible at or before T0 - w; a clip created
-- inside the window starts from 0.
CREATE OR REPLACE TEMP VIEW history_points AS
SELECT o.entity_id, o.t0,
       arg_max(o.views, o.observed_at)                                                       AS v_t0,
       arg_max(o.views, o.observed_at) FILTER (WHERE o.observed_at <= o.t0 - INTERVAL 24 HOUR)  AS v_24h,
       arg_max(o.views, o.observed_at) FILTER (WHERE o.observed_at <= o.t0 - INTERVAL 72 HOUR)  AS v_72h,
       arg_max(o.views, o.observed_at) FILTER (WHERE o.observed_at <= o.t0 - INTERVAL 168 HOUR) AS v_168h,
       count(*) FILTER (WHERE o.observed_at > o.t0 - INTERVAL 24 HOUR)                        AS n_24h,
       count(*) FILTER (WHERE o.observed_at > o.t0 - INTERVAL 72 HOUR)                        AS n_72h,
       count(*) FILTER (WHERE o.observed_at > o.t0 - INTERVAL 168 HOUR)                       AS n_168h
FROM obs_asof o
GROUP BY o.entity_id, o.t0;

CREATE OR REPLACE TEMP VIEW history_start AS
SELECT p.*, s.created_at,
       coalesce(p.v_24h,  CASE WHEN s.created_at >= p.t0 - INTERVAL 24 HOUR  THEN 0 END) AS s_24h,
       coalesce(p.v_72h,  CASE WHEN s.created_at >= p.t0 - INTERVAL 72 HOUR  THEN 0 END) AS s_72h,
       coalesce(p.v_168h, CASE WHEN s.created_at >= p.t0 - INTERVAL 168 HOUR THEN 0 END) AS s_168h
FROM history_points p
LEFT JOIN self_asof s ON s.entity_id = p.entity_id AND s.t0 = p.t0;

CREATE OR REPLACE TEMP VIEW surface_history AS
SELECT g.entity_id,
       g.t0,
       coalesce(h.n_24h, 0)                       AS snapshots_24h,
       coalesce(h.n_72h, 0)                       AS snapshots_72h,
       coalesce(h.n_168h, 0)                      AS snapshots_168h,
       h.v_t0 - h.s_24h                           AS views_gain_24h,
       h.v_t0 - h.s_72h                           AS views_gain_72h,
       h.v_t0 - h.s_168h                          AS views_gain_168h,
       (h.v_t0 - h.s_24h) / 24.0                  AS views_per_hour_24h,
       (h.v_t0 - h.s_168h) / 168.0                AS views_per_hour_168h,
       ln(1 + h.v_t0) - ln(1 + h.s_72h)           AS log_growth_72h
FROM t0_grid g
LEFT JOIN history_start h ON h.entity_id = g.entity_id AND h.t0 = g.t0;
