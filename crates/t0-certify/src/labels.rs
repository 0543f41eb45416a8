//! `certify labels`: the outcomes after each T0 of a certified run, built by their own command
//! so no feature closure can reach them. Train-suite and calibrate join them through
//! [`labels_for`], which accepts only labels made for the certify run they use.

use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};

use t0_project::{Absent, Agg, FollowUp, LabelKind, Project, ValueHorizon};

use crate::CertifyArgs;
use crate::population::Raw;

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
    /// What the labels matured against: the completeness watermarks and the end events.
    pub coverage: Coverage,
    /// Per label: rows known, events (binary and time-to-event), and why the others are NULL.
    pub per_label: Vec<LabelCount>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabelCount {
    pub name: String,
    pub kind: String,
    pub known: u64,
    /// True binary labels, or observed events of a time-to-event label.
    pub events: Option<u64>,
    /// Reason → rows (see [`why`]).
    pub nulls: std::collections::BTreeMap<String, u64>,
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
    let declared = t0_project::completeness::declared(project)?;
    let end_events = crate::load_config(args)?.cfg.t0.end_events;
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, project)?;
    // A label reads its own entity's facts; only the watermarks are the population's.
    let raw = if root.bucket().is_whole() {
        Raw::catalog(&catalog)?
    } else {
        let audit = t0_manifest::load(root, &catalog, t0_core::Stage::Audit, None)?;
        crate::population::attach(root, &catalog, &audit)?
    };
    let cov = coverage(&catalog, &raw, &declared, end_events)?;
    let sql = labels_sql(project, &cov);
    let config_hash =
        t0_core::blake3_hex(format!("{}|{}", project.hash, t0_core::blake3_hex(sql.as_bytes())).as_bytes());
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let cert = t0_manifest::load(root, &catalog, crate::STAGE, None)?;
    if cert.manifest.gate != Some(t0_core::Verdict::Certified) {
        return Err(Error::Refused(format!("certify run {} is not CERTIFIED: no labels for it", cert.manifest.run_id)));
    }
    let read = crate::certify_report(&cert)?.population;
    if read.as_deref() != raw.commit() {
        return Err(Error::Refused(format!(
            "certify run {} read the population of audit commit {}, the latest is {}: certify again",
            cert.manifest.run_id,
            read.as_deref().unwrap_or("none"),
            raw.commit().unwrap_or("none")
        )));
    }
    let first = cert.manifest.outputs.iter().find(|o| o.name.starts_with("surface.")).map(|o| o.name.clone());
    let first =
        first.ok_or_else(|| Error::Refused(format!("certify run {} recorded no surface", cert.manifest.run_id)))?;
    let grid = run.consume(&cert, &[first.as_str()])?;
    // Labels read observations, events and entities (ends), as the ledger says they are.
    let (data, names) = t0_project::canonical_producer(root, &catalog)?;
    let read: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            ["canonical.observations", "canonical.events", "canonical.entities", t0_project::LEDGER_OUTPUT].contains(n)
        })
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
            "CREATE OR REPLACE TEMP TABLE t0_grid AS SELECT entity_id, t0 FROM read_parquet({surface}) ORDER BY entity_id, t0;
             CREATE OR REPLACE TEMP TABLE t0_labels AS {sql};"
        ))
        .map_err(|e| Error::internal("labels", e))?;
    let columns: Vec<String> = project.def.labels.iter().flat_map(|l| l.columns()).collect();
    let select =
        columns.iter().chain(&persist_columns(project)).map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    let (schema, batches) =
        catalog.query_arrow(&format!("SELECT entity_id, t0, {select} FROM t0_labels ORDER BY entity_id, t0"), &[])?;
    let per_label = counts(&catalog, project)?;
    let rel = format!("lake/labels/{run_id}/labels.parquet");
    t0_table::write_parquet(&root.join(&rel), schema, &batches)?;
    let out = t0_manifest::record_output(root, &catalog, "labels", Location::per_entity_t0(&rel))?;
    progress.finish();
    let report = LabelsReport {
        run_id: run_id.clone(),
        certify_run: cert.manifest.run_id.clone(),
        path: rel,
        rows: out.rows.unwrap_or(0),
        matured: per_label[0].known,
        labels: columns,
        coverage: cov,
        per_label,
    };
    run.finish(&run_id, None, vec![out], serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}

