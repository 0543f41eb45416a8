//! The whole loop through the real binaries on the committed fixture, then the hash chain:
//! corrupt one byte (or one value) of each kind of stage output in a copy of the finished
//! root and check that the next stage refuses with exit 3, naming what changed.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use t0_core::Root;

const NOW: &str = "2026-04-01T00:00:00Z";

fn bin(stage: &str) -> &'static str {
    match stage {
        "acquire" => env!("CARGO_BIN_EXE_acquire"),
        "audit" => env!("CARGO_BIN_EXE_audit"),
        "heal" => env!("CARGO_BIN_EXE_heal"),
        "certify" => env!("CARGO_BIN_EXE_certify"),
        "embed" => env!("CARGO_BIN_EXE_embed"),
        "train-suite" => env!("CARGO_BIN_EXE_train-suite"),
        "score" => env!("CARGO_BIN_EXE_score"),
        "calibrate" => env!("CARGO_BIN_EXE_calibrate"),
        other => panic!("no stage {other}"),
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/clips")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(root: &Path, stage: &str, args: &[&str]) -> Out {
    let o = Command::new(bin(stage))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("T0CLIP_NOW", NOW)
        .env_remove("T0CLIP_ROOT")
        .output()
        .expect("stage binary runs");
    Out {
        code: o.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn expect(root: &Path, stage: &str, args: &[&str], code: i32) -> Out {
    let o = run(root, stage, args);
    assert_eq!(
        o.code, code,
        "{stage} {args:?} exited {} (wanted {code})\nstderr: {}\nstdout: {}",
        o.code, o.stderr, o.stdout
    );
    o
}

fn full_loop(root: &Path) {
    let input = fixture();
    expect(root, "acquire", &["--input", input.to_str().unwrap()], 0);
    // The fixture carries counter regressions: the first audit fails, heal repairs them.
    let audit = expect(root, "audit", &["--json"], 1);
    assert!(audit.stdout.contains("monotonic_counter"), "{}", audit.stdout);
    expect(root, "heal", &[], 0);
    expect(root, "audit", &[], 0);
    expect(root, "certify", &[], 0);
    expect(root, "certify", &["labels"], 0);
    expect(root, "embed", &[], 0);
    expect(root, "train-suite", &[], 0);
    expect(root, "score", &[], 0);
    let cal = expect(root, "calibrate", &["--json"], 0);
    let v: serde_json::Value = serde_json::from_str(cal.stdout.trim()).unwrap();
    assert!(["PASS", "DERISK"].contains(&v["state"].as_str().unwrap()), "{v}");
}

/// One finished loop, shared by the tests; each test works on its own copy.
fn pristine() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        full_loop(dir.path());
        dir
    })
    .path()
}

fn copy_dir(from: &Path, to: &Path) {
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

fn copy_of_pristine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine(), dir.path());
    dir
}

/// The single file matching `prefix*suffix` under `root`, relative to it.
fn find(root: &Path, prefix: &str, suffix: &str) -> String {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if rel.starts_with(prefix) && rel.ends_with(suffix) {
                    hits.push(rel);
                }
            }
        }
    }
    assert_eq!(hits.len(), 1, "{prefix}*{suffix}: {hits:?}");
    hits.pop().unwrap()
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn sql(root: &Path, statement: &str) {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    let n = cat.conn().execute(statement, []).unwrap();
    assert!(n > 0, "{statement} changed nothing");
}

/// Flip a byte of the file, run `stage`, expect exit 3 naming the file.
fn file_case(prefix: &str, suffix: &str, stage: &str) {
    let dir = copy_of_pristine();
    let rel = find(dir.path(), prefix, suffix);
    flip_byte(&dir.path().join(&rel));
    let o = expect(dir.path(), stage, &[], 3);
    assert!(o.stderr.contains(&rel), "{stage} must name {rel}: {}", o.stderr);
}

#[test]
fn the_loop_leaves_manifests_model_predictions_and_acceptance() {
    let root = pristine();
    for stage in ["acquire", "audit", "heal", "certify", "labels", "embed", "train-suite", "score", "calibrate"] {
        let dir = root.join("manifests").join(stage);
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(n >= 1, "no manifest for {stage}");
    }
    assert_eq!(std::fs::read_dir(root.join("manifests/audit")).unwrap().count(), 2);
    find(root, "runs/", "model.json");
    find(root, "lake/predictions/", "predictions.parquet");
    find(root, "calib/", "report.json");
    let prom = std::fs::read_to_string(root.join("metrics/calibrate.prom")).unwrap();
    assert!(prom.contains("t0clip_acceptance_state{state=\"PASS\"}"), "{prom}");
    let ledger = expect(root, "heal", &["verify-ledger", "--json"], 0);
    assert!(ledger.stdout.contains("\"first_broken\":null"), "{}", ledger.stdout);
}

