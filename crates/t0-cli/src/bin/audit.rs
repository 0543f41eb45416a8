//! `audit`: check the canonical data and record a verdict bound to its content hash.
use clap::Parser;
use t0_cli::{Common, Outcome};
use t0_core::ExitCode;

/// Run the data checks over the canonical tables, store findings with samples of failing
/// keys, and record a PASS/FAIL verdict bound to the content hash of the audited data.
///
/// Exit codes: 0 PASS, 1 FAIL (error-level findings), 3 upstream mismatch or lock held,
/// 99 this data was already audited.
#[derive(Parser)]
#[command(name = "audit", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Failing keys kept per finding.
    #[arg(long, default_value_t = 20)]
    sample: usize,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    t0_cli::run(&cli.common, "audit", |root, clock, progress| {
        let r = t0_audit::run(root, clock, &t0_audit::AuditArgs { sample: cli.sample }, progress)?;
        let mut human =
            format!("run {}: {} ({} error, {} warning checks failing)", r.run_id, r.verdict, r.errors, r.warnings);
        for f in r.findings.iter().filter(|f| f.failing > 0) {
            human.push_str(&format!(
                "\n  {:?} {} on {}: {} failing, e.g. {}",
                f.severity,
                f.check,
                f.table,
                f.failing,
                f.sample.first().cloned().unwrap_or_default()
            ));
        }
        let code = if r.verdict == "PASS" { ExitCode::Done } else { ExitCode::Gate };
        Ok(Outcome::done(&r, human).with_code(code))
    })
}
