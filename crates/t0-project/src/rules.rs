//! Heal rules in YAML (a project's `heal/rules.yaml`): each answers one audit finding and applies
//! one deterministic fix. A fix is planned as SQL over the current rows of a canonical table;
//! every plan yields one row per changed cell: `(__rid, row_key, column_name, old_value,
//! new_value, reason)`, where `__rid` is the rowid of the version being repaired and a
//! removed row is the cell `deleted: false -> true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
#[cfg(feature = "catalog")]
use t0_catalog::Catalog;
use t0_core::config::quote_literal;
use t0_core::{Error, Result};

/// The shipped rules, also the built-in default.
pub use t0_core::config::Bound;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    CarryMax,
    Drop,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Precedence {
    pub column: String,
    /// Best first; values not listed rank last.
    pub order: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "fix", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fix {
    Quarantine {
        reason: String,
    },
    Dedupe {
        key: Vec<String>,
        order: String,
        #[serde(default = "one_minute")]
        within_seconds: i64,
        #[serde(default)]
        columns: Vec<String>,
        precedence: Precedence,
    },
    MapValues {
        column: String,
        map: BTreeMap<String, String>,
    },
    StateMachine {
        key: Vec<String>,
        order: String,
        column: String,
        terminal: Vec<String>,
        #[serde(default)]
        require_event: BTreeMap<String, String>,
        revival_event: Option<String>,
        #[serde(default)]
        allow_revival: bool,
    },
    Clamp {
        column: String,
        min: Option<Bound>,
        max: Option<Bound>,
    },
    Monotonic {
        key: Vec<String>,
        order: String,
        columns: Vec<String>,
        policy: Policy,
    },
}

fn one_minute() -> i64 {
    60
}

#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub id: String,
    pub version: u32,
    /// The audit check (by name) whose failing finding this rule repairs.
    pub answers: String,
    pub table: String,
    /// SQL condition narrowing the rows the rule may change.
    #[serde(rename = "where")]
    pub when: Option<String>,
    pub fix: Fix,
    #[serde(skip)]
    pub line: usize,
}

impl Rule {
    /// Hash of the whole definition (id, version, finding, table, condition and fix).
    pub fn hash(&self) -> String {
        t0_core::config::value_hash(self)
    }
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Where the rules came from, for error messages and reports.
    pub source: PathBuf,
    pub rules: Vec<Rule>,
    /// blake3 of the rules text.
    pub hash: String,
}

fn at(file: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::config(file, format!("line {line}: {msg}"))
}