#[test]
fn rerunning_a_stage_on_the_same_inputs_is_nothing_to_do() {
    let dir = copy_of_pristine();
    expect(dir.path(), "acquire", &["--input", fixture().to_str().unwrap()], 99);
    expect(dir.path(), "audit", &[], 99);
    expect(dir.path(), "heal", &[], 99);
    expect(dir.path(), "certify", &[], 99);
    expect(dir.path(), "certify", &["labels"], 99);
    expect(dir.path(), "train-suite", &[], 99);
}

#[test]
fn same_inputs_give_bit_identical_outputs_and_run_ids() {
    let other = tempfile::tempdir().unwrap();
    full_loop(other.path());
    for sub in ["manifests", "lake", "runs", "calib", "metrics"] {
        let mut files = Vec::new();
        let mut stack = vec![pristine().join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() { stack.push(p) } else { files.push(p) }
            }
        }
        assert!(!files.is_empty(), "{sub} is empty");
        for f in files {
            let rel = f.strip_prefix(pristine()).unwrap();
            let theirs = std::fs::read(other.path().join(rel))
                .unwrap_or_else(|_| panic!("{} missing in the second run", rel.display()));
            assert!(std::fs::read(&f).unwrap() == theirs, "{} differs between two identical runs", rel.display());
        }
    }
}

#[test]
fn a_changed_canonical_row_stops_audit_and_certify() {
    let dir = copy_of_pristine();
    sql(dir.path(), "UPDATE observations SET views = views + 1 WHERE rowid = (SELECT min(rowid) FROM observations)");
    let o = expect(dir.path(), "audit", &[], 3);
    assert!(o.stderr.contains("catalog table observations"), "{}", o.stderr);
    // Write-audit-publish: certify will not publish data the passing audit did not see.
    let o = expect(dir.path(), "certify", &[], 3);
    assert!(o.stderr.contains("changed after the passing audit"), "{}", o.stderr);
}

#[test]
fn acquire_output_tampered_before_audit() {
    let dir = tempfile::tempdir().unwrap();
    expect(dir.path(), "acquire", &["--input", fixture().to_str().unwrap()], 0);
    sql(dir.path(), "UPDATE entities SET parent_id = 'ch999999' WHERE rowid = (SELECT max(rowid) FROM entities)");
    let o = expect(dir.path(), "audit", &[], 3);
    assert!(o.stderr.contains("catalog table entities"), "{}", o.stderr);
}

#[test]
fn audit_findings_tampered_before_heal() {
    let dir = copy_of_pristine();
    sql(
        dir.path(),
        "UPDATE audit_findings SET failing = failing + 1 WHERE rowid = (SELECT max(rowid) FROM audit_findings)",
    );
    let o = expect(dir.path(), "heal", &[], 3);
    assert!(o.stderr.contains("catalog table audit_findings"), "{}", o.stderr);
}

#[test]
fn text_surface_corrupted_before_embed() {
    file_case("lake/surfaces/text/", "surface.parquet", "embed");
}

#[test]
fn base_surface_corrupted_before_train() {
    file_case("lake/surfaces/base/", "surface.parquet", "train-suite");
}

#[test]
fn labels_corrupted_before_train() {
    file_case("lake/labels/", "labels.parquet", "train-suite");
}

#[test]
fn embeddings_corrupted_before_train() {
    file_case("lake/embeddings/text/", "embeddings.parquet", "train-suite");
}

#[test]
fn model_corrupted_before_score() {
    file_case("runs/", "model.json", "score");
}

#[test]
fn predictions_corrupted_before_calibrate() {
    file_case("lake/predictions/", "predictions.parquet", "calibrate");
}

#[test]
fn acceptance_report_corrupted_before_the_next_score() {
    file_case("calib/", "report.json", "score");
}

#[test]
fn manifest_corrupted_before_its_consumer() {
    file_case("manifests/certify/", ".json", "embed");
}

