//! Integration tests through the real stage binaries: one test binary (one link, one shared
//! finished loop), one module per question.

mod buckets;
mod certify;
mod chain;
mod corpus;
mod crash;
mod governance;
mod labels;
mod lineage;
mod projects;
mod record;
mod recovery;
mod report;
mod snapshots;
mod support;
mod tamper;
