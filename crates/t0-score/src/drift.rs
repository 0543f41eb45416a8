//! Drift at serving time: the PSI of every feature and of the prediction against the model's
//! training block, in a Parquet beside the predictions, the catalog's `drift` table and the
//! Prometheus text file `metrics/score.prom`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Result, Root};
use t0_model::{Frame, Model};

/// One variable's drift in one score run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Drift {
    /// `feature` or `prediction`.
    pub kind: String,
    pub name: String,
    pub psi: f64,
}

/// PSI of each feature (in the model's feature order) and then of the prediction. A model
/// without stored references (none of its kind yet) gives none.
pub fn measure(model: &Model, frame: &Frame, predictions: &[f64]) -> Vec<Drift> {
    let d = frame.names.len();
    let mut out = Vec::with_capacity(model.drift.len());
    for r in &model.drift {
        let (kind, values): (&str, Vec<f64>) = if r.name == t0_model::drift::PREDICTION {
            ("prediction", predictions.to_vec())
        } else if let Some(j) = frame.names.iter().position(|n| *n == r.name) {
            ("feature", (0..frame.rows()).map(|i| frame.x[i * d + j]).collect())
        } else {
            continue;
        };
        out.push(Drift { kind: kind.into(), name: r.name.clone(), psi: r.psi(&values) });
    }
    out
}

/// Each label's drift, in label order.
pub type Labelled = [(String, Drift)];

/// Write the drift of every label to the Parquet at `path` (label, kind, name, psi, rows);
/// `rows` gives each label's scored row count.
pub fn write(path: &std::path::Path, drift: &Labelled, rows: &dyn Fn(&str) -> u64) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("psi", DataType::Float64, false),
        Field::new("rows", DataType::Int64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(drift.iter().map(|(l, _)| l.as_str()))),
        Arc::new(StringArray::from_iter_values(drift.iter().map(|(_, x)| x.kind.as_str()))),
        Arc::new(StringArray::from_iter_values(drift.iter().map(|(_, x)| x.name.as_str()))),
        Arc::new(Float64Array::from_iter_values(drift.iter().map(|(_, x)| x.psi))),
        Arc::new(Int64Array::from_iter_values(drift.iter().map(|(l, _)| rows(l) as i64))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).ctx(|| "drift batch".into())?;
    t0_table::write_parquet(path, schema, &[batch])
}

/// Insert the run's rows into the catalog's `drift` table.
pub fn record(
    catalog: &Catalog,
    run_id: &str,
    model_run: &str,
    drift: &Labelled,
    rows: &dyn Fn(&str) -> u64,
) -> Result<()> {
    let mut stmt = catalog
        .conn()
        .prepare("INSERT INTO drift VALUES (?, ?, ?, ?, ?, ?, ?)")
        .ctx(|| "prepare drift insert".into())?;
    for (label, x) in drift {
        stmt.execute(t0_catalog::duckdb::params![run_id, model_run, label, x.kind, x.name, x.psi, rows(label) as i64])
            .ctx(|| "record drift".into())?;
    }
    Ok(())
}

/// The Prometheus text export: one series per (label, feature) and per label's prediction,
/// never a run id.
pub fn prom(drift: &Labelled) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut s = String::new();
    s.push_str("# HELP t0clip_feature_psi Population stability index of a feature against the training block.\n");
    s.push_str("# TYPE t0clip_feature_psi gauge\n");
    for (label, x) in drift.iter().filter(|(_, x)| x.kind == "feature") {
        s.push_str(&format!("t0clip_feature_psi{{label=\"{}\",feature=\"{}\"}} {}\n", esc(label), esc(&x.name), x.psi));
    }
    s.push_str(
        "# HELP t0clip_prediction_psi Population stability index of the prediction against the training block.\n",
    );
    s.push_str("# TYPE t0clip_prediction_psi gauge\n");
    for (label, x) in drift.iter().filter(|(_, x)| x.kind == "prediction") {
        s.push_str(&format!("t0clip_prediction_psi{{label=\"{}\"}} {}\n", esc(label), x.psi));
    }
    s
}

/// Where the drift of a score run goes.
pub fn rel(run_id: &str) -> String {
    format!("lake/predictions/{run_id}/drift.parquet")
}

/// The latest export for a textfile collector, replaced by every score run.
pub const METRICS: &str = "metrics/score.prom";

/// Write the metrics file.
pub fn export(root: &Root, drift: &Labelled) -> Result<()> {
    t0_core::fsio::write_atomic(&root.join(METRICS), prom(drift).as_bytes())
}
