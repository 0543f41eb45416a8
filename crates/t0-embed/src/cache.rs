//! The vector cache: one file per (extractor version, input bytes), so a re-run computes only
//! what it has not seen. Entries are written to a unique temporary name and renamed into place
//! (a kill leaves no torn entry), and each carries a blake3 checksum of its contents: an entry
//! that does not verify is a miss and is rewritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 4] = b"T0EV";
static SEQ: AtomicU64 = AtomicU64::new(0);

pub struct Cache {
    dir: PathBuf,
}

/// The key of an input under an extractor: blake3 of the extractor's version hash and the
/// input's content hash (blake3 of its bytes).
pub fn key(extractor_version: &str, content_hash: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(extractor_version.as_bytes());
    h.update(b"\0");
    h.update(content_hash.as_bytes());
    h.finalize().to_hex().to_string()
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.vec"))
    }

    /// The cached vector of `key`, if present, intact and of `dim` values.
    pub fn get(&self, key: &str, dim: usize) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let body_len = 8 + dim * 4;
        if bytes.len() != body_len + 32 || &bytes[..4] != MAGIC {
            return None;
        }
        if u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize != dim {
            return None;
        }
        if blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..] {
            return None;
        }
        Some(bytes[8..body_len].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }

    /// Store `v` under `key` atomically.
    pub fn put(&self, key: &str, v: &[f32]) -> std::io::Result<()> {
        let path = self.path(key);
        let dir = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir)?;
        let mut body = Vec::with_capacity(8 + v.len() * 4 + 32);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&(v.len() as u32).to_le_bytes());
        v.iter().for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
        let sum = blake3::hash(&body);
        body.extend_from_slice(sum.as_bytes());
        let tmp = dir.join(format!(".{key}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_entries_are_misses() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        let k = key("v1", "abc");
        assert!(c.get(&k, 3).is_none());
        c.put(&k, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(c.get(&k, 3).unwrap(), vec![1.0, -2.5, 3.25]);
        assert!(c.get(&k, 4).is_none(), "another dimension is a miss");
        // A torn write (truncated) and a flipped byte both fail the checksum.
        let p = c.path(&k);
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 5]).unwrap();
        assert!(c.get(&k, 3).is_none());
        let mut bad = full.clone();
        bad[9] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert!(c.get(&k, 3).is_none());
        assert_ne!(key("v1", "abc"), key("v2", "abc"), "the extractor version is part of the key");
    }
}
