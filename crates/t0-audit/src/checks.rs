//! Each contract check as one SQL query that returns the keys of what fails, and the static
//! validation of a contract against the catalog (tables, columns, types, regexes, SQL).

use std::collections::BTreeMap;

use t0_catalog::{Catalog, quote_literal};
use t0_core::Result;

use crate::contract::{Check, Contract, Kind};

/// The columns that identify one fact of a canonical table (versions share them).
fn fact_key(table: &str) -> Option<&'static [&'static str]> {
    t0_project::vocab::spec(table).map(|s| s.key)
}

/// The rows a check sees: the current version of each fact, or every stored row.
pub fn source(table: &str, all_versions: bool) -> String {
    match t0_project::vocab::current_sql(table, true) {
        Some(current) if !all_versions => current,
        _ => table.to_string(),
    }
}

fn key_text(table: &str) -> String {
    t0_project::vocab::key_text(table).unwrap_or_else(|| "CAST(t.rowid AS VARCHAR)".into())
}

fn list(values: &[String]) -> String {
    values.iter().map(|v| quote_literal(v)).collect::<Vec<_>>().join(", ")
}

/// How a check finds what fails.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The rows of `source` (aliased `t`) where `cond` holds, named by the table's key text.
    /// Row probes over the same source and window partition run as one query
    /// ([`fused_sql`]): one scan answers all of them.
    Rows { source: String, window: Option<Window>, cond: String },
    /// A query whose first column is the text key of each failing item.
    Query(String),
}

/// The partition and order a windowed row probe's windows share, and their definitions
/// (`name AS (...)`, names unique to the check).
#[derive(Debug, Clone)]
pub struct Window {
    pub partition: Vec<String>,
    pub order: String,
    pub defs: Vec<String>,
}

/// What row probes may share one scan: the source, and the window partition and order.
pub type Group = (String, Option<(Vec<String>, String)>);

impl Probe {
    /// What probes may share one scan ([`Group`]); `None` for a whole query.
    pub fn group(&self) -> Option<Group> {
        match self {
            Probe::Rows { source, window, .. } => {
                Some((source.clone(), window.as_ref().map(|w| (w.partition.clone(), w.order.clone()))))
            }
            Probe::Query(_) => None,
        }
    }
}

/// One query answering several row probes of `table` that share a [`Probe::group`]: a row per
/// row failing any of them, the key text, then one boolean per probe (in order).
pub fn fused_sql(table: &str, probes: &[&Probe]) -> String {
    let k = key_text(table);
    let mut flags = Vec::new();
    let mut defs = Vec::new();
    let mut from = String::new();
    for (i, p) in probes.iter().enumerate() {
        let Probe::Rows { source, window, cond } = p else { panic!("fused_sql takes row probes") };
        from = source.clone();
        flags.push(format!("coalesce(({cond}), false) AS __f{i}"));
        if let Some(w) = window {
            defs.extend(w.defs.iter().cloned());
        }
    }
    let window = if defs.is_empty() { String::new() } else { format!(" WINDOW {}", defs.join(", ")) };
    let any = (0..probes.len()).map(|i| format!("__f{i}")).collect::<Vec<_>>().join(" OR ");
    let cols = (0..probes.len()).map(|i| format!("__f{i}")).collect::<Vec<_>>().join(", ");
    format!("SELECT __k, {cols} FROM (SELECT {k} AS __k, {} FROM {from} t{window}) WHERE {any}", flags.join(", "))
}

/// Whether a check's failing items are rows of its table named by their key text (what heal
/// can restrict a repair to), rather than groups, aggregates or whatever custom SQL returns.
pub fn names_rows(kind: &Kind) -> bool {
    !matches!(
        kind,
        Kind::Unique { .. }
            | Kind::Freshness { .. }
            | Kind::Sql { .. }
            | Kind::RowCount { .. }
            | Kind::Metric { .. }
            | Kind::Drift { .. }
    )
}

