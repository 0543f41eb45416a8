//! Every contract check type against data that passes and data that fails, and malformed
//! contracts refused with file, line and problem before any check runs.

use std::path::Path;

use t0_acquire::AcquireArgs;
use t0_audit::{AuditArgs, AuditReport};
use t0_core::{Clock, Error, ExitCode, NoProgress, Root};

struct Env {
    root: tempfile::TempDir,
    contracts: tempfile::TempDir,
}

const ENTITIES: &str = "entity_id,kind,parent_id,created_at
ch1,channel,,2026-01-01 00:00:00
c1,clip,ch1,2026-01-02 00:00:00
c2,clip,ch1,2026-01-02 00:00:00
c3,clip,ch9,2026-01-02 00:00:00
";
// c1 regresses (100 -> 80); c2 is captured twice within 30 s, and one row arrives 15 days late.
const OBSERVATIONS: &str = "entity_id,observed_at,views,likes,comments,available_at
c1,2026-01-03 00:00:00,100,0,0,2026-01-03 01:00:00
c1,2026-01-04 00:00:00,80,0,0,2026-01-04 01:00:00
c2,2026-01-03 00:00:00,10,0,0,2026-01-03 01:00:00
c2,2026-01-03 00:00:30,10,0,0,2026-01-03 01:00:00
c2,2026-01-05 00:00:00,20,0,0,2026-01-20 00:00:00
";
// c1 is removed and then live again; c2 is sold last.
const EVENTS: &str = "entity_id,event_type,value,observed_at
c1,removed,,2026-01-05 00:00:00
c1,live,,2026-01-06 00:00:00
c2,sold,9.5,2026-01-07 00:00:00
";

fn env() -> Env {
    let input = tempfile::tempdir().unwrap();
    for (name, body) in [("entities.csv", ENTITIES), ("observations.csv", OBSERVATIONS), ("events.csv", EVENTS)] {
        std::fs::write(input.path().join(name), body).unwrap();
    }
    let env = Env { root: tempfile::tempdir().unwrap(), contracts: tempfile::tempdir().unwrap() };
    env.acquire(input.path(), clock());
    env
}

fn clock() -> Clock {
    Clock::from_arg(Some("2026-02-01T00:00:00Z")).unwrap()
}

/// Audit arguments: the shipped contracts unless `contracts` names a folder.
fn args(contracts: Option<&Path>, sample: usize, as_of: Option<&str>) -> AuditArgs {
    AuditArgs {
        project: t0_project::Project::builtin(),
        sample,
        contracts: contracts.map(Path::to_path_buf),
        as_of: as_of.map(str::to_string),
        rebaseline: false,
    }
}

