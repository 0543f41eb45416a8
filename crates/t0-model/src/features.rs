//! The model's view of the certified surfaces, built the same way for training and scoring so
//! train and serve cannot drift apart. What feeds the model is the project's `features:`
//! declaration; nothing here names a column of any domain.
//!
//! Every column of the selected surfaces (joined on entity_id, t0) is a feature unless
//! excluded. Its kind comes from its Arrow type: numbers are numeric (optionally transformed,
//! standardised, a missing value imputed with the training mean), text and booleans are
//! categorical (one indicator per level among the `max_levels` most frequent training levels,
//! plus `other`), float lists are embeddings (one feature per dimension). Other types are
//! reported as skipped, never silently dropped.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, SchemaRef, TimeUnit, TimestampMicrosecondType};
use serde::{Deserialize, Serialize};
use t0_catalog::Catalog;
use t0_core::{Error, Result};
use t0_project::Transform;

/// One input of the frame: a certified surface or an embedding output, by its manifest output
/// name (`surface.base`, `embeddings.text`), and the file it was verified at.
#[derive(Debug, Clone)]
pub struct Source {
    pub output: String,
    pub path: std::path::PathBuf,
}

/// How one source column becomes features (recorded in the model, replayed by score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric { transform: Transform },
    Categorical { levels: Vec<String> },
    Embedding { dim: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Manifest output the column comes from.
    pub source: String,
    pub column: String,
    #[serde(flatten)]
    pub kind: ColumnKind,
}

impl ColumnSpec {
    /// The column of the source file this spec reads (`embedding` for a vector source).
    pub fn source_column(&self) -> &str {
        let vector = self.source.starts_with("embeddings.")
            || (self.source.starts_with("fused.") && matches!(self.kind, ColumnKind::Embedding { .. }));
        if vector { "embedding" } else { &self.column }
    }
    /// The names of the features this column expands to.
    pub fn feature_names(&self) -> Vec<String> {
        match &self.kind {
            ColumnKind::Numeric { .. } => vec![self.column.clone()],
            ColumnKind::Categorical { levels } => levels
                .iter()
                .map(|l| format!("{}={l}", self.column))
                .chain(std::iter::once(format!("{}=other", self.column)))
                .collect(),
            ColumnKind::Embedding { dim } => (0..*dim).map(|i| format!("{}_{i:02}", self.column)).collect(),
        }
    }
}

/// A column as read: numbers, text levels or vectors, `None` when NULL.
#[derive(Debug)]
pub enum RawCol {
    Num(Vec<Option<f64>>),
    Cat(Vec<Option<String>>),
    Emb(Vec<Option<Vec<f64>>>),
}

/// The joined rows, ordered by (t0, entity_id), before encoding.
#[derive(Debug, Default)]
pub struct Raw {
    pub entity_id: Vec<String>,
    /// T0 in microseconds since the epoch (UTC).
    pub t0: Vec<i64>,
    /// (source, column, values) for every column read.
    pub cols: Vec<(String, String, RawCol)>,
    /// Label columns read (NULL: not matured), as numbers (booleans 0/1).
    pub labels: Vec<(String, Vec<Option<f64>>)>,
}

#[derive(Debug, Default)]
pub struct Frame {
    pub entity_id: Vec<String>,
    pub t0: Vec<i64>,
    /// Row-major features, `names.len()` per row; NaN where a numeric value is missing.
    pub x: Vec<f64>,
    pub labels: Vec<(String, Vec<Option<f64>>)>,
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
    pub fn label(&self, name: &str) -> Option<&[Option<f64>]> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// The label columns to read with the features: the file, the columns, and those of which
/// one must be known (non-NULL) for a row to be kept.
pub struct LabelRead<'a> {
    pub path: &'a std::path::Path,
    pub columns: &'a [String],
    pub any_of: &'a [String],
}

pub fn lit(path: &std::path::Path) -> String {
    t0_catalog::quote_literal(&path.display().to_string())
}

