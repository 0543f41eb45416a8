//! Declarative data contracts (a project's `contracts/*.yaml`): per table, a schema and a list of
//! checks, each with a severity. A malformed contract is refused before any check runs, with
//! the file, the line of the offending check and the problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use t0_core::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    #[default]
    Error,
}

/// One check of a contract. Every variant yields the keys of the rows (or groups) that fail.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    NotNull {
        columns: Vec<String>,
    },
    Unique {
        columns: Vec<String>,
    },
    AllowedValues {
        column: String,
        /// Text, numbers or booleans (compared as the column's text form: `1`, `2.5`, `true`).
        #[serde(deserialize_with = "scalars")]
        values: Vec<String>,
    },
    Range {
        column: String,
        min: Option<Bound>,
        max: Option<Bound>,
    },
    Regex {
        column: String,
        pattern: String,
    },
    References {
        column: String,
        table: String,
        key: String,
    },
    /// The newest `column` value must be within `max_age_hours` of the pinned `--as-of`.
    Freshness {
        column: String,
        max_age_hours: f64,
    },
    /// Rows known more than `max_lag_hours` after they were observed.
    Lateness {
        max_lag_hours: f64,
    },
    /// Rows observed after they were available, or observed/available after the as-of.
    FutureTimestamps,
    /// Counters that go down between consecutive snapshots of one key (current versions).
    Monotonic {
        key: Vec<String>,
        order: String,
        columns: Vec<String>,
    },
    /// Two current snapshots of one key with identical values at different times.
    DuplicateSnapshots {
        key: Vec<String>,
        order: String,
        columns: Vec<String>,
        #[serde(default = "one_minute")]
        within_seconds: i64,
    },
    /// A live state after a terminal one, per key in `order` (unless an event of type
    /// `revival_event` lies between them), or a state entered without the event that proves it
    /// (`require_event`: state -> event type, at or before the snapshot, in `events`).
    StatusTransitions {
        key: Vec<String>,
        order: String,
        column: String,
        terminal: Vec<String>,
        #[serde(default)]
        require_event: BTreeMap<String, String>,
        revival_event: Option<String>,
    },
    /// A SELECT returning one row per failing item (first column: its key), run read-only.
    /// `{current:<table>}` stands for the current live rows of a canonical table.
    Sql {
        query: String,
    },
    /// The table's row count against the history of earlier audit runs.
    RowCount {
        max_abs_change: Option<f64>,
        max_rel_change: Option<f64>,
        max_z: Option<f64>,
        #[serde(default = "ten")]
        window: usize,
    },
    /// An aggregate (`expr`, e.g. `avg(amount)`) against the history of earlier audit runs.
    Metric {
        metric: String,
        expr: String,
        max_abs_change: Option<f64>,
        max_rel_change: Option<f64>,
        max_z: Option<f64>,
        #[serde(default = "ten")]
        window: usize,
    },
    /// Distribution drift of a numeric column against its stored baseline (taken by the first
    /// audit that runs the check, or by `--rebaseline`): PSI over baseline deciles and a
    /// two-sample KS statistic evaluated at the baseline's percentiles.
    Drift {
        column: String,
        max_psi: Option<f64>,
        max_ks: Option<f64>,
    },
}

pub use t0_core::config::Bound;

fn ten() -> usize {
    10
}

