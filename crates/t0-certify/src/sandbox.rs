//! The feature-store sandbox. A store's SQL sees only the as-of views (`asof.sql`), the T0
//! grid and the parameters; it cannot write, attach or read files, read the canonical tables,
//! the catalog's other tables or DuckDB's metadata, or shadow its inputs.
//!
//! Three layers, each closing what the others cannot:
//! 1. **Form** (static, [`check_statement`]): only `CREATE [OR REPLACE] TEMP VIEW|TABLE <name>
//!    AS SELECT …` and `CREATE [OR REPLACE] TEMP MACRO` statements, with an unqualified name that
//!    is not one of the inputs; no call to a table function other than `range`,
//!    `generate_series`, `unnest` and a few pure ones, nor to the functions that read settings,
//!    variables, sequences or metadata; no `duckdb_*`, `pragma_*`, `pg_*`, `sqlite_*` object and
//!    no `information_schema.`/`pg_catalog.`/`system.` qualifier.
//! 2. **Dry run** ([`dry_run`]): every statement is bound and run, in order, in an empty
//!    in-memory database that holds only the inputs (the canonical tables behind the as-of
//!    views are empty and live under a name the real run does not have). A name that does
//!    not resolve there — `observations`, `heal_ledger`, `catalog.main.x` — is an error naming
//!    the file and line before anything reads real data.
//! 3. **The real run** ([`Session`]) uses a connection of the catalog's database whose search
//!    path is the temp schema only, with external access (files, `ATTACH`, `COPY`) switched off
//!    for the whole database instance; the raw tables behind the as-of views are qualified with
//!    the catalog's name, which the dry run lacks, and the dry run's raw name is missing here:
//!    a reference to the data behind the views fails in one of the two runs.
//!
//! Which *time* a store reads (an as-of view is keyed by every T0 of the grid; a history view
//! holds every version) is not a static property: the replay check of every certify run and
//! `certify attack` test it (see `replay` and `attack`).

use std::collections::BTreeSet;

use duckdb::Connection;
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Error, Result};

/// The built-in as-of views (template; see [`asof_sql`]).
pub const ASOF_TEMPLATE: &str = include_str!("asof.sql");
/// The file name a store's `files` may list for the built-in as-of views.
pub const ASOF_FILE: &str = "asof.sql";
/// Where the dry run keeps its empty canonical tables: a name the real run does not have.
pub(crate) const DRY_RAW: &str = "__t0_dry_raw";

/// Objects the sandbox provides: a store may read them, never define them.
pub const INPUTS: &[&str] = &[
    "t0_grid",
    "certify_params",
    "obs_asof",
    "self_asof",
    "events_asof",
    "artifacts_asof",
    "interactions_asof",
    "entities_history",
    "observations_history",
    "events_history",
    "interactions_history",
    "artifacts_history",
];

/// Table functions a store may call: they compute from their arguments only.
/// (`histogram` and `summary` read a relation by name, which the dry run resolves like any other.)
const PURE_TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "repeat",
    "repeat_row",
    "json_each",
    "json_tree",
    "histogram",
    "histogram_values",
    "summary",
];

/// Scalar functions that read the session, settings, variables, sequences or the catalog, or
/// write somewhere: never in a store.
const STATEFUL_FUNCTIONS: &[&str] = &[
    "current_catalog",
    "current_connection_id",
    "current_database",
    "current_query",
    "current_query_id",
    "current_role",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_transaction_id",
    "current_user",
    "session_user",
    "user",
    "getvariable",
    "getenv",
    "in_search_path",
    "nextval",
    "currval",
    "setval",
    "setseed",
    "txid_current",
    "version",
    "write_log",
    "col_description",
    "obj_description",
    "shobj_description",
    "json_execute_serialized_sql",
    "json_deserialize_sql",
];

/// Name prefixes of DuckDB's metadata functions and views.
const METADATA_PREFIXES: &[&str] = &["duckdb_", "pragma_", "pg_", "sqlite_", "__t0"];

