-- score: the population stability (PSI) of every feature and of the prediction of each score
-- run against the model's training block (bins fixed at training time, stored in the model).
CREATE TABLE drift (
    run_id      VARCHAR NOT NULL,
    model_run   VARCHAR NOT NULL,
    label       VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    name        VARCHAR NOT NULL,
    psi         DOUBLE NOT NULL,
    rows        BIGINT NOT NULL
);
