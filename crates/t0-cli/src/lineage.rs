//! A stage run's OpenLineage events around its body (`t0_lineage`): START before it works,
//! COMPLETE with the datasets of the manifest it recorded (or with none when it had nothing
//! to do, exit 99), FAIL with the error otherwise.

use t0_core::{Clock, ExitCode, Root};
use t0_lineage::{Endpoint, Parent, RunEvents};

use crate::{Common, Outcome};

pub(crate) fn start(common: &Common, root: &Root, stage: &str, clock: &Clock) -> t0_core::Result<RunEvents> {
    let parent = common.lineage_parent.as_deref().map(Parent::parse).transpose()?;
    let endpoint = common.lineage_url.as_deref().map(Endpoint::parse).transpose()?;
    RunEvents::start(root, &common.lineage_namespace, stage, clock, (parent, endpoint))
}

pub(crate) fn finish(
    events: RunEvents,
    root: &Root,
    clock: &Clock,
    result: &t0_core::Result<Outcome>,
) -> t0_core::Result<Vec<String>> {
    match result {
        Ok(o) => {
            let recorded = recorded_run(root, &o.json)?;
            let tables = recorded.as_ref().map(|r| r.2.clone()).unwrap_or_default();
            let recorded = recorded.as_ref().map(|(m, h, _)| (m, h.as_str()));
            events.with_tables(tables).complete(clock, o.code.code() as u8, recorded)
        }
        Err(e) if e.exit_code() == ExitCode::NothingToDo => events.complete(clock, e.exit_code().code() as u8, None),
        Err(e) => events.fail(clock, e.exit_code().code() as u8, &e.to_string()),
    }
}

/// A recorded run: its manifest, the manifest's blake3, and the columns of the catalog tables
/// it names.
type Recorded = (t0_manifest::Manifest, String, t0_lineage::TableColumns);

/// The manifest of the run a stage's report names (`run_id`), if it recorded one.
fn recorded_run(root: &Root, report: &serde_json::Value) -> t0_core::Result<Option<Recorded>> {
    let Some(run_id) = report.get("run_id").and_then(|r| r.as_str()) else { return Ok(None) };
    if !root.catalog().exists() {
        return Ok(None);
    }
    let catalog = t0_catalog::Catalog::open_read_only(root)?;
    let stage: Option<String> = catalog
        .conn()
        .query_row("SELECT arg_max(stage, seq) FROM manifests WHERE run_id = ?", [run_id], |r| r.get(0))
        .map_err(|e| t0_core::Error::internal("lineage: manifest lookup", e))?;
    let Some(stage) = stage.and_then(|s| s.parse::<t0_core::Stage>().ok()) else { return Ok(None) };
    let loaded = t0_manifest::load(root, &catalog, stage, Some(run_id))?;
    let mut tables = t0_lineage::TableColumns::new();
    for o in loaded.manifest.inputs.iter().chain(&loaded.manifest.outputs) {
        if let t0_manifest::Location::Table { table, .. } = &o.location
            && !tables.contains_key(table)
        {
            tables.insert(table.clone(), t0_catalog::table_columns(catalog.conn(), table)?);
        }
    }
    Ok(Some((loaded.manifest, loaded.manifest_hash, tables)))
}
