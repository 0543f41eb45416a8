//! Streaming record readers for CSV, NDJSON and Parquet sources. Each yields rows as text
//! fields aligned to the columns the mapping asks for, with the row's position in the file,
//! or a row-level problem to quarantine. A file that cannot be read at all is an error.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use t0_core::{Error, Result};

use crate::config::Format;

/// One row: `fields[i]` is the text of wanted column `i` (None when absent, empty or null).
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<Option<String>>,
    /// The row as read, for the quarantine (cut to 1 KiB).
    pub raw: String,
}

#[derive(Debug)]
pub enum Item {
    Row(Record),
    Bad { line: u64, column: Option<String>, reason: String, raw: String },
}

pub trait Records {
    /// Wanted columns the file does not have (CSV and Parquet know this up front).
    fn missing(&self) -> &[String];
    /// Every column of the file (CSV header, Parquet schema; for NDJSON the keys seen so far),
    /// so that a column no mapping reads is reported, never silently dropped.
    fn columns(&self) -> Vec<String>;
    fn next_item(&mut self) -> Result<Option<Item>>;
}

const RAW_LIMIT: usize = 1024;

fn cut(s: &str) -> String {
    if s.len() <= RAW_LIMIT { s.to_string() } else { format!("{}...", &s[..s.floor_char_boundary(RAW_LIMIT)]) }
}

fn unreadable(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("{}: {what}", file.display()))
}

pub fn open(file: &Path, format: Format, wanted: &[String], delimiter: char) -> Result<Box<dyn Records>> {
    Ok(match format {
        Format::Csv => Box::new(CsvRecords::open(file, wanted, delimiter)?),
        Format::Ndjson => Box::new(NdjsonRecords::open(file, wanted)?),
        Format::Parquet => Box::new(ParquetRecords::open(file, wanted)?),
    })
}

struct CsvRecords {
    reader: csv::Reader<BufReader<File>>,
    positions: Vec<Option<usize>>,
    header_len: usize,
    names: Vec<String>,
    missing: Vec<String>,
    wanted: Vec<String>,
    record: csv::ByteRecord,
}

impl CsvRecords {
    fn open(file: &Path, wanted: &[String], delimiter: char) -> Result<Self> {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        if !delimiter.is_ascii() {
            return Err(Error::config(file, "delimiter must be one ASCII character"));
        }
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(delimiter as u8)
            .from_reader(BufReader::with_capacity(1 << 20, f));
        let header =
            reader.byte_headers().map_err(|e| unreadable(file, format!("cannot read the header: {e}")))?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(unreadable(file, "empty file: no header row"));
        }
        let names: Vec<String> = header
            .iter()
            .map(|h| std::str::from_utf8(h).map(|s| s.trim().trim_start_matches('\u{feff}').to_string()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| unreadable(file, "the header is not valid UTF-8"))?;
        // A repeated name would leave one of its columns unread without a word (issue 30).
        for (j, n) in names.iter().enumerate() {
            if let Some(i) = names[..j].iter().position(|m| m == n) {
                return Err(unreadable(
                    file,
                    format!("column {n:?} appears twice in the header (columns {} and {}): rename one", i + 1, j + 1),
                ));
            }
        }
        let positions: Vec<Option<usize>> = wanted.iter().map(|w| names.iter().position(|n| n == w)).collect();
        let missing = wanted.iter().zip(&positions).filter(|(_, p)| p.is_none()).map(|(w, _)| w.clone()).collect();
        Ok(CsvRecords {
            reader,
            positions,
            header_len: header.len(),
            names,
            missing,
            wanted: wanted.to_vec(),
            record: csv::ByteRecord::new(),
        })
    }
}

impl Records for CsvRecords {
    fn missing(&self) -> &[String] {
        &self.missing
    }

    fn columns(&self) -> Vec<String> {
        self.names.clone()
    }

    fn next_item(&mut self) -> Result<Option<Item>> {
        let line = self.reader.position().line();
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(None),
            Err(e) => {
                // The csv reader resynchronises at the next record; the row is quarantined.
                Ok(Some(Item::Bad { line, column: None, reason: format!("unreadable row: {e}"), raw: String::new() }))
            }
            Ok(true) => {
                let line = self.record.position().map(|p| p.line()).unwrap_or(line);
                let raw = cut(&String::from_utf8_lossy(self.record.as_slice()));
                if self.record.len() != self.header_len {
                    return Ok(Some(Item::Bad {
                        line,
                        column: None,
                        reason: format!("ragged row: {} fields, header has {}", self.record.len(), self.header_len),
                        raw,
                    }));
                }
                let mut fields = Vec::with_capacity(self.positions.len());
                for (i, p) in self.positions.iter().enumerate() {
                    let Some(p) = p else {
                        fields.push(None);
                        continue;
                    };
                    match std::str::from_utf8(&self.record[*p]) {
                        Ok(s) if s.trim().is_empty() => fields.push(None),
                        Ok(s) => fields.push(Some(s.to_string())),
                        Err(_) => {
                            return Ok(Some(Item::Bad {
                                line,
                                column: Some(self.wanted[i].clone()),
                                reason: "invalid UTF-8".into(),
                                raw,
                            }));
                        }
                    }
                }
                Ok(Some(Item::Row(Record { line, fields, raw })))
            }
        }
    }
}

