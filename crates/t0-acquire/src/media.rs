//! Artifact paths: relative to the source's media root and never outside it (no absolute
//! paths, no `..`, no symlink that leads out). Every accepted file is hashed.

use std::path::{Component, Path, PathBuf};

/// Why an artifact path was refused; the row is quarantined with this reason.
pub fn resolve(media_root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute() || rel.starts_with('\\') || rel.contains(':') {
        return Err(format!("artifact path {rel:?} is absolute; paths are relative to the media root"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("artifact path {rel:?} climbs out of the media root with .."));
    }
    let root =
        media_root.canonicalize().map_err(|e| format!("media root {} cannot be opened: {e}", media_root.display()))?;
    let full = root.join(p);
    let real = full.canonicalize().map_err(|e| format!("artifact {rel:?} cannot be opened: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!("artifact path {rel:?} leads outside the media root (symlink to {})", real.display()));
    }
    if !real.is_file() {
        return Err(format!("artifact {rel:?} is not a regular file"));
    }
    Ok(real)
}

/// blake3 of a media file, streamed.
pub fn hash(path: &Path) -> Result<String, String> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).map_err(|e| format!("artifact {} cannot be read: {e}", path.display()))?;
    h.update_reader(f).map_err(|e| format!("artifact {} cannot be read: {e}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}
