//! Crash injection (issue 30): each stage is killed with SIGKILL at named points and, in the
//! long mode, at random moments. After each kill the catalog opens, `verify` passes or names
//! what the dead run left, and a re-run ends with outputs and a manifest byte-identical to an
//! uninterrupted run's.
//!
//! Default (CI): acquire, audit, heal and certify, each killed after its first catalog commit
//! and between its manifest file and the manifest's catalog row.
//! Long mode: `T0CLIP_CRASH_KILLS=200 cargo test --test it -- crash --nocapture` adds
//! train-suite, the points before the first commit and either side of the manifest file, and
//! that many kills per stage at random moments (seeded by `T0CLIP_CRASH_SEED`, default 1);
//! `T0CLIP_CRASH_STAGES=acquire,train-suite` picks stages.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use t0_core::Root;

use crate::support::{NOW, bin, copy_dir, expect, fixture, run};

/// A stage under test: its arguments, its exit code when it completes, and the root before it.
struct Stage {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    before: tempfile::TempDir,
}

fn long_mode() -> bool {
    std::env::var("T0CLIP_CRASH_KILLS").ok().and_then(|k| k.parse::<usize>().ok()).is_some_and(|k| k > 0)
}

fn only() -> Option<String> {
    std::env::var("T0CLIP_CRASH_STAGES").ok()
}

/// The roots before each stage, built once: acquire, audit, heal, certify, train-suite.
fn stages() -> &'static Vec<Stage> {
    static STAGES: OnceLock<Vec<Stage>> = OnceLock::new();
    STAGES.get_or_init(|| {
        let input = fixture().to_str().unwrap().to_string();
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let snapshot = || {
            let d = tempfile::tempdir().unwrap();
            copy_dir(w, d.path());
            d
        };
        let mut out = Vec::new();
        let step = |name: &'static str, args: &[&str], code: i32, out: &mut Vec<Stage>| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            out.push(Stage { name, args: args.clone(), code, before: snapshot() });
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            expect(w, name, &argv, code);
        };
        step("acquire", &["--input", &input], 0, &mut out);
        step("audit", &[], 1, &mut out);
        step("heal", &[], 0, &mut out);
        expect(w, "audit", &[], 0);
        step("certify", &[], 0, &mut out);
        // train-suite needs labels and embeddings first: the long mode, or when asked for.
        if long_mode() || only().is_some_and(|o| o.contains("train-suite")) {
            expect(w, "certify", &["labels"], 0);
            expect(w, "embed", &[], 0);
            step("train-suite", &[], 0, &mut out);
        }
        out
    })
}

/// What a finished stage left that a re-run must reproduce: its manifest files' bytes and the
/// outputs the catalog records for it (name, content hash, rows).
type Outcome = (BTreeMap<String, Vec<u8>>, Vec<(String, String, Option<i64>)>);

