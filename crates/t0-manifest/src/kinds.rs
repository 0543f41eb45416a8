//! The registry of output kinds: every name a stage records an output under matches exactly
//! one kind here, with the stage that produces it and who reads it next. `record_output`
//! refuses a name no kind matches, and the tamper test (`crates/t0-cli/tests/it/tamper.rs`)
//! damages one output of every kind and runs its reader, so a new kind cannot ship without
//! its tamper check: the test fails on a kind no loop produces, or whose reader does not
//! refuse the damage naming it.

use t0_core::Stage;

/// Who reads an output next, and so must refuse it damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A stage that consumes it (verified against its manifest): exit 3 naming it.
    Stage { stage: &'static str, args: &'static [&'static str] },
    /// Read by people and by `verify` only (exit 1 naming it): reports, curves, the
    /// leaderboard, explanations.
    Verify,
}

#[derive(Debug, Clone, Copy)]
pub struct OutputKind {
    /// The output's name, or its prefix when it ends with `.` (one output per table, store,
    /// label, model …).
    pub name: &'static str,
    /// The stages that record it (canonical tables: acquire, then heal's repairs).
    pub producers: &'static [Stage],
    pub reader: Reader,
    pub what: &'static str,
}

const fn stage(stage: &'static str, args: &'static [&'static str]) -> Reader {
    Reader::Stage { stage, args }
}

const fn kind(name: &'static str, producer: &'static [Stage], reader: Reader, what: &'static str) -> OutputKind {
    OutputKind { name, producers: producer, reader, what }
}

/// Every output kind, in pipeline order.
pub const OUTPUT_KINDS: &[OutputKind] = &[
    // Read once, by the acquire that landed it; later only `verify` reads it.
    kind("landing.", &[Stage::Acquire], Reader::Verify, "a source file's landing copy (lake/raw)"),
    kind("canonical.", &[Stage::Acquire, Stage::Heal], stage("audit", &[]), "a canonical table (acquire, then heal)"),
    kind("audit.findings", &[Stage::Audit], stage("heal", &[]), "the audit's findings"),
    kind("audit.failing", &[Stage::Audit], stage("heal", &[]), "every failing row of the audit"),
    kind("audit.verdict", &[Stage::Audit], stage("certify", &[]), "the audit's verdict"),
    kind("heal.ledger", &[Stage::Heal], stage("audit", &[]), "the heal run's ledger entries"),
    kind("surface.", &[Stage::Certify], stage("certify", &["labels"]), "a certified feature surface"),
    kind("certificate.", &[Stage::Certify], stage("train-suite", &[]), "a surface's certificate"),
    kind("labels", &[Stage::Labels], stage("train-suite", &[]), "the labels"),
    // Read by train-suite only where `features.embeddings` names the input (the clips loop
    // trains on the fused vectors, whose reading is the same verified consume).
    kind("embeddings.", &[Stage::Embed], Reader::Verify, "one input's embeddings"),
    kind("fused.", &[Stage::Embed], stage("train-suite", &[]), "fused embeddings"),
    kind("run.served.", &[Stage::TrainSuite], stage("score", &[]), "a label's served model"),
    kind("run.model", &[Stage::TrainSuite], stage("calibrate", &[]), "the target's model"),
    kind("run.models.", &[Stage::TrainSuite], stage("score", &["--models", "all"]), "a leaderboard model"),
    kind("run.split", &[Stage::TrainSuite], Reader::Verify, "the split manifest"),
    kind("run.predictions.", &[Stage::TrainSuite], Reader::Verify, "held-out predictions"),
    kind("run.curves.", &[Stage::TrainSuite], Reader::Verify, "learning curves"),
    kind("run.config", &[Stage::TrainSuite], Reader::Verify, "the configuration used"),
    kind("run.data_summary", &[Stage::TrainSuite], Reader::Verify, "the data summary"),
    kind("run.metrics", &[Stage::TrainSuite], Reader::Verify, "the metrics summary"),
    kind("run.slices", &[Stage::TrainSuite], Reader::Verify, "slice metrics"),
    kind("run.leaderboard", &[Stage::TrainSuite], Reader::Verify, "the leaderboard"),
    kind("predictions", &[Stage::Score], stage("calibrate", &[]), "scored predictions with intervals"),
    kind("explanations", &[Stage::Score], Reader::Verify, "per-row explanations"),
    kind("drift", &[Stage::Score], stage("calibrate", &[]), "feature drift against training"),
    kind("drift.table", &[Stage::Score], Reader::Verify, "drift rows in the catalog"),
    kind("calib.report", &[Stage::Calibrate], stage("score", &[]), "the calibrate report (ACI state)"),
    kind(
        "calib.steps",
        &[Stage::Calibrate],
        stage("report", &[]),
        "every step calibrate replayed (the report reads it)",
    ),
    kind("calib.state", &[Stage::Calibrate], stage("score", &[]), "the governance state per label"),
    kind("calib.acceptance", &[Stage::Calibrate], Reader::Verify, "acceptance rows"),
    // Read by the next calibrate that replays (another profile here: the last one has nothing new).
    kind(
        "calib.ci_gate",
        &[Stage::Calibrate],
        stage("calibrate", &["--set", "aci.gamma=0.011"]),
        "the CI gate's state",
    ),
    kind("calib.results", &[Stage::Calibrate], Reader::Verify, "the grid search's results"),
    kind("calib.topk", &[Stage::Calibrate], Reader::Verify, "the grid search's best patches"),
];

impl OutputKind {
    pub fn matches(&self, name: &str) -> bool {
        if self.name.ends_with('.') {
            name.starts_with(self.name) && name.len() > self.name.len()
        } else {
            name == self.name
        }
    }
}

/// The kind of output `name`: the longest registered name that matches.
pub fn kind_of(name: &str) -> Option<&'static OutputKind> {
    OUTPUT_KINDS.iter().filter(|k| k.matches(name)).max_by_key(|k| k.name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_their_kind_and_strangers_none() {
        assert_eq!(kind_of("canonical.observations").map(|k| k.name), Some("canonical."));
        assert_eq!(kind_of("drift.table").map(|k| k.name), Some("drift.table"));
        assert_eq!(kind_of("drift").map(|k| k.name), Some("drift"));
        assert_eq!(kind_of("run.models.views.gbdt").map(|k| k.name), Some("run.models."));
        assert!(kind_of("canonical.").is_none());
        assert!(kind_of("surprise").is_none());
        let mut names: Vec<&str> = OUTPUT_KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), OUTPUT_KINDS.len(), "a kind registered twice");
    }
}
