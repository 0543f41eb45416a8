//! `embed`: per-(entity, T0) vectors of the text columns the project's `embed:` declares.
//!
//! PLACEHOLDER MODEL: until the embedding issue brings real pretrained text/image/audio models,
//! the text vector is a signed feature-hashing bag of words (256 buckets) projected to 32
//! dimensions by a fixed, seeded Gaussian matrix on candle, then L2-normalised. It is real,
//! deterministic and carries the text's signal words, but it is not a learned embedding; its
//! model name says so (`hashing-bow-v0`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListBuilder, Float32Builder, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use candle_core::{Device, Tensor};
use t0_catalog::{Catalog, RootLock};
use t0_core::error::Context;
use t0_core::{Clock, Error, Progress, Result, Root};
use t0_manifest::{Location, StageRun};

pub const STAGE: &str = "embed";
pub const MODEL: &str = "hashing-bow-v0";
pub const BUCKETS: usize = 256;
pub const DIM: usize = 32;
const SEED: u64 = 0x7430_636c_6970; // "t0clip"

pub struct EmbedArgs {
    pub project: t0_project::Project,
    pub max_age_days: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingOutput {
    /// The embed input's name (`embeddings.<name>`).
    pub name: String,
    pub surface: String,
    pub column: String,
    pub rows: u64,
    pub empty_texts: u64,
    pub path: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EmbedReport {
    pub run_id: String,
    pub model: String,
    pub placeholder: bool,
    pub outputs: Vec<EmbeddingOutput>,
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(|t| t.to_lowercase())
}

/// Signed feature hashing of the tokens of `text` into `BUCKETS` counts.
pub fn hash_features(text: &str, out: &mut [f32]) {
    for t in tokens(text) {
        let h = blake3::hash(t.as_bytes());
        let b = h.as_bytes();
        let idx = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % BUCKETS;
        out[idx] += if b[4] & 1 == 0 { 1.0 } else { -1.0 };
    }
}

/// The fixed projection matrix (BUCKETS x DIM), N(0, 1/DIM) from a splitmix64 stream.
fn projection() -> Vec<f32> {
    let mut state = SEED;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let scale = (1.0 / DIM as f64).sqrt();
    (0..BUCKETS * DIM)
        .map(|_| {
            let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * scale) as f32
        })
        .collect()
}

/// Embed a batch of texts into `texts.len()` L2-normalised vectors of `DIM` values.
pub fn embed_texts(texts: &[Option<&str>]) -> Result<Vec<Vec<f32>>> {
    let n = texts.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut feats = vec![0f32; n * BUCKETS];
    for (i, t) in texts.iter().enumerate() {
        if let Some(t) = t {
            hash_features(t, &mut feats[i * BUCKETS..(i + 1) * BUCKETS]);
        }
    }
    let dev = Device::Cpu;
    let x = Tensor::from_vec(feats, (n, BUCKETS), &dev).ctx(|| "features tensor".into())?;
    let w = Tensor::from_vec(projection(), (BUCKETS, DIM), &dev).ctx(|| "projection tensor".into())?;
    let y = x.matmul(&w).ctx(|| "projection".into())?;
    let norm = y.sqr().and_then(|s| s.sum_keepdim(1)).and_then(|s| s.sqrt()).and_then(|s| s.clamp(1e-12f32, f32::MAX));
    let y = norm.and_then(|nm| y.broadcast_div(&nm)).ctx(|| "normalise".into())?;
    y.to_vec2::<f32>().ctx(|| "embeddings to host".into())
}

pub fn run(root: &Root, clock: Clock, args: &EmbedArgs, progress: &dyn Progress) -> Result<EmbedReport> {
    let inputs = &args.project.def.embed.text;
    if inputs.is_empty() {
        return Err(Error::NothingToDo(format!("project {} declares no embed inputs", args.project.name())));
    }
    let _lock = RootLock::acquire(root)?;
    let catalog = Catalog::open(root)?;
    let config_hash = t0_core::config::value_hash(&(MODEL, serde_json::to_value(inputs).expect("plain struct")));
    let mut run = StageRun::begin(root, &catalog, STAGE, clock, config_hash);
    let cert = t0_certify::guard(root, &catalog, &clock, args.max_age_days)?;
    let mut surfaces = Vec::new();
    for input in inputs {
        let name = format!("surface.{}", input.surface);
        if cert.manifest.outputs.iter().all(|o| o.name != name) {
            return Err(Error::config(
                args.project.display(t0_project::PROJECT_FILE),
                format!(
                    "embed.text {}: certify run {} has no surface {}",
                    input.name, cert.manifest.run_id, input.surface
                ),
            ));
        }
        surfaces.push(run.consume(&cert, &[name.as_str()])?.remove(0));
    }
    // The certificate is part of the provenance: a re-certification (even of equal content)
    // gets its own embeddings run, which is what train-suite checks.
    let run_id = run.run_id(&cert.manifest.run_id);
    run.ensure_new(&run_id)?;
    let mut outputs = Vec::new();
    let mut reports = Vec::new();
    for (input, surface) in inputs.iter().zip(&surfaces) {
        let abs = surface.path(root)?;
        let path = root.relative(&abs);
        let (_, batches) = t0_table::ParquetSet::open(&abs)?.read_all()?;
        let mut ids = Vec::new();
        let mut t0s = Vec::new();
        let mut texts: Vec<Option<String>> = Vec::new();
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
            let text = col(&input.column)?
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Refused(format!("{path}: {} is not text", input.column)))?;
            for i in 0..b.num_rows() {
                ids.push(id.value(i).to_string());
                t0s.push(t0.value(i));
                texts.push(text.is_valid(i).then(|| text.value(i).to_string()));
            }
        }
        progress.phase(&format!("embed {}", input.name), Some(ids.len() as u64));
        let mut vectors = Vec::with_capacity(ids.len());
        for chunk in texts.chunks(4096) {
            let refs: Vec<Option<&str>> = chunk.iter().map(|t| t.as_deref()).collect();
            vectors.extend(embed_texts(&refs)?);
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let mut list = FixedSizeListBuilder::new(Float32Builder::new(), DIM as i32).with_field(item.clone());
        for v in &vectors {
            list.values().append_slice(v);
            list.append(true);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("entity_id", DataType::Utf8, false),
            Field::new("t0", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("embedding", DataType::FixedSizeList(item, DIM as i32), false),
        ]));
        let rows = ids.len() as u64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(TimestampMicrosecondArray::from(t0s)),
                Arc::new(list.finish()),
            ],
        )
        .ctx(|| "embedding batch".into())?;
        let rel = format!("lake/embeddings/text/{MODEL}/{run_id}/{}.parquet", input.name);
        t0_table::write_parquet(&root.join(&rel), schema, &[batch])?;
        outputs.push(t0_manifest::record_output(
            root,
            &catalog,
            &format!("embeddings.{}", input.name),
            Location::per_entity_t0(rel.clone()),
        )?);
        reports.push(EmbeddingOutput {
            name: input.name.clone(),
            surface: input.surface.clone(),
            column: input.column.clone(),
            rows,
            empty_texts: texts.iter().filter(|t| t.is_none()).count() as u64,
            path: rel,
        });
    }
    let report = EmbedReport { run_id: run_id.clone(), model: MODEL.into(), placeholder: true, outputs: reports };
    run.finish(&run_id, None, outputs, serde_json::to_value(&report).expect("plain struct"))?;
    Ok(report)
}
