//! `acquire`: ingest source files into the canonical, versioned, two-clock tables.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_cli::{Common, Outcome};
use t0_clips_gen::{GenerateOptions, generate};

/// Ingest source files (CSV, Parquet, NDJSON and the media they name) into canonical tables:
/// typed, versioned, with observed_at and available_at. Bad rows are quarantined with file,
/// row, column and reason; each file is landed as immutable Parquet; a file already ingested
/// is skipped; an interrupted ingest resumes at its last committed chunk.
///
/// Exit codes: 0 done, 2 usage/config error, 3 lock held, 4 a file that cannot be read at all
/// (or, with --deny-unmatched, one no source reads), 99 nothing new.
#[derive(Parser)]
#[command(name = "acquire", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Directory holding the source files the mapping's globs select.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Source mapping (YAML, see projects/clips/sources.yaml). Default: the project's
    /// sources.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Add measures the project declares that this root (which holds data) lacks: an explicit
    /// schema change, recorded in the catalog's schema_changes table.
    #[arg(long)]
    evolve_schema: bool,
    /// Rows per committed chunk: the unit of resume after an interruption.
    #[arg(long, default_value_t = 250_000)]
    chunk_rows: usize,
    /// Refuse (exit 4, before reading anything) when a file under --input matches no source's
    /// glob and lies in no media root. Without it such files are named in the summary and in
    /// `unmatched_files`, and not read.
    #[arg(long)]
    deny_unmatched: bool,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Read sample source files and write a starting project to --out: each file read as an
    /// observation panel, an entities file (one row per id) or an events file (an event type
    /// column); measures with guessed types (0/1 flags boolean), a source mapping (entity and
    /// time columns, timestamp format, key check, cadence), starting contracts from what the
    /// sample showed (ranges widened), a calendar grid at the detected cadence, a label (a
    /// count's flow over the next period) and as-of features declared in project.yaml (no
    /// SQL). Every guess is a suggestion to review; nothing is ingested.
    Infer {
        /// Source files (CSV, Parquet, NDJSON), one source each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Directory for the project (must not hold its files yet).
        #[arg(long)]
        out: PathBuf,
        /// Rows read per file.
        #[arg(long, default_value_t = 100_000)]
        sample_rows: usize,
        /// Project name (default: the --out directory's name).
        #[arg(long)]
        name: Option<String>,
        /// CSV delimiter.
        #[arg(long, default_value_t = ',')]
        delimiter: char,
    },
    /// Write the clips example project's dataset (CSV + PNG + WAV): seeded, deterministic,
    /// optionally with defects for audit and heal.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        opts: GenerateOptions,
    },
}

fn human(r: &t0_acquire::AcquireReport) -> String {
    let mut human = format!(
        "run {}: {} rows read = {} ingested + {} unchanged + {} quarantined",
        r.run_id, r.rows_read, r.rows_ingested, r.rows_unchanged, r.rows_quarantined
    );
    let elsewhere = |n: u64| if n > 0 { format!(" + {n} of other buckets") } else { String::new() };
    human.push_str(&elsewhere(r.rows_other_buckets));
    for f in &r.files {
        let state = if f.skipped_already_ingested { " (already ingested)".to_string() } else { String::new() };
        human.push_str(&format!(
            "\n  {} -> {}: {} read, {} ingested, {} unchanged, {} quarantined{}{state}",
            f.file,
            f.table,
            f.rows_read,
            f.rows_ingested,
            f.rows_unchanged,
            f.rows_quarantined,
            elsewhere(f.rows_other_buckets)
        ));
    }
    if let Some(c) = &r.schema_change {
        human.push_str(&format!("\n  schema: {} ({})", c.change, c.added.join(", ")));
    }
    for f in r.files.iter().filter(|f| !f.unread_columns.is_empty()) {
        human.push_str(&format!(
            "\n  {}: column(s) {} not ingested: no mapping or measure reads them (declare them in the project, map them, or list them under `ignore`)",
            f.file,
            f.unread_columns.join(", ")
        ));
    }
    for s in &r.sources_without_files {
        human.push_str(&format!("\n  source {s}: no file matched"));
    }
    if !r.unmatched_files.is_empty() {
        human.push_str(&format!(
            "\n  {} file(s) under --input match no source and were not read: {} (--deny-unmatched refuses them)",
            r.unmatched_files.len(),
            r.unmatched_files.join(", ")
        ));
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(&cli.common, "acquire", cli.cmd.is_none(), |root, clock, progress| match &cli.cmd {
        Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) => {
            let r: t0_acquire::AcquireReport = t0_cli::show(root, t0_acquire::STAGE, run.as_deref())?;
            Ok(Outcome::done(&r, human(&r)))
        }
        Some(Cmd::Infer { files, out, sample_rows, name, delimiter }) => {
            let args = t0_acquire::infer::InferArgs {
                files: files.clone(),
                out: out.clone(),
                sample_rows: *sample_rows,
                name: name.clone(),
                delimiter: *delimiter,
            };
            let r = t0_acquire::infer::run(&args)?;
            let mut human = format!("project {} written to {} (suggestions: review every file)", r.project, r.out);
            for f in &r.files {
                human.push_str(&format!(
                    "\n  {}: entity {}, time {}, {} columns, {} rows sampled{}",
                    f.file,
                    f.entity_column,
                    f.time_column,
                    f.columns.len(),
                    f.rows_sampled,
                    if f.key_unique { "" } else { " (entity, time NOT unique)" }
                ));
            }
            for w in &r.written {
                human.push_str(&format!("\n  wrote {w}"));
            }
            human.push_str(&format!(
                "\nnext: acquire --project {} --input <dir with the files>, then audit, heal, certify, certify labels, train-suite",
                r.out
            ));
            Ok(Outcome::done(&r, human))
        }
        Some(Cmd::Generate { out, opts }) => {
            let opt = opts.clone();
            let s = generate(out, &opt, progress)?;
            Ok(Outcome::done(&s, s.describe(out)))
        }
        None => {
            let input = cli
                .input
                .clone()
                .ok_or_else(|| t0_core::Error::Usage("--input DIR is required (or use `acquire generate`)".into()))?;
            let args = t0_acquire::AcquireArgs {
                project: cli.common.project()?,
                input,
                config: cli.config.clone(),
                evolve_schema: cli.evolve_schema,
                chunk_rows: cli.chunk_rows,
                deny_unmatched: cli.deny_unmatched,
            };
            let r = t0_acquire::run(root, clock, &args, progress)?;
            Ok(Outcome::done(&r, human(&r)))
        }
    })
}
