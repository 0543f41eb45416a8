//! Source mappings (a project's `sources.yaml`): which files feed which canonical table, how
//! their columns map, how their times are written, and when their facts became available.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use t0_core::{Error, Result};

use crate::Project;
use crate::vocab::{self as spec, TableSpec};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireConfig {
    pub sources: Vec<SourceConfig>,
    /// The file the mapping was read from, for errors found later.
    #[serde(skip)]
    pub origin: String,
}

pub use t0_source::Format;
pub use t0_source::time::Zone;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name of the source: landing files go to `lake/raw/<name>/`.
    pub name: String,
    /// Canonical table: entities, observations, events, interactions or artifacts.
    pub table: String,
    /// File name pattern relative to the input directory (`*` and `?` wildcards).
    pub glob: String,
    /// Default: from the file extension (.csv, .parquet, .ndjson/.jsonl).
    #[serde(default)]
    pub format: Option<Format>,
    /// Canonical column -> source column, for columns whose names differ.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Source columns stored as JSON in `attrs` (of entities, or of the entities an
    /// observations source registers).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// (observations) The file also introduces its entities: each entity id not known yet is
    /// registered with this kind, first seen at its earliest row (a panel in one file).
    /// (entities) The kind of every row the file gives none (it may have no `kind` column).
    #[serde(default)]
    pub entities: Option<EntityRegistration>,
    /// Source columns deliberately not ingested (others that nothing reads are reported).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// strftime format of timestamps without an offset; default accepts ISO-8601 forms.
    #[serde(default)]
    pub timestamp_format: Option<String>,
    /// Zone of timestamps written without an offset: `UTC`, `+02:00` or an IANA name.
    #[serde(default = "utc")]
    pub timezone: String,
    /// `ingest_time`, `observed_time`, `observed_time + <n><s|m|h|d>` or `column`
    /// (the mapped `available_at` column).
    pub availability: String,
    /// Directory that artifact paths are relative to (relative to the input directory).
    #[serde(default)]
    pub media_root: Option<String>,
    /// A field longer than this is quarantined (bytes).
    #[serde(default = "max_field")]
    pub max_field_bytes: usize,
    /// CSV delimiter.
    #[serde(default = "comma")]
    pub delimiter: char,
    /// Through when the source covers the world (labels mature against it): a UTC time,
    /// `latest_observed` (default) or `latest_available` (`crate::completeness`).
    #[serde(default)]
    pub complete_through: Option<String>,
    /// (observations, events) Each row describes the period of this length that starts at its
    /// time (`1 year` for a `%Y` column): `observed_at` is stamped at the period's end, when
    /// its value became true, so a T0 inside the period neither sees it nor counts it as past.
    #[serde(default)]
    pub period: Option<String>,
    /// (availability: column) The source publishes forecasts: a row known before the time it
    /// describes (`available_at` before `observed_at`) is kept. Otherwise it is quarantined.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forecasts: bool,
}

impl SourceConfig {
    /// The declared period (validated when the mapping was loaded).
    pub fn period(&self) -> Option<crate::Horizon> {
        self.period.clone().and_then(|p| crate::Horizon::try_from(p).ok())
    }
}

fn utc() -> String {
    "UTC".into()
}
fn max_field() -> usize {
    1 << 20
}
fn comma() -> char {
    ','
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRegistration {
    pub kind: String,
}

/// How `available_at` is derived for a source (DESIGN.md "Time: two clocks").
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    IngestTime,
    ObservedTime,
    ObservedPlus { seconds: i64 },
    Column,
}

impl Availability {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        match s {
            "ingest_time" => return Some(Availability::IngestTime),
            "observed_time" => return Some(Availability::ObservedTime),
            "column" => return Some(Availability::Column),
            _ => {}
        }
        let lag = s.strip_prefix("observed_time")?.trim().strip_prefix('+')?.trim();
        let (num, unit) = lag.split_at(lag.find(|c: char| !c.is_ascii_digit())?);
        let n: i64 = num.parse().ok()?;
        let mult = match unit.trim() {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        let seconds = n.checked_mul(mult).filter(|s| *s <= MAX_LAG_SECONDS)?;
        Some(Availability::ObservedPlus { seconds })
    }
}

/// The longest availability lag: a century (a longer one is a typo, and would carry
/// `available_at` past the times t0-clip stores).
pub const MAX_LAG_SECONDS: i64 = 100 * 366 * 86_400;

/// A `timestamp_format` must be a strftime format that can read back a time it writes:
/// otherwise every row of the source would be quarantined for a configuration error.
fn check_time_format(f: &str) -> std::result::Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!("{f:?} is not a strftime format (an unknown or incomplete % specifier)"));
    }
    let sample = chrono::NaiveDate::from_ymd_opt(2001, 2, 3)
        .and_then(|d| d.and_hms_opt(4, 5, 6))
        .expect("a valid date")
        .and_utc()
        .fixed_offset();
    let mut text = String::new();
    write!(text, "{}", sample.format(f)).map_err(|_| format!("{f:?} cannot format a time"))?;
    let utc = Zone::parse("UTC").expect("UTC");
    t0_source::time::parse_time(&text, Some(f), utc).map(|_| ()).map_err(|_| {
        format!(
            "{f:?} cannot read back the time it writes ({text:?}), so no value could match it: \
             a timestamp format needs at least a year"
        )
    })
}

