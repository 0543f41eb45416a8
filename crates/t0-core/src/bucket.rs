//! Entity buckets (issue 31): `--bucket k/N` runs a stage on the entities whose key hashes to
//! bucket `k` of `N`, in a root of its own under `<root>/buckets/`, so that buckets run in
//! parallel (each has its own catalog and lock) and `commit` joins their results.
//!
//! The hash is DuckDB's `md5_number` of the key, modulo N: computed where the rows are (in
//! SQL), stable across DuckDB versions and platforms because MD5 is, and the same for a key
//! whichever file or stage it comes from.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The most buckets a stage may be split into.
pub const MAX_BUCKETS: u32 = 4096;

/// Bucket `k` of `n` (`0 <= k < n`); `0/1` is the whole population, today's single root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    k: u32,
    n: u32,
}

impl Bucket {
    /// The whole population (`0/1`).
    pub const WHOLE: Bucket = Bucket { k: 0, n: 1 };

    pub fn new(k: u32, n: u32) -> Result<Bucket> {
        if n == 0 || n > MAX_BUCKETS || k >= n {
            return Err(Error::Usage(format!("bucket {k}/{n}: want k/N with 0 <= k < N and 1 <= N <= {MAX_BUCKETS}")));
        }
        Ok(Bucket { k, n })
    }

    /// `k/N` as typed on the command line.
    pub fn parse(text: &str) -> Result<Bucket> {
        let bad = || Error::Usage(format!("--bucket {text:?}: want k/N, e.g. 2/8 (bucket 2 of 8; 0/1 is everything)"));
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k = k.trim().parse::<u32>().map_err(|_| bad())?;
        let n = n.trim().parse::<u32>().map_err(|_| bad())?;
        Bucket::new(k, n)
    }

    pub fn index(&self) -> u32 {
        self.k
    }

    pub fn count(&self) -> u32 {
        self.n
    }

    pub fn is_whole(&self) -> bool {
        self.n == 1
    }

    /// Every bucket of `n`, in order.
    pub fn all(n: u32) -> Result<Vec<Bucket>> {
        Bucket::new(0, n)?;
        Ok((0..n).map(|k| Bucket { k, n }).collect())
    }

    /// The directory of this bucket's root under the base root: `buckets/<k>-of-<N>` (zero
    /// padded so directory listings sort by k); the base root itself for `0/1`.
    pub fn dir(&self, base: &Path) -> PathBuf {
        if self.is_whole() {
            return base.to_path_buf();
        }
        let w = (self.n - 1).to_string().len();
        base.join(BUCKETS_DIR).join(format!("{:0w$}-of-{}", self.k, self.n))
    }

    /// A SQL condition true for the rows whose `column` (an entity key) is in this bucket;
    /// `TRUE` for `0/1`. NULL keys fall in bucket 0 (a row without a key is still somebody's
    /// to report).
    pub fn sql(&self, column: &str) -> String {
        if self.is_whole() {
            return "TRUE".into();
        }
        format!("(coalesce(md5_number(CAST({column} AS VARCHAR)) % {n}, 0) = {k})", n = self.n, k = self.k)
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::WHOLE
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The directory under a base root that holds the bucket roots.
pub const BUCKETS_DIR: &str = "buckets";

/// The file under `buckets/` that fixes how many buckets the root is split into.
pub const LAYOUT_FILE: &str = "layout.json";

/// Where, under a base root, a bucketed acquire's split step keeps the parsed chunks of a
/// source file for the other buckets: `lake/split/<file blake3>/…` (`t0_acquire::split`).
/// `commit acquire` removes a file's once every bucket has read it.
pub fn split_dir(base: &Path, file_hash: &str) -> PathBuf {
    base.join(SPLIT_DIR).join(file_hash)
}

/// The split step's directory under a base root (see [`split_dir`]).
pub const SPLIT_DIR: &str = "lake/split";

/// How many buckets `base` is split into, if it is.
pub fn layout(base: &Path) -> Result<Option<u32>> {
    let path = base.join(BUCKETS_DIR).join(LAYOUT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::internal(path.display().to_string(), e))?;
    match v["buckets"].as_u64() {
        Some(n) if (1..=u64::from(MAX_BUCKETS)).contains(&n) => Ok(Some(n as u32)),
        _ => Err(Error::Refused(format!("{}: no bucket count in {text:?}", path.display()))),
    }
}

/// Fix `base`'s bucket count at `n` on its first bucketed run; refuse another `n` later (exit
/// 2): an entity's bucket depends on N, so N changes only by re-bucketing into a new root.
pub fn claim_layout(base: &Path, n: u32) -> Result<()> {
    let dir = base.join(BUCKETS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(LAYOUT_FILE);
    let text = format!("{{\"buckets\": {n}}}\n");
    // Buckets start at once: the first to link its file in place fixes N (a link never
    // replaces a file, and readers see it whole), the others read it.
    if !path.exists() {
        let tmp = dir.join(format!(".{LAYOUT_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, &text).map_err(|e| Error::io(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    match layout(base)? {
        Some(m) if m == n => Ok(()),
        Some(m) => Err(Error::Usage(format!(
            "{} is split into {m} buckets ({}), not {n}: an entity's bucket depends on the count, \
             so re-bucket into a new root (acquire its input with --bucket k/{n} there)",
            base.display(),
            path.display()
        ))),
        None => Err(Error::Refused(format!("{}: bucket layout vanished while claimed", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_parse_and_name_their_roots() {
        let b = Bucket::parse("3/12").unwrap();
        assert_eq!((b.index(), b.count()), (3, 12));
        assert_eq!(b.dir(Path::new("r")), Path::new("r/buckets/03-of-12"));
        assert_eq!(Bucket::parse("0/1").unwrap().dir(Path::new("r")), Path::new("r"));
        assert_eq!(Bucket::parse("0/1").unwrap().sql("entity_id"), "TRUE");
        for bad in ["3", "3/3", "-1/4", "1/0", "a/b", "1/5000", ""] {
            let e = Bucket::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{bad}");
        }
        assert_eq!(Bucket::all(3).unwrap().len(), 3);
    }
}
