//! What every integration test shares: the stage binaries, the committed fixture, one
//! finished loop (each test works on its own copy) and small file and catalog helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use t0_core::Root;

pub const NOW: &str = "2026-04-01T00:00:00Z";

pub fn bin(stage: &str) -> &'static str {
    match stage {
        "acquire" => env!("CARGO_BIN_EXE_acquire"),
        "audit" => env!("CARGO_BIN_EXE_audit"),
        "heal" => env!("CARGO_BIN_EXE_heal"),
        "certify" => env!("CARGO_BIN_EXE_certify"),
        "embed" => env!("CARGO_BIN_EXE_embed"),
        "train-suite" => env!("CARGO_BIN_EXE_train-suite"),
        "score" => env!("CARGO_BIN_EXE_score"),
        "calibrate" => env!("CARGO_BIN_EXE_calibrate"),
        "verify" => env!("CARGO_BIN_EXE_verify"),
        "plan" => env!("CARGO_BIN_EXE_plan"),
        "commit" => env!("CARGO_BIN_EXE_commit"),
        "report" => env!("CARGO_BIN_EXE_report"),
        other => panic!("no stage {other}"),
    }
}

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/clips")
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(root: &Path, stage: &str, args: &[&str]) -> Out {
    let o = Command::new(bin(stage))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("T0CLIP_NOW", NOW)
        .env_remove("T0CLIP_ROOT")
        .env_remove("T0CLIP_PROJECT")
        .output()
        .expect("stage binary runs");
    Out {
        code: o.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A stage run on `threads` rayon threads (the determinism tests), its raw output.
pub fn run_threads(root: &Path, stage: &str, args: &[&str], threads: &str) -> std::process::Output {
    Command::new(bin(stage))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("T0CLIP_NOW", NOW)
        .env("RAYON_NUM_THREADS", threads)
        .env_remove("T0CLIP_ROOT")
        .env_remove("T0CLIP_PROJECT")
        .output()
        .expect("stage binary runs")
}

pub fn expect(root: &Path, stage: &str, args: &[&str], code: i32) -> Out {
    let o = run(root, stage, args);
    assert_eq!(
        o.code, code,
        "{stage} {args:?} exited {} (wanted {code})\nstderr: {}\nstdout: {}",
        o.code, o.stderr, o.stdout
    );
    o
}

pub fn full_loop(root: &Path) {
    until_labels(root, &fixture());
    expect(root, "embed", &[], 0);
    expect(root, "train-suite", &[], 0);
    expect(root, "score", &[], 0);
    let cal = expect(root, "calibrate", &["--json"], 0);
    let v: serde_json::Value = serde_json::from_str(cal.stdout.trim()).unwrap();
    assert!(["PASS", "DERISK"].contains(&v["state"].as_str().unwrap()), "{v}");
}

/// One finished loop, shared by the tests; each test works on its own copy.
pub fn pristine() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        full_loop(dir.path());
        dir
    })
    .path()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub fn copy_of_pristine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine(), dir.path());
    dir
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

/// The single file matching `prefix*suffix` under `root`, relative to it.
pub fn find(root: &Path, prefix: &str, suffix: &str) -> String {
    let mut hits: Vec<String> = files_under(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|rel| rel.starts_with(prefix) && rel.ends_with(suffix))
        .collect();
    assert_eq!(hits.len(), 1, "{prefix}*{suffix}: {hits:?}");
    hits.pop().unwrap()
}

pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

pub fn sql(root: &Path, statement: &str) {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    let n = cat.conn().execute(statement, []).unwrap();
    assert!(n > 0, "{statement} changed nothing");
}

/// Flip a byte of the file, run `stage`, expect exit 3 naming the file.
pub fn file_case(prefix: &str, suffix: &str, stage: &str) {
    let dir = copy_of_pristine();
    let rel = find(dir.path(), prefix, suffix);
    flip_byte(&dir.path().join(&rel));
    let o = expect(dir.path(), stage, &[], 3);
    assert!(o.stderr.contains(&rel), "{stage} must name {rel}: {}", o.stderr);
}

