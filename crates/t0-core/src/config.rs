use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Parse YAML `text` into `T`; `name` (a file) is named with the line and column on error.
pub fn parse_yaml<T: DeserializeOwned>(name: &str, text: &str) -> Result<T> {
    serde_yaml::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!("line {}, column {}: ", l.line(), l.column())).unwrap_or_default();
        Error::config(name, format!("{at}{e}"))
    })
}

/// A configuration file the user named cannot be read: a usage error (exit 2), not an
/// internal one.
pub fn unreadable(path: &Path, e: std::io::Error) -> Error {
    Error::config(path, format!("cannot read: {e}"))
}

/// Read a configuration text file the user named (contracts, rules, store SQL).
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| unreadable(path, e))
}

/// Hash of a configuration value that was not read from a file (defaults, CLI flags), made
/// from its canonical JSON so field order in the source does not matter.
pub fn value_hash<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("serialising plain config structs cannot fail");
    crate::blake3_hex(&json)
}

/// A bound in a contract or rule: a number, or another column of the same row (`max: total`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum Bound {
    Value(f64),
    Column(String),
}

impl Bound {
    /// The bound as SQL over the row aliased `alias`.
    pub fn sql(&self, alias: &str) -> String {
        match self {
            Bound::Value(v) => format!("{v}"),
            Bound::Column(c) => format!("{alias}.{c}"),
        }
    }
}

/// 1-based line numbers of the items of the top-level sequence `key:` in a YAML text, in
/// order, so errors about the n-th item can name its line.
pub fn item_lines(text: &str, key: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut indent = None;
    let head = format!("{key}:");
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let depth = l.len() - t.len();
        if depth == 0 {
            inside = t.starts_with(&head);
            continue;
        }
        if inside && (t.starts_with("- ") || t == "-") {
            let d = *indent.get_or_insert(depth);
            if depth == d {
                lines.push(i + 1);
            }
        }
    }
    lines
}

/// `s` as a single-quoted SQL string literal (file paths given to `read_parquet`, values in
/// the SQL a declaration compiles to).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_line_of_each_item() {
        let text = "table: t\n# c\nchecks:\n  - type: not_null\n    columns: [a]\n\n  - type: unique\n    columns: [a]\nother:\n  - x\n";
        assert_eq!(super::item_lines(text, "checks"), vec![4, 7]);
        assert_eq!(super::item_lines(text, "other"), vec![10]);
    }
}
