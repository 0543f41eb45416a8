//! Entity buckets (issue 31): the ingest loop run on N buckets and committed joins to what one
//! whole root holds, for any N and any order the buckets run in; `commit` fails closed on a
//! missing, stale or tampered bucket; buckets of one stage run at once; a killed bucket run
//! re-runs to the same commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::support::{NOW, bin, expect, find, fixture, flip_byte, run};

/// (name -> (hash, rows)) of outputs, from a manifest's or a commit's list.
type Hashes = BTreeMap<String, (String, Option<u64>)>;

fn hashes(list: &serde_json::Value) -> Hashes {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|o| o["content_hash"].is_string())
        .map(|o| {
            (o["name"].as_str().unwrap().to_string(), (o["content_hash"].as_str().unwrap().into(), o["rows"].as_u64()))
        })
        .collect()
}

fn latest_manifest(root: &Path, stage: &str) -> serde_json::Value {
    let root = t0_core::Root::new(root);
    let cat = t0_catalog::Catalog::open_read_only(&root).unwrap();
    let stage = stage.parse().unwrap();
    serde_json::to_value(t0_manifest::load(&root, &cat, stage, None).unwrap().manifest).unwrap()
}

fn bucket(k: u32, n: u32) -> String {
    format!("{k}/{n}")
}

/// The ingest loop and certify on one whole root: the acquire manifest's outputs, the final
/// audit's canonical inputs (what it passed), and the certified surfaces.
fn whole() -> &'static (Hashes, Hashes, Hashes) {
    static WHOLE: OnceLock<(Hashes, Hashes, Hashes)> = OnceLock::new();
    // (The certified surfaces include the labels: both are rows per grid (entity, T0).)
    WHOLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        expect(root, "acquire", &["--input", fixture().to_str().unwrap()], 0);
        let acquired = hashes(&latest_manifest(root, "acquire")["outputs"]);
        expect(root, "audit", &[], 1);
        expect(root, "heal", &[], 0);
        expect(root, "audit", &[], 0);
        let audit = latest_manifest(root, "audit");
        let passed = hashes(&audit["inputs"]).into_iter().filter(|(k, _)| k.starts_with("canonical.")).collect();
        expect(root, "certify", &[], 0);
        expect(root, "certify", &["labels"], 0);
        let mut surfaces = surfaces(&latest_manifest(root, "certify")["outputs"]);
        surfaces.extend(hashes(&latest_manifest(root, "labels")["outputs"]));
        (acquired, passed, surfaces)
    })
}

fn surfaces(list: &serde_json::Value) -> Hashes {
    hashes(list).into_iter().filter(|(k, _)| k.starts_with("surface.")).collect()
}

