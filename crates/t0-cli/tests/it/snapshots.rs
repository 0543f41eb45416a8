//! What users see, pinned: every stage's human summary and `--json` report of the finished
//! clips loop, and every binary's `--help`. A change to any of them shows up as a snapshot diff
//! (`cargo insta review`, or `INSTA_UPDATE=always` and read the diff before committing).
//!
//! The loop runs with a pinned clock, so run ids, stamps and figures are stable; what is not
//! (temporary roots, the checkout's path, wall-clock durations, the thread count) is replaced by
//! a placeholder.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::*;

/// The stages' summaries, read back through `show` exactly as each stage printed them.
const SHOWN: &[(&str, &str)] = &[
    ("acquire", "show"),
    ("audit", "show"),
    ("heal", "show"),
    ("certify", "show"),
    ("certify", "show-labels"),
    ("embed", "show"),
    ("train-suite", "show"),
    ("score", "show"),
    ("calibrate", "show"),
];

const BINARIES: &[&str] = &[
    "acquire",
    "audit",
    "heal",
    "certify",
    "embed",
    "train-suite",
    "score",
    "calibrate",
    "verify",
    "plan",
    "commit",
    "report",
];

/// Replace what differs between machines and runs but says nothing about behaviour.
pub(crate) fn normalise(text: &str, root: &Path) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = text.replace(&root.display().to_string(), "[ROOT]");
    out = out.replace(&repo.display().to_string(), "[REPO]");
    if let Ok(real) = repo.canonicalize() {
        out = out.replace(&real.display().to_string(), "[REPO]");
    }
    out
}

pub(crate) fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_snapshot_path("snapshots");
    // Durations and rates measured with the wall clock, and the machine's core count.
    s.add_filter(r#""(seconds[a-z_]*|[a-z_]*per_second)": [0-9.eE+-]+"#, r#""$1": "[SECONDS]""#);
    s.add_filter(r#""threads": [0-9]+"#, r#""threads": "[THREADS]""#);
    s.add_filter(r"\b[0-9]+\.[0-9]+ s\b", "[SECONDS] s");
    s.add_filter(r"/tmp/[A-Za-z0-9._-]+", "[TMP]");
    s
}

#[test]
fn every_stage_shows_its_summary_and_json_as_snapshots() {
    // A copy: `verify` of another test holds the shared root's lock while it runs.
    let dir = copy_of_pristine();
    let root = dir.path();
    let settings = settings();
    for (stage, show) in SHOWN {
        let human = expect(root, stage, &[show], 0);
        let json = expect(root, stage, &[show, "--json"], 0);
        let value: serde_json::Value = serde_json::from_str(json.stdout.trim())
            .unwrap_or_else(|e| panic!("{stage} {show} --json is not JSON ({e}): {}", json.stdout));
        let name = format!("{stage}-{show}");
        settings.bind(|| {
            insta::assert_snapshot!(format!("{name}-human"), normalise(&human.stderr, root));
            insta::assert_snapshot!(
                format!("{name}-json"),
                normalise(&serde_json::to_string_pretty(&value).unwrap(), root)
            );
        });
    }
}

#[test]
fn verify_prints_a_clean_root_as_snapshots() {
    let dir = copy_of_pristine();
    let human = expect(dir.path(), "verify", &[], 0);
    let json = expect(dir.path(), "verify", &["--json"], 0);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    settings().bind(|| {
        insta::assert_snapshot!("verify-human", normalise(&human.stderr, dir.path()));
        insta::assert_snapshot!("verify-json", normalise(&serde_json::to_string_pretty(&value).unwrap(), dir.path()));
    });
}

/// Variables whose values `--help` prints (`[env: NAME=value]`): unset, so the caller's
/// environment cannot change the text.
const HELP_ENV: &[&str] = &[
    "T0CLIP_ROOT",
    "T0CLIP_PROJECT",
    "T0CLIP_NOW",
    "T0CLIP_MODELS",
    "T0CLIP_EMBED_CACHE",
    "T0CLIP_MEMORY_LIMIT",
    "T0CLIP_TEMP_DIR",
    "T0CLIP_LOCK_WAIT",
    "T0CLIP_BUCKET",
    "T0CLIP_LINEAGE_PARENT",
    "T0CLIP_LINEAGE_NAMESPACE",
    "T0CLIP_LINEAGE_URL",
];

#[test]
fn every_binary_explains_itself_in_help() {
    let settings = settings();
    for b in BINARIES {
        let mut cmd = Command::new(bin(b));
        cmd.arg("--help").stdin(Stdio::null());
        for v in HELP_ENV {
            cmd.env_remove(v);
        }
        // Not a terminal: clap wraps at COLUMNS, pinned to its own default.
        let o = cmd.env("COLUMNS", "100").output().unwrap();
        assert!(o.status.success(), "{b} --help: {}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        settings.bind(|| insta::assert_snapshot!(format!("{b}-help"), normalise(&text, Path::new("/nonexistent"))));
    }
}
