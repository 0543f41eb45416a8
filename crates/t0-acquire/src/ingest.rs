//! One source file into one canonical table, in chunks: parse and validate each cell,
//! quarantine bad rows with (file, row, column, reason), land the accepted rows as an
//! immutable Parquet part, and insert them as new versions. Each chunk commits with a
//! checkpoint, so a killed ingest resumes where it stopped without duplicating rows.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use duckdb::{OptionalExt, params};
use t0_catalog::{Catalog, quote_literal};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};

use crate::config::{Availability, SourceConfig, Zone};
use crate::reader::{self, Item};
use crate::split::{Quarantined, Split};
use t0_project::Project;
use t0_project::vocab::{ColType, TableSpec};
pub use t0_source::time::{MAX_TIME, MIN_TIME, in_range, parse_time};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FileReport {
    pub source: String,
    pub table: String,
    pub file: String,
    pub batch_id: String,
    pub file_hash: String,
    pub skipped_already_ingested: bool,
    /// Rows that an earlier, interrupted run had already committed.
    pub resumed_after_row: u64,
    pub chunks: u64,
    pub rows_read: u64,
    pub rows_ingested: u64,
    pub rows_unchanged: u64,
    pub rows_quarantined: u64,
    /// Columns of the file that neither the mapping nor the project reads: not ingested, and
    /// said so (declare them as measures or attributes, or list them under `ignore`).
    pub unread_columns: Vec<String>,
    /// Columns the mapping says to ignore.
    pub ignored_columns: Vec<String>,
    /// Entities first seen in this file (sources with `entities:`).
    pub entities_registered: u64,
    /// Rows of entities in other buckets (`--bucket k/N`): read, left to their buckets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_other_buckets: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub struct Ingest<'a> {
    pub root: &'a Root,
    pub catalog: &'a Catalog,
    pub clock: &'a Clock,
    pub chunk_rows: usize,
    pub progress: &'a dyn Progress,
    pub project: &'a Project,
    /// Batches a finished acquire's manifest records: a file ingested by a run that died
    /// before its manifest is reported again as that run would have reported it.
    pub recorded: &'a std::collections::BTreeSet<String>,
    /// The mapping's hash (`load_config`): with the file's, the key of its split step.
    pub config_hash: &'a str,
}

/// A parsed cell.
enum Cell {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
}

impl Col {
    fn new(t: ColType) -> Self {
        match t {
            ColType::Str => Col::Str(StringBuilder::new()),
            ColType::Count | ColType::Integer => Col::Int(Int64Builder::new()),
            ColType::Float => Col::Float(Float64Builder::new()),
            ColType::Bool => Col::Bool(BooleanBuilder::new()),
            ColType::Time => Col::Time(TimestampMicrosecondBuilder::new()),
        }
    }
    fn push(&mut self, c: Option<Cell>) {
        match (self, c) {
            (Col::Str(b), Some(Cell::Str(v))) => b.append_value(v),
            (Col::Int(b), Some(Cell::Int(v))) => b.append_value(v),
            (Col::Float(b), Some(Cell::Float(v))) => b.append_value(v),
            (Col::Bool(b), Some(Cell::Bool(v))) => b.append_value(v),
            (Col::Time(b), Some(Cell::Time(v))) => b.append_value(v),
            (Col::Str(b), None) => b.append_null(),
            (Col::Int(b), None) => b.append_null(),
            (Col::Float(b), None) => b.append_null(),
            (Col::Bool(b), None) => b.append_null(),
            (Col::Time(b), None) => b.append_null(),
            _ => unreachable!("a cell is parsed by its column's type"),
        }
    }
    fn finish(self) -> ArrayRef {
        match self {
            Col::Str(mut b) => Arc::new(b.finish()),
            Col::Int(mut b) => Arc::new(b.finish()),
            Col::Float(mut b) => Arc::new(b.finish()),
            Col::Bool(mut b) => Arc::new(b.finish()),
            Col::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

fn arrow_type(t: ColType) -> DataType {
    match t {
        ColType::Str => DataType::Utf8,
        ColType::Count | ColType::Integer => DataType::Int64,
        ColType::Float => DataType::Float64,
        ColType::Bool => DataType::Boolean,
        ColType::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

fn parse_cell(t: ColType, raw: &str, src: &SourceConfig, zone: Zone) -> std::result::Result<Cell, String> {
    let v = raw.trim();
    match t {
        // Text is kept as it came (lossless); numbers and times ignore surrounding blanks.
        ColType::Str => Ok(Cell::Str(raw.to_string())),
        ColType::Count => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(format!("negative count {n}")),
            Ok(n) => Ok(Cell::Int(n)),
            Err(_) => Err(format!("not an integer count: {v:?}")),
        },
        ColType::Integer => v.parse::<i64>().map(Cell::Int).map_err(|_| format!("not an integer: {v:?}")),
        ColType::Bool => match v.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" => Ok(Cell::Bool(true)),
            "false" | "f" | "0" | "no" | "n" => Ok(Cell::Bool(false)),
            _ => Err(format!("not a boolean (true/false, 1/0, yes/no): {v:?}")),
        },
        ColType::Float => match v.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Cell::Float(f)),
            Ok(_) => Err(format!("not a finite number: {v:?}")),
            Err(_) => Err(format!("not a number: {v:?}")),
        },
        ColType::Time => parse_time(v, src.timestamp_format.as_deref(), zone).map(Cell::Time),
    }
}

/// The canonical columns this source fills, with their types and whether they are required:
/// the table's role columns and, for observations, the project's measures.
pub fn used_columns(spec: &TableSpec, src: &SourceConfig, project: &Project) -> Vec<(String, ColType, bool)> {
    let by_column = src.availability() == Availability::Column;
    let mut cols: Vec<(String, ColType, bool)> = spec
        .columns
        .iter()
        .filter(|(c, _, _)| *c != "available_at" || by_column)
        .map(|&(c, t, req)| (c.to_string(), t, req || (c == "available_at" && by_column)))
        .map(|(c, t, req)| {
            // An entities source with `entities: {kind}` fills a missing kind itself.
            let fills = spec.table == "entities" && c == "kind" && src.entities.is_some();
            (c, t, req && !fills)
        })
        .collect();
    if spec.table == "observations" {
        cols.extend(project.measures().iter().map(|m| (m.name.clone(), m.ty.col_type(), m.required)));
    }
    cols
}

fn stream_hash(file: &Path) -> Result<String> {
    let f = std::fs::File::open(file).map_err(|e| Error::BadInput(format!("{}: {e}", file.display())))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f).map_err(|e| Error::BadInput(format!("{}: {e}", file.display())))?;
    Ok(h.finalize().to_hex().to_string())
}

