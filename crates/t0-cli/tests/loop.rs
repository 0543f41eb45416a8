//! The whole loop through the real binaries on the committed fixture, then the hash chain:
//! corrupt one byte (or one value) of each kind of stage output in a copy of the finished
//! root and check that the next stage refuses with exit 3, naming what changed.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

// The seeded generator of the clips example: the single source of randomness of these tests.
use t0_clips_gen::Rng;
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
        "verify" => env!("CARGO_BIN_EXE_verify"),
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
        .env_remove("T0CLIP_PROJECT")
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
    until_labels(root, &fixture());
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

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
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
fn find(root: &Path, prefix: &str, suffix: &str) -> String {
    let mut hits: Vec<String> = files_under(root)
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|rel| rel.starts_with(prefix) && rel.ends_with(suffix))
        .collect();
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
    // The exported acceptance gauge is 1 for the state calibrate decided and 0 for the others.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(find(root, "calib/", "report.json"))).unwrap())
            .unwrap();
    let state = report["state"].as_str().unwrap();
    let prom = std::fs::read_to_string(root.join("metrics/calibrate.prom")).unwrap();
    for st in ["PASS", "DERISK", "BLOCK"] {
        let line = format!("t0clip_acceptance_state{{state=\"{st}\"}} {}", u8::from(st == state));
        assert!(prom.lines().any(|l| l == line), "{line} missing:\n{prom}");
    }
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
fn fused_embeddings_corrupted_before_train() {
    file_case("lake/fused/concat/", "fused_manifest.parquet", "train-suite");
}