fn outcome(root: &Path, stage: &str) -> Outcome {
    let dir = root.join("manifests").join(stage);
    let manifests = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    let mut stmt =
        cat.conn().prepare("SELECT name, content_hash, rows FROM outputs WHERE stage = ? ORDER BY name").unwrap();
    let outputs =
        stmt.query_map([stage], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    (manifests, outputs)
}

/// How a kill went: whether the process was stopped before it finished.
enum Kill {
    At(&'static str),
    After(Duration),
}

/// Start the stage on `root` and kill it as `kill` says; true if it died by the kill.
fn kill(root: &Path, s: &Stage, how: &Kill, point: &str) -> bool {
    let mut cmd = Command::new(bin(s.name));
    cmd.arg("--root").arg(root).args(&s.args).env("T0CLIP_NOW", NOW).env_remove("T0CLIP_ROOT");
    cmd.env_remove("T0CLIP_PROJECT").stdout(Stdio::null()).stderr(Stdio::piped());
    if let Kill::At(_) = how {
        cmd.env("T0CLIP_PAUSE_AT", point);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    match how {
        Kill::At(_) => {
            let paused = stderr.lines().map_while(Result::ok).any(|l| l.contains("paused at"));
            if !paused {
                child.wait().unwrap();
                return false;
            }
        }
        Kill::After(d) => {
            let drain = std::thread::spawn(move || stderr.lines().for_each(drop));
            let until = Instant::now() + *d;
            while Instant::now() < until {
                if child.try_wait().unwrap().is_some() {
                    drop(drain);
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    child.kill().unwrap();
    !child.wait().unwrap().success()
}

/// After a kill: the catalog opens, verify passes or names only files the dead run left, the
/// re-run finishes (or finds its run complete) and leaves what an uninterrupted run leaves.
fn recovers(s: &Stage, how: &Kill, point: &str, want: &Outcome) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(s.before.path(), dir.path());
    let root = dir.path();
    let killed = kill(root, s, how, point);
    if let Kill::At(p) = how {
        assert!(killed, "{} never reached {p}", s.name);
    }
    t0_catalog::Catalog::open(&Root::new(root))
        .unwrap_or_else(|e| panic!("{} killed at {point}: catalog: {e}", s.name));
    let v = run(root, "verify", &["--json"]);
    assert!(v.code == 0 || v.code == 1, "{} killed at {point}: verify exited {}: {}", s.name, v.code, v.stderr);
    if v.code == 1 {
        // The dead run is named: its manifest file unrecorded, or its committed rows incomplete.
        let r: serde_json::Value = serde_json::from_str(v.stdout.trim()).unwrap();
        let problems = r["problems"].as_array().unwrap();
        let named = problems.iter().any(|p| p["kind"] == "unrecorded" || p["kind"] == "incomplete");
        assert!(named, "{} killed at {point}: verify does not name the dead run: {problems:?}", s.name);
    }
    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
    let again = run(root, s.name, &args);
    // Killed after its manifest was recorded, the run is complete: the re-run finds nothing to
    // do (and what it left is compared below like any other).
    let done_before = again.code == 99;
    assert!(
        again.code == s.code || done_before,
        "{} killed at {point}: re-run exited {}: {}",
        s.name,
        again.code,
        again.stderr
    );
    let got = outcome(root, s.name);
    assert_eq!(got.1, want.1, "{} killed at {point}: outputs differ from an uninterrupted run", s.name);
    for (name, bytes) in &want.0 {
        assert!(got.0.get(name) == Some(bytes), "{} killed at {point}: manifest {name} differs", s.name);
    }
    assert_eq!(got.0.len(), want.0.len(), "{} killed at {point}: manifests", s.name);
    expect(root, "verify", &[], 0);
    if s.name == "heal" {
        expect(root, "heal", &["verify-ledger"], 0);
    }
}

#[test]
fn a_stage_killed_anywhere_recovers_to_what_an_uninterrupted_run_leaves() {
    let kills: usize = std::env::var("T0CLIP_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(0);
    let seed: u64 = std::env::var("T0CLIP_CRASH_SEED").ok().and_then(|k| k.parse().ok()).unwrap_or(1);
    let mut rng = t0_core::rng::SplitMix::new(seed);
    let only = only();
    for s in stages().iter().filter(|s| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == s.name))) {
        let reference = tempfile::tempdir().unwrap();
        copy_dir(s.before.path(), reference.path());
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let started = Instant::now();
        expect(reference.path(), s.name, &args, s.code);
        let took = started.elapsed();
        let want = outcome(reference.path(), s.name);
        // Before and after the first commit, and between the manifest file and its row; the
        // long mode adds the points either side of the manifest file.
        let mut points = vec![format!("{}.record", s.name), "catalog.committed#1".to_string()];
        if kills > 0 {
            points.push("catalog.commit#1".to_string());
        }
        if kills > 0 {
            points.extend([format!("{}.manifest", s.name), format!("{}.recorded", s.name)]);
        }
        for p in &points {
            recovers(s, &Kill::At("named point"), p, &want);
        }
        let mut survived = 0;
        for _ in 0..kills {
            let after = Duration::from_micros(rng.below(took.as_micros() as u64 + 1));
            recovers(s, &Kill::After(after), &format!("{after:?}"), &want);
            survived += 1;
        }
        eprintln!("{}: {} named points and {survived} random kills survived", s.name, points.len());
    }
}
