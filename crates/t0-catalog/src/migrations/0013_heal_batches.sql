-- Entity buckets (issue 31): the versions a heal run appends carry a batch named after what it
-- repairs (its rules and its audit's population), not after the run, so a bucket's repairs
-- carry the batch one root's would. The run → batch map finds a crashed run's versions again.
CREATE TABLE heal_batches (
    run_id    VARCHAR PRIMARY KEY,
    batch_id  VARCHAR NOT NULL
);