fn commit(base: &Path, stage: &str, code: i32) -> serde_json::Value {
    let out = expect(base, "commit", &[stage, "--json"], code);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// Run `stage` on each bucket in `order`; the exit codes.
fn each(base: &Path, stage: &str, args: &[&str], n: u32, order: &[u32]) -> Vec<i32> {
    order
        .iter()
        .map(|&k| {
            let b = bucket(k, n);
            let mut a = vec!["--bucket", b.as_str()];
            a.extend_from_slice(args);
            let o = run(base, stage, &a);
            assert!([0, 1, 99].contains(&o.code), "{stage} --bucket {b} exited {}: {}", o.code, o.stderr);
            o.code
        })
        .collect()
}

#[test]
fn n_buckets_commit_what_one_root_holds_for_any_n_and_order() {
    let (acquired, passed, certified) = whole();
    let input = fixture();
    for n in [2u32, 3, 8] {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        // Buckets finish in any order: run them backwards for odd N.
        let order: Vec<u32> = if n % 2 == 1 { (0..n).rev().collect() } else { (0..n).collect() };
        let codes = each(base, "acquire", &["--input", input.to_str().unwrap()], n, &order);
        assert!(codes.iter().all(|c| *c == 0), "N={n}: acquire {codes:?}");
        let c = commit(base, "acquire", 0);
        assert_eq!(c["buckets"], n);
        assert_eq!(&hashes(&c["outputs"]), acquired, "N={n}: joined acquire outputs differ from one root's");
        commit(base, "acquire", 99);
        let audits = each(base, "audit", &[], n, &order);
        assert!(audits.contains(&1), "N={n}: the fixture's defects fail some bucket's audit: {audits:?}");
        commit(base, "audit", 1);
        each(base, "heal", &[], n, &order);
        let audits = each(base, "audit", &[], n, &order);
        assert!(audits.iter().all(|c| *c == 0), "N={n}: audit after heal {audits:?}");
        let c = commit(base, "audit", 0);
        let joined: Hashes = hashes(&c["outputs"]).into_iter().filter(|(k, _)| k.starts_with("canonical.")).collect();
        // Healed versions included: a repair's batch is named after the population, not the run.
        assert_eq!(&joined, passed, "N={n}: audited canonical tables differ from one root's");
        // certify on each bucket reads the population the audit commit exported and keeps its
        // own entities: the joined surfaces are one root's, row for row.
        let codes = each(base, "certify", &[], n, &order);
        assert!(codes.iter().all(|c| *c == 0), "N={n}: certify {codes:?}");
        let mut joined = surfaces(&commit(base, "certify", 0)["outputs"]);
        // Labels too: a label reads its entity's facts, and the population's watermarks.
        let codes = each(base, "certify", &["labels"], n, &order);
        assert!(codes.iter().all(|c| *c == 0), "N={n}: certify labels {codes:?}");
        joined.extend(hashes(&commit(base, "labels", 0)["outputs"]).into_iter().filter(|(k, _)| k == "labels"));
        assert_eq!(&joined, certified, "N={n}: joined surfaces and labels differ from one root's");
        if n == 2 {
            // A changed file of the committed population: a bucket's certify refuses, naming it.
            let file = find(base, "lake/population/", "/observations/1-of-2.parquet");
            let good = std::fs::read(base.join(&file)).unwrap();
            flip_byte(&base.join(&file));
            let refused = expect(base, "certify", &["--bucket", "1/2"], 3);
            assert!(refused.stderr.contains(&file), "{}", refused.stderr);
            let v = expect(base, "verify", &[], 1);
            assert!(v.stderr.contains(&file), "{}", v.stderr);
            std::fs::write(base.join(&file), good).unwrap();
            expect(base, "certify", &["--bucket", "1/2"], 99);
        }
        // The base root's verify walks every bucket's root too.
        expect(base, "verify", &[], 0);
    }
}

#[test]
fn a_missing_stale_or_tampered_bucket_fails_the_commit_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let input = fixture();
    let input = input.to_str().unwrap();
    expect(base, "acquire", &["--bucket", "0/2", "--input", input], 0);
    let missing = expect(base, "commit", &["acquire"], 3);
    assert!(missing.stderr.contains("bucket 1/2"), "{}", missing.stderr);
    // N is fixed by the first bucketed run; stages that read the whole population refuse.
    let other_n = expect(base, "acquire", &["--bucket", "0/3", "--input", input], 2);
    assert!(other_n.stderr.contains("split into 2 buckets"), "{}", other_n.stderr);
    expect(base, "train-suite", &["--bucket", "1/2"], 2);
    expect(base, "certify", &["attack", "--bucket", "1/2"], 2);
    expect(base, "commit", &["acquire", "--buckets", "3"], 2);

    expect(base, "acquire", &["--bucket", "1/2", "--input", input], 0);
    // A bucket's landing copy replaced by one with a flipped byte: refused, the bucket named.
    // (Bucket 1 took the parts bucket 0 parsed: the copies are one file linked from both
    // buckets, so a byte changed in place shows in both, and the first bucket is named.)
    let landing = find(&base.join("buckets/1-of-2"), "lake/raw/observations/", ".parquet");
    let path = base.join("buckets/1-of-2").join(&landing);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 1;
    std::fs::write(path.with_extension("tmp"), bad).unwrap();
    std::fs::rename(path.with_extension("tmp"), &path).unwrap();
    let tampered = expect(base, "commit", &["acquire"], 3);
    assert!(tampered.stderr.contains("bucket 1/2") && tampered.stderr.contains(&landing), "{}", tampered.stderr);
    std::fs::write(&path, &good).unwrap();
    commit(base, "acquire", 0);
    // verify on the base root walks every bucket's root too, and names the file from the base.
    flip_byte(&path);
    let v = expect(base, "verify", &[], 1);
    assert!(v.stderr.contains("Changed buckets/1-of-2/lake/raw/observations/"), "{}", v.stderr);
    std::fs::write(&path, good).unwrap();
    expect(base, "verify", &[], 0);

    // Stale: a bucket healed after its audit; the audit commit names it.
    let audits = each(base, "audit", &[], 2, &[0, 1]);
    let failing = audits.iter().position(|c| *c == 1).expect("a bucket fails audit on the fixture") as u32;
    let healing = bucket(failing, 2);
    // A bucket's heal names its repairs after the population the audit commit joined: refused
    // before that commit, and when the commit file is not the one recorded (named).
    let early = expect(base, "heal", &["--bucket", &healing], 3);
    assert!(early.stderr.contains("commit audit"), "{}", early.stderr);
    commit(base, "audit", 1);
    let audit_commit = base.join(find(base, "commits/audit/", ".json"));
    let good = std::fs::read(&audit_commit).unwrap();
    flip_byte(&audit_commit);
    let changed = expect(base, "heal", &["--bucket", &healing], 3);
    assert!(changed.stderr.contains("commits/audit/"), "{}", changed.stderr);
    std::fs::write(&audit_commit, good).unwrap();
    expect(base, "heal", &["--bucket", &healing], 0);
    let stale = expect(base, "commit", &["audit"], 3);
    assert!(
        stale.stderr.contains(&format!("bucket {failing}/2")) && stale.stderr.contains("stale"),
        "{}",
        stale.stderr
    );
    // plan lists exactly the stale bucket for audit.
    let plan = expect(base, "plan", &["audit", "--json"], 0);
    let plan: serde_json::Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    assert_eq!(plan["work"], serde_json::json!([bucket(failing, 2)]));
    // A changed commit file is found by verify on the base root.
    let c = find(base, "commits/acquire/", ".json");
    flip_byte(&base.join(&c));
    let v = expect(base, "verify", &[], 1);
    assert!(v.stderr.contains(&c), "{}", v.stderr);
}