#[test]
fn a_block_acceptance_stops_the_next_score() {
    let dir = copy_of_pristine();
    // Zero tolerance: any gap between coverage and nominal is BLOCK.
    let o = expect(dir.path(), "calibrate", &["--pass-tolerance", "0", "--derisk-tolerance", "0", "--json"], 1);
    assert!(o.stdout.contains("\"state\":\"BLOCK\""), "{}", o.stdout);
    let o = expect(dir.path(), "score", &[], 1);
    assert!(o.stderr.contains("BLOCK"), "{}", o.stderr);
}

#[test]
fn a_time_token_or_a_label_read_in_a_feature_store_fails_certification() {
    let dir = copy_of_pristine();
    let stores = dir.path().join("stores");
    std::fs::create_dir(&stores).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/feature-stores");
    copy_dir(&src, &stores);
    // A block that reads a label object fails too, with its reason.
    let history = std::fs::read_to_string(stores.join("history.sql")).unwrap();
    let peeking = history.replace("FROM obs_asof o", "FROM obs_asof o LEFT JOIN labels_latest l USING (entity_id, t0)");
    assert_ne!(history, peeking);
    std::fs::write(stores.join("history.sql"), peeking).unwrap();
    let base = std::fs::read_to_string(stores.join("base.sql")).unwrap();
    let leaky = base.replace("AS hours_since_last", "AS hours_since_last, date_diff('second', g.t0, now()) AS leak");
    assert_ne!(base, leaky);
    std::fs::write(stores.join("base.sql"), leaky).unwrap();
    let o = expect(dir.path(), "certify", &["--stores", stores.to_str().unwrap(), "--rebaseline"], 1);
    assert!(o.stderr.contains("time token `now`"), "{}", o.stderr);
    assert!(o.stderr.contains("history.sql: label object `labels_latest`"), "{}", o.stderr);
    // A FAILED certificate blocks everything downstream.
    let o = expect(dir.path(), "embed", &[], 3);
    assert!(o.stderr.contains("FAILED"), "{}", o.stderr);
}

#[test]
fn a_held_lock_refuses_a_second_writer() {
    let dir = copy_of_pristine();
    let _held = t0_catalog::RootLock::acquire(&Root::new(dir.path())).unwrap();
    let o = expect(dir.path(), "audit", &[], 3);
    assert!(o.stderr.contains("lock held"), "{}", o.stderr);
}

#[test]
fn a_tampered_ledger_entry_is_named() {
    let dir = copy_of_pristine();
    sql(dir.path(), "UPDATE heal_ledger SET new_value = '1' WHERE seq = 3");
    let o = expect(dir.path(), "heal", &["verify-ledger", "--json"], 1);
    assert!(o.stdout.contains("\"first_broken\":3"), "{}", o.stdout);
}

#[test]
fn bad_usage_and_missing_upstream_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    expect(dir.path(), "acquire", &[], 2);
    expect(dir.path(), "acquire", &["--no-such-flag"], 2);
    let o = expect(dir.path(), "certify", &[], 3);
    assert!(o.stderr.contains("no audit run"), "{}", o.stderr);
    let o = expect(dir.path(), "score", &["--now", "yesterday"], 2);
    assert!(o.stderr.contains("--now"), "{}", o.stderr);
    // A configuration file the user names but that cannot be read is a usage error, named.
    for (stage, flag) in
        [("heal", "--rules"), ("certify", "--config"), ("certify", "--stores"), ("audit", "--contracts")]
    {
        let o = expect(dir.path(), stage, &[flag, "/no/such/file"], 2);
        assert!(o.stderr.contains("/no/such/file") && o.stderr.contains("cannot read"), "{stage}: {}", o.stderr);
    }
}

