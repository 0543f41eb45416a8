//! The `embed` stage: consume the certified surfaces the project names, compute one vector
//! file per declared input and one fused file per strategy, record them in a run manifest.

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
use t0_project::def::{FusionStrategy, MediaKind};

use crate::compute::{LoadFailure, compute};
use crate::{
    EmbedArgs, EmbedReport, EmbeddingOutput, Extractor, FusedOutput, ModelInfo, Quarantined, STAGE, cache, effnet,
    fusion, model_dir, text,
};

type Key = (String, i64);
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

/// One output to compute: an input column of a surface and the extractor it goes through.
struct Planned {
    /// `embeddings.<name>` suffix.
    name: String,
    surface: String,
    column: String,
    kind: Option<MediaKind>,
    extractor: Arc<Extractor>,
}

/// What a run shares while it computes each planned output.
struct Ctx<'a> {
    root: &'a Root,
    catalog: &'a Catalog,
    run_id: &'a str,
    cache: &'a cache::Cache,
    pool: &'a rayon::ThreadPool,
    progress: &'a dyn Progress,
    /// Source paths of artifacts by content hash, for quarantine messages.
    sources: HashMap<String, Vec<String>>,
    /// The roots whose media stores hold the artifacts ([`media_stores`]).
    media: Vec<PathBuf>,
}

/// The roots whose media stores may hold an artifact: the root itself and, for the base root
/// of a root split into buckets (whose stages ran per bucket and were gathered by `commit`),
/// every bucket's. The store is content-addressed and every file is checked against its hash
/// when read, so it does not matter which one holds it.
fn media_stores(root: &Root) -> Result<Vec<PathBuf>> {
    let mut stores = vec![root.path().to_path_buf()];
    if root.bucket().is_whole()
        && let Some(n) = t0_core::bucket::layout(root.path())?
    {
        stores.extend(t0_core::Bucket::all(n)?.iter().map(|b| b.dir(root.path())));
    }
    Ok(stores)
}

/// The media store file of content hash `hash`: the first store that has it, else the root's.
fn media_file(stores: &[PathBuf], hash: &str) -> PathBuf {
    let rel = t0_project::vocab::media_path(hash);
    stores.iter().map(|s| s.join(&rel)).find(|p| p.is_file()).unwrap_or_else(|| stores[0].join(&rel))
}

/// One planned output, computed and written.
struct Embedded {
    report: EmbeddingOutput,
    output: t0_manifest::Output,
    fusion: FusionInput,
    quarantined: Vec<Quarantined>,
    computed: u64,
}

pub fn run(root: &Root, clock: Clock, args: &EmbedArgs, progress: &dyn Progress) -> Result<EmbedReport> {
    let started = std::time::Instant::now();
    let decl = &args.project.def.embed;
    if decl.is_empty() {
        return Err(Error::NothingToDo(format!("project {} declares no embed inputs", args.project.name())));
    }
    // Models first: a missing model is a configuration error before any lock is taken.
    let plan = plan(args)?;
    let models = model_infos(&plan);

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
    let surfaces = consume_surfaces(root, args, &plan, &mut run, &cert)?;
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
    let sources = if decl.artifacts.is_empty() { HashMap::new() } else { artifact_sources(&catalog)? };
    let media = media_stores(root)?;
    let ctx = Ctx { root, catalog: &catalog, run_id: &run_id, cache: &cache, pool: &pool, progress, sources, media };

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
        let done = embed_one(&ctx, p, &columns_cache[&col_key])?;
        total_computed += done.computed;
        quarantined.extend(done.quarantined);
        outputs.push(done.output);
        fused_inputs.push(done.fusion);
        reports.push(done.report);
    }
    let fused = if decl.fusion.is_empty() {
        Vec::new()
    } else {
        fuse(&ctx, &decl.fusion, decl.fusion_dim, &fused_inputs, &mut outputs)?
    };
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

/// The outputs the project declares, in declaration order, with their models loaded.
fn plan(args: &EmbedArgs) -> Result<Vec<Planned>> {
    let decl = &args.project.def.embed;
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
    Ok(plan)
}

/// One entry per distinct extractor, by name.
fn model_infos(plan: &[Planned]) -> Vec<ModelInfo> {
    let mut seen = BTreeMap::new();
    for p in plan {
        seen.entry(p.extractor.name()).or_insert_with(|| ModelInfo {
            extractor: p.extractor.name(),
            version: p.extractor.version(),
            dim: p.extractor.dim(),
        });
    }
    seen.into_values().collect()
}

/// Each surface the plan reads, consumed from the certificate (hash-checked): its file.
fn consume_surfaces(
    root: &Root,
    args: &EmbedArgs,
    plan: &[Planned],
    run: &mut StageRun,
    cert: &t0_manifest::Loaded,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut surfaces: BTreeMap<String, PathBuf> = BTreeMap::new();
    for p in plan {
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
        let out = run.consume(cert, &[name.as_str()])?.remove(0);
        surfaces.insert(p.surface.clone(), out.path(root)?);
    }
    Ok(surfaces)
}

/// Source paths of current artifacts by content hash.
fn artifact_sources(catalog: &Catalog) -> Result<HashMap<String, Vec<String>>> {
    let mut sources: HashMap<String, Vec<String>> = HashMap::new();
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
    Ok(sources)
}

