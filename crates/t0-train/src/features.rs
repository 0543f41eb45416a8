//! Choosing the feature columns of a training run and fitting their categorical levels; the
//! frame itself (reading and encoding, the same for training and scoring) is the served
//! model's (`t0-model`'s `features`).

use std::collections::BTreeMap;

use arrow::datatypes::DataType;
use t0_catalog::Catalog;
use t0_core::{Error, Result};
use t0_project::Project;

pub use t0_model::features::*;

/// What a training run selects from its sources: column specs without fitted levels, and the
/// columns skipped with the reason.
pub struct Selection {
    pub columns: Vec<ColumnSpec>,
    pub skipped: Vec<String>,
}

/// Choose the feature columns of `sources` under the project's declaration. Refuses (exit 2,
/// naming project.yaml and the line) an exclusion or transform that names no column, and
/// stops (exit 1) on a leakage column that would be selected.
///
/// Long because: one pass over every source column deciding keep / skip (with the reason) /
/// refuse, with the declaration's rules applied in a fixed order that the skip reasons report.
pub fn select(catalog: &Catalog, project: &Project, sources: &[Source]) -> Result<Selection> {
    let f = &project.def.features;
    let (pfile, ptext) = (project.display(t0_project::PROJECT_FILE), project.yaml.as_str());
    let config_err = |needle: &str, msg: String| {
        let from = t0_project::def::key_line(ptext, "features");
        Error::config(&pfile, format!("line {}: {msg}", t0_project::def::line_of(ptext, from, needle)))
    };
    let leakage = project.def.leakage();
    let mut columns: Vec<ColumnSpec> = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut used_names: Vec<String> = Vec::new();
    let mut fused_flags_taken = false;
    for s in sources {
        let schema = schema_of(catalog, &s.path)?;
        let is_embedding_output = s.output.starts_with("embeddings.") || s.output.starts_with("fused.");
        let is_fused = s.output.starts_with("fused.");
        for field in schema.fields() {
            let col = field.name();
            if col == "entity_id" || col == "t0" {
                continue;
            }
            // A fused manifest's strategy is constant and its modality list repeats the
            // has_<modality> flags, which are features.
            if is_fused && (col == "strategy" || col == "modalities") {
                continue;
            }
            // Every fused output of one embed run carries the same has_<modality> flags:
            // they are taken from the first.
            if is_fused && col.starts_with("has_") && fused_flags_taken {
                continue;
            }
            let qualified = format!("{}.{col}", short(&s.output));
            if !is_embedding_output && (f.exclude.contains(col) || f.exclude.contains(&qualified)) {
                used_names.push(col.clone());
                used_names.push(qualified);
                continue;
            }
            // An embedding output's vector column is named after the embedding (a fused one
            // `fused_<strategy>`); its other columns keep their names.
            let name = match (is_embedding_output, is_fused, col.as_str()) {
                (true, false, _) => short(&s.output).to_string(),
                (true, true, "embedding") => format!("fused_{}", short(&s.output)),
                _ => col.clone(),
            };
            if leakage.contains(&name) {
                return Err(Error::Gate(format!(
                    "leakage: column {name:?} of {} is a label or listed under features.leakage, and it is selected as a feature; exclude it (features.exclude in {pfile})",
                    s.output
                )));
            }
            let kind = match field.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _) => {
                    ColumnKind::Numeric { transform: f.transforms.get(&name).copied().unwrap_or_default() }
                }
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => {
                    ColumnKind::Categorical { levels: Vec::new() }
                }
                DataType::FixedSizeList(item, n) if item.data_type().is_floating() => {
                    ColumnKind::Embedding { dim: *n as usize }
                }
                // Parquet keeps a vector as a list: its length is the longest one stored.
                DataType::List(item) | DataType::LargeList(item) if item.data_type().is_floating() => {
                    let sql =
                        format!("SELECT coalesce(max(len({})), 0) FROM read_parquet({})", quoted(col), lit(&s.path));
                    let dim: i64 = catalog
                        .conn()
                        .query_row(&sql, [], |r| r.get(0))
                        .map_err(|e| Error::internal(format!("vector length of {qualified}"), e))?;
                    ColumnKind::Embedding { dim: dim as usize }
                }
                other => {
                    skipped.push(format!(
                        "{qualified}: type {other} is not a feature kind (numbers, text, booleans, float vectors)"
                    ));
                    continue;
                }
            };
            if let Some(prev) = seen.insert(name.clone(), s.output.clone()) {
                return Err(config_err(
                    "exclude",
                    format!(
                        "column {name:?} comes from both {prev} and {}: exclude one (features.exclude: [{}.{name}])",
                        s.output,
                        short(&s.output)
                    ),
                ));
            }
            used_names.push(name.clone());
            if !is_embedding_output {
                used_names.push(qualified);
            }
            columns.push(ColumnSpec { source: s.output.clone(), column: name, kind });
        }
        fused_flags_taken |= is_fused;
    }
    for e in &f.exclude {
        if !used_names.contains(e) {
            return Err(config_err(e, format!("features.exclude names {e:?}, which no selected surface has")));
        }
    }
    for t in f.transforms.keys() {
        if !columns.iter().any(|c| &c.column == t && matches!(c.kind, ColumnKind::Numeric { .. })) {
            return Err(config_err(
                t,
                format!("features.transforms names {t:?}, which is not a numeric feature column"),
            ));
        }
    }
    if columns.is_empty() {
        return Err(config_err("surfaces", "no feature column is left in the selected surfaces".into()));
    }
    Ok(Selection { columns, skipped })
}

/// Fit the categorical levels of `specs` on the rows `train` (most frequent first, ties by
/// value, at most `max_levels`).
pub fn fit_levels(raw: &Raw, specs: &mut [ColumnSpec], train: &[usize], max_levels: usize) {
    for (spec, (_, _, col)) in specs.iter_mut().zip(&raw.cols) {
        if let (ColumnKind::Categorical { levels }, RawCol::Cat(v)) = (&mut spec.kind, col) {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for &i in train {
                if let Some(s) = &v[i] {
                    *counts.entry(s.as_str()).or_default() += 1;
                }
            }
            let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            *levels = by_count.into_iter().take(max_levels).map(|(s, _)| s.to_string()).collect();
        }
    }
}
