-- heal: tombstones and the quarantine of rows no rule can repair ------------------------------
-- A repair that removes a fact appends a version with deleted = true; readers of the current
-- state skip such versions, as-of readers before the repair still see the row.
ALTER TABLE entities ADD COLUMN deleted BOOLEAN DEFAULT false;
ALTER TABLE observations ADD COLUMN deleted BOOLEAN DEFAULT false;
ALTER TABLE events ADD COLUMN deleted BOOLEAN DEFAULT false;
ALTER TABLE interactions ADD COLUMN deleted BOOLEAN DEFAULT false;
ALTER TABLE artifacts ADD COLUMN deleted BOOLEAN DEFAULT false;
CREATE TABLE heal_quarantine (
    run_id      VARCHAR NOT NULL,
    table_name  VARCHAR NOT NULL,
    row_key     VARCHAR NOT NULL,
    rule_id     VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    patched_at  TIMESTAMP NOT NULL,
    -- The revert run that restored the row, if any.
    released_by VARCHAR
);
