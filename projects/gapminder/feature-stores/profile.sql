-- Entrypoint `profile`: a one-line text profile of the country as known at T0 (its name and
-- continent), the input of the text embedding.
CREATE OR REPLACE TEMP VIEW surface_profile AS
SELECT g.entity_id,
       g.t0,
       g.entity_id || ', a country in '
           || coalesce(regexp_extract(s.attrs, '"continent":\s*"([^"]*)"', 1), 'an unknown continent') AS description
FROM t0_grid g
LEFT JOIN self_asof s ON s.entity_id = g.entity_id AND s.t0 = g.t0;
