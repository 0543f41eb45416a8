//! What the eight stage binaries share: common flags, the progress bar, and the mapping of a
//! stage's result onto the exit-code contract (human summary on stderr, `--json` on stdout).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use t0_core::{Clock, ExitCode, Progress, Root};

mod lineage;

/// Flags every stage takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The t0-clip root: catalog, lake, manifests, runs.
    #[arg(long, env = "T0CLIP_ROOT", default_value = ".t0clip", global = true)]
    pub root: PathBuf,
    /// Pin "now" (UTC, e.g. 2026-03-01T00:00:00Z) for ingest times, repairs and certificates;
    /// makes a replay bit-identical. Default: the wall clock.
    #[arg(long, env = "T0CLIP_NOW", global = true)]
    pub now: Option<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar and no summary on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The project directory (project.yaml: measures, sources, contracts, heal rules, feature
    /// stores, labels, features, embed inputs). Default: the built-in clips example.
    #[arg(long, env = "T0CLIP_PROJECT", global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Memory DuckDB may use in this stage (e.g. 1GB, 512MiB). Over it, DuckDB spills to
    /// the temp directory; work that cannot spill fails with an error naming the limit.
    /// Default: DuckDB's own (80% of RAM).
    #[arg(long, env = "T0CLIP_MEMORY_LIMIT", global = true, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Where DuckDB spills when over the memory limit. Default: <root>/tmp.
    #[arg(long, env = "T0CLIP_TEMP_DIR", global = true, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Seconds to wait for the root's lock when another stage holds it (two runs on one root
    /// never interleave); after that, exit 3. Default 0: refused at once.
    #[arg(long, env = "T0CLIP_LOCK_WAIT", global = true, value_name = "SECONDS", default_value_t = 0.0)]
    pub lock_wait: f64,
    /// Work on the entities of bucket K of N (e.g. 2/8): a root of its own under
    /// <root>/buckets/, so buckets run in parallel; `commit` joins them. A root's N is fixed by
    /// its first bucketed run. Default 0/1: the whole root.
    #[arg(long, env = "T0CLIP_BUCKET", global = true, value_name = "K/N", default_value = "0/1")]
    pub bucket: String,
    /// The run that started this one, as OpenLineage names it: NAMESPACE/JOB/RUN_UUID (what
    /// Airflow's OpenLineage provider renders as `lineage_parent_id`). Recorded as the parent
    /// of this stage run's lineage events (`lineage/events.jsonl` under the root).
    #[arg(long, env = "T0CLIP_LINEAGE_PARENT", global = true, value_name = "NAMESPACE/JOB/RUN_UUID")]
    pub lineage_parent: Option<String>,
    /// The OpenLineage namespace of this root's jobs and datasets.
    #[arg(long, env = "T0CLIP_LINEAGE_NAMESPACE", global = true, value_name = "NAME", default_value = "t0clip")]
    pub lineage_namespace: String,
    /// Also POST each lineage event to this OpenLineage endpoint (http://HOST[:PORT][/PREFIX];
    /// events go to PREFIX/api/v1/lineage, as Marquez takes them). One it does not take is
    /// a warning; the root's log keeps every event.
    #[arg(long, env = "T0CLIP_LINEAGE_URL", global = true, value_name = "URL")]
    pub lineage_url: Option<String>,
}

impl Common {
    /// The project the flags name (validated: a malformed one is exit 2 with file and line).
    pub fn project(&self) -> t0_core::Result<t0_project::Project> {
        t0_project::Project::load(self.project.as_deref())
    }
}

/// How old a certificate a consuming stage accepts.
#[derive(Debug, Clone, Args)]
pub struct Freshness {
    /// Refuse certificates older than this many days (by --now).
    #[arg(long, default_value_t = 30)]
    pub max_age_days: i64,
}

/// What a stage hands back to be printed and turned into an exit code.
pub struct Outcome {
    pub json: serde_json::Value,
    pub human: String,
    pub code: ExitCode,
}

impl Outcome {
    pub fn done<T: serde::Serialize>(value: &T, human: String) -> Self {
        Outcome { json: serde_json::to_value(value).unwrap_or_default(), human, code: ExitCode::Done }
    }
    pub fn with_code(mut self, code: ExitCode) -> Self {
        self.code = code;
        self
    }
}

