//! `embed`: per-(entity, T0) vectors of what the project's `embed:` declares, from real
//! pretrained models run in candle, plus fused vectors per strategy.
//!
//! - text columns of certified surfaces: sentence embeddings (all-MiniLM-L6-v2 or any
//!   BERT-family model directory), [`text`]
//! - image artifacts: EfficientNet-Lite0 pooled features ([`effnet`]) and a handcrafted vector
//!   ([`image`])
//! - audio artifacts: librosa-style MFCC, log-mel and spectral statistics ([`audio`])
//! - video artifacts: frame statistics, motion, and the mean image embedding ([`video`])
//!
//! Visibility is the surface's business: an artifact column holds the content hash of the
//! artifact visible at T0 (within the SLA) or NULL, and embed reads nothing else. Bytes come
//! from the root's content-addressed media store and are checked against their hash. Every
//! vector is a function of (extractor version, input bytes) alone, computed one input at a
//! time, so the cache ([`cache`]) can serve it and outputs are bit-identical across runs,
//! thread counts and cache states. Media that cannot be decoded is quarantined with its file
//! and reason; its vector is NULL.

pub mod cache;
mod compute;
pub mod effnet;
mod extract;
pub mod fusion;
pub mod gather;
pub mod pth;
mod stage;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use t0_core::Error;

pub use extract::{ExtractReport, extract_files};
pub use stage::run;
/// The decoders live in `t0-media` (no catalog: fuzzed on their own).
pub use t0_media::{audio, image, video};

pub const STAGE: t0_core::Stage = t0_core::Stage::Embed;

/// A model that cannot be loaded: the file and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ModelError {
    pub path: PathBuf,
    pub message: String,
}

impl ModelError {
    pub fn new(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ModelError { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

impl From<ModelError> for Error {
    fn from(e: ModelError) -> Self {
        Error::config(e.path, e.message)
    }
}

/// The default models directory: `~/.cache/t0-clip/models` (scripts/fetch-models.sh).
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/t0-clip/models")
}

pub struct EmbedArgs {
    pub project: t0_project::Project,
    pub max_age_days: i64,
    /// Where model directories named by the project live.
    pub models: PathBuf,
    /// The vector cache (default: `<root>/cache/embed`); safe to share between roots.
    pub cache: Option<PathBuf>,
    /// Worker threads (0: all cores). Outputs do not depend on it.
    pub threads: usize,
}

/// One extractor: what turns an input's bytes into a vector.
pub enum Extractor {
    Text(Arc<text::TextModel>),
    Image(Arc<effnet::EfficientNetLite0>),
    Handcrafted,
    Audio,
    Video(Arc<effnet::EfficientNetLite0>),
}

impl Extractor {
    pub fn name(&self) -> String {
        match self {
            Extractor::Text(m) => {
                format!("text:{}", m.dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default())
            }
            Extractor::Image(_) => "image:efficientnet-lite0".into(),
            Extractor::Handcrafted => "image:handcrafted-v1".into(),
            Extractor::Audio => "audio:librosa-features-v1".into(),
            Extractor::Video(_) => "video:frames-v1+efficientnet-lite0".into(),
        }
    }

    /// A hash of everything that determines the vectors (code version tag and weights).
    pub fn version(&self) -> String {
        match self {
            Extractor::Text(m) => m.version.clone(),
            Extractor::Image(m) => m.version.clone(),
            Extractor::Handcrafted => blake3::hash(b"image:handcrafted-v1").to_hex().to_string(),
            Extractor::Audio => blake3::hash(b"audio:librosa-features-v1").to_hex().to_string(),
            Extractor::Video(m) => {
                blake3::hash(format!("video:frames-v1 {}", m.version).as_bytes()).to_hex().to_string()
            }
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            Extractor::Text(m) => m.dim,
            Extractor::Image(_) => effnet::FEATURES,
            Extractor::Handcrafted => image::HANDCRAFTED_DIM,
            Extractor::Audio => audio::AUDIO_DIM,
            Extractor::Video(_) => video::STATS_DIM + effnet::FEATURES,
        }
    }

    /// The vector of one input. `path` names the stored file (for ffmpeg and messages).
    pub fn extract(&self, bytes: &[u8], path: &Path) -> std::result::Result<Vec<f32>, String> {
        match self {
            Extractor::Text(m) => {
                let s = std::str::from_utf8(bytes).map_err(|e| format!("text is not UTF-8: {e}"))?;
                m.embed(s)
            }
            Extractor::Image(m) => {
                let img = image::decode(bytes)?;
                let out = m.forward(effnet::preprocess(&img.data, img.w, img.h)).map_err(|e| format!("model: {e}"))?;
                Ok(out.features)
            }
            Extractor::Handcrafted => Ok(image::handcrafted(&image::decode(bytes)?)),
            Extractor::Audio => audio::extract_wav(bytes),
            Extractor::Video(m) => {
                let frames = video::frames(bytes, path)?;
                let mut v = video::stats(&frames);
                let mut sum = vec![0f64; effnet::FEATURES];
                for f in &frames {
                    let out = m.forward(effnet::preprocess(&f.data, f.w, f.h)).map_err(|e| format!("model: {e}"))?;
                    sum.iter_mut().zip(&out.features).for_each(|(s, x)| *s += *x as f64);
                }
                v.extend(sum.iter().map(|s| (s / frames.len() as f64) as f32));
                Ok(v)
            }
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub extractor: String,
    pub version: String,
    pub dim: usize,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingOutput {
    /// `embeddings.<name>`.
    pub name: String,
    pub surface: String,
    pub column: String,
    pub extractor: String,
    pub dim: usize,
    pub rows: u64,
    /// Rows with a vector (the rest had no visible input, or it was quarantined).
    pub present: u64,
    pub distinct_inputs: u64,
    #[serde(default)]
    pub computed: u64,
    #[serde(default)]
    pub cached: u64,
    pub quarantined: u64,
    pub path: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FusedOutput {
    pub strategy: String,
    pub dim: usize,
    pub modalities: Vec<String>,
    pub rows: u64,
    pub path: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// The embedding it was meant for.
    pub embedding: String,
    pub content_hash: String,
    /// The artifact's source path(s) as acquired.
    pub file: String,
    pub reason: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EmbedReport {
    pub run_id: String,
    pub models: Vec<ModelInfo>,
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub cache_dir: String,
    pub outputs: Vec<EmbeddingOutput>,
    pub fused: Vec<FusedOutput>,
    pub quarantined: Vec<Quarantined>,
    #[serde(default)]
    pub seconds: f64,
    /// Inputs embedded per second (computed ones only; cache hits excluded).
    #[serde(default)]
    pub computed_per_second: f64,
}

/// Resolve a model name from project.yaml against the models directory.
pub fn model_dir(models: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() { p.to_path_buf() } else { models.join(p) }
}
