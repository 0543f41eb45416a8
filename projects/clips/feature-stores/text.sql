-- Entrypoint `text`: the title text visible at T0 (input of `embed`).
CREATE OR REPLACE TEMP VIEW surface_text AS
SELECT g.entity_id, g.t0, a.text AS title
FROM t0_grid g
LEFT JOIN artifacts_asof a ON a.entity_id = g.entity_id AND a.t0 = g.t0 AND a.kind = 'title';
