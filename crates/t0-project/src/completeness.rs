//! Completeness watermarks: the moment, in observed time, through which a canonical table
//! covers the world. A label matures against its table's watermark, not against the entity
//! being seen again, so a quiet entity's empty window counts as "nothing happened" once the
//! data is known to cover it (ARCHITECTURE.md, "Labels").
//!
//! Declared per source in `sources.yaml` as `complete_through`: a timestamp (UTC),
//! `latest_observed` (the default: the latest `observed_at` ingested for the table) or
//! `latest_available` (the latest moment a fact became known: a yearly figure published a
//! month after year end covers the world through its publication). A table fed by several
//! sources is complete through the earliest of them.

use std::collections::BTreeMap;

use serde::Deserialize;
use t0_core::{Error, Result};

use crate::Project;

/// How one source declares its coverage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompleteThrough {
    LatestObserved,
    LatestAvailable,
    /// A UTC timestamp, normalised to `YYYY-MM-DD HH:MM:SS`.
    At(String),
}

impl CompleteThrough {
    /// Parse a declaration; `None` names what is accepted.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "latest_observed" => return Ok(CompleteThrough::LatestObserved),
            "latest_available" => return Ok(CompleteThrough::LatestAvailable),
            _ => {}
        }
        let t = s.trim().trim_end_matches('Z').replace('T', " ");
        let ok = match t.len() {
            10 => chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d").is_ok(),
            19 => chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S").is_ok(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "complete_through: {s:?} is not a UTC time (2024-12-31 or 2024-12-31T00:00:00Z), latest_observed or latest_available"
            ));
        }
        Ok(CompleteThrough::At(if t.len() == 10 { format!("{t} 00:00:00") } else { t }))
    }

    /// The watermark as a SQL scalar over `current` (the table's live current rows).
    fn sql(&self, current: &str) -> String {
        match self {
            CompleteThrough::LatestObserved => format!("(SELECT max(observed_at) FROM {current})"),
            CompleteThrough::LatestAvailable => {
                format!("(SELECT max(greatest(observed_at, coalesce(available_at, observed_at))) FROM {current})")
            }
            CompleteThrough::At(t) => format!("TIMESTAMP '{t}'"),
        }
    }
}

#[derive(Deserialize)]
struct Sources {
    sources: Vec<SourceDecl>,
}

#[derive(Deserialize)]
struct SourceDecl {
    name: String,
    table: String,
    #[serde(default)]
    complete_through: Option<String>,
}

/// Table → (source, declaration) for every source of the project's `sources.yaml` (a source
/// without `complete_through` is `latest_observed`). An unreadable declaration is a config
/// error naming the file and source.
pub fn declared(project: &Project) -> Result<BTreeMap<String, Vec<(String, CompleteThrough)>>> {
    let rel = &project.def.sources;
    if !project.has(rel) {
        return Ok(BTreeMap::new());
    }
    let (name, text) = project.read(rel)?;
    let parsed: Sources = serde_yaml::from_str(&text).map_err(|e| Error::config(&name, e.to_string()))?;
    let mut out: BTreeMap<String, Vec<(String, CompleteThrough)>> = BTreeMap::new();
    for s in parsed.sources {
        let c = match &s.complete_through {
            None => CompleteThrough::LatestObserved,
            Some(t) => {
                CompleteThrough::parse(t).map_err(|e| Error::config(&name, format!("source {}: {e}", s.name)))?
            }
        };
        out.entry(s.table).or_default().push((s.name, c));
    }
    Ok(out)
}

/// The watermark of `table` as SQL over `current` (its live current rows): the earliest of
/// its sources' declarations, `latest_observed` when none is declared.
pub fn watermark_sql(decls: &BTreeMap<String, Vec<(String, CompleteThrough)>>, table: &str, current: &str) -> String {
    match decls.get(table).map(Vec::as_slice) {
        None | Some([]) => CompleteThrough::LatestObserved.sql(current),
        Some([(_, one)]) => one.sql(current),
        Some(many) => format!("least({})", many.iter().map(|(_, c)| c.sql(current)).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_parse_or_name_what_is_accepted() {
        assert_eq!(CompleteThrough::parse("latest_available"), Ok(CompleteThrough::LatestAvailable));
        assert_eq!(CompleteThrough::parse("2024-12-31"), Ok(CompleteThrough::At("2024-12-31 00:00:00".into())));
        assert_eq!(
            CompleteThrough::parse("2024-12-31T06:00:00Z"),
            Ok(CompleteThrough::At("2024-12-31 06:00:00".into()))
        );
        for bad in ["yesterday", "2024-13-01", "2024-12-31T25:00:00Z", "'; DROP TABLE x; --"] {
            assert!(CompleteThrough::parse(bad).unwrap_err().contains("complete_through"), "{bad}");
        }
    }

    #[test]
    fn a_table_with_several_sources_is_complete_through_the_earliest() {
        let mut d = BTreeMap::new();
        d.insert(
            "events".to_string(),
            vec![
                ("a".into(), CompleteThrough::At("2024-01-01 00:00:00".into())),
                ("b".into(), CompleteThrough::LatestObserved),
            ],
        );
        let sql = watermark_sql(&d, "events", "cur");
        assert!(sql.starts_with("least(TIMESTAMP '2024-01-01 00:00:00', (SELECT max(observed_at) FROM cur))"), "{sql}");
        assert_eq!(watermark_sql(&d, "observations", "o"), "(SELECT max(observed_at) FROM o)");
    }
}
