//! Vectors of distinct inputs: from the cache, or loaded, checked and extracted in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use t0_core::Progress;

use crate::{Extractor, cache};

/// Why an input's bytes could not be loaded.
#[derive(Debug, Clone)]
pub(crate) enum LoadFailure {
    /// Bad or absent media: quarantined, the vector is NULL.
    Bad(String),
    /// The media store no longer holds what acquire hashed: tampering, refused (exit 3).
    Changed(String),
}

/// Loads the bytes of one input by (content hash, stored path).
pub(crate) type Loader<'a> = dyn Fn(&str, &Path) -> std::result::Result<Vec<u8>, LoadFailure> + Sync + 'a;

/// What one (input, extractor) pair produced.
pub(crate) struct Computed {
    pub vectors: HashMap<String, Vec<f32>>,
    pub computed: u64,
    pub cached: u64,
}

/// Vectors for the distinct inputs `items` ((content hash, bytes loader)) under `ext`, from
/// the cache or computed in parallel; failures are quarantined. `Err` names a media store file
/// that changed since acquire hashed it.
pub(crate) fn compute(
    ext: &Extractor,
    items: &[(String, PathBuf)],
    load: &Loader,
    cache: &cache::Cache,
    pool: &rayon::ThreadPool,
    progress: &dyn Progress,
    label: &str,
) -> std::result::Result<(Computed, Vec<(String, String)>), String> {
    let version = ext.version();
    let dim = ext.dim();
    progress.phase(label, Some(items.len() as u64));
    // Cache hits first; the misses are loaded, then extracted together (text batches).
    let lookups: Vec<Option<Vec<f32>>> =
        pool.install(|| items.par_iter().map(|(hash, _)| cache.get(&cache::key(&version, hash), dim)).collect());
    let cached = lookups.iter().filter(|v| v.is_some()).count() as u64;
    progress.advance(cached);
    let misses: Vec<usize> = (0..items.len()).filter(|&i| lookups[i].is_none()).collect();
    let loaded: Vec<std::result::Result<Vec<u8>, LoadFailure>> =
        pool.install(|| misses.par_iter().map(|&i| load(&items[i].0, &items[i].1)).collect());
    if let Some(Err(LoadFailure::Changed(why))) = loaded.iter().find(|l| matches!(l, Err(LoadFailure::Changed(_)))) {
        progress.finish();
        return Err(why.clone());
    }
    let ok: Vec<usize> = (0..misses.len()).filter(|&k| loaded[k].is_ok()).collect();
    let inputs: Vec<(&[u8], &Path)> =
        ok.iter().map(|&k| (loaded[k].as_ref().expect("ok").as_slice(), items[misses[k]].1.as_path())).collect();
    let extracted = ext.extract_many(&inputs, pool, &|n| progress.advance(n));
    progress.advance((misses.len() - ok.len()) as u64);
    progress.finish();
    let mut vectors = HashMap::new();
    let mut bad = Vec::new();
    let mut computed = 0u64;
    let mut extracted = extracted.into_iter();
    for (k, &i) in misses.iter().enumerate() {
        let hash = &items[i].0;
        let r = match &loaded[k] {
            Err(LoadFailure::Bad(e) | LoadFailure::Changed(e)) => Err(e.clone()),
            Ok(_) => match extracted.next().expect("one result per loaded input") {
                Ok(v) if v.len() != dim => Err(format!("extractor returned {} values, expected {dim}", v.len())),
                Ok(v) if v.iter().any(|x| !x.is_finite()) => Err("non-finite values in the vector".into()),
                other => other,
            },
        };
        match r {
            Ok(v) => {
                computed += 1;
                // A cache that cannot be written costs time, not correctness.
                let _ = cache.put(&cache::key(&version, hash), &v);
                vectors.insert(hash.clone(), v);
            }
            Err(e) => bad.push((hash.clone(), e)),
        }
    }
    for (i, v) in lookups.into_iter().enumerate() {
        if let Some(v) = v {
            vectors.insert(items[i].0.clone(), v);
        }
    }
    Ok((Computed { vectors, computed, cached }, bad))
}
