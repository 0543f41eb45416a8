use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::TableError;

fn writer_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_created_by(format!("t0-clip {}", t0_core::CODE_VERSION))
        .build()
}

fn write_to<W: std::io::Write + Send>(
    out: W,
    what: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), TableError> {
    let err = |e: parquet::errors::ParquetError| TableError::Write { path: what.to_string(), message: e.to_string() };
    let mut writer = ArrowWriter::try_new(out, schema, Some(writer_props())).map_err(err)?;
    for b in batches {
        writer.write(b).map_err(err)?;
    }
    writer.close().map_err(err)?;
    Ok(())
}

/// Write `batches` to `path` atomically (temporary file, fsync, rename). Snappy-compressed
/// with explicit row-group size and no wall-clock metadata, so equal input gives equal bytes.
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<(), t0_core::Error> {
    t0_core::fsio::with_atomic_file(path, |file| {
        Ok(write_to(file, &path.display().to_string(), schema.clone(), batches)?)
    })
}

/// The bytes [`write_parquet`] would write.
pub fn parquet_bytes(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, t0_core::Error> {
    let mut buf = Vec::new();
    write_to(&mut buf, "in-memory Parquet", schema, batches)?;
    Ok(buf)
}

/// Read every batch of one Parquet file.
pub fn read_parquet(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), TableError> {
    let err = |message: String| TableError::Read { path: path.display().to_string(), message };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    // The parquet crate can panic on some corrupt files instead of returning an error; a
    // corrupt input must become a clean error naming the file, so the decode is isolated.
    let decoded = std::panic::catch_unwind(move || -> Result<_, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        let schema = builder.schema().clone();
        let reader = builder.build().map_err(|e| e.to_string())?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        Ok((schema, batches))
    });
    match decoded {
        Ok(r) => r.map_err(err),
        Err(_) => Err(err("the Parquet decoder failed on corrupt data".into())),
    }
}

/// A Parquet dataset: one file, or a directory of `*.parquet` files (read in name order).
#[derive(Debug, Clone)]
pub struct ParquetSet {
    pub files: Vec<PathBuf>,
}

impl ParquetSet {
    pub fn open(path: &Path) -> Result<Self, TableError> {
        let err = |message: String| TableError::Read { path: path.display().to_string(), message };
        if path.is_dir() {
            let mut files = Vec::new();
            collect(path, &mut files).map_err(|e| err(e.to_string()))?;
            files.sort();
            if files.is_empty() {
                return Err(err("directory holds no .parquet files".into()));
            }
            Ok(ParquetSet { files })
        } else if path.is_file() {
            Ok(ParquetSet { files: vec![path.to_path_buf()] })
        } else {
            Err(err("no such file or directory".into()))
        }
    }

    /// Content hash and row count of every row of the set (see the crate docs), one file in
    /// memory at a time. Every file must have the same columns.
    pub fn content_hash(&self) -> Result<(String, u64), TableError> {
        let h = self.content_hasher()?;
        Ok((h.finish(), h.state().rows))
    }

    /// The hasher after every row of the set (its state adds to other sets').
    pub fn content_hasher(&self) -> Result<crate::ContentHasher, TableError> {
        let mut hasher: Option<(SchemaRef, crate::ContentHasher)> = None;
        for f in &self.files {
            let (s, batches) = read_parquet(f)?;
            let (schema, h) = match &mut hasher {
                Some(h) => h,
                None => hasher.insert((s.clone(), crate::ContentHasher::new(&s)?)),
            };
            if s.fields() != schema.fields() {
                return Err(TableError::Read {
                    path: f.display().to_string(),
                    message: "columns differ from the first file of the dataset".into(),
                });
            }
            for b in &batches {
                h.push(b)?;
            }
        }
        let (_, h) = hasher.expect("a ParquetSet has at least one file");
        Ok(h)
    }

    /// The columns of the set (its first file's footer; no rows are read).
    pub fn schema(&self) -> Result<SchemaRef, TableError> {
        let f = &self.files[0];
        let err = |message: String| TableError::Read { path: f.display().to_string(), message };
        let file = File::open(f).map_err(|e| err(e.to_string()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
        Ok(builder.schema().clone())
    }

    pub fn read_all(&self) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), TableError> {
        let mut schema = None;
        let mut out = Vec::new();
        for f in &self.files {
            let (s, b) = read_parquet(f)?;
            schema.get_or_insert(s);
            out.extend(b);
        }
        Ok((schema, out))
    }
}

/// The rows of `batches` (all of `schema`) as one batch ordered by the columns `keys`,
/// ascending, nulls first: parts of a dataset written by several processes put back in the
/// order one process writes it.
pub fn sorted(schema: &SchemaRef, batches: &[RecordBatch], keys: &[&str]) -> Result<RecordBatch, TableError> {
    let err = |message: String| TableError::Read { path: "sorted rows".into(), message };
    let all = arrow::compute::concat_batches(schema, batches).map_err(|e| err(e.to_string()))?;
    let columns = keys
        .iter()
        .map(|k| {
            let i = schema.index_of(k).map_err(|e| err(e.to_string()))?;
            Ok(arrow::compute::SortColumn { values: all.column(i).clone(), options: None })
        })
        .collect::<Result<Vec<_>, TableError>>()?;
    let order = arrow::compute::lexsort_to_indices(&columns, None).map_err(|e| err(e.to_string()))?;
    arrow::compute::take_record_batch(&all, &order).map_err(|e| err(e.to_string()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}
