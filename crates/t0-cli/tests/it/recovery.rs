//! Locks, the heal ledger, kills mid-stage and stale upstreams: the root stays consistent.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use t0_core::Root;

use crate::support::*;

#[test]
fn a_held_lock_refuses_a_second_writer() {
    let dir = copy_of_pristine();
    let _held = t0_catalog::RootLock::acquire(&Root::new(dir.path())).unwrap();
    let o = expect(dir.path(), "audit", &[], 3);
    assert!(o.stderr.contains("lock held"), "{}", o.stderr);
    // With --lock-wait it waits, then still refuses; once the holder is done it goes on.
    let o = expect(dir.path(), "audit", &["--lock-wait", "0.5"], 3);
    assert!(o.stderr.contains("after waiting"), "{}", o.stderr);
    expect(dir.path(), "audit", &["--lock-wait", "-1"], 2);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(_held);
    });
    // The pristine root was audited already: the waiting run gets the lock and has nothing new.
    expect(dir.path(), "audit", &["--lock-wait", "60"], 99);
    releaser.join().unwrap();
}

#[test]
fn a_tampered_ledger_entry_is_named() {
    let dir = copy_of_pristine();
    sql(dir.path(), "UPDATE heal_ledger SET new_value = '1' WHERE seq = 3");
    let o = expect(dir.path(), "heal", &["verify-ledger", "--json"], 1);
    assert!(o.stdout.contains("\"first_broken\":3"), "{}", o.stdout);
}

#[test]
fn a_ledger_cut_short_or_rehashed_is_named_and_refused_downstream() {
    // On a copy: a stage binary on the shared root collides with others on DuckDB's lock.
    let clean = copy_of_pristine();
    let intact = expect(clean.path(), "heal", &["verify-ledger"], 0);
    assert!(intact.stderr.contains("anchored by 1 heal runs"), "{}", intact.stderr);
    let last = ledger_size(clean.path());
    let heal_run = find(clean.path(), "manifests/heal/", ".json")
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
    // And the manifest is byte for byte an uninterrupted run's (issue 30).
    let manifest = |root: &Path| std::fs::read(root.join(find(root, "manifests/acquire/", ".json"))).unwrap();
    assert!(manifest(killed.path()) == manifest(clean.path()), "a resumed acquire's manifest differs");
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
