-- Entrypoint `base`: the latest visible snapshot at T0, its history and static attributes.
CREATE OR REPLACE TEMP VIEW base_history AS
SELECT entity_id, t0,
       arg_max(views, observed_at)    AS views_t0,
       arg_max(likes, observed_at)    AS likes_t0,
       arg_max(comments, observed_at) AS comments_t0,
       count(*)                       AS n_snapshots,
       max(observed_at)               AS last_seen
FROM obs_asof
GROUP BY entity_id, t0;

-- Other clips of the same channel as known at T0 (their known version is live and names it).
CREATE OR REPLACE TEMP VIEW base_channel AS
SELECT s.entity_id, s.t0, count(DISTINCT e.entity_id) AS channel_clips
FROM self_asof s
JOIN entities_history e
  ON e.parent_id = s.parent_id AND e.entity_id <> s.entity_id
 AND e.known_from <= s.t0 AND (e.known_to IS NULL OR e.known_to > s.t0)
GROUP BY s.entity_id, s.t0;

CREATE OR REPLACE TEMP VIEW surface_base AS
SELECT g.entity_id,
       g.t0,
       h.views_t0,
       h.likes_t0,
       h.comments_t0,
       coalesce(h.n_snapshots, 0)                                   AS n_snapshots,
       date_diff('second', h.last_seen, g.t0) / 3600.0              AS hours_since_last,
       h.views_t0 / greatest(date_diff('second', s.created_at, h.last_seen) / 3600.0, 1.0)
                                                                    AS views_per_hour,
       coalesce(c.channel_clips, 0)                                 AS channel_clips,
       -- A static attribute kept by acquire in `attrs` (JSON text; read without the JSON extension).
       TRY_CAST(regexp_extract(s.attrs, '"duration_s":\s*"?([0-9.]+)', 1) AS DOUBLE) AS duration_s
FROM t0_grid g
LEFT JOIN self_asof s    ON s.entity_id = g.entity_id AND s.t0 = g.t0
LEFT JOIN base_history h ON h.entity_id = g.entity_id AND h.t0 = g.t0
LEFT JOIN base_channel c ON c.entity_id = g.entity_id AND c.t0 = g.t0;
