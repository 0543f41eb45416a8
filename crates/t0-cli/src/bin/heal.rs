//! `heal`: deterministic repairs with a hash-chained ledger.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;
use t0_heal::Patch;

/// Repair what the latest audit found under the declared rules (the project's heal/rules.yaml).
///
/// A rule runs only while the audit reports the finding it answers as failing. Repairs never
/// overwrite: each repaired row is a new version whose available_at is the repair time (a
/// removed row is a tombstone version), so an as-of replay before the repair sees the
/// original data. Every changed cell is one entry of an append-only ledger chained by hash.
/// All patches of a run commit in one transaction.
///
/// Exit codes: 0 repaired · 1 verify-ledger found a broken entry · 2 bad rules file or
/// unknown run · 3 audit missing or stale, revert conflicts, lock held · 99 nothing to
/// repair (or this run is already done).
#[derive(Parser)]
#[command(name = "heal", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Print the planned patches cell by cell; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rules file (default: the project's heal/rules.yaml).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Patches listed in the output (the ledger holds them all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Show(t0_cli::ShowCmd),
    /// Recompute the ledger's hash chain and check it against every heal and revert run's
    /// recorded anchor (first and last seq, head hash) and ledger rows: a broken link, an
    /// edited, reordered or re-hashed entry, a deleted tail or a deleted run is named (exit 1).
    VerifyLedger,
    /// Restore the pre-images of every cell heal run RUN changed, as new versions with their
    /// own ledger entries (refused if a later change touched those cells).
    Revert {
        /// The heal run id (see manifests/heal/).
        run: String,
    },
}

fn list(human: &mut String, patches: &[Patch], truncated: bool) {
    for p in patches {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
        human.push_str(&format!("\n  {} {} {}: {} -> {}", p.table, p.row_key, p.column, show(&p.old), show(&p.new)));
    }
    if truncated {
        human.push_str("\n  ... (--limit N for more; the ledger holds every entry)");
    }
}

fn revert_human(r: &t0_heal::RevertReport) -> String {
    let mut human = format!(
        "run {}: restored {} cells in {} rows changed by heal run {}",
        r.run_id, r.cells_restored, r.rows_restored, r.reverted_run
    );
    list(&mut human, &r.patches, r.patches_truncated);
    human
}

fn human(r: &t0_heal::HealReport) -> String {
    let verb = if r.dry_run { "would patch" } else { "patched" };
    let mut human = format!(
        "run {}: {verb} {} cells in {} rows ({} quarantined), answering audit run {}",
        r.run_id, r.cells_patched, r.rows_repaired, r.quarantined, r.audit_run
    );
    for rule in &r.rules {
        let what = match &rule.skipped {
            Some(why) => format!("skipped: {why}"),
            None => format!("{} cells, {} rows, {} removed", rule.cells, rule.rows, rule.tombstones),
        };
        human.push_str(&format!("\n  {}@{} ({}): {what}", rule.id, rule.version, rule.answers));
    }
    if r.dry_run {
        list(&mut human, &r.patches, r.patches_truncated);
    }
    human
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run_stage(
        &cli.common,
        "heal",
        matches!(cli.cmd, None | Some(Cmd::Revert { .. })),
        |root, clock, progress| match &cli.cmd {
            Some(Cmd::Show(t0_cli::ShowCmd::Show { run })) => {
                // A heal run or a revert: the summary says which.
                let v: serde_json::Value = t0_cli::show(root, t0_heal::STAGE, run.as_deref())?;
                if v.get("reverted_run").is_some() {
                    let r: t0_heal::RevertReport = serde_json::from_value(v)
                        .map_err(|e| t0_core::Error::Refused(format!("not a revert summary: {e}")))?;
                    return Ok(Outcome::done(&r, revert_human(&r)));
                }
                let r: t0_heal::HealReport = serde_json::from_value(v)
                    .map_err(|e| t0_core::Error::Refused(format!("not a heal summary: {e}")))?;
                Ok(Outcome::done(&r, human(&r)))
            }
            Some(Cmd::VerifyLedger) => {
                let c = t0_heal::verify_ledger(root)?;
                if c.problems.is_empty() {
                    let human = format!("ledger intact: {} entries, anchored by {} heal runs", c.entries, c.runs);
                    return Ok(Outcome::done(&c, human));
                }
                let mut human = format!("ledger broken ({} problems):", c.problems.len());
                for p in &c.problems {
                    let run = p.run.as_deref().map(|r| format!("heal run {r}: ")).unwrap_or_default();
                    let seq = p.seq.map(|s| format!("seq {s}: ")).unwrap_or_default();
                    human.push_str(&format!("\n  {run}{seq}{}", p.what));
                }
                Ok(Outcome::done(&c, human).with_code(ExitCode::Gate))
            }
            Some(Cmd::Revert { run }) => {
                let r = t0_heal::revert(root, clock, run, cli.limit, progress)?;
                Ok(Outcome::done(&r, revert_human(&r)))
            }
            None => {
                let args = t0_heal::HealArgs {
                    project: cli.common.project()?,
                    dry_run: cli.dry_run,
                    rules: cli.rules.clone(),
                    limit: cli.limit,
                };
                let r = t0_heal::run(root, clock, &args, progress)?;
                Ok(Outcome::done(&r, human(&r)))
            }
        },
    )
}
