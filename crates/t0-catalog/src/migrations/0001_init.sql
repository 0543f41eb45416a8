-- Stage bookkeeping -------------------------------------------------------------------------
CREATE TABLE manifests (
    seq            BIGINT PRIMARY KEY,
    stage          VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    manifest_path  VARCHAR NOT NULL,
    manifest_hash  VARCHAR NOT NULL,
    recorded_at    TIMESTAMP NOT NULL,
    UNIQUE (stage, run_id)
);
-- Which run last produced each named output (canonical tables, surfaces, models, ...).
CREATE TABLE outputs (
    seq           BIGINT NOT NULL,
    name          VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    content_hash  VARCHAR NOT NULL,
    rows          BIGINT
);

-- Canonical, versioned, two-clock records ---------------------------------------------------
CREATE TABLE entities (
    entity_id    VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    parent_id    VARCHAR,
    created_at   TIMESTAMP,
    observed_at  TIMESTAMP NOT NULL,
    available_at TIMESTAMP NOT NULL,
    version      INTEGER NOT NULL,
    batch_id     VARCHAR NOT NULL
);
CREATE TABLE observations (
    entity_id    VARCHAR NOT NULL,
    observed_at  TIMESTAMP NOT NULL,
    available_at TIMESTAMP NOT NULL,
    -- The project's measures are added by t0_project::schema at the first acquire.
    version      INTEGER NOT NULL,
    batch_id     VARCHAR NOT NULL
);
CREATE TABLE events (
    entity_id    VARCHAR NOT NULL,
    event_type   VARCHAR NOT NULL,
    value        DOUBLE,
    observed_at  TIMESTAMP NOT NULL,
    available_at TIMESTAMP NOT NULL,
    version      INTEGER NOT NULL,
    batch_id     VARCHAR NOT NULL
);
CREATE TABLE artifacts (
    entity_id    VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    text         VARCHAR,
    path         VARCHAR,
    observed_at  TIMESTAMP NOT NULL,
    available_at TIMESTAMP NOT NULL,
    version      INTEGER NOT NULL,
    batch_id     VARCHAR NOT NULL
);
CREATE TABLE ingest_batches (
    batch_id          VARCHAR PRIMARY KEY,
    source            VARCHAR NOT NULL,
    file              VARCHAR NOT NULL,
    file_hash         VARCHAR NOT NULL,
    rows_read         BIGINT NOT NULL,
    rows_ingested     BIGINT NOT NULL,
    rows_quarantined  BIGINT NOT NULL,
    landing_path      VARCHAR NOT NULL,
    ingested_at       TIMESTAMP NOT NULL
);
CREATE TABLE quarantine (
    batch_id     VARCHAR NOT NULL,
    file         VARCHAR NOT NULL,
    row_number   BIGINT NOT NULL,
    column_name  VARCHAR,
    reason       VARCHAR NOT NULL,
    raw          VARCHAR
);

-- audit ----------------------------------------------------------------------------------
CREATE TABLE audit_findings (
    run_id      VARCHAR NOT NULL,
    check_name  VARCHAR NOT NULL,
    table_name  VARCHAR NOT NULL,
    severity    VARCHAR NOT NULL,
    failing     BIGINT NOT NULL,
    sample      VARCHAR NOT NULL
);
CREATE TABLE audit_verdicts (
    run_id      VARCHAR NOT NULL,
    data_hash   VARCHAR NOT NULL,
    verdict     VARCHAR NOT NULL,
    errors      BIGINT NOT NULL,
    warnings    BIGINT NOT NULL,
    audited_at  TIMESTAMP NOT NULL
);

-- heal -----------------------------------------------------------------------------------
CREATE TABLE heal_ledger (
    seq          BIGINT NOT NULL,
    run_id       VARCHAR NOT NULL,
    table_name   VARCHAR NOT NULL,
    row_key      VARCHAR NOT NULL,
    column_name  VARCHAR NOT NULL,
    old_value    VARCHAR,
    new_value    VARCHAR,
    rule_id      VARCHAR NOT NULL,
    rule_hash    VARCHAR NOT NULL,
    finding      VARCHAR NOT NULL,
    patched_at   TIMESTAMP NOT NULL,
    prev_hash    VARCHAR NOT NULL,
    entry_hash   VARCHAR NOT NULL
);

-- certify --------------------------------------------------------------------------------
CREATE TABLE certificates (
    run_id         VARCHAR NOT NULL,
    entrypoint     VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    certified_at   TIMESTAMP NOT NULL,
    view_def_hash  VARCHAR NOT NULL,
    dataset_hash   VARCHAR NOT NULL,
    t0_min         TIMESTAMP,
    t0_max         TIMESTAMP,
    rows           BIGINT NOT NULL,
    notes          VARCHAR NOT NULL
);

-- calibrate ------------------------------------------------------------------------------
CREATE TABLE acceptance (
    run_id      VARCHAR NOT NULL,
    state       VARCHAR NOT NULL,
    coverage    DOUBLE,
    nominal     DOUBLE NOT NULL,
    matured     BIGINT NOT NULL,
    decided_at  TIMESTAMP NOT NULL
);
