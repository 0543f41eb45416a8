//! Artifact paths: relative to the source's media root and never outside it (no absolute
//! paths, no `..`, no symlink that leads out). Every accepted file is hashed and copied into
//! the root's content-addressed media store, so later stages (embed) read exactly the bytes
//! acquire hashed, whatever happens to the input directory.

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

/// Where the media store keeps the file of content hash `hash` (relative to the root).
pub fn store_path(hash: &str) -> String {
    t0_project::vocab::media_path(hash)
}

/// Copy `src` (whose blake3 is `hash`) into the media store, unless it is there already.
/// Written to a temporary name and renamed, so a killed acquire leaves no torn entry.
pub fn store(root: &t0_core::Root, src: &Path, hash: &str) -> Result<(), String> {
    let dest = root.join(store_path(hash));
    if dest.is_file() {
        return Ok(());
    }
    let dir = dest.parent().expect("store paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| format!("media store {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
    std::fs::copy(src, &tmp)
        .map_err(|e| format!("artifact {} cannot be copied to the media store: {e}", src.display()))?;
    std::fs::rename(&tmp, &dest).map_err(|e| format!("media store {}: {e}", dest.display()))?;
    Ok(())
}