/// The watermarks of observations and events from the current data and the declarations.
fn coverage(catalog: &Catalog, raw: &Raw, declared: &Declared, end_events: Vec<String>) -> Result<Coverage> {
    let from = |t: &str| watermark_from(catalog, declared, t, &format!("{}.{t}", raw.qualifier()));
    Ok(Coverage { observations: from("observations")?, events: from("events")?, end_events })
}

/// Each table's completeness declarations (`t0_project::completeness::declared`).
pub type Declared = std::collections::BTreeMap<String, Vec<(String, t0_project::completeness::CompleteThrough)>>;

/// The completeness watermark of canonical `table` (`YYYY-MM-DD HH:MM:SS`), from its current
/// live rows and the declarations; `None` when it has no rows.
pub fn watermark(catalog: &Catalog, declared: &Declared, table: &str) -> Result<Option<String>> {
    watermark_from(catalog, declared, table, table)
}

/// [`watermark`] of canonical table `table` stored at `source`.
pub fn watermark_from(catalog: &Catalog, declared: &Declared, table: &str, source: &str) -> Result<Option<String>> {
    let cur = t0_project::vocab::current_sql_from(table, source, true).expect("canonical table");
    let expr = t0_project::completeness::watermark_sql(declared, table, &format!("{cur} c"));
    catalog
        .conn()
        .query_row(&format!("SELECT strftime({expr}, '%Y-%m-%d %H:%M:%S')"), [], |r| r.get::<_, Option<String>>(0))
        .map_err(|e| Error::internal(format!("{table} completeness watermark"), e))
}

