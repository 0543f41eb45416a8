//! `certify attack`: a red team any user can run on their own stores. It copies a root's
//! catalog, builds every store of the project (the baseline), injects versions that were
//! observed before existing T0s but become available only after the latest one — new facts,
//! revisions and tombstones of observations, entity versions with earlier creation times and
//! other parents, new entities, end and other events, artifact revisions, interactions — builds
//! again with the same pinned clock, and counts per store the (entity, T0) rows of T0s before
//! the injection that changed, appeared or disappeared. A T0-correct store scores zero.
//!
//! Everything is driven by the project's declarations and the catalog's columns (measures of
//! any type are perturbed by type), never by one project's column names. The root itself is
//! never written.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use t0_catalog::{Catalog, RootLock, quote_literal};
use t0_core::error::Context;
use t0_core::{Error, Progress, Result, Root};

use crate::replay::{self, Replay};
use crate::{CertifyArgs, LoadedConfig, grid, store};

pub struct AttackArgs {
    pub certify: CertifyArgs,
    /// Where the copy lives (default: a new directory under the system's temp dir).
    pub work: Option<PathBuf>,
    /// Keep the copy and its surfaces afterwards.
    pub keep: bool,
    /// Entities attacked (spread over the grid by a hash of their id).
    pub sample: u64,
    /// The clock both builds use; default: the latest certify run's, else the data's latest
    /// availability.
    pub now: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackReport {
    /// The clock both builds used.
    pub clock: String,
    /// Every injected version is available from this moment on (after the latest T0).
    pub available_at: String,
    /// Rows injected per canonical table.
    pub injected: BTreeMap<String, u64>,
    /// Entities attacked.
    pub entities: u64,
    pub stores: Vec<Replay>,
    /// Stores with any changed, appeared or disappeared row.
    pub leaking: Vec<String>,
    /// Where the copy is, when kept.
    pub work: Option<String>,
}

impl AttackReport {
    pub fn leaks(&self) -> bool {
        !self.leaking.is_empty()
    }
}

/// Run the attack on `root` (read only: its catalog is copied).
pub fn run(root: &Root, args: &AttackArgs, progress: &dyn Progress) -> Result<AttackReport> {
    let LoadedConfig { cfg, closures, .. } = crate::load_config(&args.certify)?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("t0clip-attack-{}-{}", std::process::id(), nanos())));
    if work.exists() && std::fs::read_dir(&work).map_err(|e| Error::io(&work, e))?.next().is_some() {
        return Err(Error::Usage(format!("--work {}: not empty", work.display())));
    }
    let copy = Root::new(&work);
    copy_catalog(root, &copy)?;
    let result = attack(root, &copy, args, &cfg, &closures, progress);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    let mut report = result?;
    report.work = args.keep.then(|| work.display().to_string());
    Ok(report)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Copy the catalog (and its write-ahead log) under the root's lock, so no writer is midway.
fn copy_catalog(root: &Root, copy: &Root) -> Result<()> {
    let _lock = RootLock::acquire(root)?;
    let from = root.catalog();
    if !from.exists() {
        return Err(Error::Refused(format!("no catalog at {}: run `acquire` first", from.display())));
    }
    std::fs::create_dir_all(copy.path()).map_err(|e| Error::io(copy.path(), e))?;
    let to = copy.catalog();
    std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
    let wal = PathBuf::from(format!("{}.wal", from.display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}.wal", to.display())).map_err(|e| Error::io(&wal, e))?;
    }
    Ok(())
}

