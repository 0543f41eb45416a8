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

use crate::Format;

/// One row: `fields[i]` is the text of wanted column `i` (None when absent, empty or null).
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<Option<String>>,
    /// Where the row's bytes lie in the file (CSV, NDJSON: `[start, end)`), read back by
    /// [`Records::raw`] only for a row that is quarantined.
    pub span: (u64, u64),
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
    /// The row as it is in the file, for the quarantine (cut to 1 KiB): the bytes of a text
    /// row without its line end; a Parquet row as a JSON object of the columns read.
    fn raw(&self, rec: &Record) -> String {
        self.raw_span(rec.span).unwrap_or_default()
    }
    /// The text of the row at byte span `span` (CSV, NDJSON); None for Parquet.
    fn raw_span(&self, _span: (u64, u64)) -> Option<String> {
        None
    }
}

const RAW_LIMIT: usize = 1024;

fn cut(s: &str) -> String {
    if s.len() <= RAW_LIMIT { s.to_string() } else { format!("{}...", &s[..s.floor_char_boundary(RAW_LIMIT)]) }
}

/// Reads a row's bytes back from its file by position (`pread`: the reader's own cursor is
/// untouched), so rows that are accepted cost nothing for the quarantine.
struct Spans(File);

impl Spans {
    fn open(path: &Path, file: &File) -> Result<Self> {
        file.try_clone().map(Spans).map_err(|e| unreadable(path, e))
    }

    fn text(&self, (start, end): (u64, u64)) -> String {
        use std::os::unix::fs::FileExt;
        let len = (end.saturating_sub(start) as usize).min(RAW_LIMIT + 4);
        let mut buf = vec![0; len];
        let n = self.0.read_at(&mut buf, start).unwrap_or(0);
        buf.truncate(n);
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        if end.saturating_sub(start) as usize == n {
            while text.ends_with(['\n', '\r']) {
                text.pop();
            }
        }
        // After a CRLF (or skipped blank lines) the csv reader's record starts at a line end.
        cut(text.trim_start_matches(['\n', '\r']))
    }
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
    spans: Spans,
}

impl CsvRecords {
    fn open(file: &Path, wanted: &[String], delimiter: char) -> Result<Self> {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        let spans = Spans::open(file, &f)?;
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
            spans,
        })
    }
}

impl Records for CsvRecords {
    fn raw_span(&self, span: (u64, u64)) -> Option<String> {
        Some(self.spans.text(span))
    }

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
                let start = self.record.position().map(|p| p.byte()).unwrap_or(0);
                let span = (start, self.reader.position().byte());
                if self.record.len() != self.header_len {
                    return Ok(Some(Item::Bad {
                        line,
                        column: None,
                        reason: format!("ragged row: {} fields, header has {}", self.record.len(), self.header_len),
                        raw: self.spans.text(span),
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
                                raw: self.spans.text(span),
                            }));
                        }
                    }
                }
                Ok(Some(Item::Row(Record { line, fields, span })))
            }
        }
    }
}

struct NdjsonRecords {
    file: String,
    reader: BufReader<File>,
    spans: Spans,
    wanted: Vec<String>,
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    buf: Vec<u8>,
    seen: std::collections::BTreeSet<String>,
}

impl NdjsonRecords {
    fn open(file: &Path, wanted: &[String]) -> Result<Self> {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        Ok(NdjsonRecords {
            file: file.display().to_string(),
            spans: Spans::open(file, &f)?,
            reader: BufReader::with_capacity(1 << 20, f),
            wanted: wanted.to_vec(),
            line: 0,
            offset: 0,
            buf: Vec::new(),
            seen: Default::default(),
        })
    }
}

/// A JSON object read with its keys checked: serde_json keeps the last of a repeated key
/// without a word, which would drop a value (issue 30). The repeated key is left in the slot.
struct UniqueKeys<'a>(&'a mut Option<String>);

type JsonObject = serde_json::Map<String, serde_json::Value>;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = JsonObject;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<JsonObject, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = JsonObject;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<JsonObject, A::Error> {
        let mut obj = JsonObject::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                let e = serde::de::Error::custom(format!("key {key:?} appears twice"));
                *self.0 = Some(key);
                return Err(e);
            }
            let value = map.next_value()?;
            obj.insert(key, value);
        }
        Ok(obj)
    }
}

/// One NDJSON line as an object; Ok(Err(key)) when a key repeats.
fn json_object(text: &str) -> std::result::Result<std::result::Result<JsonObject, String>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut repeated = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = UniqueKeys(&mut repeated).deserialize(&mut de).and_then(|o| de.end().map(|_| o));
    match (parsed, repeated) {
        (_, Some(key)) => Ok(Err(key)),
        (Ok(o), None) => Ok(Ok(o)),
        (Err(e), None) => Err(e),
    }
}

