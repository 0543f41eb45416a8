//! Parquet I/O over arrow and the canonical, layout-independent content hash.
//!
//! The content hash of a set of rows is blake3 over: a schema header (column names and
//! logical types), then every row in canonical order, each value in a fixed byte encoding.
//! Canonical order sorts rows by the key columns first and then by all remaining columns, so
//! the hash is a function of the multiset of rows: independent of row-group size,
//! compression, file split or the order rows were written in.

mod hash;
mod io;

pub use hash::{ContentHasher, content_hash};
pub use io::{ParquetSet, parquet_bytes, read_parquet, write_parquet};

/// Errors of this crate; they convert into [`t0_core::Error`] naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Write { path: String, message: String },
    #[error("unsupported column type {data_type} in column {column:?}")]
    Unsupported { column: String, data_type: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<TableError> for t0_core::Error {
    fn from(e: TableError) -> Self {
        t0_core::Error::internal("table", e)
    }
}