fn attack(
    root: &Root,
    copy: &Root,
    args: &AttackArgs,
    cfg: &crate::CertifyConfig,
    closures: &[(crate::StoreConfig, crate::Closure)],
    progress: &dyn Progress,
) -> Result<AttackReport> {
    let cat = Catalog::open(copy)?;
    t0_project::schema::check(&cat, &args.certify.project)?;
    let prepared = store::prepare(&cat, cfg, closures)?;
    let clock = match &args.now {
        Some(n) => crate::ts(n),
        None => default_clock(root, &cat)?,
    };
    progress.phase("attack: baseline", Some(prepared.len() as u64));
    // Decided once, before the injection: the attack measures features, not the grid's bound.
    let raw = crate::population::Raw::catalog(&cat)?;
    let watermark = crate::grid_watermark(&cat, &cfg.t0, &args.certify.project, &raw)?;
    let through = grid::build(&cat, &cfg.t0, &clock, watermark.as_deref(), &raw)?
        .ok_or_else(|| Error::NothingToDo("the catalog has no observations: nothing to attack".into()))?;
    let params = store::params_sql(cfg);
    let surfaces = |dir: &str| -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for p in prepared.iter().filter(|p| p.notes.is_empty()) {
            let built = store::build(&cat, p, &params, &raw)?;
            let path = copy.path().join(dir).join(format!("{}.parquet", p.store.entrypoint));
            t0_table::write_parquet(&path, built.schema.clone(), &built.batches)?;
            out.push((p.store.entrypoint.clone(), path));
            progress.advance(1);
        }
        Ok(out)
    };
    let before = surfaces("before")?;
    let (available_at, entities) = sample(&cat, args.sample)?;
    if entities == 0 {
        return Err(Error::NothingToDo("the grid is empty: nothing to attack".into()));
    }
    let injected = cat.transaction(|c| inject(c, cfg, &available_at))?;
    grid::build(&cat, &cfg.t0, &clock, watermark.as_deref(), &raw)?;
    progress.phase("attack: after the injection", Some(prepared.len() as u64));
    let after = surfaces("after")?;
    progress.finish();
    let window = format!("{} AND t0 < TIMESTAMP {}", replay::window(&through, None), quote_literal(&available_at));
    let mut stores = Vec::new();
    for ((entry, b), (_, a)) in before.iter().zip(&after) {
        let mut r = replay::compare("baseline", b, a, &window)?;
        r.against = entry.clone();
        stores.push(r);
    }
    let leaking = stores.iter().filter(|r| r.differs()).map(|r| r.against.clone()).collect();
    Ok(AttackReport { clock, available_at, injected, entities, stores, leaking, work: None })
}

/// The latest certify run's clock, else the data's latest availability.
fn default_clock(root: &Root, cat: &Catalog) -> Result<String> {
    if t0_manifest::latest_run_id(cat, crate::STAGE)?.is_some() {
        let m = t0_manifest::load(root, cat, crate::STAGE, None)?;
        return Ok(crate::ts(&m.manifest.finished_at));
    }
    cat.conn()
        .query_row("SELECT CAST(max(available_at) AS VARCHAR) FROM observations", [], |r| r.get::<_, Option<String>>(0))
        .ctx(|| "latest availability".into())?
        .ok_or_else(|| Error::NothingToDo("the catalog has no observations: nothing to attack".into()))
}

/// Pick the attacked entities (`atk`: entity, its first T0, a partner entity) and the moment
/// every injected version becomes available: one minute after the latest T0.
fn sample(cat: &Catalog, n: u64) -> Result<(String, u64)> {
    cat.conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE atk AS
             SELECT entity_id, t0 AS t_first, row_number() OVER (ORDER BY md5(entity_id)) AS i,
                    coalesce(lead(entity_id) OVER (ORDER BY md5(entity_id)), entity_id) AS partner
             FROM (SELECT entity_id, min(t0) AS t0 FROM {g} GROUP BY entity_id)
             QUALIFY row_number() OVER (ORDER BY md5(entity_id)) <= {n};",
            g = grid::GRID_TABLE
        ))
        .ctx(|| "attack sample".into())?;
    cat.conn()
        .query_row(
            &format!(
                "SELECT CAST(date_trunc('second', max(t0)) + INTERVAL 1 MINUTE AS VARCHAR), (SELECT count(*) FROM atk) FROM {}",
                grid::GRID_TABLE
            ),
            [],
            |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get::<_, i64>(1)? as u64)),
        )
        .ctx(|| "attack time".into())
}

