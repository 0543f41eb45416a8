//! `acquire infer`: read sample source files and write a starting project. Each file is told
//! apart as an observation panel, an entities file (one row per id: its time is the creation)
//! or an events file (an event type column); a column named for a role is that role and never a
//! measure. It writes measures with guessed types (0/1 flags are booleans), a source mapping
//! (entity and time columns, timestamp format, key check, cadence), starting contracts from
//! what was observed (not-null, key uniqueness, ranges widened by half their width, allowed
//! values of low-cardinality text), a calendar grid at the observation cadence, a label (a
//! count's flow over the next period, else the next value) and as-of features declared in
//! project.yaml. Every guess is marked as a suggestion to review, as Deequ's constraint
//! suggestion and dbt's generated sources do for their users.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use t0_core::{Error, Result};
use t0_project::def::is_identifier;

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
    /// What the file holds: `observations` (a panel), `entities` (one row per id: the time is
    /// its creation) or `events` (an event type column).
    pub table: String,
    pub event_type_column: Option<String>,
    /// A `kind` column (entities), else the kind is named after the file.
    pub kind_column: Option<String>,
    /// The observation cadence detected (median gap between an entity's observations): day,
    /// week, month, quarter or year.
    pub cadence: Option<String>,
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
        } else if s.int && !s.overflow && s.distinct.iter().all(|v| v == "0" || v == "1") {
            // A 0/1 flag is a boolean, not a count.
            ("boolean", None)
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
    let named = |role: &[&str]| columns.iter().position(|c| role.contains(&snake(c).as_str()));
    let time_named =
        named(&["observed_at", "created_at", "date", "time", "timestamp"]).filter(|&i| kinds[i].0 == "time");
    let time = time_named.or_else(|| kinds.iter().position(|(k, _)| *k == "time")).ok_or_else(|| {
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
        .filter(|&i| !["event_type", "event", "kind"].contains(&snake(&columns[i]).as_str()))
        .collect();
    // A column named for its role is that role; else one whose values repeat; else (an
    // entities file) a unique id column.
    let unique = |i: usize| {
        let s = &stats[i];
        i != time && s.nulls == 0 && !s.overflow && s.distinct.len() as u64 == n && n > 1
    };
    // One row per id: an id-like name, or the first column.
    let unique_id = (0..columns.len()).find(|&i| unique(i) && idish(&columns[i])).or((0..1).find(|&i| unique(i)));
    // Among repeating columns the entity is the one that makes (entity, time) most nearly
    // unique (a state column repeats too, but not once per time), then an id-like name.
    let pairs = |i: usize| rows.iter().map(|r| (r[i].as_deref(), r[time].as_deref())).collect::<BTreeSet<_>>().len();
    let best = candidates.iter().copied().max_by_key(|&i| {
        (pairs(i), idish(&columns[i]), matches!(kinds[i].0, "text" | "categorical"), std::cmp::Reverse(i))
    });
    let entity = named(&["entity_id"]).or(unique_id).or(best).ok_or_else(|| {
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
    let event_type_column = named(&["event_type", "event"])
        .filter(|&i| matches!(kinds[i].0, "text" | "categorical"))
        .map(|i| columns[i].clone());
    let one_row_per_entity = stats[entity].distinct.len() as u64 == n && !stats[entity].overflow;
    let table = match (&event_type_column, one_row_per_entity) {
        (Some(_), _) => "events",
        (None, true) => "entities",
        (None, false) => "observations",
    };
    let fmt = kinds[time].1.clone();
    let cadence = (table == "observations").then(|| cadence(&rows, entity, time, fmt.as_deref())).flatten();
    Ok(FileGuess {
        file: file.display().to_string(),
        rows_sampled: n,
        entity_column: columns[entity].clone(),
        time_column: columns[time].clone(),
        key_unique: keys.len() == rows.len(),
        columns: guesses,
        table: table.to_string(),
        event_type_column,
        kind_column: named(&["kind"]).map(|i| columns[i].clone()),
        cadence,
    })
}

/// The median gap between an entity's consecutive sampled observations, as a calendar
/// period (day, week, month, quarter, year), when it is close to one.
fn cadence(rows: &[Vec<Option<String>>], entity: usize, time: usize, fmt: Option<&str>) -> Option<String> {
    let utc = Zone::Fixed(chrono::FixedOffset::east_opt(0).expect("utc"));
    let mut by_entity: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in rows {
        if let (Some(e), Some(t)) = (&r[entity], &r[time])
            && let Ok(t) = crate::ingest::parse_time(t.trim(), fmt, utc)
        {
            by_entity.entry(e).or_default().push(t);
        }
    }
    let mut gaps: Vec<f64> = Vec::new();
    for ts in by_entity.values_mut() {
        ts.sort_unstable();
        gaps.extend(ts.windows(2).map(|w| (w[1] - w[0]) as f64 / 86_400e6).filter(|d| *d > 0.0));
    }
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let periods =
        [("day", 0.5, 1.5), ("week", 6.0, 8.0), ("month", 27.0, 32.0), ("quarter", 85.0, 95.0), ("year", 360.0, 370.0)];
    periods.iter().find(|(_, lo, hi)| (*lo..=*hi).contains(&median)).map(|(p, _, _)| p.to_string())
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

/// The entity kind a file name suggests (`counties.csv` -> `county`).
fn kind_of(file: &str) -> String {
    let stem = Path::new(file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let k = snake(&stem);
    if let Some(base) = k.strip_suffix("ies") {
        format!("{base}y")
    } else if k.ends_with('s') && !k.ends_with("ss") {
        k[..k.len() - 1].to_string()
    } else {
        k
    }
}

/// Whether a name is a role column of the canonical tables (never a measure's).
fn is_role(m: &str) -> bool {
    use t0_project::vocab;
    vocab::CANONICAL.iter().any(|t| vocab::spec(t).is_some_and(|s| s.has_column(m)))
        || vocab::BOOKKEEPING.contains(&m)
        || m == "t0"
}

/// Windows (ending at T0) for the suggested features, and the label horizon, per cadence.
fn cadence_windows(cadence: Option<&str>) -> (&'static str, &'static str) {
    match cadence {
        Some("day") => ("[7 days, 28 days]", "7 days"),
        Some("week") => ("[4 weeks, 13 weeks]", "4 weeks"),
        Some("month") => ("[3 months, 1 year]", "1 month"),
        Some("quarter") => ("[1 year, 2 years]", "3 months"),
        Some("year") => ("[1 year, 3 years]", "1 year"),
        _ => ("[90 days, 1 year]", "90 days"),
    }
}

/// What the files propose, gathered before the project files are written.
#[derive(Default)]
struct Proposal {
    /// Measure -> (type, required), in first-seen order.
    measures: BTreeMap<String, (String, bool)>,
    order: Vec<String>,
    sources: String,
    /// Contract checks of the observations (ranges, allowed values).
    obs_checks: String,
    entities_contract: bool,
    events_contract: bool,
    event_types: BTreeSet<String>,
    attributes: BTreeSet<String>,
    cadence: Option<String>,
}

/// The `columns:` mapping entries and time format lines shared by every source kind.
fn time_lines(sources: &mut String, f: &FileGuess) {
    let time = f.columns.iter().find(|c| c.column == f.time_column).expect("time column");
    if let Some(fmt) = &time.timestamp_format {
        if time.ambiguous_format {
            let _ = writeln!(
                sources,
                "    # SUGGESTION: every sampled time also fits another format: check day/month order."
            );
        }
        let _ = writeln!(sources, "    timestamp_format: {fmt:?}");
    }
}

/// A source of one entities file: one row per id, its time the creation, the rest attributes.
fn entities_source(p: &mut Proposal, i: usize, f: &FileGuess, file_name: &str) {
    let mut columns = vec![format!("entity_id: {}", f.entity_column), format!("created_at: {}", f.time_column)];
    if let Some(k) = &f.kind_column {
        columns.push(format!("kind: {k}"));
    }
    let roles = [Some(&f.entity_column), Some(&f.time_column), f.kind_column.as_ref()];
    let attributes: Vec<String> =
        f.columns.iter().map(|c| c.column.clone()).filter(|c| !roles.contains(&Some(c))).collect();
    let s = &mut p.sources;
    let _ = writeln!(s, "  - name: source{i}\n    table: entities\n    glob: {file_name:?}");
    let _ = writeln!(s, "    columns: {{{}}}", columns.join(", "));
    time_lines(s, f);
    if f.kind_column.is_none() {
        let _ = writeln!(s, "    # No kind column: every entity is a {}.", kind_of(file_name));
        let _ = writeln!(s, "    entities: {{kind: {}}}", kind_of(file_name));
    }
    if !attributes.is_empty() {
        let _ = writeln!(s, "    attributes: [{}]", attributes.join(", "));
    }
    let _ = writeln!(
        s,
        "    # One row per {} in the sample: an entities file ({} is its creation).",
        f.entity_column, f.time_column
    );
    let _ = writeln!(s, "    availability: observed_time");
    p.attributes.extend(attributes.into_iter().filter(|a| is_identifier(a)));
    p.entities_contract = true;
}

/// A source of one events file (entity, event type, time).
fn events_source(p: &mut Proposal, i: usize, f: &FileGuess, file_name: &str) {
    let ev = f.event_type_column.clone().expect("an events file has an event type column");
    let mut columns = vec![
        format!("entity_id: {}", f.entity_column),
        format!("event_type: {ev}"),
        format!("observed_at: {}", f.time_column),
    ];
    let value = f.columns.iter().find(|c| snake(&c.column) == "value" && c.kind != "text");
    if let Some(v) = value {
        columns.push(format!("value: {}", v.column));
    }
    let used = [&f.entity_column, &ev, &f.time_column];
    let ignore: Vec<&str> = f
        .columns
        .iter()
        .map(|c| c.column.as_str())
        .filter(|c| !used.iter().any(|u| u.as_str() == *c) && value.is_none_or(|v| v.column != *c))
        .collect();
    let s = &mut p.sources;
    let _ = writeln!(s, "  - name: source{i}\n    table: events\n    glob: {file_name:?}");
    let _ = writeln!(s, "    columns: {{{}}}", columns.join(", "));
    time_lines(s, f);
    if !ignore.is_empty() {
        let _ = writeln!(s, "    ignore: [{}]", ignore.join(", "));
    }
    let _ = writeln!(s, "    # SUGGESTION: when could this system know an event? (see the observations source)");
    let _ = writeln!(s, "    availability: observed_time");
    if let Some(c) = f.columns.iter().find(|c| c.column == ev) {
        p.event_types.extend(c.values.iter().cloned());
    }
    p.events_contract = true;
}

/// A source of one observation panel, its measures and their contract checks.
fn observations_source(p: &mut Proposal, i: usize, f: &FileGuess, file_name: &str, registers: bool) {
    let mut renames = vec![format!("entity_id: {}", f.entity_column), format!("observed_at: {}", f.time_column)];
    let (mut attributes, mut ignore) = (Vec::new(), Vec::new());
    for c in f.columns.iter().filter(|c| c.column != f.entity_column && c.column != f.time_column) {
        let m = snake(&c.column);
        if is_role(&m) {
            ignore.push(c.column.clone());
            continue;
        }
        if registers && c.constant_per_entity && matches!(c.kind.as_str(), "text" | "categorical") {
            attributes.push(c.column.clone());
            continue;
        }
        if m != c.column {
            renames.push(format!("{m}: {}", c.column));
        }
        if !p.measures.contains_key(&m) {
            p.order.push(m.clone());
        }
        let kind = if c.kind == "time" { "text".to_string() } else { c.kind.clone() };
        p.measures.insert(m.clone(), (kind, c.nulls == 0));
        contract_checks(&mut p.obs_checks, &m, c);
    }
    let s = &mut p.sources;
    let _ = writeln!(s, "  - name: source{i}\n    table: observations\n    glob: {file_name:?}");
    let _ = writeln!(s, "    columns: {{{}}}", renames.join(", "));
    time_lines(s, f);
    // A year or a month written as such names the period a row describes, not an instant.
    let time = f.columns.iter().find(|c| c.column == f.time_column).expect("time column");
    let period = match time.timestamp_format.as_deref() {
        Some("%Y") => Some("year"),
        Some("%Y-%m") => Some("month"),
        _ => None,
    };
    if let Some(unit) = period {
        let _ =
            writeln!(s, "    # Each row describes the {unit} that starts at its time: stamped at the {unit}'s end,");
        let _ = writeln!(s, "    # when its values are complete (SUGGESTION: remove if they are known at its start).");
        let _ = writeln!(s, "    period: 1 {unit}");
    }
    if !ignore.is_empty() {
        let _ = writeln!(s, "    # Named like a role column of every project: not a measure (rename to keep one).");
        let _ = writeln!(s, "    ignore: [{}]", ignore.join(", "));
    }
    let _ = writeln!(s, "    # SUGGESTION: when could this system know a row? ingest_time, observed_time,");
    let _ = writeln!(s, "    # observed_time + <n>d (a publication lag), or column (an available_at column).");
    let _ = writeln!(s, "    availability: observed_time");
    if registers {
        let _ = writeln!(s, "    entities: {{kind: {}}}", kind_of(file_name));
        if !attributes.is_empty() {
            let _ = writeln!(s, "    attributes: [{}]", attributes.join(", "));
        }
    }
    let _ = writeln!(
        s,
        "    # Sampled {} rows; ({}, {}) was {} in the sample; cadence: {}.",
        f.rows_sampled,
        f.entity_column,
        f.time_column,
        if f.key_unique { "unique" } else { "NOT unique: find the key before ingesting" },
        f.cadence.as_deref().unwrap_or("irregular")
    );
    p.attributes.extend(attributes.into_iter().filter(|a| is_identifier(a)));
    if p.cadence.is_none() {
        p.cadence = f.cadence.clone();
    }
}

/// Range and allowed-value checks from what the sample showed, ranges widened by half their
/// width each way (a count's floor stays 0): a new extreme is a warning to read, not noise.
fn contract_checks(out: &mut String, m: &str, c: &ColumnGuess) {
    match c.kind.as_str() {
        "count" | "integer" | "float" => {
            if let (Some(lo), Some(hi)) = (c.min, c.max) {
                let margin = ((hi - lo) / 2.0).max(1.0);
                let floor = if c.kind == "count" { (lo - margin).max(0.0) } else { lo - margin };
                let (a, b) =
                    if c.kind == "float" { (floor, hi + margin) } else { (floor.floor(), (hi + margin).ceil()) };
                let _ = writeln!(
                    out,
                    "  - {{type: range, column: {m}, min: {a}, max: {b}, severity: warn}}  # sample [{lo}, {hi}] widened by half its width"
                );
            }
        }
        "categorical" => {
            let values = serde_json::to_string(&c.values).expect("strings");
            let _ = writeln!(
                out,
                "  - {{type: allowed_values, column: {m}, values: {values}, severity: warn}}  # seen in the sample"
            );
        }
        _ => {}
    }
}

/// Infer a project and a source mapping from sample files and write them.
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
    let registers = !files.iter().any(|f| f.table == "entities");
    let mut p = Proposal {
        sources: "# Source mapping written by `acquire infer`: SUGGESTIONS, review every line.\nsources:\n".into(),
        ..Default::default()
    };
    for (i, f) in files.iter().enumerate() {
        let file_name = Path::new(&f.file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match f.table.as_str() {
            "entities" => entities_source(&mut p, i, f, &file_name),
            "events" => events_source(&mut p, i, f, &file_name),
            _ => observations_source(&mut p, i, f, &file_name, registers),
        }
    }
    if p.order.is_empty() {
        return Err(Error::BadInput(
            "no observation panel among the files (entity, time and measures): nothing to predict from".into(),
        ));
    }
    let mut written = Vec::new();
    for d in ["contracts", "feature-stores", "heal"] {
        std::fs::create_dir_all(args.out.join(d)).map_err(|e| Error::io(&args.out, e))?;
    }
    write(&args.out, "project.yaml", &project_yaml(&name, files.len(), &p), &mut written)?;
    write(&args.out, "sources.yaml", &p.sources, &mut written)?;
    write_contracts(&args.out, &p, &mut written)?;
    write(
        &args.out,
        "heal/rules.yaml",
        "# No repairs yet: add rules that answer audit findings.\nrules: []\n",
        &mut written,
    )?;
    write(
        &args.out,
        "feature-stores/README.md",
        "Hand-written feature stores (SQL over the as-of views) go here, listed in certify.yaml.\nThe features `acquire infer` proposes are declared in project.yaml (`features.declared`).\n",
        &mut written,
    )?;
    let grid = match &p.cadence {
        Some(c) => format!(
            "# Written by `acquire infer`: a T0 at every {c} end (the cadence the sample showed), from each\n# entity's first observation (SUGGESTION).\nt0: {{mode: calendar, every: {c}, offset_hours: 0}}\n"
        ),
        None => "# Written by `acquire infer`: a T0 at every observation (no regular cadence in the sample;\n# SUGGESTION).\nt0: {mode: at_observations, offset_hours: 0, max_per_entity: 1000}\n".into(),
    };
    write(
        &args.out,
        "certify.yaml",
        &format!("{grid}# The features are declared in project.yaml: no hand-written store.\nstores: []\n"),
        &mut written,
    )?;
    Ok(InferReport { project: name, out: args.out.display().to_string(), files, written })
}

/// project.yaml: measures, a label and declared features (no SQL).
fn project_yaml(name: &str, n_files: usize, p: &Proposal) -> String {
    let numeric = |m: &String| matches!(p.measures[m].0.as_str(), "count" | "integer" | "float");
    let (windows, horizon) = cadence_windows(p.cadence.as_deref());
    let mut y = format!(
        "# Written by `acquire infer` from {n_files} file(s): SUGGESTIONS, review every line.\nname: {name}\n\n# Types guessed from the sample: count, integer, float, boolean, text, categorical.\nmeasures:\n"
    );
    for m in &p.order {
        let (k, req) = &p.measures[m];
        let _ = writeln!(y, "  - {{name: {m}, type: {k}{}}}", if *req { ", required: true" } else { "" });
    }
    y.push_str("\n# SUGGESTION: the outcome to predict. A count is a flow: its sum over the next period; a\n# level is a value: here its next observation (`horizon: next`), or `<n> days|months|years`.\nlabels:\n");
    let first = p.order.iter().find(|m| numeric(m));
    match first {
        Some(m) if p.measures[m].0 == "count" => {
            let _ = writeln!(y, "  - {{name: y_{m}, kind: flow, measure: {m}, horizon: {horizon}, agg: sum}}");
        }
        Some(m) => {
            let _ = writeln!(y, "  - {{name: y_{m}, kind: value, measure: {m}, horizon: next}}");
        }
        None => {}
    }
    let _ = writeln!(
        y,
        "\n# As-of features, declared (docs/project.md lists every aggregate); certify generates the SQL.\nfeatures:\n  surfaces: []\n  declared:\n    - store: history\n      windows: {windows}\n      measures:"
    );
    for m in &p.order {
        let aggs = match p.measures[m].0.as_str() {
            "count" => "[last, sum, count_nonzero, time_since_last]",
            "integer" | "float" => "[last, change, mean, max]",
            "boolean" => "[last, sum]",
            _ => "[last]",
        };
        let _ = writeln!(y, "        {m}: {aggs}");
    }
    y.push_str("      observations: [count all, time_since_last]\n");
    let types: Vec<&String> =
        p.event_types.iter().filter(|e| !e.contains(['{', '}', ':', '#', ',', '[', ']', '"', '\''])).collect();
    if !types.is_empty() {
        y.push_str("      events:\n");
        for e in types {
            let _ = writeln!(y, "        {e}: [count, time_since_last]");
        }
    }
    if !p.attributes.is_empty() {
        let _ = writeln!(y, "      attributes: [{}]", p.attributes.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    y.push_str("  exclude: []\n  transforms: {}\n");
    if let Some(m) = first {
        let _ = writeln!(y, "  target: y_{m}");
    }
    y.push_str("  leakage: []\n");
    y
}

/// The starting contracts: observations always, entities and events when a file holds them.
fn write_contracts(out: &Path, p: &Proposal, written: &mut Vec<String>) -> Result<()> {
    let required: Vec<&String> = p.order.iter().filter(|m| p.measures[*m].1).collect();
    let head = "# Starting contract written by `acquire infer` from what the sample showed: SUGGESTIONS.\n";
    let mut obs = format!("{head}table: observations\nchecks:\n");
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
    obs.push_str(&p.obs_checks);
    write(out, "contracts/observations.yaml", &obs, written)?;
    if p.entities_contract {
        let text = format!(
            "{head}table: entities\nchecks:\n  - {{type: not_null, columns: [entity_id, kind, created_at]}}\n  - {{type: unique, name: unique_entity, columns: [entity_id]}}\n"
        );
        write(out, "contracts/entities.yaml", &text, written)?;
    }
    if p.events_contract {
        let text = format!(
            "{head}table: events\nchecks:\n  - {{type: not_null, columns: [entity_id, event_type, observed_at]}}\n  - {{type: references, name: orphan_event, column: entity_id, table: entities, key: entity_id}}\n"
        );
        write(out, "contracts/events.yaml", &text, written)?;
    }
    Ok(())
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