/// acquire .. certify labels on `input`; the fixture's counter regressions fail the first
/// audit and heal repairs them.
pub fn until_labels(root: &Path, input: &Path) {
    expect(root, "acquire", &["--input", input.to_str().unwrap()], 0);
    let audit = expect(root, "audit", &["--json"], 1);
    let findings: serde_json::Value = serde_json::from_str(audit.stdout.trim()).unwrap();
    let failing = |check: &str| -> u64 {
        findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check)
            .map(|f| f["failing"].as_u64().unwrap())
            .sum()
    };
    assert!(failing("monotonic_counter") > 0, "{}", audit.stdout);
    expect(root, "heal", &[], 0);
    expect(root, "audit", &[], 0);
    expect(root, "certify", &[], 0);
    expect(root, "certify", &["labels"], 0);
}

/// `certify attack --json` on `root` with extra arguments; (exit code, report).
pub fn attack(root: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let o = run(root, "certify", &[args, &["attack", "--json", "--sample", "200"]].concat());
    assert!([0, 1].contains(&o.code), "attack exited {}: {}", o.code, o.stderr);
    eprintln!("{}", o.stderr.trim());
    (o.code, serde_json::from_str(o.stdout.trim()).unwrap())
}

/// The stores of a report that leak, and a check that every store compared rows and every
/// canonical table was attacked.
pub fn leaking(v: &serde_json::Value, tables: &[&str]) -> Vec<String> {
    for s in v["stores"].as_array().unwrap() {
        assert!(s["compared"].as_u64().unwrap() > 0, "{s}");
    }
    for t in tables {
        assert!(v["injected"][t].as_u64().unwrap() > 0, "nothing injected into {t}: {v}");
    }
    v["leaking"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

pub fn ledger_size(root: &Path) -> i64 {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    cat.conn().query_row("SELECT max(seq) FROM heal_ledger", [], |r| r.get(0)).unwrap()
}

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// A copy of a shipped project, with `edit(file name, text)` applied to each file.
pub fn project_copy(name: &str, edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo(&format!("projects/{name}")), dir.path());
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                std::fs::write(&p, edit(&name, text)).unwrap();
            }
        }
    }
    dir
}

/// The gapminder panel through every stage, with `project` (default: the shipped one).
pub fn gapminder_loop(root: &Path, project: &Path) -> serde_json::Value {
    let p = project.to_str().unwrap();
    let input = repo("fixtures/gapminder");
    let acq = expect(root, "acquire", &["--project", p, "--input", input.to_str().unwrap(), "--json"], 0);
    let acq: serde_json::Value = serde_json::from_str(acq.stdout.trim()).unwrap();
    expect(root, "audit", &["--project", p], 0);
    expect(root, "heal", &["--project", p], 99);
    expect(root, "certify", &["--project", p], 0);
    expect(root, "certify", &["--project", p, "labels"], 0);
    // The country profile text gets a real sentence embedding.
    expect(root, "embed", &["--project", p], 0);
    let train = expect(root, "train-suite", &["--project", p, "--json"], 0);
    expect(root, "score", &["--project", p], 0);
    let cal = run(root, "calibrate", &["--project", p, "--json"]);
    assert!([0, 1].contains(&cal.code), "calibrate: {}", cal.stderr);
    serde_json::json!({"acquire": acq, "train": serde_json::from_str::<serde_json::Value>(train.stdout.trim()).unwrap(),
                       "calibrate": serde_json::from_str::<serde_json::Value>(cal.stdout.trim()).unwrap()})
}

pub fn gapminder_root() -> &'static Path {
    static ROOT: OnceLock<(tempfile::TempDir, serde_json::Value)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let v = gapminder_loop(dir.path(), &repo("projects/gapminder"));
        (dir, v)
    })
    .0
    .path()
}

/// A governance profile under which no guard ever breaches (`calibrate --profile`): with
/// `--initial-state PASS` the replay stays in PASS whatever the predictions.
pub fn permissive_profile(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("permissive-governance.yaml");
    let never = "{soft: 1.0e12, hard: 1.0e12, up: 1.0e12}";
    let text = format!(
        "guards:\n  coverage_ema: {{soft: -1, hard: -1, up: -1}}\n  miss_streak: {never}\n  surprisal_p95: {never}\n  \
         latency_p95_ms: {never}\n  rel_width: {{soft: -1, hard: -1, up: -1, higher_is_worse: false}}\nkappa: {{max_rel_width: 0}}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `calibrate` flags under which every replayed step is a hard breach (any interval is wider
/// than 0 × nominal): the state goes to BLOCK by the second matured step.
pub const ALWAYS_BLOCK: [&str; 2] = ["--set", "guards.rel_width.hard=0"];
