//! The measure columns of `observations` follow the project's declaration.
//!
//! A fresh root takes the project's measures (the early migrations' clip columns are dropped
//! while the table is empty). A root with data keeps what it has: a measure the project adds
//! later is an explicit schema change (`acquire --evolve-schema`), recorded in
//! `schema_changes`; a column the project no longer declares, or one whose type changed, is
//! refused — t0-clip never drops data. Every stage checks the root against its project.

use duckdb::params;
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Error, Result};

use crate::Project;

/// Columns of `observations` that are roles, never measures.
const ROLE_COLUMNS: &[&str] = &["entity_id", "observed_at", "available_at", "version", "batch_id", "deleted"];

/// What `ensure` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchemaChange {
    pub change: String,
    pub added: Vec<String>,
}

/// Measure columns the table has now, in table order: (name, DuckDB type).
fn measure_columns(catalog: &Catalog) -> Result<Vec<(String, String)>> {
    let mut stmt = catalog
        .conn()
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_name = 'observations' ORDER BY ordinal_position",
        )
        .ctx(|| "read schema of observations".into())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ctx(|| "read schema of observations".into())?;
    let all: Vec<(String, String)> = rows.collect::<std::result::Result<_, _>>().ctx(|| "schema".into())?;
    Ok(all.into_iter().filter(|(c, _)| !ROLE_COLUMNS.contains(&c.as_str())).collect())
}

fn recorded(catalog: &Catalog) -> Result<i64> {
    catalog.conn().query_row("SELECT count(*) FROM schema_changes", [], |r| r.get(0)).ctx(|| "schema_changes".into())
}

fn rows(catalog: &Catalog) -> Result<i64> {
    catalog.conn().query_row("SELECT count(*) FROM observations", [], |r| r.get(0)).ctx(|| "observations".into())
}

/// Differences between the root and the project: (missing declared measures, undeclared
/// columns, type mismatches as text).
fn diff(project: &Project, have: &[(String, String)]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let missing =
        project.measures().iter().filter(|m| !have.iter().any(|(c, _)| *c == m.name)).map(|m| m.name.clone()).collect();
    let extra = have.iter().filter(|(c, _)| project.measure(c).is_none()).map(|(c, t)| format!("{c} {t}")).collect();
    let mismatched = have
        .iter()
        .filter_map(|(c, t)| {
            let m = project.measure(c)?;
            let want = m.ty.col_type().sql();
            (want != t).then(|| format!("{c} is {t} in the root, the project declares {:?} ({want})", m.ty))
        })
        .collect();
    (missing, extra, mismatched)
}

fn measures_json(project: &Project) -> String {
    serde_json::to_string(project.measures()).expect("plain struct")
}

/// Refuse a root whose measure columns differ from the project's (every stage but acquire).
pub fn check(catalog: &Catalog, project: &Project) -> Result<()> {
    let have = measure_columns(catalog)?;
    // A root nothing was ingested into yet takes the project's schema at its first acquire.
    if recorded(catalog)? == 0 && rows(catalog)? == 0 {
        return Ok(());
    }
    let (missing, extra, mismatched) = diff(project, &have);
    if missing.is_empty() && extra.is_empty() && mismatched.is_empty() {
        return Ok(());
    }
    Err(mismatch(project, &missing, &extra, &mismatched))
}

fn mismatch(project: &Project, missing: &[String], extra: &[String], mismatched: &[String]) -> Error {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "declares measure(s) {} that the root lacks (adding a measure to a root with data is a recorded schema change: `acquire --evolve-schema`)",
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "does not declare the root's column(s) {} (a root built with another project? t0-clip never drops a column)",
            extra.join(", ")
        ));
    }
    parts.extend(mismatched.iter().cloned());
    Error::config(project.display(crate::PROJECT_FILE), format!("project {:?}: {}", project.name(), parts.join("; ")))
}

/// Bring `observations` to the project's measures (acquire). `evolve` allows adding declared
/// measures to a root that already holds data.
pub fn ensure(catalog: &Catalog, project: &Project, evolve: bool, now: &str) -> Result<Option<SchemaChange>> {
    let have = measure_columns(catalog)?;
    let (missing, extra, mismatched) = diff(project, &have);
    let fresh = recorded(catalog)? == 0 && rows(catalog)? == 0;
    let record = |c: &duckdb::Connection, change: &str| -> Result<()> {
        let seq: i64 = c
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM schema_changes", [], |r| r.get(0))
            .ctx(|| "schema_changes".into())?;
        c.execute(
            "INSERT INTO schema_changes VALUES (?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![seq, project.name(), project.hash, change, measures_json(project), now.trim_end_matches('Z')],
        )
        .ctx(|| "record schema change".into())?;
        Ok(())
    };
    if fresh {
        // An empty table: drop whatever columns the migrations made, add the declaration.
        catalog.transaction(|c| {
            for (col, _) in &have {
                c.execute_batch(&format!("ALTER TABLE observations DROP COLUMN \"{col}\""))
                    .ctx(|| format!("drop column {col}"))?;
            }
            for m in project.measures() {
                c.execute_batch(&format!(
                    "ALTER TABLE observations ADD COLUMN \"{}\" {}",
                    m.name,
                    m.ty.col_type().sql()
                ))
                .ctx(|| format!("add measure {}", m.name))?;
            }
            record(c, "declare")
        })?;
        let added = project.measures().iter().map(|m| m.name.clone()).collect();
        return Ok(Some(SchemaChange { change: "declare".into(), added }));
    }
    if !extra.is_empty() || !mismatched.is_empty() || (!missing.is_empty() && !evolve) {
        return Err(mismatch(project, &missing, &extra, &mismatched));
    }
    if recorded(catalog)? == 0 {
        // A root made before projects existed, whose columns are the project's: adopt it.
        catalog.transaction(|c| record(c, "adopt"))?;
    }
    if missing.is_empty() {
        return Ok(None);
    }
    let change = format!("add {}", missing.join(", "));
    catalog.transaction(|c| {
        for name in &missing {
            let m = project.measure(name).expect("declared");
            c.execute_batch(&format!("ALTER TABLE observations ADD COLUMN \"{}\" {}", m.name, m.ty.col_type().sql()))
                .ctx(|| format!("add measure {}", m.name))?;
        }
        record(c, &change)
    })?;
    Ok(Some(SchemaChange { change, added: missing }))
}