/// The bytes of a media store file, checked against the content hash that names it.
fn load_media(root: &Root, hash: &str, stored: &Path) -> std::result::Result<Vec<u8>, LoadFailure> {
    let bytes =
        std::fs::read(stored).map_err(|e| LoadFailure::Bad(format!("media store {}: {e}", root.relative(stored))))?;
    if blake3::hash(&bytes).to_hex().as_str() != hash {
        return Err(LoadFailure::Changed(format!(
            "media store file {} does not match its content hash",
            root.relative(stored)
        )));
    }
    Ok(bytes)
}

/// Compute (or fetch from the cache) the vectors of one planned output and write its file.
fn embed_one(ctx: &Ctx, p: &Planned, rows: &ColumnRows) -> Result<Embedded> {
    let root = ctx.root;
    // Distinct inputs by content hash: texts hash their UTF-8 bytes, artifacts carry theirs.
    let mut texts: HashMap<String, String> = HashMap::new();
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
                media_file(&ctx.media, h)
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
            Some(_) => load_media(root, hash, stored),
        }
    };
    let label = format!("embed {}", p.name);
    // A media store file that changed after acquire hashed it is tampering, not bad media.
    let (done, bad) = compute(&p.extractor, &items, &load_any, ctx.cache, ctx.pool, ctx.progress, &label)
        .map_err(|message| Error::Integrity { damage: t0_core::Damage::Changed, message })?;
    let quarantined = bad
        .iter()
        .map(|(h, reason)| Quarantined {
            embedding: p.name.clone(),
            content_hash: h.clone(),
            file: ctx.sources.get(h).map(|v| v.join(", ")).unwrap_or_else(|| match p.kind {
                None => format!("{}.{}", p.surface, p.column),
                Some(_) => "(not in artifacts)".into(),
            }),
            reason: reason.clone(),
        })
        .collect();
    let keys: Vec<Key> = rows.iter().map(|(k, _)| k.clone()).collect();
    let vecs: Vec<Option<&Vec<f32>>> = row_hash.iter().map(|h| h.as_ref().and_then(|h| done.vectors.get(h))).collect();
    let present = vecs.iter().filter(|v| v.is_some()).count() as u64;
    let dim = p.extractor.dim();
    let rel = format!("lake/embeddings/{}/{}/{}.parquet", p.name, ctx.run_id, p.name);
    write_vectors(&root.join(&rel), &keys, &vecs, dim, Vec::new())?;
    let output = t0_manifest::record_output(
        root,
        ctx.catalog,
        &format!("embeddings.{}", p.name),
        Location::per_entity_t0(rel.clone()),
    )?;
    let by_key: HashMap<Key, Vec<f32>> =
        keys.iter().zip(&vecs).filter_map(|(k, v)| v.map(|v| (k.clone(), v.clone()))).collect();
    let report = EmbeddingOutput {
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
    };
    Ok(Embedded { report, output, fusion: (p.name.clone(), dim, keys, by_key), quarantined, computed: done.computed })
}

/// Fusion over every output, keyed by the union of (entity, T0), sorted: one file per strategy.
fn fuse(
    ctx: &Ctx,
    strategies: &[FusionStrategy],
    d: usize,
    fused_inputs: &[FusionInput],
    outputs: &mut Vec<t0_manifest::Output>,
) -> Result<Vec<FusedOutput>> {
    ctx.progress.phase("fuse", None);
    let keys: Vec<Key> =
        fused_inputs.iter().flat_map(|(_, _, ks, _)| ks.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    let projectors: Vec<fusion::Projector> =
        fused_inputs.iter().map(|(name, dim, _, _)| fusion::Projector::new(name, *dim, d)).collect();
    // Projections of each row's present modalities.
    let projected: Vec<Vec<Option<Vec<f32>>>> = ctx.pool.install(|| {
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
    let mut fused = Vec::new();
    for &strategy in strategies {
        let dim = fusion::dim(strategy, names.len(), d);
        let vectors: Vec<Vec<f32>> = projected.iter().map(|parts| fusion::fuse(strategy, parts, d)).collect();
        let refs: Vec<Option<&Vec<f32>>> = vectors.iter().map(Some).collect();
        let rel = format!("lake/fused/{}/{}/fused_manifest.parquet", strategy.as_str(), ctx.run_id);
        write_vectors(&ctx.root.join(&rel), &keys, &refs, dim, fused_columns(strategy, &names, &projected))?;
        outputs.push(t0_manifest::record_output(
            ctx.root,
            ctx.catalog,
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
    ctx.progress.finish();
    Ok(fused)
}

/// A fused file's columns besides the vector: the strategy, the modalities present and one
/// `has_<name>` flag per modality.
fn fused_columns(
    strategy: FusionStrategy,
    names: &[String],
    projected: &[Vec<Option<Vec<f32>>>],
) -> Vec<(Field, ArrayRef)> {
    let modalities: Vec<String> = projected
        .iter()
        .map(|parts| {
            names.iter().zip(parts).filter(|(_, p)| p.is_some()).map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",")
        })
        .collect();
    let mut extra: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("strategy", DataType::Utf8, false),
            Arc::new(StringArray::from(vec![strategy.as_str(); projected.len()])),
        ),
        (Field::new("modalities", DataType::Utf8, false), Arc::new(StringArray::from(modalities))),
    ];
    for (m, name) in names.iter().enumerate() {
        extra.push((
            Field::new(format!("has_{name}"), DataType::Boolean, false),
            Arc::new(BooleanArray::from(projected.iter().map(|parts| parts[m].is_some()).collect::<Vec<_>>())),
        ));
    }
    extra
}
