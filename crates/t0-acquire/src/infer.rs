//! `acquire infer`: read sample source files and write a starting project — measures with
//! guessed types, a source mapping (entity and time columns, timestamp format, key check),
//! starting contracts from what was observed (not-null, key uniqueness, ranges, allowed values
//! of low-cardinality text), generic as-of feature stores, a label and features. Every guess is
//! marked as a suggestion to review, as Deequ's constraint suggestion and dbt's generated
//! sources do for their users.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use t0_core::{Error, Result};

use crate::config::{Format, Zone};
use crate::reader::{self, Item};

pub struct InferArgs {
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
    /// Rows read per file for the guesses.
    pub sample_rows: usize,
    /// Project name; default: the output directory's name.
    pub name: Option<String>,
    pub delimiter: char,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnGuess {
    pub column: String,
    /// count, integer, float, boolean, text, categorical or time.
    pub kind: String,
    pub nulls: u64,
    pub distinct: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Low-cardinality text values (at most 20).
    pub values: Vec<String>,
    /// strftime format, for time columns written in a non-ISO form.
    pub timestamp_format: Option<String>,
    /// More than one format fits every sampled value (day-first or month-first?).
    pub ambiguous_format: bool,
    /// Same value on every row of an entity (an entity attribute).
    pub constant_per_entity: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FileGuess {
    pub file: String,
    pub rows_sampled: u64,
    pub entity_column: String,
    pub time_column: String,
    /// Whether (entity, time) was unique in the sample.
    pub key_unique: bool,
    pub columns: Vec<ColumnGuess>,
}

#[derive(Debug, serde::Serialize)]
pub struct InferReport {
    pub project: String,
    pub out: String,
    pub files: Vec<FileGuess>,
    pub written: Vec<String>,
}

const MAX_TRACKED: usize = 10_000;
/// Non-ISO time formats tried on text columns, in order of preference (day-first before
/// month-first: a column that parses both ways is flagged as ambiguous in the mapping).
const TIME_FORMATS: &[&str] = &["%Y-%m", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M"];
const CATEGORICAL_MAX: usize = 20;

#[derive(Default)]
struct Stats {
    n: u64,
    nulls: u64,
    distinct: BTreeSet<String>,
    overflow: bool,
    int: bool,
    float: bool,
    boolean: bool,
    iso_time: bool,
    /// Whether every value so far parses with `TIME_FORMATS[i]`.
    formats: Vec<bool>,
    min: f64,
    max: f64,
}

fn is_bool(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "t" | "f")
}

impl Stats {
    fn new() -> Self {
        Stats {
            int: true,
            float: true,
            boolean: true,
            iso_time: true,
            formats: vec![true; TIME_FORMATS.len()],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        }
    }
    fn add(&mut self, v: Option<&str>) {
        self.n += 1;
        let Some(v) = v.map(str::trim) else {
            self.nulls += 1;
            return;
        };
        if !self.overflow {
            self.distinct.insert(v.to_string());
            self.overflow = self.distinct.len() > MAX_TRACKED;
        }
        self.int &= v.parse::<i64>().is_ok();
        let f = v.parse::<f64>().ok().filter(|f| f.is_finite());
        self.float &= f.is_some();
        if let Some(f) = f {
            self.min = self.min.min(f);
            self.max = self.max.max(f);
        }
        self.boolean &= is_bool(v);
        let utc = Zone::Fixed(chrono::FixedOffset::east_opt(0).expect("utc"));
        self.iso_time &= crate::ingest::parse_time(v, None, utc).is_ok() && v.len() >= 10;
        for (ok, f) in self.formats.iter_mut().zip(TIME_FORMATS) {
            *ok = *ok && crate::ingest::parse_time(v, Some(f), utc).is_ok();
        }
    }
    fn seen(&self) -> bool {
        self.n > self.nulls
    }
}

fn format_of(file: &Path) -> Result<Format> {
    match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv" | "tsv" | "txt") => Ok(Format::Csv),
        Some("parquet") => Ok(Format::Parquet),
        Some("ndjson" | "jsonl" | "json") => Ok(Format::Ndjson),
        _ => Err(Error::Usage(format!("{}: cannot tell the format from the extension", file.display()))),
    }
}

/// A year column: integers of four digits named like a year.
fn is_year(name: &str, s: &Stats) -> bool {
    let n = name.to_ascii_lowercase();
    s.int
        && s.seen()
        && s.min >= 1000.0
        && s.max <= 2999.0
        && (n == "year" || n.ends_with("_year") || n.starts_with("year"))
}

/// A plain measure name from a source column (`lifeExp` -> `life_exp`).
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) { format!("m_{out}") } else { out }
}