#[test]
fn a_killed_ingest_resumes_without_duplicating_rows() {
    let data = tempfile::tempdir().unwrap();
    let gen_args = ["generate", "--out", data.path().to_str().unwrap(), "--entities", "20000", "--media", "0"];
    expect(data.path(), "acquire", &gen_args, 0);
    let input = data.path().to_str().unwrap();
    let chunk = ["--input", input, "--chunk-rows", "20000"];

    let clean = tempfile::tempdir().unwrap();
    expect(clean.path(), "acquire", &chunk, 0);

    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("acquire"))
        .arg("--root")
        .arg(killed.path())
        .args(chunk)
        .env("T0CLIP_NOW", NOW)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("observations.csv: committed chunk 2 ") {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the ingest finished before it could be killed");

    let resumed = expect(killed.path(), "acquire", &[&chunk[..], &["--json"]].concat(), 0);
    let report: serde_json::Value = serde_json::from_str(resumed.stdout.trim()).unwrap();
    let obs = report["files"].as_array().unwrap().iter().find(|f| f["table"] == "observations").unwrap();
    assert!(obs["resumed_after_row"].as_u64().unwrap() >= 40_000, "{obs}");

    let hashes = |root: &Path| -> Vec<(String, u64)> {
        let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
        ["entities", "observations", "events", "interactions", "artifacts", "quarantine", "ingest_batches"]
            .iter()
            .map(|t| {
                let sql = match *t {
                    // Paths and ingest times differ between the two roots by construction.
                    "ingest_batches" => "SELECT batch_id, rows_read, rows_ingested, rows_unchanged, rows_quarantined FROM ingest_batches".to_string(),
                    "quarantine" => "SELECT batch_id, row_number, column_name, reason FROM quarantine".to_string(),
                    _ => format!("SELECT * FROM {t}"),
                };
                cat.content_hash(&sql, &[], &[]).unwrap()
            })
            .collect()
    };
    assert_eq!(hashes(killed.path()), hashes(clean.path()));
}

#[test]
fn a_heal_killed_before_commit_leaves_no_partial_change() {
    let killed = tempfile::tempdir().unwrap();
    expect(killed.path(), "acquire", &["--input", fixture().to_str().unwrap()], 0);
    expect(killed.path(), "audit", &[], 1);
    let clean = tempfile::tempdir().unwrap();
    copy_dir(killed.path(), clean.path());

    // Every rule has appended its versions inside the open transaction when heal pauses.
    let mut child = Command::new(bin("heal"))
        .arg("--root")
        .arg(killed.path())
        .env("T0CLIP_NOW", NOW)
        .env("T0CLIP_PAUSE_AT", "heal.commit")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut applied = 0;
    for line in stderr.lines() {
        let line = line.unwrap();
        applied += line.contains(" cells in ") as usize;
        if line.contains("paused at heal.commit") {
            break;
        }
    }
    assert!(applied > 0, "heal paused before applying any rule");
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());

    let state = |root: &Path| -> Vec<(String, u64)> {
        let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
        ["entities", "observations", "events", "heal_ledger", "heal_quarantine"]
            .iter()
            .map(|t| cat.content_hash(&format!("SELECT * FROM {t}"), &[], &[]).unwrap())
            .chain(std::iter::once(
                cat.content_hash("SELECT stage, run_id FROM manifests WHERE stage = 'heal'", &[], &[]).unwrap(),
            ))
            .collect()
    };
    // Nothing of the killed run is visible: the catalog is exactly the audited one.
    assert_eq!(state(killed.path()), state(clean.path()));
    // And the next heal does exactly what an uninterrupted one does.
    expect(killed.path(), "heal", &[], 0);
    expect(clean.path(), "heal", &[], 0);
    assert_eq!(state(killed.path()), state(clean.path()));
    expect(killed.path(), "heal", &["verify-ledger"], 0);
}

#[test]
fn labels_must_belong_to_the_certified_run_that_trains() {
    let dir = copy_of_pristine();
    // A new certification (same data, rebaselined) has no labels yet.
    expect(dir.path(), "certify", &["--rebaseline"], 0);
    expect(dir.path(), "embed", &[], 0);
    let o = expect(dir.path(), "train-suite", &[], 3);
    assert!(o.stderr.contains("certify labels"), "{}", o.stderr);
    expect(dir.path(), "certify", &["labels"], 0);
    expect(dir.path(), "train-suite", &[], 0);
}

#[test]
fn a_store_edited_after_certification_is_refused_downstream() {
    let dir = copy_of_pristine();
    let stores = dir.path().join("stores");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/feature-stores"), &stores);
    // Same SQL as the built-in stores: --rebaseline makes it a new run that records the directory.
    expect(dir.path(), "certify", &["--stores", stores.to_str().unwrap(), "--rebaseline"], 0);
    expect(dir.path(), "embed", &[], 0);
    // Reformatting does not move the view-definition hash; a semantic edit does.
    let text = std::fs::read_to_string(stores.join("text.sql")).unwrap();
    std::fs::write(stores.join("text.sql"), format!("-- a comment\n{text}")).unwrap();
    expect(dir.path(), "certify", &["labels"], 0);
    std::fs::write(stores.join("text.sql"), text.replace("a.text AS title", "upper(a.text) AS title")).unwrap();
    let o = expect(dir.path(), "train-suite", &[], 3);
    assert!(o.stderr.contains("view-definition drift: store text"), "{}", o.stderr);
}
