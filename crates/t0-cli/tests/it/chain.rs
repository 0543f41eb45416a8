//! The whole loop through the real binaries on the committed fixture, then the hash chain:
//! corrupt one byte (or one value) of each kind of stage output in a copy of the finished
//! root and check that the next stage refuses with exit 3, naming what changed.

use std::path::Path;

use crate::support::*;

#[test]
fn the_loop_leaves_manifests_model_predictions_and_acceptance() {
    let dir = copy_of_pristine();
    let root = dir.path();
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
        let line = format!("t0clip_acceptance_state{{profile=\"default\",state=\"{st}\"}} {}", u8::from(st == state));
        assert!(prom.lines().any(|l| l == line), "{line} missing:\n{prom}");
    }
    // Series carry the label's name, never a run id (one series per label, not per run).
    for run in [&report["score_run"], &report["model_run"]] {
        assert!(!prom.contains(run.as_str().unwrap()), "a run id in the metrics:\n{prom}");
    }
    let coverage = "t0clip_interval_coverage{profile=\"default\",label=\"y_log_views\"} ";
    assert!(prom.lines().any(|l| l.starts_with(coverage)), "{prom}");
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
    for sub in ["manifests", "lake", "runs", "calib", "metrics", "lineage"] {
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
fn served_model_corrupted_before_score() {
    // Every label's served model is verified, not only the target's.
    file_case("runs/", "served/tte_hours.json", "score");
}

#[test]
fn model_corrupted_before_calibrate() {
    file_case("runs/", "/model.json", "calibrate");
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
    // Every step a hard breach: BLOCK.
    let o = expect(dir.path(), "calibrate", &[&ALWAYS_BLOCK[..], &["--json"]].concat(), 1);
    assert!(o.stdout.contains("\"state\":\"BLOCK\""), "{}", o.stdout);
    let o = expect(dir.path(), "score", &[], 1);
    assert!(o.stderr.contains("BLOCK"), "{}", o.stderr);
    // An override scores anyway and records why.
    let o =
        expect(dir.path(), "score", &["--override-block", "--reason", "incident 42: scored for review", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(
        (v["acceptance"].as_str(), v["override_reason"].as_str()),
        (Some("BLOCK"), Some("incident 42: scored for review"))
    );
    expect(dir.path(), "score", &["--override-block"], 2);
}

#[test]
fn every_prediction_names_its_reasons_and_all_of_them_add_up_to_it() {
    let dir = copy_of_pristine();
    // Every contribution (the cap is the model's feature count) against the output on the
    // stated scale, on every row of every label.
    let o = expect(dir.path(), "score", &["--top-k", "100000", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let file = dir.path().join(v["path"].as_str().unwrap());
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute(&format!("CREATE VIEW p AS SELECT * FROM read_parquet('{}')", file.display()), []).unwrap();
    let names: Vec<String> = {
        let mut s = c.prepare("SELECT column_name FROM (DESCRIBE p)").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let k = names.iter().filter(|n| n.ends_with("_contribution")).count();
    assert!(k >= 3 && names.contains(&format!("reason{k}_feature")), "{names:?}");
    let sum = (1..=k).map(|r| format!("coalesce(reason{r}_contribution, 0)")).collect::<Vec<_>>().join(" + ");
    let (rows, worst, scales, ordered): (i64, f64, String, bool) = c
        .query_row(
            &format!(
                "SELECT count(*), max(abs(base_value + {sum} - explanation_output)),
                        string_agg(DISTINCT explanation_scale, ',' ORDER BY explanation_scale),
                        bool_and(abs(reason1_contribution) >= abs(reason2_contribution)
                                 AND (label_kind <> 'value' OR (upper_80 - lower_80 <= upper_90 - lower_90
                                      AND abs((upper_90 - lower_90) - (upper - lower)) < 1e-12
                                      AND prediction = explanation_output))) FROM p"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert!(rows > 0 && worst <= 1e-9, "{rows} rows, worst additivity gap {worst}");
    // The clips project's value, binary and time-to-event labels, each on its own scale.
    assert_eq!(scales, "log-odds,log-time,value");
    assert!(ordered, "reasons ordered by |contribution|, the 80 % interval inside the 90 % one, which is the nominal");
    assert_eq!(rows, v["rows"].as_i64().unwrap());
}

#[test]
fn every_label_is_served_with_what_its_kind_promises() {
    let dir = copy_of_pristine();
    let o = expect(dir.path(), "score", &["--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let labels: Vec<&str> = v["labels"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["tte_hours", "y_log_views", "y_tail"], "{v}");
    let file = dir.path().join(v["path"].as_str().unwrap());
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute(&format!("CREATE VIEW p AS SELECT * FROM read_parquet('{}')", file.display()), []).unwrap();
    let q = |sql: &str| -> bool { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    // Value: the raw scale inverts log1p, the interval holds the prediction.
    assert!(q("SELECT bool_and(abs(prediction_raw - (exp(prediction) - 1)) < 1e-9 * (1 + abs(prediction_raw))
                 AND lower < prediction AND prediction < upper AND lower_raw < upper_raw
                 AND decision IS NULL AND q50 IS NULL) FROM p WHERE label = 'y_log_views'"));
    // Binary: a probability, decided at the threshold recorded beside it.
    assert!(q("SELECT bool_and(prediction BETWEEN 0 AND 1 AND decision = (prediction >= threshold)
                 AND lower IS NULL AND explanation_scale = 'log-odds') FROM p WHERE label = 'y_tail'"));
    // Time to event: ordered quantiles, the median as the prediction, S(t) falling, and the
    // lower bound at 90 % no higher than at 80 %, below the median.
    let s: Vec<String> = {
        let mut st = c.prepare("SELECT column_name FROM (DESCRIBE p) WHERE column_name LIKE 's_at_%'").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert!(s.len() >= 2, "{s:?}");
    assert!(q(&format!(
        "SELECT bool_and(q10 <= q50 AND q50 <= q90 AND abs(q50 - prediction) <= 1e-9 * prediction
                 AND {s0} >= {s1} AND {s0} BETWEEN 0 AND 1
                 AND lower_bound_90 <= lower_bound_80 AND lower_bound = lower_bound_90 AND lower_bound >= 0
                 AND lower IS NULL AND explanation_scale = 'log-time') FROM p WHERE label = 'tte_hours'",
        s0 = s[0],
        s1 = s[1]
    )));
}

#[test]
fn predictions_and_drift_are_bit_identical_on_one_thread_and_four() {
    let score = |threads: &str| {
        let dir = copy_of_pristine();
        let o = run_threads(dir.path(), "score", &["--top-k", "5", "--json"], threads);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let preds = std::fs::read(dir.path().join(v["path"].as_str().unwrap())).unwrap();
        let drift =
            std::fs::read(dir.path().join(format!("lake/predictions/{}/drift.parquet", v["run_id"].as_str().unwrap())))
                .unwrap();
        (v["run_id"].clone(), preds, drift)
    };
    assert!(score("1") == score("4"), "predictions or drift differ between 1 and 4 threads");
}

/// The drift file is tiny: a flipped byte may land in bytes that do not change its rows (the
/// content hash is of rows), so one value is changed instead.
#[test]
fn drift_file_changed_before_calibrate() {
    let dir = copy_of_pristine();
    let rel = find(dir.path(), "lake/predictions/", "drift.parquet");
    let (path, tmp) = (dir.path().join(&rel), dir.path().join("drift.tmp.parquet"));
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "COPY (SELECT * REPLACE (CASE WHEN kind = 'prediction' THEN psi + 1 ELSE psi END AS psi) FROM read_parquet('{}'))
         TO '{}' (FORMAT parquet)",
        path.display(),
        tmp.display()
    ))
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let o = expect(dir.path(), "calibrate", &[], 3);
    assert!(o.stderr.contains(&rel), "calibrate must name {rel}: {}", o.stderr);
}

#[test]
fn score_measures_drift_per_feature_into_parquet_catalog_and_metrics() {
    // A copy: opening the shared root's catalog would race the tests that read it.
    let dir = copy_of_pristine();
    let root = dir.path();
    let rel = find(root, "lake/predictions/", "drift.parquet");
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    let (features, predictions, finite): (i64, i64, bool) = c
        .query_row(
            &format!(
                "SELECT count(*) FILTER (kind = 'feature'), count(*) FILTER (kind = 'prediction'), bool_and(isfinite(psi) AND psi >= 0)
                 FROM read_parquet('{}')",
                root.join(&rel).display()
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // One prediction per served label, each with its model's features.
    assert!(features >= 9 && predictions == 3 && finite, "{features} features, {predictions} predictions");
    let cat = t0_catalog::Catalog::open(&t0_core::Root::new(root)).unwrap();
    let n: i64 = cat.conn().query_row("SELECT count(*) FROM drift", [], |r| r.get(0)).unwrap();
    assert_eq!(n, features + predictions);
    let prom = std::fs::read_to_string(root.join("metrics/score.prom")).unwrap();
    let series = prom.lines().filter(|l| l.starts_with("t0clip_feature_psi{label=")).count();
    assert_eq!(series as i64, features, "{prom}");
    assert!(prom.lines().any(|l| l.starts_with("t0clip_prediction_psi{label=\"y_log_views\"} ")), "{prom}");
}

#[test]
fn latest_scores_each_entity_once_at_its_latest_certified_t0_and_ranges_are_inclusive() {
    let dir = copy_of_pristine();
    let o = expect(dir.path(), "score", &["--latest", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let preds = dir.path().join(v["path"].as_str().unwrap());
    let surface = dir.path().join(find(dir.path(), "lake/surfaces/base/", "surface.parquet"));
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    let q = |sql: String| -> i64 { c.query_row(&sql, [], |r| r.get(0)).unwrap() };
    let (p, s) = (preds.display(), surface.display());
    let scored = q(format!("SELECT count(*) FROM read_parquet('{p}')"));
    let entities = q(format!("SELECT count(DISTINCT entity_id) FROM read_parquet('{s}')"));
    let labels = v["labels"].as_array().unwrap().len() as i64;
    assert_eq!(scored, entities * labels, "one row per entity and label");
    let off = q(format!(
        "SELECT count(*) FROM read_parquet('{p}') p JOIN (SELECT entity_id, max(t0) AS t0 FROM read_parquet('{s}') GROUP BY ALL) m
         USING (entity_id) WHERE p.t0 <> m.t0"
    ));
    assert_eq!(off, 0, "rows not at their entity's latest T0");
    // A one-instant range scores exactly the surface's rows at that T0.
    let t0: String = c
        .query_row(&format!("SELECT strftime(max(t0), '%Y-%m-%dT%H:%M:%SZ') FROM read_parquet('{s}')"), [], |r| {
            r.get(0)
        })
        .unwrap();
    let o = expect(dir.path(), "score", &["--t0-from", &t0, "--t0-to", &t0, "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let at =
        q(format!("SELECT count(*) FROM read_parquet('{s}') WHERE t0 = (SELECT max(t0) FROM read_parquet('{s}'))"));
    assert!(v["labels"].as_array().unwrap().iter().all(|l| l["rows"].as_i64() == Some(at)), "{v}");
    expect(dir.path(), "score", &["--latest", "--t0-from", &t0], 2);
}

#[test]
fn score_explain_tells_one_entity_its_prediction_interval_and_reasons() {
    let dir = copy_of_pristine();
    let preds = dir.path().join(find(dir.path(), "lake/predictions/", "predictions.parquet"));
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    let (entity, prediction): (String, f64) = c
        .query_row(
            &format!(
                "SELECT entity_id, prediction FROM read_parquet('{}') WHERE label = 'y_log_views'
                 ORDER BY t0 DESC, entity_id LIMIT 1",
                preds.display()
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let o = expect(dir.path(), "score", &["explain", &entity, "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let all = v["predictions"].as_array().unwrap();
    let value = all.iter().find(|p| p["label"] == "y_log_views").unwrap();
    assert_eq!(
        (v["entity_id"].as_str(), value["prediction"].as_f64()),
        (Some(entity.as_str()), Some(prediction)),
        "{v}"
    );
    assert_eq!(value["reasons"].as_array().unwrap().len(), 3, "{v}");
    assert!(value["lower"].as_f64() < value["upper"].as_f64() && value["scale"] == "value", "{v}");
    assert!(o.stderr.contains(&entity) && (o.stderr.contains("raises") || o.stderr.contains("lowers")), "{}", o.stderr);
    // Only one label, when asked.
    let o = expect(dir.path(), "score", &["explain", &entity, "--label", "y_log_views", "--json"], 0);
    let one: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(one["predictions"].as_array().unwrap().len(), 1, "{one}");
    let o = expect(dir.path(), "score", &["explain", "no-such-entity"], 2);
    assert!(o.stderr.contains("no-such-entity"), "{}", o.stderr);
    // A tampered predictions file is refused, named.
    let rel = find(dir.path(), "lake/predictions/", "predictions.parquet");
    flip_byte(&dir.path().join(&rel));
    let o = expect(dir.path(), "score", &["explain", &entity], 3);
    assert!(o.stderr.contains(&rel), "{}", o.stderr);
}

#[test]
fn explain_all_writes_the_full_matrix_that_adds_up_and_verify_guards_it() {
    let dir = copy_of_pristine();
    let o = expect(dir.path(), "score", &["--explain-all", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let rel = v["explanations"].as_str().unwrap().to_string();
    let (m, p) = (dir.path().join(&rel), dir.path().join(v["path"].as_str().unwrap()));
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute(&format!("CREATE VIEW m AS SELECT * FROM read_parquet('{}')", m.display()), []).unwrap();
    let features: Vec<String> = {
        let mut s = c.prepare("SELECT column_name FROM (DESCRIBE m) OFFSET 6").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let sum: Vec<String> = features.iter().map(|f| format!("coalesce(m.\"{f}\", 0)")).collect();
    let (rows, worst): (i64, f64) = c
        .query_row(
            &format!(
                "SELECT count(*), max(abs(m.base_value + {} - p.explanation_output))
                 FROM m JOIN read_parquet('{}') p USING (entity_id, t0, label)",
                sum.join(" + "),
                p.display()
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(features.len() >= 10 && rows == v["rows"].as_i64().unwrap() && worst <= 1e-9, "{rows} rows, gap {worst}");
    // One contribution changed: verify names the file.
    let tmp = dir.path().join("m.tmp.parquet");
    c.execute_batch(&format!(
        "COPY (SELECT * REPLACE (base_value + 1 AS base_value) FROM m) TO '{}' (FORMAT parquet)",
        tmp.display()
    ))
    .unwrap();
    std::fs::rename(&tmp, &m).unwrap();
    let o = run(dir.path(), "verify", &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains(&rel) || o.stdout.contains(&rel), "verify must name {rel}: {}", o.stderr);
}

#[test]
fn models_all_scores_every_leaderboard_model_beside_the_selected_one_and_calibrate_judges_the_selected() {
    let dir = copy_of_pristine();
    let o = expect(dir.path(), "score", &["--models", "all", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let file = dir.path().join(v["path"].as_str().unwrap());
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute(&format!("CREATE VIEW p AS SELECT * FROM read_parquet('{}')", file.display()), []).unwrap();
    // Per label: several models, one selected, the same rows for each.
    let (labels, ok): (i64, bool) = c
        .query_row(
            "SELECT count(*), bool_and(models > 1 AND selected_models = 1 AND min_rows = max_rows) FROM (
               SELECT label, count(DISTINCT model) AS models, count(DISTINCT model) FILTER (selected) AS selected_models,
                      min(n) AS min_rows, max(n) AS max_rows
               FROM (SELECT label, model, selected, count(*) AS n FROM p GROUP BY ALL) GROUP BY label)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(labels == 3 && ok, "{labels} labels");
    // The leaderboard's selected model is the one flagged.
    let flagged: String = c
        .query_row("SELECT any_value(model) FROM p WHERE label = 'y_log_views' AND selected", [], |r| r.get(0))
        .unwrap();
    let board = v["labels"].as_array().unwrap();
    assert!(
        board.iter().any(|l| l["label"] == "y_log_views" && l["selected"] == true && l["model"] == flagged.as_str())
    );
    // Calibrate judges the selected rows only: one per entity and T0.
    // Exit 0 or 1 (a BLOCK verdict): either way the report says what it judged.
    let cal = run(dir.path(), "calibrate", &["--json"]);
    assert!(cal.code == 0 || cal.code == 1, "{}", cal.stderr);
    let cv: serde_json::Value = serde_json::from_str(cal.stdout.trim()).unwrap();
    let selected_rows: i64 =
        c.query_row("SELECT count(*) FROM p WHERE label = 'y_log_views' AND selected", [], |r| r.get(0)).unwrap();
    assert_eq!(cv["scored"].as_i64(), Some(selected_rows), "{cv}");
}
