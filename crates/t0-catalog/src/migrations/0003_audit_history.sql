-- audit: metric history (anomaly checks compare against earlier runs) and drift baselines ----
CREATE TABLE audit_metrics (
    run_id       VARCHAR NOT NULL,
    table_name   VARCHAR NOT NULL,
    metric       VARCHAR NOT NULL,
    value        DOUBLE,
    recorded_at  TIMESTAMP NOT NULL
);
CREATE TABLE audit_baselines (
    table_name   VARCHAR NOT NULL,
    column_name  VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    -- 101 quantiles (0%, 1%, ..., 100%) of the column when the baseline was taken, as JSON.
    quantiles    VARCHAR NOT NULL,
    rows         BIGINT NOT NULL,
    created_at   TIMESTAMP NOT NULL
);
