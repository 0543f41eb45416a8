-- certify: dataset-hash baselines of chosen T0 days, per entrypoint. The newest row of an
-- (entrypoint, t0_day) is the baseline a later certification compares with.
CREATE TABLE certify_baselines (
    run_id        VARCHAR NOT NULL,
    entrypoint    VARCHAR NOT NULL,
    t0_day        DATE NOT NULL,
    dataset_hash  VARCHAR NOT NULL,
    rows          BIGINT NOT NULL,
    recorded_at   TIMESTAMP NOT NULL
);
