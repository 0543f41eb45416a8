//! Column lineage of a store: which canonical columns each surface column reads, found by
//! DuckDB's own optimiser rather than by parsing SQL. The store's statements run on the
//! sandbox's empty inputs (temp tables defined as views, so nothing is materialised between
//! a canonical table and the surface); then, per surface column, `EXPLAIN (FORMAT JSON)
//! SELECT <column> FROM surface_<entry>` is planned and the columns every scan of a canonical
//! table projects are collected. Projection pushdown only drops columns the query cannot
//! depend on, so the set is never short of a column the value reads; it can be over (a window
//! DuckDB does not prune keeps its inputs). Every other optimiser is switched off: none is
//! needed, and statistics propagation would fold filters away on the empty tables.
//!
//! Classes: what the surface's key alone reads decides which rows exist — the dataset-wide
//! inputs, each INDIRECT: a bookkeeping or observation-time column is the as-of availability
//! FILTER, a key column a JOIN, a value column a store's FILTER. A column's own query reads
//! those and what its value needs: the latter are DIRECT. A window DuckDB does not prune makes
//! its inputs part of every query, so they show as INDIRECT where a value also reads them:
//! the set is sound, the class a lower bound.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use t0_catalog::Catalog;

use crate::sandbox::{self, Statement};

/// How a surface column depends on a canonical column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The value is computed from it.
    Direct,
    /// It decides which rows count (the as-of availability filter, a store's WHERE).
    Filter,
    /// It matches rows to the entity and T0.
    Join,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Input {
    pub table: String,
    pub column: String,
    pub how: How,
}

/// A store's column lineage (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Per surface column other than the key: what its value reads.
    pub fields: BTreeMap<String, Vec<Input>>,
    /// What the surface's key alone reads: which rows exist.
    pub dataset: Vec<Input>,
    /// Columns (or the whole store, as `*`) whose lineage could not be found, and why.
    pub unknown: BTreeMap<String, String>,
}

/// The lineage of `entry`'s surface. Never fails the run: what cannot be found is `unknown`.
pub fn lineage(catalog: &Catalog, entry: &str, stmts: &[(String, Statement)], params_sql: &str) -> Lineage {
    match find(catalog, entry, stmts, params_sql) {
        Ok(l) => l,
        Err(why) => Lineage { unknown: BTreeMap::from([("*".to_string(), why)]), ..Lineage::default() },
    }
}

/// (table, column) pairs a query's plan scans, or why they are not known.
type Scanned = BTreeSet<(String, String)>;

fn find(catalog: &Catalog, entry: &str, stmts: &[(String, Statement)], params_sql: &str) -> Result<Lineage, String> {
    let scratch = sandbox::empty_inputs(catalog, params_sql).map_err(|e| e.to_string())?;
    let c = scratch.conn();
    only_unused_columns(c)?;
    for (file, stmt) in stmts {
        let sql = tables_as_views(&stmt.sql);
        c.execute_batch(&sql).map_err(|e| format!("{file}:{} with its temp tables as views: {e}", stmt.line))?;
    }
    let columns = sandbox::surface_columns(c, entry).map_err(|e| e.to_string())?;
    let surface = format!("surface_{entry}");
    let key = scans(c, &format!("SELECT entity_id, t0 FROM {surface}"))?;
    let mut out = Lineage { dataset: key.iter().map(|(t, col)| dataset_input(t, col)).collect(), ..Default::default() };
    for col in columns.iter().filter(|c| *c != "entity_id" && *c != "t0") {
        match scans(c, &format!("SELECT {} FROM {surface}", quote(col))) {
            Ok(read) => {
                out.fields.insert(col.clone(), read.iter().map(|(t, cl)| field_input(t, cl, &key)).collect());
            }
            Err(why) => {
                out.unknown.insert(col.clone(), why);
            }
        }
    }
    Ok(out)
}

