-- Projects: the measures of `observations` follow the project's declaration. Each change of
-- that schema (the first declaration included) is recorded here; a root never silently takes
-- another project's measures.
CREATE TABLE schema_changes (
    seq           BIGINT NOT NULL,
    project       VARCHAR NOT NULL,
    project_hash  VARCHAR NOT NULL,
    change        VARCHAR NOT NULL,
    -- The declared measures after the change, as JSON [{name, type, required}].
    measures      VARCHAR NOT NULL,
    changed_at    TIMESTAMP NOT NULL
);
