//! `certify labels`: the outcomes after each T0 of a certified run, built by their own command
//! so no feature closure can reach them. Train-suite and calibrate join them through
//! [`labels_for`], which accepts only labels made for the certify run they use.

use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};

use t0_project::{Agg, LabelKind, Project};

use crate::CertifyArgs;

pub const STAGE: t0_core::Stage = t0_core::Stage::Labels;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LabelsReport {
    pub run_id: String,
    pub certify_run: String,
    pub path: String,
    pub rows: u64,
    /// Rows whose first label is known.
    pub matured: u64,
    pub labels: Vec<String>,
}

/// Label every (entity, T0) of the latest certified run's grid (its first store's surface)
/// from the current canonical data (after heal), verified against its producer's manifest.
pub fn run(root: &Root, clock: Clock, args: &CertifyArgs, progress: &dyn Progress) -> Result<LabelsReport> {
    let project = &args.project;
    if project.def.labels.is_empty() {
        return Err(Error::config(
            project.display(t0_project::PROJECT_FILE),
            format!("project {:?} declares no labels", project.name()),
        ));
    }
    let sql = labels_sql(project);
    let config_hash =
        t0_core::blake3_hex(format!("{}|{}", project.hash, t0_core::blake3_hex(sql.as_bytes())).as_bytes());
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, project)?;
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let cert = t0_manifest::load(root, &catalog, crate::STAGE, None)?;
    if cert.manifest.gate != Some(t0_core::Verdict::Certified) {
        return Err(Error::Refused(format!("certify run {} is not CERTIFIED: no labels for it", cert.manifest.run_id)));
    }
    let first = cert.manifest.outputs.iter().find(|o| o.name.starts_with("surface.")).map(|o| o.name.clone());
    let first =
        first.ok_or_else(|| Error::Refused(format!("certify run {} recorded no surface", cert.manifest.run_id)))?;
    let grid = run.consume(&cert, &[first.as_str()])?;
    // Labels read observations and events, as the ledger says they are.
    let (data, names) = t0_project::canonical_producer(root, &catalog)?;
    let read: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| ["canonical.observations", "canonical.events", t0_project::LEDGER_OUTPUT].contains(n))
        .collect();
    run.consume(&data, &read)?;
    // Labels belong to one certified grid, even when two grids are equal.
    let run_id = run.run_id(&cert.manifest.run_id);
    run.ensure_new(&run_id)?;

    progress.phase("labels", None);
    let surface = t0_catalog::quote_literal(&grid[0].path(root)?.display().to_string());
    catalog
        .conn()
        .execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE t0_grid AS SELECT entity_id, t0 FROM read_parquet({surface}) ORDER BY entity_id, t0"
        ))
        .map_err(|e| Error::internal("labels grid", e))?;
    let (schema, batches) = catalog.query_arrow(&sql, &[])?;
    // Rows whose first label is known (matured at its horizon).
    let first_label = project.def.labels[0].name().to_string();
    let matured = batches
        .iter()
        .map(|b| {
            let i = b.schema().index_of(&first_label).expect("label column");
            (b.num_rows() - b.column(i).null_count()) as u64
        })
        .sum();
    let rel = format!("lake/labels/{run_id}/labels.parquet");
    t0_table::write_parquet(&root.join(&rel), schema, &batches)?;
    let out = t0_manifest::record_output(root, &catalog, "labels", Location::per_entity_t0(&rel))?;
    progress.finish();
    let report = LabelsReport {
        run_id: run_id.clone(),
        certify_run: cert.manifest.run_id.clone(),
        path: rel,
        rows: out.rows.unwrap_or(0),
        matured,
        labels: project.def.labels.iter().flat_map(|l| l.columns()).collect(),
    };
    run.finish(&run_id, None, vec![out], serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// The latest labels made for certify run `cert` (refused when there are none, so a model is
/// never trained or calibrated on outcomes of another grid).
pub fn labels_for(root: &Root, catalog: &Catalog, cert: &Loaded) -> Result<Loaded> {
    let labels = t0_manifest::load(root, catalog, STAGE, None).map_err(|_| {
        Error::Refused(format!("no labels for certify run {}: run `certify labels`", cert.manifest.run_id))
    })?;
    if !labels.manifest.upstream.iter().any(|u| u.stage == crate::STAGE && u.manifest_hash == cert.manifest_hash) {
        return Err(Error::Refused(format!(
            "the latest labels (run {}) were not made for certify run {}: run `certify labels`",
            labels.manifest.run_id, cert.manifest.run_id
        )));
    }
    Ok(labels)
}

/// The labels of every grid (entity, T0) in `t0_grid`, as the project declares them, from the
/// current (newest, live) versions of observations and events. One row per grid row, ordered
/// by (entity_id, t0); columns in declaration order.
pub fn labels_sql(project: &Project) -> String {
    let obs = t0_project::vocab::current_sql("observations", true).expect("canonical table");
    let events = t0_project::vocab::current_sql("events", true).expect("canonical table");
    let list = |v: &[String]| v.iter().map(|e| t0_catalog::quote_literal(e)).collect::<Vec<_>>().join(", ");
    let labels = &project.def.labels;
    let mut agg = vec!["max(o.observed_at) AS last_seen".to_string()];
    let mut ctes = Vec::new();
    let mut joins = Vec::new();
    let mut cols = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let name = l.name();
        match l {
            LabelKind::Value { measure, horizon, transform, .. } => {
                let h = format!("g.t0 + {}", horizon.sql());
                let v = format!("arg_max(o.\"{measure}\", o.observed_at) FILTER (WHERE o.observed_at <= {h})");
                agg.push(format!("CASE WHEN max(o.observed_at) >= {h} THEN {} END AS \"{name}\"", transform.sql(&v)));
                agg.push(format!("CASE WHEN max(o.observed_at) >= {h} THEN {v} END AS \"{name}__raw\""));
                cols.push(format!("y.\"{name}\""));
            }
            LabelKind::Flow { measure, horizon, agg: a, transform, .. } => {
                let h = format!("g.t0 + {}", horizon.sql());
                let within = format!("FILTER (WHERE o.observed_at > g.t0 AND o.observed_at <= {h})");
                let v = match a {
                    Agg::Sum => format!("coalesce(sum(o.\"{measure}\") {within}, 0)"),
                    Agg::Count => format!("count(o.\"{measure}\") {within}"),
                };
                agg.push(format!("CASE WHEN max(o.observed_at) >= {h} THEN {} END AS \"{name}\"", transform.sql(&v)));
                agg.push(format!("CASE WHEN max(o.observed_at) >= {h} THEN {v} END AS \"{name}__raw\""));
                cols.push(format!("y.\"{name}\""));
            }
            LabelKind::Threshold { label, at_least, .. } => {
                cols.push(format!(
                    "CASE WHEN y.\"{label}__raw\" IS NOT NULL THEN y.\"{label}\" >= {} END AS \"{name}\"",
                    {
                        let base = project.label(label).expect("validated");
                        let t = match base {
                            LabelKind::Value { transform, .. } | LabelKind::Flow { transform, .. } => *transform,
                            _ => unreachable!("validated: thresholds apply to value and flow labels"),
                        };
                        t.sql(&format!("{at_least:?}"))
                    }
                ));
            }
            LabelKind::EventWithin { events: evs, horizon, .. } => {
                ctes.push(format!(
                    "l{i} AS (SELECT g.entity_id, g.t0 FROM t0_grid g JOIN ev x ON x.entity_id = g.entity_id
                              AND x.event_type IN ({}) AND x.observed_at > g.t0 AND x.observed_at <= g.t0 + {}
                              GROUP BY g.entity_id, g.t0)",
                    list(evs),
                    horizon.sql()
                ));
                joins.push(format!("LEFT JOIN l{i} ON l{i}.entity_id = y.entity_id AND l{i}.t0 = y.t0"));
                cols.push(format!(
                    "CASE WHEN l{i}.entity_id IS NOT NULL THEN true WHEN y.last_seen >= y.t0 + {} THEN false END AS \"{name}\"",
                    horizon.sql()
                ));
            }
            LabelKind::TimeToEvent { end_events, end_states, .. } => {
                let mut ends = Vec::new();
                if !end_events.is_empty() {
                    ends.push(format!(
                        "SELECT entity_id, observed_at FROM ev WHERE event_type IN ({})",
                        list(end_events)
                    ));
                }
                if let Some(s) = end_states {
                    ends.push(format!(
                        "SELECT entity_id, observed_at FROM cur WHERE CAST(\"{}\" AS VARCHAR) IN ({})",
                        s.measure,
                        list(&s.values)
                    ));
                }
                ctes.push(format!(
                    "l{i} AS (SELECT g.entity_id, g.t0, min(x.observed_at) AS ended_at
                              FROM t0_grid g JOIN ({}) x ON x.entity_id = g.entity_id AND x.observed_at > g.t0
                              GROUP BY g.entity_id, g.t0)",
                    ends.join(" UNION ALL ")
                ));
                joins.push(format!("LEFT JOIN l{i} ON l{i}.entity_id = y.entity_id AND l{i}.t0 = y.t0"));
                let c = l.columns();
                cols.push(format!(
                    "greatest(date_diff('second', y.t0, coalesce(l{i}.ended_at, y.last_seen)), 0) / 3600.0 AS \"{}\"",
                    c[0]
                ));
                cols.push(format!("l{i}.ended_at IS NOT NULL AS \"{}\"", c[1]));
            }
        }
    }
    let extra = ctes.iter().map(|c| format!(",\n         {c}")).collect::<String>();
    format!(
        "WITH cur AS {obs},
         ev AS {events},
         y AS (SELECT g.entity_id, g.t0, {agg}
               FROM t0_grid g LEFT JOIN cur o ON o.entity_id = g.entity_id
               GROUP BY g.entity_id, g.t0){extra}
         SELECT y.entity_id, y.t0, {cols}
         FROM y {joins}
         ORDER BY y.entity_id, y.t0",
        agg = agg.join(", "),
        cols = cols.join(", "),
        joins = joins.join(" "),
    )
}