/// Start `acquire --bucket b` on `base`, killed at the named pause point.
fn killed_at(base: &Path, b: &str, point: &str) {
    killed(base, "acquire", &["--bucket", b, "--input", fixture().to_str().unwrap()], point);
}

/// Start `stage args` on `base`, killed at the named pause point (it must reach it).
fn killed(base: &Path, stage: &str, args: &[&str], point: &str) {
    let mut child = Command::new(bin(stage))
        .args(["--root", base.to_str().unwrap()])
        .args(args)
        .env("T0CLIP_NOW", NOW)
        .env("T0CLIP_PAUSE_AT", point)
        .env_remove("T0CLIP_ROOT")
        .env_remove("T0CLIP_PROJECT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    assert!(stderr.lines().map_while(Result::ok).any(|l| l.contains("paused at")), "never paused at {point}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn buckets_run_at_once_and_a_killed_bucket_reruns_to_the_same_commit() {
    let input = fixture();
    let input = input.to_str().unwrap();
    // Two buckets of one stage at once: each has its own root and lock.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let spawn = |b: &str| {
        Command::new(bin("acquire"))
            .args(["--root", base.to_str().unwrap(), "--bucket", b, "--input", input, "--quiet"])
            .env("T0CLIP_NOW", NOW)
            .env_remove("T0CLIP_ROOT")
            .env_remove("T0CLIP_PROJECT")
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("0/2"), spawn("1/2"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    // What a user sees: the plan, then the commit (human on stderr).
    let plan = expect(base, "plan", &["audit"], 0);
    let shown = expect(base, "commit", &["acquire", "--buckets", "2"], 0);
    let text = format!("{}{}", plan.stderr, shown.stderr);
    // The commit id hashes the bucket manifests, which record the absolute `--input` path:
    // it differs between checkouts (its determinism is asserted byte for byte below).
    let mut settings = crate::snapshots::settings();
    settings.add_filter(r"\b[0-9a-f]{16}\b(\.json| of)", "[COMMIT_ID]$1");
    settings.bind(|| insta::assert_snapshot!("buckets-plan-commit-human", crate::snapshots::normalise(&text, base)));
    let uninterrupted: serde_json::Value = {
        let rel = find(base, "commits/acquire/", ".json");
        serde_json::from_slice(&std::fs::read(base.join(rel)).unwrap()).unwrap()
    };

    // Bucket 1 killed after its first catalog commit, then re-run: the same commit.
    let dir2 = tempfile::tempdir().unwrap();
    let base2 = dir2.path();
    expect(base2, "acquire", &["--bucket", "0/2", "--input", input], 0);
    killed_at(base2, "1/2", "catalog.committed#1");
    expect(base2, "acquire", &["--bucket", "1/2", "--input", input], 0);
    let rerun = commit(base2, "acquire", 0);
    // The commit record is deterministic: byte for byte what the uninterrupted buckets gave.
    let rerun_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base2.join(find(base2, "commits/acquire/", ".json"))).unwrap()).unwrap();
    assert_eq!(rerun_file, uninterrupted);
    assert_eq!(rerun["commit_id"], uninterrupted["commit_id"]);
    let file = |b: &Path| std::fs::read(b.join(find(b, "commits/acquire/", ".json"))).unwrap();
    assert_eq!(file(base2), file(base));
    // Re-run on unchanged input: nothing to do.
    expect(base2, "acquire", &["--bucket", "1/2", "--input", input], 99);

    // The population a passing audit's commit exports is byte-deterministic too, though one
    // root's buckets were acquired at once and the other's killed and resumed: the two audit
    // commit files (each population file's blake3 in them) are the same bytes.
    for b in [base, base2] {
        each(b, "audit", &[], 2, &[0, 1]);
        commit(b, "audit", 1);
        each(b, "heal", &[], 2, &[0, 1]);
        each(b, "audit", &[], 2, &[0, 1]);
    }
    let (c, c2) = (commit(base, "audit", 0), commit(base2, "audit", 0));
    assert!(c["population"].as_array().is_some_and(|p| !p.is_empty()), "{c}");
    let bytes = |b: &Path, c: &serde_json::Value| std::fs::read(b.join(c["path"].as_str().unwrap())).unwrap();
    assert_eq!(bytes(base, &c), bytes(base2, &c2));
}

/// A row that does not parse has no trustworthy key: bucket 0 quarantines it, the others count
/// it as another bucket's, and every bucket's rows add up.
#[test]
fn an_unparsable_row_is_quarantined_once_by_bucket_zero() {
    let input = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture(), input.path());
    let obs = input.path().join("observations.csv");
    let mut text = std::fs::read_to_string(&obs).unwrap();
    text.push_str("clip0000000,not a time,1,1,1,2026-01-05 06:00:50,live\n");
    std::fs::write(&obs, text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let args = |b: String| {
        vec!["--bucket".to_string(), b, "--input".into(), input.path().display().to_string(), "--json".into()]
    };
    let observations = |root: &Path, a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r: serde_json::Value = serde_json::from_str(expect(root, "acquire", &a, 0).stdout.trim()).unwrap();
        r["files"].as_array().unwrap().iter().find(|f| f["table"] == "observations").unwrap().clone()
    };
    let bad_rows = |root: &Path| -> i64 {
        let cat = t0_catalog::Catalog::open_read_only(&t0_core::Root::new(root)).unwrap();
        cat.conn().query_row("SELECT count(*) FROM quarantine WHERE raw LIKE '%not a time%'", [], |r| r.get(0)).unwrap()
    };
    let mut quarantined = 0;
    for k in 0..2 {
        let f = observations(base, args(bucket(k, 2)));
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        assert_eq!(
            n("rows_read"),
            n("rows_ingested") + n("rows_unchanged") + n("rows_quarantined") + n("rows_other_buckets"),
            "bucket {k}: {f}"
        );
        quarantined += n("rows_quarantined");
        assert_eq!(bad_rows(&base.join(format!("buckets/{k}-of-2"))), i64::from(k == 0), "bucket {k}");
    }
    let whole = tempfile::tempdir().unwrap();
    let f = observations(whole.path(), args("0/1".into()));
    assert_eq!(quarantined, f["rows_quarantined"].as_u64().unwrap(), "the buckets quarantine what one root does");
}

