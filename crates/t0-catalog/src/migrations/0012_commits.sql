-- `commit` (issue 31): the single writer of a bucketed root records, in the base root, each
-- stage's buckets joined: the commit file and its blake3, one row per commit.
CREATE TABLE commits (
    seq           BIGINT PRIMARY KEY,
    commit_id     VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    buckets       INTEGER NOT NULL,
    commit_path   VARCHAR NOT NULL,
    commit_hash   VARCHAR NOT NULL,
    gate          VARCHAR,
    committed_at  TIMESTAMP NOT NULL,
    UNIQUE (stage, commit_id)
);