struct NdjsonRecords {
    reader: BufReader<File>,
    wanted: Vec<String>,
    line: u64,
    buf: Vec<u8>,
    seen: std::collections::BTreeSet<String>,
}

impl NdjsonRecords {
    fn open(file: &Path, wanted: &[String]) -> Result<Self> {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        Ok(NdjsonRecords {
            reader: BufReader::with_capacity(1 << 20, f),
            wanted: wanted.to_vec(),
            line: 0,
            buf: Vec::new(),
            seen: Default::default(),
        })
    }
}

impl Records for NdjsonRecords {
    fn missing(&self) -> &[String] {
        &[]
    }

    fn columns(&self) -> Vec<String> {
        self.seen.iter().cloned().collect()
    }

    fn next_item(&mut self) -> Result<Option<Item>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::BadInput(format!("read error at line {}: {e}", self.line + 1)))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let raw = cut(&String::from_utf8_lossy(&self.buf));
            let bad = |reason: String| Ok(Some(Item::Bad { line: self.line, column: None, reason, raw: raw.clone() }));
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(_) => return bad("invalid UTF-8".into()),
            };
            let value: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return bad(format!("not a JSON object: {e}")),
            };
            let Some(obj) = value.as_object() else {
                return bad("not a JSON object".into());
            };
            for k in obj.keys() {
                if !self.seen.contains(k) {
                    self.seen.insert(k.clone());
                }
            }
            let fields = self
                .wanted
                .iter()
                .map(|w| match obj.get(w) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect();
            return Ok(Some(Item::Row(Record { line: self.line, fields, raw })));
        }
    }
}

struct ParquetRecords {
    file: String,
    reader: ParquetRecordBatchReader,
    positions: Vec<Option<usize>>,
    missing: Vec<String>,
    names: Vec<String>,
    columns: Vec<Option<ArrayRef>>,
    row_in_batch: usize,
    rows_in_batch: usize,
    rows_before: u64,
}

impl ParquetRecords {
    fn open(file: &Path, wanted: &[String]) -> Result<Self> {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        let builder = std::panic::catch_unwind(AssertUnwindSafe(|| ParquetRecordBatchReaderBuilder::try_new(f)))
            .map_err(|_| unreadable(file, "the Parquet decoder failed on corrupt data"))?
            .map_err(|e| unreadable(file, e))?;
        let schema = builder.schema().clone();
        let positions: Vec<Option<usize>> = wanted.iter().map(|w| schema.index_of(w).ok()).collect();
        let missing = wanted.iter().zip(&positions).filter(|(_, p)| p.is_none()).map(|(w, _)| w.clone()).collect();
        let reader = builder.with_batch_size(8192).build().map_err(|e| unreadable(file, e))?;
        Ok(ParquetRecords {
            file: file.display().to_string(),
            reader,
            positions,
            missing,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            columns: Vec::new(),
            row_in_batch: 0,
            rows_in_batch: 0,
            rows_before: 0,
        })
    }
}

impl Records for ParquetRecords {
    fn missing(&self) -> &[String] {
        &self.missing
    }

    fn columns(&self) -> Vec<String> {
        self.names.clone()
    }

    fn next_item(&mut self) -> Result<Option<Item>> {
        while self.row_in_batch >= self.rows_in_batch {
            let next = std::panic::catch_unwind(AssertUnwindSafe(|| self.reader.next()))
                .map_err(|_| Error::BadInput(format!("{}: the Parquet decoder failed on corrupt data", self.file)))?;
            let batch = match next {
                None => return Ok(None),
                Some(Err(e)) => return Err(Error::BadInput(format!("{}: {e}", self.file))),
                Some(Ok(b)) => b,
            };
            self.rows_before += self.rows_in_batch as u64;
            self.columns = self
                .positions
                .iter()
                .map(|p| {
                    p.map(|i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
                        .transpose()
                        .map_err(|e| Error::BadInput(format!("{}: {e}", self.file)))
                })
                .collect::<Result<_>>()?;
            self.rows_in_batch = batch.num_rows();
            self.row_in_batch = 0;
        }
        let i = self.row_in_batch;
        self.row_in_batch += 1;
        let fields: Vec<Option<String>> = self
            .columns
            .iter()
            .map(|c| {
                c.as_ref().and_then(|c| {
                    let s = c.as_string::<i32>();
                    (s.is_valid(i) && !s.value(i).trim().is_empty()).then(|| s.value(i).to_string())
                })
            })
            .collect();
        let raw = cut(&fields.iter().map(|f| f.as_deref().unwrap_or("")).collect::<Vec<_>>().join(","));
        Ok(Some(Item::Row(Record { line: self.rows_before + i as u64 + 1, fields, raw })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_name_twice_in_a_csv_header_is_bad_input_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dup.csv");
        std::fs::write(&file, "id,value,note,value\n1,2,x,3\n").unwrap();
        let e = open(&file, Format::Csv, &["id".into(), "value".into()], ',').err().expect("refused");
        assert_eq!(e.exit_code(), t0_core::ExitCode::BadInput);
        let m = e.to_string();
        assert!(m.contains("dup.csv") && m.contains("\"value\"") && m.contains("columns 2 and 4"), "{m}");
        std::fs::write(&file, "id,value\n1,2\n").unwrap();
        assert!(open(&file, Format::Csv, &["id".into()], ',').is_ok());
    }
}
