//! One feature store from SQL to surface: static checks and the dry run (`prepare`), the run
//! in its sandbox, and the checks that need the built surface (grid, SLA, dataset baselines).

use duckdb::arrow::array::RecordBatch;
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::{Connection, params};
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Error, Result};

use crate::sandbox::{self, Policy, Session, Statement};
use crate::{CertifyConfig, Closure, DayHash, StoreConfig, sqlcheck};

/// The materialised surface of a store inside its session.
const SURFACE: &str = "__t0_surface";
/// The store's rows before their column types are made ones a surface holds.
const RAW_SURFACE: &str = "__t0_surface_raw";

/// A store whose SQL passed the static checks and the dry run.
pub struct Prepared {
    pub store: StoreConfig,
    pub files: Closure,
    pub view_def_hash: String,
    /// The view definition with everything else that decides its rows (grid, parameters,
    /// SLA): two surfaces are comparable row by row only when this is equal.
    pub definition_hash: String,
    pub stmts: Vec<(String, Statement)>,
    /// Reasons it cannot be certified found before running (clock or label reads).
    pub notes: Vec<String>,
    /// Which canonical columns each surface column reads (none when it does not run).
    pub lineage: Option<crate::columns::Lineage>,
}

/// The parameter row as a SELECT list.
pub fn params_sql(cfg: &CertifyConfig) -> String {
    let mut params: Vec<String> = cfg.params.iter().map(|(k, v)| format!("{} AS {k}", v.sql())).collect();
    params.push(format!("CAST({} AS BIGINT) AS sla_hours", cfg.sla.hours));
    params.join(", ")
}

/// Check every store before anything real runs: statement forms and names (exit 2 naming
/// file and line), clock and label reads (a FAILED store), then the dry run.
pub fn prepare(catalog: &Catalog, cfg: &CertifyConfig, closures: &[(StoreConfig, Closure)]) -> Result<Vec<Prepared>> {
    let mut policy = Policy::of_build()?;
    policy.deny_database(&catalog.database_name()?);
    policy.deny_database("t0work");
    let params = params_sql(cfg);
    let setup = serde_json::to_string(&(&cfg.t0, &cfg.params, cfg.sla.hours)).expect("plain config");
    let mut out = Vec::new();
    for (store, files) in closures {
        let stmts = sandbox::statements(files, &policy)?;
        let notes: Vec<String> =
            files.iter().flat_map(|(name, sql)| sqlcheck::violations(name, &sqlcheck::normalise(sql))).collect();
        let mut lineage = None;
        if notes.is_empty() {
            sandbox::dry_run(catalog, &store.entrypoint, &stmts, &params)?;
            lineage = Some(crate::columns::lineage(catalog, &store.entrypoint, &stmts, &params));
        }
        let view_def_hash = crate::view_def_hash(files);
        let definition_hash = t0_core::blake3_hex(format!("{view_def_hash}|{setup}").as_bytes());
        out.push(Prepared {
            store: store.clone(),
            files: files.clone(),
            view_def_hash,
            definition_hash,
            stmts,
            notes,
            lineage,
        });
    }
    Ok(out)
}

/// A store's surface, built in its sandbox, with its session (for the checks that read it).
pub struct Built {
    pub session: Session,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The surface is not exactly one row per grid (entity, T0).
    pub grid_notes: Vec<String>,
    /// The columns whose type was made one a surface holds (informational).
    pub coerced: Vec<String>,
}