/// The shape of one file from its first `sample_rows` rows: columns, types, roles.
///
/// Long because: one pass of sequential guesses (reader, per-column type, time format, role),
/// each reading the previous one's result; split, they would share a dozen locals.
fn guess_file(file: &Path, sample_rows: usize, delimiter: char) -> Result<FileGuess> {
    let format = format_of(file)?;
    // Learn the columns, then read them all as text.
    let columns = match format {
        Format::Ndjson => {
            let mut r = reader::open(file, format, &[], delimiter)?;
            for _ in 0..sample_rows {
                if r.next_item()?.is_none() {
                    break;
                }
            }
            r.columns()
        }
        _ => reader::open(file, format, &[], delimiter)?.columns(),
    };
    if columns.is_empty() {
        return Err(Error::BadInput(format!("{}: no columns", file.display())));
    }
    let mut records = reader::open(file, format, &columns, delimiter)?;
    let mut stats: Vec<Stats> = columns.iter().map(|_| Stats::new()).collect();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    while rows.len() < sample_rows {
        let Some(item) = records.next_item()? else { break };
        if let Item::Row(r) = item {
            for (s, v) in stats.iter_mut().zip(&r.fields) {
                s.add(v.as_deref());
            }
            rows.push(r.fields);
        }
    }
    if rows.is_empty() {
        return Err(Error::BadInput(format!("{}: no readable rows", file.display())));
    }
    let n = rows.len() as u64;
    let kind = |name: &str, s: &Stats| -> (&'static str, Option<String>) {
        if !s.seen() {
            ("text", None)
        } else if is_year(name, s) {
            ("time", Some("%Y".into()))
        } else if s.int {
            (if s.min >= 0.0 { "count" } else { "integer" }, None)
        } else if s.float {
            ("float", None)
        } else if s.boolean {
            ("boolean", None)
        } else if s.iso_time {
            ("time", None)
        } else if let Some(i) = s.formats.iter().position(|ok| *ok) {
            ("time", Some(TIME_FORMATS[i].to_string()))
        } else if !s.overflow && s.distinct.len() <= CATEGORICAL_MAX && (s.distinct.len() as u64) * 2 <= n {
            ("categorical", None)
        } else {
            ("text", None)
        }
    };
    let kinds: Vec<(&str, Option<String>)> = columns.iter().zip(&stats).map(|(c, s)| kind(c, s)).collect();
    let time = kinds.iter().position(|(k, _)| *k == "time").ok_or_else(|| {
        Error::BadInput(format!(
            "{}: no time column found (ISO timestamps or a year column); a longitudinal file needs one",
            file.display()
        ))
    })?;
    // The entity: a text or integer column whose values repeat (entities observed again and
    // again), preferring names that say id/key/code.
    let repeats = |i: usize| {
        let s = &stats[i];
        i != time && s.nulls == 0 && !s.overflow && s.distinct.len() > 1 && (s.distinct.len() as u64) < n
    };
    let idish = |c: &str| {
        let c = c.to_ascii_lowercase();
        c == "id" || c.ends_with("_id") || c.ends_with("id") || c.contains("key") || c.contains("code")
    };
    let candidates: Vec<usize> = (0..columns.len())
        .filter(|&i| repeats(i) && matches!(kinds[i].0, "text" | "categorical" | "count" | "integer"))
        .collect();
    let entity = candidates
        .iter()
        .copied()
        .find(|&i| idish(&columns[i]))
        .or_else(|| candidates.iter().copied().find(|&i| matches!(kinds[i].0, "text" | "categorical")))
        .or_else(|| candidates.first().copied())
        .ok_or_else(|| {
            Error::BadInput(format!("{}: no column repeats across rows to serve as the entity id", file.display()))
        })?;
    let mut keys = BTreeSet::new();
    let mut per_entity: Vec<BTreeMap<&str, Option<&str>>> = vec![BTreeMap::new(); columns.len()];
    let mut constant = vec![true; columns.len()];
    for r in &rows {
        let e = r[entity].as_deref().unwrap_or("");
        keys.insert((e, r[time].as_deref().unwrap_or("")));
        for (j, v) in r.iter().enumerate() {
            match per_entity[j].get(e) {
                Some(prev) if *prev != v.as_deref() => constant[j] = false,
                Some(_) => {}
                None => {
                    per_entity[j].insert(e, v.as_deref());
                }
            }
        }
    }
    let guesses = columns
        .iter()
        .zip(&stats)
        .zip(&kinds)
        .enumerate()
        .map(|(j, ((c, s), (k, fmt)))| ColumnGuess {
            column: c.clone(),
            kind: k.to_string(),
            nulls: s.nulls,
            distinct: s.distinct.len() as u64,
            min: s.min.is_finite().then_some(s.min),
            max: s.max.is_finite().then_some(s.max),
            values: if *k == "categorical" { s.distinct.iter().cloned().collect() } else { Vec::new() },
            timestamp_format: fmt.clone(),
            ambiguous_format: fmt.is_some() && s.formats.iter().filter(|ok| **ok).count() > 1,
            constant_per_entity: constant[j] && j != entity,
        })
        .collect();
    Ok(FileGuess {
        file: file.display().to_string(),
        rows_sampled: n,
        entity_column: columns[entity].clone(),
        time_column: columns[time].clone(),
        key_unique: keys.len() == rows.len(),
        columns: guesses,
    })
}