/// The probe of one check; `id` makes its window names unique within a fused query.
pub fn probe(table: &str, check: &Check, as_of: &str, id: usize) -> Probe {
    let t = source(table, check.all_versions);
    let k = key_text(table);
    let as_of = format!("TIMESTAMP {}", quote_literal(as_of));
    let rows = |cond: String| Probe::Rows { source: t.clone(), window: None, cond };
    // Each windowed check has one window, `__w<id>`, over `key` in `order` with `frame`.
    let windowed = |key: &[String], order: &str, frame: &str, cond: String| {
        let partition = key.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
        Probe::Rows {
            source: t.clone(),
            window: Some(Window {
                partition: key.to_vec(),
                order: order.to_string(),
                defs: vec![format!("__w{id} AS (PARTITION BY {partition} ORDER BY t.{order}{frame})")],
            }),
            cond,
        }
    };
    match &check.kind {
        Kind::NotNull { columns } => {
            rows(columns.iter().map(|c| format!("t.{c} IS NULL")).collect::<Vec<_>>().join(" OR "))
        }
        Kind::Unique { columns } => {
            let cols = columns.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
            // Grouping on a 64-bit hash first is cheaper than grouping on the values (strings
            // mostly); only rows whose hash repeats are then grouped exactly, so a collision
            // costs time, never a wrong answer.
            Probe::Query(format!(
                "WITH __h AS (SELECT hash({cols}) AS h FROM {t} t GROUP BY h HAVING count(*) > 1)
                 SELECT concat_ws('|', {cols}) FROM {t} t SEMI JOIN __h ON hash({cols}) = __h.h
                 GROUP BY {cols} HAVING count(*) > 1"
            ))
        }
        Kind::AllowedValues { column, values } => {
            rows(format!("t.{column} IS NOT NULL AND CAST(t.{column} AS VARCHAR) NOT IN ({})", list(values)))
        }
        Kind::Range { column, min, max } => {
            let mut cond = Vec::new();
            if let Some(m) = min {
                cond.push(format!("t.{column} < {}", m.sql("t")));
            }
            if let Some(m) = max {
                cond.push(format!("t.{column} > {}", m.sql("t")));
            }
            if cond.is_empty() {
                cond.push("false".into());
            }
            rows(cond.join(" OR "))
        }
        Kind::Regex { column, pattern } => rows(format!(
            "t.{column} IS NOT NULL AND NOT regexp_full_match(CAST(t.{column} AS VARCHAR), {})",
            quote_literal(pattern)
        )),
        // The referenced rows are the current live ones too: a removed (tombstoned) entity
        // leaves its references orphaned.
        Kind::References { column, table: other, key } => rows(format!(
            "t.{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} r WHERE r.{key} = t.{column})",
            source(other, false)
        )),
        Kind::Freshness { column, max_age_hours } => Probe::Query(format!(
            "SELECT 'newest {column}: ' || coalesce(CAST(max(t.{column}) AS VARCHAR), 'none') FROM {t} t
             HAVING max(t.{column}) IS NULL OR max(t.{column}) < {as_of} - INTERVAL {} SECOND",
            (max_age_hours * 3600.0).round() as i64
        )),
        // A fact's lateness is when it first became known: a repair appends a version long
        // after the observation without making the fact late. A late current row fails unless
        // some version of its fact was available in time (the few late rows are the only ones
        // looked up, rather than a window over every version).
        Kind::Lateness { max_lag_hours } => {
            let lag = (max_lag_hours * 3600.0).round() as i64;
            let late = format!("date_diff('second', t.observed_at, t.available_at) > {lag}");
            match fact_key(table) {
                Some(key) if !check.all_versions => Probe::Query(format!(
                    "SELECT {k} FROM {t} t WHERE {late} AND NOT EXISTS (SELECT 1 FROM {table} v WHERE {}
                        AND date_diff('second', t.observed_at, v.available_at) <= {lag})",
                    key.iter().map(|c| format!("v.{c} = t.{c}")).collect::<Vec<_>>().join(" AND ")
                )),
                _ => rows(late),
            }
        }
        Kind::FutureTimestamps => {
            rows(format!("t.observed_at > t.available_at OR t.observed_at > {as_of} OR t.available_at > {as_of}"))
        }
        Kind::Monotonic { key, order, columns } => windowed(
            key,
            order,
            " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING",
            columns.iter().map(|c| format!("t.{c} < max(t.{c}) OVER __w{id}")).collect::<Vec<_>>().join(" OR "),
        ),
        Kind::DuplicateSnapshots { key, order, columns, within_seconds } => {
            let same = columns
                .iter()
                .map(|c| format!("t.{c} IS NOT DISTINCT FROM lag(t.{c}) OVER __w{id}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            windowed(
                key,
                order,
                "",
                format!("({same}) AND date_diff('second', lag(t.{order}) OVER __w{id}, t.{order}) <= {within_seconds}"),
            )
        }
        Kind::StatusTransitions { key, order, column, terminal, require_event, revival_event } => Probe::Query(
            status_violations_sql(&t, key, order, column, terminal, require_event, revival_event.as_deref(), &k),
        ),
        Kind::Sql { query } => Probe::Query(format!(
            "SELECT * FROM ({}) q",
            t0_project::vocab::expand_current(query.trim().trim_end_matches(';'))
        )),
        Kind::RowCount { .. } | Kind::Metric { .. } | Kind::Drift { .. } => {
            unreachable!("stateful checks are evaluated by crate::stateful")
        }
    }
}