impl RuleSet {
    /// Rules from `path`, else the project's rules file (a project without one has none).
    pub fn load(path: Option<&Path>, project: &crate::Project) -> Result<RuleSet> {
        if path.is_none() && !project.has(&project.def.heal_rules) {
            return RuleSet::parse(Path::new(&project.display(&project.def.heal_rules)), "rules: []\n");
        }
        let (name, text) = project.read_or(path, &project.def.heal_rules)?;
        RuleSet::parse(Path::new(&name), &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<RuleSet> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| at(file, e.location().map(|l| l.line()).unwrap_or(0), e))?;
        let map = doc.as_mapping().ok_or_else(|| at(file, 1, "a rules file is a mapping with `rules:`"))?;
        if let Some(k) = map.keys().filter_map(|k| k.as_str()).find(|k| *k != "rules") {
            return Err(at(file, 1, format!("unknown key {k:?} (expected rules)")));
        }
        let items = match map.get("rules") {
            Some(serde_yaml::Value::Sequence(s)) => s.clone(),
            _ => return Err(at(file, 1, "`rules` must be a list")),
        };
        let lines = t0_core::config::item_lines(text, "rules");
        let mut rules = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let line = lines.get(i).copied().unwrap_or(0);
            let serde_yaml::Value::Mapping(mut m) = item else {
                return Err(at(file, line, "a rule is a mapping with id, version, answers, table and fix"));
            };
            let mut text_field = |k: &str, required: bool| -> Result<Option<String>> {
                match m.remove(k) {
                    Some(serde_yaml::Value::String(s)) => Ok(Some(s)),
                    Some(_) => Err(at(file, line, format!("`{k}` must be a string"))),
                    None if required => Err(at(file, line, format!("missing `{k}`"))),
                    None => Ok(None),
                }
            };
            let id = text_field("id", true)?.unwrap_or_default();
            let answers = text_field("answers", true)?.unwrap_or_default();
            let table = text_field("table", true)?.unwrap_or_default();
            let when = text_field("where", false)?;
            let _ = text_field("description", false)?;
            let version = match m.remove("version") {
                Some(v) => v
                    .as_u64()
                    .filter(|v| *v >= 1 && *v <= u32::MAX as u64)
                    .ok_or_else(|| at(file, line, format!("rule {id}: `version` must be a positive integer")))?
                    as u32,
                None => return Err(at(file, line, format!("rule {id}: missing `version`"))),
            };
            if !m.contains_key("fix") {
                return Err(at(file, line, format!("rule {id}: missing `fix`")));
            }
            let fix: Fix = serde_yaml::from_value(serde_yaml::Value::Mapping(m))
                .map_err(|e| at(file, line, format!("rule {id}: {e}")))?;
            if !ids.insert(id.clone()) {
                return Err(at(file, line, format!("rule id {id:?} is used twice")));
            }
            if crate::vocab::spec(&table).is_none() {
                return Err(at(file, line, format!("rule {id}: {table:?} is not a canonical table")));
            }
            if matches!(fix, Fix::Quarantine { .. }) && when.is_none() {
                return Err(at(file, line, format!("rule {id}: a quarantine needs `where` (the rows it removes)")));
            }
            rules.push(Rule { id, version, answers, table, when, fix, line });
        }
        Ok(RuleSet { source: file.to_path_buf(), rules, hash: t0_core::blake3_hex(text.as_bytes()) })
    }

    /// Every rule answers a check the audit run has (exit 2 naming the rule and the file):
    /// a rule for a check that does not exist would never run, without a word.
    pub fn check_answers(&self, audit_run: &str, checks: &std::collections::BTreeSet<(String, String)>) -> Result<()> {
        for r in &self.rules {
            if checks.contains(&(r.table.clone(), r.answers.clone())) {
                continue;
            }
            let on_table: Vec<&str> = checks.iter().filter(|(t, _)| *t == r.table).map(|(_, c)| c.as_str()).collect();
            return Err(at(
                &self.source,
                r.line,
                format!(
                    "rule {}: answers check {:?} on {}, which audit run {audit_run} does not have (its checks on {}: {})",
                    r.id,
                    r.answers,
                    r.table,
                    r.table,
                    if on_table.is_empty() { "none".to_string() } else { on_table.join(", ") }
                ),
            ));
        }
        Ok(())
    }

    /// Check every rule against the catalog: its columns exist and each of its plans prepares.
    #[cfg(feature = "catalog")]
    pub fn validate(&self, catalog: &Catalog) -> Result<()> {
        for r in &self.rules {
            let cols = catalog.column_types(&r.table)?;
            for c in r.columns() {
                if !cols.contains_key(c) {
                    return Err(at(&self.source, r.line, format!("rule {}: {} has no column {c:?}", r.id, r.table)));
                }
            }
            if let Fix::StateMachine { key, .. } = &r.fix
                && !key.iter().any(|k| k == "entity_id")
            {
                return Err(at(
                    &self.source,
                    r.line,
                    format!("rule {}: events are matched on entity_id, so the key must include it", r.id),
                ));
            }
            let ctx =
                PlanContext { now: "2000-01-01 00:00:00".into(), types: cols, current: current_with_rowid(&r.table) };
            for sql in r.plans(&ctx) {
                if let Err(e) = catalog.conn().prepare(&format!("SELECT * FROM ({sql}) LIMIT 0")) {
                    return Err(at(&self.source, r.line, format!("rule {}: its plan does not prepare: {e}", r.id)));
                }
            }
        }
        Ok(())
    }
}

/// What plans need besides the rule: the heal time and the table's column types.
pub struct PlanContext {
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC.
    pub now: String,
    pub types: BTreeMap<String, String>,
    /// The relation holding the table's current live rows with `__rid` (a query, or the
    /// working table a heal run keeps up to date).
    pub current: String,
}