/// Switch every optimiser off but the one that removes unused columns: the scans' columns are
/// what lineage reads, and the others (join order above all) made planning 10× slower than
/// the build itself on a debug DuckDB, for nothing lineage needs. Statistics propagation in
/// particular must be off: on empty tables it folds filters and whole branches away.
fn only_unused_columns(c: &duckdb::Connection) -> Result<(), String> {
    let mut stmt = c
        .prepare("SELECT name FROM duckdb_optimizers() WHERE name <> 'unused_columns' ORDER BY name")
        .map_err(|e| e.to_string())?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| e.to_string())?;
    let names = names.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    c.execute_batch(&format!("SET disabled_optimizers = '{}'", names.join(",")))
        .map_err(|e| format!("switch the optimisers off: {e}"))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column's role in its table: the as-of filter's (bookkeeping, observation time), a key's,
/// or none (a value).
fn role(table: &str, column: &str) -> Option<How> {
    let spec = t0_project::vocab::spec(table)?;
    if spec.observed == column || t0_project::vocab::BOOKKEEPING.contains(&column) {
        Some(How::Filter)
    } else if spec.key.contains(&column) || spec.entity_refs.contains(&column) {
        Some(How::Join)
    } else {
        None
    }
}

/// A column the surface's key reads: it decides which rows exist (a value column there is a
/// store's filter).
fn dataset_input(table: &str, column: &str) -> Input {
    Input { table: table.into(), column: column.into(), how: role(table, column).unwrap_or(How::Filter) }
}

/// A column one surface column's query reads; `key` holds what the surface's key alone reads.
/// What the key reads too decides rows for every column (INDIRECT: the as-of filter, a key's
/// join, a store's WHERE); the rest the value reads (DIRECT).
fn field_input(table: &str, column: &str, key: &Scanned) -> Input {
    if key.contains(&(table.to_string(), column.to_string())) {
        dataset_input(table, column)
    } else {
        Input { table: table.into(), column: column.into(), how: How::Direct }
    }
}

/// The canonical columns `query`'s optimised plan scans. Table functions are the pure ones
/// the sandbox admits (no data); a scan of a table other than a canonical one, the grid and
/// the parameters (a temp table left materialised) is a reason the lineage is not known.
fn scans(c: &duckdb::Connection, query: &str) -> Result<Scanned, String> {
    let text: String = c
        .query_row(&format!("EXPLAIN (FORMAT JSON) {query}"), [], |r| r.get(1))
        .map_err(|e| format!("EXPLAIN {query}: {e}"))?;
    let plan: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("EXPLAIN {query}: {e}"))?;
    let raw = format!("{}.main.", sandbox::DRY_RAW);
    let mut out = Scanned::new();
    let mut stack: Vec<&serde_json::Value> = plan.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    while let Some(node) = stack.pop() {
        if let Some(children) = node["children"].as_array() {
            stack.extend(children);
        }
        let info = &node["extra_info"];
        // DuckDB names a table of an attached database with its catalog and schema.
        let table = info["Table"].as_str().map(|t| t.strip_prefix(&raw).unwrap_or(t));
        match table {
            Some(t) if t0_project::vocab::CANONICAL.contains(&t) => {
                out.extend(texts(&info["Projections"]).into_iter().map(|col| (t.to_string(), col)));
                // Filters pushed into the scan name columns it need not project.
                let filters = texts(&info["Filters"]);
                if !filters.is_empty() {
                    for col in table_columns(c, t)? {
                        if filters.iter().any(|f| mentions(f, &col)) {
                            out.insert((t.to_string(), col));
                        }
                    }
                }
            }
            Some(t) if ["t0_grid", "certify_params"].contains(&t.rsplit('.').next().unwrap_or(t)) => {}
            None => {}
            Some(other) => return Err(format!("its plan scans table {other}, not a canonical table")),
        }
    }
    Ok(out)
}