/// A different value of the same type as `col` of row `s` (NULL becomes a value too).
fn perturb(col: &str, ty: &str) -> String {
    let c = format!("s.\"{col}\"");
    let ty = ty.to_uppercase();
    if ty == "BOOLEAN" {
        format!("NOT coalesce({c}, false)")
    } else if ty.contains("INT") {
        format!("CAST(abs(coalesce({c}, 0)) * 10 + 7 AS {ty})")
    } else if ty == "DOUBLE" || ty == "FLOAT" || ty == "REAL" || ty.starts_with("DECIMAL") {
        format!("CAST(coalesce({c}, 0) * 10 + 7.5 AS {ty})")
    } else if ty.starts_with("TIMESTAMP") || ty == "DATE" {
        format!("{c} - INTERVAL 1 DAY")
    } else {
        format!("'attack:' || coalesce(CAST({c} AS VARCHAR), '')")
    }
}

/// INSERT every column of `table` from the rows of `from` (aliased `s`): `set` gives some
/// columns' values, the rest are perturbed; bookkeeping columns are the attack's.
fn insert(c: &duckdb::Connection, table: &str, from: &str, set: &[(&str, String)], at: &str) -> Result<u64> {
    let cols = t0_catalog::table_columns(c, table)?;
    let mut select = Vec::new();
    for (col, ty) in &cols {
        let v = match (set.iter().find(|(k, _)| k == col), col.as_str()) {
            (Some((_, v)), _) => v.clone(),
            (None, "available_at") => format!("TIMESTAMP {}", quote_literal(at)),
            (None, "batch_id") => "'attack'".into(),
            (None, "deleted") => "false".into(),
            (None, "version") => "1".into(),
            (None, _) => perturb(col, ty),
        };
        select.push(format!("{v} AS \"{col}\""));
    }
    let n = c
        .execute(&format!("INSERT INTO {table} BY NAME SELECT {} FROM {from}", select.join(", ")), [])
        .ctx(|| format!("inject into {table}"))?;
    Ok(n as u64)
}

/// The next version of the fact of row `s` in `table`.
fn next_version(table: &str) -> String {
    let spec = t0_project::vocab::spec(table).expect("canonical table");
    let on = spec.key.iter().map(|k| format!("v.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
    format!("(SELECT coalesce(max(v.version), 0) + 1 FROM {table} v WHERE {on})")
}

/// Each known fact of `table` at each attacked entity's first T0, newest observed first
/// (`r` = 1, 2, …).
fn known_at_first(table: &str) -> String {
    let h = t0_project::vocab::history_sql(table, table).expect("canonical table");
    format!(
        "(SELECT h.*, a.t_first, a.i, a.partner, row_number() OVER (PARTITION BY a.entity_id ORDER BY h.observed_at DESC, h.version DESC) AS r
          FROM {h} h JOIN atk a ON h.entity_id = a.entity_id
          WHERE NOT h.deleted AND h.known_from <= a.t_first AND (h.known_to IS NULL OR h.known_to > a.t_first))"
    )
}

/// Inject the late versions; returns the rows per table.
fn inject(c: &duckdb::Connection, cfg: &crate::CertifyConfig, at: &str) -> Result<BTreeMap<String, u64>> {
    let mut n = BTreeMap::new();
    let mut add = |t: &str, k: u64| *n.entry(t.to_string()).or_insert(0) += k;
    // Observations: a revision of the newest fact known at the first T0, a tombstone of the
    // one before it, and new facts an hour and five days before that T0.
    let obs = known_at_first("observations");
    add(
        "observations",
        insert(c, "observations", &format!("{obs} s WHERE r = 1"), &[("version", next_version("observations"))], at)?,
    );
    add(
        "observations",
        insert(
            c,
            "observations",
            &format!("{obs} s WHERE r = 2"),
            &[("version", next_version("observations")), ("deleted", "true".into())],
            at,
        )?,
    );
    for back in ["INTERVAL 1 HOUR", "INTERVAL 5 DAY"] {
        let from = format!(
            "(SELECT a.entity_id, a.t_first - {back} AS observed_at, o.* EXCLUDE (entity_id, observed_at)
              FROM atk a LEFT JOIN (SELECT * FROM {obs} WHERE r = 1) o ON o.entity_id = a.entity_id) s"
        );
        let set = [
            ("entity_id", "s.entity_id".to_string()),
            ("observed_at", "s.observed_at".into()),
            ("version", next_version("observations")),
        ];
        add("observations", insert(c, "observations", &from, &set, at)?);
    }
    inject_entities(c, at, &mut add)?;
    inject_events(c, cfg, at, &mut add)?;
    inject_artifacts(c, at, &mut add)?;
    inject_interactions(c, at, &mut add)?;
    Ok(n)
}

