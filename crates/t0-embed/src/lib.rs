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

pub mod audio;
pub mod cache;
pub mod effnet;
pub mod fusion;
pub mod image;
pub mod pth;
pub mod text;
pub mod video;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListBuilder, Float32Builder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};
use t0_project::def::MediaKind;

pub const STAGE: t0_core::Stage = t0_core::Stage::Embed;
/// Why an input's bytes could not be loaded.
#[derive(Debug, Clone)]
enum LoadFailure {
    /// Bad or absent media: quarantined, the vector is NULL.
    Bad(String),
    /// The media store no longer holds what acquire hashed: tampering, refused (exit 3).
    Changed(String),
}

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

type Key = (String, i64);
/// Loads the bytes of one input by (content hash, stored path).
type Loader<'a> = dyn Fn(&str, &Path) -> std::result::Result<Vec<u8>, LoadFailure> + Sync + 'a;
/// (output name, dimension, keys in surface order, vectors by key): the inputs of fusion.
type FusionInput = (String, usize, Vec<Key>, HashMap<Key, Vec<f32>>);
/// A surface column's rows: ((entity_id, t0), value).
type ColumnRows = Vec<(Key, Option<String>)>;

/// (entity_id, t0, value) rows of one surface column, in file order.
fn read_column(root: &Root, abs: &Path, column: &str) -> Result<ColumnRows> {
    let path = root.relative(abs);
    let (_, batches) = t0_table::ParquetSet::open(abs)?.read_all()?;
    let mut rows = Vec::new();
    for b in &batches {
        let col = |name: &str| -> Result<&ArrayRef> {
            b.column_by_name(name).ok_or_else(|| Error::Refused(format!("{path}: no column {name}")))
        };
        let id = col("entity_id")?
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Refused(format!("{path}: entity_id is not text")))?;
        let t0 = col("t0")?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Refused(format!("{path}: t0 is not a microsecond timestamp")))?;
        let v = arrow::compute::cast(col(column)?, &DataType::Utf8).map_err(|e| Error::internal(&path, e))?;
        let v = v.as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push(((id.value(i).to_string(), t0.value(i)), v.is_valid(i).then(|| v.value(i).to_string())));
        }
    }
    Ok(rows)
}

fn vector_field(dim: usize) -> (Arc<Field>, DataType) {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    (item.clone(), DataType::FixedSizeList(item, dim as i32))
}

fn write_vectors(
    path: &Path,
    keys: &[Key],
    vectors: &[Option<&Vec<f32>>],
    dim: usize,
    extra: Vec<(Field, ArrayRef)>,
) -> Result<()> {
    let (item, dt) = vector_field(dim);
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32).with_field(item);
    for v in vectors {
        match v {
            Some(v) => {
                list.values().append_slice(v);
                list.append(true);
            }
            None => {
                list.values().append_slice(&vec![0.0; dim]);
                list.append(false);
            }
        }
    }
    let mut fields = vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("t0", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("embedding", dt, true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())),
        Arc::new(TimestampMicrosecondArray::from(keys.iter().map(|k| k.1).collect::<Vec<_>>())),
        Arc::new(list.finish()),
    ];
    for (f, a) in extra {
        fields.push(f);
        cols.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).ctx(|| "embedding batch".into())?;
    t0_table::write_parquet(path, schema, &[batch])
}

/// What one (input, extractor) pair produced.
struct Computed {
    vectors: HashMap<String, Vec<f32>>,
    computed: u64,
    cached: u64,
}

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

