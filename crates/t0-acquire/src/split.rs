//! The split step of a bucketed acquire: every bucket lands every row of a file (the landing
//! copy and the entity directory are replicated; SQL keeps each bucket's facts), so the parse
//! is the same in every bucket. The first bucket to reach a file parses it, under a lock keyed
//! by the file's content and the mapping, and publishes each chunk's landing part with what
//! the parse decided (rows read, accepted, quarantined with their reasons, and where each
//! accepted row's text lies); the others take the parts instead of parsing. N parses of every
//! input row become one, and the landing copies are the same bytes (hard links where the
//! filesystem allows).
//!
//! Lives in the base root under `lake/split/<file blake3>/<key of mapping and chunk size>/`: `part-<n>.parquet` (the landing part),
//! `part-<n>.spans.parquet` (line and byte span of each accepted row, read only when SQL
//! rejects a row and its text is quarantined), `part-<n>.json` (published last: the chunk is
//! there) and `done.json` (every chunk and the file's columns). A part is checked against the
//! hash its chunk record states before it is used (exit 3 naming it). Nothing here is an
//! output: a bucket's manifest records its own landing copy, and `commit acquire` requires the
//! buckets' copies to hash the same; it removes a file's split once every bucket has read it.
//! The directory is a cache that may be deleted at any time (a bucket then parses the file).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use t0_core::{Error, Progress, Result, Root};

/// A row the parse quarantined: its line, column, reason and text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Quarantined {
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// What the parse decided for one chunk.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChunkRecord {
    pub read: u64,
    pub accepted: u64,
    pub quarantine: Vec<Quarantined>,
    /// blake3 of the landing part's bytes.
    pub part: String,
    /// blake3 of the spans file's bytes.
    pub spans: String,
}

/// Every chunk of the file is published.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Done {
    chunks: u64,
    /// Every column of the file (NDJSON learns its keys while reading).
    columns: Vec<String>,
}

/// The lock on a file's split: this bucket parses and publishes.
pub(crate) struct Writer {
    dir: PathBuf,
    _lock: File,
}

/// Another bucket parsed the file: its chunks are taken.
pub(crate) struct Reader {
    dir: PathBuf,
    done: Done,
}

pub(crate) enum Split {
    Write(Writer),
    Read(Reader),
}

/// The split directory of one file for one mapping and chunk size.
pub(crate) fn dir(root: &Root, config_hash: &str, source: &str, file_hash: &str, chunk_rows: usize) -> PathBuf {
    let key = t0_core::blake3_hex(format!("split-1|{config_hash}|{source}|{chunk_rows}").as_bytes());
    t0_core::bucket::split_dir(root.base().path(), file_hash).join(&key[..32])
}

impl Split {
    /// Take the file's split: read it when a bucket published it whole, else wait for the
    /// bucket parsing it now (a dead one's lock is released by the OS) and then read it, or
    /// parse it here.
    pub(crate) fn open(dir: PathBuf, file: &Path, progress: &dyn Progress) -> Result<Split> {
        if let Some(done) = read_done(&dir)? {
            return Ok(Split::Read(Reader { dir, done }));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock() {
            progress
                .note(&format!("{}: another bucket is parsing this file; waiting to take its rows", file.display()));
            lock.lock().map_err(|e| Error::io(&path, e))?;
        }
        match read_done(&dir)? {
            Some(done) => Ok(Split::Read(Reader { dir, done })),
            None => Ok(Split::Write(Writer { dir, _lock: lock })),
        }
    }
}

fn read_done(dir: &Path) -> Result<Option<Done>> {
    let path = dir.join("done.json");
    if !path.exists() {
        return Ok(None);
    }
    let bytes = t0_core::fsio::read(&path)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| damaged(&path, &e.to_string()))
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::Refused(format!(
        "{}: the split step's record is damaged ({why}); delete {} and run acquire again",
        path.display(),
        path.parent().unwrap_or(path).display()
    ))
}

fn part(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("part-{n:05}.parquet"))
}

fn spans_file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("part-{n:05}.spans.parquet"))
}

fn record_file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("part-{n:05}.json"))
}