/// The `show` subcommand every stage has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ShowCmd {
    /// Show a recorded run's summary again (the latest run, or RUN), as when it ran: human on
    /// stderr, `--json` on stdout. Read through the run's verified manifest (exit 3 if it was
    /// tampered with).
    Show {
        /// Run id (see manifests/<stage>/).
        run: Option<String>,
    },
}

/// `<stage> show [RUN]`: the summary a recorded run wrote (the latest when `run` is `None`),
/// read back through its verified manifest, as the stage's report type.
pub fn show<T: serde::de::DeserializeOwned>(
    root: &Root,
    stage: t0_core::Stage,
    run: Option<&str>,
) -> t0_core::Result<T> {
    if !root.catalog().exists() {
        return Err(t0_core::Error::Refused(format!("no catalog at {}", root.catalog().display())));
    }
    let catalog = t0_catalog::Catalog::open_read_only(root)?;
    if let Some(r) = run
        && !t0_manifest::run_ids(&catalog, stage)?.iter().any(|x| x == r)
    {
        return Err(t0_core::Error::Usage(format!("no {stage} run {r} is recorded (see manifests/{stage}/)")));
    }
    let m = t0_manifest::load(root, &catalog, stage, run)?;
    serde_json::from_value(m.manifest.summary.clone())
        .map_err(|e| t0_core::Error::Refused(format!("{}: the summary is not a {stage} report: {e}", m.path.display())))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Bar { bar, quiet }
    }
}

