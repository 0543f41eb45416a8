-- A resumed or completed-after-a-crash acquire reports exactly what an uninterrupted run
-- reports (issue 30): the checkpoint counts the entities a file registered, and a finished
-- file keeps its report until a manifest records it.
ALTER TABLE ingest_checkpoints ADD COLUMN entities_registered BIGINT DEFAULT 0;
ALTER TABLE ingest_batches ADD COLUMN report VARCHAR;