/// A plan field that is one string or a list of them.
fn texts(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// The columns of the scratch's canonical table `table`.
fn table_columns(c: &duckdb::Connection, table: &str) -> Result<Vec<String>, String> {
    let mut stmt = c
        .prepare(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? ORDER BY column_index",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt.query_map([sandbox::DRY_RAW, table], |r| r.get(0)).map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<String>, _>>().map_err(|e| e.to_string())
}

/// Does filter text `f` (DuckDB prints names unquoted) mention column `col` as a whole name?
/// A name inside a literal counts too: the set may be over, never short.
fn mentions(f: &str, col: &str) -> bool {
    let (f, col) = (f.to_lowercase(), col.to_lowercase());
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    f.match_indices(&col).any(|(i, _)| !ident(f[..i].chars().next_back()) && !ident(f[i + col.len()..].chars().next()))
}

/// `CREATE [OR REPLACE] TEMP TABLE …` as `… TEMP VIEW …` (the sandbox admits no other table
/// form): a view keeps the path from the canonical tables to the surface in the plan.
fn tables_as_views(sql: &str) -> String {
    let words = leading_words(sql, 5);
    let lower: Vec<String> = words.iter().map(|&(a, b)| sql[a..b].to_ascii_lowercase()).collect();
    let at = match lower.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["create", "temp" | "temporary", "table", ..] => 2,
        ["create", "or", "replace", "temp" | "temporary", "table", ..] => 4,
        _ => return sql.to_string(),
    };
    let (a, b) = words[at];
    format!("{}VIEW{}", &sql[..a], &sql[b..])
}

/// Byte ranges of the first `n` words of `sql`, skipping whitespace and comments.
fn leading_words(sql: &str, n: usize) -> Vec<(usize, usize)> {
    let b = sql.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() && out.len() < n {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"--") {
            i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
        } else if b[i..].starts_with(b"/*") {
            i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
        } else if b[i].is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((start, i));
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lineage of store `s` written as `sql`, on a catalog whose observations have
    /// measures views, likes and status.
    fn of(sql: &str) -> Lineage {
        let cat = Catalog::in_memory().unwrap();
        cat.conn()
            .execute_batch(
                "ALTER TABLE observations ADD COLUMN views BIGINT; ALTER TABLE observations ADD COLUMN likes BIGINT;
                 ALTER TABLE observations ADD COLUMN status VARCHAR;",
            )
            .unwrap();
        let closure = vec![("s.sql".to_string(), sql.to_string())];
        let stmts = sandbox::statements(&closure, &sandbox::Policy::of_build().unwrap()).unwrap();
        lineage(&cat, "s", &stmts, "CAST(6 AS BIGINT) AS sla_hours")
    }

    fn reads(l: &Lineage, field: &str) -> Vec<(String, How)> {
        l.fields[field].iter().filter(|i| i.table == "observations").map(|i| (i.column.clone(), i.how)).collect()
    }

    #[test]
    fn each_surface_column_reads_what_its_value_needs_through_temp_tables() {
        let l = of("CREATE TEMP TABLE a AS
                      SELECT entity_id, t0, max(views) FILTER (WHERE likes > 0) AS v, count(*) AS n
                      FROM obs_asof WHERE status IS DISTINCT FROM 'x' GROUP BY ALL;
                    CREATE TEMP VIEW surface_s AS
                      SELECT g.entity_id, g.t0, a.v, a.n, p.sla_hours AS sla, r.i
                      FROM t0_grid g LEFT JOIN a USING (entity_id, t0) CROSS JOIN certify_params p
                      CROSS JOIN range(0, 1) r(i);");
        assert!(l.unknown.is_empty(), "{:?}", l.unknown);
        let v = reads(&l, "v");
        for col in ["views", "likes"] {
            assert!(v.contains(&(col.to_string(), How::Direct)), "v reads {col}: {v:?}");
        }
        assert!(v.contains(&("available_at".to_string(), How::Filter)), "the as-of filter: {v:?}");
        assert!(v.contains(&("status".to_string(), How::Filter)), "the store's WHERE: {v:?}");
        let n = reads(&l, "n");
        assert!(!n.iter().any(|(c, _)| c == "views" || c == "likes"), "a count reads no measure: {n:?}");
        // The parameters and a pure table function read no canonical column directly.
        for f in ["n", "sla", "i"] {
            assert!(l.fields[f].iter().all(|i| i.how != How::Direct), "{f}: {:?}", l.fields[f]);
        }
        let d = |column: &str, how| Input { table: "observations".into(), column: column.into(), how };
        assert!(l.dataset.contains(&d("entity_id", How::Join)), "{:?}", l.dataset);
        assert!(l.dataset.contains(&d("available_at", How::Filter)), "{:?}", l.dataset);
        assert!(!l.dataset.iter().any(|i| i.column == "views"), "{:?}", l.dataset);
    }

    #[test]
    fn a_window_keeps_its_inputs_listed() {
        let l = of(
            "CREATE TEMP VIEW a AS SELECT entity_id, t0, max(views) AS v, max(likes) AS k FROM obs_asof GROUP BY ALL;
                    CREATE TEMP VIEW surface_s AS
                      SELECT entity_id, t0, k, lag(v) OVER (PARTITION BY entity_id ORDER BY t0) AS v_prev FROM a;",
        );
        assert!(l.unknown.is_empty(), "{:?}", l.unknown);
        assert!(reads(&l, "v_prev").iter().any(|(c, _)| c == "views"), "{:?}", l.fields);
        assert!(reads(&l, "k").contains(&("likes".to_string(), How::Direct)), "{:?}", l.fields);
    }

    #[test]
    fn a_store_whose_tables_cannot_be_views_has_unknown_lineage_not_a_failure() {
        // A table replaced by one reading itself works materialised, not as a view.
        let l = of("CREATE TEMP TABLE a AS SELECT entity_id, t0, views FROM obs_asof;
                    CREATE OR REPLACE TEMP TABLE a AS SELECT entity_id, t0, views + 1 AS views FROM a;
                    CREATE TEMP VIEW surface_s AS SELECT entity_id, t0, views FROM a;");
        assert!(l.fields.is_empty(), "{:?}", l.fields);
        assert!(l.unknown["*"].contains("recursi"), "{:?}", l.unknown);
    }

    #[test]
    fn a_surface_read_from_the_entities_reads_no_observation() {
        let l = of("CREATE TEMP VIEW surface_s AS SELECT entity_id, t0, kind, created_at FROM self_asof;");
        assert!(l.unknown.is_empty(), "{:?}", l.unknown);
        let kind: Vec<&Input> = l.fields["kind"].iter().collect();
        assert!(kind.iter().all(|i| i.table == "entities"), "{kind:?}");
        assert!(kind.iter().any(|i| i.column == "kind" && i.how == How::Direct), "{kind:?}");
        assert!(!kind.iter().any(|i| i.column == "created_at"), "{kind:?}");
    }

    #[test]
    fn a_filter_mentions_whole_names_only() {
        assert!(mentions("status='x'", "status"));
        assert!(mentions("odd col>='a' AND odd col<'b'", "odd col"));
        assert!(!mentions("status_code=3", "status"));
        assert!(!mentions("likes>3", "like"));
    }

    #[test]
    fn temp_tables_become_views_and_nothing_else_changes() {
        assert_eq!(tables_as_views("CREATE TEMP TABLE x AS SELECT 1"), "CREATE TEMP VIEW x AS SELECT 1");
        assert_eq!(
            tables_as_views("-- a table\ncreate or replace temporary /* t */ table x as from y"),
            "-- a table\ncreate or replace temporary /* t */ VIEW x as from y"
        );
        for same in ["CREATE TEMP VIEW table_x AS SELECT 1", "CREATE TEMP MACRO m(x) AS x"] {
            assert_eq!(tables_as_views(same), same);
        }
    }
}