/// Rows of a status column that break the state machine: a non-terminal state after a
/// terminal one with no revival event between, or a state entered without its proving event.
#[expect(clippy::too_many_arguments, reason = "every part of a state-machine check")]
fn status_violations_sql(
    t: &str,
    key: &[String],
    order: &str,
    column: &str,
    terminal: &[String],
    require_event: &BTreeMap<String, String>,
    revival_event: Option<&str>,
    k: &str,
) -> String {
    let terms = list(terminal);
    let keys = key.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
    let events = source("events", false);
    let revived = match revival_event {
        Some(ev) => format!(
            "NOT EXISTS (SELECT 1 FROM {events} e WHERE e.entity_id = s.entity_id AND e.event_type = {}
                           AND e.observed_at > s.terminal_at AND e.observed_at <= s.ord)",
            quote_literal(ev)
        ),
        None => "true".into(),
    };
    let unproven = if require_event.is_empty() {
        "false".to_string()
    } else {
        let arms = require_event
            .iter()
            .map(|(state, ev)| format!("WHEN {} THEN {}", quote_literal(state), quote_literal(ev)))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "(CASE s.status {arms} END) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {events} e
                WHERE e.entity_id = s.entity_id AND e.event_type = (CASE s.status {arms} END) AND e.observed_at <= s.ord)"
        )
    };
    format!(
        "SELECT k FROM (SELECT {k} AS k, t.{column} AS status, t.{order} AS ord, t.entity_id AS entity_id,
                max(CASE WHEN t.{column} IN ({terms}) THEN t.{order} END) OVER (PARTITION BY {keys} ORDER BY t.{order}
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS terminal_at
             FROM {t} t) s
         WHERE (s.terminal_at IS NOT NULL AND s.status NOT IN ({terms}) AND {revived}) OR ({unproven})"
    )
}

/// Columns a check names on its own table.
fn columns_of(kind: &Kind) -> Vec<&String> {
    match kind {
        Kind::NotNull { columns } | Kind::Unique { columns } => columns.iter().collect(),
        Kind::Range { column, min, max } => std::iter::once(column)
            .chain([min, max].into_iter().flatten().filter_map(|b| match b {
                crate::contract::Bound::Column(c) => Some(c),
                crate::contract::Bound::Value(_) => None,
            }))
            .collect(),
        Kind::AllowedValues { column, .. }
        | Kind::Regex { column, .. }
        | Kind::References { column, .. }
        | Kind::Freshness { column, .. } => vec![column],
        Kind::Lateness { .. }
        | Kind::FutureTimestamps
        | Kind::Sql { .. }
        | Kind::RowCount { .. }
        | Kind::Metric { .. } => Vec::new(),
        Kind::Drift { column, .. } => vec![column],
        Kind::Monotonic { key, order, columns } | Kind::DuplicateSnapshots { key, order, columns, .. } => {
            key.iter().chain(columns).chain(std::iter::once(order)).collect()
        }
        Kind::StatusTransitions { key, order, column, .. } => key.iter().chain([order, column]).collect(),
    }
}