impl Env {
    /// Acquire the CSV files in `input` into this root (one more batch).
    fn acquire(&self, input: &Path, at: Clock) {
        let args = AcquireArgs {
            project: t0_project::Project::builtin(),
            evolve_schema: false,
            input: input.to_path_buf(),
            config: None,
            chunk_rows: 1000,
            deny_unmatched: false,
        };
        t0_acquire::run(&Root::new(self.root.path()), at, &args, &NoProgress).unwrap();
    }
    fn audit(&self, contract: &str, as_of: Option<&str>) -> Result<AuditReport, Error> {
        for e in std::fs::read_dir(self.contracts.path()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        std::fs::write(self.contracts.path().join("c.yaml"), contract).unwrap();
        self.run(&args(Some(self.contracts.path()), 5, as_of))
    }
    fn run(&self, args: &AuditArgs) -> Result<AuditReport, Error> {
        t0_audit::run(&Root::new(self.root.path()), clock(), args, &NoProgress)
    }

    /// Failing count of the single check in `contract`.
    fn failing(&self, contract: &str, as_of: Option<&str>) -> u64 {
        let r = self.audit(contract, as_of).unwrap_or_else(|e| panic!("{contract}\n{e}"));
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(r.verdict, if f.failing > 0 { t0_core::Verdict::Fail } else { t0_core::Verdict::Pass });
        f.failing
    }
}

fn c(table: &str, check: &str) -> String {
    format!("table: {table}\nchecks:\n  - {check}\n")
}

#[test]
fn every_check_type_passes_and_fails() {
    let env = env();
    let cases: &[(&str, &str, Option<&str>, u64)] = &[
        ("entities", "{type: not_null, columns: [entity_id, kind]}", None, 0),
        ("entities", "{type: not_null, columns: [parent_id]}", None, 1),
        ("entities", "{type: unique, columns: [entity_id]}", None, 0),
        ("entities", "{type: unique, columns: [parent_id]}", None, 1),
        ("entities", "{type: allowed_values, column: kind, values: [channel, clip]}", None, 0),
        ("entities", "{type: allowed_values, column: kind, values: [clip]}", None, 1),
        ("observations", "{type: range, column: views, min: 0}", None, 0),
        ("observations", "{type: range, column: views, max: 50}", None, 2),
        ("entities", "{type: regex, column: entity_id, pattern: 'c[0-9]+|ch[0-9]+'}", None, 0),
        ("entities", "{type: regex, column: entity_id, pattern: 'c[0-9]+'}", None, 1),
        ("observations", "{type: references, column: entity_id, table: entities, key: entity_id}", None, 0),
        ("entities", "{type: references, column: parent_id, table: entities, key: entity_id}", None, 1),
        (
            "observations",
            "{type: freshness, column: available_at, max_age_hours: 720}",
            Some("2026-01-25T00:00:00Z"),
            0,
        ),
        ("observations", "{type: freshness, column: available_at, max_age_hours: 24}", Some("2026-01-25T00:00:00Z"), 1),
        ("observations", "{type: lateness, max_lag_hours: 1000}", None, 0),
        ("observations", "{type: lateness, max_lag_hours: 240}", None, 1),
        ("observations", "{type: future_timestamps}", Some("2026-06-01T00:00:00Z"), 0),
        ("observations", "{type: future_timestamps}", Some("2026-01-04T12:00:00Z"), 1),
        ("observations", "{type: monotonic, key: [entity_id], order: observed_at, columns: [likes]}", None, 0),
        ("observations", "{type: monotonic, key: [entity_id], order: observed_at, columns: [views, likes]}", None, 1),
        (
            "observations",
            "{type: duplicate_snapshots, key: [entity_id], order: observed_at, columns: [views], within_seconds: 10}",
            None,
            0,
        ),
        (
            "observations",
            "{type: duplicate_snapshots, key: [entity_id], order: observed_at, columns: [views]}",
            None,
            1,
        ),
        (
            "events",
            "{type: status_transitions, key: [entity_id], order: observed_at, column: event_type, terminal: [sold]}",
            None,
            0,
        ),
        (
            "events",
            "{type: status_transitions, key: [entity_id], order: observed_at, column: event_type, terminal: [removed, sold]}",
            None,
            1,
        ),
        ("observations", "{type: sql, query: 'SELECT entity_id FROM observations WHERE views > 1000'}", None, 0),
        (
            "observations",
            "{type: sql, query: 'WITH v AS (SELECT * FROM observations) SELECT entity_id FROM v WHERE views > 90'}",
            None,
            1,
        ),
    ];
    for (table, check, as_of, want) in cases {
        assert_eq!(env.failing(&c(table, check), *as_of), *want, "{table}: {check}");
    }

    // All together, one contract per table: checks over the same rows share a scan (and
    // windowed ones their partition), and each still finds exactly what it finds alone.
    let together: Vec<(usize, &str, &str, u64)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.2.is_none())
        .map(|(i, (t, check, _, want))| (i, *t, *check, *want))
        .collect();
    for e in std::fs::read_dir(env.contracts.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for table in ["entities", "observations", "events"] {
        let checks: String = together
            .iter()
            .filter(|c| c.1 == table)
            .map(|(i, _, check, _)| format!("  - {{name: case{i}, {}\n", &check[1..]))
            .collect();
        std::fs::write(
            env.contracts.path().join(format!("{table}.yaml")),
            format!("table: {table}\nchecks:\n{checks}"),
        )
        .unwrap();
    }
    let r = env.run(&args(Some(env.contracts.path()), 5, None)).unwrap();
    assert_eq!(r.findings.len(), together.len());
    for (i, table, check, want) in &together {
        let f = r.findings.iter().find(|f| f.check == format!("case{i}")).unwrap();
        assert_eq!((f.table.as_str(), f.failing), (*table, *want), "together: {check}");
        assert_eq!(f.sample.len() as u64, (*want).min(5));
    }
}

#[test]
fn a_fact_is_late_by_when_it_was_first_known_not_by_its_newest_version() {
    let env = env();
    // A second batch revises c1's first snapshot 26 days after it was observed: the current
    // version is late, but the fact was known an hour after it was observed.
    let input = tempfile::tempdir().unwrap();
    std::fs::write(
        input.path().join("observations.csv"),
        "entity_id,observed_at,views,likes,comments,available_at\nc1,2026-01-03 00:00:00,101,0,0,2026-01-29 00:00:00\n",
    )
    .unwrap();
    env.acquire(input.path(), Clock::from_arg(Some("2026-02-02T00:00:00Z")).unwrap());
    let r = env.audit(&c("observations", "{type: lateness, max_lag_hours: 240}"), None).unwrap();
    assert_eq!(r.findings[0].failing, 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].sample, vec!["c2|2026-01-05 00:00:00".to_string()]);
    let r = env.audit(&c("observations", "{type: lateness, max_lag_hours: 240, all_versions: true}"), None).unwrap();
    assert_eq!(r.findings[0].failing, 2, "every late stored row: {:?}", r.findings);
}