/// Schemas and catalogs a store may not name.
const DENIED_QUALIFIERS: &[&str] = &["information_schema", "pg_catalog", "system"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier or keyword, lower-cased (DuckDB folds quoted identifiers too).
    Word(String),
    Str,
    Num,
    Punct(char),
}

/// One statement of a store file: where it starts and its text.
#[derive(Debug, Clone)]
pub struct Statement {
    /// 1-based line of its first token.
    pub line: usize,
    pub sql: String,
    toks: Vec<Tok>,
}

/// Split SQL into statements at top-level `;` (outside strings, quoted identifiers and
/// comments), remembering the line each starts on. Empty statements are dropped.
pub fn split(sql: &str) -> Vec<Statement> {
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let mut toks = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    while let Some(c) = at(i) {
        let (byte, tok_line) = (chars[i].0, line);
        let tok = match c {
            '\n' => {
                line += 1;
                i += 1;
                continue;
            }
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '-' if at(i + 1) == Some('-') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                    line += usize::from(at(i) == Some('\n'));
                    i += 1;
                }
                i += 2;
                continue;
            }
            ';' => {
                if let Some((b, l)) = start.take() {
                    out.push(Statement { line: l, sql: sql[b..byte].to_string(), toks: std::mem::take(&mut toks) });
                }
                i += 1;
                continue;
            }
            '\'' => {
                i = skip_quoted(&chars, i, '\'', false, &mut line);
                Tok::Str
            }
            'e' | 'E' if at(i + 1) == Some('\'') => {
                i = skip_quoted(&chars, i + 1, '\'', true, &mut line);
                Tok::Str
            }
            '"' => {
                let from = i + 1;
                i = skip_quoted(&chars, i, '"', false, &mut line);
                let name: String = chars[from..i.saturating_sub(1).max(from)].iter().map(|c| c.1).collect();
                Tok::Word(name.replace("\"\"", "\"").to_lowercase())
            }
            '$' => match dollar_tag(&chars, i) {
                Some(tag) => {
                    i = skip_dollar(&chars, i, &tag, &mut line);
                    Tok::Str
                }
                None => {
                    i += 1;
                    Tok::Punct('$')
                }
            },
            c if c.is_ascii_digit() => {
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                    i += 1;
                }
                Tok::Num
            }
            c if c.is_alphabetic() || c == '_' => {
                let from = i;
                while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                    i += 1;
                }
                Tok::Word(chars[from..i].iter().map(|c| c.1).collect::<String>().to_lowercase())
            }
            c => {
                i += 1;
                Tok::Punct(c)
            }
        };
        start.get_or_insert((byte, tok_line));
        toks.push(tok);
    }
    if let Some((b, l)) = start {
        out.push(Statement { line: l, sql: sql[b..].to_string(), toks });
    }
    out
}

