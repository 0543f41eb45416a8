//! acquire on small hand-made sources: every bad-input case lands in the quarantine with
//! file, row, column and reason (or fails the file with exit 4), rows always add up,
//! re-ingest is idempotent, and mappings, formats and time zones are honoured.

use std::path::Path;

use t0_acquire::{AcquireArgs, AcquireReport};
use t0_catalog::Catalog;
use t0_core::{Clock, Error, ExitCode, NoProgress, Root};

const ENTITIES: &str = "entity_id,kind,parent_id,created_at,duration_s
ch1,channel,,2026-01-01 00:00:00,
c1,clip,ch1,2026-01-02 00:00:00,30
c2,clip,ch1,2026-01-02 06:00:00,45
";

struct Env {
    root: tempfile::TempDir,
    input: tempfile::TempDir,
}

impl Env {
    fn new(files: &[(&str, &[u8])]) -> Self {
        let env = Env { root: tempfile::tempdir().unwrap(), input: tempfile::tempdir().unwrap() };
        env.write("entities.csv", ENTITIES.as_bytes());
        for (name, body) in files {
            env.write(name, body);
        }
        env
    }
    fn write(&self, name: &str, body: &[u8]) {
        let p = self.input.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    fn root(&self) -> Root {
        Root::new(self.root.path())
    }
    fn acquire_with(&self, config: Option<&str>) -> Result<AcquireReport, Error> {
        let config = config.map(|yaml| {
            let p = self.input.path().join("mapping.yaml");
            std::fs::write(&p, yaml).unwrap();
            p
        });
        let args = AcquireArgs {
            project: t0_project::Project::builtin(),
            evolve_schema: false,
            input: self.input.path().to_path_buf(),
            config,
            chunk_rows: 1000,
            deny_unmatched: false,
        };
        let clock = Clock::from_arg(Some("2026-03-01T00:00:00Z")).unwrap();
        let r = t0_acquire::run(&self.root(), clock, &args, &NoProgress);
        if let Ok(r) = &r {
            // Row accounting: every input row is ingested, unchanged or quarantined.
            for f in &r.files {
                assert_eq!(f.rows_read, f.rows_ingested + f.rows_unchanged + f.rows_quarantined, "{f:?}");
            }
            assert_eq!(self.count("SELECT count(*) FROM quarantine") as u64, self.quarantined_total());
        }
        r
    }
    fn acquire(&self) -> AcquireReport {
        self.acquire_with(None).unwrap()
    }
    fn catalog(&self) -> Catalog {
        Catalog::open(&self.root()).unwrap()
    }
    fn count(&self, sql: &str) -> i64 {
        self.catalog().conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }
    fn quarantined_total(&self) -> u64 {
        self.count("SELECT coalesce(sum(rows_quarantined), 0) FROM ingest_batches") as u64
    }
    /// (file name, row, column, reason) of every quarantined row, ordered.
    fn quarantine(&self) -> Vec<(String, i64, Option<String>, String)> {
        let cat = self.catalog();
        let mut stmt = cat
            .conn()
            .prepare("SELECT file, row_number, column_name, reason FROM quarantine ORDER BY file, row_number")
            .unwrap();
        stmt.query_map([], |r| {
            let f: String = r.get(0)?;
            Ok((Path::new(&f).file_name().unwrap().to_string_lossy().into_owned(), r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

fn obs(rows: &str) -> Vec<u8> {
    format!("entity_id,observed_at,views,likes,comments,available_at\n{rows}").into_bytes()
}

/// One quarantined row of observations.csv at `row`, naming `column`, with `reason` in it.
fn assert_quarantined(env: &Env, row: i64, column: Option<&str>, reason: &str) {
    let q = env.quarantine();
    let hit = q.iter().find(|(f, r, _, _)| f == "observations.csv" && *r == row);
    let Some((_, _, col, why)) = hit else { panic!("row {row} not quarantined: {q:?}") };
    assert_eq!(col.as_deref(), column, "{q:?}");
    assert!(why.contains(reason), "reason {why:?} lacks {reason:?}");
}

const OK_ROW: &str = "c1,2026-01-02 10:00:00,100,5,1,2026-01-02 11:00:00\n";

#[test]
fn ragged_rows_are_quarantined_with_their_line() {
    let env = Env::new(&[("observations.csv", &obs(&format!("{OK_ROW}c1,2026-01-02 12:00:00,150\n")))]);
    let r = env.acquire();
    assert_quarantined(&env, 3, None, "ragged row: 3 fields, header has 6");
    assert_eq!(r.rows_ingested, 3 + 1);
}

#[test]
fn invalid_utf8_names_the_column() {
    let mut body = obs(OK_ROW);
    body.extend_from_slice(b"c\xff2,2026-01-02 12:00:00,150,5,1,2026-01-02 13:00:00\n");
    let env = Env::new(&[("observations.csv", &body)]);
    env.acquire();
    assert_quarantined(&env, 3, Some("entity_id"), "invalid UTF-8");
}

#[test]
fn unparsable_numbers_and_timestamps_name_the_column() {
    let env = Env::new(&[(
        "observations.csv",
        &obs(&format!(
            "{OK_ROW}c1,2026-01-02 12:00:00,12x,5,1,2026-01-02 13:00:00\nc1,yesterday,1,1,1,2026-01-02 13:00:00\nc1,2026-01-03 12:00:00,1,1.5,1,2026-01-03 13:00:00\n"
        )),
    )]);
    env.acquire();
    assert_quarantined(&env, 3, Some("views"), "not an integer count: \"12x\"");
    assert_quarantined(&env, 4, Some("observed_at"), "not a timestamp: \"yesterday\"");
    assert_quarantined(&env, 5, Some("likes"), "not an integer count");
}

#[test]
fn nan_infinity_and_negative_counts_are_refused() {
    let events = b"entity_id,event_type,value,observed_at
c1,sold,NaN,2026-01-05 00:00:00
c1,sold,inf,2026-01-06 00:00:00
c1,sold,12.5,2026-01-07 00:00:00
";
    let env = Env::new(&[
        ("observations.csv", &obs("c1,2026-01-02 12:00:00,-5,5,1,2026-01-02 13:00:00\n")),
        ("events.csv", events),
    ]);
    let r = env.acquire();
    assert_quarantined(&env, 2, Some("views"), "negative count -5");
    let q = env.quarantine();
    let ev: Vec<_> = q.iter().filter(|(f, _, _, _)| f == "events.csv").collect();
    assert_eq!(ev.len(), 2, "{q:?}");
    assert!(ev.iter().all(|(_, _, c, why)| c.as_deref() == Some("value") && why.contains("not a finite number")));
    assert_eq!(env.count("SELECT count(*) FROM events"), 1);
    assert!(r.rows_quarantined >= 3);
}

#[test]
fn duplicate_keys_within_a_file_keep_the_first() {
    let env = Env::new(&[(
        "observations.csv",
        &obs(&format!("{OK_ROW}{OK_ROW}c1,2026-01-02 10:00:00,999,5,1,2026-01-02 11:00:00\n")),
    )]);
    env.acquire();
    assert_quarantined(&env, 3, None, "duplicate key (entity_id, observed_at)");
    assert_quarantined(&env, 4, None, "duplicate key");
    assert_eq!(env.count("SELECT max(views) FROM observations"), 100);
}

#[test]
fn duplicate_keys_are_caught_across_chunks_of_one_file() {
    let env = Env::new(&[(
        "observations.csv",
        &obs(&format!("{OK_ROW}c2,2026-01-02 10:00:00,1,1,1,2026-01-02 11:00:00\n{OK_ROW}")),
    )]);
    let args = AcquireArgs {
        project: t0_project::Project::builtin(),
        evolve_schema: false,
        input: env.input.path().to_path_buf(),
        config: None,
        chunk_rows: 1,
        deny_unmatched: false,
    };
    let r = t0_acquire::run(&env.root(), Clock::from_arg(Some("2026-03-01T00:00:00Z")).unwrap(), &args, &NoProgress)
        .unwrap();
    let f = r.files.iter().find(|f| f.table == "observations").unwrap();
    assert_eq!((f.chunks, f.rows_ingested, f.rows_quarantined), (3, 2, 1), "{f:?}");
    assert_quarantined(&env, 4, None, "duplicate key");
}

#[test]
fn missing_required_columns_fail_the_file_with_exit_4() {
    let env = Env::new(&[("observations.csv", b"entity_id,views\nc1,5\n")]);
    let e = env.acquire_with(None).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::BadInput);
    let msg = e.to_string();
    assert!(msg.contains("observations.csv") && msg.contains("\"observed_at\""), "{msg}");
}

#[test]
fn unknown_entity_references_are_quarantined() {
    let env = Env::new(&[
        ("observations.csv", &obs(&format!("{OK_ROW}ghost,2026-01-02 10:00:00,1,1,1,2026-01-02 11:00:00\n"))),
        ("interactions.csv", b"source_id,target_id,type,value,observed_at\nch1,c1,promoted,0.5,2026-01-03 00:00:00\nch9,c1,promoted,0.5,2026-01-03 00:00:00\n"),
    ]);
    env.acquire();
    assert_quarantined(&env, 3, None, "unknown entity in entity_id: ghost");
    let q = env.quarantine();
    assert!(
        q.iter().any(|(f, r, _, why)| f == "interactions.csv" && *r == 3 && why.contains("source_id: ch9")),
        "{q:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM interactions"), 1);
}

#[test]
fn empty_files_fail_but_header_only_files_are_fine() {
    let env = Env::new(&[("observations.csv", b"")]);
    let e = env.acquire_with(None).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::BadInput);
    assert!(e.to_string().contains("observations.csv: empty file"), "{e}");

    let env = Env::new(&[("observations.csv", &obs(""))]);
    let r = env.acquire();
    let f = r.files.iter().find(|f| f.table == "observations").unwrap();
    assert_eq!(f.rows_read, 0);
}

#[test]
fn a_multi_megabyte_field_is_quarantined_unless_allowed() {
    let big = "epic ".repeat(600_000); // 3 MB
    let body = format!(
        "entity_id,kind,text,path,observed_at\nc1,title,{big},,2026-01-02 00:00:00\nc2,title,short,,2026-01-02 00:00:00\n"
    );
    let env = Env::new(&[("artifacts.csv", body.as_bytes())]);
    env.acquire();
    let q = env.quarantine();
    assert!(
        q.iter().any(|(f, r, c, why)| f == "artifacts.csv"
            && *r == 2
            && c.as_deref() == Some("text")
            && why.contains("exceeds max_field_bytes")),
        "{q:?}"
    );

    let env = Env::new(&[("artifacts.csv", body.as_bytes())]);
    let yaml = "sources:
  - {name: entities, table: entities, glob: entities.csv, availability: observed_time}
  - {name: artifacts, table: artifacts, glob: artifacts.csv, availability: observed_time, media_root: '.', max_field_bytes: 4000000}
";
    env.acquire_with(Some(yaml)).unwrap();
    assert_eq!(env.count("SELECT max(length(text)) FROM artifacts"), 3_000_000);
}

#[test]
fn artifact_paths_must_stay_inside_the_media_root() {
    let env = Env::new(&[]);
    env.write("media/ok.png", b"\x89PNG fake but readable");
    env.write("secret.txt", b"outside the media root");
    std::fs::create_dir_all(env.input.path().join("media/dir")).unwrap();
    std::os::unix::fs::symlink(env.input.path().join("secret.txt"), env.input.path().join("media/link.png")).unwrap();
    let body = "entity_id,kind,text,path,observed_at
c1,thumbnail,,ok.png,2026-01-02 00:00:00
c2,thumbnail,,../secret.txt,2026-01-02 00:00:00
c1,audio,,/etc/passwd,2026-01-02 00:00:00
c2,audio,,link.png,2026-01-02 00:00:00
c1,poster,,missing.png,2026-01-02 00:00:00
c2,poster,,dir,2026-01-02 00:00:00
";
    env.write("artifacts.csv", body.as_bytes());
    let yaml = "sources:
  - {name: entities, table: entities, glob: entities.csv, availability: observed_time}
  - {name: artifacts, table: artifacts, glob: artifacts.csv, availability: observed_time, media_root: media}
";
    env.acquire_with(Some(yaml)).unwrap();
    let q = env.quarantine();
    let reason = |row: i64| {
        q.iter().find(|(f, r, _, _)| f == "artifacts.csv" && *r == row).map(|x| x.3.clone()).unwrap_or_default()
    };
    assert!(reason(3).contains("climbs out"), "{q:?}");
    assert!(reason(4).contains("absolute"), "{q:?}");
    assert!(reason(5).contains("outside the media root"), "{q:?}");
    assert!(reason(6).contains("cannot be opened"), "{q:?}");
    assert!(reason(7).contains("not a regular file"), "{q:?}");
    let hash: String = env.catalog().conn().query_row("SELECT content_hash FROM artifacts", [], |r| r.get(0)).unwrap();
    assert_eq!(hash, blake3::hash(b"\x89PNG fake but readable").to_hex().to_string());
}

#[test]
fn reingest_is_idempotent_and_changes_become_versions() {
    let env = Env::new(&[("observations.csv", &obs(OK_ROW))]);
    env.acquire();
    let again = env.acquire_with(None).unwrap_err();
    assert_eq!(again.exit_code(), ExitCode::NothingToDo);
    // A new file: one identical fact (unchanged), a second row with the same key (duplicate
    // within the file) and one new fact.
    env.write(
        "observations-2.csv",
        &obs(&format!("{OK_ROW}c1,2026-01-02 10:00:00,100,6,1,2026-01-04 00:00:00\nc2,2026-01-03 00:00:00,7,0,0,2026-01-03 01:00:00\n")),
    );
    let r = env.acquire();
    let f = r.files.iter().find(|f| f.file.ends_with("observations-2.csv")).unwrap();
    assert_eq!((f.rows_unchanged, f.rows_quarantined, f.rows_ingested), (1, 1, 1), "{f:?}");
    assert!(r.files.iter().filter(|f| !f.file.ends_with("observations-2.csv")).all(|f| f.skipped_already_ingested));
    // A later file corrects a fact: a new version, the old one kept.
    env.write("observations-3.csv", &obs("c1,2026-01-02 10:00:00,100,6,1,2026-01-04 00:00:00\n"));
    env.acquire();
    let versions: Vec<(i32, i64)> = {
        let cat = env.catalog();
        let mut st = cat
            .conn()
            .prepare("SELECT version, likes FROM observations WHERE entity_id = 'c1' ORDER BY version")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(versions, vec![(1, 5), (2, 6)]);
    assert_eq!(env.root.path().join("lake/raw/observations").read_dir().unwrap().count(), 3);
}

#[test]
fn mappings_formats_and_time_zones() {
    let env = Env::new(&[]);
    env.write(
        "views.ndjson",
        br#"{"clip": "c1", "at": "02.01.2026 10:00", "n": 100}
{"clip": "c2", "at": "02.01.2026 11:00", "n": null}

not json
"#,
    );
    let yaml = r#"sources:
  - {name: entities, table: entities, glob: entities.csv, availability: observed_time, attributes: [duration_s]}
  - name: views
    table: observations
    glob: "*.ndjson"
    columns: {entity_id: clip, observed_at: at, views: n}
    timestamp_format: "%d.%m.%Y %H:%M"
    timezone: Europe/Berlin
    availability: observed_time + 30m
"#;
    let r = env.acquire_with(Some(yaml)).unwrap();
    let f = r.files.iter().find(|f| f.source == "views").unwrap();
    assert_eq!((f.rows_read, f.rows_ingested, f.rows_quarantined), (3, 2, 1), "{f:?}");
    let (obs_at, avail): (String, String) = env
        .catalog()
        .conn()
        .query_row(
            "SELECT CAST(observed_at AS VARCHAR), CAST(available_at AS VARCHAR) FROM observations WHERE entity_id = 'c1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // 10:00 in Berlin in January is 09:00 UTC.
    assert_eq!((obs_at.as_str(), avail.as_str()), ("2026-01-02 09:00:00", "2026-01-02 09:30:00"));
    let attrs: String =
        env.catalog().conn().query_row("SELECT attrs FROM entities WHERE entity_id = 'c2'", [], |r| r.get(0)).unwrap();
    assert_eq!(attrs, r#"{"duration_s":"45"}"#);
}

#[test]
fn parquet_sources_are_read_through_the_same_checks() {
    let env = Env::new(&[]);
    // Write a Parquet source with DuckDB itself.
    let out = env.input.path().join("obs.parquet");
    let cat = Catalog::in_memory().unwrap();
    cat.conn()
        .execute_batch(&format!(
            "COPY (SELECT * FROM (VALUES ('c1', TIMESTAMP '2026-01-02 10:00:00', 10), ('c2', TIMESTAMP '2026-01-02 10:00:00', -1))
                   t(entity_id, observed_at, views)) TO '{}' (FORMAT parquet)",
            out.display()
        ))
        .unwrap();
    let yaml = "sources:
  - {name: entities, table: entities, glob: entities.csv, availability: observed_time}
  - {name: obs, table: observations, glob: '*.parquet', availability: ingest_time}
";
    let r = env.acquire_with(Some(yaml)).unwrap();
    let f = r.files.iter().find(|f| f.source == "obs").unwrap();
    assert_eq!((f.rows_ingested, f.rows_quarantined), (1, 1), "{f:?}");
    let avail: String = env
        .catalog()
        .conn()
        .query_row("SELECT CAST(available_at AS VARCHAR) FROM observations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(avail, "2026-03-01 00:00:00", "ingest_time is the (pinned) clock");
}

#[test]
fn malformed_mappings_fail_before_any_file_is_read() {
    let env = Env::new(&[("observations.csv", &obs(OK_ROW))]);
    let e = env
        .acquire_with(Some("sources:\n  - {name: x, table: nope, glob: a.csv, availability: observed_time}\n"))
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    assert!(e.to_string().contains("sources[0] (x): table: unknown canonical table \"nope\""), "{e}");
    let e = env
        .acquire_with(Some("sources:\n  - {name: x, table: events, glob: a.csv, availability: whenever}\n"))
        .unwrap_err();
    assert!(e.to_string().contains("availability"), "{e}");
    let e = env.acquire_with(Some("sources:\n  - name: x\n    tabel: events\n")).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    assert!(e.to_string().contains("mapping.yaml") && e.to_string().contains("line 3"), "{e}");
    assert!(!env.root.path().join("catalog.duckdb").exists(), "nothing may be written");
}
