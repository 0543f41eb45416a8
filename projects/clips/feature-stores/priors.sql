-- Entrypoint `priors`: cohort anchors of matured outcomes with a fallback ladder. A clip's own
-- channel is used when its effective sample size (Kish, recency-weighted) reaches `min_ess`;
-- otherwise all clips; otherwise nothing (prior_level = 'none').
-- Weighted sums are exact: each weight (at most 1) is rounded to a multiple of 2^-100 and summed
-- as HUGEINT, so the result does not depend on the order DuckDB's threads add rows in. (Ordered
-- float sums, `sum(x ORDER BY entity_id)`, did the same at twice the time and memory: they buffer
-- every (cutoff, fact) row.) Weights below 2^-100 (100 half-lives) count as 0, and squares below
-- it too (50 half-lives); a cohort whose facts are all that old has no effective sample size.
CREATE OR REPLACE TEMP MACRO prior_xsum(x) AS sum(CAST(x * 1.2676506002282294e30 AS HUGEINT));

CREATE OR REPLACE TEMP VIEW prior_channel AS
SELECT cutoff, channel, count(*) AS n, median(outcome) AS med,
       CAST(prior_xsum(w * tail) AS DOUBLE) / CAST(prior_xsum(w) AS DOUBLE) AS tail_rate,
       pow(CAST(prior_xsum(w) AS DOUBLE), 2) / nullif(CAST(prior_xsum(w * w) AS DOUBLE), 0)
           / 1.2676506002282294e30 AS ess
FROM prior_facts GROUP BY cutoff, channel;

CREATE OR REPLACE TEMP VIEW prior_global AS
SELECT cutoff, count(*) AS n, median(outcome) AS med,
       CAST(prior_xsum(w * tail) AS DOUBLE) / CAST(prior_xsum(w) AS DOUBLE) AS tail_rate,
       pow(CAST(prior_xsum(w) AS DOUBLE), 2) / nullif(CAST(prior_xsum(w * w) AS DOUBLE), 0)
           / 1.2676506002282294e30 AS ess
FROM prior_facts GROUP BY cutoff;

CREATE OR REPLACE TEMP VIEW priors_ladder AS
SELECT g.entity_id, g.t0, c.cutoff,
       ch.n AS ch_n, ch.med AS ch_med, ch.tail_rate AS ch_tail, ch.ess AS ch_ess,
       gl.n AS gl_n, gl.med AS gl_med, gl.tail_rate AS gl_tail, gl.ess AS gl_ess,
       p.min_ess
FROM t0_grid g
JOIN prior_cutoffs c ON c.t0 = g.t0
CROSS JOIN certify_params p
LEFT JOIN self_asof s     ON s.entity_id = g.entity_id AND s.t0 = g.t0
LEFT JOIN prior_channel ch ON ch.cutoff = c.cutoff AND ch.channel = s.parent_id
LEFT JOIN prior_global gl  ON gl.cutoff = c.cutoff;

-- Weight of evidence of the clip's channel for the tail outcome, fit out of fold: folds are
-- contiguous blocks of `fold_days` days of creation time, and outcomes of the T0's own block
-- are left out; only outcomes known before the cutoff count.
CREATE OR REPLACE TEMP VIEW woe_keys AS
SELECT DISTINCT c.cutoff, CAST(floor(epoch(g.t0) / 86400.0 / p.fold_days) AS BIGINT) AS fold
FROM t0_grid g JOIN prior_cutoffs c ON c.t0 = g.t0 CROSS JOIN certify_params p;

CREATE OR REPLACE TEMP VIEW woe_counts AS
SELECT k.cutoff, k.fold, f.channel, sum(f.tail) AS pos, sum(1 - f.tail) AS neg
FROM woe_keys k
JOIN prior_facts f ON f.cutoff = k.cutoff
CROSS JOIN certify_params p
WHERE CAST(floor(epoch(f.created_at) / 86400.0 / p.fold_days) AS BIGINT) <> k.fold
GROUP BY k.cutoff, k.fold, f.channel;

CREATE OR REPLACE TEMP VIEW woe_totals AS
SELECT cutoff, fold, sum(pos) AS pos, sum(neg) AS neg FROM woe_counts GROUP BY cutoff, fold;

CREATE OR REPLACE TEMP VIEW surface_priors AS
SELECT l.entity_id,
       l.t0,
       CASE WHEN l.ch_ess >= l.min_ess THEN 'channel' WHEN l.gl_ess >= l.min_ess THEN 'global' ELSE 'none' END
                                                                             AS prior_level,
       CASE WHEN l.ch_ess >= l.min_ess THEN l.ch_med  WHEN l.gl_ess >= l.min_ess THEN l.gl_med  END AS prior_log_views,
       CASE WHEN l.ch_ess >= l.min_ess THEN l.ch_tail WHEN l.gl_ess >= l.min_ess THEN l.gl_tail END AS prior_tail_rate,
       CASE WHEN l.ch_ess >= l.min_ess THEN l.ch_ess  WHEN l.gl_ess >= l.min_ess THEN l.gl_ess  END AS prior_ess,
       CASE WHEN l.ch_ess >= l.min_ess THEN l.ch_n    WHEN l.gl_ess >= l.min_ess THEN l.gl_n    END AS prior_n,
       CASE WHEN t.pos IS NOT NULL
            THEN ln((coalesce(w.pos, 0) + 0.5) / (t.pos + 0.5)) - ln((coalesce(w.neg, 0) + 0.5) / (t.neg + 0.5))
       END                                                                   AS channel_tail_woe
FROM priors_ladder l
CROSS JOIN certify_params p
LEFT JOIN self_asof s ON s.entity_id = l.entity_id AND s.t0 = l.t0
LEFT JOIN woe_totals t
       ON t.cutoff = l.cutoff AND t.fold = CAST(floor(epoch(l.t0) / 86400.0 / p.fold_days) AS BIGINT)
LEFT JOIN woe_counts w
       ON w.cutoff = l.cutoff AND w.fold = t.fold AND w.channel = s.parent_id;