impl Records for NdjsonRecords {
    fn raw_span(&self, span: (u64, u64)) -> Option<String> {
        Some(self.spans.text(span))
    }

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
                .map_err(|e| Error::BadInput(format!("{}: read error at line {}: {e}", self.file, self.line + 1)))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let span = (self.offset, self.offset + n as u64);
            self.offset += n as u64;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |reason: String| {
                Ok(Some(Item::Bad { line: self.line, column: None, reason, raw: self.spans.text(span) }))
            };
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(_) => return bad("invalid UTF-8".into()),
            };
            let obj = match json_object(text) {
                Ok(Ok(o)) => o,
                Ok(Err(key)) => {
                    return Err(Error::BadInput(format!(
                        "{}: line {}: key {key:?} appears twice in one object, so one of its values would be lost: \
                         rename or remove one",
                        self.file, self.line
                    )));
                }
                Err(e) => return bad(format!("not a JSON object: {e}")),
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
            return Ok(Some(Item::Row(Record { line: self.line, fields, span })));
        }
    }
}

struct ParquetRecords {
    file: String,
    wanted: Vec<String>,
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
            wanted: wanted.to_vec(),
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
    /// A Parquet row has no text form: the columns read, by name, as one JSON object.
    fn raw(&self, rec: &Record) -> String {
        let obj: JsonObject = self
            .wanted
            .iter()
            .zip(&rec.fields)
            .map(|(w, f)| (w.clone(), f.clone().map_or(serde_json::Value::Null, serde_json::Value::String)))
            .collect();
        cut(&serde_json::Value::Object(obj).to_string())
    }

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
        Ok(Some(Item::Row(Record { line: self.rows_before + i as u64 + 1, fields, span: (0, 0) })))
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

    fn read_all(file: &Path, format: Format) -> (Box<dyn Records>, Vec<Item>) {
        let mut r = open(file, format, &["id".into(), "value".into()], ';').unwrap();
        let mut items = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            items.push(i);
        }
        (r, items)
    }

    #[test]
    fn a_key_twice_in_an_ndjson_object_is_bad_input_naming_the_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dup.ndjson");
        std::fs::write(&file, "{\"id\": 1, \"value\": 2}\n{\"id\": 2, \"value\": 3, \"value\": 4}\n").unwrap();
        let mut r = open(&file, Format::Ndjson, &["id".into(), "value".into()], ',').unwrap();
        assert!(matches!(r.next_item(), Ok(Some(Item::Row(_)))));
        let e = r.next_item().expect_err("refused");
        assert_eq!(e.exit_code(), t0_core::ExitCode::BadInput);
        let m = e.to_string();
        assert!(m.contains("dup.ndjson") && m.contains("line 2") && m.contains("\"value\""), "{m}");
        // A repeat inside a nested value is a value, not a column; other errors stay row-level.
        std::fs::write(&file, "[1, 2]\n{\"id\": 1, \"value\": {\"a\": 1}}\n").unwrap();
        let (_, items) = read_all(&file, Format::Ndjson);
        assert!(matches!(&items[0], Item::Bad { line: 1, raw, .. } if raw == "[1, 2]"), "{items:?}");
        assert!(matches!(&items[1], Item::Row(r) if r.fields[1].as_deref() == Some("{\"a\":1}")), "{items:?}");
    }

    #[test]
    fn a_quarantined_row_is_kept_as_it_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("rows.csv");
        std::fs::write(&csv, "id;value\r\n1;\"a;b\"\r\n2;x;extra\r\n3;\"multi\nline\"\r\n").unwrap();
        let (r, items) = read_all(&csv, Format::Csv);
        let Item::Row(first) = &items[0] else { panic!("{items:?}") };
        assert_eq!(r.raw(first), "1;\"a;b\"");
        assert!(matches!(&items[1], Item::Bad { raw, .. } if raw == "2;x;extra"), "{items:?}");
        let Item::Row(third) = &items[2] else { panic!("{items:?}") };
        assert_eq!(r.raw(third), "3;\"multi\nline\"");

        let nd = dir.path().join("rows.ndjson");
        std::fs::write(&nd, "{\"id\": 1,   \"value\": \"v\"}\n\n{\"id\": 2}").unwrap();
        let (r, items) = read_all(&nd, Format::Ndjson);
        let texts: Vec<String> =
            items.iter().map(|i| if let Item::Row(rec) = i { r.raw(rec) } else { panic!("{i:?}") }).collect();
        assert_eq!(texts, ["{\"id\": 1,   \"value\": \"v\"}", "{\"id\": 2}"]);

        let long = format!("id;value\n1;{}\n", "y".repeat(5000));
        std::fs::write(&csv, long).unwrap();
        let (r, items) = read_all(&csv, Format::Csv);
        let Item::Row(row) = &items[0] else { panic!("{items:?}") };
        let raw = r.raw(row);
        assert!(raw.starts_with("1;yyy") && raw.ends_with("...") && raw.len() == 1024 + 3, "{}", raw.len());
    }
}