/// Refuse a contract that cannot run: unknown table or column, wrong type, bad regex,
/// non-SELECT or invalid custom SQL. Names the file and line.
pub fn validate(catalog: &Catalog, c: &Contract) -> Result<()> {
    let cols = catalog.column_types(&c.table)?;
    if cols.is_empty() {
        return Err(c.error_at(1, format!("unknown table {:?}", c.table)));
    }
    for (name, ty) in &c.columns {
        match cols.get(name) {
            None => return Err(c.error_at(1, format!("columns: {name:?} is not a column of {}", c.table))),
            Some(actual) if !actual.eq_ignore_ascii_case(ty) => {
                return Err(c.error_at(1, format!("columns: {name} is {actual}, the contract expects {ty}")));
            }
            _ => {}
        }
    }
    for check in &c.checks {
        let bad = |msg: String| Err(c.error_at(check.line, format!("{}: {msg}", check.name)));
        for col in columns_of(&check.kind) {
            if !cols.contains_key(col) {
                return bad(format!("unknown column {col:?} of {}", c.table));
            }
        }
        if matches!(check.kind, Kind::Lateness { .. } | Kind::FutureTimestamps)
            && !(cols.contains_key("observed_at") && cols.contains_key("available_at"))
        {
            return bad(format!("{} has no observed_at/available_at", c.table));
        }
        match &check.kind {
            Kind::References { table, key, .. } => {
                let other = catalog.column_types(table)?;
                if !other.contains_key(key) {
                    return bad(format!("references: {table}.{key} does not exist"));
                }
            }
            Kind::Metric { expr, .. } => {
                let sql = format!("SELECT CAST(({expr}) AS DOUBLE) FROM {} t", source(&c.table, check.all_versions));
                if expr.contains(';') || catalog.conn().prepare(&sql).is_err() {
                    return bad(format!("metric expression {expr:?} is not a valid aggregate over {}", c.table));
                }
            }
            Kind::Regex { pattern, .. } => {
                if let Err(e) =
                    catalog.conn().query_row("SELECT regexp_matches('', ?)", [pattern], |r| r.get::<_, bool>(0))
                {
                    return bad(format!("bad regex {pattern:?}: {e}"));
                }
            }
            Kind::Sql { query } => {
                let q = query.trim().trim_end_matches(';').trim();
                let head = q.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
                if !(head == "select" || head == "with") || q.contains(';') {
                    return bad("custom SQL must be a single SELECT (or WITH ... SELECT) statement".into());
                }
                let q = t0_project::vocab::expand_current(q);
                if let Err(e) = catalog.conn().prepare(&format!("SELECT * FROM ({q}) LIMIT 0")) {
                    let files = if e.to_string().contains("Permission Error") {
                        " (custom SQL reads the catalog only: no files)"
                    } else {
                        ""
                    };
                    return bad(format!("custom SQL does not prepare: {e}{files}"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Run a whole-query probe, or row probes of `table` that share a [`Probe::group`] as one query
/// ([`fused_sql`]), and return each probe's failing keys, sorted.
pub fn run_fused(catalog: &Catalog, table: &str, probes: &[&Probe]) -> Result<Vec<Vec<String>>> {
    use arrow::array::{Array, AsArray};
    // A whole query's rows all fail; a fused query's row fails the probes whose flag is set.
    let (sql, flags) = match probes {
        [Probe::Query(q)] => (q.clone(), 0),
        _ => (fused_sql(table, probes), probes.len()),
    };
    let (_, batches) = catalog.query_arrow(&sql, &[])?;
    let mut keys = vec![Vec::new(); flags.max(1)];
    for b in batches.iter().filter(|b| b.num_columns() > 0) {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| t0_core::Error::internal("check result", e))?;
        let k = col.as_string::<i32>();
        let text = |i: usize| if k.is_valid(i) { k.value(i).to_string() } else { "NULL".into() };
        if flags == 0 {
            keys[0].extend((0..b.num_rows()).map(text));
            continue;
        }
        for (j, out) in keys.iter_mut().enumerate() {
            let flag = b.column(j + 1).as_boolean();
            out.extend((0..b.num_rows()).filter(|&i| flag.value(i)).map(text));
        }
    }
    for k in &mut keys {
        k.sort();
    }
    Ok(keys)
}