/// Known rows, events and NULL reasons per label, from `t0_labels`.
fn counts(catalog: &Catalog, project: &Project) -> Result<Vec<LabelCount>> {
    let mut out = Vec::new();
    for l in &project.def.labels {
        let (name, c) = (l.name(), l.columns());
        let flag = c.last().expect("a label has a column");
        let events =
            if l.has_events() { format!("count(*) FILTER (WHERE \"{flag}\")") } else { "CAST(NULL AS BIGINT)".into() };
        let (known, events): (i64, Option<i64>) = catalog
            .conn()
            .query_row(&format!("SELECT count(\"{name}\"), {events} FROM t0_labels"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| Error::internal("count labels", e))?;
        let mut stmt = catalog
            .conn()
            .prepare(&format!(
                "SELECT \"__why__{name}\", count(*) FROM t0_labels WHERE \"__why__{name}\" IS NOT NULL GROUP BY 1 ORDER BY 1"
            ))
            .map_err(|e| Error::internal("count NULL reasons", e))?;
        let nulls = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(|rows| rows.collect::<std::result::Result<_, _>>())
            .map_err(|e| Error::internal("count NULL reasons", e))?;
        out.push(LabelCount {
            name: name.to_string(),
            kind: l.kind_name().to_string(),
            known: known as u64,
            events: events.map(|e| e as u64),
            nulls,
        });
    }
    Ok(out)
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

/// What a label's SQL reads beside the grid: the completeness watermarks (UTC
/// `YYYY-MM-DD HH:MM:SS`, `None` when the table covers nothing) and the event types that end an
/// entity (the grid's `end_events`; a tombstoned entity ends too).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    pub observations: Option<String>,
    pub events: Option<String>,
    pub end_events: Vec<String>,
}

/// Why a label is NULL: reasons as written into the `__why__<label>` columns and the report.
pub mod why {
    /// T0 + horizon lies after the table's completeness watermark.
    pub const PAST_WATERMARK: &str = "past_watermark";
    /// The entity ended (an end event or a tombstone) before T0 + horizon.
    pub const ENDED: &str = "ended";
    /// The measure has no value at or before T0 + horizon.
    pub const NO_VALUE: &str = "no_value";
    /// `absent: unknown`: no row of the entity at or after T0 + horizon.
    pub const NOT_OBSERVED_AFTER: &str = "not_observed_after";
    /// `horizon: next`: no observation after T0 inside the watermark yet.
    pub const NO_NEXT_OBSERVATION: &str = "no_next_observation";
    /// `follow_up: {attribute}`: the entity has no readable follow-up time.
    pub const NO_FOLLOW_UP: &str = "no_follow_up";
}

fn ts(t: &Option<String>) -> String {
    match t {
        Some(t) => format!("TIMESTAMP '{t}'"),
        None => "CAST(NULL AS TIMESTAMP)".into(),
    }
}

/// A numeric label's untransformed value and its NULL reason, as SQL over `z`.
struct Numeric {
    raw: String,
    why: String,
}

/// The labels of every grid (entity, T0) in `t0_grid`, as the project declares them, from the
/// current (newest, live) versions of observations and events: one row per grid row, ordered
/// by (entity_id, t0), label columns in declaration order, then a `__why__<label>` column per
/// label (NULL where the label is known).
///
/// Long because: it is one query; each label kind's arm is its rule, in one place.
pub fn labels_sql(project: &Project, cov: &Coverage) -> String {
    let obs = t0_project::vocab::current_sql("observations", true).expect("canonical table");
    let events = t0_project::vocab::current_sql("events", true).expect("canonical table");
    let ents = t0_project::vocab::current_sql("entities", false).expect("canonical table");
    let list = |v: &[String]| v.iter().map(|e| t0_catalog::quote_literal(e)).collect::<Vec<_>>().join(", ");
    let in_list =
        |col: &str, v: &[String]| if v.is_empty() { "false".to_string() } else { format!("{col} IN ({})", list(v)) };
    let (w_obs, w_ev) = (ts(&cov.observations), ts(&cov.events));
    // `past(h)`: h is not covered by the watermark `w` (no watermark covers nothing).
    let past = |h: &str, w: &str| format!("NOT coalesce({h} <= {w}, false)");
    let labels = &project.def.labels;
    let mut agg = vec!["max(o.observed_at) AS last_seen".to_string()];
    let mut ctes = Vec::new();
    let mut joins = Vec::new();
    let mut cols = Vec::new();
    let mut whys = Vec::new();
    let mut numeric: Vec<(String, Numeric)> = Vec::new();
    let mut persist = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let name = l.name();
        let (value, why) = match l {
            LabelKind::Value { measure, horizon: ValueHorizon::After(h), .. } => {
                let h = format!("z.t0 + {}", h.sql());
                let at = h.replace("z.", "g.");
                agg.push(format!(
                    "arg_max(o.\"{measure}\", o.observed_at) FILTER (WHERE o.observed_at <= {at} AND o.\"{measure}\" IS NOT NULL) AS v{i}"
                ));
                let why = format!(
                    "CASE WHEN {} THEN '{}' WHEN z.ended_at <= {h} THEN '{}' WHEN z.v{i} IS NULL THEN '{}' END",
                    past(&h, &w_obs),
                    why::PAST_WATERMARK,
                    why::ENDED,
                    why::NO_VALUE
                );
                numeric.push((name.to_string(), Numeric { raw: format!("z.v{i}"), why: why.clone() }));
                (format!("CASE WHEN ({why}) IS NULL THEN {} END", l.transform().sql(&format!("z.v{i}"))), why)
            }
            LabelKind::Value { measure, horizon: ValueHorizon::Next, .. } => {
                let next = format!("o.observed_at > g.t0 AND o.observed_at <= {w_obs} AND o.\"{measure}\" IS NOT NULL");
                agg.push(format!("arg_min(o.\"{measure}\", o.observed_at) FILTER (WHERE {next}) AS v{i}"));
                agg.push(format!("min(o.observed_at) FILTER (WHERE {next}) AS n{i}"));
                let why = format!(
                    "CASE WHEN z.ended_at IS NOT NULL AND (z.n{i} IS NULL OR z.ended_at < z.n{i}) THEN '{}' WHEN z.n{i} IS NULL THEN '{}' END",
                    why::ENDED,
                    why::NO_NEXT_OBSERVATION
                );
                numeric.push((name.to_string(), Numeric { raw: format!("z.v{i}"), why: why.clone() }));
                (format!("CASE WHEN ({why}) IS NULL THEN {} END", l.transform().sql(&format!("z.v{i}"))), why)
            }
            LabelKind::Flow { measure, horizon, agg: a, .. } => {
                let h = format!("z.t0 + {}", horizon.sql());
                let within =
                    format!("FILTER (WHERE o.observed_at > g.t0 AND o.observed_at <= {})", h.replace("z.", "g."));
                agg.push(match a {
                    // DuckDB sums integers as HUGEINT: a label is a double.
                    Agg::Sum => format!("CAST(coalesce(sum(o.\"{measure}\") {within}, 0) AS DOUBLE) AS v{i}"),
                    Agg::Count => format!("count(o.\"{measure}\") {within} AS v{i}"),
                });
                let unknown = project.def.absent_of(l) == Absent::Unknown;
                let not_after = if unknown {
                    format!(" WHEN coalesce(z.last_seen < {h}, true) THEN '{}'", why::NOT_OBSERVED_AFTER)
                } else {
                    String::new()
                };
                let why = format!(
                    "CASE WHEN {} THEN '{}' WHEN z.ended_at <= {h} THEN '{}'{not_after} END",
                    past(&h, &w_obs),
                    why::PAST_WATERMARK,
                    why::ENDED
                );
                numeric.push((name.to_string(), Numeric { raw: format!("z.v{i}"), why: why.clone() }));
                (format!("CASE WHEN ({why}) IS NULL THEN {} END", l.transform().sql(&format!("z.v{i}"))), why)
            }
            LabelKind::Threshold { label, at_least, .. } => {
                let base = &numeric.iter().find(|(n, _)| n == label).expect("validated: declared before").1;
                (format!("CASE WHEN ({}) IS NULL THEN {} >= {at_least:?} END", base.why, base.raw), base.why.clone())
            }
            LabelKind::EventWithin { events: evs, horizon, .. } => {
                ctes.push(format!(
                    "l{i} AS (SELECT g.entity_id, g.t0 FROM t0_grid g JOIN ev x ON x.entity_id = g.entity_id
                              AND {} AND x.observed_at > g.t0 AND x.observed_at <= g.t0 + {}
                              GROUP BY g.entity_id, g.t0)",
                    in_list("x.event_type", evs),
                    horizon.sql()
                ));
                joins.push(format!("LEFT JOIN l{i} ON l{i}.entity_id = z.entity_id AND l{i}.t0 = z.t0"));
                let h = format!("z.t0 + {}", horizon.sql());
                // Nothing follows an end: an entity that ended inside the window without the
                // event did not have it.
                let why = format!(
                    "CASE WHEN l{i}.entity_id IS NOT NULL OR z.ended_at <= {h} THEN NULL WHEN {} THEN '{}' END",
                    past(&h, &w_ev),
                    why::PAST_WATERMARK
                );
                (format!("CASE WHEN l{i}.entity_id IS NOT NULL THEN true WHEN ({why}) IS NULL THEN false END"), why)
            }
            LabelKind::TimeToEvent { end_events, end_states, censor_events, follow_up, .. } => {
                let c = l.columns();
                let (time, event, why) = time_to_event(
                    i,
                    (end_events, end_states.as_ref(), censor_events, follow_up),
                    &w_obs,
                    &mut ctes,
                    &mut joins,
                );
                cols.push(format!("{time} AS \"{}\"", c[0]));
                cols.push(format!("{event} AS \"{}\"", c[1]));
                whys.push(format!("{why} AS \"__why__{name}\""));
                continue;
            }
        };
        cols.push(format!("{value} AS \"{name}\""));
        whys.push(format!("{why} AS \"__why__{name}\""));
        if let Some(p) = persistence(project, l) {
            persist.push(format!("{p} AS \"{PERSIST}{name}\""));
            cols.push(format!("pz.\"{PERSIST}{name}\""));
        }
    }
    let hist = t0_project::vocab::history_sql("observations", "observations").expect("canonical table");
    let persist_cte = if persist.is_empty() {
        "pz AS (SELECT entity_id, t0 FROM t0_grid)".to_string()
    } else {
        format!(
            "pz AS (SELECT g.entity_id, g.t0, {}
                    FROM t0_grid g LEFT JOIN {hist} o ON o.entity_id = g.entity_id AND NOT o.deleted
                     AND o.known_from <= g.t0 AND (o.known_to IS NULL OR o.known_to > g.t0)
                    GROUP BY g.entity_id, g.t0)",
            persist.join(", ")
        )
    };
    joins.push("LEFT JOIN pz ON pz.entity_id = z.entity_id AND pz.t0 = z.t0".into());
    let extra = ctes.iter().map(|c| format!(",\n         {c}")).collect::<String>();
    format!(
        "WITH cur AS {obs},
         ev AS {events},
         ent AS {ents},
         ends AS (SELECT entity_id, observed_at AS at FROM ev WHERE {end_types}
                  UNION ALL SELECT entity_id, observed_at FROM ent WHERE deleted),
         gend AS (SELECT g.entity_id, g.t0, min(x.at) AS ended_at FROM t0_grid g
                  JOIN ends x ON x.entity_id = g.entity_id AND x.at > g.t0 GROUP BY g.entity_id, g.t0),
         y AS (SELECT g.entity_id, g.t0, {agg}
               FROM t0_grid g LEFT JOIN cur o ON o.entity_id = g.entity_id
               GROUP BY g.entity_id, g.t0),
         z AS (SELECT y.*, e.ended_at FROM y LEFT JOIN gend e ON e.entity_id = y.entity_id AND e.t0 = y.t0),
         {persist_cte}{extra}
         SELECT z.entity_id, z.t0, {cols}, {whys}
         FROM z {joins}
         ORDER BY z.entity_id, z.t0",
        end_types = in_list("event_type", &cov.end_events),
        agg = agg.join(", "),
        cols = cols.join(", "),
        whys = whys.join(", "),
        joins = joins.join(" "),
    )
}