#[test]
fn samples_are_capped_but_counts_are_not() {
    let env = env();
    let r = env.audit(&c("observations", "{type: range, column: views, max: 0}"), None).unwrap();
    let f = &r.findings[0];
    assert_eq!(f.failing, 5);
    let r = env.run(&args(Some(env.contracts.path()), 2, None)).unwrap();
    assert_eq!((r.findings[0].failing, r.findings[0].sample.len()), (5, 2));
    assert!(f.defined_at.ends_with("c.yaml:3"), "{}", f.defined_at);
}

#[test]
fn warn_level_failures_do_not_fail_the_verdict() {
    let env = env();
    let r = env.audit(&c("entities", "{type: not_null, columns: [parent_id], severity: warn}"), None).unwrap();
    assert_eq!((r.verdict, r.errors, r.warnings), (t0_core::Verdict::Pass, 0, 1));
}

/// A malformed contract exits 2 naming file and line, and nothing is recorded.
fn refused(env: &Env, contract: &str, line: usize, needle: &str) {
    let e = env.audit(contract, None).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("c.yaml: line {line}: ")), "{msg}");
    assert!(msg.contains(needle), "{msg} lacks {needle}");
}

#[test]
fn malformed_contracts_are_refused_before_any_check_runs() {
    let env = env();
    let head = "table: observations\nchecks:\n  - {type: not_null, columns: [entity_id]}\n";
    refused(&env, &format!("{head}  - {{type: range, column: viewz, min: 0}}\n"), 4, "unknown column \"viewz\"");
    refused(&env, &format!("{head}  - {{type: regex, column: entity_id, pattern: 'c[0-9'}}\n"), 4, "bad regex");
    refused(&env, &format!("{head}  - {{type: sql, query: 'DELETE FROM observations'}}\n"), 4, "single SELECT");
    refused(
        &env,
        &format!("{head}  - {{type: sql, query: 'SELECT 1; DROP TABLE observations'}}\n"),
        4,
        "single SELECT",
    );
    // Contract SQL reads the catalog only: no file, whichever way it is named.
    for q in [
        "SELECT * FROM read_csv(''/etc/passwd'')",
        "SELECT * FROM ''/etc/passwd''",
        "SELECT (SELECT content FROM read_text(''/etc/hostname'')) AS t",
    ] {
        refused(&env, &format!("{head}  - {{type: sql, query: '{q}'}}\n"), 4, "custom SQL does not prepare");
    }
    refused(
        &env,
        &format!(
            "{head}  - {{type: metric, metric: m, expr: \"max(views) + (SELECT count(*) FROM read_text('/etc/hostname'))\"}}\n"
        ),
        4,
        "not a valid aggregate",
    );
    refused(&env, &format!("{head}  - {{type: nonsense, column: views}}\n"), 4, "unknown variant `nonsense`");
    refused(&env, &format!("{head}  - {{type: range, column: views, minimum: 0}}\n"), 4, "unknown field `minimum`");
    refused(&env, "table: nothing_here\nchecks: []\n", 1, "unknown table");
    refused(
        &env,
        "table: observations\ncolumns: {views: VARCHAR}\nchecks: []\n",
        1,
        "views is BIGINT, the contract expects VARCHAR",
    );
    let cat = t0_catalog::Catalog::open(&Root::new(env.root.path())).unwrap();
    let n: i64 = cat.conn().query_row("SELECT count(*) FROM audit_findings", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0, "a refused contract must not record findings");
}

#[test]
fn the_shipped_contracts_are_valid_and_find_the_fixture_defects() {
    let env = env();
    let r = env.run(&args(None, 5, None)).unwrap();
    let failing = |name: &str| r.findings.iter().filter(|f| f.check == name).map(|f| f.failing).sum::<u64>();
    assert_eq!(failing("monotonic_counter"), 1);
    assert_eq!(failing("revived_after_terminal"), 1);
    assert_eq!(failing("orphan_parent"), 1);
    assert_eq!(r.verdict, t0_core::Verdict::Fail);
}

