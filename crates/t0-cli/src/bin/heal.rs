//! `heal`: deterministic repairs with a hash-chained ledger.
use clap::{Parser, Subcommand};
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;

/// Repair what the latest audit found under deterministic rules. Each changed cell is
/// appended to a hash-chained ledger; repaired rows are new versions whose available_at is
/// the repair time, so replays before the repair see the original data.
///
/// Exit codes: 0 repaired, 1 ledger broken (verify-ledger), 3 audit missing/stale or lock
/// held, 99 nothing to repair.
#[derive(Parser)]
#[command(name = "heal", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Print the planned patches; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Recompute the ledger's hash chain and report the first broken entry.
    VerifyLedger,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "heal", |root, clock, progress| match cli.cmd {
        Some(Cmd::VerifyLedger) => {
            let c = t0_heal::verify_ledger(root)?;
            match c.first_broken {
                None => Ok(Outcome::done(&c, format!("ledger intact: {} entries", c.entries))),
                Some(seq) => {
                    let human = format!("ledger broken at entry seq {seq}: {}", c.reason.clone().unwrap_or_default());
                    Ok(Outcome::done(&c, human).with_code(ExitCode::Gate))
                }
            }
        }
        None => {
            let r = t0_heal::run(root, clock, &t0_heal::HealArgs { dry_run: cli.dry_run }, progress)?;
            let verb = if r.dry_run { "would patch" } else { "patched" };
            let mut human = format!("run {}: {verb} {} cells in {} rows", r.run_id, r.cells_patched, r.rows_repaired);
            if r.dry_run {
                for p in r.patches.iter().take(20) {
                    human.push_str(&format!("\n  {} {} {}: {:?} -> {:?}", p.table, p.row_key, p.column, p.old, p.new));
                }
            }
            Ok(Outcome::done(&r, human))
        }
    })
}
