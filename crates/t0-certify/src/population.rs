//! Where a certify run reads the canonical tables (issue 31). A whole root reads its catalog.
//! A bucket (`--bucket k/N`) keeps only its entities' facts, but certify needs every entity's:
//! cohort priors aggregate over all of them, an interaction *into* one of its entities is kept
//! by its source's bucket, and the grid's bound is the latest availability of all
//! observations. So a bucket reads the population its audit's commit exported
//! (`t0_bucket::POPULATION_DIR`), each file checked against the commit first, and keeps the
//! grid to its own entities: its surfaces are one root's rows of those entities.

use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Bucket, Damage, Error, Result, Root, Stage};
use t0_manifest::Loaded;

/// The database, attached in memory, holding a bucket's population views. Its name starts
/// with `__t0`, which a store may not name (see `sandbox`).
const POPULATION_DB: &str = "__t0_population";

/// The canonical tables a run reads: `qualifier.<table>`, and the entities whose rows it
/// certifies.
#[derive(Debug, Clone)]
pub struct Raw {
    qualifier: String,
    bucket: Bucket,
    /// The audit commit whose population a bucket reads.
    commit: Option<String>,
}

impl Raw {
    /// The root's own catalog.
    pub fn catalog(catalog: &Catalog) -> Result<Raw> {
        let db = catalog.database_name()?;
        Ok(Raw { qualifier: format!("\"{}\".main", db.replace('"', "\"\"")), bucket: Bucket::WHOLE, commit: None })
    }

    /// `schema.table` prefix for the canonical tables.
    pub fn qualifier(&self) -> &str {
        &self.qualifier
    }

    /// The audit commit whose population a bucket reads (`None` on a whole root): a bucket's
    /// run on another population is another run, though its own data be the same.
    pub fn commit(&self) -> Option<&str> {
        self.commit.as_deref()
    }

    /// A SQL condition on an entity key column: true for the entities this run certifies.
    pub fn keeps(&self, column: &str) -> String {
        self.bucket.sql(column)
    }
}

/// The canonical tables run on `root` reads after consuming `audit`: its catalog's, or for a
/// bucket the population the audit's commit exported, each file checked against the commit
/// (exit 3 naming it), as views that stay readable once the sandbox shuts external access.
pub fn attach(root: &Root, catalog: &Catalog, audit: &Loaded) -> Result<Raw> {
    if root.bucket().is_whole() {
        return Raw::catalog(catalog);
    }
    let commit = t0_bucket::committed(root, Stage::Audit, &audit.manifest.run_id)?;
    if commit.population.is_empty() {
        return Err(Error::Refused(format!(
            "audit commit {} did not let the loop go on (gate {}): heal, audit and commit again",
            commit.commit_id,
            commit.gate.map_or("none", |g| g.as_str())
        )));
    }
    let base = root.base();
    let mut files: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for f in &commit.population {
        let path = base.join(&f.path);
        let damaged = |damage, why: String| Error::Integrity {
            damage,
            message: format!("{} (the population of audit commit {}) {why}", f.path, commit.commit_id),
        };
        let actual =
            t0_core::fsio::file_hash(&path).map_err(|e| damaged(Damage::Missing, format!("is unreadable: {e}")))?;
        if actual != f.file_hash {
            return Err(damaged(
                Damage::Changed,
                format!("content hash mismatch: expected {}, actual {}", short(&f.file_hash), short(&actual)),
            ));
        }
        let path = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
        files.entry(f.table.as_str()).or_default().push(path.display().to_string());
    }
    let mut sql = format!("ATTACH ':memory:' AS {POPULATION_DB};\n");
    for t in t0_project::vocab::CANONICAL {
        let list = files.get(t).ok_or_else(|| {
            Error::Refused(format!("audit commit {} exported no {t}: commit the audit again", commit.commit_id))
        })?;
        let list = list.iter().map(|p| t0_catalog::quote_literal(p)).collect::<Vec<_>>().join(", ");
        sql.push_str(&format!("CREATE VIEW {POPULATION_DB}.main.{t} AS SELECT * FROM read_parquet([{list}]);\n"));
    }
    // The sandbox shuts external access for the database instance; these files stay readable.
    let allowed = files.values().flatten().map(|p| t0_catalog::quote_literal(p)).collect::<Vec<_>>().join(", ");
    sql.push_str(&format!("SET allowed_paths = [{allowed}];"));
    catalog.conn().execute_batch(&sql).ctx(|| "attach the committed population".into())?;
    Ok(Raw { qualifier: format!("{POPULATION_DB}.main"), bucket: root.bucket(), commit: Some(commit.commit_id) })
}

fn short(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}
