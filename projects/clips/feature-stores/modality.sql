-- Entrypoint `modality`: artifact-derived columns, each NULL unless its artifact was visible at
-- T0 and arrived within `sla_hours` of being observed (a late pipeline looks the same in
-- training as it will when serving).
CREATE OR REPLACE TEMP VIEW modality_on_time AS
SELECT a.*, a.available_at <= a.observed_at + to_hours(CAST(p.sla_hours AS BIGINT)) AS on_time
FROM artifacts_asof a CROSS JOIN certify_params p;

CREATE OR REPLACE TEMP VIEW surface_modality AS
SELECT g.entity_id,
       g.t0,
       CASE WHEN ti.on_time THEN len(string_split(trim(ti.text), ' ')) END AS title_words,
       CASE WHEN ti.on_time THEN length(ti.text) END                     AS title_chars,
       CASE WHEN th.on_time THEN th.content_hash END                     AS thumbnail_hash,
       CASE WHEN au.on_time THEN au.content_hash END                     AS audio_hash
FROM t0_grid g
LEFT JOIN modality_on_time ti ON ti.entity_id = g.entity_id AND ti.t0 = g.t0 AND ti.kind = 'title'
LEFT JOIN modality_on_time th ON th.entity_id = g.entity_id AND th.t0 = g.t0 AND th.kind = 'thumbnail'
LEFT JOIN modality_on_time au ON au.entity_id = g.entity_id AND au.t0 = g.t0 AND au.kind = 'audio';
