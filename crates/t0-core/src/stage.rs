//! Typed stage names and gate decisions. Both serialise to the words manifests have always
//! carried (`"train-suite"`, `"CERTIFIED"`), so a manifest reads the same; code compares
//! variants, never strings, and a decision carries its own exit code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ExitCode;

/// A stage of the loop: the name of its manifests directory and catalog rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Acquire,
    Audit,
    Heal,
    Certify,
    Labels,
    Embed,
    TrainSuite,
    Score,
    Calibrate,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Acquire,
        Stage::Audit,
        Stage::Heal,
        Stage::Certify,
        Stage::Labels,
        Stage::Embed,
        Stage::TrainSuite,
        Stage::Score,
        Stage::Calibrate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Acquire => "acquire",
            Stage::Audit => "audit",
            Stage::Heal => "heal",
            Stage::Certify => "certify",
            Stage::Labels => "labels",
            Stage::Embed => "embed",
            Stage::TrainSuite => "train-suite",
            Stage::Score => "score",
            Stage::Calibrate => "calibrate",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("{s:?} is not a stage"))
    }
}

/// What a gate decided: audit PASS/FAIL, certify CERTIFIED/FAILED, calibrate PASS/DERISK/BLOCK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Certified,
    Failed,
    Derisk,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Certified => "CERTIFIED",
            Verdict::Failed => "FAILED",
            Verdict::Derisk => "DERISK",
            Verdict::Block => "BLOCK",
        }
    }

    /// The stage's exit code for this decision: 1 when the gate said no (DESIGN's contract).
    pub fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Pass | Verdict::Certified | Verdict::Derisk => ExitCode::Done,
            Verdict::Fail | Verdict::Failed | Verdict::Block => ExitCode::Gate,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialise_as_manifests_always_wrote_them() {
        for st in Stage::ALL {
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
            assert_eq!(st.as_str().parse::<Stage>(), Ok(st));
        }
        assert_eq!(serde_json::to_string(&Stage::TrainSuite).unwrap(), "\"train-suite\"");
        assert!("train_suite".parse::<Stage>().is_err());
        for (v, s, code) in [
            (Verdict::Pass, "PASS", 0),
            (Verdict::Fail, "FAIL", 1),
            (Verdict::Certified, "CERTIFIED", 0),
            (Verdict::Failed, "FAILED", 1),
            (Verdict::Derisk, "DERISK", 0),
            (Verdict::Block, "BLOCK", 1),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Verdict>(&format!("\"{s}\"")).unwrap(), v);
            assert_eq!(v.exit_code().code(), code);
        }
    }
}