/// The current live rows of a canonical table, with the rowid of each as `__rid`.
pub fn current_with_rowid(table: &str) -> String {
    crate::vocab::current_with_rowid(table).expect("canonical table")
}

/// The text key of a fact (`k1|k2`), the same as audit's failing samples.
pub fn key_text(table: &str) -> String {
    crate::vocab::key_text(table).expect("canonical table")
}

fn list(values: &[String]) -> String {
    values.iter().map(|v| quote_literal(v)).collect::<Vec<_>>().join(", ")
}

fn cols(prefix: &str, c: &[String]) -> String {
    c.iter().map(|k| format!("{prefix}{k}")).collect::<Vec<_>>().join(", ")
}

impl Rule {
    #[cfg(feature = "catalog")]
    fn columns(&self) -> Vec<&String> {
        let mut out: Vec<&String> = Vec::new();
        match &self.fix {
            Fix::Quarantine { .. } => {}
            Fix::Dedupe { key, order, columns, precedence, .. } => {
                out.extend(key.iter().chain(columns).chain([order, &precedence.column]))
            }
            Fix::MapValues { column, .. } => out.push(column),
            Fix::StateMachine { key, order, column, .. } => out.extend(key.iter().chain([order, column])),
            Fix::Clamp { column, min, max } => {
                out.push(column);
                out.extend([min, max].into_iter().flatten().filter_map(|b| match b {
                    Bound::Column(c) => Some(c),
                    Bound::Value(_) => None,
                }));
            }
            Fix::Monotonic { key, order, columns, .. } => out.extend(key.iter().chain(columns).chain([order])),
        }
        out
    }

    fn condition(&self, ctx: &PlanContext) -> String {
        let Some(w) = &self.when else { return "true".into() };
        let w = w.replace("{now}", &format!("TIMESTAMP {}", quote_literal(&ctx.now)));
        let w = crate::vocab::expand_current(&w);
        format!("({w})")
    }