#[test]
fn anomalies_and_drift_compare_with_earlier_runs() {
    let input = tempfile::tempdir().unwrap();
    let opt = t0_clips_gen::GenerateOptions { entities: 300, media: 0, ..Default::default() };
    t0_clips_gen::generate(input.path(), &opt, &NoProgress).unwrap();
    let env = Env { root: tempfile::tempdir().unwrap(), contracts: tempfile::tempdir().unwrap() };
    let root = Root::new(env.root.path());
    let acquire = || {
        let args = AcquireArgs {
            project: t0_project::Project::builtin(),
            evolve_schema: false,
            input: input.path().to_path_buf(),
            config: None,
            chunk_rows: 100_000,
            deny_unmatched: false,
        };
        t0_acquire::run(&root, clock(), &args, &NoProgress).unwrap();
    };
    acquire();
    let contract = "table: observations
checks:
  - {type: row_count, max_rel_change: 0.5, max_z: 3}
  - {type: metric, metric: mean_log_views, expr: 'avg(ln(1 + views))', max_abs_change: 0.5}
  - {type: drift, column: views, max_psi: 0.25, max_ks: 0.2}
";
    let by = |r: &AuditReport| r.findings.iter().map(|f| (f.failing, f.skipped.is_some())).collect::<Vec<_>>();

    // First run: nothing to compare with; history and baseline are taken.
    let r1 = env.audit(contract, None).unwrap();
    assert_eq!(by(&r1), vec![(0, true), (0, true), (0, true)], "{:?}", r1.findings);

    // A few ordinary rows: within every limit.
    let rows = |n: usize, views: i64, month: u32| -> String {
        let mut s = String::from("entity_id,observed_at,views,likes,comments,available_at\n");
        for i in 0..n {
            let (d, h) = (1 + i / 24 % 28, i % 24);
            s += &format!(
                "clip{:07},2026-{month:02}-{d:02} {h:02}:00:00,{views},0,0,2026-{month:02}-{d:02} {h:02}:30:00\n",
                i % 300
            );
        }
        s
    };
    std::fs::write(input.path().join("observations-b.csv"), rows(10, 400, 6)).unwrap();
    acquire();
    let r2 = env.audit(contract, None).unwrap();
    assert_eq!(by(&r2), vec![(0, false), (0, false), (0, false)], "{:?}", r2.findings);

    // Thousands of rows with enormous counts: the count jumps, the mean moves, the
    // distribution drifts.
    std::fs::write(input.path().join("observations-c.csv"), rows(3000, 100_000_000, 7)).unwrap();
    acquire();
    let r3 = env.audit(contract, None).unwrap();
    let f = &r3.findings;
    assert_eq!(f[0].failing, 1, "{:?}", f[0]);
    assert!(f[0].sample[0].contains("relative change"), "{:?}", f[0]);
    assert_eq!(f[1].failing, 1, "{:?}", f[1]);
    assert_eq!(f[2].failing, 2, "PSI and KS both: {:?}", f[2]);
    assert_eq!(r3.verdict, t0_core::Verdict::Fail);
}

#[test]
fn every_failing_row_is_recorded_the_same_way_on_the_same_data() {
    let rows = |env: &Env| -> Vec<(String, String, String)> {
        let r = env.run(&args(None, 1, None)).unwrap();
        let cat = t0_catalog::Catalog::open(&Root::new(env.root.path())).unwrap();
        let mut stmt = cat
            .conn()
            .prepare("SELECT table_name, check_name, row_key FROM audit_failing WHERE run_id = ? ORDER BY ALL")
            .unwrap();
        let out: Vec<(String, String, String)> = stmt
            .query_map([&r.run_id], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        // Counts are exact and every row-naming finding lists all its rows, not just the sample.
        let n = |table: &str, check: &str| out.iter().filter(|x| x.0 == table && x.1 == check).count() as u64;
        assert_eq!(n("observations", "monotonic_counter"), 1);
        assert_eq!(n("events", "revived_after_terminal"), 1);
        for f in r.findings.iter().filter(|f| f.failing > 0 && f.check != "clip_without_title") {
            assert_eq!(n(&f.table, &f.check), f.failing, "{}", f.check);
        }
        out
    };
    let (a, b) = (env(), env());
    let first = rows(&a);
    assert!(!first.is_empty());
    assert_eq!(first, rows(&b), "same data, same failing rows");
}