/// Prefix of the persistence baseline columns in the labels file.
pub const PERSIST: &str = "__persist__";

/// The persistence baseline columns the labels file holds (one per value and flow label).
pub fn persist_columns(project: &Project) -> Vec<String> {
    project.def.labels.iter().filter(|l| l.is_numeric()).map(|l| format!("{PERSIST}{}", l.name())).collect()
}

/// "Nothing changes" for a value or flow label, from what was known at T0 (the versions of
/// observations visible then, as the grid and the as-of views read them), on the label's
/// scale: the last value, or the sum over the window that ends at T0. None for other kinds.
fn persistence(project: &Project, l: &LabelKind) -> Option<String> {
    let v = match l {
        LabelKind::Value { measure, .. } => {
            format!("arg_max(o.\"{measure}\", o.observed_at) FILTER (WHERE o.\"{measure}\" IS NOT NULL)")
        }
        LabelKind::Flow { measure, horizon, agg, .. } => {
            let within = format!("FILTER (WHERE o.observed_at > g.t0 - {} AND o.observed_at <= g.t0)", horizon.sql());
            let v = match agg {
                Agg::Sum => format!("sum(o.\"{measure}\") {within}"),
                Agg::Count => format!("count(o.\"{measure}\") {within}"),
            };
            if project.def.absent_of(l) == Absent::Zero { format!("coalesce({v}, 0)") } else { v }
        }
        _ => return None,
    };
    Some(format!("CAST({} AS DOUBLE)", l.transform().sql(&v)))
}