fn write(out: &Path, rel: &str, text: &str, written: &mut Vec<String>) -> Result<()> {
    let p = out.join(rel);
    if p.exists() {
        return Err(Error::Usage(format!("{} exists: infer never overwrites; choose an empty --out", p.display())));
    }
    t0_core::fsio::write_atomic(&p, text.as_bytes())?;
    written.push(rel.to_string());
    Ok(())
}

/// Infer a project and a source mapping from the files of a directory and write them.
///
/// Long because: it assembles project.yaml and sources.yaml section by section from the
/// guesses, in the order the files are written; each section is a few lines.
pub fn run(args: &InferArgs) -> Result<InferReport> {
    if args.files.is_empty() {
        return Err(Error::Usage("acquire infer needs at least one source file".into()));
    }
    let name = args.name.clone().unwrap_or_else(|| {
        args.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into())
    });
    let name = snake(&name).replace('_', "-");
    let files: Vec<FileGuess> =
        args.files.iter().map(|f| guess_file(f, args.sample_rows.max(1), args.delimiter)).collect::<Result<_>>()?;

    // Measures: every column but the roles and the entity attributes, across the files.
    let mut measures: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut sources = String::from(
        "# Source mapping written by `acquire infer`: SUGGESTIONS, review every line.\n# One source per sampled file; the file also registers its entities.\nsources:\n",
    );
    let mut contract = String::new();
    for (i, f) in files.iter().enumerate() {
        let file_name = Path::new(&f.file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut renames = vec![format!("entity_id: {}", f.entity_column), format!("observed_at: {}", f.time_column)];
        let mut attributes = Vec::new();
        for c in &f.columns {
            if c.column == f.entity_column || c.column == f.time_column {
                continue;
            }
            if c.constant_per_entity && matches!(c.kind.as_str(), "text" | "categorical") {
                attributes.push(c.column.clone());
                continue;
            }
            let kind = if c.kind == "time" { "text".to_string() } else { c.kind.clone() };
            let m = snake(&c.column);
            if m != c.column {
                renames.push(format!("{m}: {}", c.column));
            }
            if !measures.contains_key(&m) {
                order.push(m.clone());
            }
            measures.insert(m, (kind, c.nulls == 0));
        }
        let time = f.columns.iter().find(|c| c.column == f.time_column).expect("time column");
        let _ = writeln!(sources, "  - name: source{i}");
        let _ = writeln!(sources, "    table: observations");
        let _ = writeln!(sources, "    glob: {:?}", file_name);
        let _ = writeln!(sources, "    columns: {{{}}}", renames.join(", "));
        if let Some(fmt) = &time.timestamp_format {
            if time.ambiguous_format {
                let _ = writeln!(
                    sources,
                    "    # SUGGESTION: every sampled time also fits another format: check day/month order."
                );
            }
            let _ = writeln!(sources, "    timestamp_format: {fmt:?}");
        }
        let _ = writeln!(sources, "    # SUGGESTION: when could this system know a row? ingest_time, observed_time,");
        let _ =
            writeln!(sources, "    # observed_time + <n>d (a publication lag), or column (an available_at column).");
        let _ = writeln!(sources, "    availability: observed_time");
        let _ = writeln!(sources, "    entities: {{kind: {}}}", snake(&f.entity_column));
        if !attributes.is_empty() {
            let _ = writeln!(sources, "    attributes: [{}]", attributes.join(", "));
        }
        let _ = writeln!(
            sources,
            "    # Sampled {} rows; ({}, {}) was {} in the sample.",
            f.rows_sampled,
            f.entity_column,
            f.time_column,
            if f.key_unique { "unique" } else { "NOT unique: find the key before ingesting" }
        );
        for c in &f.columns {
            let m = snake(&c.column);
            if !measures.contains_key(&m) || attributes.contains(&c.column) {
                continue;
            }
            match c.kind.as_str() {
                "count" | "integer" | "float" => {
                    if let (Some(lo), Some(hi)) = (c.min, c.max) {
                        let _ = writeln!(
                            contract,
                            "  - {{type: range, column: {m}, min: {lo}, max: {hi}, severity: warn}}  # seen in the sample"
                        );
                    }
                }
                "categorical" => {
                    let values = serde_json::to_string(&c.values).expect("strings");
                    let _ = writeln!(
                        contract,
                        "  - {{type: allowed_values, column: {m}, values: {values}, severity: warn}}  # seen in the sample"
                    );
                }
                _ => {}
            }
        }
    }
    let numeric: Vec<&String> =
        order.iter().filter(|m| matches!(measures[*m].0.as_str(), "count" | "integer" | "float")).collect();
    let mut project = format!(
        "# Written by `acquire infer` from {} file(s): SUGGESTIONS, review every line.\nname: {name}\n\n# Types guessed from the sample: count, integer, float, boolean, text, categorical.\nmeasures:\n",
        files.len()
    );
    for m in &order {
        let (k, req) = &measures[m];
        let _ = writeln!(project, "  - {{name: {m}, type: {k}{}}}", if *req { ", required: true" } else { "" });
    }
    project.push_str(
        "\n# SUGGESTION: the outcome to predict and its horizon (`<n> hours|days|weeks|months|years`, or\n# `next`: the entity's next observation, whatever the panel's cadence; a fixed horizon shorter\n# than the cadence would read the T0 value back, which train-suite refuses as a leak).\nlabels:\n",
    );
    if let Some(first) = numeric.first() {
        let _ = writeln!(project, "  - {{name: y_{first}, kind: value, measure: {first}, horizon: next}}");
    }
    project.push_str("\nfeatures:\n  surfaces: [latest]\n  exclude: []\n  transforms: {}\n");
    if let Some(first) = numeric.first() {
        let _ = writeln!(project, "  target: y_{first}");
    }
    project.push_str("  leakage: []\n");

    let mut written = Vec::new();
    std::fs::create_dir_all(args.out.join("contracts")).map_err(|e| Error::io(&args.out, e))?;
    std::fs::create_dir_all(args.out.join("feature-stores")).map_err(|e| Error::io(&args.out, e))?;
    std::fs::create_dir_all(args.out.join("heal")).map_err(|e| Error::io(&args.out, e))?;
    write(&args.out, "project.yaml", &project, &mut written)?;
    write(&args.out, "sources.yaml", &sources, &mut written)?;
    let required: Vec<&String> = order.iter().filter(|m| measures[*m].1).collect();
    let mut obs = String::from(
        "# Starting contract written by `acquire infer` from what the sample showed: SUGGESTIONS.\ntable: observations\nchecks:\n",
    );
    let mut not_null = vec!["entity_id".to_string(), "observed_at".to_string()];
    not_null.extend(required.iter().map(|m| m.to_string()));
    let _ = writeln!(obs, "  - {{type: not_null, columns: [{}]}}", not_null.join(", "));
    obs.push_str(
        "  - {type: unique, name: unique_version, columns: [entity_id, observed_at, version], all_versions: true}\n",
    );
    obs.push_str(
        "  - {type: references, name: orphan_reference, column: entity_id, table: entities, key: entity_id}\n",
    );
    obs.push_str("  - {type: future_timestamps}\n");
    obs.push_str(&contract);
    write(&args.out, "contracts/observations.yaml", &obs, &mut written)?;
    write(
        &args.out,
        "heal/rules.yaml",
        "# No repairs yet: add rules that answer audit findings.\nrules: []\n",
        &mut written,
    )?;
    let mut cols = vec!["count(*) AS n_obs".to_string(), "max(observed_at) AS last_seen".to_string()];
    for m in &order {
        cols.push(format!("arg_max({m}, observed_at) AS {m}_last"));
    }
    for m in &numeric {
        cols.push(format!("arg_max({m}, observed_at) - arg_min({m}, observed_at) AS {m}_change"));
    }
    let store = format!(
        "-- Entrypoint `latest` (written by `acquire infer`): the last visible value of each measure at\n-- T0, the change since the first visible one, and the number of observations.\nCREATE OR REPLACE TEMP VIEW latest_values AS\nSELECT entity_id, t0,\n       {}\nFROM obs_asof\nGROUP BY entity_id, t0;\n\nCREATE OR REPLACE TEMP VIEW surface_latest AS\nSELECT g.entity_id, g.t0, coalesce(l.n_obs, 0) AS n_obs,\n       date_diff('second', l.last_seen, g.t0) / 86400.0 AS days_since_last,\n       l.* EXCLUDE (entity_id, t0, n_obs, last_seen)\nFROM t0_grid g\nLEFT JOIN latest_values l ON l.entity_id = g.entity_id AND l.t0 = g.t0;\n",
        cols.join(",\n       ")
    );
    write(&args.out, "feature-stores/latest.sql", &store, &mut written)?;
    write(
        &args.out,
        "certify.yaml",
        "# Written by `acquire infer`: a T0 at every observation time (SUGGESTION).\nt0: {mode: at_observations, offset_hours: 0, max_per_entity: 1000}\nstores:\n  - {entrypoint: latest, files: [asof.sql, latest.sql], strict: true}\n",
        &mut written,
    )?;
    Ok(InferReport { project: name, out: args.out.display().to_string(), files, written })
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_names_become_measure_names() {
        assert_eq!(super::snake("lifeExp"), "life_exp");
        assert_eq!(super::snake("gdpPercap"), "gdp_percap");
        assert_eq!(super::snake("Total Cases"), "total_cases");
        assert_eq!(super::snake("2020"), "m_2020");
    }
}
