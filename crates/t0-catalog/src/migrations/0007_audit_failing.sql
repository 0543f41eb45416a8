-- Every failing row an audit check named (its key text, as in audit_findings.sample), for the
-- checks whose failing items are rows of the table: heal restricts each rule to the rows (or
-- the partitions of the rows) the finding it answers flagged.
CREATE TABLE audit_failing (
    run_id      VARCHAR NOT NULL,
    table_name  VARCHAR NOT NULL,
    check_name  VARCHAR NOT NULL,
    row_key     VARCHAR NOT NULL
);