/// Index just past a quoted run starting at `i` (the opening quote); a doubled quote is an
/// escaped one, and with `backslash` so is `\x`.
fn skip_quoted(chars: &[(usize, char)], mut i: usize, q: char, backslash: bool, line: &mut usize) -> usize {
    i += 1;
    while let Some(&(_, c)) = chars.get(i) {
        *line += usize::from(c == '\n');
        if backslash && c == '\\' {
            i += 2;
            continue;
        }
        if c == q {
            if chars.get(i + 1).map(|c| c.1) == Some(q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    i
}

/// The tag of a dollar quote (`$$` or `$name$`) opening at `i`, if one does.
fn dollar_tag(chars: &[(usize, char)], i: usize) -> Option<String> {
    let mut j = i + 1;
    while let Some(&(_, c)) = chars.get(j) {
        if c == '$' {
            return Some(chars[i..=j].iter().map(|c| c.1).collect());
        }
        if !(c.is_alphanumeric() || c == '_') || (j == i + 1 && c.is_ascii_digit()) {
            return None;
        }
        j += 1;
    }
    None
}

fn skip_dollar(chars: &[(usize, char)], i: usize, tag: &str, line: &mut usize) -> usize {
    let tag: Vec<char> = tag.chars().collect();
    let mut j = i + tag.len();
    while j < chars.len() {
        if chars[j..].iter().take(tag.len()).map(|c| c.1).eq(tag.iter().copied()) {
            return j + tag.len();
        }
        *line += usize::from(chars[j].1 == '\n');
        j += 1;
    }
    j
}

/// What a statement defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Defines {
    pub what: &'static str,
    pub name: String,
}

/// The deny lists of one DuckDB build: the fixed ones plus every table function it has that is
/// not known to be pure (so a function added by a newer DuckDB is denied until reviewed).
#[derive(Debug, Clone)]
pub struct Policy {
    functions: BTreeSet<String>,
    qualifiers: BTreeSet<String>,
}

impl Policy {
    /// Read the table functions of this DuckDB build from a scratch database.
    pub fn of_build() -> Result<Policy> {
        let scratch = Catalog::scratch()?;
        let names: Vec<String> = t0_catalog::column(
            scratch.conn(),
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'table'",
            &[],
        )?;
        let mut functions: BTreeSet<String> =
            names.into_iter().filter(|n| !PURE_TABLE_FUNCTIONS.contains(&n.as_str())).collect();
        functions.extend(STATEFUL_FUNCTIONS.iter().map(|s| s.to_string()));
        let qualifiers = DENIED_QUALIFIERS.iter().map(|s| s.to_string()).collect();
        Ok(Policy { functions, qualifiers })
    }

    /// Also deny naming `db` (a database the real run has attached) as a qualifier.
    pub fn deny_database(&mut self, db: &str) {
        if db != "temp" {
            self.qualifiers.insert(db.to_lowercase());
        }
    }
}

/// Check one statement's form and names; returns what it defines. `Err` is the reason, for
/// the caller to prefix with file and line.
pub fn check_statement(stmt: &Statement, policy: &Policy) -> std::result::Result<Defines, String> {
    let defines = check_form(&stmt.toks).ok_or_else(|| {
        format!(
            "only `CREATE [OR REPLACE] TEMP VIEW|TABLE <name> AS SELECT …` and `CREATE [OR REPLACE] TEMP MACRO` statements run in a feature store; found `{}`",
            excerpt(&stmt.sql)
        )
    })?;
    if INPUTS.contains(&defines.name.as_str()) {
        return Err(format!(
            "`{}` is an input of every store (the sandbox provides it); it cannot be redefined",
            defines.name
        ));
    }
    for (i, t) in stmt.toks.iter().enumerate() {
        let Tok::Word(w) = t else { continue };
        let next = stmt.toks.get(i + 1);
        if let Some(p) = METADATA_PREFIXES.iter().find(|p| w.starts_with(*p)) {
            return Err(format!("`{w}` reads DuckDB's catalog or metadata (`{p}…`), which a feature store cannot see"));
        }
        let after_paren = i > 0 && stmt.toks[i - 1] == Tok::Punct('(');
        if after_paren && ["show", "describe", "summarize"].contains(&w.as_str()) {
            return Err(format!("`({w} …)` reads the catalog's metadata, which a feature store cannot see"));
        }
        if next == Some(&Tok::Punct('.')) && policy.qualifiers.contains(w) {
            return Err(format!(
                "`{w}.` names a schema or database outside the sandbox; a store reads only the as-of views, t0_grid and certify_params"
            ));
        }
        if next == Some(&Tok::Punct('(')) && policy.functions.contains(w) {
            return Err(format!(
                "`{w}(…)` reads files, settings, metadata or state outside the sandbox and cannot be called from a feature store"
            ));
        }
    }
    Ok(defines)
}

/// `CREATE [OR REPLACE] TEMP|TEMPORARY (VIEW|TABLE) [IF NOT EXISTS] name [(cols)] AS (SELECT|WITH|FROM|VALUES|'(') …`
/// or `… TEMP MACRO name(params) AS …`.
fn check_form(toks: &[Tok]) -> Option<Defines> {
    let word = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let mut i = 0;
    (word(i)? == "create").then_some(())?;
    i += 1;
    if word(i) == Some("or") {
        (word(i + 1)? == "replace").then_some(())?;
        i += 2;
    }
    matches!(word(i)?, "temp" | "temporary").then_some(())?;
    let what = match word(i + 1)? {
        "view" => "view",
        "table" => "table",
        "macro" | "function" => "macro",
        _ => return None,
    };
    i += 2;
    if word(i) == Some("if") {
        (word(i + 1)? == "not" && word(i + 2)? == "exists").then_some(())?;
        i += 3;
    }
    let name = word(i)?.to_string();
    i += 1;
    if toks.get(i) == Some(&Tok::Punct('.')) {
        return None;
    }
    if toks.get(i) == Some(&Tok::Punct('(')) {
        if what == "table" {
            return None;
        }
        i = after_parens(toks, i)?;
    } else if what == "macro" {
        return None;
    }
    (word(i)? == "as").then_some(())?;
    let body = toks.get(i + 1)?;
    let query = matches!(body, Tok::Punct('('))
        || matches!(body, Tok::Word(w) if ["select", "with", "from", "values"].contains(&w.as_str()));
    (what == "macro" || query).then_some(Defines { what, name })
}

/// Index just past the parenthesis group opening at `i`.
fn after_parens(toks: &[Tok], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match toks.get(i)? {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

fn excerpt(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 70 { format!("{}…", one.chars().take(70).collect::<String>()) } else { one }
}

/// The as-of views over the canonical tables of database `raw` (a qualified prefix such as
/// `"catalog".main`).
pub fn asof_sql(raw: &str) -> String {
    let mut sql = ASOF_TEMPLATE.to_string();
    for t in t0_project::vocab::CANONICAL {
        let tag = format!("{{history:{t}}}");
        let history = t0_project::vocab::history_sql(t, &format!("{raw}.{t}")).expect("canonical table");
        sql = sql.replace(&tag, &history);
    }
    sql
}

/// A store's statements, checked: (file, statement) in execution order. The built-in
/// `asof.sql` is not listed (the sandbox creates it). Form errors are exit 2 naming the file and line.
pub fn statements(closure: &[(String, String)], policy: &Policy) -> Result<Vec<(String, Statement)>> {
    let mut out = Vec::new();
    for (file, sql) in closure.iter().filter(|(f, _)| f != ASOF_FILE) {
        for stmt in split(sql) {
            check_statement(&stmt, policy).map_err(|why| Error::config(format!("{file}:{}", stmt.line), why))?;
            out.push((file.clone(), stmt));
        }
    }
    Ok(out)
}

/// The canonical tables' columns in the catalog, as `CREATE TABLE` bodies (the dry run's
/// empty tables have exactly these).
fn canonical_columns(catalog: &Catalog) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for t in t0_project::vocab::CANONICAL {
        let cols = t0_catalog::table_columns(catalog.conn(), t)?;
        let body = cols.iter().map(|(c, ty)| format!("\"{c}\" {ty}")).collect::<Vec<_>>().join(", ");
        out.push((t.to_string(), body));
    }
    Ok(out)
}

/// Run a store's statements in an empty database that holds only the inputs: every name they
/// use must resolve to an input, one of their own temp objects, or a function the policy
/// allows; `surface_<entry>` must exist with `entity_id` and `t0`. Nothing real is read.
pub fn dry_run(catalog: &Catalog, entry: &str, stmts: &[(String, Statement)], params_sql: &str) -> Result<()> {
    let scratch = empty_inputs(catalog, params_sql)?;
    let c = scratch.conn();
    for (file, stmt) in stmts {
        c.execute_batch(&stmt.sql).map_err(|e| Error::config(format!("{file}:{}", stmt.line), sandbox_error(&e)))?;
    }
    surface_columns(c, entry).map(|_| ())
}

/// A scratch database holding only the sandbox's inputs, empty: the canonical tables with the
/// catalog's columns (in database [`DRY_RAW`]), the grid, the parameters and the as-of views.
pub(crate) fn empty_inputs(catalog: &Catalog, params_sql: &str) -> Result<Catalog> {
    let scratch = Catalog::scratch()?;
    let c = scratch.conn();
    let mut setup = format!("SET enable_external_access = false; ATTACH ':memory:' AS {DRY_RAW};");
    for (t, body) in canonical_columns(catalog)? {
        setup.push_str(&format!("CREATE TABLE {DRY_RAW}.main.{t} ({body});"));
    }
    setup.push_str(&format!(
        "CREATE TEMP TABLE t0_grid (entity_id VARCHAR, t0 TIMESTAMP);
         CREATE TEMP TABLE certify_params AS SELECT {params_sql};
         {asof}
         SET search_path = 'temp';",
        asof = asof_sql(&format!("{DRY_RAW}.main"))
    ));
    c.execute_batch(&setup).ctx(|| "prepare the sandbox's dry run".into())?;
    Ok(scratch)
}

/// Why DuckDB refused a statement, with what the sandbox offers when a name did not resolve.
fn sandbox_error(e: &duckdb::Error) -> String {
    let msg = e.to_string();
    if msg.contains("does not exist") || msg.contains("not found") {
        format!(
            "{msg}\n(a feature store sees only the as-of views {}, t0_grid, certify_params and the temp objects it defines)",
            INPUTS[2..].join(", ")
        )
    } else {
        msg
    }
}

/// The columns of `surface_<entry>`; exit 2 when it is missing or lacks its key.
pub fn surface_columns(c: &Connection, entry: &str) -> Result<Vec<String>> {
    let name = format!("surface_{entry}");
    let mut stmt = c
        .prepare(&format!("SELECT * FROM {name} LIMIT 0"))
        .map_err(|e| Error::config(&name, format!("store {entry} must define {name}: {e}")))?;
    stmt.execute([]).map_err(|e| Error::config(&name, format!("store {entry}: {e}")))?;
    let cols: Vec<String> = stmt.column_names();
    for key in ["entity_id", "t0"] {
        if !cols.iter().any(|c| c == key) {
            return Err(Error::config(&name, format!("store {entry}: {name} has no column {key}")));
        }
    }
    Ok(cols)
}

/// A connection of the catalog's database for one store: search path limited to the temp
/// schema, the grid and parameters as inputs, the as-of views over the catalog's tables.
/// External access is switched off for the catalog's database instance (for the rest of the
/// process's use of it: certify reads and writes no file through DuckDB afterwards).
pub struct Session {
    conn: Connection,
}

impl Session {
    /// `grid` is the qualified table holding the T0 grid, `raw` the schema of the canonical
    /// tables behind the as-of views (`"<catalog>".main`, or a bucket's population).
    pub fn open(catalog: &Catalog, grid: &str, params_sql: &str, raw: &str) -> Result<Session> {
        let conn = catalog.conn().try_clone().ctx(|| "open a sandbox connection".into())?;
        conn.execute_batch(&format!(
            "SET enable_external_access = false;
             CREATE TEMP VIEW t0_grid AS SELECT entity_id, t0 FROM {grid};
             CREATE TEMP TABLE certify_params AS SELECT {params_sql};
             {asof}
             SET search_path = 'temp';",
            asof = asof_sql(raw)
        ))
        .ctx(|| "prepare the sandbox".into())?;
        Ok(Session { conn })
    }

    /// Run the store's checked statements in order; a failure names the file and line.
    pub fn run(&self, stmts: &[(String, Statement)]) -> Result<()> {
        for (file, stmt) in stmts {
            self.conn.execute_batch(&stmt.sql).map_err(|e| {
                Error::config(
                    format!("{file}:{}", stmt.line),
                    format!("feature-store SQL failed: {}", sandbox_error(&e)),
                )
            })?;
        }
        Ok(())
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut p = Policy::of_build().unwrap();
        p.deny_database("catalog");
        p
    }

    fn check(sql: &str) -> std::result::Result<Defines, String> {
        let stmts = split(sql);
        assert_eq!(stmts.len(), 1, "{sql}");
        check_statement(&stmts[0], &policy())
    }

    #[test]
    fn statements_split_outside_strings_comments_and_quotes_with_their_lines() {
        let sql = "-- head; not a statement\nCREATE TEMP VIEW a AS SELECT ';' AS s;\n\n/* x;\n y */ CREATE TEMP VIEW \"b;c\" AS SELECT $$;$$, E'\\';' ;\nSELECT 1";
        let s = split(sql);
        assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), vec![2, 5, 6]);
        assert_eq!(s[0].sql, "CREATE TEMP VIEW a AS SELECT ';' AS s");
        assert!(s[1].toks.contains(&Tok::Word("b;c".into())));
    }

    #[test]
    fn only_temp_definitions_of_queries_are_accepted() {
        for ok in [
            "CREATE OR REPLACE TEMP VIEW x AS SELECT * FROM obs_asof",
            "create temporary table x as with a as (select 1) select * from a",
            "CREATE TEMP VIEW x (a, b) AS FROM t0_grid",
            "CREATE OR REPLACE TEMP MACRO m(x) AS x * 2",
            "CREATE TEMP TABLE IF NOT EXISTS x AS (SELECT 1)",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for bad in [
            "DROP TABLE heal_ledger",
            "UPDATE observations SET amount = 0",
            "INSERT INTO x SELECT 1",
            "ATTACH 'other.duckdb' AS o",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "CREATE TABLE x AS SELECT 1",
            "CREATE VIEW x AS SELECT 1",
            "CREATE TEMP TABLE x (a INT)",
            "CREATE TEMP VIEW main.x AS SELECT 1",
            "SET enable_external_access = true",
            "PRAGMA table_info('observations')",
            "CALL duckdb_tables()",
            "LOAD httpfs",
            "INSTALL httpfs",
            "EXPORT DATABASE '/tmp/x'",
            "DETACH catalog",
            "CREATE TEMP SEQUENCE s",
            "CREATE TEMP VIEW x AS PIVOT obs_asof ON amount",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("only `CREATE"), "{bad}: {e}");
        }
    }

    #[test]
    fn inputs_cannot_be_shadowed_and_outside_names_are_refused() {
        assert!(check("CREATE OR REPLACE TEMP VIEW t0_grid AS SELECT 1").unwrap_err().contains("input"));
        assert!(check("CREATE TEMP VIEW obs_asof AS SELECT 1").unwrap_err().contains("input"));
        for (bad, why) in [
            ("CREATE TEMP VIEW x AS SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
            ("CREATE TEMP VIEW x AS SELECT * FROM \"READ_PARQUET\"('x')", "read_parquet"),
            ("CREATE TEMP VIEW x AS SELECT * FROM glob('/etc/*')", "glob"),
            ("CREATE TEMP VIEW x AS SELECT * FROM duckdb_tables()", "duckdb_tables"),
            ("CREATE TEMP VIEW x AS SELECT * FROM duckdb_tables", "duckdb_tables"),
            ("CREATE TEMP VIEW x AS SELECT * FROM information_schema.tables", "information_schema"),
            ("CREATE TEMP VIEW x AS SELECT * FROM pg_catalog.pg_class", "pg_"),
            ("CREATE TEMP VIEW x AS SELECT * FROM sqlite_master", "sqlite_"),
            ("CREATE TEMP VIEW x AS SELECT current_setting('memory_limit')", "current_setting"),
            ("CREATE TEMP VIEW x AS SELECT getvariable('v')", "getvariable"),
            ("CREATE TEMP VIEW x AS SELECT * FROM query_table('observations')", "query_table"),
            ("CREATE TEMP VIEW x AS SELECT * FROM query('SELECT 1')", "query"),
            ("CREATE TEMP VIEW x AS SELECT * FROM catalog.main.observations", "catalog."),
            ("CREATE TEMP VIEW x AS SELECT * FROM system.main.x", "system."),
            ("CREATE TEMP VIEW x AS SELECT * FROM __t0_dry_raw.main.observations", "__t0"),
            ("CREATE TEMP VIEW x AS SELECT * FROM pragma_table_info('observations')", "pragma_"),
            ("CREATE TEMP VIEW x AS SELECT * FROM (SHOW TABLES)", "show"),
            ("CREATE TEMP VIEW x AS SELECT * FROM (DESCRIBE obs_asof)", "describe"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // Pure table functions and ordinary names that merely look alike are fine.
        for ok in [
            "CREATE TEMP VIEW x AS SELECT * FROM range(0, 3) r(i)",
            "CREATE TEMP VIEW x AS SELECT 'read_csv(1)' AS s, histogram(amount) AS h, obs.version_note FROM obs_asof obs",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn the_dry_run_refuses_names_outside_the_sandbox_naming_file_and_line() {
        let cat = Catalog::in_memory().unwrap();
        let run = |sql: &str| -> Result<()> {
            let closure = vec![("s.sql".to_string(), sql.to_string())];
            dry_run(&cat, "s", &statements(&closure, &policy())?, "CAST(6 AS BIGINT) AS sla_hours")
        };
        let ok = "CREATE TEMP VIEW a AS SELECT entity_id, t0, count(*) AS n FROM obs_asof GROUP BY ALL;
                  CREATE TEMP VIEW surface_s AS SELECT g.entity_id, g.t0, a.n, p.sla_hours FROM t0_grid g
                  LEFT JOIN a USING (entity_id, t0) CROSS JOIN certify_params p;";
        run(ok).unwrap();
        for (sql, at) in [
            (
                "CREATE TEMP VIEW a AS SELECT 1;\n\nCREATE TEMP VIEW surface_s AS\n SELECT entity_id, observed_at AS t0 FROM observations;",
                "s.sql:3",
            ),
            (
                "CREATE TEMP VIEW surface_s AS SELECT g.*, (SELECT count(*) FROM heal_ledger) AS n FROM t0_grid g",
                "s.sql:1",
            ),
            ("CREATE TEMP VIEW surface_s AS SELECT * FROM memory.main.entities", "s.sql:1"),
            ("CREATE TEMP VIEW surface_s AS SELECT * FROM '/etc/passwd'", "s.sql:1"),
        ] {
            let e = run(sql).unwrap_err();
            assert_eq!(e.exit_code(), t0_core::ExitCode::Usage, "{e}");
            assert!(e.to_string().contains(at), "{sql}: {e}");
        }
        let e = run("CREATE TEMP VIEW a AS SELECT 1").unwrap_err();
        assert!(e.to_string().contains("must define surface_s"), "{e}");
        let e = run("CREATE TEMP VIEW surface_s AS SELECT 1 AS entity_id").unwrap_err();
        assert!(e.to_string().contains("no column t0"), "{e}");
    }

    #[test]
    fn a_session_reads_neither_files_nor_the_catalog_by_name() {
        let cat = Catalog::in_memory().unwrap();
        cat.conn()
            .execute_batch(
                "ATTACH ':memory:' AS t0work; CREATE TABLE t0work.main.grid (entity_id VARCHAR, t0 TIMESTAMP);",
            )
            .unwrap();
        let raw = crate::population::Raw::catalog(&cat).unwrap();
        let s = Session::open(&cat, "t0work.main.grid", "1 AS x", raw.qualifier()).unwrap();
        let c = s.conn();
        let e = c.execute_batch("CREATE TEMP VIEW f AS SELECT * FROM read_csv('/etc/passwd')").unwrap_err();
        assert!(e.to_string().contains("Permission"), "{e}");
        assert!(c.execute_batch("CREATE TEMP VIEW f AS SELECT * FROM observations").is_err());
        assert!(c.execute_batch("COPY (SELECT 1) TO '/tmp/t0clip-sandbox-copy.csv'").is_err());
        c.execute_batch("CREATE TEMP VIEW f AS SELECT * FROM obs_asof").unwrap();
    }
}