/// A root's embed outputs, by path, as bytes.
fn embed_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = ["lake/embeddings", "lake/fused"]
        .iter()
        .flat_map(|dir| files_under(&root.join(dir)))
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// acquire .. certify labels on `input`; the fixture's counter regressions fail the first
/// audit and heal repairs them.
fn until_labels(root: &Path, input: &Path) {
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

#[test]
fn embed_outputs_are_bit_identical_across_threads_and_cache_states() {
    let a = pristine();
    let want = embed_files(a);
    assert!(want.len() >= 7, "4 embeddings and 3 fused outputs: {:?}", want.iter().map(|w| &w.0).collect::<Vec<_>>());
    // A warm cache (the pristine run's, computed cold on 2 threads) less one entry, 1 thread.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    copy_dir(&a.join("cache/embed"), &cache);
    std::fs::remove_file(&files_under(&cache)[0]).unwrap();
    let root = dir.path().join("root");
    until_labels(&root, &fixture());
    let o = expect(&root, "embed", &["--threads", "1", "--cache", cache.to_str().unwrap(), "--json"], 0);
    let r: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let computed: u64 = r["outputs"].as_array().unwrap().iter().map(|o| o["computed"].as_u64().unwrap()).sum();
    assert_eq!(computed, 1, "one missing cache entry, one vector computed: {}", o.stdout);
    assert_eq!(embed_files(&root), want, "embed outputs differ between 2 threads cold and 1 thread warm");
}

#[test]
fn corrupt_media_is_quarantined_and_a_changed_media_store_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    copy_dir(&fixture(), &input);
    // An image that is not one, and a truncated WAV.
    std::fs::write(input.join("media/thumbs/clip0000000.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    let wav = std::fs::read(input.join("media/audio/clip0000001.wav")).unwrap();
    std::fs::write(input.join("media/audio/clip0000001.wav"), &wav[..30]).unwrap();
    let root = dir.path().join("root");
    until_labels(&root, &input);
    // A media store file changed after acquire hashed it: refused, naming the file.
    let files = files_under(&root.join("lake/media"));
    let victim =
        files.iter().find(|f| std::fs::read(f).unwrap().starts_with(b"\x89PNG\r\n\x1a\n")).unwrap_or(&files[0]).clone();
    let original = std::fs::read(&victim).unwrap();
    let mut bad = original.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&victim, &bad).unwrap();
    let o = expect(&root, "embed", &[], 3);
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(o.stderr.contains(&name), "{}", o.stderr);
    std::fs::write(&victim, &original).unwrap();
    // Undecodable media: quarantined with file and reason, the run goes on.
    let o = expect(&root, "embed", &["--json"], 0);
    let r: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let q = r["quarantined"].as_array().unwrap();
    let files: Vec<&str> = q.iter().map(|q| q["file"].as_str().unwrap()).collect();
    assert!(files.iter().any(|f| f.contains("clip0000000.png")), "{}", o.stdout);
    assert!(files.iter().any(|f| f.contains("clip0000001.wav")), "{}", o.stdout);
    assert!(q.iter().all(|q| !q["reason"].as_str().unwrap().is_empty()));
    expect(&root, "train-suite", &[], 0);
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips/feature-stores");
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
fn store_sql_runs_in_a_sandbox_and_anything_else_is_refused_naming_file_and_line() {
    let dir = copy_of_pristine();
    let outside = tempfile::tempdir().unwrap();
    let stores = outside.path().join("stores");
    copy_dir(&repo("projects/clips/feature-stores"), &stores);
    let base = std::fs::read_to_string(stores.join("base.sql")).unwrap();
    let line = base.lines().count() + 1;
    let copied = outside.path().join("copied.csv");
    let copy = format!("COPY (SELECT * FROM heal_ledger) TO '{}';", copied.display());
    for (statement, why) in [
        ("DROP TABLE heal_ledger;", "only `CREATE"),
        ("UPDATE observations SET views = 0;", "only `CREATE"),
        ("ATTACH 'other.duckdb' AS other;", "only `CREATE"),
        (copy.as_str(), "only `CREATE"),
        ("CREATE TABLE kept AS SELECT * FROM obs_asof;", "only `CREATE"),
        ("CREATE TEMP VIEW peek AS SELECT * FROM observations;", "does not exist"),
        ("CREATE TEMP VIEW peek AS SELECT * FROM heal_ledger;", "does not exist"),
        ("CREATE TEMP VIEW peek AS SELECT * FROM catalog.main.entities;", "outside the sandbox"),
        ("CREATE TEMP VIEW peek AS SELECT * FROM read_csv('/etc/passwd');", "read_csv"),
        ("CREATE TEMP VIEW peek AS SELECT estimated_size FROM duckdb_tables();", "duckdb_tables"),
        ("CREATE OR REPLACE TEMP VIEW t0_grid AS SELECT entity_id, t0 FROM obs_asof;", "input"),
    ] {
        std::fs::write(stores.join("base.sql"), format!("{base}{statement}\n")).unwrap();
        let o = expect(dir.path(), "certify", &["--stores", stores.to_str().unwrap(), "--rebaseline"], 2);
        assert!(o.stderr.contains(&format!("base.sql:{line}")) && o.stderr.contains(why), "{statement}: {}", o.stderr);
    }
    assert!(!copied.exists());
    // A store file must stay inside the stores directory, and the as-of views are not a
    // project's to replace.
    std::fs::write(stores.join("base.sql"), &base).unwrap();
    std::fs::write(outside.path().join("outside.sql"), "CREATE TEMP VIEW surface_base AS SELECT * FROM t0_grid;")
        .unwrap();
    let cfg = outside.path().join("certify.yaml");
    let shipped = std::fs::read_to_string(repo("projects/clips/certify.yaml")).unwrap();
    std::fs::write(&cfg, shipped.replace("files: [asof.sql, base.sql]", "files: [asof.sql, ../outside.sql]")).unwrap();
    let o =
        expect(dir.path(), "certify", &["--config", cfg.to_str().unwrap(), "--stores", stores.to_str().unwrap()], 2);
    assert!(o.stderr.contains("../outside.sql") && o.stderr.contains("inside the stores directory"), "{}", o.stderr);
    std::fs::write(stores.join("asof.sql"), "CREATE TEMP VIEW obs_asof AS SELECT * FROM observations;").unwrap();
    let o = expect(dir.path(), "certify", &["--stores", stores.to_str().unwrap(), "--rebaseline"], 2);
    assert!(o.stderr.contains("cannot replace them"), "{}", o.stderr);
    // Nothing the refused runs tried reached the root.
    expect(dir.path(), "verify", &[], 0);
}

/// `certify attack --json` on `root` with extra arguments; (exit code, report).
fn attack(root: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let o = run(root, "certify", &[args, &["attack", "--json", "--sample", "200"]].concat());
    assert!([0, 1].contains(&o.code), "attack exited {}: {}", o.code, o.stderr);
    eprintln!("{}", o.stderr.trim());
    (o.code, serde_json::from_str(o.stdout.trim()).unwrap())
}

/// The stores of a report that leak, and a check that every store compared rows and every
/// canonical table was attacked.
fn leaking(v: &serde_json::Value, tables: &[&str]) -> Vec<String> {
    for s in v["stores"].as_array().unwrap() {
        assert!(s["compared"].as_u64().unwrap() > 0, "{s}");
    }
    for t in tables {
        assert!(v["injected"][t].as_u64().unwrap() > 0, "nothing injected into {t}: {v}");
    }
    v["leaking"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// A certified root of every project under `projects/`, from its fixture `fixtures/<name>`
/// (the clips and gapminder roots the other tests built are reused).
fn certified_project_roots() -> Vec<(String, tempfile::TempDir)> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(repo("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| repo(&format!("projects/{n}/project.yaml")).is_file())
        .collect();
    names.sort();
    for name in names {
        let dir = tempfile::tempdir().unwrap();
        match name.as_str() {
            "clips" => copy_dir(pristine(), dir.path()),
            "gapminder" => copy_dir(gapminder_root(), dir.path()),
            _ => {
                let input = repo(&format!("fixtures/{name}"));
                assert!(input.is_dir(), "project {name} ships no fixtures/{name} for the red team");
                let p = repo(&format!("projects/{name}"));
                let p = ["--project", p.to_str().unwrap()];
                expect(dir.path(), "acquire", &[&p[..], &["--input", input.to_str().unwrap()]].concat(), 0);
                assert!([0, 1].contains(&run(dir.path(), "audit", &p).code));
                assert!([0, 99].contains(&run(dir.path(), "heal", &p).code));
                expect(dir.path(), "audit", &p, 0);
                expect(dir.path(), "certify", &p, 0);
            }
        }
        out.push((name, dir));
    }
    out
}

#[test]
fn certify_attack_finds_no_leak_in_the_shipped_projects_and_names_a_leaky_store() {
    let all = ["observations", "entities", "events", "artifacts", "interactions"];
    let roots = certified_project_roots();
    assert!(roots.len() >= 2, "{:?}", roots.iter().map(|r| &r.0).collect::<Vec<_>>());
    for (name, dir) in &roots {
        let p = repo(&format!("projects/{name}"));
        let (code, v) = attack(dir.path(), &["--project", p.to_str().unwrap()]);
        assert_eq!((code, leaking(&v, &all[..3])), (0, Vec::<String>::new()), "{name}: {v}");
        // The attack writes nothing under the root, and says the same twice.
        expect(dir.path(), "verify", &[], 0);
        if name == "clips" {
            assert!(
                v["injected"]["artifacts"].as_u64().unwrap() > 0 && v["injected"]["interactions"].as_u64().unwrap() > 0
            );
            let (_, again) = attack(dir.path(), &["--project", p.to_str().unwrap()]);
            assert_eq!(v, again, "the attack is deterministic");
        }
    }
    // A store that reads snapshots by observation time only, whenever they became known.
    let dir = &roots.iter().find(|(n, _)| n == "clips").unwrap().1;
    let stores = dir.path().join("leaky");
    copy_dir(&repo("projects/clips/feature-stores"), &stores);
    let base = std::fs::read_to_string(stores.join("base.sql")).unwrap();
    let leaky = "CREATE OR REPLACE TEMP VIEW leaky_obs AS
        SELECT g.entity_id, g.t0, o.* EXCLUDE (entity_id, known_from, known_to)
        FROM t0_grid g JOIN observations_history o ON o.entity_id = g.entity_id AND o.observed_at <= g.t0 AND o.known_to IS NULL;\n";
    std::fs::write(stores.join("base.sql"), format!("{leaky}{}", base.replace("FROM obs_asof", "FROM leaky_obs")))
        .unwrap();
    let (code, v) = attack(dir.path(), &["--stores", stores.to_str().unwrap()]);
    assert_eq!((code, leaking(&v, &all)), (1, vec!["base".to_string()]), "{v}");
    let base = v["stores"].as_array().unwrap().iter().find(|s| s["against"] == "base").unwrap();
    assert!(base["columns"]["views_t0"].as_u64().unwrap() > 0, "{base}");
}

#[test]
fn a_tampered_previous_surface_stops_the_replay_check() {
    let dir = copy_of_pristine();
    let rel = find(dir.path(), "lake/surfaces/history/", "surface.parquet");
    flip_byte(&dir.path().join(&rel));
    // A new certify run (a rebaseline) compares with the previous surfaces: exit 3 naming it.
    let o = expect(dir.path(), "certify", &["--rebaseline"], 3);
    assert!(o.stderr.contains(&rel), "{}", o.stderr);
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

fn ledger_size(root: &Path) -> i64 {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    cat.conn().query_row("SELECT max(seq) FROM heal_ledger", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_ledger_cut_short_or_rehashed_is_named_and_refused_downstream() {
    let intact = expect(pristine(), "heal", &["verify-ledger"], 0);
    assert!(intact.stderr.contains("anchored by 1 heal runs"), "{}", intact.stderr);
    let last = ledger_size(pristine());
    let heal_run = find(pristine(), "manifests/heal/", ".json")
        .trim_start_matches("manifests/heal/")
        .trim_end_matches(".json")
        .to_string();
    // The newest entry deleted: the chain still links, the run's anchor does not.
    let dir = copy_of_pristine();
    sql(dir.path(), &format!("DELETE FROM heal_ledger WHERE seq = {last}"));
    let o = expect(dir.path(), "heal", &["verify-ledger"], 1);
    assert!(
        o.stderr.contains(&heal_run)
            && o.stderr.contains(&format!("seq {last}"))
            && o.stderr.contains("entries missing"),
        "{}",
        o.stderr
    );
    let o = expect(dir.path(), "audit", &[], 3);
    assert!(o.stderr.contains("heal_ledger"), "{}", o.stderr);
    // Every entry deleted: named, and nothing downstream proceeds.
    let dir = copy_of_pristine();
    sql(dir.path(), "DELETE FROM heal_ledger");
    let o = expect(dir.path(), "heal", &["verify-ledger"], 1);
    assert!(o.stderr.contains(&heal_run) && o.stderr.contains(&format!("all {last} entries")), "{}", o.stderr);
    expect(dir.path(), "audit", &[], 3);
    let o = expect(dir.path(), "certify", &[], 3);
    assert!(o.stderr.contains("heal_ledger"), "{}", o.stderr);
    expect(dir.path(), "certify", &["labels"], 3);
    // Two entries swapped: the chain breaks at the first.
    let dir = copy_of_pristine();
    sql(dir.path(), "UPDATE heal_ledger SET seq = CASE seq WHEN 2 THEN 5 WHEN 5 THEN 2 END WHERE seq IN (2, 5)");
    let o = expect(dir.path(), "heal", &["verify-ledger", "--json"], 1);
    assert!(o.stdout.contains("\"first_broken\":2"), "{}", o.stdout);
    // An entry edited and the chain re-hashed from it: every link verifies, the recorded head
    // and the run's ledger rows do not.
    let dir = copy_of_pristine();
    {
        let cat = t0_catalog::Catalog::open(&Root::new(dir.path())).unwrap();
        let c = cat.conn();
        let mut st = c
            .prepare(
                "SELECT seq, run_id, table_name, row_key, column_name, old_value, new_value, rule_id, rule_hash, finding,
                        strftime(patched_at, '%Y-%m-%dT%H:%M:%S.%fZ'), prev_hash FROM heal_ledger ORDER BY seq",
            )
            .unwrap();
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
            String,
            String,
        );
        let rows: Vec<Row> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut prev = rows[2].11.clone();
        for (seq, run, table, key, col, old, new, rule, rule_hash, finding, at, _) in rows.into_iter().skip(2) {
            let new = if seq == 3 { Some("1".to_string()) } else { new };
            let p = t0_heal::Patch { table, row_key: key, column: col, old, new: new.clone() };
            let h = t0_heal::apply::entry_hash(seq, &run, &p, &rule, &rule_hash, &finding, &at, &prev);
            c.execute(
                "UPDATE heal_ledger SET new_value = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                t0_catalog::duckdb::params![new, prev, h, seq],
            )
            .unwrap();
            prev = h;
        }
    }
    let o = expect(dir.path(), "heal", &["verify-ledger"], 1);
    assert!(o.stderr.contains(&heal_run) && o.stderr.contains("anchor differs"), "{}", o.stderr);
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
                cat.content_hash(&sql, &[]).unwrap()
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
            .map(|t| cat.content_hash(&format!("SELECT * FROM {t}"), &[]).unwrap())
            .chain(std::iter::once(
                cat.content_hash("SELECT stage, run_id FROM manifests WHERE stage = 'heal'", &[]).unwrap(),
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
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips/feature-stores"), &stores);
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

// --- projects: the domain is data ------------------------------------------------------------

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// A copy of a shipped project, with `edit(file name, text)` applied to each file.
fn project_copy(name: &str, edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
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
fn gapminder_loop(root: &Path, project: &Path) -> serde_json::Value {
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

fn gapminder_root() -> &'static Path {
    static ROOT: OnceLock<(tempfile::TempDir, serde_json::Value)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let v = gapminder_loop(dir.path(), &repo("projects/gapminder"));
        (dir, v)
    })
    .0
    .path()
}

#[test]
fn the_gapminder_panel_runs_to_a_trained_model_and_calibrated_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let v = gapminder_loop(dir.path(), &repo("projects/gapminder"));
    let a = &v["acquire"];
    // 1,704 panel rows, every one ingested, 142 countries registered; no column dropped unsaid.
    assert_eq!(a["rows_read"], 1704, "{a}");
    assert_eq!(a["rows_ingested"], 1704, "{a}");
    assert_eq!(a["files"][0]["entities_registered"], 142, "{a}");
    assert_eq!(a["rows_quarantined"], 0, "{a}");
    for f in a["files"].as_array().unwrap() {
        assert_eq!(f["unread_columns"], serde_json::json!([]), "{f}");
    }
    let m = &v["train"]["metrics"];
    eprintln!(
        "gapminder leaderboard: target {} on {} features, test RMSE {:.4} (baseline {:.4}), coverage {:.3}, rows {}/{}/{}; calibrate {}",
        v["train"]["target"],
        v["train"]["features"],
        m["test_rmse"].as_f64().unwrap(),
        m["baseline_test_rmse"].as_f64().unwrap(),
        m["test_coverage"].as_f64().unwrap(),
        m["rows_train"],
        m["rows_valid"],
        m["rows_test"],
        v["calibrate"]["state"]
    );
    // The as-of features beat the mean of the training block by a wide margin.
    assert!(m["test_rmse"].as_f64().unwrap() < 0.5 * m["baseline_test_rmse"].as_f64().unwrap(), "{m}");
    // Categorical continent levels became features.
    let model = std::fs::read_to_string(dir.path().join(find(dir.path(), "runs/", "model.json"))).unwrap();
    assert!(model.contains("continent=Europe"), "continent levels are features");
    // No label is a feature column.
    let m: serde_json::Value = serde_json::from_str(&model).unwrap();
    assert_eq!(m["target"], "y_log_gdp");
    let cols: Vec<&str> = m["columns"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert!(cols.len() > 5 && cols.iter().all(|c| !c.starts_with("y_")), "{cols:?}");
    // Same inputs, same model: a second root gives identical model bytes.
    let again = tempfile::tempdir().unwrap();
    gapminder_loop(again.path(), &repo("projects/gapminder"));
    let model2 = std::fs::read_to_string(again.path().join(find(again.path(), "runs/", "model.json"))).unwrap();
    assert_eq!(model, model2);
}

#[test]
fn a_tampered_panel_surface_or_label_is_refused() {
    let p = repo("projects/gapminder");
    for (prefix, suffix) in [("lake/surfaces/panel/", "surface.parquet"), ("lake/labels/", "labels.parquet")] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(gapminder_root(), dir.path());
        let rel = find(dir.path(), prefix, suffix);
        flip_byte(&dir.path().join(&rel));
        // A new train run (another target) must read the surfaces and labels again.
        let o = expect(dir.path(), "train-suite", &["--project", p.to_str().unwrap(), "--target", "y_life_exp"], 3);
        assert!(o.stderr.contains(&rel), "{}", o.stderr);
    }
}

#[test]
fn a_column_no_project_reads_is_reported_and_a_new_measure_is_an_explicit_schema_change() {
    let without_pop = project_copy("gapminder", |name, t| match name {
        "project.yaml" => {
            t.replace("  - {name: pop, type: count, required: true}\n", "").replace("pop_last: log1p, ", "")
        }
        "panel.sql" => t
            .replace("arg_max(pop, observed_at)", "NULL::BIGINT")
            .replace("arg_max(o.pop, o.observed_at)", "NULL::BIGINT"),
        "observations.yaml" => t.replace(", pop: BIGINT", "").replace(", pop, gdp_per_cap]", ", gdp_per_cap]"),
        _ => t,
    });
    let root = tempfile::tempdir().unwrap();
    let input = repo("fixtures/gapminder");
    let o = expect(
        root.path(),
        "acquire",
        &["--project", without_pop.path().to_str().unwrap(), "--input", input.to_str().unwrap(), "--json"],
        0,
    );
    assert!(o.stderr.contains("pop not ingested") || o.stderr.contains("column(s) pop not ingested"), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let panel = v["files"].as_array().unwrap().iter().find(|f| f["source"] == "panel").unwrap().clone();
    assert_eq!(panel["unread_columns"], serde_json::json!(["pop"]), "{panel}");
    // The shipped project declares pop: on this root that is a schema change, refused unless asked.
    let full = repo("projects/gapminder");
    let args = ["--project", full.to_str().unwrap(), "--input", input.to_str().unwrap()];
    for stage in ["audit", "heal", "certify", "embed", "train-suite", "score", "calibrate"] {
        let o = expect(root.path(), stage, &args[..2], 2);
        assert!(o.stderr.contains("pop") && o.stderr.contains("--evolve-schema"), "{stage}: {}", o.stderr);
    }
    let o = expect(root.path(), "acquire", &args, 2);
    assert!(o.stderr.contains("project.yaml") && o.stderr.contains("--evolve-schema"), "{}", o.stderr);
    let o = expect(root.path(), "acquire", &[&args[..], &["--evolve-schema"]].concat(), 99);
    assert!(o.stderr.contains("ingested before"), "{}", o.stderr);
    let cat = t0_catalog::Catalog::open(&Root::new(root.path())).unwrap();
    let changes: Vec<String> = {
        let mut st = cat.conn().prepare("SELECT change FROM schema_changes ORDER BY seq").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(changes, ["declare", "add pop"]);
}

#[test]
fn a_required_measure_missing_from_a_file_is_refused_naming_it() {
    let input = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("fixtures/gapminder/gapminder.csv")).unwrap();
    let cut: String = text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect();
    std::fs::write(input.path().join("gapminder.csv"), cut).unwrap();
    let root = tempfile::tempdir().unwrap();
    let p = repo("projects/gapminder");
    let o = expect(
        root.path(),
        "acquire",
        &["--project", p.to_str().unwrap(), "--input", input.path().to_str().unwrap()],
        4,
    );
    assert!(o.stderr.contains("gdpPercap") && o.stderr.contains("gapminder.csv"), "{}", o.stderr);
}

#[test]
fn malformed_project_files_name_file_line_and_problem_before_any_data_is_touched() {
    let input = repo("fixtures/gapminder");
    let cases: [(&str, &str, &str, &str); 4] = [
        ("type: count", "type: tally", "line 8", "unknown variant `tally`"),
        ("measure: gdp_per_cap", "measure: gdp", "line 13", "does not declare"),
        ("label: y_life_exp", "label: y_life", "line 16", "not declared"),
        ("surfaces: [panel]", "surfaces: [panels]", "line 19", "not a store"),
    ];
    for (from, to, line, what) in cases {
        let p = project_copy("gapminder", |name, t| if name == "project.yaml" { t.replacen(from, to, 1) } else { t });
        let root = tempfile::tempdir().unwrap();
        let o = expect(
            root.path(),
            "acquire",
            &["--project", p.path().to_str().unwrap(), "--input", input.to_str().unwrap()],
            2,
        );
        assert!(
            o.stderr.contains("project.yaml") && o.stderr.contains(line) && o.stderr.contains(what),
            "{}",
            o.stderr
        );
        assert!(!root.path().join("catalog.duckdb").exists(), "nothing may be written");
    }
    // Feature declarations are checked against the certified surfaces: a missing column is a
    // usage error naming the line, a leakage column selected stops training (1).
    for (from, to, code, what) in [
        ("exclude: []", "exclude: [gdp_latest]", 2, "gdp_latest"),
        ("transforms: {pop_last: log1p", "transforms: {pop_size: log1p", 2, "pop_size"),
        ("leakage: []", "leakage: [gdp_last]", 1, "gdp_last"),
    ] {
        let p = project_copy("gapminder", |name, t| if name == "project.yaml" { t.replace(from, to) } else { t });
        let dir = tempfile::tempdir().unwrap();
        copy_dir(gapminder_root(), dir.path());
        let o = expect(
            dir.path(),
            "train-suite",
            &["--project", p.path().to_str().unwrap(), "--target", "y_life_exp"],
            code,
        );
        assert!(o.stderr.contains(what), "{}", o.stderr);
        if code == 2 {
            assert!(o.stderr.contains("project.yaml: line"), "{}", o.stderr);
        }
    }
}

#[test]
fn a_generated_project_with_random_measures_runs_with_no_code_change() {
    let mut rng = Rng::new(20_261_124);
    let types = ["count", "integer", "float", "boolean", "categorical"];
    let word = |rng: &mut Rng| -> String { (0..6).map(|_| (b'a' + rng.below(26) as u8) as char).collect::<String>() };
    // Five measures with random names and types; the first is a float that drives the target.
    let mut measures: Vec<(String, &str)> = vec![(format!("m_{}", word(&mut rng)), "float")];
    for i in 0..4 {
        measures.push((format!("m{i}_{}", word(&mut rng)), types[rng.below(types.len() as u64) as usize]));
    }
    let dir = tempfile::tempdir().unwrap();
    let (proj, data) = (dir.path().join("project"), dir.path().join("data"));
    std::fs::create_dir_all(proj.join("feature-stores")).unwrap();
    std::fs::create_dir_all(proj.join("contracts")).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let target = &measures[0].0;
    let mut y = String::from("name: generated\nmeasures:\n");
    for (m, t) in &measures {
        y.push_str(&format!("  - {{name: {m}, type: {t}}}\n"));
    }
    y.push_str(&format!(
        "labels:\n  - {{name: y_next, kind: value, measure: {target}, horizon: 2 days}}\n  - {{name: y_high, kind: threshold, label: y_next, at_least: 10}}\n  - {{name: y_sum, kind: flow, measure: {target}, horizon: 3 days, agg: sum}}\nfeatures:\n  surfaces: [last]\n  target: y_next\n"
    ));
    std::fs::write(proj.join("project.yaml"), y).unwrap();
    std::fs::write(
        proj.join("sources.yaml"),
        "sources:\n  - {name: things, table: entities, glob: things.csv, availability: observed_time}\n  - {name: obs, table: observations, glob: obs.csv, availability: observed_time + 1h}\n",
    )
    .unwrap();
    std::fs::write(
        proj.join("contracts/observations.yaml"),
        "table: observations\nchecks:\n  - type: not_null\n    columns: [entity_id, observed_at]\n",
    )
    .unwrap();
    std::fs::write(proj.join("certify.yaml"), "t0: {mode: at_observations, offset_hours: 2, max_per_entity: 20}\nstores:\n  - {entrypoint: last, files: [asof.sql, last.sql], strict: true}\n").unwrap();
    let cols: Vec<String> = measures.iter().map(|(m, _)| format!("arg_max({m}, observed_at) AS {m}_last")).collect();
    std::fs::write(
        proj.join("feature-stores/last.sql"),
        format!(
            "CREATE OR REPLACE TEMP VIEW last_values AS SELECT entity_id, t0, count(*) AS n_obs, {} FROM obs_asof GROUP BY entity_id, t0;\nCREATE OR REPLACE TEMP VIEW surface_last AS SELECT g.entity_id, g.t0, coalesce(l.n_obs, 0) AS n_obs, l.* EXCLUDE (entity_id, t0, n_obs) FROM t0_grid g LEFT JOIN last_values l ON l.entity_id = g.entity_id AND l.t0 = g.t0;\n",
            cols.join(", ")
        ),
    )
    .unwrap();
    // 40 things observed daily for 12 days; the target walks, the rest is noise of its type.
    let mut things = String::from("entity_id,kind,created_at\n");
    let mut obs =
        format!("entity_id,observed_at,{}\n", measures.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(","));
    for e in 0..40 {
        things.push_str(&format!("t{e:02},thing,2026-01-01T00:00:00Z\n"));
        let mut level = 5.0 + (e % 10) as f64;
        for d in 0..12 {
            level += (rng.below(200) as f64 - 90.0) / 100.0;
            let vals: Vec<String> = measures
                .iter()
                .enumerate()
                .map(|(i, (_, t))| match (i, *t) {
                    (0, _) => format!("{level:.3}"),
                    (_, "count") => rng.below(1000).to_string(),
                    (_, "integer") => (rng.below(1000) as i64 - 500).to_string(),
                    (_, "float") => format!("{:.2}", rng.below(10_000) as f64 / 100.0),
                    (_, "boolean") => ["true", "false"][rng.below(2) as usize].to_string(),
                    _ => ["red", "green", "blue"][rng.below(3) as usize].to_string(),
                })
                .collect();
            obs.push_str(&format!("t{e:02},2026-01-{:02}T00:00:00Z,{}\n", d + 2, vals.join(",")));
        }
    }
    std::fs::write(data.join("things.csv"), things).unwrap();
    std::fs::write(data.join("obs.csv"), obs).unwrap();
    let root = dir.path().join("root");
    let p = ["--project", proj.to_str().unwrap()];
    let acq = expect(&root, "acquire", &[&p[..], &["--input", data.to_str().unwrap(), "--json"]].concat(), 0);
    let v: serde_json::Value = serde_json::from_str(acq.stdout.trim()).unwrap();
    assert_eq!(v["rows_ingested"], 40 + 480, "{v}");
    expect(&root, "audit", &p, 0);
    expect(&root, "heal", &p, 99);
    expect(&root, "certify", &p, 0);
    let labels = expect(&root, "certify", &[&p[..], &["labels", "--json"]].concat(), 0);
    let lv: serde_json::Value = serde_json::from_str(labels.stdout.trim()).unwrap();
    assert_eq!(lv["labels"], serde_json::json!(["y_next", "y_high", "y_sum"]), "{lv}");
    let train = expect(&root, "train-suite", &[&p[..], &["--json"]].concat(), 0);
    let tv: serde_json::Value = serde_json::from_str(train.stdout.trim()).unwrap();
    // n_obs and one feature per measure (categoricals and booleans expand to their levels).
    assert!(tv["features"].as_u64().unwrap() as usize > measures.len(), "{tv}");
    let model = std::fs::read_to_string(root.join(find(&root, "runs/", "model.json"))).unwrap();
    for (m, _) in &measures {
        assert!(model.contains(&format!("{m}_last")), "{m} is a feature");
    }
    // Measures of every type are perturbed by the red team; nothing reaches an earlier T0.
    let (code, v) = attack(&root, &p);
    assert_eq!((code, leaking(&v, &["observations", "entities", "events"])), (0, Vec::<String>::new()), "{v}");
}

#[test]
fn acquire_infer_writes_a_project_that_runs_to_a_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("panel");
    let csv = repo("fixtures/gapminder/gapminder.csv");
    let o =
        expect(dir.path(), "acquire", &["infer", csv.to_str().unwrap(), "--out", proj.to_str().unwrap(), "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let f = &v["files"][0];
    assert_eq!((f["entity_column"].as_str(), f["time_column"].as_str()), (Some("country"), Some("year")), "{f}");
    assert_eq!(f["key_unique"], true);
    let project = std::fs::read_to_string(proj.join("project.yaml")).unwrap();
    for m in ["{name: life_exp, type: float, required: true}", "{name: pop, type: count, required: true}"] {
        assert!(project.contains(m), "{project}");
    }
    let sources = std::fs::read_to_string(proj.join("sources.yaml")).unwrap();
    assert!(sources.contains("attributes: [continent]") && sources.contains("timestamp_format: \"%Y\""), "{sources}");
    // A second infer never overwrites.
    expect(dir.path(), "acquire", &["infer", csv.to_str().unwrap(), "--out", proj.to_str().unwrap()], 2);
    let root = dir.path().join("root");
    let p = ["--project", proj.to_str().unwrap()];
    let input = repo("fixtures/gapminder");
    expect(&root, "acquire", &[&p[..], &["--input", input.to_str().unwrap()]].concat(), 0);
    expect(&root, "audit", &p, 0);
    expect(&root, "heal", &p, 99);
    expect(&root, "certify", &p, 0);
    expect(&root, "certify", &[&p[..], &["labels"]].concat(), 0);
    expect(&root, "train-suite", &p, 0);
}

#[test]
fn an_item_by_month_panel_goes_from_infer_to_a_trained_model() {
    // Items with new and cumulative counts per month ("2024-01"), one file, no entity list.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(7);
    let mut csv = String::from("item_code,month,new_cases,cumulative,region\n");
    for item in 0..30 {
        let mut total = 0u64;
        for m in 0..24 {
            let new = (item % 7) as u64 * 3 + rng.below(10) + m as u64 / 2;
            total += new;
            csv.push_str(&format!(
                "I{item:03},{}-{:02},{new},{total},{}\n",
                2023 + m / 12,
                m % 12 + 1,
                ["north", "south"][item % 2]
            ));
        }
    }
    std::fs::write(data.join("monthly.csv"), csv).unwrap();
    let proj = dir.path().join("monthly");
    let o = expect(
        dir.path(),
        "acquire",
        &["infer", data.join("monthly.csv").to_str().unwrap(), "--out", proj.to_str().unwrap(), "--json"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let f = &v["files"][0];
    assert_eq!((f["entity_column"].as_str(), f["time_column"].as_str()), (Some("item_code"), Some("month")), "{f}");
    let sources = std::fs::read_to_string(proj.join("sources.yaml")).unwrap();
    assert!(sources.contains("timestamp_format: \"%Y-%m\"") && sources.contains("attributes: [region]"), "{sources}");
    let root = dir.path().join("root");
    let p = ["--project", proj.to_str().unwrap()];
    let acq = expect(&root, "acquire", &[&p[..], &["--input", data.to_str().unwrap(), "--json"]].concat(), 0);
    let a: serde_json::Value = serde_json::from_str(acq.stdout.trim()).unwrap();
    assert_eq!(
        (a["rows_ingested"].as_u64(), a["files"][0]["entities_registered"].as_u64()),
        (Some(720), Some(30)),
        "{a}"
    );
    expect(&root, "audit", &p, 0);
    expect(&root, "heal", &p, 99);
    expect(&root, "certify", &p, 0);
    expect(&root, "certify", &[&p[..], &["labels"]].concat(), 0);
    // A year-long horizon over 12 matured monthly T0s leaves no honest training block.
    let o = expect(&root, "train-suite", &p, 1);
    assert!(o.stderr.contains("empty after the embargo"), "{}", o.stderr);
    // A random split on request trains, with a warning.
    let mut yaml = std::fs::read_to_string(proj.join("project.yaml")).unwrap();
    yaml.push_str("\ntrain:\n  split: random\n");
    std::fs::write(proj.join("project.yaml"), yaml).unwrap();
    let o = expect(&root, "train-suite", &p, 0);
    assert!(o.stderr.contains("random split"), "{}", o.stderr);
}

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
    assert_eq!(verify(pristine(), &[]), (0, vec![]));
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
    let root = pristine();
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
    let replay = |root: &Path| {
        Command::new(bin("train-suite"))
            .args(["--root", root.to_str().unwrap(), "reproduce", &run_id, "--json"])
            .env("T0CLIP_NOW", NOW)
            .env("RAYON_NUM_THREADS", "1")
            .env_remove("T0CLIP_ROOT")
            .env_remove("T0CLIP_PROJECT")
            .output()
            .unwrap()
    };
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
