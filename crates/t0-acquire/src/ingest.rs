//! CSV ingest into the canonical tables: strict per-cell parsing, quarantine with (file, row,
//! column, reason), an immutable typed landing copy in Parquet, and versioned inserts.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use duckdb::params;
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Clock, Error, Result, Root};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColType {
    Str,
    /// A non-negative count.
    Count,
    Float,
    Time,
}

pub struct TableSpec {
    pub table: &'static str,
    /// (column, type, required)
    pub columns: &'static [(&'static str, ColType, bool)],
    /// Columns that identify one fact; a changed fact becomes a new version.
    pub key: &'static [&'static str],
}

pub const SPECS: &[TableSpec] = &[
    TableSpec {
        table: "entities",
        columns: &[
            ("entity_id", ColType::Str, true),
            ("kind", ColType::Str, true),
            ("parent_id", ColType::Str, false),
            ("created_at", ColType::Time, true),
        ],
        key: &["entity_id"],
    },
    TableSpec {
        table: "observations",
        columns: &[
            ("entity_id", ColType::Str, true),
            ("observed_at", ColType::Time, true),
            ("views", ColType::Count, false),
            ("likes", ColType::Count, false),
            ("comments", ColType::Count, false),
        ],
        key: &["entity_id", "observed_at"],
    },
    TableSpec {
        table: "events",
        columns: &[
            ("entity_id", ColType::Str, true),
            ("event_type", ColType::Str, true),
            ("value", ColType::Float, false),
            ("observed_at", ColType::Time, true),
        ],
        key: &["entity_id", "event_type", "observed_at"],
    },
    TableSpec {
        table: "artifacts",
        columns: &[
            ("entity_id", ColType::Str, true),
            ("kind", ColType::Str, true),
            ("text", ColType::Str, false),
            ("path", ColType::Str, false),
            ("observed_at", ColType::Time, true),
        ],
        key: &["entity_id", "kind"],
    },
];

pub fn spec(table: &str) -> Option<&'static TableSpec> {
    SPECS.iter().find(|s| s.table == table)
}

impl TableSpec {
    /// The column that carries `observed_at` (entities are observed when created).
    fn observed_col(&self) -> &'static str {
        if self.table == "entities" { "created_at" } else { "observed_at" }
    }
}

/// How `available_at` is derived for a source (DESIGN.md "Time: two clocks").
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    IngestTime,
    ObservedTime,
    ObservedPlus { seconds: i64 },
}

impl Availability {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        match s {
            "ingest_time" => return Some(Availability::IngestTime),
            "observed_time" => return Some(Availability::ObservedTime),
            _ => {}
        }
        let lag = s.strip_prefix("observed_time")?.trim().strip_prefix('+')?.trim();
        let (num, unit) = lag.split_at(lag.find(|c: char| !c.is_ascii_digit())?);
        let n: i64 = num.parse().ok()?;
        let mult = match unit.trim() {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        Some(Availability::ObservedPlus { seconds: n * mult })
    }

    fn sql(&self, clock: &Clock) -> String {
        match self {
            Availability::IngestTime => format!("TIMESTAMP '{}'", clock.stamp().trim_end_matches('Z')),
            Availability::ObservedTime => "observed_at".into(),
            Availability::ObservedPlus { seconds } => format!("observed_at + INTERVAL {seconds} SECOND"),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    pub table: String,
    pub file: String,
    pub batch_id: String,
    pub file_hash: String,
    pub skipped_already_ingested: bool,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
}

struct Quarantined {
    row: u64,
    column: Option<String>,
    reason: String,
    raw: String,
}

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Time(TimestampMicrosecondBuilder),
}

/// Parse one cell; `Err(reason)` quarantines the row.
fn parse_cell(t: ColType, raw: &str) -> std::result::Result<Option<Cell>, String> {
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match t {
        ColType::Str => Ok(Some(Cell::Str(v.to_string()))),
        ColType::Count => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(format!("negative count {n}")),
            Ok(n) => Ok(Some(Cell::Int(n))),
            Err(_) => Err(format!("not an integer: {v:?}")),
        },
        ColType::Float => match v.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(Cell::Float(f))),
            Ok(_) => Err(format!("not a finite number: {v:?}")),
            Err(_) => Err(format!("not a number: {v:?}")),
        },
        ColType::Time => t0_core::clock::parse_utc(v)
            .map(|t| Some(Cell::Time(t.timestamp_micros())))
            .ok_or_else(|| format!("not a timestamp: {v:?}")),
    }
}

enum Cell {
    Str(String),
    Int(i64),
    Float(f64),
    Time(i64),
}

