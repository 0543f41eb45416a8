//! The model's view of the certified surfaces: one numeric row per (entity, T0), built the
//! same way for training and scoring so train and serve cannot drift apart.

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use t0_catalog::Catalog;
use t0_core::{Error, Result};

/// Surface columns used as features, with the SQL that derives each from `b` (surface.base).
pub const BASE_FEATURES: &[(&str, &str)] = &[
    ("log_views_t0", "ln(1 + coalesce(b.views_t0, 0))"),
    ("log_likes_t0", "ln(1 + coalesce(b.likes_t0, 0))"),
    ("log_comments_t0", "ln(1 + coalesce(b.comments_t0, 0))"),
    ("n_snapshots", "CAST(b.n_snapshots AS DOUBLE)"),
    ("hours_since_last", "coalesce(b.hours_since_last, 0)"),
    ("log_views_per_hour", "ln(1 + coalesce(b.views_per_hour, 0))"),
    ("log_channel_clips", "ln(1 + b.channel_clips)"),
];

pub fn feature_names(emb_dim: usize) -> Vec<String> {
    BASE_FEATURES.iter().map(|(n, _)| n.to_string()).chain((0..emb_dim).map(|i| format!("text_{i:02}"))).collect()
}

#[derive(Debug, Default)]
pub struct Frame {
    pub entity_id: Vec<String>,
    /// T0 in microseconds since the epoch (UTC).
    pub t0: Vec<i64>,
    /// Row-major features, `names.len()` per row.
    pub x: Vec<f64>,
    pub y: Option<Vec<f64>>,
    pub names: Vec<String>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.entity_id.len()
    }
    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.names.len();
        &self.x[i * d..(i + 1) * d]
    }
}

fn lit(path: &std::path::Path) -> String {
    t0_catalog::quote_literal(&path.display().to_string())
}

/// Join surface.base and the text embeddings (and labels when given, keeping matured rows
/// only) into a frame ordered by (t0, entity_id). `where_sql` filters on `b`.
pub fn load(
    catalog: &Catalog,
    base: &std::path::Path,
    embeddings: &std::path::Path,
    labels: Option<&std::path::Path>,
    emb_dim: usize,
    where_sql: &str,
) -> Result<Frame> {
    let mut cols: Vec<String> = BASE_FEATURES.iter().map(|(n, e)| format!("{e} AS {n}")).collect();
    cols.extend((0..emb_dim).map(|i| format!("CAST(e.embedding[{}] AS DOUBLE) AS text_{i:02}", i + 1)));
    let (label_col, label_join) = match labels {
        Some(l) => (
            ", l.y_log_views AS y".to_string(),
            format!(
                "JOIN read_parquet({}) l ON l.entity_id = b.entity_id AND l.t0 = b.t0 AND l.y_log_views IS NOT NULL",
                lit(l)
            ),
        ),
        None => (String::new(), String::new()),
    };
    let sql = format!(
        "SELECT b.entity_id, b.t0, {cols}{label_col}
         FROM read_parquet({base}) b
         JOIN read_parquet({emb}) e ON e.entity_id = b.entity_id AND e.t0 = b.t0
         {label_join}
         WHERE {where_sql}
         ORDER BY b.t0, b.entity_id",
        cols = cols.join(", "),
        base = lit(base),
        emb = lit(embeddings),
    );
    let (_, batches) = catalog.query_arrow(&sql, &[])?;
    let names = feature_names(emb_dim);
    let mut f = Frame { names: names.clone(), y: labels.map(|_| Vec::new()), ..Default::default() };
    let bad = |m: &str| Error::Refused(format!("feature frame: {m}"));
    for b in &batches {
        let ids = b.column(0).as_string_opt::<i32>().ok_or_else(|| bad("entity_id is not text"))?;
        let t0 =
            cast(b.column(1), &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(|e| bad(&e.to_string()))?;
        let t0 = t0.as_primitive::<TimestampMicrosecondType>();
        let feats: Vec<_> = (0..names.len())
            .map(|j| cast(b.column(2 + j), &DataType::Float64).map_err(|e| bad(&e.to_string())))
            .collect::<Result<_>>()?;
        let y = match labels {
            Some(_) => Some(cast(b.column(2 + names.len()), &DataType::Float64).map_err(|e| bad(&e.to_string()))?),
            None => None,
        };
        for i in 0..b.num_rows() {
            f.entity_id.push(ids.value(i).to_string());
            f.t0.push(t0.value(i));
            for c in &feats {
                let c = c.as_primitive::<Float64Type>();
                // A NULL or non-finite feature becomes 0 (the standardised mean is near it).
                let v = if c.is_valid(i) { c.value(i) } else { 0.0 };
                f.x.push(if v.is_finite() { v } else { 0.0 });
            }
            if let (Some(y), Some(out)) = (&y, f.y.as_mut()) {
                out.push(y.as_primitive::<Float64Type>().value(i));
            }
        }
    }
    Ok(f)
}
