//! Certification as a gate: forbidden SQL, the sandbox, the red team and the replay check.

use std::path::Path;

use crate::support::*;

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
                // Passing already (99: nothing new since the first audit), or after heal.
                assert!([0, 99].contains(&run(dir.path(), "audit", &p).code));
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
