//! `certify labels`: the outcomes after each T0 of a certified run, built by their own command
//! so no feature closure can reach them. Train-suite and calibrate join them through
//! [`labels_for`], which accepts only labels made for the certify run they use.

use t0_catalog::{Catalog, RootLock};
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Loaded, Location, StageRun};

use crate::{CertifyArgs, LoadedConfig};

pub const STAGE: &str = "labels";

#[derive(Debug, serde::Serialize)]
pub struct LabelsReport {
    pub run_id: String,
    pub certify_run: String,
    pub path: String,
    pub rows: u64,
    pub matured: u64,
}

/// Label every (entity, T0) of the latest certified `surface.base` from the current canonical
/// data (after heal), verified against its producer's manifest.
pub fn run(root: &Root, clock: Clock, args: &CertifyArgs, progress: &dyn Progress) -> Result<LabelsReport> {
    let LoadedConfig { cfg, hash, .. } = crate::load_config(args)?;
    let sql_hash = t0_core::blake3_hex(crate::labels_sql(&cfg).as_bytes());
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let mut run =
        StageRun::begin(root, &catalog, STAGE, clock, t0_core::blake3_hex(format!("{hash}|{sql_hash}").as_bytes()));
    let cert = t0_manifest::load(root, &catalog, crate::STAGE, None)?;
    if cert.manifest.gate.as_deref() != Some("CERTIFIED") {
        return Err(Error::Refused(format!("certify run {} is not CERTIFIED: no labels for it", cert.manifest.run_id)));
    }
    let grid = run.consume(&cert, &["surface.base"])?;
    let (stage, producer) = t0_manifest::latest_producer(&catalog, "canonical.observations")?
        .ok_or_else(|| Error::Refused("no canonical data is recorded".into()))?;
    let data = t0_manifest::load(root, &catalog, &stage, Some(&producer))?;
    run.consume(&data, &["canonical.observations", "canonical.events"])?;
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
    let (schema, batches) = catalog.query_arrow(&crate::labels_sql(&cfg), &[])?;
    let matured = batches
        .iter()
        .map(|b| {
            let i = b.schema().index_of("y_log_views").expect("label column");
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