fn one_minute() -> i64 {
    60
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub severity: Severity,
    /// Check every stored version instead of the current version of each fact.
    pub all_versions: bool,
    pub kind: Kind,
    /// 1-based line of the check in its contract file.
    pub line: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Contract {
    pub file: PathBuf,
    pub table: String,
    /// Expected schema: column -> DuckDB type name (checked when given).
    pub columns: BTreeMap<String, String>,
    pub checks: Vec<Check>,
}

fn at(file: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::config(file, format!("line {line}: {msg}"))
}

impl Contract {
    pub fn load(file: &Path) -> Result<Contract> {
        let text = t0_core::config::read_text(file)?;
        Contract::parse(file, &text)
    }

    /// Parse contract `text`; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Contract> {
        let yaml_err = |e: serde_yaml::Error| {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            at(file, line, e)
        };
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(yaml_err)?;
        let map = doc.as_mapping().ok_or_else(|| at(file, 1, "a contract is a mapping with table and checks"))?;
        for k in map.keys() {
            let k = k.as_str().unwrap_or("?");
            if !["table", "columns", "checks"].contains(&k) {
                return Err(at(file, 1, format!("unknown key {k:?} (expected table, columns, checks)")));
            }
        }
        let table =
            map.get("table").and_then(|v| v.as_str()).ok_or_else(|| at(file, 1, "missing `table`"))?.to_string();
        let columns: BTreeMap<String, String> = match map.get("columns") {
            Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| at(file, 1, format!("columns: {e}")))?,
            None => BTreeMap::new(),
        };
        let lines = t0_core::config::item_lines(text, "checks");
        let mut checks = Vec::new();
        let items = match map.get("checks") {
            Some(serde_yaml::Value::Sequence(s)) => s.clone(),
            Some(_) => return Err(at(file, 1, "`checks` must be a list")),
            None => Vec::new(),
        };
        for (i, item) in items.into_iter().enumerate() {
            let line = lines.get(i).copied().unwrap_or(0);
            let serde_yaml::Value::Mapping(mut m) = item else {
                return Err(at(file, line, "a check is a mapping with a `type`"));
            };
            let severity = match m.remove("severity") {
                Some(v) => serde_yaml::from_value(v).map_err(|e| at(file, line, format!("severity: {e}")))?,
                None => Severity::Error,
            };
            let name = m.remove("name").and_then(|v| v.as_str().map(str::to_string));
            let all_versions = match m.remove("all_versions") {
                Some(v) => v.as_bool().ok_or_else(|| at(file, line, "all_versions: expected true or false"))?,
                None => false,
            };
            let kind: Kind = serde_yaml::from_value(serde_yaml::Value::Mapping(m)).map_err(|e| at(file, line, e))?;
            let name = name.unwrap_or_else(|| default_name(&kind));
            checks.push(Check { name, severity, all_versions, kind, line });
        }
        Ok(Contract { file: file.to_path_buf(), table, columns, checks })
    }

    /// Load every `*.yaml` in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Vec<Contract>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| t0_core::config::unreadable(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files.iter().map(|f| Contract::load(f)).collect()
    }

    pub fn error_at(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        at(&self.file, line, msg)
    }
}

fn default_name(kind: &Kind) -> String {
    let v = serde_json::to_value(kind).unwrap_or_default();
    let ty = v["type"].as_str().unwrap_or("check").to_string();
    let what = v
        .get("column")
        .or_else(|| v.get("columns"))
        .map(|c| match c {
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","),
            other => other.as_str().unwrap_or_default().to_string(),
        })
        .unwrap_or_default();
    if what.is_empty() { ty } else { format!("{ty}({what})") }
}

/// A list of scalars as their text forms (a numeric column's allowed values may be numbers).
fn scalars<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let values: Vec<serde_yaml::Value> = Deserialize::deserialize(d)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_yaml::Value::String(s) => Ok(s),
            serde_yaml::Value::Number(n) => Ok(n.to_string()),
            serde_yaml::Value::Bool(b) => Ok(b.to_string()),
            other => {
                Err(serde::de::Error::custom(format!("allowed value {other:?} is not text, a number or a boolean")))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_values_may_be_numbers_and_booleans_but_not_lists() {
        let c = Contract::parse(
            Path::new("c.yaml"),
            "table: observations\nchecks:\n  - {type: allowed_values, column: flag, values: [0, 1, 2.5, true, x]}\n",
        )
        .unwrap();
        let Kind::AllowedValues { values, .. } = &c.checks[0].kind else { panic!("an allowed_values check") };
        assert_eq!(values, &["0", "1", "2.5", "true", "x"]);
        let e = Contract::parse(
            Path::new("c.yaml"),
            "table: observations\nchecks:\n  - {type: allowed_values, column: flag, values: [[1]]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.yaml") && e.contains("not text, a number or a boolean"), "{e}");
    }
}
