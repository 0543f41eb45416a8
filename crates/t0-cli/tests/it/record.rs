//! Reading and proving the record: verify, showing a past run, reproduce, memory limits.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// `verify --json` on `root`: (exit code, problems as (kind, object, detail)).
fn verify(root: &Path, args: &[&str]) -> (i32, Vec<(String, String, String)>) {
    let o = run(root, "verify", &[&["--json"], args].concat());
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|_| panic!("{}", o.stderr));
    let problems = v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                    (s("kind"), s("object"), s("detail"))
                })
                .collect()
        })
        .unwrap_or_default();
    (o.code, problems)
}

#[test]
fn verify_proves_a_clean_root_and_names_every_kind_of_damage() {
    // Stage binaries run on copies: two processes opening the shared root's catalog collide
    // on DuckDB's file lock.
    let clean = copy_of_pristine();
    assert_eq!(verify(clean.path(), &[]), (0, vec![]));
    let has = |ps: &[(String, String, String)], kind: &str, object: &str| {
        ps.iter().any(|(k, o, _)| k == kind && o.contains(object))
    };
    // A manifest file deleted, or edited.
    let dir = copy_of_pristine();
    let m = find(dir.path(), "manifests/embed/", ".json");
    std::fs::remove_file(dir.path().join(&m)).unwrap();
    let (code, ps) = verify(dir.path(), &[]);
    assert!(code == 1 && has(&ps, "missing", &m), "{ps:?}");
    let dir = copy_of_pristine();
    let m = find(dir.path(), "manifests/score/", ".json");
    let text = std::fs::read_to_string(dir.path().join(&m)).unwrap().replacen("\"rows\"", "\"rows\" ", 1);
    std::fs::write(dir.path().join(&m), text).unwrap();
    let (code, ps) = verify(dir.path(), &[]);
    assert!(code == 1 && has(&ps, "changed", &m), "{ps:?}");
    // The catalog row of an older run deleted: its file is unrecorded, the links to it broken.
    let dir = copy_of_pristine();
    sql(dir.path(), "DELETE FROM manifests WHERE stage = 'labels'");
    let (_, ps) = verify(dir.path(), &[]);
    let labels = find(dir.path(), "manifests/labels/", ".json");
    assert!(has(&ps, "unrecorded", &labels), "{ps:?}");
    assert!(ps.iter().any(|(k, _, d)| k == "broken_link" && d.contains("labels run")), "{ps:?}");
    // A Parquet output no later stage reads, deleted; a stray file; a per-run catalog row.
    let dir = copy_of_pristine();
    let preds = find(dir.path(), "runs/", "valid.parquet");
    std::fs::remove_file(dir.path().join(&preds)).unwrap();
    std::fs::write(dir.path().join("lake/notes.txt"), "hello").unwrap();
    sql(dir.path(), "UPDATE acceptance SET coverage = 0.5");
    let (code, ps) = verify(dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(has(&ps, "missing", &preds) || has(&ps, "changed", &preds), "{ps:?}");
    assert!(has(&ps, "unrecorded", "lake/notes.txt"), "{ps:?}");
    assert!(has(&ps, "changed", "catalog table acceptance"), "{ps:?}");
    // The ledger cut short.
    let dir = copy_of_pristine();
    sql(dir.path(), &format!("DELETE FROM heal_ledger WHERE seq = {}", ledger_size(dir.path())));
    let (_, ps) = verify(dir.path(), &[]);
    assert!(has(&ps, "ledger", "heal_ledger (heal run"), "{ps:?}");
    assert!(has(&ps, "changed", "catalog table heal_ledger"), "{ps:?}");
    // --since: only a run and its descendants. Damage before it is out of scope.
    let dir = copy_of_pristine();
    let embed_run = find(dir.path(), "manifests/embed/", ".json");
    let embed_run = embed_run.trim_start_matches("manifests/embed/").trim_end_matches(".json");
    let acquired = find(dir.path(), "manifests/acquire/", ".json");
    std::fs::remove_file(dir.path().join(&acquired)).unwrap();
    assert_eq!(verify(dir.path(), &["--since", embed_run]).0, 0);
    let preds = find(dir.path(), "lake/predictions/", "predictions.parquet");
    flip_byte(&dir.path().join(&preds));
    let (code, ps) = verify(dir.path(), &["--since", embed_run]);
    assert!(code == 1 && has(&ps, "changed", &preds) && !has(&ps, "missing", &acquired), "{ps:?}");
    assert_eq!(verify(dir.path(), &["--since", "nope"]).0, 2);
}

#[test]
fn every_stage_shows_a_recorded_run_again() {
    let dir = copy_of_pristine();
    let root = dir.path();
    for (stage, args) in [
        ("acquire", vec!["show"]),
        ("audit", vec!["show"]),
        ("heal", vec!["show"]),
        ("certify", vec!["show"]),
        ("certify", vec!["show-labels"]),
        ("embed", vec!["show"]),
        ("train-suite", vec!["show"]),
        ("score", vec!["show"]),
        ("calibrate", vec!["show"]),
    ] {
        let o = expect(root, stage, &[&args[..], &["--json"]].concat(), 0);
        let shown: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
        let dir = if args[0] == "show-labels" { "labels" } else { stage };
        let run = shown["run_id"].as_str().unwrap_or_else(|| panic!("{stage}: {shown}"));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(format!("manifests/{dir}/{run}.json"))).unwrap())
                .unwrap();
        for (k, v) in m["summary"].as_object().unwrap() {
            if k != "ledger" && k != "patched_at" {
                assert_eq!(&shown[k], v, "{stage} show: {k}");
            }
        }
        assert!(o.stderr.contains(run), "{stage}: {}", o.stderr);
    }
    // A run that does not exist, a tampered manifest.
    let o = expect(root, "audit", &["show", "nope"], 2);
    assert!(o.stderr.contains("no audit run nope"), "{}", o.stderr);
    let dir = copy_of_pristine();
    let m = find(dir.path(), "manifests/score/", ".json");
    flip_byte(&dir.path().join(&m));
    let o = expect(dir.path(), "score", &["show"], 3);
    assert!(o.stderr.contains(&m), "{}", o.stderr);
}