/// Vectors for the distinct inputs `items` ((content hash, bytes loader)) under `ext`, from
/// the cache or computed in parallel; failures are quarantined. `Err` names a media store file
/// that changed since acquire hashed it.
fn compute(
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

struct Planned {
    /// `embeddings.<name>` suffix.
    name: String,
    surface: String,
    column: String,
    kind: Option<MediaKind>,
    extractor: Arc<Extractor>,
}

pub fn run(root: &Root, clock: Clock, args: &EmbedArgs, progress: &dyn Progress) -> Result<EmbedReport> {
    let started = std::time::Instant::now();
    let decl = &args.project.def.embed;
    if decl.is_empty() {
        return Err(Error::NothingToDo(format!("project {} declares no embed inputs", args.project.name())));
    }
    // Models first: a missing model is a configuration error before any lock is taken.
    let needs_image = decl.artifacts.iter().any(|a| matches!(a.kind, MediaKind::Image | MediaKind::Video));
    let text_model = if decl.text.is_empty() {
        None
    } else {
        Some(Arc::new(text::TextModel::load(&model_dir(&args.models, &decl.models.text))?))
    };
    let image_model = if needs_image {
        let dir = model_dir(&args.models, &decl.models.image);
        Some(Arc::new(effnet::EfficientNetLite0::load(&dir.join("model.safetensors"))?))
    } else {
        None
    };
    let mut plan = Vec::new();
    for t in &decl.text {
        let ext = Arc::new(Extractor::Text(text_model.clone().expect("loaded for text inputs")));
        plan.push(Planned {
            name: t.name.clone(),
            surface: t.surface.clone(),
            column: t.column.clone(),
            kind: None,
            extractor: ext,
        });
    }
    let handcrafted = Arc::new(Extractor::Handcrafted);
    let audio_ext = Arc::new(Extractor::Audio);
    for a in &decl.artifacts {
        let p = |name: String, extractor: Arc<Extractor>| Planned {
            name,
            surface: a.surface.clone(),
            column: a.column.clone(),
            kind: Some(a.kind),
            extractor,
        };
        match a.kind {
            MediaKind::Image => {
                let m = image_model.clone().expect("loaded for image inputs");
                plan.push(p(a.name.clone(), Arc::new(Extractor::Image(m))));
                plan.push(p(format!("{}_handcrafted", a.name), handcrafted.clone()));
            }
            MediaKind::Audio => plan.push(p(a.name.clone(), audio_ext.clone())),
            MediaKind::Video => {
                let m = image_model.clone().expect("loaded for video inputs");
                plan.push(p(a.name.clone(), Arc::new(Extractor::Video(m))));
            }
        }
    }
    let models: Vec<ModelInfo> = {
        let mut seen = BTreeMap::new();
        for p in &plan {
            seen.entry(p.extractor.name()).or_insert_with(|| ModelInfo {
                extractor: p.extractor.name(),
                version: p.extractor.version(),
                dim: p.extractor.dim(),
            });
        }
        seen.into_values().collect()
    };

    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    t0_project::schema::check(&catalog, &args.project)?;
    let config_hash = t0_core::config::value_hash(&(
        "embed-v2",
        serde_json::to_value(decl).expect("plain struct"),
        serde_json::to_value(&models).expect("plain struct"),
    ));
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    let mut surfaces: BTreeMap<String, PathBuf> = BTreeMap::new();
    for p in &plan {
        if surfaces.contains_key(&p.surface) {
            continue;
        }
        let name = format!("surface.{}", p.surface);
        if cert.manifest.outputs.iter().all(|o| o.name != name) {
            return Err(Error::config(
                args.project.display(t0_project::PROJECT_FILE),
                format!("embed input {}: certify run {} has no surface {}", p.name, cert.manifest.run_id, p.surface),
            ));
        }
        let out = run.consume(&cert, &[name.as_str()])?.remove(0);
        surfaces.insert(p.surface.clone(), out.path(root)?);
    }
    // The certificate is part of the provenance: a re-certification (even of equal content)
    // gets its own embeddings run, which is what train-suite checks.
    let run_id = run.run_id(&cert.manifest.run_id);
    run.ensure_new(&run_id)?;

    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        args.threads
    };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| Error::internal("thread pool", e))?;
    let cache_dir = args.cache.clone().unwrap_or_else(|| root.join("cache/embed"));
    let cache = cache::Cache::new(&cache_dir);

    // Source paths of artifacts by content hash, for quarantine messages.
    let mut sources: HashMap<String, Vec<String>> = HashMap::new();
    if !decl.artifacts.is_empty() {
        let current = t0_project::vocab::current_sql("artifacts", true).expect("artifacts is canonical");
        let sql = format!(
            "SELECT DISTINCT content_hash, path FROM ({current}) WHERE content_hash IS NOT NULL ORDER BY content_hash, path"
        );
        let (_, batches) = catalog.query_arrow(&sql, &[])?;
        for b in &batches {
            let (h, p) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
            for i in 0..b.num_rows() {
                if p.is_valid(i) {
                    sources.entry(h.value(i).to_string()).or_default().push(p.value(i).to_string());
                }
            }
        }
    }
    let load_media = |hash: &str, stored: &Path| -> std::result::Result<Vec<u8>, LoadFailure> {
        let bytes = std::fs::read(stored)
            .map_err(|e| LoadFailure::Bad(format!("media store {}: {e}", root.relative(stored))))?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(LoadFailure::Changed(format!(
                "media store file {} does not match its content hash",
                root.relative(stored)
            )));
        }
        Ok(bytes)
    };
    let mut texts: HashMap<String, String> = HashMap::new();

    let mut outputs = Vec::new();
    let mut reports = Vec::new();
    let mut quarantined: Vec<Quarantined> = Vec::new();
    let mut total_computed = 0u64;
    // Per output: keys in surface order and vectors, for fusion.
    let mut fused_inputs: Vec<FusionInput> = Vec::new();
    let mut columns_cache: HashMap<(String, String), ColumnRows> = HashMap::new();
    for p in &plan {
        let col_key = (p.surface.clone(), p.column.clone());
        if !columns_cache.contains_key(&col_key) {
            columns_cache.insert(col_key.clone(), read_column(root, &surfaces[&p.surface], &p.column)?);
        }
        let rows = &columns_cache[&col_key];
        // Distinct inputs by content hash: texts hash their UTF-8 bytes, artifacts carry theirs.
        let mut distinct: BTreeSet<String> = BTreeSet::new();
        let mut row_hash: Vec<Option<String>> = Vec::with_capacity(rows.len());
        for (_, v) in rows {
            let h = v.as_ref().map(|v| match p.kind {
                None => {
                    let h = blake3::hash(v.as_bytes()).to_hex().to_string();
                    texts.entry(h.clone()).or_insert_with(|| v.clone());
                    h
                }
                Some(_) => v.clone(),
            });
            if let Some(h) = &h {
                distinct.insert(h.clone());
            }
            row_hash.push(h);
        }
        let items: Vec<(String, PathBuf)> = distinct
            .iter()
            .map(|h| {
                let stored = if p.kind.is_some() && h.len() >= 2 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    root.join(t0_project::vocab::media_path(h))
                } else {
                    PathBuf::new()
                };
                (h.clone(), stored)
            })
            .collect();
        let load_any = |hash: &str, stored: &Path| -> std::result::Result<Vec<u8>, LoadFailure> {
            match p.kind {
                None => texts
                    .get(hash)
                    .map(|t| t.as_bytes().to_vec())
                    .ok_or_else(|| LoadFailure::Bad("text missing".to_string())),
                Some(_) if stored.as_os_str().is_empty() => {
                    Err(LoadFailure::Bad(format!("{hash:?} is not a content hash")))
                }
                Some(_) => load_media(hash, stored),
            }
        };
        let label = format!("embed {}", p.name);
        // A media store file that changed after acquire hashed it is tampering, not bad media.
        let (done, bad) = compute(&p.extractor, &items, &load_any, &cache, &pool, progress, &label)
            .map_err(|message| Error::Integrity { damage: t0_core::Damage::Changed, message })?;
        total_computed += done.computed;
        for (h, reason) in &bad {
            quarantined.push(Quarantined {
                embedding: p.name.clone(),
                content_hash: h.clone(),
                file: sources.get(h).map(|v| v.join(", ")).unwrap_or_else(|| match p.kind {
                    None => format!("{}.{}", p.surface, p.column),
                    Some(_) => "(not in artifacts)".into(),
                }),
                reason: reason.clone(),
            });
        }
        let keys: Vec<Key> = rows.iter().map(|(k, _)| k.clone()).collect();
        let vecs: Vec<Option<&Vec<f32>>> =
            row_hash.iter().map(|h| h.as_ref().and_then(|h| done.vectors.get(h))).collect();
        let present = vecs.iter().filter(|v| v.is_some()).count() as u64;
        let dim = p.extractor.dim();
        let rel = format!("lake/embeddings/{}/{run_id}/{}.parquet", p.name, p.name);
        write_vectors(&root.join(&rel), &keys, &vecs, dim, Vec::new())?;
        outputs.push(t0_manifest::record_output(
            root,
            &catalog,
            &format!("embeddings.{}", p.name),
            Location::per_entity_t0(rel.clone()),
        )?);
        let by_key: HashMap<Key, Vec<f32>> =
            keys.iter().zip(&vecs).filter_map(|(k, v)| v.map(|v| (k.clone(), v.clone()))).collect();
        fused_inputs.push((p.name.clone(), dim, keys.clone(), by_key));
        reports.push(EmbeddingOutput {
            name: p.name.clone(),
            surface: p.surface.clone(),
            column: p.column.clone(),
            extractor: p.extractor.name(),
            dim,
            rows: keys.len() as u64,
            present,
            distinct_inputs: items.len() as u64,
            computed: done.computed,
            cached: done.cached,
            quarantined: bad.len() as u64,
            path: rel,
        });
    }

    // Fusion over every output, keyed by the union of (entity, T0) in first-seen order.
    let mut fused = Vec::new();
    if !decl.fusion.is_empty() {
        progress.phase("fuse", None);
        let d = decl.fusion_dim;
        let mut keys: Vec<Key> = Vec::new();
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        for (_, _, ks, _) in &fused_inputs {
            for k in ks {
                if seen.insert(k.clone()) {
                    keys.push(k.clone());
                }
            }
        }
        keys.sort();
        let projectors: Vec<fusion::Projector> =
            fused_inputs.iter().map(|(name, dim, _, _)| fusion::Projector::new(name, *dim, d)).collect();
        // Projections of each row's present modalities.
        let projected: Vec<Vec<Option<Vec<f32>>>> = pool.install(|| {
            keys.par_iter()
                .map(|k| {
                    fused_inputs
                        .iter()
                        .zip(&projectors)
                        .map(|((_, _, _, by_key), pr)| by_key.get(k).map(|v| pr.project(v)))
                        .collect()
                })
                .collect()
        });
        let names: Vec<String> = fused_inputs.iter().map(|(n, ..)| n.clone()).collect();
        for &strategy in &decl.fusion {
            let dim = fusion::dim(strategy, names.len(), d);
            let vectors: Vec<Vec<f32>> = projected.iter().map(|parts| fusion::fuse(strategy, parts, d)).collect();
            let refs: Vec<Option<&Vec<f32>>> = vectors.iter().map(Some).collect();
            let mut extra: Vec<(Field, ArrayRef)> = vec![
                (
                    Field::new("strategy", DataType::Utf8, false),
                    Arc::new(StringArray::from(vec![strategy.as_str(); keys.len()])),
                ),
                (
                    Field::new("modalities", DataType::Utf8, false),
                    Arc::new(StringArray::from(
                        projected
                            .iter()
                            .map(|parts| {
                                names
                                    .iter()
                                    .zip(parts)
                                    .filter(|(_, p)| p.is_some())
                                    .map(|(n, _)| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .collect::<Vec<_>>(),
                    )),
                ),
            ];
            for (m, name) in names.iter().enumerate() {
                extra.push((
                    Field::new(format!("has_{name}"), DataType::Boolean, false),
                    Arc::new(BooleanArray::from(projected.iter().map(|parts| parts[m].is_some()).collect::<Vec<_>>())),
                ));
            }
            let rel = format!("lake/fused/{}/{run_id}/fused_manifest.parquet", strategy.as_str());
            write_vectors(&root.join(&rel), &keys, &refs, dim, extra)?;
            outputs.push(t0_manifest::record_output(
                root,
                &catalog,
                &format!("fused.{}", strategy.as_str()),
                Location::per_entity_t0(rel.clone()),
            )?);
            fused.push(FusedOutput {
                strategy: strategy.as_str().into(),
                dim,
                modalities: names.clone(),
                rows: keys.len() as u64,
                path: rel,
            });
        }
        progress.finish();
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = EmbedReport {
        run_id: run_id.clone(),
        models,
        threads,
        cache_dir: cache.dir().display().to_string(),
        outputs: reports,
        fused,
        quarantined,
        seconds,
        computed_per_second: if seconds > 0.0 { total_computed as f64 / seconds } else { 0.0 },
    };
    // The manifest summary must be the same on a replay: drop timings and host details
    // (computed/cached stay: they say what this run did).
    let mut summary = serde_json::to_value(&report).expect("plain struct");
    for k in ["seconds", "computed_per_second", "threads", "cache_dir"] {
        summary.as_object_mut().expect("object").remove(k);
    }
    run.finish(&run_id, None, outputs, summary)?;
    Ok(report)
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
