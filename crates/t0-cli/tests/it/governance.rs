//! The governance loop through the binaries: calibrate's replay continues per model and
//! profile and score issues intervals at the level it adapted; the state, the grid's files
//! and the CI gate are verified outputs; the grid's errors name what is wrong; and on a
//! generated panel whose later months drift, the state goes down and comes back.

use std::path::Path;

use t0_clips_gen::Rng;

use crate::support::*;

fn json(o: Out) -> serde_json::Value {
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

fn latest_report(root: &Path) -> serde_json::Value {
    let o = expect(root, "calibrate", &["show", "--json"], 0);
    json(o)
}

#[test]
fn score_issues_its_intervals_at_the_level_the_replay_adapted_and_calibrate_continues_after_it() {
    let dir = copy_of_pristine();
    let root = dir.path();
    let cal = latest_report(root);
    let label = &cal["labels"][0];
    let alpha = label["carry"]["aci"]["alpha"].as_f64().unwrap();
    assert!(label["new_steps"].as_u64().unwrap() > 10, "{label}");
    // The same score run under the same profile: nothing new.
    expect(root, "calibrate", &[], 99);
    let s = json(expect(root, "score", &["--json"], 0));
    let scored = s["labels"].as_array().unwrap().iter().find(|l| l["label"] == label["label"]).unwrap();
    let adapted = scored["adapted"].as_array().unwrap();
    assert_eq!(adapted[0].as_f64(), Some(1.0 - alpha), "{scored}");
    assert_eq!(adapted[2], cal["run_id"]);
    let level: f64 = parquet_value(
        &root.join(s["path"].as_str().unwrap()),
        &format!("SELECT DISTINCT interval_level FROM p WHERE label = {}", quoted(label["label"].as_str().unwrap())),
    );
    assert_eq!(level, 1.0 - alpha);
    // The next replay continues from the last one: the new score run re-predicts T0s
    // already replayed, so there is no new step and the state carries over unchanged.
    let next = json(expect(root, "calibrate", &["--json"], 0));
    assert_eq!(next["continued_from"], cal["run_id"]);
    assert_eq!(next["labels"][0]["new_steps"].as_u64(), Some(0));
    assert_eq!(next["labels"][0]["carry"], label["carry"]);
    let status = json(expect(root, "calibrate", &["status", "--json"], 0));
    assert_eq!((&status["state"], &status["since_run"]), (&cal["state"], &cal["run_id"]), "{status}");
    assert_eq!(status["labels"][0]["alpha"].as_f64(), Some(alpha));
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One value from a query over the parquet file as view `p`.
fn parquet_value<T: t0_catalog::duckdb::types::FromSql>(file: &Path, sql: &str) -> T {
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.execute(&format!("CREATE VIEW p AS SELECT * FROM read_parquet('{}')", file.display()), []).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_tampered_governance_state_row_stops_the_next_score_naming_it() {
    let dir = copy_of_pristine();
    let c = t0_catalog::duckdb::Connection::open(dir.path().join("catalog.duckdb")).unwrap();
    c.execute("UPDATE governance_state SET alpha = 0.3", []).unwrap();
    drop(c);
    let o = expect(dir.path(), "score", &[], 3);
    assert!(o.stderr.contains("catalog table governance_state"), "{}", o.stderr);
}

#[test]
fn a_tampered_ci_gate_row_stops_the_next_calibrate_naming_it() {
    let dir = copy_of_pristine();
    let c = t0_catalog::duckdb::Connection::open(dir.path().join("catalog.duckdb")).unwrap();
    c.execute("UPDATE ci_gate SET violation_run = 7", []).unwrap();
    drop(c);
    let o = expect(dir.path(), "calibrate", &["--set", "aci.gamma=0.01"], 3);
    assert!(o.stderr.contains("catalog table ci_gate"), "{}", o.stderr);
}

const GRID: &str = "aci.gamma=[0.001,0.01];hysteresis.dwell_pass=[5,10];guards.coverage_ema.soft=[0.8,0.85]";

#[test]
fn the_grid_writes_every_point_and_the_top_k_identically_on_one_thread_and_four() {
    let files = |threads: &str| {
        let dir = copy_of_pristine();
        let o = run_threads(dir.path(), "calibrate", &["--grid", GRID, "--top-k", "3", "--json"], threads);
        assert!([0, 1].contains(&o.status.code().unwrap()), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let g = &v["grid"];
        let read = |k: &str| std::fs::read(dir.path().join(g[k].as_str().unwrap())).unwrap();
        (read("results"), read("topk"), v, dir)
    };
    let (csv1, top1, v, _d1) = files("1");
    let (csv4, top4, _, dir) = files("4");
    assert_eq!((&csv1, &top1), (&csv4, &top4), "the grid's files differ between 1 and 4 threads");
    let csv = String::from_utf8(csv1).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 8, "{csv}");
    assert!(lines[0].starts_with("point,aci.gamma,hysteresis.dwell_pass,guards.coverage_ema.soft,score,"), "{csv}");
    let top: serde_json::Value = serde_json::from_slice(&top1).unwrap();
    let top = top.as_array().unwrap();
    assert_eq!(top.len(), 3);
    let scores: Vec<f64> = top.iter().map(|t| t["point"]["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // A patch names only what differs from the profile: gamma 0.005 is never in the grid.
    assert!(top[0]["patch"]["aci.gamma"].is_number(), "{}", top[0]);
    assert_eq!(v["grid"]["points"].as_u64(), Some(8));
    // The grid's files are outputs (no stage reads them back): verify finds a flipped byte
    // and names the file.
    let topk = dir.path().join(v["grid"]["topk"].as_str().unwrap());
    let mut bytes = std::fs::read(&topk).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&topk, bytes).unwrap();
    let o = run(dir.path(), "verify", &["--json"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stdout.contains("calib_topk.json"), "{}", o.stdout);
}

#[test]
fn apply_top_writes_a_profile_that_loads_and_names_its_run() {
    let dir = copy_of_pristine();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("governance.yaml");
    let v = json(run_json(dir.path(), &["--grid", GRID, "--apply-top", file.to_str().unwrap(), "--json"]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(v["run_id"].as_str().unwrap()) && text.contains("--apply-top"), "{text}");
    let best = &v["grid"]["top"][0]["patch"];
    let gamma = best["aci.gamma"].as_f64().unwrap();
    assert!(text.contains(&format!("gamma: {gamma}")), "{text}");
    let again = json(run_json(dir.path(), &["--profile", file.to_str().unwrap(), "--json"]));
    assert!(again["profile"].as_str().unwrap().ends_with("governance.yaml"), "{again}");
}

/// calibrate exits 0 (PASS, DERISK) or 1 (BLOCK); either way its `--json` report.
fn run_json(root: &Path, args: &[&str]) -> Out {
    let o = run(root, "calibrate", args);
    assert!([0, 1].contains(&o.code), "calibrate {args:?} exited {}: {}", o.code, o.stderr);
    o
}

#[test]
fn every_malformed_grid_weight_constraint_or_profile_is_exit_2_naming_it() {
    let dir = copy_of_pristine();
    let root = dir.path();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        format!("@{}", p.display())
    };
    let bad_yaml = write("g.yaml", "aci.gama: [0.1, 0.2]\n");
    let bad_type = write("g.json", "{\"hysteresis.dwell_pass\": [\"soon\"]}");
    let toml = write("g.toml", "x = 1\n");
    let profile = files.path().join("p.yaml");
    std::fs::write(&profile, "aci:\n  gama: 0.1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--grid", "aci.gama=[0.1]"], "aci.gama"),
        (vec!["--grid", "aci.gamma=[0.1"], "unbalanced"),
        (vec!["--grid", "aci.gamma"], "aci.gamma"),
        (vec!["--grid", &bad_yaml], "aci.gama"),
        (vec!["--grid", &bad_type], "hysteresis.dwell_pass"),
        (vec!["--grid", &toml], "toml"),
        (vec!["--grid", "aci.gamma=[0.1]", "--objective-weights", "w_speed=1"], "w_speed"),
        (vec!["--grid", "aci.gamma=[0.1]", "--hard-constraints", "speed<=3"], "speed"),
        (vec!["--set", "aci.gama=0.1"], "aci.gama"),
        (vec!["--profile", profile.to_str().unwrap()], "aci.gama"),
    ];
    for (args, named) in cases {
        let o = expect(root, "calibrate", &args, 2);
        assert!(o.stderr.contains(named), "{args:?}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
    // Every spec form is accepted: inline without brackets, .txt, .yaml and .json.
    let txt = write("ok.txt", "# one per line\naci.gamma=[0.001,0.01]\nhysteresis.fast_path=[true,false]\n");
    let yaml = write("ok.yaml", "aci.gamma: [0.001, 0.01]\nhysteresis.fast_path: [true, false]\n");
    let json_spec = write("ok.json", "{\"aci.gamma\": [0.001, 0.01], \"hysteresis.fast_path\": [true, false]}");
    let mut tops = Vec::new();
    for spec in ["aci.gamma=0.001,0.01;hysteresis.fast_path=true,false", &txt, &yaml, &json_spec] {
        let v = json(run_json(root, &["--grid", spec, "--json"]));
        assert_eq!(v["grid"]["points"].as_u64(), Some(4), "{spec}: {v}");
        tops.push(v["grid"]["top"].clone());
    }
    assert!(tops.windows(2).all(|w| w[0] == w[1]), "the four forms of one grid rank alike: {tops:?}");
}

/// A monthly item panel: `new_cases` with small noise, then months `drift` with large noise,
/// then small noise again.
fn drifting_panel(data: &Path, months: usize, drift: std::ops::Range<usize>) {
    let mut rng = Rng::new(29);
    let mut csv = String::from("item_code,month,new_cases,region\n");
    for item in 0..40 {
        for m in 0..months {
            let sd = if drift.contains(&m) { 40.0 } else { 2.0 };
            let v = (200.0 + 5.0 * item as f64 + sd * rng.normal()).max(0.0).round();
            csv.push_str(&format!(
                "I{item:03},{}-{:02},{v},{}\n",
                2019 + m / 12,
                m % 12 + 1,
                ["north", "south"][item % 2]
            ));
        }
    }
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("monthly.csv"), csv).unwrap();
}

#[test]
fn a_drift_in_the_later_months_drives_the_state_down_and_recovery_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 84 months: train, calibration and validation blocks end near month 67; the replay
    // covers months 54 on, drifting in 58..66.
    drifting_panel(&data, 84, 58..66);
    let proj = dir.path().join("monthly");
    let file = data.join("monthly.csv");
    expect(dir.path(), "acquire", &["infer", file.to_str().unwrap(), "--out", proj.to_str().unwrap()], 0);
    let root = dir.path().join("root");
    let p = ["--project", proj.to_str().unwrap()];
    let call = |stage: &str, extra: &[&str], code: i32| {
        let args: Vec<&str> = p.iter().chain(extra).copied().collect();
        expect(&root, stage, &args, code)
    };
    call("acquire", &["--input", data.to_str().unwrap()], 0);
    call("audit", &[], 0);
    call("heal", &[], 99);
    call("certify", &[], 0);
    call("certify", &["labels"], 0);
    call("train-suite", &[], 0);
    call("score", &["--t0-from", "2023-07-01T00:00:00Z"], 0);
    let o = run(&root, "calibrate", &[&p[..], &["--initial-state", "PASS", "--json"]].concat());
    assert!([0, 1].contains(&o.code), "{}", o.stderr);
    let v = json(o);
    let l = &v["labels"][0];
    let s = &l["summary"];
    let t = &s["transitions"];
    assert!(l["new_steps"].as_u64().unwrap() > 800, "{l}");
    // Down: PASS → DERISK (and on to BLOCK while the drift lasts) ...
    assert!(t["PASS->DERISK"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(s["derisk_share"].as_f64().unwrap() + s["block_share"].as_f64().unwrap() > 0.05, "{s}");
    // ... and back to PASS once the outcomes are ordinary again.
    let back = t["DERISK->PASS"].as_u64().unwrap_or(0) + t["BLOCK->PASS"].as_u64().unwrap_or(0);
    assert!(back >= 1, "{s}");
    assert_eq!((l["state"].as_str(), v["state"].as_str()), (Some("PASS"), Some("PASS")), "{l}");
    assert!(s["block_rate_by_reason"].as_object().is_some_and(|m| !m.is_empty()), "{s}");
}