/// `to` becomes the same file as `from`: a hard link, or a copy where links are refused.
fn link(from: &Path, to: &Path) -> Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let tmp = to.with_file_name(format!(
        ".{}.link-{}",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| Error::io(to, e))
}

impl Writer {
    /// Publish chunk `n`: its landing part (already written at `landing`), the spans of its
    /// accepted rows, then its record.
    pub(crate) fn publish(
        &self,
        n: u64,
        landing: &Path,
        spans: &[(u64, (u64, u64))],
        (read, accepted, quarantine): (u64, u64, &[Quarantined]),
    ) -> Result<()> {
        let part_path = part(&self.dir, n);
        link(landing, &part_path)?;
        let spans_path = spans_file(&self.dir, n);
        let col = |f: fn(&(u64, (u64, u64))) -> u64| -> Arc<dyn Array> {
            Arc::new(Int64Array::from_iter_values(spans.iter().map(|s| f(s) as i64)))
        };
        let schema =
            Arc::new(Schema::new(["line", "start", "end"].map(|c| Field::new(c, DataType::Int64, false)).to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![col(|s| s.0), col(|s| s.1.0), col(|s| s.1.1)])
            .map_err(|e| Error::internal("split spans", e))?;
        t0_table::write_parquet(&spans_path, schema, &[batch])?;
        let record = ChunkRecord {
            read,
            accepted,
            quarantine: quarantine.to_vec(),
            part: t0_core::fsio::file_hash(&part_path)?,
            spans: t0_core::fsio::file_hash(&spans_path)?,
        };
        let bytes = serde_json::to_vec(&record).expect("plain struct");
        t0_core::fsio::write_atomic(&record_file(&self.dir, n), &bytes)
    }

    /// The file is parsed: say so when every chunk is published (a split a dead bucket left
    /// with holes is parsed again by the next bucket instead).
    pub(crate) fn finish(self, chunks: u64, columns: Vec<String>) -> Result<()> {
        if (0..chunks).all(|n| record_file(&self.dir, n).exists()) {
            let bytes = serde_json::to_vec(&Done { chunks, columns }).expect("plain struct");
            t0_core::fsio::write_atomic(&self.dir.join("done.json"), &bytes)?;
        }
        Ok(())
    }
}

impl Reader {
    pub(crate) fn chunks(&self) -> u64 {
        self.done.chunks
    }

    pub(crate) fn columns(&self) -> Vec<String> {
        self.done.columns.clone()
    }

    /// Chunk `n` landed at `landing` (the published part, checked against its record).
    pub(crate) fn take(&self, n: u64, landing: &Path) -> Result<ChunkRecord> {
        let path = record_file(&self.dir, n);
        let bytes = t0_core::fsio::read(&path)?;
        let record: ChunkRecord = serde_json::from_slice(&bytes).map_err(|e| damaged(&path, &e.to_string()))?;
        let part_path = part(&self.dir, n);
        let found = t0_core::fsio::file_hash(&part_path)?;
        if found != record.part {
            return Err(Error::Refused(format!(
                "{}: content hash {found} is not the {} its parse recorded (the split step's part was changed)",
                part_path.display(),
                record.part
            )));
        }
        link(&part_path, landing)?;
        Ok(record)
    }

    /// Line and byte span of every accepted row of chunk `n`, in line order.
    pub(crate) fn spans(&self, n: u64, record: &ChunkRecord) -> Result<Vec<(u64, (u64, u64))>> {
        let path = spans_file(&self.dir, n);
        if t0_core::fsio::file_hash(&path)? != record.spans {
            return Err(damaged(&path, "its content hash is not the one its chunk record states"));
        }
        let (_, batches) = t0_table::read_parquet(&path).map_err(|e| damaged(&path, &e.to_string()))?;
        let mut out = Vec::new();
        for b in &batches {
            let col = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().cloned();
            let (Some(l), Some(s), Some(e)) = (col(0), col(1), col(2)) else {
                return Err(damaged(&path, "not three integer columns"));
            };
            out.extend((0..b.num_rows()).map(|i| (l.value(i) as u64, (s.value(i) as u64, e.value(i) as u64))));
        }
        Ok(out)
    }
}