/// Ingest one CSV file into `spec.table`. A file whose bytes were ingested before is skipped.
#[allow(clippy::too_many_arguments)]
pub fn ingest_csv(
    root: &Root,
    catalog: &Catalog,
    clock: &Clock,
    source: &str,
    spec: &TableSpec,
    availability: &Availability,
    file: &Path,
) -> Result<FileReport> {
    let bytes = t0_core::fsio::read(file).map_err(|e| Error::BadInput(e.to_string()))?;
    let file_hash = t0_core::blake3_hex(&bytes);
    let batch_id = format!("{}-{}", spec.table, &file_hash[..16]);
    let mut report = FileReport {
        table: spec.table.into(),
        file: file.display().to_string(),
        batch_id: batch_id.clone(),
        file_hash: file_hash.clone(),
        ..Default::default()
    };
    let seen: i64 = catalog
        .conn()
        .query_row("SELECT count(*) FROM ingest_batches WHERE batch_id = ?", params![batch_id], |r| r.get(0))
        .ctx(|| "ingest_batches lookup".into())?;
    if seen > 0 {
        report.skipped_already_ingested = true;
        return Ok(report);
    }

    let bad_file = |msg: String| Error::BadInput(format!("{}: {msg}", file.display()));
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let header = rdr.headers().map_err(|e| bad_file(format!("cannot read the header: {e}")))?.clone();
    let mut positions = Vec::new();
    for (name, _, required) in spec.columns {
        let pos = header.iter().position(|h| h.trim() == *name);
        if pos.is_none() && *required {
            return Err(bad_file(format!(
                "missing required column {name:?} (header has: {})",
                header.iter().collect::<Vec<_>>().join(", ")
            )));
        }
        positions.push(pos);
    }

    let mut cols: Vec<Col> = spec
        .columns
        .iter()
        .map(|(_, t, _)| match t {
            ColType::Str => Col::Str(StringBuilder::new()),
            ColType::Count => Col::Int(Int64Builder::new()),
            ColType::Float => Col::Float(Float64Builder::new()),
            ColType::Time => Col::Time(TimestampMicrosecondBuilder::new()),
        })
        .collect();
    let mut row_numbers = Int64Builder::new();
    let mut quarantine = Vec::new();
    let mut keys_seen: HashSet<Vec<u8>> = HashSet::new();
    let key_idx: Vec<usize> =
        spec.key.iter().map(|k| spec.columns.iter().position(|(c, _, _)| c == k).expect("key is a column")).collect();

    for (i, rec) in rdr.byte_records().enumerate() {
        // Line 1 is the header, so data row i sits on line i + 2.
        let line = i as u64 + 2;
        report.rows_read += 1;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                quarantine.push(Quarantined {
                    row: line,
                    column: None,
                    reason: format!("unreadable row: {e}"),
                    raw: String::new(),
                });
                continue;
            }
        };
        let raw = String::from_utf8_lossy(rec.as_slice()).into_owned();
        if rec.len() != header.len() {
            quarantine.push(Quarantined {
                row: line,
                column: None,
                reason: format!("ragged row: {} fields, header has {}", rec.len(), header.len()),
                raw,
            });
            continue;
        }
        let mut cells = Vec::with_capacity(spec.columns.len());
        let mut problem = None;
        for ((name, t, required), pos) in spec.columns.iter().zip(&positions) {
            let field = match pos {
                Some(p) => match std::str::from_utf8(&rec[*p]) {
                    Ok(s) => s,
                    Err(_) => {
                        problem = Some((name, "invalid UTF-8".to_string()));
                        break;
                    }
                },
                None => "",
            };
            match parse_cell(*t, field) {
                Ok(None) if *required => {
                    problem = Some((name, "required value is empty".into()));
                    break;
                }
                Ok(c) => cells.push(c),
                Err(reason) => {
                    problem = Some((name, reason));
                    break;
                }
            }
        }
        if let Some((col, reason)) = problem {
            quarantine.push(Quarantined { row: line, column: Some(col.to_string()), reason, raw });
            continue;
        }
        let mut key = Vec::new();
        for &k in &key_idx {
            match &cells[k] {
                Some(Cell::Str(s)) => key.extend_from_slice(s.as_bytes()),
                Some(Cell::Time(t)) => key.extend_from_slice(&t.to_le_bytes()),
                _ => {}
            }
            key.push(0);
        }
        if !keys_seen.insert(key) {
            quarantine.push(Quarantined {
                row: line,
                column: None,
                reason: format!("duplicate key ({}) within the file", spec.key.join(", ")),
                raw,
            });
            continue;
        }
        for (col, cell) in cols.iter_mut().zip(cells) {
            match (col, cell) {
                (Col::Str(b), Some(Cell::Str(v))) => b.append_value(v),
                (Col::Int(b), Some(Cell::Int(v))) => b.append_value(v),
                (Col::Float(b), Some(Cell::Float(v))) => b.append_value(v),
                (Col::Time(b), Some(Cell::Time(v))) => b.append_value(v),
                (Col::Str(b), None) => b.append_null(),
                (Col::Int(b), None) => b.append_null(),
                (Col::Float(b), None) => b.append_null(),
                (Col::Time(b), None) => b.append_null(),
                _ => unreachable!("cell type follows column type"),
            }
        }
        row_numbers.append_value(line as i64);
    }

    // Immutable typed landing copy of the accepted rows, with their source line numbers.
    let mut fields: Vec<Field> = spec
        .columns
        .iter()
        .map(|(n, t, _)| {
            let dt = match t {
                ColType::Str => DataType::Utf8,
                ColType::Count => DataType::Int64,
                ColType::Float => DataType::Float64,
                ColType::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
            };
            Field::new(*n, dt, true)
        })
        .collect();
    fields.push(Field::new("source_line", DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut arrays: Vec<ArrayRef> = cols
        .into_iter()
        .map(|c| -> ArrayRef {
            match c {
                Col::Str(mut b) => Arc::new(b.finish()),
                Col::Int(mut b) => Arc::new(b.finish()),
                Col::Float(mut b) => Arc::new(b.finish()),
                Col::Time(mut b) => Arc::new(b.finish()),
            }
        })
        .collect();
    arrays.push(Arc::new(row_numbers.finish()));
    let batch = RecordBatch::try_new(schema.clone(), arrays).ctx(|| "landing batch".into())?;
    let landing = root.join(format!("lake/raw/{source}/{batch_id}.parquet"));
    t0_table::write_parquet(&landing, schema, &[batch])?;

    let insert_cols: Vec<&str> = spec.columns.iter().map(|(c, _, _)| *c).collect();
    let observed = spec.observed_col();
    let select_cols = insert_cols.join(", ");
    let key_match = spec.key.iter().map(|k| format!("c.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
    let same_values =
        insert_cols.iter().map(|c| format!("c.{c} IS NOT DISTINCT FROM s.{c}")).collect::<Vec<_>>().join(" AND ");
    let partition = spec.key.join(", ");
    let avail = availability.sql(clock).replace("observed_at", &format!("s.{observed}"));
    let (target_cols, observed_expr) = if spec.table == "entities" {
        (format!("{select_cols}, observed_at"), format!(", s.{observed}"))
    } else {
        (select_cols.clone(), String::new())
    };
    let s_cols = insert_cols.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
    // A fact identical to the current version of its key is unchanged; a different one
    // becomes version max + 1. Nothing is overwritten.
    let sql = format!(
        "INSERT INTO {table} ({target_cols}, available_at, version, batch_id)
         SELECT {s_cols}{observed_expr}, {avail},
                coalesce((SELECT max(c.version) FROM {table} c WHERE {key_match}), 0) + 1, ?
         FROM read_parquet(?) s
         WHERE NOT EXISTS (
             SELECT 1 FROM (SELECT * FROM {table} QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY version DESC) = 1) c
             WHERE {key_match} AND {same_values})",
        table = spec.table,
    );
    let landing_str = landing.display().to_string();
    let rel_landing = root.relative(&landing);
    let accepted = report.rows_read - quarantine.len() as u64;
    report.rows_quarantined = quarantine.len() as u64;
    let file_str = file.display().to_string();
    let now = clock.stamp();
    catalog.transaction(|c| {
        let inserted = c
            .execute(&sql, params![batch_id, landing_str])
            .ctx(|| format!("insert {} from {}", spec.table, file.display()))?;
        report.rows_ingested = inserted as u64;
        report.rows_unchanged = accepted - inserted as u64;
        let mut app = c.appender("quarantine").ctx(|| "quarantine appender".into())?;
        for q in &quarantine {
            app.append_row(params![batch_id, file_str, q.row as i64, q.column, q.reason, q.raw])
                .ctx(|| "quarantine row".into())?;
        }
        app.flush().ctx(|| "quarantine flush".into())?;
        drop(app);
        c.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            params![
                batch_id,
                source,
                file_str,
                file_hash,
                report.rows_read as i64,
                report.rows_ingested as i64,
                report.rows_quarantined as i64,
                rel_landing,
                now.trim_end_matches('Z')
            ],
        )
        .ctx(|| "record ingest batch".into())?;
        Ok(())
    })?;
    Ok(report)
}