pub fn quoted(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// The short name of a source (`surface.base` -> `base`).
pub fn short(output: &str) -> &str {
    output.split_once('.').map(|(_, s)| s).unwrap_or(output)
}

/// Schema of a Parquet file (no rows read).
pub fn schema_of(catalog: &Catalog, path: &std::path::Path) -> Result<SchemaRef> {
    Ok(catalog.query_arrow(&format!("SELECT * FROM read_parquet({}) LIMIT 0", lit(path)), &[])?.0)
}

/// Read the columns of `specs` from their sources (and label columns, keeping the rows whose
/// required label is matured), joined on (entity_id, t0), ordered by (t0, entity_id).
/// `where_sql` filters on the first source, aliased `s0`.
pub fn load(
    catalog: &Catalog,
    sources: &[Source],
    specs: &[ColumnSpec],
    labels: Option<LabelRead>,
    where_sql: &str,
) -> Result<Raw> {
    let alias = |output: &str| sources.iter().position(|s| s.output == output).map(|i| format!("s{i}"));
    let mut select = vec!["s0.entity_id".to_string(), "s0.t0".to_string()];
    for c in specs {
        let a = alias(&c.source).ok_or_else(|| {
            Error::Refused(format!("feature column {} needs {}, which is not an input", c.column, c.source))
        })?;
        select.push(format!("{a}.{}", quoted(c.source_column())));
    }
    let mut joins = String::new();
    for (i, s) in sources.iter().enumerate().skip(1) {
        joins.push_str(&format!(
            " JOIN read_parquet({}) s{i} ON s{i}.entity_id = s0.entity_id AND s{i}.t0 = s0.t0",
            lit(&s.path)
        ));
    }
    if let Some(l) = &labels {
        for c in l.columns {
            select.push(format!("CAST(l.{} AS DOUBLE)", quoted(c)));
        }
        let known = l.any_of.iter().map(|c| format!("l.{} IS NOT NULL", quoted(c))).collect::<Vec<_>>().join(" OR ");
        joins.push_str(&format!(
            " JOIN read_parquet({}) l ON l.entity_id = s0.entity_id AND l.t0 = s0.t0 AND ({known})",
            lit(l.path),
        ));
    }
    let sql = format!(
        "SELECT {} FROM read_parquet({}) s0{joins} WHERE {where_sql} ORDER BY s0.t0, s0.entity_id",
        select.join(", "),
        lit(&sources[0].path)
    );
    let (_, batches) = catalog.query_arrow(&sql, &[])?;
    let bad = |m: String| Error::Refused(format!("feature frame: {m}"));
    let mut raw = Raw {
        cols: specs
            .iter()
            .map(|c| {
                let col = match c.kind {
                    ColumnKind::Numeric { .. } => RawCol::Num(Vec::new()),
                    ColumnKind::Categorical { .. } => RawCol::Cat(Vec::new()),
                    ColumnKind::Embedding { .. } => RawCol::Emb(Vec::new()),
                };
                (c.source.clone(), c.column.clone(), col)
            })
            .collect(),
        labels: labels
            .as_ref()
            .map(|l| l.columns.iter().map(|c| (c.clone(), Vec::new())).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    for b in &batches {
        let ids = b.column(0).as_string_opt::<i32>().ok_or_else(|| bad("entity_id is not text".into()))?;
        let t0 =
            cast(b.column(1), &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(|e| bad(e.to_string()))?;
        let t0 = t0.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            raw.entity_id.push(ids.value(i).to_string());
            raw.t0.push(t0.value(i));
        }
        for (j, (_, name, col)) in raw.cols.iter_mut().enumerate() {
            push_column(col, b.column(2 + j)).map_err(|e| bad(format!("column {name}: {e}")))?;
        }
        for (k, (_, y)) in raw.labels.iter_mut().enumerate() {
            let c = cast(b.column(2 + specs.len() + k), &DataType::Float64).map_err(|e| bad(e.to_string()))?;
            let c = c.as_primitive::<Float64Type>();
            y.extend((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i))));
        }
    }
    Ok(raw)
}

fn push_column(col: &mut RawCol, a: &ArrayRef) -> std::result::Result<(), String> {
    match col {
        RawCol::Num(v) => {
            let c = cast(a, &DataType::Float64).map_err(|e| e.to_string())?;
            let c = c.as_primitive::<Float64Type>();
            v.extend((0..c.len()).map(|i| (c.is_valid(i) && c.value(i).is_finite()).then(|| c.value(i))));
        }
        RawCol::Cat(v) => {
            let c = cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
            let c = c.as_string::<i32>();
            v.extend((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_string())));
        }
        RawCol::Emb(v) => {
            let value = |i: usize| -> Option<ArrayRef> {
                if a.is_null(i) {
                    None
                } else if let Some(l) = a.as_fixed_size_list_opt() {
                    Some(l.value(i))
                } else {
                    a.as_list_opt::<i32>().map(|l| l.value(i))
                }
            };
            if a.as_fixed_size_list_opt().is_none() && a.as_list_opt::<i32>().is_none() {
                return Err(format!("{} is not a float vector", a.data_type()));
            }
            for i in 0..a.len() {
                let Some(item) = value(i) else {
                    v.push(None);
                    continue;
                };
                let item = cast(&item, &DataType::Float64).map_err(|e| e.to_string())?;
                let item = item.as_primitive::<Float64Type>();
                v.push(Some((0..item.len()).map(|k| item.value(k)).collect()));
            }
        }
    }
    Ok(())
}

/// Encode `raw` under `specs` into a numeric frame.
pub fn encode(raw: Raw, specs: &[ColumnSpec]) -> Frame {
    let names: Vec<String> = specs.iter().flat_map(|s| s.feature_names()).collect();
    let n = raw.entity_id.len();
    let mut x = Vec::with_capacity(n * names.len());
    for i in 0..n {
        for (spec, (_, _, col)) in specs.iter().zip(&raw.cols) {
            match (&spec.kind, col) {
                (ColumnKind::Numeric { transform }, RawCol::Num(v)) => {
                    x.push(v[i].and_then(|v| transform.apply(v)).filter(|v| v.is_finite()).unwrap_or(f64::NAN))
                }
                (ColumnKind::Categorical { levels }, RawCol::Cat(v)) => {
                    let hit = v[i].as_ref().map(|s| levels.iter().position(|l| l == s).unwrap_or(levels.len()));
                    x.extend((0..=levels.len()).map(|k| if hit == Some(k) { 1.0 } else { 0.0 }));
                }
                (ColumnKind::Embedding { dim }, RawCol::Emb(v)) => match &v[i] {
                    Some(e) => x.extend((0..*dim).map(|k| e.get(k).copied().unwrap_or(f64::NAN))),
                    None => x.extend(std::iter::repeat_n(f64::NAN, *dim)),
                },
                _ => unreachable!("raw columns are read by their spec's kind"),
            }
        }
    }
    Frame { entity_id: raw.entity_id, t0: raw.t0, x, labels: raw.labels, names }
}
