//! The whole loop through the real binaries on the committed fixture, then the hash chain:
//! corrupt one byte (or one value) of each kind of stage output in a copy of the finished
//! root and check that the next stage refuses with exit 3, naming what changed.

use std::path::Path;

use crate::support::*;

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