/// Run a prepared store on the grid in [`crate::grid::GRID_TABLE`] and export its surface,
/// ordered by (entity_id, t0).
pub fn build(catalog: &Catalog, p: &Prepared, params: &str, raw: &crate::population::Raw) -> Result<Built> {
    let entry = &p.store.entrypoint;
    let session = Session::open(catalog, crate::grid::GRID_TABLE, params, raw.qualifier())?;
    session.run(&p.stmts)?;
    let c = session.conn();
    // The dry run proved `surface_<entry>` exists with its key. Materialised while the search path is still the sandbox's; trusted checks follow.
    c.execute_batch(&format!(
        "CREATE TEMP TABLE {RAW_SURFACE} AS SELECT * FROM surface_{entry} ORDER BY entity_id, t0; RESET search_path;"
    ))
    .map_err(|e| Error::config(format!("surface_{entry}"), format!("feature-store SQL failed: {e}")))?;
    let (replace, coerced) = coercions(c, entry)?;
    c.execute_batch(&format!(
        "CREATE TEMP TABLE {SURFACE} AS SELECT *{replace} FROM {RAW_SURFACE} ORDER BY entity_id, t0; DROP TABLE {RAW_SURFACE};"
    ))
    .map_err(|e| Error::config(format!("surface_{entry}"), format!("storing the surface's columns: {e}")))?;
    let grid_notes = grid_check(c, entry)?;
    let (schema, batches) = t0_catalog::query_arrow(c, &format!("SELECT * FROM {SURFACE}"), &[])?;
    Ok(Built { session, schema, batches, grid_notes, coerced })
}

/// The column types a surface holds as they are (and lists of them).
const HELD: &[&str] = &[
    "BOOLEAN",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "VARCHAR",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP_S",
    "TIMESTAMP_MS",
    "TIMESTAMP_NS",
    "BLOB",
];

/// The casts that make every column of the raw surface one a surface holds: wide integers
/// and decimals (DuckDB's `sum` of an integer is a HUGEINT, of a decimal a DECIMAL) become
/// BIGINT when every value fits, else DOUBLE; enums and UUIDs text. Returns the `REPLACE`
/// clause and a note per cast; a type no surface holds (an interval, a struct, a map …) is a
/// configuration error naming the store, the column and the type (exit 2).
fn coercions(c: &Connection, entry: &str) -> Result<(String, Vec<String>)> {
    let types: Vec<(String, String)> = {
        let mut stmt = c.prepare(&format!("DESCRIBE {RAW_SURFACE}")).ctx(|| format!("types of surface_{entry}"))?;
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<std::result::Result<_, _>>())
            .ctx(|| format!("types of surface_{entry}"))?
    };
    let mut casts = Vec::new();
    let mut notes = Vec::new();
    for (col, ty) in &types {
        let base = ty.trim_end_matches("[]");
        let q = format!("\"{}\"", col.replace('"', "\"\""));
        let to = if HELD.contains(&base) {
            continue;
        } else if base == "HUGEINT" || base == "UHUGEINT" || base.starts_with("DECIMAL") {
            let fits: bool = ty == base
                && c.query_row(
                    &format!("SELECT coalesce(bool_and(abs(CAST({q} AS DOUBLE)) < 9.2e18), true) FROM {RAW_SURFACE}"),
                    [],
                    |r| r.get(0),
                )
                .ctx(|| format!("range of surface_{entry}.{col}"))?;
            let integral = !base.starts_with("DECIMAL") || base.ends_with(",0)");
            if integral && fits { "BIGINT" } else { "DOUBLE" }
        } else if (base.starts_with("ENUM") || base == "UUID") && ty == base {
            "VARCHAR"
        } else {
            return Err(Error::config(
                format!("surface_{entry}"),
                format!(
                    "store {entry}: column {col:?} has type {ty}, which a surface cannot hold (numbers, booleans, text, dates, timestamps, blobs and lists of them): cast it in the store"
                ),
            ));
        };
        let to = if ty.ends_with("[]") { format!("{to}[]") } else { to.to_string() };
        casts.push(format!("CAST({q} AS {to}) AS {q}"));
        notes.push(format!("column {col} is {ty} in the store's SQL, stored as {to}"));
    }
    let replace = if casts.is_empty() { String::new() } else { format!(" REPLACE ({})", casts.join(", ")) };
    Ok((replace, notes))
}