    /// A quarantine never destroys a valid version: a flagged row whose fact has an earlier
    /// version that is live and does not meet the rule's condition is reverted to the latest
    /// such version (one cell per column that differs, the first carrying the reason; a new
    /// version like every repair). A row with no valid earlier version, or one that differs from
    /// it in no column a patch may set, becomes a tombstone.
    fn quarantine_plan(&self, ctx: &PlanContext, reason: &str) -> String {
        let (cur, table) = (ctx.current.as_str(), self.table.as_str());
        let spec = crate::vocab::spec(table).expect("canonical table");
        let cond = self.condition(ctx);
        let k = key_text(table);
        let on =
            |a: &str, b: &str| spec.key.iter().map(|c| format!("{a}.{c} = {b}.{c}")).collect::<Vec<_>>().join(" AND ");
        let data: Vec<&String> = ctx
            .types
            .keys()
            .filter(|c| !crate::vocab::BOOKKEEPING.contains(&c.as_str()) && !spec.key.contains(&c.as_str()))
            .collect();
        let mut diffs: Vec<String> = data
            .iter()
            .map(|c| {
                format!(
                    "SELECT t.__rid, {k} AS row_key, {} AS column_name, CAST(t.\"{c}\" AS VARCHAR) AS old_value,
                            CAST(g.\"{c}\" AS VARCHAR) AS new_value, g.version AS __to
                     FROM bad t JOIN last_good g ON g.__rid = t.__rid WHERE t.\"{c}\" IS DISTINCT FROM g.\"{c}\"",
                    quote_literal(c)
                )
            })
            .collect();
        if diffs.is_empty() {
            diffs.push("SELECT NULL::BIGINT, NULL, NULL, NULL, NULL, NULL::INTEGER WHERE false".into());
        }
        let reason = quote_literal(reason);
        format!(
            "WITH bad AS (SELECT t.* FROM {cur} t WHERE {cond}),
                  good AS (SELECT * FROM {table} g0 WHERE NOT deleted AND NOT coalesce({cond}, false)
                           AND EXISTS (SELECT 1 FROM bad b WHERE {on_b})),
                  last_good AS (SELECT b.__rid, g.* FROM bad b JOIN good g ON {on_g} AND g.version < b.version
                                QUALIFY row_number() OVER (PARTITION BY b.__rid ORDER BY g.version DESC) = 1),
                  diffs AS ({diffs})
             SELECT __rid, row_key, column_name, old_value, new_value,
                    CASE WHEN row_number() OVER (PARTITION BY __rid ORDER BY column_name) = 1
                         THEN 'reverted to version ' || CAST(__to AS VARCHAR) || ': ' || {reason} END AS reason
             FROM diffs
             UNION ALL
             SELECT t.__rid AS __rid, {k} AS row_key, 'deleted' AS column_name, 'false' AS old_value, 'true' AS new_value,
                    {reason} AS reason
             FROM bad t WHERE t.__rid NOT IN (SELECT __rid FROM diffs)",
            on_b = on("b", "g0"),
            on_g = on("g", "b"),
            diffs = diffs.join(" UNION ALL "),
        )
    }

    /// The plan queries of this rule, applied one after another (a state machine first removes
    /// unproven terminal rows, then stops revivals among the rest).
    ///
    /// Long because: one `match` arm per rule action, each an SQL template; the arms share
    /// nothing but the context, and splitting them would only move the match elsewhere.
    pub fn plans(&self, ctx: &PlanContext) -> Vec<String> {
        let cur = ctx.current.as_str();
        let k = key_text(&self.table);
        let cond = self.condition(ctx);
        let cell = |col: &str, old: &str, new: &str, reason: &str| {
            format!(
                "t.__rid AS __rid, {k} AS row_key, {} AS column_name, CAST({old} AS VARCHAR) AS old_value,
                 CAST({new} AS VARCHAR) AS new_value, CAST({reason} AS VARCHAR) AS reason",
                quote_literal(col)
            )
        };
        let tombstone = |reason: &str| cell("deleted", "false", "true", reason);
        match &self.fix {
            Fix::Quarantine { reason } => vec![self.quarantine_plan(ctx, reason)],
            Fix::Dedupe { key, order, within_seconds, columns, precedence } => {
                let same = columns
                    .iter()
                    .map(|c| format!(" AND t.{c} IS NOT DISTINCT FROM lag(t.{c}) OVER w"))
                    .collect::<String>();
                let rank = precedence
                    .order
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("WHEN {} THEN {i}", quote_literal(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let n = precedence.order.len();
                let (keys, pcol) = (cols("t.", key), &precedence.column);
                vec![format!(
                    "WITH s AS (
                        SELECT t.*, CASE WHEN date_diff('second', lag(t.{order}) OVER w, t.{order}) <= {within_seconds}{same}
                                         THEN 0 ELSE 1 END AS __starts
                        FROM {cur} t WINDOW w AS (PARTITION BY {keys} ORDER BY t.{order})),
                     c AS (SELECT t.*, sum(t.__starts) OVER (PARTITION BY {keys} ORDER BY t.{order}
                                        ROWS UNBOUNDED PRECEDING) AS __cluster FROM s t),
                     r AS (SELECT t.*, row_number() OVER (PARTITION BY {keys}, t.__cluster
                                        ORDER BY CASE CAST(t.{pcol} AS VARCHAR) {rank} ELSE {n} END, t.{order} DESC) AS __rank
                           FROM c t)
                     SELECT {} FROM r t WHERE t.__rank > 1 AND {cond}",
                    tombstone("NULL")
                )]
            }
            Fix::MapValues { column, map } => {
                let values = map
                    .iter()
                    .map(|(f, to)| format!("({}, {})", quote_literal(f), quote_literal(to)))
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![format!(
                    "SELECT {} FROM {cur} t JOIN (VALUES {values}) m(__from, __to) ON CAST(t.{column} AS VARCHAR) = m.__from
                     WHERE {cond}",
                    cell(column, &format!("t.{column}"), "m.__to", "NULL")
                )]
            }
            Fix::StateMachine { key, order, column, terminal, require_event, revival_event, allow_revival } => {
                let mut plans = Vec::new();
                let events = crate::vocab::current_sql("events", true).expect("canonical table");
                if !require_event.is_empty() {
                    let arms = require_event
                        .iter()
                        .map(|(s, e)| format!("WHEN {} THEN {}", quote_literal(s), quote_literal(e)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    let need = format!("(CASE CAST(t.{column} AS VARCHAR) {arms} END)");
                    let reason = format!(
                        "'transition to ' || t.{column} || ' without a ' || {need} || ' event at or before it'"
                    );
                    plans.push(format!(
                        "SELECT {} FROM {cur} t
                         WHERE {need} IS NOT NULL
                           AND NOT EXISTS (SELECT 1 FROM {events} e
                                           WHERE e.entity_id = t.entity_id AND e.event_type = {need} AND e.observed_at <= t.{order})
                           AND {cond}",
                        tombstone(&reason)
                    ));
                }
                if !allow_revival {
                    let terms = list(terminal);
                    let keys = cols("t.", key);
                    let revived = match revival_event {
                        Some(ev) => format!(
                            " AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.entity_id = t.entity_id
                                AND e.event_type = {} AND e.observed_at > t.__terminal_at AND e.observed_at <= t.{order})",
                            quote_literal(ev)
                        ),
                        None => String::new(),
                    };
                    plans.push(format!(
                        "SELECT {} FROM (
                            SELECT t.*,
                                max(CASE WHEN t.{column} IN ({terms}) THEN t.{order} END) OVER w AS __terminal_at,
                                arg_max(CASE WHEN t.{column} IN ({terms}) THEN t.{column} END,
                                        CASE WHEN t.{column} IN ({terms}) THEN t.{order} END) OVER w AS __terminal
                            FROM {cur} t
                            WINDOW w AS (PARTITION BY {keys} ORDER BY t.{order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) t
                         WHERE t.__terminal_at IS NOT NULL AND t.{column} NOT IN ({terms}){revived} AND {cond}",
                        cell(column, &format!("t.{column}"), "t.__terminal", "NULL")
                    ));
                }
                plans
            }
            Fix::Clamp { column, min, max } => {
                let ty = ctx.types.get(column).cloned().unwrap_or_else(|| "DOUBLE".into());
                let mut fixed = format!("t.{column}");
                let mut out = Vec::new();
                if let Some(m) = min {
                    fixed = format!("greatest({fixed}, {})", m.sql("t"));
                    out.push(format!("t.{column} < {}", m.sql("t")));
                }
                if let Some(m) = max {
                    fixed = format!("least({fixed}, {})", m.sql("t"));
                    out.push(format!("t.{column} > {}", m.sql("t")));
                }
                if out.is_empty() {
                    out.push("false".into());
                }
                vec![format!(
                    "SELECT {} FROM {cur} t WHERE ({}) AND {cond}",
                    cell(column, &format!("t.{column}"), &format!("CAST({fixed} AS {ty})"), "NULL"),
                    out.join(" OR ")
                )]
            }
            Fix::Monotonic { key, order, columns, policy } => {
                let maxes = columns.iter().map(|c| format!("max(t.{c}) OVER w AS __max_{c}")).collect::<Vec<_>>();
                let windowed = format!(
                    "(SELECT t.*, {} FROM {cur} t
                      WINDOW w AS (PARTITION BY {} ORDER BY t.{order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))",
                    maxes.join(", "),
                    cols("t.", key)
                );
                match policy {
                    Policy::CarryMax => vec![
                        columns
                            .iter()
                            .map(|c| {
                                format!(
                                    "SELECT {} FROM {windowed} t WHERE t.{c} < t.__max_{c} AND {cond}",
                                    cell(c, &format!("t.{c}"), &format!("t.__max_{c}"), "NULL")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(" UNION ALL "),
                    ],
                    Policy::Drop => {
                        let any =
                            columns.iter().map(|c| format!("t.{c} < t.__max_{c}")).collect::<Vec<_>>().join(" OR ");
                        vec![format!("SELECT {} FROM {windowed} t WHERE ({any}) AND {cond}", tombstone("NULL"))]
                    }
                }
            }
        }
    }
}
