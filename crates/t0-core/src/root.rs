use std::path::{Path, PathBuf};

/// One t0-clip root on disk (DESIGN.md "Layout on disk"). All paths recorded in manifests are
/// relative to the root so a root can be moved or copied and still verify.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    bucket: crate::Bucket,
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Root { path: path.into(), bucket: crate::Bucket::WHOLE }
    }

    /// The root of one bucket of the base root `base` (`buckets/<k>-of-<N>` under it; the base
    /// root itself for `0/1`).
    pub fn bucketed(base: &Path, bucket: crate::Bucket) -> Self {
        Root { path: bucket.dir(base), bucket }
    }

    /// Which entities this root holds: `0/1` for a whole root.
    pub fn bucket(&self) -> crate::Bucket {
        self.bucket
    }

    /// The base root this root is a bucket of (itself when whole): a bucket's root is
    /// `buckets/<k>-of-<N>` under it.
    pub fn base(&self) -> Root {
        if self.bucket.is_whole() {
            return self.clone();
        }
        let base = self.path.parent().and_then(Path::parent).unwrap_or(&self.path);
        Root::new(base)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn catalog(&self) -> PathBuf {
        self.path.join("catalog.duckdb")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.path.join(".lock")
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    pub fn manifest(&self, stage: crate::Stage, run_id: &str) -> PathBuf {
        self.path.join("manifests").join(stage.as_str()).join(format!("{run_id}.json"))
    }

    /// `abs` relative to the root, with `/` separators, for recording in manifests.
    pub fn relative(&self, abs: &Path) -> String {
        abs.strip_prefix(&self.path)
            .unwrap_or(abs)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}
