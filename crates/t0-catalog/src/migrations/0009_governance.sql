-- calibrate: the governance loop's state per model run and label after each replay (ACI α,
-- inflation, coverage EMA, streaks, the machine's state; `carry` is the whole state as JSON,
-- the same the calibrate report holds), and the CI gate's EMA and streaks per calibrate run.
CREATE TABLE governance_state (
    run_id        VARCHAR NOT NULL,
    model_run     VARCHAR NOT NULL,
    label         VARCHAR NOT NULL,
    state         VARCHAR NOT NULL,
    alpha         DOUBLE NOT NULL,
    inflation     DOUBLE NOT NULL,
    coverage_ema  DOUBLE NOT NULL,
    miss_streak   BIGINT NOT NULL,
    steps         BIGINT NOT NULL,
    last_t0       TIMESTAMP,
    last_entity   VARCHAR,
    carry         VARCHAR NOT NULL
);

CREATE TABLE ci_gate (
    run_id          VARCHAR NOT NULL,
    gap             DOUBLE,
    ema             DOUBLE,
    state           VARCHAR NOT NULL,
    violation_run   BIGINT NOT NULL,
    clean_run       BIGINT NOT NULL
);