/// Entities: a version created a week earlier under another parent (every third attacked
/// entity: a tombstone instead), and a new sibling entity with a snapshot, created two days
/// before the first T0.
fn inject_entities(c: &duckdb::Connection, at: &str, add: &mut dyn FnMut(&str, u64)) -> Result<()> {
    let ent = known_at_first("entities");
    let revised = format!(
        "(SELECT e.*, coalesce(p.parent_id, 'attack-parent') AS other_parent
          FROM {ent} e LEFT JOIN (SELECT entity_id, parent_id FROM {ent}) p ON p.entity_id = e.partner AND p.parent_id IS DISTINCT FROM e.parent_id) s"
    );
    let earlier = "s.created_at - INTERVAL 7 DAY".to_string();
    let set = [
        ("version", next_version("entities")),
        ("kind", "s.kind".into()),
        ("created_at", earlier.clone()),
        ("observed_at", earlier),
        ("parent_id", "CASE WHEN s.other_parent = s.parent_id THEN 'attack-parent' ELSE s.other_parent END".into()),
        ("deleted", "s.i % 3 = 0".into()),
    ];
    add("entities", insert(c, "entities", &format!("{revised} WHERE true"), &set, at)?);
    let new = format!(
        "(SELECT 'attack-' || e.entity_id AS new_id, e.* EXCLUDE (entity_id) FROM {ent} e
          WHERE NOT EXISTS (SELECT 1 FROM entities x WHERE x.entity_id = 'attack-' || e.entity_id)) s"
    );
    let born = "s.t_first - INTERVAL 2 DAY".to_string();
    let set = [
        ("entity_id", "s.new_id".into()),
        ("kind", "s.kind".into()),
        ("parent_id", "s.parent_id".into()),
        ("created_at", born.clone()),
        ("observed_at", born),
    ];
    add("entities", insert(c, "entities", &new, &set, at)?);
    // The sibling's snapshot: the attacked entity's newest known values, perturbed.
    let obs = known_at_first("observations");
    let snap = format!(
        "(SELECT 'attack-' || a.entity_id AS new_id, a.t_first - INTERVAL 1 DAY AS new_at, o.*
          FROM atk a LEFT JOIN (SELECT * FROM {obs} WHERE r = 1) o ON o.entity_id = a.entity_id
          WHERE EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = 'attack-' || a.entity_id AND e.batch_id = 'attack')) s"
    );
    let set = [("entity_id", "s.new_id".to_string()), ("observed_at", "s.new_at".into())];
    add("observations", insert(c, "observations", &snap, &set, at)?);
    Ok(())
}