/// The file's columns that nothing reads, split into (unread, ignored by the mapping).
fn unread(src: &SourceConfig, wanted: &[String], cols: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (ignored, unread): (Vec<String>, Vec<String>) =
        cols.into_iter().filter(|c| !wanted.contains(c)).partition(|c| src.ignore.contains(c));
    (unread, ignored)
}

/// What one source file is read as: the canonical columns it fills and the source columns
/// read for them (then the attributes), in that order.
struct Layout {
    used: Vec<(String, ColType, bool)>,
    wanted: Vec<String>,
    media_root: Option<std::path::PathBuf>,
    zone: Zone,
    path_idx: Option<usize>,
    /// The observed-time column and the period its rows describe (stamped at its end).
    period: Option<(usize, t0_project::Horizon)>,
    /// (observed_at, available_at) columns that must be in that order (not a forecasts source).
    known_before: Option<(usize, usize)>,
}

/// A stored time as ISO-8601 UTC, for reasons.
fn micros_text(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t)
        .map_or_else(|| format!("{t} µs"), |d| d.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// The end of the period of length `p` starting at `t` (microseconds, UTC), calendar-aware.
fn period_end(t: i64, p: &t0_project::Horizon) -> Option<i64> {
    let start = chrono::DateTime::from_timestamp_micros(t)?;
    let months = |n: i64| start.checked_add_months(chrono::Months::new(u32::try_from(n).ok()?));
    let end = match p.unit.as_str() {
        "hour" => start.checked_add_signed(chrono::Duration::hours(p.n)),
        "day" => start.checked_add_signed(chrono::Duration::days(p.n)),
        "week" => start.checked_add_signed(chrono::Duration::weeks(p.n)),
        "month" => months(p.n),
        _ => months(p.n.checked_mul(12)?),
    }?;
    Some(end.timestamp_micros())
}

/// The accepted rows of one chunk, column by column, and its quarantined ones.
struct Chunk {
    cols: Vec<Col>,
    lines: Int64Builder,
    attrs: StringBuilder,
    hashes: StringBuilder,
    quarantine: Vec<Quarantined>,
    /// Each accepted row's line and byte span, for the raw text of a row SQL then rejects.
    spans: Vec<(u64, (u64, u64))>,
    read: u64,
    accepted: u64,
}

/// One accepted row: its parsed cells, its media content hash and its attributes as JSON.
type Parsed = (Vec<Option<Cell>>, Option<String>, Option<String>);

impl Ingest<'_> {
    pub fn file(&self, src: &SourceConfig, input_dir: &Path, file: &Path) -> Result<FileReport> {
        let spec = src.spec();
        let file_hash = stream_hash(file)?;
        let batch_id = format!("{}-{}", src.name, &file_hash[..16]);
        let file_str = file.display().to_string();
        let mut rep = FileReport {
            source: src.name.clone(),
            table: spec.table.into(),
            file: file_str.clone(),
            batch_id: batch_id.clone(),
            file_hash,
            ..Default::default()
        };
        let conn = self.catalog.conn();
        let done: Option<Option<String>> = conn
            .query_row("SELECT report FROM ingest_batches WHERE batch_id = ?", params![batch_id], |r| r.get(0))
            .optional()
            .ctx(|| "ingest_batches lookup".into())?;
        match done {
            None => {}
            Some(Some(report)) if !self.recorded.contains(&batch_id) => {
                return serde_json::from_str(&report).map_err(|e| Error::internal("ingest_batches.report", e));
            }
            Some(_) => {
                rep.skipped_already_ingested = true;
                return Ok(rep);
            }
        }
        self.resume(&mut rep, file)?;
        let (layout, mut records) = self.open(src, input_dir, file, &mut rep)?;
        let ids = (batch_id.as_str(), file_str.as_str());
        // NDJSON learns its keys while reading.
        let columns = match self.split(src, &rep.file_hash, file)? {
            Some(Split::Read(split)) => {
                self.take_split(src, &layout, ids, &split, records.as_ref(), &mut rep)?;
                split.columns()
            }
            Some(Split::Write(split)) => {
                self.parse_all(src, &layout, ids, records.as_mut(), Some(&split), &mut rep)?;
                split.finish(rep.chunks, records.columns())?;
                records.columns()
            }
            None => {
                self.parse_all(src, &layout, ids, records.as_mut(), None, &mut rep)?;
                records.columns()
            }
        };
        (rep.unread_columns, rep.ignored_columns) = unread(src, &layout.wanted, columns);
        let now = self.clock.stamp();
        let report = serde_json::to_string(&rep).expect("plain struct");
        conn.execute(
            "INSERT INTO ingest_batches (batch_id, source, file, file_hash, rows_read, rows_ingested, rows_quarantined,
                                         landing_path, ingested_at, rows_unchanged, report)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?, ?)",
            params![
                batch_id,
                src.name,
                file_str,
                rep.file_hash,
                rep.rows_read as i64,
                rep.rows_ingested as i64,
                rep.rows_quarantined as i64,
                format!("lake/raw/{}/{batch_id}", src.name),
                now.trim_end_matches('Z'),
                rep.rows_unchanged as i64,
                report
            ],
        )
        .ctx(|| "record ingest batch".into())?;
        Ok(rep)
    }

    /// Counts from an earlier, interrupted ingest of this file, if it committed chunks.
    fn resume(&self, rep: &mut FileReport, file: &Path) -> Result<()> {
        let checkpoint: Option<([i64; 6], i64)> = self
            .catalog
            .conn()
            .query_row(
                "SELECT chunks_done, rows_done, rows_ingested, rows_unchanged, rows_quarantined, entities_registered,
                        rows_other_buckets
                 FROM ingest_checkpoints WHERE batch_id = ?",
                params![rep.batch_id],
                |r| Ok(([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?], r.get(6)?)),
            )
            .optional()
            .ctx(|| "checkpoint lookup".into())?;
        if let Some(([chunks, rows, ing, unch, quar, registered], other)) = checkpoint {
            rep.entities_registered = registered as u64;
            rep.rows_other_buckets = other as u64;
            rep.chunks = chunks as u64;
            rep.resumed_after_row = rows as u64;
            rep.rows_read = rows as u64;
            rep.rows_ingested = ing as u64;
            rep.rows_unchanged = unch as u64;
            rep.rows_quarantined = quar as u64;
            self.progress.note(&format!("{}: resuming after row {rows} ({chunks} chunks committed)", file.display()));
        }
        Ok(())
    }

    /// Open the file's reader on the wanted columns; refuse it when a required one is missing.
    fn open(
        &self,
        src: &SourceConfig,
        input_dir: &Path,
        file: &Path,
        rep: &mut FileReport,
    ) -> Result<(Layout, Box<dyn reader::Records>)> {
        let format = src.format_of(file).ok_or_else(|| {
            Error::BadInput(format!(
                "{}: cannot tell the format from the extension; set `format` for source {}",
                file.display(),
                src.name
            ))
        })?;
        let used = used_columns(src.spec(), src, self.project);
        let mut wanted: Vec<String> = used.iter().map(|(c, _, _)| src.source_column(c).to_string()).collect();
        wanted.extend(src.attributes.iter().cloned());
        let records = reader::open(file, format, &wanted, src.delimiter)?;
        (rep.unread_columns, rep.ignored_columns) = unread(src, &wanted, records.columns());
        let missing_required: Vec<&String> = used
            .iter()
            .zip(&wanted)
            .filter(|((_, _, req), w)| *req && records.missing().contains(w))
            .map(|(_, w)| w)
            .collect();
        if !missing_required.is_empty() {
            return Err(Error::BadInput(format!(
                "{}: missing required column(s) {} for table {} (source {})",
                file.display(),
                missing_required.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "),
                src.spec().table,
                src.name
            )));
        }
        let observed = used.iter().position(|(c, _, _)| c == src.spec().observed);
        let available = used.iter().position(|(c, _, _)| c == "available_at");
        let layout = Layout {
            known_before: observed.zip(available).filter(|_| !src.forecasts),
            period: observed.zip(src.period()),
            path_idx: used.iter().position(|(c, _, _)| c == "path"),
            used,
            wanted,
            media_root: src.media_root.as_ref().map(|m| input_dir.join(m)),
            zone: src.zone(),
        };
        Ok((layout, records))
    }

    /// Up to `chunk_rows` rows: parsed and accepted, or quarantined with their reason.
    fn read_chunk(&self, src: &SourceConfig, layout: &Layout, records: &mut dyn reader::Records) -> Result<Chunk> {
        let mut chunk = Chunk {
            cols: layout.used.iter().map(|(_, t, _)| Col::new(*t)).collect(),
            lines: Int64Builder::new(),
            attrs: StringBuilder::new(),
            hashes: StringBuilder::new(),
            quarantine: Vec::new(),
            spans: Vec::new(),
            read: 0,
            accepted: 0,
        };
        while (chunk.read as usize) < self.chunk_rows {
            let Some(item) = records.next_item()? else { break };
            chunk.read += 1;
            let rec = match item {
                Item::Bad { line, column, reason, raw } => {
                    chunk.quarantine.push(Quarantined { line, column, reason, raw });
                    continue;
                }
                Item::Row(r) => r,
            };
            match self.parse_row(src, layout, &rec) {
                Ok((cells, content_hash, attr_json)) => {
                    for (col, cell) in chunk.cols.iter_mut().zip(cells) {
                        col.push(cell);
                    }
                    chunk.lines.append_value(rec.line as i64);
                    chunk.attrs.append_option(attr_json);
                    chunk.hashes.append_option(content_hash);
                    chunk.accepted += 1;
                    chunk.spans.push((rec.line, rec.span));
                }
                Err((column, reason)) => {
                    chunk.quarantine.push(Quarantined {
                        line: rec.line,
                        column: Some(column),
                        reason,
                        raw: records.raw(&rec),
                    });
                }
            }
        }
        Ok(chunk)
    }

    /// One row's cells, media hash and attributes, or the (column, reason) it is quarantined for.
    fn parse_row(
        &self,
        src: &SourceConfig,
        layout: &Layout,
        rec: &reader::Record,
    ) -> std::result::Result<Parsed, (String, String)> {
        let n_used = layout.used.len();
        let mut cells = Vec::with_capacity(n_used);
        let default_kind = src.entities.as_ref().filter(|_| src.table == "entities").map(|e| e.kind.as_str());
        for (i, (name, t, req)) in layout.used.iter().enumerate() {
            let cell = match &rec.fields[i] {
                None if *req => Err("required value is empty".to_string()),
                None if name == "kind" && default_kind.is_some() => {
                    Ok(Some(Cell::Str(default_kind.unwrap_or_default().to_string())))
                }
                None => Ok(None),
                Some(v) if v.len() > src.max_field_bytes => {
                    Err(format!("field of {} bytes exceeds max_field_bytes {}", v.len(), src.max_field_bytes))
                }
                Some(v) => parse_cell(*t, v, src, layout.zone).map(Some),
            };
            cells.push(cell.map_err(|reason| (layout.wanted[i].clone(), reason))?);
        }
        if let Some((i, p)) = &layout.period
            && let Some(Cell::Time(t)) = &mut cells[*i]
        {
            let end = period_end(*t, p).filter(|e| (MIN_TIME..=MAX_TIME).contains(e));
            *t = end.ok_or_else(|| {
                (
                    layout.wanted[*i].clone(),
                    format!("the end of the {} {} period starting here is after year 9999", p.n, p.unit),
                )
            })?;
        }
        // A fact cannot be known before it happened, unless the source publishes forecasts.
        if let Some((o, a)) = layout.known_before
            && let (Some(Cell::Time(observed)), Some(Cell::Time(available))) = (&cells[o], &cells[a])
            && available < observed
        {
            return Err((
                layout.wanted[a].clone(),
                format!(
                    "available_at {} is before observed_at {}: a fact cannot be known before it happened \
                     (a source of forecasts declares `forecasts: true`)",
                    micros_text(*available),
                    micros_text(*observed)
                ),
            ));
        }
        // Media: the path must resolve inside the media root to a readable file.
        let mut content_hash = None;
        if let (Some(pi), Some(root)) = (layout.path_idx, layout.media_root.as_ref())
            && let Some(Cell::Str(rel)) = &cells[pi]
        {
            let h = crate::media::resolve(root, rel)
                .and_then(|p| crate::media::hash(&p).map(|h| (p, h)))
                .and_then(|(p, h)| crate::media::store(self.root, &p, &h).map(|_| h))
                .map_err(|reason| (layout.wanted[pi].clone(), reason))?;
            content_hash = Some(h);
        }
        let mut attr_json = None;
        if !src.attributes.is_empty() {
            let mut m = serde_json::Map::new();
            for (j, a) in src.attributes.iter().enumerate() {
                match &rec.fields[n_used + j] {
                    Some(v) if v.len() > src.max_field_bytes => {
                        return Err((a.clone(), format!("field of {} bytes exceeds max_field_bytes", v.len())));
                    }
                    Some(v) => {
                        m.insert(a.clone(), serde_json::Value::String(v.clone()));
                    }
                    None => {}
                }
            }
            attr_json = Some(serde_json::Value::Object(m).to_string());
        }
        Ok((cells, content_hash, attr_json))
    }

    /// The file's split step (`split`): in a bucket, for a source without media (a media
    /// file is stored in the bucket's own content store while its row is parsed).
    fn split(&self, src: &SourceConfig, file_hash: &str, file: &Path) -> Result<Option<Split>> {
        if self.root.bucket().is_whole() || src.media_root.is_some() {
            return Ok(None);
        }
        let dir = crate::split::dir(self.root, self.config_hash, &src.name, file_hash, self.chunk_rows);
        Split::open(dir, file, self.progress).map(Some)
    }

    /// Parse the file from the first row no earlier run committed, chunk by chunk, landing and
    /// committing each (and publishing it for the other buckets when this one splits it).
    fn parse_all(
        &self,
        src: &SourceConfig,
        layout: &Layout,
        ids: (&str, &str),
        records: &mut dyn reader::Records,
        split: Option<&crate::split::Writer>,
        rep: &mut FileReport,
    ) -> Result<()> {
        for _ in 0..rep.resumed_after_row {
            if records.next_item()?.is_none() {
                break;
            }
        }
        loop {
            let chunk = self.read_chunk(src, layout, records)?;
            if chunk.read == 0 {
                return Ok(());
            }
            let n = rep.chunks;
            let landing = self.land(src, layout, ids.0, chunk.cols, (chunk.lines, chunk.attrs, chunk.hashes), n)?;
            let counts = (chunk.read, chunk.accepted, chunk.quarantine.as_slice());
            if let Some(w) = split {
                w.publish(n, &landing, &chunk.spans, counts)?;
            }
            let spans = &chunk.spans;
            let raw = |line: u64| {
                let i = spans.binary_search_by_key(&line, |(l, _)| *l).ok()?;
                records.raw_span(spans[i].1)
            };
            self.commit_landed(src, layout, ids, &landing, counts, &raw, rep)?;
        }
    }

    /// Take every chunk another bucket parsed, from the first one no earlier run committed.
    fn take_split(
        &self,
        src: &SourceConfig,
        layout: &Layout,
        ids: (&str, &str),
        split: &crate::split::Reader,
        records: &dyn reader::Records,
        rep: &mut FileReport,
    ) -> Result<()> {
        for n in rep.chunks..split.chunks() {
            let landing = self.landing(src, ids.0, n);
            let record = split.take(n, &landing)?;
            // A row's text is read back only when SQL rejects it: the spans load then.
            let spans = std::cell::OnceCell::new();
            let raw = |line: u64| {
                let spans = spans.get_or_init(|| split.spans(n, &record));
                let spans = spans.as_ref().ok()?;
                let i = spans.binary_search_by_key(&line, |(l, _)| *l).ok()?;
                records.raw_span(spans[i].1)
            };
            let counts = (record.read, record.accepted, record.quarantine.as_slice());
            self.commit_landed(src, layout, ids, &landing, counts, &raw, rep)?;
            if let Some(Err(e)) = spans.into_inner() {
                return Err(e);
            }
        }
        Ok(())
    }

    fn landing(&self, src: &SourceConfig, batch_id: &str, n: u64) -> std::path::PathBuf {
        self.root.join(format!("lake/raw/{}/{batch_id}/part-{n:05}.parquet", src.name))
    }

    /// Land chunk `n`'s accepted rows as an immutable Parquet part; returns its path.
    fn land(
        &self,
        src: &SourceConfig,
        layout: &Layout,
        batch_id: &str,
        cols: Vec<Col>,
        (mut lines, mut attrs, mut hashes): (Int64Builder, StringBuilder, StringBuilder),
        n: u64,
    ) -> Result<std::path::PathBuf> {
        let landing = self.landing(src, batch_id, n);
        let mut fields: Vec<Field> =
            layout.used.iter().map(|(c, t, _)| Field::new(c.as_str(), arrow_type(*t), true)).collect();
        let mut arrays: Vec<ArrayRef> = cols.into_iter().map(Col::finish).collect();
        fields.push(Field::new("source_line", DataType::Int64, false));
        arrays.push(Arc::new(lines.finish()));
        fields.push(Field::new("attrs", DataType::Utf8, true));
        arrays.push(Arc::new(attrs.finish()));
        fields.push(Field::new("content_hash", DataType::Utf8, true));
        arrays.push(Arc::new(hashes.finish()));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays).ctx(|| "landing batch".into())?;
        // Rewritten identically if an earlier attempt died before its commit.
        t0_table::write_parquet(&landing, schema, &[batch])?;
        Ok(landing)
    }

    /// Commit a landed chunk with its checkpoint; `rep` takes the counts only once the commit
    /// succeeded.
    #[expect(
        clippy::too_many_arguments,
        reason = "a landed chunk is its source, layout, batch, landing part, counts and raw text together"
    )]
    fn commit_landed(
        &self,
        src: &SourceConfig,
        layout: &Layout,
        (batch_id, file_str): (&str, &str),
        landing: &Path,
        (read, accepted, quarantine): (u64, u64, &[Quarantined]),
        raw: &dyn Fn(u64) -> Option<String>,
        rep: &mut FileReport,
    ) -> Result<()> {
        let n = rep.chunks;
        // Rows that did not parse have no trustworthy key: bucket 0 reports them.
        let parse_rejected = quarantine.len() as u64;
        let (parse_rejected, parse_elsewhere) =
            if self.root.bucket().index() == 0 { (parse_rejected, 0) } else { (0, parse_rejected) };
        let mut after = rep.clone();
        self.commit_chunk(
            src,
            src.spec(),
            &layout.used,
            batch_id,
            file_str,
            landing,
            (quarantine, raw),
            rep.resumed_after_row > 0,
            |c, counts: Counts| {
                after.entities_registered += counts.registered;
                after.chunks = n + 1;
                after.rows_read += read;
                after.rows_ingested += counts.inserted;
                after.rows_quarantined += parse_rejected + counts.rejected;
                after.rows_other_buckets += parse_elsewhere + (accepted - counts.staged);
                after.rows_unchanged += counts.staged - counts.inserted - counts.rejected;
                // The checkpoint commits with the chunk: a resume never double counts.
                c.execute(
                    "INSERT OR REPLACE INTO ingest_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        batch_id,
                        src.name,
                        file_str,
                        after.chunks as i64,
                        after.rows_read as i64,
                        after.rows_ingested as i64,
                        after.rows_unchanged as i64,
                        after.rows_quarantined as i64,
                        after.entities_registered as i64,
                        after.rows_other_buckets as i64
                    ],
                )
                .map(|_| ())
            },
        )?;
        *rep = after;
        self.progress.advance(read);
        self.progress.note(&format!("{file_str}: committed chunk {} ({} rows read)", rep.chunks, rep.rows_read));
        Ok(())
    }

    /// Insert one landed chunk in one transaction, with its checkpoint, which is told the rows
    /// inserted, the rows rejected here (duplicate keys within the file, unknown entities), the
    /// entities registered and the rows left to other buckets.
    #[expect(
        clippy::too_many_arguments,
        reason = "a chunk commit needs the source, table spec, columns, batch, file, landing copy, quarantine and checkpoint together"
    )]
    fn commit_chunk(
        &self,
        src: &SourceConfig,
        spec: &TableSpec,
        used: &[(String, ColType, bool)],
        batch_id: &str,
        file: &str,
        landing: &Path,
        (quarantine, raw): (&[Quarantined], &dyn Fn(u64) -> Option<String>),
        resumed: bool,
        checkpoint: impl FnOnce(&duckdb::Connection, Counts) -> std::result::Result<(), duckdb::Error>,
    ) -> Result<()> {
        let table = spec.table;
        let key_match = spec.key.iter().map(|k| format!("c.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
        let key_list = spec.key.iter().map(|k| format!("s.{k}")).collect::<Vec<_>>().join(", ");
        // Quoted: a measure may be named like an SQL keyword.
        let value_cols: Vec<&str> =
            used.iter().map(|(c, _, _)| c.as_str()).filter(|c| *c != "available_at").collect::<Vec<_>>();
        let mut insert_cols: Vec<String> = value_cols.iter().map(|c| format!("\"{c}\"")).collect();
        let mut select_cols: Vec<String> = value_cols.iter().map(|c| format!("s.\"{c}\"")).collect();
        if table == "entities" {
            insert_cols.push("observed_at".into());
            select_cols.push("s.created_at".into());
            insert_cols.push("attrs".into());
            select_cols.push("s.attrs".into());
        }
        if table == "artifacts" {
            insert_cols.push("content_hash".into());
            select_cols.push("s.content_hash".into());
        }
        let same = insert_cols
            .iter()
            .map(|c| format!("c.{c} IS NOT DISTINCT FROM {}", select_for(c, &insert_cols, &select_cols)))
            .collect::<Vec<_>>()
            .join(" AND ");
        // One join of the chunk with the current version of each fact answers three questions:
        // a key already written by this file (its current version is this batch's: this batch
        // is the newest writer of every key it wrote) is a duplicate within the file; a fact
        // identical to its current version is unchanged; a different one becomes version
        // current + 1. Nothing is overwritten. (Two joins, one for duplicates and one for
        // versions, scanned the growing table twice per chunk.) A resumed file may have had
        // another file write its keys in between, so it asks for duplicates over all versions.
        let batch = quote_literal(batch_id);
        let written_here = if resumed {
            format!("EXISTS (SELECT 1 FROM {table} c WHERE c.batch_id = {batch} AND {key_match})")
        } else {
            format!("c.batch_id IS NOT DISTINCT FROM {batch}")
        };
        let mut reject = format!(
            "WHEN row_number() OVER (PARTITION BY {key_list} ORDER BY s.source_line) > 1 OR {written_here}
             THEN 'duplicate key ({}) within the file'",
            spec.key.join(", "),
        );
        for r in spec.entity_refs {
            reject.push_str(&format!(
                " WHEN NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = s.{r}) THEN 'unknown entity in {r}: ' || s.{r}"
            ));
        }
        let observed = format!("s.{}", spec.observed);
        let avail = match src.availability() {
            Availability::IngestTime => format!("TIMESTAMP '{}'", self.clock.stamp().trim_end_matches('Z')),
            Availability::ObservedTime => observed.clone(),
            Availability::ObservedPlus { seconds } => format!("{observed} + INTERVAL {seconds} SECOND"),
            Availability::Column => "s.available_at".into(),
        };
        let landing_lit = quote_literal(&landing.display().to_string());
        let stage_sql = format!(
            "CREATE OR REPLACE TEMP TABLE chunk AS
             SELECT s.*, c.version AS __current_version, c.version IS NOT NULL AND ({same}) AS __unchanged,
                    CASE {reject} END AS reject
             FROM read_parquet({landing_lit}) s LEFT JOIN {current} c ON {key_match}
             WHERE {mine}",
            current = t0_project::vocab::current_sql(table, false).expect("canonical table"),
            mine = bucket_filter(self.root.bucket(), spec),
        );
        let insert_sql = format!(
            "INSERT INTO {table} ({cols}, available_at, version, batch_id)
             SELECT {sel}, {avail}, coalesce(s.__current_version, 0) + 1, ?
             FROM chunk s WHERE s.reject IS NULL AND NOT s.__unchanged",
            cols = insert_cols.join(", "),
            sel = select_cols.join(", "),
        );
        // A panel file may carry its entities: register each id not known yet, first seen at
        // its earliest row here (attributes from that row), before references are checked.
        // (An entities source's `entities:` only names the kind of its rows.)
        let register = src.entities.as_ref().filter(|_| src.table == "observations").map(|e| {
            format!(
                "INSERT INTO entities (entity_id, kind, parent_id, created_at, observed_at, available_at, version, batch_id, attrs)
                 SELECT s.entity_id, {kind}, NULL, min(s.observed_at), min(s.observed_at), min({avail}), 1, ?,
                        arg_min(s.attrs, s.observed_at)
                 FROM read_parquet({landing_lit}) s
                 WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = s.entity_id)
                 GROUP BY s.entity_id",
                kind = quote_literal(&e.kind),
            )
        });
        self.catalog.transaction(|c| {
            let registered = match &register {
                Some(sql) => c.execute(sql, params![batch_id]).ctx(|| format!("register entities of {file}"))? as u64,
                None => 0,
            };
            c.execute_batch(&stage_sql).ctx(|| format!("stage chunk of {file}"))?;
            let staged: i64 =
                c.query_row("SELECT count(*) FROM chunk", [], |r| r.get(0)).ctx(|| "staged rows".into())?;
            let rejected = quarantine_rejected(c, batch_id, file, raw)?;
            let inserted = c.execute(&insert_sql, params![batch_id]).ctx(|| format!("insert {table} from {file}"))?;
            let mut app = c.appender("quarantine").ctx(|| "quarantine appender".into())?;
            let parse_failures = if self.root.bucket().index() == 0 { quarantine } else { &[] };
            for q in parse_failures {
                app.append_row(params![batch_id, file, q.line as i64, q.column, q.reason, q.raw])
                    .ctx(|| "quarantine row".into())?;
            }
            app.flush().ctx(|| "quarantine flush".into())?;
            drop(app);
            let counts =
                Counts { inserted: inserted as u64, rejected: rejected as u64, registered, staged: staged as u64 };
            checkpoint(c, counts).ctx(|| "checkpoint".into())?;
            Ok(())
        })
    }
}

