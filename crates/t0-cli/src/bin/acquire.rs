//! `acquire`: ingest source files into the canonical, versioned, two-clock tables.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_acquire::generate::{GenerateOptions, generate};
use t0_cli::{Common, Outcome};

/// Ingest source files (CSV) into canonical tables: typed, versioned, with observed_at and
/// available_at; bad rows are quarantined with file, row, column and reason.
///
/// Exit codes: 0 done, 2 usage/config error, 3 lock held, 4 unreadable input, 99 nothing new.
#[derive(Parser)]
#[command(name = "acquire", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Directory holding the source files named in the config.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Source mapping (YAML). Default: entities/observations/events/artifacts.csv.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a seeded, deterministic clips dataset (CSV) with deliberate defects.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 200)]
        entities: u64,
        #[arg(long, default_value_t = 8)]
        snapshots: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Fraction of clips with a counter regression.
        #[arg(long, default_value_t = 0.03)]
        regressions: f64,
        /// Fraction of snapshot rows written twice.
        #[arg(long, default_value_t = 0.01)]
        duplicates: f64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "acquire", |root, clock, progress| match &cli.cmd {
        Some(Cmd::Generate { out, entities, snapshots, seed, regressions, duplicates }) => {
            let opt = GenerateOptions {
                entities: *entities,
                snapshots: *snapshots,
                seed: *seed,
                regressions: *regressions,
                duplicates: *duplicates,
            };
            let s = generate(out, &opt)?;
            let human = format!(
                "wrote {} clips, {} channels, {} observations to {}",
                s.clips,
                s.channels,
                s.observations,
                out.display()
            );
            Ok(Outcome::done(&s, human))
        }
        None => {
            let input = cli
                .input
                .clone()
                .ok_or_else(|| t0_core::Error::Usage("--input DIR is required (or use `acquire generate`)".into()))?;
            let args = t0_acquire::AcquireArgs { input, config: cli.config.clone() };
            let r = t0_acquire::run(root, clock, &args, progress)?;
            let human = format!(
                "run {}: {} rows read = {} ingested + {} unchanged + {} quarantined",
                r.run_id, r.rows_read, r.rows_ingested, r.rows_unchanged, r.rows_quarantined
            );
            Ok(Outcome::done(&r, human))
        }
    })
}