/// Events: one of every end-event type and every other type in the table, an hour before the
/// first T0.
fn inject_events(
    c: &duckdb::Connection,
    cfg: &crate::CertifyConfig,
    at: &str,
    add: &mut dyn FnMut(&str, u64),
) -> Result<()> {
    let mut types: Vec<String> = cfg.t0.end_events.iter().map(|t| quote_literal(t)).collect();
    types.push("'attack'".into());
    let from = format!(
        "(SELECT a.entity_id, a.t_first - INTERVAL 1 HOUR AS observed_at, t.event_type, CAST(NULL AS DOUBLE) AS value
          FROM atk a CROSS JOIN (SELECT unnest([{}]) AS event_type UNION SELECT DISTINCT event_type FROM events) t) s",
        types.join(", ")
    );
    let set = [
        ("entity_id", "s.entity_id".to_string()),
        ("event_type", "s.event_type".into()),
        ("observed_at", "s.observed_at".into()),
        ("version", next_version("events")),
    ];
    add("events", insert(c, "events", &from, &set, at)?);
    Ok(())
}

/// Artifacts: a revision of every kind the table holds (a new fact where the entity had
/// none), observed an hour before the first T0.
fn inject_artifacts(c: &duckdb::Connection, at: &str, add: &mut dyn FnMut(&str, u64)) -> Result<()> {
    let from = "(SELECT a.entity_id, k.kind, a.t_first - INTERVAL 1 HOUR AS observed_at, x.text, x.path, x.content_hash
                 FROM atk a CROSS JOIN (SELECT DISTINCT kind FROM artifacts) k
                 LEFT JOIN (SELECT * FROM artifacts QUALIFY row_number() OVER (PARTITION BY entity_id, kind ORDER BY version DESC) = 1) x
                   ON x.entity_id = a.entity_id AND x.kind = k.kind) s";
    let set = [
        ("entity_id", "s.entity_id".to_string()),
        ("kind", "s.kind".into()),
        ("observed_at", "s.observed_at".into()),
        ("path", "s.path".into()),
        ("version", next_version("artifacts")),
    ];
    add("artifacts", insert(c, "artifacts", from, &set, at)?);
    Ok(())
}

/// Interactions: the attacked entity with its partner, one of every type (or `attack`), an
/// hour before the first T0, both ways.
fn inject_interactions(c: &duckdb::Connection, at: &str, add: &mut dyn FnMut(&str, u64)) -> Result<()> {
    let from =
        "(SELECT a.entity_id AS source_id, a.partner AS target_id, t.type, a.t_first - INTERVAL 1 HOUR AS observed_at,
                        CAST(NULL AS DOUBLE) AS value
                 FROM atk a CROSS JOIN (SELECT 'attack' AS type UNION SELECT DISTINCT type FROM interactions) t
                 UNION ALL
                 SELECT a.partner, a.entity_id, t.type, a.t_first - INTERVAL 1 HOUR, CAST(NULL AS DOUBLE)
                 FROM atk a CROSS JOIN (SELECT 'attack' AS type UNION SELECT DISTINCT type FROM interactions) t
                 WHERE a.partner <> a.entity_id) s";
    let set = [
        ("source_id", "s.source_id".to_string()),
        ("target_id", "s.target_id".into()),
        ("type", "s.type".into()),
        ("observed_at", "s.observed_at".into()),
        ("version", next_version("interactions")),
    ];
    add("interactions", insert(c, "interactions", from, &set, at)?);
    Ok(())
}

/// The human summary of a report.
pub fn describe(r: &AttackReport) -> String {
    let injected = r.injected.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "attack on {} entities: versions available from {} (clock {}); injected {injected}",
        r.entities, r.available_at, r.clock
    );
    for s in &r.stores {
        out.push_str(&format!(
            "\n  {}: {} rows compared, {} changed, {} appeared, {} disappeared",
            s.against, s.compared, s.changed, s.appeared, s.disappeared
        ));
        if s.differs() {
            let cols = s.columns.iter().map(|(c, n)| format!("{c} ({n})")).collect::<Vec<_>>().join(", ");
            out.push_str(&format!("\n    LEAK: columns {cols}; e.g. {}", s.sample.join("; ")));
        }
    }
    out.push_str(if r.leaks() { "\nverdict: LEAKS" } else { "\nverdict: no fact from after T0 reached any store" });
    out
}