/// A time-to-event label's (hours, event flag, NULL reason) as SQL over `z`, adding its CTE.
/// The event counts when it comes before the first censoring event and (unless follow-up is
/// the last observation, which an end event itself extends) inside follow-up; otherwise the
/// time is censored at the earlier of the follow-up end and the censoring event.
fn time_to_event(
    i: usize,
    (end_events, end_states, censor_events, follow_up): (
        &[String],
        Option<&t0_project::EndStates>,
        &[String],
        &FollowUp,
    ),
    w_obs: &str,
    ctes: &mut Vec<String>,
    joins: &mut Vec<String>,
) -> (String, String, String) {
    let list = |v: &[String]| v.iter().map(|e| t0_catalog::quote_literal(e)).collect::<Vec<_>>().join(", ");
    let mut ends = Vec::new();
    if !end_events.is_empty() {
        ends.push(format!(
            "SELECT entity_id, observed_at, false AS censors FROM ev WHERE event_type IN ({})",
            list(end_events)
        ));
    }
    if let Some(s) = end_states {
        ends.push(format!(
            "SELECT entity_id, observed_at, false FROM cur WHERE CAST(\"{}\" AS VARCHAR) IN ({})",
            s.measure,
            list(&s.values)
        ));
    }
    if !censor_events.is_empty() {
        ends.push(format!("SELECT entity_id, observed_at, true FROM ev WHERE event_type IN ({})", list(censor_events)));
    }
    let attr = match follow_up {
        // `attrs` is compact JSON of strings written by acquire (serde_json); the json
        // extension is not built in, and a validated identifier needs no escaping.
        FollowUp::Attribute(a) => format!(
            ", any_value(TRY_CAST(nullif(regexp_extract(n.attrs, {}, 1), '') AS TIMESTAMP)) AS follow",
            t0_catalog::quote_literal(&format!("\"{a}\":\"([^\"]*)\""))
        ),
        _ => ", NULL AS follow".into(),
    };
    ctes.push(format!(
        "l{i} AS (SELECT g.entity_id, g.t0, min(x.observed_at) FILTER (WHERE NOT x.censors) AS event_at,
                         min(x.observed_at) FILTER (WHERE x.censors) AS censor_at{attr}
                  FROM t0_grid g LEFT JOIN ({}) x ON x.entity_id = g.entity_id AND x.observed_at > g.t0
                  LEFT JOIN (SELECT * FROM ent WHERE NOT deleted) n ON n.entity_id = g.entity_id
                  GROUP BY g.entity_id, g.t0)",
        ends.join(" UNION ALL ")
    ));
    joins.push(format!("LEFT JOIN l{i} ON l{i}.entity_id = z.entity_id AND l{i}.t0 = z.t0"));
    let (follow, inside) = match follow_up {
        FollowUp::LastSeen => ("z.last_seen".to_string(), "true".to_string()),
        FollowUp::Watermark => (w_obs.to_string(), format!("l{i}.event_at <= {w_obs}")),
        FollowUp::Attribute(_) => (format!("l{i}.follow"), format!("l{i}.event_at <= l{i}.follow")),
    };
    let event = format!(
        "(l{i}.event_at IS NOT NULL AND coalesce(l{i}.event_at <= l{i}.censor_at, true) AND coalesce({inside}, false))"
    );
    let until = format!("CASE WHEN {event} THEN l{i}.event_at ELSE least({follow}, l{i}.censor_at) END");
    let hours = format!("greatest(date_diff('second', z.t0, {until}), 0) / 3600.0");
    // Without a follow-up end the label is unknown (an end event alone extends `last_seen`).
    let missing = match follow_up {
        FollowUp::LastSeen => format!("({until}) IS NULL"),
        _ => format!("({follow}) IS NULL"),
    };
    let why = format!("CASE WHEN {missing} THEN '{}' END", why::NO_FOLLOW_UP);
    (format!("CASE WHEN ({why}) IS NULL THEN {hours} END"), format!("CASE WHEN ({why}) IS NULL THEN {event} END"), why)
}