/// The schema changes recorded after entry `after` merged into one (None if there are none),
/// and the last entry's number: what a run that reports changes since `after` reports.
pub fn since(catalog: &Catalog, after: i64) -> Result<(Option<SchemaChange>, i64)> {
    let ctx = || "schema_changes".to_string();
    let mut stmt = catalog
        .conn()
        .prepare("SELECT seq, change, measures FROM schema_changes WHERE seq > ? ORDER BY seq")
        .ctx(ctx)?;
    let rows = stmt
        .query_map(params![after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .ctx(ctx)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(ctx)?;
    let last: i64 =
        catalog.conn().query_row("SELECT coalesce(max(seq), 0) FROM schema_changes", [], |r| r.get(0)).ctx(ctx)?;
    let mut merged: Option<SchemaChange> = None;
    for (_, change, measures) in rows {
        // A root from before projects, adopted as it was: nothing about its data changed.
        if change == "adopt" {
            continue;
        }
        let added: Vec<String> = match change.strip_prefix("add ") {
            Some(list) => list.split(", ").map(str::to_string).collect(),
            None if change == "declare" => serde_json::from_str::<Vec<serde_json::Value>>(&measures)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.get("name").and_then(serde_json::Value::as_str).map(str::to_string))
                .collect(),
            None => Vec::new(),
        };
        merged = Some(match merged {
            None => SchemaChange { change, added },
            Some(m) => SchemaChange {
                change: format!("{}; {change}", m.change),
                added: m.added.into_iter().chain(added).collect(),
            },
        });
    }
    Ok((merged, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(measures: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("project.yaml"), format!("name: p\nmeasures:\n{measures}")).unwrap();
        // The schema needs only the parsed declaration: the directory may go.
        Project::load(Some(dir.path())).unwrap()
    }

    fn columns(cat: &Catalog) -> Vec<String> {
        measure_columns(cat).unwrap().into_iter().map(|(c, t)| format!("{c} {t}")).collect()
    }

    const NOW: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn a_root_follows_its_project_and_changes_only_when_asked() {
        let cat = Catalog::in_memory().unwrap();
        let a = project("  - {name: n, type: count}\n  - {name: ok, type: boolean}\n");
        assert_eq!(ensure(&cat, &a, false, NOW).unwrap().unwrap().change, "declare");
        assert_eq!(columns(&cat), ["n BIGINT", "ok BOOLEAN"]);
        check(&cat, &a).unwrap();
        cat.conn()
            .execute_batch("INSERT INTO observations (entity_id, observed_at, available_at, version, batch_id, n) VALUES ('e', TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 1, 'b', 3)")
            .unwrap();
        assert_eq!(ensure(&cat, &a, false, NOW).unwrap(), None);
        // A measure added later: refused without --evolve-schema, recorded with it.
        let b = project("  - {name: n, type: count}\n  - {name: ok, type: boolean}\n  - {name: label, type: text}\n");
        let e = ensure(&cat, &b, false, NOW).unwrap_err().to_string();
        assert!(e.contains("label") && e.contains("--evolve-schema"), "{e}");
        assert!(check(&cat, &b).is_err());
        assert_eq!(ensure(&cat, &b, true, NOW).unwrap().unwrap().added, ["label"]);
        check(&cat, &b).unwrap();
        // A project that drops or retypes a column is refused: nothing is ever dropped.
        let e = check(&cat, &a).unwrap_err().to_string();
        assert!(e.contains("label VARCHAR"), "{e}");
        let c = project("  - {name: n, type: float}\n  - {name: ok, type: boolean}\n  - {name: label, type: text}\n");
        let e = ensure(&cat, &c, true, NOW).unwrap_err().to_string();
        assert!(e.contains("n is BIGINT"), "{e}");
        let changes: i64 = cat.conn().query_row("SELECT count(*) FROM schema_changes", [], |r| r.get(0)).unwrap();
        assert_eq!(changes, 2);
    }
}