/// A quarantine row: batch, line, column, reason, raw text.
type QuarantineRow = (String, i64, Option<String>, String, Option<String>);

/// The split step: the first bucket to reach a file parses it and publishes its landing parts;
/// the other takes them (its landing parts are the same files) and refuses a changed one. The
/// quarantine of both buckets is one root's, row for row, the rows SQL rejects (duplicate keys)
/// included: their text is read back through the spans the parse published.
#[test]
fn the_split_step_parses_a_file_once_and_refuses_a_changed_part() {
    let input = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture(), input.path());
    let obs = input.path().join("observations.csv");
    let text = std::fs::read_to_string(&obs).unwrap();
    let again: String = text.lines().skip(1).step_by(37).take(6).map(|l| format!("{l}\n")).collect();
    std::fs::write(&obs, format!("{text}{again}clip0000000,not a time,1,1,1,2026-01-05 06:00:50,live\n")).unwrap();
    let input = input.path().to_str().unwrap();
    let quarantine = |root: &Path| -> Vec<QuarantineRow> {
        let cat = t0_catalog::Catalog::open_read_only(&t0_core::Root::new(root)).unwrap();
        let mut stmt =
            cat.conn().prepare("SELECT batch_id, row_number, column_name, reason, raw FROM quarantine").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let whole = tempfile::tempdir().unwrap();
    expect(whole.path(), "acquire", &["--input", input], 0);
    let mut expected = quarantine(whole.path());
    expected.sort();
    let last = text.lines().count() as i64;
    let appended = expected.iter().filter(|q| q.1 > last && q.3.contains("duplicate key")).count();
    assert_eq!(appended, 6, "{expected:?}");

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    // Bucket 1 first: it parses and publishes.
    expect(base, "acquire", &["--bucket", "1/2", "--input", input], 0);
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let landing = |k: u32| {
        let root = base.join(format!("buckets/{k}-of-2"));
        root.join(find(&root, "lake/raw/observations/", "part-00000.parquet"))
    };
    // The published part of the observations file is bucket 1's landing part.
    let published: Vec<PathBuf> = crate::support::files_under(&base.join("lake/split"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("part-00000.parquet") && inode(p) == inode(&landing(1)))
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    let part = published[0].strip_prefix(base).unwrap().display().to_string();
    // A changed part is refused, named, before anything is committed.
    let good = std::fs::read(base.join(&part)).unwrap();
    flip_byte(&base.join(&part));
    let refused = expect(base, "acquire", &["--bucket", "0/2", "--input", input], 3);
    assert!(refused.stderr.contains("the split step's part was changed"), "{}", refused.stderr);
    assert!(refused.stderr.contains(&part), "{}", refused.stderr);
    std::fs::write(base.join(&part), good).unwrap();
    expect(base, "acquire", &["--bucket", "0/2", "--input", input], 0);
    // Bucket 0 took the part: its landing part is the published file.
    assert_eq!(inode(&landing(0)), inode(&base.join(&part)), "bucket 0 parsed the file again");
    let taken = quarantine(&base.join("buckets/0-of-2"));
    // The bucket that took the parts quarantined appended duplicates: their text came back
    // through the published spans.
    assert!(taken.iter().any(|q| q.1 > last && q.4.as_deref().is_some_and(|r| r.starts_with("clip"))), "{taken:?}");
    let mut both = taken;
    both.extend(quarantine(&base.join("buckets/1-of-2")));
    both.sort();
    assert_eq!(both, expected, "the buckets' quarantine is one root's");
    commit(base, "acquire", 0);
}

/// The stages after certify on a bucketed root: the certify, labels and embed commits gather
/// the buckets' surfaces, labels and vectors into one run each of the base root, where
/// train-suite, score and calibrate run unchanged and make what they make on one whole root.
#[test]
fn the_model_stages_run_on_the_gathered_base_root_as_on_one_root() {
    let whole = crate::support::pristine();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let (n, order) = (2, [1, 0]);
    each(base, "acquire", &["--input", fixture().to_str().unwrap()], n, &order);
    commit(base, "acquire", 0);
    each(base, "audit", &[], n, &order);
    commit(base, "audit", 1);
    each(base, "heal", &[], n, &order);
    each(base, "audit", &[], n, &order);
    commit(base, "audit", 0);
    each(base, "certify", &[], n, &order);
    // Killed after the gathered run is recorded, before the commit is: the re-run records the
    // commit over the same gathered run.
    killed(base, "commit", &["certify"], "certify.recorded");
    let c = commit(base, "certify", 0);
    assert_eq!((&c["gathered"]["stage"], &c["gathered"]["new"]), (&"certify".into(), &false.into()), "{c}");
    each(base, "certify", &["labels"], n, &order);
    let l = commit(base, "labels", 0);
    assert_eq!((&l["gathered"]["stage"], &l["gathered"]["new"]), (&"labels".into(), &true.into()), "{l}");
    // The gathered runs hold one root's surfaces and labels, row for row.
    let outputs = |root: &Path, stage: &str, prefix: &str| -> Hashes {
        hashes(&latest_manifest(root, stage)["outputs"]).into_iter().filter(|(k, _)| k.starts_with(prefix)).collect()
    };
    for (stage, prefix) in [("certify", "surface."), ("labels", "labels")] {
        let got = outputs(base, stage, prefix);
        assert!(!got.is_empty(), "{stage}: nothing gathered");
        assert_eq!(got, outputs(whole, stage, prefix), "{stage}: gathered outputs differ from one root's");
    }
    // Embed on each bucket (a vector is its input's alone), gathered by its commit.
    let codes = each(base, "embed", &[], n, &order);
    assert!(codes.iter().all(|c| *c == 0), "embed {codes:?}");
    let e = commit(base, "embed", 0);
    assert_eq!(e["gathered"]["stage"], "embed", "{e}");
    // embed run on the base root itself reads the media from the buckets' stores (the base
    // has none of its own) and makes the vectors the buckets gathered.
    let gathered = hashes(&latest_manifest(base, "embed")["outputs"]);
    expect(base, "embed", &[], 0);
    assert_eq!(hashes(&latest_manifest(base, "embed")["outputs"]), gathered, "embed on the base root");
    for stage in ["train-suite", "score"] {
        expect(base, stage, &[], 0);
    }
    let cal: serde_json::Value = serde_json::from_str(expect(base, "calibrate", &["--json"], 0).stdout.trim()).unwrap();
    // What the model stages made on the gathered base root is what they make on one root.
    for (stage, prefix) in [("embed", "embeddings."), ("embed", "fused."), ("score", "predictions")] {
        let got = outputs(base, stage, prefix);
        assert!(!got.is_empty(), "{stage}: no {prefix} output");
        assert_eq!(got, outputs(whole, stage, prefix), "{stage}: {prefix} differs from one root's");
    }
    assert_eq!(cal["state"], latest_manifest(whole, "calibrate")["summary"]["state"], "{cal}");
    expect(base, "verify", &[], 0);
    // A bucket certified again (same surfaces, another run): `plan` lists its labels as work,
    // and labels made from that run are not joined to the gathered certify run of the one
    // before (3) until certify is committed, and so gathered, again.
    expect(base, "certify", &["--bucket", "0/2", "--rebaseline"], 0);
    let plan: serde_json::Value =
        serde_json::from_str(expect(base, "plan", &["labels", "--json"], 0).stdout.trim()).unwrap();
    assert_eq!(plan["work"], serde_json::json!(["0/2"]), "{plan}");
    expect(base, "certify", &["labels", "--bucket", "0/2"], 0);
    let refused = expect(base, "commit", &["labels"], 3);
    assert!(
        refused.stderr.contains("bucket 0/2's labels run") && refused.stderr.contains("commit certify"),
        "{}",
        refused.stderr
    );
    commit(base, "certify", 0);
    commit(base, "labels", 0);
    // Embed likewise: bucket 0's vectors are made again from its new certify run; bucket 1's
    // are still its certify run's in the new commit.
    assert_eq!(each(base, "embed", &[], n, &[0, 1]), [0, 99]);
    commit(base, "embed", 0);
    // A changed byte of the gathered labels: the next reader refuses, naming them.
    let file = latest_manifest(base, "labels")["outputs"][0]["location"]["path"].as_str().unwrap().to_string();
    flip_byte(&base.join(&file));
    let refused = expect(base, "train-suite", &[], 3);
    assert!(refused.stderr.contains(&file), "{}", refused.stderr);
}

/// A store column typed by its values (a wide integer sum: BIGINT where every value fits,
/// else DOUBLE) that comes out differently in two buckets: `commit certify` refuses (3),
/// naming the column, its two types and the remedy, rather than join surfaces of other types.
/// Then new data in one bucket: a new audit commit is a new population, so `plan certify`
/// lists every bucket, the untouched one certifies again (a new run, not 99), and labels of a
/// certify run that read the old population are refused (3).
#[test]
fn certify_per_bucket_fails_closed_on_column_types_and_on_another_population() {
    let text = "  - {entrypoint: text, files: [asof.sql, text.sql], strict: false}";
    let project = crate::support::project_copy("clips", |name, t| {
        if name == "certify.yaml" {
            assert!(t.contains(text), "the clips certify.yaml lists its text store as expected");
            t.replace(text, &format!("{text}\n  - {{entrypoint: wide, files: [asof.sql, wide.sql], strict: false}}"))
        } else {
            t
        }
    });
    // One clip's value needs more than 64 bits: its bucket stores the column as DOUBLE, the
    // other bucket as BIGINT.
    std::fs::write(
        project.path().join("feature-stores/wide.sql"),
        "CREATE OR REPLACE TEMP VIEW surface_wide AS\n\
         SELECT g.entity_id, g.t0, CAST(CASE WHEN g.entity_id = 'clip0000001' THEN 10000000000000000000 ELSE 1 END AS HUGEINT) AS wide\n\
         FROM t0_grid g;\n",
    )
    .unwrap();
    let p = project.path().to_str().unwrap();
    let input = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture(), input.path());
    let i = input.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let (n, order) = (2, [0, 1]);
    each(base, "acquire", &["--project", p, "--input", i], n, &order);
    commit(base, "acquire", 0);
    each(base, "audit", &["--project", p], n, &order);
    commit(base, "audit", 1);
    each(base, "heal", &["--project", p], n, &order);
    each(base, "audit", &["--project", p], n, &order);
    commit(base, "audit", 0);
    // The acquire commit again: recorded already (99), though heal has since changed the
    // canonical tables those acquire runs recorded.
    commit(base, "acquire", 99);
    assert_eq!(each(base, "certify", &["--project", p], n, &order), [0, 0]);
    let refused = expect(base, "commit", &["certify"], 3);
    let e = &refused.stderr;
    assert!(e.contains("surface.wide has other columns"), "{e}");
    assert!(e.contains("wide: float64 / int64") || e.contains("wide: int64 / float64"), "{e}");
    assert!(e.contains("cast it in the store's SQL"), "{e}");
    assert!(!base.join("commits/certify").exists(), "nothing committed");

    // One more observation of one clip, in a new file, ingested and audited: a new population.
    std::fs::write(
        input.path().join("observations-2.csv"),
        "entity_id,observed_at,views,likes,comments,available_at,status\n\
         clip0000000,2026-01-27 03:06:02,700,16,1,2026-01-27 04:06:02,live\n",
    )
    .unwrap();
    // Every bucket records its run, the one whose entities the file does not hold too (it
    // landed the file): commit needs every bucket to have read the same files.
    assert_eq!(each(base, "acquire", &["--project", p, "--input", i], n, &order), [0, 0]);
    commit(base, "acquire", 0);
    each(base, "audit", &["--project", p], n, &order);
    commit(base, "audit", 0);
    let refused = expect(base, "certify", &["labels", "--bucket", "0/2", "--project", p], 3);
    assert!(refused.stderr.contains("population"), "{}", refused.stderr);
    let plan: serde_json::Value =
        serde_json::from_str(expect(base, "plan", &["certify", "--json"], 0).stdout.trim()).unwrap();
    assert_eq!(plan["work"], serde_json::json!(["0/2", "1/2"]), "{plan}");
    assert_eq!(each(base, "certify", &["--project", p], n, &order), [0, 0], "both buckets certify the new population");
    assert_eq!(each(base, "certify", &["labels", "--project", p], n, &order), [0, 0]);
}
