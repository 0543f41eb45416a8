-- acquire: richer canonical model, interactions, media hashes, resumable ingest -------------
ALTER TABLE entities ADD COLUMN attrs VARCHAR;
ALTER TABLE artifacts ADD COLUMN content_hash VARCHAR;
CREATE TABLE interactions (
    source_id    VARCHAR NOT NULL,
    target_id    VARCHAR NOT NULL,
    type         VARCHAR NOT NULL,
    value        DOUBLE,
    observed_at  TIMESTAMP NOT NULL,
    available_at TIMESTAMP NOT NULL,
    version      INTEGER NOT NULL,
    batch_id     VARCHAR NOT NULL
);
-- Progress of a file being ingested in chunks: a killed ingest resumes after `rows_done`.
CREATE TABLE ingest_checkpoints (
    batch_id          VARCHAR PRIMARY KEY,
    source            VARCHAR NOT NULL,
    file              VARCHAR NOT NULL,
    chunks_done       BIGINT NOT NULL,
    rows_done         BIGINT NOT NULL,
    rows_ingested     BIGINT NOT NULL,
    rows_unchanged    BIGINT NOT NULL,
    rows_quarantined  BIGINT NOT NULL
);
ALTER TABLE ingest_batches ADD COLUMN rows_unchanged BIGINT DEFAULT 0;
