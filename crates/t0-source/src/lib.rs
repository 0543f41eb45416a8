//! Source decoding with no catalog behind it: the streaming record readers (CSV, NDJSON,
//! Parquet) and the timestamp parsers acquire runs on every cell. Kept apart from acquire
//! (which needs DuckDB) so that the fuzz targets (`fuzz/`) build in minutes.

pub mod reader;
pub mod time;

use serde::{Deserialize, Serialize};

/// A source file's format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    Ndjson,
}