impl SourceConfig {
    pub fn spec(&self) -> &'static TableSpec {
        spec::spec(&self.table).expect("validated")
    }

    pub fn availability(&self) -> Availability {
        Availability::parse(&self.availability).expect("validated")
    }

    pub fn zone(&self) -> Zone {
        Zone::parse(&self.timezone).expect("validated")
    }

    /// The source column that feeds canonical column `c`.
    pub fn source_column<'a>(&'a self, c: &'a str) -> &'a str {
        self.columns.get(c).map(String::as_str).unwrap_or(c)
    }

    pub fn format_of(&self, file: &Path) -> Option<Format> {
        self.format.or_else(|| match file.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            _ => None,
        })
    }
}

impl AcquireConfig {
    /// Reject what cannot work before any file is read, naming the source and field.
    pub fn validate(&self, origin: &str, project: &Project) -> Result<()> {
        let bad = |i: usize, s: &SourceConfig, msg: String| {
            Error::config(origin, format!("sources[{i}] ({}): {msg}", s.name))
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !names.insert(&s.name) {
                return Err(bad(i, s, "duplicate source name".into()));
            }
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(bad(i, s, "name must be non-empty [A-Za-z0-9_-]".into()));
            }
            let Some(spec) = spec::spec(&s.table) else {
                return Err(bad(i, s, format!("table: unknown canonical table {:?}", s.table)));
            };
            let Some(av) = Availability::parse(&s.availability) else {
                return Err(bad(
                    i,
                    s,
                    format!(
                        "availability: {:?} is not ingest_time, observed_time, observed_time + <n><s|m|h|d> \
                         (at most 100 years) or column",
                        s.availability
                    ),
                ));
            };
            if let Some(f) = &s.timestamp_format {
                check_time_format(f).map_err(|e| bad(i, s, format!("timestamp_format: {e}")))?;
            }
            if s.forecasts && av != Availability::Column {
                return Err(bad(i, s, "forecasts: only a source with `availability: column` can be early".into()));
            }
            if let Some(m) = &s.media_root
                && (Path::new(m).is_absolute()
                    || Path::new(m).components().any(|c| c == std::path::Component::ParentDir))
            {
                return Err(bad(i, s, format!("media_root: {m:?} must be a directory inside the input directory")));
            }
            if let Some(Err(e)) = s.complete_through.as_deref().map(crate::completeness::CompleteThrough::parse) {
                return Err(bad(i, s, e));
            }
            if let Some(p) = &s.period {
                if !["observations", "events"].contains(&s.table.as_str()) {
                    return Err(bad(i, s, "period: only observations and events describe periods".into()));
                }
                crate::Horizon::try_from(p.clone()).map_err(|e| bad(i, s, format!("period: {e}")))?;
            }
            if av == Availability::Column && !spec.has_column("available_at") {
                return Err(bad(i, s, "availability: column needs an available_at column".into()));
            }
            for c in s.columns.keys() {
                let measure = s.table == "observations" && project.measure(c).is_some();
                if !spec.has_column(c) && !measure {
                    let hint = if s.table == "observations" {
                        format!(
                            " (roles: entity_id, observed_at, available_at; measures of project {}: {})",
                            project.name(),
                            project.measures().iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    } else {
                        String::new()
                    };
                    return Err(bad(i, s, format!("columns: {c:?} is not a column of {}{hint}", s.table)));
                }
            }
            if s.entities.is_some() && !["observations", "entities"].contains(&s.table.as_str()) {
                return Err(bad(
                    i,
                    s,
                    "entities: an observations source registers entities with it; an entities source gives rows without a kind column that kind".into(),
                ));
            }
            if !s.attributes.is_empty() && s.table != "entities" && s.entities.is_none() {
                return Err(bad(
                    i,
                    s,
                    "attributes: only entities have attributes (or an observations source with `entities:`)".into(),
                ));
            }
            if Zone::parse(&s.timezone).is_none() {
                return Err(bad(i, s, format!("timezone: unknown zone {:?}", s.timezone)));
            }
            if s.table == "artifacts" && s.media_root.is_none() {
                return Err(bad(i, s, "media_root: artifacts need a media root".into()));
            }
            if s.glob.contains("..") || Path::new(&s.glob).is_absolute() {
                return Err(bad(i, s, "glob: must stay inside the input directory".into()));
            }
        }
        Ok(())
    }
}

/// Match a file name against a pattern with `*` and `?`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_and_zones_parse() {
        assert_eq!(Availability::parse("observed_time + 2h"), Some(Availability::ObservedPlus { seconds: 7200 }));
        assert_eq!(Availability::parse("column"), Some(Availability::Column));
        assert_eq!(Availability::parse("observed_time + 2 weeks"), None);
        assert_eq!(
            Availability::parse("observed_time + 36500d"),
            Some(Availability::ObservedPlus { seconds: 36500 * 86_400 })
        );
        assert_eq!(Availability::parse("observed_time + 9223372036854775807h"), None);
        assert_eq!(Availability::parse("observed_time + 40000d"), None);
        assert!(Zone::parse("Europe/Berlin").is_some());
        assert!(Zone::parse("+05:30").is_some());
        assert!(Zone::parse("Mars/Olympus").is_none());
    }

    #[test]
    fn a_timestamp_format_must_read_back_what_it_writes() {
        for ok in ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y", "%Y", "%Y-%m", "%Y-%m-%dT%H:%M:%S%z", "%s"] {
            assert_eq!(check_time_format(ok), Ok(()), "{ok}");
        }
        for (bad, why) in
            [("%Q", "not a strftime"), ("%Y-%m-%", "not a strftime"), ("%H:%M", "read back"), ("day", "read back")]
        {
            let e = check_time_format(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("observations*.csv", "observations.csv"));
        assert!(glob_match("observations*.csv", "observations-2026-01.csv"));
        assert!(!glob_match("observations*.csv", "observations.csv.bak"));
        assert!(glob_match("part-?.parquet", "part-1.parquet"));
    }
}
