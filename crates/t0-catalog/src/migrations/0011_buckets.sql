-- Entity buckets (issue 31): a bucket's acquire reads every row of a file and keeps its own;
-- the rows of other buckets are counted (rows read = ingested + unchanged + quarantined +
-- other buckets), and a resumed file restores the count.
ALTER TABLE ingest_checkpoints ADD COLUMN rows_other_buckets BIGINT DEFAULT 0;
