//! Extraction without a root: many inputs through one extractor in parallel (text batched by
//! token length), and `embed extract` over plain files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use t0_core::{Error, Result};

use crate::{Extractor, effnet, model_dir, text};

/// Texts per forward pass. Only texts of one token length share a pass (no padding), so a
/// vector does not depend on its batch (`batched_same_length_text_is_bit_identical_to_alone`).
const TEXT_BATCH: usize = 128;

impl Extractor {
    /// One input, with decoder panics caught (untrusted media must not take the run down).
    fn extract_guarded(&self, bytes: &[u8], path: &Path) -> std::result::Result<Vec<f32>, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.extract(bytes, path)))
            .unwrap_or_else(|_| Err("the decoder panicked on this input".into()))
    }

    /// The vectors of many inputs on `pool`, in input order. Text is batched by exact token
    /// length; everything else runs one input per task. `done` is told of each finished input.
    pub fn extract_many(
        &self,
        inputs: &[(&[u8], &Path)],
        pool: &rayon::ThreadPool,
        done: &(dyn Fn(u64) + Sync),
    ) -> Vec<std::result::Result<Vec<f32>, String>> {
        let Extractor::Text(m) = self else {
            return pool.install(|| {
                inputs
                    .par_iter()
                    .map(|(b, p)| {
                        let r = self.extract_guarded(b, p);
                        done(1);
                        r
                    })
                    .collect()
            });
        };
        // Group by token length (inputs that fail to decode or tokenize go alone).
        let lens: Vec<Option<usize>> = pool.install(|| {
            inputs
                .par_iter()
                .map(|(b, _)| std::str::from_utf8(b).ok().and_then(|s| m.token_len(s).ok()).filter(|n| *n > 0))
                .collect()
        });
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for (i, l) in lens.iter().enumerate() {
            match l {
                Some(n) => groups.entry(*n).or_default().push(i),
                None => batches.push(vec![i]),
            }
        }
        for g in groups.into_values() {
            batches.extend(g.chunks(TEXT_BATCH).map(<[usize]>::to_vec));
        }
        type Done = Vec<(usize, std::result::Result<Vec<f32>, String>)>;
        let results: Vec<Done> = pool.install(|| {
            batches
                .par_iter()
                .map(|batch| {
                    let texts: Option<Vec<&str>> =
                        batch.iter().map(|&i| std::str::from_utf8(inputs[i].0).ok()).collect();
                    let out = match texts {
                        Some(t) if batch.len() > 1 => {
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.embed_same_length(&t)))
                                .unwrap_or_else(|_| Err("the model panicked".into()))
                                .ok()
                                .map(|v| batch.iter().copied().zip(v.into_iter().map(Ok)).collect::<Vec<_>>())
                        }
                        _ => None,
                    };
                    // A batch that fails is retried one by one, so each input gets its own reason.
                    let out = out.unwrap_or_else(|| {
                        batch.iter().map(|&i| (i, self.extract_guarded(inputs[i].0, inputs[i].1))).collect()
                    });
                    done(batch.len() as u64);
                    out
                })
                .collect()
        });
        let mut ordered: Vec<Option<std::result::Result<Vec<f32>, String>>> = vec![None; inputs.len()];
        for (i, r) in results.into_iter().flatten() {
            ordered[i] = Some(r);
        }
        ordered.into_iter().map(|r| r.expect("every input is in one batch")).collect()
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ExtractReport {
    pub kind: String,
    pub extractor: String,
    pub inputs: usize,
    pub dim: usize,
    pub threads: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub failed: Vec<(String, String)>,
    pub vectors: Vec<Option<Vec<f32>>>,
}

/// Run one extractor over files (text: one input per line), in parallel, without a cache.
pub fn extract_files(
    models: &Path,
    names: &t0_project::def::EmbedModels,
    kind: &str,
    files: &[PathBuf],
    threads: usize,
) -> Result<ExtractReport> {
    let ext = match kind {
        "text" => Extractor::Text(Arc::new(text::TextModel::load(&model_dir(models, &names.text))?)),
        "image" | "video" => {
            let m =
                Arc::new(effnet::EfficientNetLite0::load(&model_dir(models, &names.image).join("model.safetensors"))?);
            if kind == "image" { Extractor::Image(m) } else { Extractor::Video(m) }
        }
        "handcrafted" => Extractor::Handcrafted,
        "audio" => Extractor::Audio,
        other => {
            return Err(Error::Usage(format!("--kind {other}: expected text, image, handcrafted, audio or video")));
        }
    };
    let mut inputs: Vec<(String, Vec<u8>, PathBuf)> = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        if kind == "text" {
            let text =
                String::from_utf8(bytes).map_err(|e| Error::BadInput(format!("{}: not UTF-8: {e}", f.display())))?;
            for (i, line) in text.lines().enumerate() {
                inputs.push((format!("{}:{}", f.display(), i + 1), line.as_bytes().to_vec(), f.clone()));
            }
        } else {
            inputs.push((f.display().to_string(), bytes, f.clone()));
        }
    }
    let threads =
        if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| Error::internal("thread pool", e))?;
    let started = std::time::Instant::now();
    let refs: Vec<(&[u8], &Path)> = inputs.iter().map(|(_, b, p)| (b.as_slice(), p.as_path())).collect();
    let results = ext.extract_many(&refs, &pool, &|_| {});
    let seconds = started.elapsed().as_secs_f64();
    let mut failed = Vec::new();
    let vectors = results
        .into_iter()
        .zip(&inputs)
        .map(|(r, (name, _, _))| match r {
            Ok(v) => Some(v),
            Err(e) => {
                failed.push((name.clone(), e));
                None
            }
        })
        .collect();
    Ok(ExtractReport {
        kind: kind.to_string(),
        extractor: ext.name(),
        inputs: inputs.len(),
        dim: ext.dim(),
        threads,
        seconds,
        per_second: inputs.len() as f64 / seconds.max(1e-9),
        failed,
        vectors,
    })
}
