//! Parquet I/O over arrow and the canonical, layout-independent content hash.
//!
//! The content hash of a set of rows is a function of the multiset of rows and the columns'
//! names and types: independent of row-group size, compression, file split, column order
//! and the order rows were written in. Construction (v2):
//!
//! - header: magic, then each column (in name order) as its name and logical type;
//! - each row is encoded value by value (columns in name order, a fixed byte encoding per
//!   type, NULL distinct from every value) and digested to 64 bytes by blake3 keyed with
//!   `derive_key("t0clip content v2 row digest", header)`;
//! - the state is the row count and the lane-wise sum (eight u64 lanes, wrapping) of the
//!   digests; the hash is blake3(header ‖ count ‖ lanes).
//!
//! No sort: one pass, rows digested in parallel, nothing buffered; and the state of a table
//! that only grows is the old state plus the state of the appended rows. A changed, added,
//! dropped or duplicated row changes the sum except with probability about 2⁻⁵¹² per change
//! (accidental damage). An adversary who can write the catalog can also rewrite manifests,
//! so the chain does not claim more; the additive combination is the known trade-off
//! (lattice/"LtHash"-style sums resist collision search only at larger widths).

mod hash;
mod io;

pub use hash::{ContentHasher, ContentState, content_hash};
pub use io::{ParquetSet, parquet_bytes, read_parquet, sorted, write_parquet};

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