/// A surface holds exactly one row per grid (entity, T0): store SQL decides features, never
/// which decisions exist.
fn grid_check(c: &Connection, entry: &str) -> Result<Vec<String>> {
    let (extra, missing, dup): (i64, i64, i64) = c
        .query_row(
            &format!(
                "SELECT (SELECT count(*) FROM (SELECT entity_id, t0 FROM {SURFACE} EXCEPT SELECT entity_id, t0 FROM temp.t0_grid)),
                        (SELECT count(*) FROM (SELECT entity_id, t0 FROM temp.t0_grid EXCEPT SELECT entity_id, t0 FROM {SURFACE})),
                        (SELECT count(*) - count(DISTINCT (entity_id, t0)) FROM {SURFACE})"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ctx(|| format!("grid check of surface_{entry}"))?;
    let mut notes = Vec::new();
    if extra + missing + dup > 0 {
        notes.push(format!(
            "surface_{entry} is not one row per grid (entity, T0): {extra} keys not on the grid, {missing} grid keys missing, {dup} duplicate rows"
        ));
    }
    Ok(notes)
}

/// Gated columns of `entry` that are non-NULL although no version of their artifact visible
/// at T0 arrived within the SLA. Checked against the canonical table, not the store's views.
pub fn sla_violations(c: &Connection, cfg: &CertifyConfig, entry: &str) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for g in cfg.sla.gated.iter().filter(|g| g.store == entry) {
        let n: i64 = c
            .query_row(
                &format!(
                    "SELECT count(*) FROM {SURFACE} s WHERE s.\"{col}\" IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM artifacts a WHERE a.entity_id = s.entity_id AND a.kind = ? AND NOT a.deleted
                          AND a.observed_at <= s.t0 AND a.available_at <= s.t0
                          AND a.available_at <= a.observed_at + to_hours(CAST(? AS BIGINT)))",
                    col = g.column
                ),
                params![g.artifact, cfg.sla.hours],
                |r| r.get(0),
            )
            .map_err(|e| Error::config(format!("surface_{entry}"), format!("SLA check of {}: {e}", g.column)))?;
        if n > 0 {
            notes.push(format!(
                "SLA violation: {entry}.{} is non-NULL in {n} rows whose {} artifact was not available within {} h by T0",
                g.column, g.artifact, cfg.sla.hours
            ));
        }
    }
    Ok(notes)
}

/// Dataset hashes of the surface's rows on each baseline T0 day, compared with the stored
/// baselines. Returns (day, hash, rows) for every day and the drift notes.
pub fn dataset_baselines(
    c: &Connection,
    cfg: &CertifyConfig,
    entry: &str,
    rebaseline: bool,
) -> Result<(Vec<DayHash>, Vec<String>)> {
    let mut days = cfg.baseline_days.clone();
    if days.is_empty() {
        days = t0_catalog::column(
            c,
            "SELECT DISTINCT CAST(t0_day AS VARCHAR) FROM certify_baselines WHERE entrypoint = ? ORDER BY 1",
            &[&entry],
        )?;
    }
    if days.is_empty() || rebaseline && cfg.baseline_days.is_empty() {
        days = t0_catalog::column(
            c,
            &format!(
                "SELECT DISTINCT CAST(CAST(t0 AS DATE) AS VARCHAR) FROM {SURFACE} ORDER BY 1 LIMIT {}",
                cfg.baseline_days_default
            ),
            &[],
        )?;
    }
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for day in days {
        let (hash, rows) = t0_catalog::content_hash(
            c,
            &format!("SELECT * FROM {SURFACE} WHERE CAST(t0 AS DATE) = CAST(? AS DATE)"),
            &[&day],
        )?;
        let previous: Option<String> = c
            .query_row(
                "SELECT dataset_hash FROM certify_baselines WHERE entrypoint = ? AND t0_day = CAST(? AS DATE)
                 ORDER BY recorded_at DESC, run_id DESC LIMIT 1",
                params![entry, day],
                |r| r.get(0),
            )
            .ok();
        if let Some(prev) = previous.filter(|p| *p != hash)
            && !rebaseline
        {
            notes.push(format!("dataset drift on T0 day {day}: baseline {prev}, now {hash} ({rows} rows)"));
        }
        out.push((day, hash, rows));
    }
    Ok((out, notes))
}
