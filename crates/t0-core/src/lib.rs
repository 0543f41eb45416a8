//! Shared vocabulary of every t0-clip stage: the exit-code contract, the error type that maps
//! onto it, the on-disk layout of a root, the pinned clock, configuration loading, atomic
//! writes and the progress-reporting trait.

pub mod bucket;
pub mod clock;
pub mod config;
pub mod error;
pub mod fault;
pub mod fsio;
pub mod progress;
pub mod rng;
pub mod root;
pub mod stage;

pub use bucket::Bucket;
pub use clock::Clock;
pub use error::{Damage, Error, ExitCode, Result};
pub use progress::{NoProgress, Progress};
pub use root::Root;
pub use stage::{Stage, Verdict};

/// Version of the code that produced an output; recorded in every manifest.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Lower-case hex blake3 of a byte slice.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}