#[test]
fn train_suite_reproduces_byte_for_byte_on_one_thread_and_names_a_changed_file() {
    let dir = copy_of_pristine();
    let root = dir.path();
    let model = find(root, "runs/", "model.json");
    let run_id = model.split('/').nth(1).unwrap().to_string();
    // The suite trained every family on every clips label once per fusion strategy, each in
    // its own file; the stack exists for the value, binary and time-to-event labels.
    for fusion in ["concat", "sum_pool", "max_pool"] {
        for (label, family) in [
            ("y_log_views", "ridge"),
            ("y_log_views", "gbdt-squared"),
            ("y_log_views", "stack"),
            ("y_tail", "gate"),
            ("y_tail", "woe"),
            ("y_tail", "stack"),
            ("tte_hours", "aft-weibull"),
            ("tte_hours", "gbdt-aft-lognormal"),
            ("tte_hours", "stack"),
        ] {
            find(root, &format!("runs/{run_id}/models/{label}__"), &format!("__{family}+{fusion}.json"));
        }
    }
    let board = std::fs::read_to_string(root.join(format!("runs/{run_id}/leaderboard.csv"))).unwrap();
    assert!(board.starts_with("label,label_kind,model,fusion,"), "{board}");
    // One model per label is selected, across the fusion strategies.
    for label in ["y_log_views", "y_tail"] {
        let picked = board.lines().filter(|l| l.starts_with(&format!("{label},")) && l.ends_with(",true")).count();
        assert_eq!(picked, 1, "{label} in {board}");
    }
    // The pristine run used every core; the replay uses one.
    let replay = |root: &Path| run_threads(root, "train-suite", &["reproduce", &run_id, "--json"], "1");
    let o = replay(root);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["identical"], true);
    assert!(r["files"].as_u64().unwrap() >= 15, "{r}");
    // A changed model file: the replay stops (exit 1) naming it.
    let gbdt = find(root, &format!("runs/{run_id}/models/y_log_views__"), "gbdt-squared+concat.json");
    let path = root.join(&gbdt);
    let text = std::fs::read_to_string(&path).unwrap().replacen("\"value\":", "\"value\": ", 1);
    std::fs::write(&path, text).unwrap();
    let o = replay(root);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&gbdt), "must name {gbdt}: {err}");
}

#[test]
fn a_changed_snapshot_file_is_named_by_verify() {
    let dir = copy_of_pristine();
    let rel = find(dir.path(), "runs/", "split_manifest.parquet");
    flip_byte(&dir.path().join(&rel));
    let o = run(dir.path(), "verify", &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains(&rel) || o.stdout.contains(&rel), "verify must name {rel}: {}", o.stderr);
}

#[test]
fn a_memory_limit_is_taken_by_flag_or_environment_and_named_when_duckdb_runs_out() {
    let fx = fixture();
    let input = fx.to_str().unwrap();
    // A size that is not one is a usage error naming the flag.
    let dir = tempfile::tempdir().unwrap();
    let o = expect(dir.path(), "acquire", &["--input", input, "--memory-limit", "12 parsecs"], 2);
    assert!(o.stderr.contains("--memory-limit") && o.stderr.contains("parsecs"), "{}", o.stderr);
    // Too little memory for DuckDB: resources exhausted (75, not a bug's 70), naming the limit
    // and the flag.
    let o = expect(dir.path(), "acquire", &["--input", input, "--memory-limit", "1MB"], 75);
    assert!(o.stderr.contains("out of memory under the memory limit 1MB (--memory-limit"), "{}", o.stderr);
    // A workable limit, from the environment, completes, with DuckDB's spill directory under
    // the root.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin("acquire"))
        .args(["--root", dir.path().to_str().unwrap(), "--input", input])
        .env("T0CLIP_NOW", NOW)
        .env("T0CLIP_MEMORY_LIMIT", "256MB")
        .env_remove("T0CLIP_ROOT")
        .env_remove("T0CLIP_PROJECT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("tmp").is_dir());
}

#[test]
fn verify_checks_the_schema_of_a_named_project_only() {
    // The gapminder root proves itself with its own project, or with none named.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(gapminder_root(), dir.path());
    let root = dir.path();
    let gap = repo("projects/gapminder");
    expect(root, "verify", &["--project", gap.to_str().unwrap()], 0);
    expect(root, "verify", &[], 0);
    // Named with the clips project, its measure columns are not that project's: exit 2 naming
    // the project file.
    let clips = repo("projects/clips");
    let o = expect(root, "verify", &["--project", clips.to_str().unwrap()], 2);
    assert!(o.stderr.contains("project.yaml") && o.stderr.contains("clips"), "{}", o.stderr);
}