impl Progress for Bar {
    fn phase(&self, name: &str, total: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(total.unwrap_or(0));
        let style = match total {
            Some(_) => ProgressStyle::with_template("{msg:>14} [{bar:30}] {pos}/{len} {per_sec} {elapsed}")
                .map(|s| s.progress_chars("=> ")),
            None => ProgressStyle::with_template("{msg:>14} {spinner} {elapsed}"),
        };
        if let Ok(s) = style {
            self.bar.set_style(s);
        }
        self.bar.set_message(name.to_string());
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
    fn note(&self, message: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("  {message}"));
        }
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Hand `--memory-limit`, `--temp-dir` and `--lock-wait` to every catalog and lock the stage
/// opens.
fn resources(common: &Common) -> t0_core::Result<()> {
    let memory_limit = match &common.memory_limit {
        Some(s) => Some(
            t0_catalog::parse_size(s)
                .map_err(|e| t0_core::Error::Usage(format!("--memory-limit / T0CLIP_MEMORY_LIMIT: {e}")))?,
        ),
        None => None,
    };
    if !(common.lock_wait.is_finite() && (0.0..=86_400.0).contains(&common.lock_wait)) {
        return Err(t0_core::Error::Usage(format!(
            "--lock-wait / T0CLIP_LOCK_WAIT: {} is not a number of seconds from 0 to 86400",
            common.lock_wait
        )));
    }
    let lock_wait = Some(std::time::Duration::from_secs_f64(common.lock_wait));
    t0_catalog::set_resources(t0_catalog::Resources { memory_limit, temp_dir: common.temp_dir.clone(), lock_wait });
    Ok(())
}

/// The root the flags name: the bucket's under `--root` when `--bucket` is not 0/1, its count
/// checked against the one the root was split into.
pub fn bucket_root(common: &Common) -> t0_core::Result<Root> {
    let bucket = t0_core::Bucket::parse(&common.bucket)?;
    if !bucket.is_whole() {
        t0_core::bucket::claim_layout(&common.root, bucket.count())?;
    }
    Ok(Root::bucketed(&common.root, bucket))
}

/// The stages that run on one bucket: the entity-local data stages, certify (it reads the
/// population its audit's commit exported: `t0_certify::population`), embed (a vector is a
/// function of its input alone), and `verify` of a bucket's root. train-suite and calibrate
/// read every training row and score's drift and row selection are the population's: they
/// run on the base root, where the commits of certify, labels and embed gather the buckets'
/// outputs (`t0_bucket::gather`).
const BUCKETED_STAGES: [&str; 6] = ["acquire", "audit", "heal", "certify", "embed", "verify"];

fn bucketed_stage(stage: &str, root: Root) -> t0_core::Result<Root> {
    if root.bucket().is_whole() || BUCKETED_STAGES.contains(&stage) {
        return Ok(root);
    }
    Err(t0_core::Error::Usage(format!(
        "{stage} does not run on one bucket (--bucket {}): it reads the whole population; bucketed stages are {}",
        root.bucket(),
        BUCKETED_STAGES.join(", ")
    )))
}

/// DuckDB's out-of-memory failure as what it is: resources exhausted (exit 75), told in terms
/// of the flag that set the limit. DuckDB reports the exception's type as the first words of
/// its message ("Out of Memory Error: …"), and duckdb-rs keeps only that message, so the type
/// is read there — once, here — rather than by any stage.
fn name_the_limit(e: t0_core::Error, common: &Common) -> t0_core::Error {
    let t0_core::Error::Internal { message, .. } = &e else { return e };
    let oom = message.contains("Out of Memory Error") || message.contains("could not allocate block");
    if !oom {
        return e;
    }
    // DuckDB's own advice (SET memory_limit, threads) names settings the user sets by flag.
    let text = message.split("\n\nPossible solutions").next().unwrap_or(message).to_string();
    let limit = match &common.memory_limit {
        Some(l) => format!("the memory limit {l} (--memory-limit / T0CLIP_MEMORY_LIMIT)"),
        None => "DuckDB's default memory limit (set one with --memory-limit / T0CLIP_MEMORY_LIMIT)".into(),
    };
    t0_core::Error::Resource(format!(
        "out of memory under {limit}: raise it, or free disk in the temp directory DuckDB spills to ({text})"
    ))
}

/// Run a command that reads (a `show`, `plan`, `verify`) and exit according to the contract.
pub fn run(
    common: &Common,
    stage: &str,
    body: impl FnOnce(&Root, Clock, &dyn Progress) -> t0_core::Result<Outcome>,
) -> std::process::ExitCode {
    run_stage(common, stage, false, body)
}

/// Run a stage body and exit according to the contract; when `runs` (the command runs the
/// stage, not one of its read-only subcommands) with its OpenLineage events.
pub fn run_stage(
    common: &Common,
    stage: &str,
    runs: bool,
    body: impl FnOnce(&Root, Clock, &dyn Progress) -> t0_core::Result<Outcome>,
) -> std::process::ExitCode {
    let bar = Bar::new(common.quiet);
    let result = resources(common)
        .and_then(|()| bucket_root(common))
        .and_then(|root| bucketed_stage(stage, root))
        .and_then(|root| Ok((root, Clock::from_arg(common.now.as_deref())?)))
        .and_then(|(root, clock)| {
            let events = if runs { Some(lineage::start(common, &root, stage, &clock)?) } else { None };
            let result = body(&root, clock, &bar).map_err(|e| name_the_limit(e, common));
            // The stage's own result stands; lineage that could not be written or sent is said.
            match events.map(|events| lineage::finish(events, &root, &clock, &result)) {
                Some(Err(e)) => eprintln!("{stage}: warning: lineage event not written: {e}"),
                Some(Ok(unsent)) => unsent.iter().for_each(|w| eprintln!("{stage}: warning: {w}")),
                None => {}
            }
            result
        })
        .map_err(|e| name_the_limit(e, common));
    bar.finish();
    let code = match result {
        Ok(o) => {
            if !common.quiet && !o.human.is_empty() {
                eprintln!("{stage}: {}", o.human);
            }
            if common.json {
                // A closed pipe (`| head`) is the reader's choice, not an error of the stage.
                let _ = writeln!(std::io::stdout().lock(), "{}", o.json);
            }
            o.code
        }
        Err(e) => {
            let code = e.exit_code();
            // "Nothing to do" is an answer, not a failure: no "error:" prefix.
            if code == ExitCode::NothingToDo {
                if !common.quiet {
                    eprintln!("{stage}: {e}");
                }
            } else {
                eprintln!("{stage}: error: {e}");
            }
            if common.json {
                let v = serde_json::json!({"stage": stage, "error": e.to_string(), "exit_code": code.code()});
                let _ = writeln!(std::io::stdout().lock(), "{v}");
            }
            code
        }
    };
    std::process::ExitCode::from(code.code() as u8)
}

/// `--initial-state`: an acceptance state, PASS, DERISK or BLOCK (any case).
pub fn parse_state(s: &str) -> Result<t0_core::Verdict, String> {
    use t0_core::Verdict;
    [Verdict::Pass, Verdict::Derisk, Verdict::Block]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("{s:?} is not PASS, DERISK or BLOCK"))
}