/// What one chunk's commit did.
struct Counts {
    inserted: u64,
    rejected: u64,
    registered: u64,
    /// Landed rows of this bucket's entities (the rest are other buckets').
    staged: u64,
}

/// The rows of a table this bucket keeps: the facts of its entities (`interactions` by their
/// source). Entities themselves are kept by every bucket: they are the directory each needs
/// to check references (an interaction's target may live in another bucket) and are small
/// beside the facts.
fn bucket_filter(bucket: t0_core::Bucket, spec: &TableSpec) -> String {
    match spec.table {
        "entities" => "TRUE".into(),
        _ => bucket.sql(&format!("s.{}", spec.key[0])),
    }
}

/// Quarantine the staged rows SQL rejected, each with its text read back from the file by its
/// line (CSV, NDJSON); returns how many.
fn quarantine_rejected(
    c: &duckdb::Connection,
    batch_id: &str,
    file: &str,
    raw: &dyn Fn(u64) -> Option<String>,
) -> Result<usize> {
    let mut stmt = c
        .prepare("SELECT source_line, reject FROM chunk WHERE reject IS NOT NULL ORDER BY source_line")
        .ctx(|| "rejected rows".into())?;
    let rejected: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .ctx(|| "rejected rows".into())?;
    let mut app = c.appender("quarantine").ctx(|| "quarantine appender".into())?;
    for (line, reason) in &rejected {
        app.append_row(params![batch_id, file, line, None::<String>, reason, raw(*line as u64)])
            .ctx(|| "quarantine row".into())?;
    }
    app.flush().ctx(|| "quarantine flush".into())?;
    Ok(rejected.len())
}

fn select_for(col: &str, insert_cols: &[String], select_cols: &[String]) -> String {
    let i = insert_cols.iter().position(|c| c == col).expect("column listed");
    select_cols[i].clone()
}

#[cfg(test)]
mod period_tests {
    use super::*;

    #[test]
    fn a_period_ends_on_the_calendar() {
        let t = |s: &str| t0_core::clock::parse_utc(s).unwrap().timestamp_micros();
        let h = |s: &str| t0_project::Horizon::try_from(s.to_string()).unwrap();
        // 2028 is a leap year: a year after its January 1 is the next January 1.
        assert_eq!(period_end(t("2028-01-01"), &h("1 year")), Some(t("2029-01-01")));
        assert_eq!(period_end(t("2024-01-31"), &h("1 month")), Some(t("2024-02-29")));
        assert_eq!(period_end(t("2024-03-01"), &h("2 weeks")), Some(t("2024-03-15")));
        assert_eq!(period_end(t("2024-03-01 10:00:00"), &h("6 hours")), Some(t("2024-03-01 16:00:00")));
    }
}
