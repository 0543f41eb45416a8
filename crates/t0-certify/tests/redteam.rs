//! The leakage red team.
//! 1. Facts from after T0 — rows observed after every T0, rows observed before T0 but known
//!    only after every T0, and heal repairs made after every T0 of rows visible at T0 — leave
//!    every certified feature value identical. The same attack on a store whose as-of view
//!    drops the availability filter changes values: the test can fail.
//! 2. (in crates/t0-cli/tests/it/certify.rs) a block reading a label object or the clock fails.
//! 3. On random small histories (versions, tombstones, late rows), every base and history
//!    value equals a brute-force as-of computation written here, independently of the SQL.
//!
//! Also: labels, the SLA gate, drift in strict and tolerant stores, and the priors store's exact
//! weighted sums against plain float sums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use t0_acquire::AcquireArgs;
use t0_audit::AuditArgs;
use t0_catalog::Catalog;
use t0_certify::sandbox::{self, Policy, Session};
use t0_certify::{CertifyArgs, CertifyConfig, Closure, GridMode};
use t0_core::rng::SplitMix as Rng;
use t0_core::{Clock, NoProgress, Root, Verdict};

fn clock(at: &str) -> Clock {
    Clock::from_arg(Some(at)).unwrap()
}

fn audit(root: &Root, at: &str) -> Verdict {
    let args = AuditArgs {
        project: t0_project::Project::builtin(),
        sample: 3,
        contracts: None,
        as_of: Some(at.into()),
        rebaseline: false,
    };
    t0_audit::run(root, clock(at), &args, &NoProgress).unwrap().verdict
}

/// Audit, heal while the audit fails, until it passes.
fn audit_heal(root: &Root, at: &str) {
    for _ in 0..3 {
        if audit(root, at) == Verdict::Pass {
            return;
        }
        let args = t0_heal::HealArgs::default();
        t0_heal::run(root, clock(at), &args, &NoProgress).unwrap();
    }
    panic!("audit still fails after heal");
}

/// `entities` generated clips (no media), acquired, audited and healed at 2026-04-01; the temp
/// directories live as long as the first value.
fn healed_clips(entities: u64) -> ([tempfile::TempDir; 2], Root, &'static str) {
    let data = tempfile::tempdir().unwrap();
    let opt = t0_clips_gen::GenerateOptions { entities, media: 0, ..Default::default() };
    t0_clips_gen::generate(data.path(), &opt, &NoProgress).unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::new(root_dir.path());
    let at = "2026-04-01T00:00:00Z";
    let args = AcquireArgs {
        project: t0_project::Project::builtin(),
        evolve_schema: false,
        input: data.path().to_path_buf(),
        config: None,
        chunk_rows: 100_000,
        deny_unmatched: false,
    };
    t0_acquire::run(&root, clock(at), &args, &NoProgress).unwrap();
    audit_heal(&root, at);
    ([data, root_dir], root, at)
}

fn certify(root: &Root, at: &str, stores: Option<&Path>, rebaseline: bool) -> t0_certify::CertifyReport {
    let args = CertifyArgs {
        project: t0_project::Project::builtin(),
        config: None,
        stores_dir: stores.map(Path::to_path_buf),
        rebaseline,
    };
    t0_certify::run(root, clock(at), &args, &NoProgress).unwrap()
}

fn surfaces(root: &Root, r: &t0_certify::CertifyReport) -> BTreeMap<String, PathBuf> {
    r.stores.iter().filter_map(|s| Some((s.entrypoint.clone(), root.join(s.path.as_ref()?)))).collect()
}

/// An in-memory catalog with the clips project's measures.
fn clips_catalog() -> Catalog {
    let cat = Catalog::in_memory().unwrap();
    t0_project::schema::ensure(&cat, &t0_project::Project::builtin(), false, "2026-01-01T00:00:00Z").unwrap();
    cat
}

/// Rows of `before` that `after` does not reproduce exactly (same key, same values).
fn changed_rows(before: &Path, after: &Path) -> u64 {
    let cat = Catalog::in_memory().unwrap();
    let q = |p: &Path| t0_catalog::quote_literal(&p.display().to_string());
    cat.conn()
        .query_row(
            &format!(
                "SELECT count(*) FROM (SELECT * FROM read_parquet({}) EXCEPT SELECT * FROM read_parquet({}))",
                q(before),
                q(after)
            ),
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
}

/// Append CSV rows to a new source file (acquire ingests each file once).
fn write_source(dir: &Path, name: &str, header: &str, rows: &[String]) {
    let mut body = format!("{header}\n");
    for r in rows {
        body.push_str(r);
        body.push('\n');
    }
    std::fs::write(dir.join(name), body).unwrap();
}

struct Attack {
    changed: BTreeMap<String, u64>,
    compared: BTreeMap<String, u64>,
    second: t0_certify::CertifyReport,
    /// The attacked root (and the data directory), kept for further certify runs.
    root: Root,
    _dirs: [tempfile::TempDir; 2],
}

/// Certify a generated history, inject facts from after every T0, repair after every T0,
/// certify again, and count the rows of the first surfaces that changed.
fn attack(stores: Option<&Path>) -> Attack {
    let data = tempfile::tempdir().unwrap();
    let opt = t0_clips_gen::GenerateOptions { entities: 300, media: 0, ..Default::default() };
    t0_clips_gen::generate(data.path(), &opt, &NoProgress).unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::new(root_dir.path());
    let t1 = "2026-04-01T00:00:00Z";
    let acquire = |at: &str| {
        let args = AcquireArgs {
            project: t0_project::Project::builtin(),
            evolve_schema: false,
            input: data.path().to_path_buf(),
            config: None,
            chunk_rows: 100_000,
            deny_unmatched: false,
        };
        t0_acquire::run(&root, clock(at), &args, &NoProgress).unwrap();
    };
    acquire(t1);
    audit_heal(&root, t1);
    let first = certify(&root, t1, stores, false);
    assert_eq!(first.status, Verdict::Certified, "{:?}", first.stores);
    let before = surfaces(&root, &first);

    // Every T0 and every availability so far lie before `after`.
    let cat = Catalog::open(&root).unwrap();
    let grid: Vec<(String, String, String)> = {
        let mut stmt = cat
            .conn()
            .prepare(
                "SELECT e.entity_id, CAST(min(e.observed_at) AS VARCHAR),
                        CAST((SELECT max(available_at) FROM observations) AS VARCHAR)
                 FROM entities e WHERE e.kind = 'clip' GROUP BY e.entity_id ORDER BY 1",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    drop(cat);
    let after = "2026-06-01 00:00:00";
    assert!(grid.iter().all(|(_, _, horizon)| horizon.as_str() < after));
    let mut rows = Vec::new();
    for (i, (id, created, _)) in grid.iter().enumerate() {
        // (b) observed an hour after creation, before T0, known only after every T0; its huge
        //     count also makes heal carry it forward onto the snapshots visible at T0 (c).
        rows.push(format!("{id},{},1000000000,0,0,{after},live", shift(created, 1)));
        // (a) observed and known after every T0.
        if i % 2 == 0 {
            rows.push(format!("{id},2026-06-02 00:00:00,2000000000,0,0,2026-06-02 01:00:00,live"));
        }
    }
    write_source(
        data.path(),
        "observations-late.csv",
        "entity_id,observed_at,views,likes,comments,available_at,status",
        &rows,
    );
    let t2 = "2026-06-10T00:00:00Z";
    acquire(t2);
    audit_heal(&root, t2);
    let cat = Catalog::open(&root).unwrap();
    let repaired: i64 = cat
        .conn()
        .query_row("SELECT count(*) FROM heal_ledger WHERE patched_at >= TIMESTAMP '2026-06-10 00:00:00'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(repaired > 0, "the attack should make heal repair rows after T0");
    drop(cat);
    let second = certify(&root, t2, stores, stores.is_some());
    let after_paths = surfaces(&root, &second);
    let mut changed = BTreeMap::new();
    let mut compared = BTreeMap::new();
    for (entry, path) in &before {
        let Some(other) = after_paths.get(entry) else { continue };
        changed.insert(entry.clone(), changed_rows(path, other));
        compared.insert(
            entry.clone(),
            t0_table::read_parquet(path).map(|(_, b)| b.iter().map(|b| b.num_rows() as u64).sum()).unwrap(),
        );
    }
    Attack { changed, compared, second, root, _dirs: [data, root_dir] }
}

fn shift(ts: &str, hours: i64) -> String {
    let t = t0_core::clock::parse_utc(ts).unwrap() + chrono::Duration::hours(hours);
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[test]
fn facts_from_after_t0_change_no_certified_value() {
    let a = attack(None);
    assert_eq!(a.second.status, Verdict::Certified, "strict stores saw drift: {:?}", a.second.stores);
    for (entry, n) in &a.changed {
        assert!(a.compared[entry] >= 300, "{entry}: only {} rows compared", a.compared[entry]);
        assert_eq!(*n, 0, "{entry}: {n} of {} rows changed after the attack", a.compared[entry]);
    }
    // Certify's own replay check compared every row of the first run and found none changed.
    for s in &a.second.stores {
        let r = s.replay.as_ref().unwrap_or_else(|| panic!("{}: no replay check", s.entrypoint));
        assert_eq!(r.compared, a.compared[&s.entrypoint], "{}: {r:?}", s.entrypoint);
        assert!(!r.differs(), "{}: {r:?}", s.entrypoint);
    }
}

/// The clips stores with `obs_asof` replaced by a view that forgets availability: the newest
/// version of every snapshot observed by T0, whenever it became known.
fn leaky_stores() -> tempfile::TempDir {
    let leaky = "CREATE OR REPLACE TEMP VIEW leaky_obs AS
        SELECT g.entity_id, g.t0, o.* EXCLUDE (entity_id, known_from, known_to)
        FROM t0_grid g JOIN observations_history o
          ON o.entity_id = g.entity_id AND o.observed_at <= g.t0 AND o.known_to IS NULL;\n";
    store_copy(|name, sql| match name {
        "base.sql" | "history.sql" => format!("{leaky}{}", sql.replace("FROM obs_asof", "FROM leaky_obs")),
        _ => sql,
    })
}

#[test]
fn the_replay_check_fails_a_store_that_reads_past_its_t0() {
    let stores = leaky_stores();
    let a = attack(Some(stores.path()));
    assert_eq!(a.second.status, Verdict::Failed);
    for entry in ["base", "history"] {
        let s = store(&a.second, entry);
        assert_eq!(s.status, Verdict::Failed, "{entry}: {:?}", s.notes);
        let r = s.replay.as_ref().unwrap();
        assert!(r.changed > 0, "{entry}: {r:?}");
        let notes = s.notes.join("; ");
        assert!(notes.contains("replay of certify run") && notes.contains("changed"), "{notes}");
        assert!(notes.contains(" @ 2026-"), "the note names rows: {notes}");
    }
    assert!(store(&a.second, "base").replay.as_ref().unwrap().columns.contains_key("views_t0"));
    // Stores that never read the leaky view replay cleanly.
    for entry in ["modality", "text"] {
        assert_eq!(store(&a.second, entry).status, Verdict::Certified, "{entry}");
    }
    // A project that declares why a store may change the past gets the difference recorded
    // with its reason, not a failure.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips/certify.yaml"))
            .unwrap()
            .replace(
                "files: [asof.sql, base.sql], strict: true",
                "files: [asof.sql, base.sql], strict: false, may_change_past: restated counts",
            )
            .replace(
                "files: [asof.sql, history.sql], strict: true",
                "files: [asof.sql, history.sql], strict: false, may_change_past: restated counts",
            );
    let cfg = stores.path().join("certify.yaml");
    std::fs::write(&cfg, shipped).unwrap();
    let args = CertifyArgs {
        project: t0_project::Project::builtin(),
        config: Some(cfg),
        stores_dir: Some(stores.path().to_path_buf()),
        rebaseline: false,
    };
    let r = t0_certify::run(&a.root, clock("2026-06-10T00:00:00Z"), &args, &NoProgress).unwrap();
    let base = store(&r, "base");
    assert_eq!(base.status, Verdict::Certified, "{:?}", base.notes);
    assert!(base.replay.as_ref().unwrap().changed > 0);
    assert!(base.notes.join("; ").contains("the project declares why: restated counts"), "{:?}", base.notes);
}

#[test]
fn a_store_that_adds_or_drops_decisions_fails() {
    let (_dirs, root, at) = healed_clips(120);
    // The text store keeps only half of the grid's rows; the base store doubles one.
    let edited = store_copy(|name, sql| match name {
        "text.sql" => format!(
            "{}\nCREATE OR REPLACE TEMP VIEW surface_text AS SELECT * FROM text_all WHERE hash(entity_id) % 2 = 0;\n",
            sql.replace("VIEW surface_text", "VIEW text_all")
        ),
        "base.sql" => format!(
            "{}\nCREATE OR REPLACE TEMP VIEW surface_base AS SELECT * FROM base_all UNION ALL (SELECT * FROM base_all LIMIT 1);\n",
            sql.replace("VIEW surface_base", "VIEW base_all")
        ),
        _ => sql,
    });
    let r = certify(&root, at, Some(edited.path()), false);
    assert_eq!(r.status, Verdict::Failed);
    for (entry, what) in [("text", "grid keys missing"), ("base", "1 duplicate rows")] {
        let s = store(&r, entry);
        assert_eq!(s.status, Verdict::Failed, "{entry}");
        let notes = s.notes.join("; ");
        assert!(notes.contains("is not one row per grid (entity, T0)") && notes.contains(what), "{entry}: {notes}");
    }
    assert_eq!(store(&r, "history").status, Verdict::Certified);
}

// --- 3. property test ------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Version {
    entity: String,
    observed: i64,
    available: i64,
    version: i32,
    views: i64,
    likes: i64,
    deleted: bool,
}

const HOUR: i64 = 3600;
const START: i64 = 1_767_225_600; // 2026-01-01

fn sql_ts(secs: i64) -> String {
    format!("TIMESTAMP '{}'", chrono::DateTime::from_timestamp(secs, 0).unwrap().format("%Y-%m-%d %H:%M:%S"))
}

/// A random history: a few clips, snapshots at random hours with random lateness, some facts
/// restated later (a new version, maybe a tombstone).
fn history(rng: &mut Rng) -> (Vec<(String, i64)>, Vec<Version>) {
    let mut clips = Vec::new();
    let mut rows = Vec::new();
    for c in 0..(2 + rng.below(4)) {
        let id = format!("c{c}");
        let created = START + rng.below(72) as i64 * HOUR;
        clips.push((id.clone(), created));
        let mut t = created;
        let mut views = 0;
        for _ in 0..rng.below(12) {
            t += (1 + rng.below(30) as i64) * HOUR;
            views += rng.below(500) as i64;
            let lag = if rng.below(4) == 0 { (24 + rng.below(200) as i64) * HOUR } else { rng.below(3) as i64 * HOUR };
            let v = Version {
                entity: id.clone(),
                observed: t,
                available: t + lag,
                version: 1,
                views,
                likes: views / 10,
                deleted: false,
            };
            rows.push(v.clone());
            if rng.below(5) == 0 {
                // A restatement (a repair) known later: other values, or a tombstone.
                let later = v.available + (1 + rng.below(100) as i64) * HOUR;
                let deleted = rng.below(3) == 0;
                rows.push(Version { available: later, version: 2, views: v.views + 7, deleted, ..v });
            }
        }
    }
    (clips, rows)
}

fn load(cat: &Catalog, clips: &[(String, i64)], rows: &[Version]) {
    for (id, created) in clips {
        cat.conn()
            .execute_batch(&format!(
                "INSERT INTO entities (entity_id, kind, parent_id, created_at, observed_at, available_at, version, batch_id)
                 VALUES ('{id}', 'clip', 'ch', {t}, {t}, {t}, 1, 'b')",
                t = sql_ts(*created)
            ))
            .unwrap();
    }
    for v in rows {
        cat.conn()
            .execute_batch(&format!(
                "INSERT INTO observations (entity_id, observed_at, available_at, views, likes, comments, version, batch_id, status, deleted)
                 VALUES ('{}', {}, {}, {}, {}, 0, {}, 'b', 'live', {})",
                v.entity,
                sql_ts(v.observed),
                sql_ts(v.available),
                v.views,
                v.likes,
                v.version,
                v.deleted
            ))
            .unwrap();
    }
}

/// The snapshots visible at `t0`: newest version per observed time among those observed and
/// available by then, tombstones dropped; sorted by observed time.
fn visible(rows: &[Version], entity: &str, t0: i64) -> Vec<Version> {
    let mut newest: BTreeMap<i64, &Version> = BTreeMap::new();
    for v in rows.iter().filter(|v| v.entity == entity && v.observed <= t0 && v.available <= t0) {
        let e = newest.entry(v.observed).or_insert(v);
        if v.version > e.version {
            *e = v;
        }
    }
    newest.into_values().filter(|v| !v.deleted).cloned().collect()
}

fn values(conn: &t0_catalog::duckdb::Connection, sql: &str) -> Vec<Vec<Option<f64>>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push((0..n).map(|i| r.get::<_, Option<f64>>(i).unwrap()).collect());
    }
    out
}

/// The grid of `cfg` on `cat` (no clock bound) and `stores` run in one sandbox session.
fn session(cat: &Catalog, cfg: &CertifyConfig, stores: &[&Closure]) -> Session {
    let raw = t0_certify::population::Raw::catalog(cat).unwrap();
    t0_certify::grid::build(cat, &cfg.t0, "2100-01-01 00:00:00", None, &raw).unwrap();
    let policy = Policy::of_build().unwrap();
    let s =
        Session::open(cat, t0_certify::grid::GRID_TABLE, &t0_certify::store::params_sql(cfg), raw.qualifier()).unwrap();
    for files in stores {
        s.run(&sandbox::statements(files, &policy).unwrap()).unwrap();
    }
    s
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => false,
    }
}

#[test]
fn surfaces_equal_a_brute_force_as_of_on_random_histories() {
    let args =
        CertifyArgs { project: t0_project::Project::builtin(), config: None, stores_dir: None, rebaseline: false };
    let loaded = t0_certify::load_config(&args).unwrap();
    let (mut cfg, closures) = (loaded.cfg, loaded.closures);
    cfg.t0.mode = GridMode::EveryKDays;
    cfg.t0.every_days = 1;
    cfg.t0.offset_hours = 6;
    let files = |e: &str| closures.iter().find(|(s, _)| s.entrypoint == e).unwrap().1.clone();
    let mut rng = Rng(20261124);
    let mut checked = 0;
    for case in 0..40 {
        let (clips, rows) = history(&mut rng);
        let cat = clips_catalog();
        load(&cat, &clips, &rows);
        let s = session(&cat, &cfg, &[&files("base"), &files("history")]);
        let got = values(
            s.conn(),
            "SELECT CAST(substr(b.entity_id, 2) AS DOUBLE), epoch(b.t0), b.views_t0, b.likes_t0, b.n_snapshots,
                    b.hours_since_last, h.views_gain_24h, h.views_gain_72h, h.snapshots_24h, h.log_growth_72h
             FROM surface_base b JOIN surface_history h USING (entity_id, t0) ORDER BY b.entity_id, b.t0",
        );
        for row in got {
            let entity = format!("c{}", row[0].unwrap() as i64);
            let t0 = row[1].unwrap() as i64;
            let created = clips.iter().find(|(id, _)| *id == entity).unwrap().1;
            let vis = visible(&rows, &entity, t0);
            let last = vis.last();
            // The last visible snapshot at or before `t`, or 0 if the clip was created since.
            let at_or_before = |t: i64| -> Option<f64> {
                match vis.iter().rev().find(|v| v.observed <= t) {
                    Some(v) => Some(v.views as f64),
                    None if created >= t => Some(0.0),
                    None => None,
                }
            };
            let v_t0 = last.map(|v| v.views as f64);
            let gain = |h: i64| Some(v_t0? - at_or_before(t0 - h * HOUR)?);
            let expected = [
                v_t0,
                last.map(|v| v.likes as f64),
                Some(vis.len() as f64),
                last.map(|v| (t0 - v.observed) as f64 / 3600.0),
                gain(24),
                gain(72),
                Some(vis.iter().filter(|v| v.observed > t0 - 24 * HOUR).count() as f64),
                (|| Some((1.0 + v_t0?).ln() - (1.0 + at_or_before(t0 - 72 * HOUR)?).ln()))(),
            ];
            for (i, want) in expected.iter().enumerate() {
                assert!(
                    close(row[i + 2], *want),
                    "case {case}, {entity} at {t0}: column {} is {:?}, brute force {:?}\nrows: {rows:?}",
                    i + 2,
                    row[i + 2],
                    want
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} (entity, T0) rows checked");
}

/// The priors store sums its recency weights exactly (fixed point, HUGEINT) so that thread order
/// cannot change a bit. On an every_k_days grid its values equal cohort views written here with
/// plain float sums to 1e-9, and the counts, medians and ladder levels are the same.
#[test]
fn priors_exact_sums_equal_the_float_definition() {
    let (_dirs, root, _) = healed_clips(300);
    let args =
        CertifyArgs { project: t0_project::Project::builtin(), config: None, stores_dir: None, rebaseline: false };
    let loaded = t0_certify::load_config(&args).unwrap();
    let mut cfg = loaded.cfg;
    cfg.t0.mode = GridMode::EveryKDays;
    let files = loaded.closures.iter().find(|(s, _)| s.entrypoint == "priors").unwrap().1.clone();
    let cat = Catalog::open(&root).unwrap();
    let sql = "SELECT CASE prior_level WHEN 'channel' THEN 2 WHEN 'global' THEN 1 ELSE 0 END, prior_n,
                      prior_log_views, prior_tail_rate, prior_ess, channel_tail_woe
               FROM surface_priors ORDER BY entity_id, t0";
    let exact = values(session(&cat, &cfg, &[&files]).conn(), sql);

    // The reference: the cohort views written here with plain float sums.
    let cohorts = "
        CREATE OR REPLACE TEMP VIEW prior_channel AS
        SELECT cutoff, channel, count(*) AS n, median(outcome) AS med, sum(w * tail) / sum(w) AS tail_rate,
               pow(sum(w), 2) / sum(w * w) AS ess
        FROM prior_facts GROUP BY cutoff, channel;
        CREATE OR REPLACE TEMP VIEW prior_global AS
        SELECT cutoff, count(*) AS n, median(outcome) AS med, sum(w * tail) / sum(w) AS tail_rate,
               pow(sum(w), 2) / sum(w * w) AS ess
        FROM prior_facts GROUP BY cutoff;
    ";
    let float: Vec<(String, String)> = files
        .iter()
        .map(|(name, sql)| {
            match (
                sql.find("CREATE OR REPLACE TEMP VIEW prior_channel"),
                sql.find("CREATE OR REPLACE TEMP VIEW priors_ladder"),
            ) {
                (Some(a), Some(b)) => (name.clone(), format!("{}{cohorts}{}", &sql[..a], &sql[b..])),
                _ => (name.clone(), sql.clone()),
            }
        })
        .collect();
    assert_ne!(float, files, "the priors store no longer defines prior_channel before priors_ladder");
    let reference = values(session(&cat, &cfg, &[&float]).conn(), sql);

    assert_eq!(exact.len(), reference.len());
    let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300),
        (a, b) => a == b,
    };
    let mut by_channel = 0;
    for (i, (e, r)) in exact.iter().zip(&reference).enumerate() {
        assert_eq!(e[..3], r[..3], "row {i}: level, n or median differ: {e:?} vs {r:?}");
        assert!(e[3..].iter().zip(&r[3..]).all(|(a, b)| near(*a, *b)), "row {i}: {e:?} vs float {r:?}");
        by_channel += usize::from(e[0] == Some(2.0));
    }
    assert!(exact.len() > 1000 && by_channel > 100, "{} rows, {by_channel} at the channel level", exact.len());
}

// --- labels ------------------------------------------------------------------------------------

#[test]
fn labels_hold_the_horizon_outcome_the_tail_and_censored_time_to_removal() {
    let cat = clips_catalog();
    let h = HOUR;
    let clips = vec![("c0".to_string(), START), ("c1".to_string(), START), ("c2".to_string(), START)];
    let snap = |e: &str, at: i64, views: i64| Version {
        entity: e.into(),
        observed: START + at * h,
        available: START + at * h,
        version: 1,
        views,
        likes: 0,
        deleted: false,
    };
    // The data covers the world through 300 h (the last snapshot).
    // c0: outcome from the last snapshot at or before T0 + 168 h; no removal.
    // c1: quiet after 124 h, but T0 + 168 h is inside the watermark: its last value (20
    //     views) is the outcome; censored at its last observation, 100 h after T0.
    // c2: removed (event) 50 h after T0: ended inside the window, so no outcome; the event.
    let rows = vec![
        snap("c0", 30, 10),
        snap("c0", 150, 400),
        snap("c0", 300, 900),
        snap("c1", 30, 10),
        snap("c1", 124, 20),
        snap("c2", 30, 10),
        snap("c2", 190, 9000),
        snap("c2", 200, 9100),
    ];
    load(&cat, &clips, &rows);
    cat.conn()
        .execute_batch(&format!(
            "INSERT INTO events (entity_id, event_type, value, observed_at, available_at, version, batch_id)
             VALUES ('c2', 'removed', NULL, {t}, {t}, 1, 'b')",
            t = sql_ts(START + 74 * h)
        ))
        .unwrap();
    // The clips project: T0 = creation + 24 h, horizon 168 h, tail at 2500 views.
    let project = t0_project::Project::builtin();
    let args = CertifyArgs { project: project.clone(), config: None, stores_dir: None, rebaseline: false };
    let cfg = t0_certify::load_config(&args).unwrap().cfg;
    let raw = t0_certify::population::Raw::catalog(&cat).unwrap();
    t0_certify::grid::build(&cat, &cfg.t0, "2100-01-01 00:00:00", None, &raw).unwrap();
    cat.conn().execute_batch("CREATE TEMP TABLE t0_grid AS SELECT * FROM t0work.main.grid").unwrap();
    let cov = t0_certify::labels::Coverage {
        observations: Some(sql_ts(START + 300 * h).trim_start_matches("TIMESTAMP ").trim_matches('\'').to_string()),
        events: Some(sql_ts(START + 74 * h).trim_start_matches("TIMESTAMP ").trim_matches('\'').to_string()),
        end_events: cfg.t0.end_events.clone(),
    };
    let got = values(
        cat.conn(),
        &format!(
            "SELECT y_log_views, CAST(y_tail AS DOUBLE), tte_hours, CAST(event AS DOUBLE) FROM ({}) ORDER BY entity_id",
            t0_certify::labels::labels_sql(&project, &cov)
        ),
    );
    let want = [
        [Some(401f64.ln()), Some(0.0), Some(276.0), Some(0.0)],
        [Some(21f64.ln()), Some(0.0), Some(100.0), Some(0.0)],
        [None, None, Some(50.0), Some(1.0)],
    ];
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(want) {
        assert!(g.iter().zip(w).all(|(a, b)| close(*a, b)), "{g:?} vs {w:?}");
    }
}

// --- certification gates ---------------------------------------------------------------------

fn store_copy(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips/feature-stores");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        std::fs::write(dir.path().join(&name), edit(&name, std::fs::read_to_string(e.path()).unwrap())).unwrap();
    }
    dir
}

fn store<'a>(r: &'a t0_certify::CertifyReport, entry: &str) -> &'a t0_certify::StoreResult {
    r.stores.iter().find(|s| s.entrypoint == entry).unwrap()
}

#[test]
fn late_artifacts_stay_null_and_an_ungated_column_fails_the_sla() {
    let data = tempfile::tempdir().unwrap();
    let opt = t0_clips_gen::GenerateOptions { entities: 120, media: 40, ..Default::default() };
    t0_clips_gen::generate(data.path(), &opt, &NoProgress).unwrap();
    // Artifacts reach the store 12 h after they were observed: later than the 6 h SLA.
    let mapping =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips/sources.yaml"))
            .unwrap();
    let (head, tail) = mapping.split_at(mapping.find("  - name: artifacts").unwrap());
    let late = format!("{head}{}", tail.replace("availability: observed_time", "availability: observed_time + 12h"));
    assert_ne!(late, mapping);
    let cfg = data.path().join("late.yaml");
    std::fs::write(&cfg, late).unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    let root = Root::new(root_dir.path());
    let at = "2026-04-01T00:00:00Z";
    let args = AcquireArgs {
        project: t0_project::Project::builtin(),
        evolve_schema: false,
        input: data.path().to_path_buf(),
        config: Some(cfg),
        chunk_rows: 100_000,
        deny_unmatched: false,
    };
    t0_acquire::run(&root, clock(at), &args, &NoProgress).unwrap();
    audit_heal(&root, at);

    let ok = certify(&root, at, None, false);
    assert_eq!(ok.status, Verdict::Certified, "{:?}", ok.stores);
    let surface = root.join(store(&ok, "modality").path.as_ref().unwrap());
    let cat = Catalog::in_memory().unwrap();
    let lit = t0_catalog::quote_literal(&surface.display().to_string());
    let non_null: i64 = cat
        .conn()
        .query_row(
            &format!("SELECT count(title_words) + count(thumbnail_hash) + count(audio_hash) FROM read_parquet({lit})"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(non_null, 0, "late artifacts must not reach gated columns");

    // The same store without the gate on the title: certification fails and says why.
    let ungated =
        store_copy(
            |name, sql| {
                if name == "modality.sql" { sql.replace("CASE WHEN ti.on_time", "CASE WHEN true") } else { sql }
            },
        );
    let r = certify(&root, at, Some(ungated.path()), true);
    assert_eq!(r.status, Verdict::Failed);
    let notes = store(&r, "modality").notes.join("; ");
    assert!(notes.contains("SLA violation: modality.title_words"), "{notes}");
    assert!(notes.contains("modality.title_chars"), "{notes}");
}

#[test]
fn drift_fails_a_strict_store_and_is_recorded_by_a_tolerant_one() {
    let (_dirs, root, at) = healed_clips(120);
    assert_eq!(certify(&root, at, None, false).status, Verdict::Certified);

    // Layout and comments do not move a view-definition hash: the same certification again.
    let cosmetic = store_copy(|_, sql| format!("-- reviewed\n{}", sql.replace("\n", "\n\n")));
    let args = CertifyArgs {
        project: t0_project::Project::builtin(),
        config: None,
        stores_dir: Some(cosmetic.path().to_path_buf()),
        rebaseline: false,
    };
    let e = t0_certify::run(&root, clock(at), &args, &NoProgress).unwrap_err();
    assert_eq!(e.exit_code(), t0_core::ExitCode::NothingToDo, "{e}");

    // A semantic edit: the strict base store fails, the tolerant text store records it.
    let edited = store_copy(|name, sql| match name {
        "base.sql" => sql.replace("coalesce(c.channel_clips, 0)", "coalesce(c.channel_clips, 0) + 1"),
        "text.sql" => sql.replace("a.text AS title", "lower(a.text) AS title"),
        _ => sql,
    });
    let r = certify(&root, at, Some(edited.path()), false);
    assert_eq!(r.status, Verdict::Failed);
    let base = store(&r, "base").notes.join("; ");
    assert!(base.contains("view-definition drift in store base") && base.contains("strict store"), "{base}");
    assert!(base.contains("dataset drift on T0 day"), "{base}");
    let text = store(&r, "text");
    assert_eq!(text.status, Verdict::Certified);
    assert!(text.notes.join("; ").contains("drift-tolerant store: recorded and rebaselined"), "{:?}", text.notes);
    // --rebaseline accepts the new definition.
    let r = certify(&root, at, Some(edited.path()), true);
    assert_eq!(r.status, Verdict::Certified, "{:?}", r.stores);
}

/// Random events of two types per clip, some known late: (entity, type, observed, available).
fn random_events(rng: &mut Rng, clips: &[(String, i64)]) -> Vec<(String, &'static str, i64, i64)> {
    let mut out = Vec::new();
    for (id, created) in clips {
        for _ in 0..rng.below(4) {
            let ty = if rng.below(2) == 0 { "removed" } else { "paused" };
            let observed = created + (1 + rng.below(200) as i64) * HOUR;
            let lag = if rng.below(3) == 0 { (24 + rng.below(100) as i64) * HOUR } else { 0 };
            out.push((id.clone(), ty, observed, observed + lag));
        }
    }
    out
}

/// A declared store of every aggregate over views, the observation rows and the removals.
fn declared_project() -> t0_project::ProjectDef {
    let spec = |s: &str| t0_project::declared::AggSpec::try_from(s.to_string()).unwrap();
    let list = |s: &[&str]| s.iter().map(|a| spec(a)).collect::<Vec<_>>();
    let mut def = t0_project::Project::builtin().def.clone();
    def.features.declared = vec![t0_project::declared::DeclaredStore {
        store: "decl".into(),
        windows: vec!["24 hours".to_string().try_into().unwrap(), "3 days".to_string().try_into().unwrap()],
        time_unit: t0_project::declared::TimeUnit::Hours,
        measures: [
            (
                "views".to_string(),
                list(&[
                    "last",
                    "prev",
                    "prev 2",
                    "change",
                    "pct_change",
                    "slope",
                    "sum",
                    "mean",
                    "min",
                    "max",
                    "std",
                    "count",
                    "count_nonzero",
                    "rate",
                    "time_since_last",
                    "time_since_first",
                    "count all",
                    "max all",
                ]),
            ),
            ("price".to_string(), list(&["last", "sum 24 hours", "mean 24 hours", "count 24 hours"])),
        ]
        .into_iter()
        .collect(),
        observations: list(&["count", "time_since_last", "time_since_first"]),
        events: [("removed".to_string(), list(&["count 3 days", "time_since_last"]))].into_iter().collect(),
        attributes: vec![],
        strict: false,
    }];
    def
}

/// The brute-force value of a declared column at (entity, T0) from the visible snapshots and
/// events (times in seconds; the store's unit is the hour).
fn brute(name: &str, vis: &[Version], events: &[(i64, i64)], t0: i64) -> Option<f64> {
    let hours = |s: i64| s as f64 / 3600.0;
    // `all`: a window longer than any history.
    let (w, base) = match name.rsplit_once('_') {
        Some((b, "24h")) => (Some(24 * HOUR), b),
        Some((b, "3d")) => (Some(72 * HOUR), b),
        Some((b, "all")) => (Some(1 << 40), b),
        _ => (None, name),
    };
    let in_w: Vec<&Version> = vis.iter().filter(|v| w.is_some_and(|w| v.observed > t0 - w)).collect();
    let x: Vec<f64> = in_w.iter().map(|v| v.views as f64).collect();
    let last = vis.last();
    let before = w.and_then(|w| vis.iter().rev().find(|v| v.observed <= t0 - w));
    let change = || Some(last?.views as f64 - before?.views as f64);
    let mean = (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64);
    let ev_in: Vec<i64> = events.iter().map(|e| e.0).filter(|o| w.is_some_and(|w| *o > t0 - w)).collect();
    match base {
        "views_last" => last.map(|v| v.views as f64),
        "views_prev" => vis.iter().rev().nth(1).map(|v| v.views as f64),
        "views_prev2" => vis.iter().rev().nth(2).map(|v| v.views as f64),
        "views_change" => change(),
        "views_pct_change" => before.filter(|b| b.views != 0).and_then(|b| Some(change()? / b.views as f64)),
        "views_slope" => {
            let dt = hours(last?.observed - before?.observed);
            (dt != 0.0).then(|| change().unwrap() / dt)
        }
        "views_sum" => Some(x.iter().sum()),
        "views_mean" => mean,
        "views_min" => x.iter().cloned().reduce(f64::min),
        "views_max" => x.iter().cloned().reduce(f64::max),
        "views_std" => (x.len() > 1)
            .then(|| (x.iter().map(|v| (v - mean.unwrap()).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()),
        "views_count" | "obs_count" => Some(x.len() as f64),
        "views_count_nonzero" => Some(x.iter().filter(|v| **v != 0.0).count() as f64),
        "views_rate" => Some(x.iter().sum::<f64>() / hours(w.unwrap())),
        "views_time_since_last" | "obs_time_since_last" => last.map(|v| hours(t0 - v.observed)),
        "views_time_since_first" | "obs_time_since_first" => vis.first().map(|v| hours(t0 - v.observed)),
        // The snapshots carry no price.
        "price_last" | "price_mean" => None,
        "price_sum" | "price_count" => Some(0.0),
        "ev_removed_count" => Some(ev_in.len() as f64),
        "ev_removed_time_since_last" => events.iter().map(|e| e.0).max().map(|o| hours(t0 - o)),
        other => panic!("no brute force for {other}"),
    }
}

#[test]
fn declared_aggregates_equal_a_brute_force_as_of_on_random_histories() {
    let def = declared_project();
    let closure = t0_certify::declared::closures(&def).remove(0).1;
    let columns: Vec<String> =
        def.features.declared[0].columns(&def.measures).unwrap().into_iter().map(|c| c.name).collect();
    let args =
        CertifyArgs { project: t0_project::Project::builtin(), config: None, stores_dir: None, rebaseline: false };
    let mut cfg = t0_certify::load_config(&args).unwrap().cfg;
    cfg.t0.mode = GridMode::EveryKDays;
    cfg.t0.every_days = 1;
    cfg.t0.offset_hours = 6;
    let mut rng = Rng(20261204);
    let (mut checked, mut non_null) = (0, 0);
    for case in 0..10 {
        let (clips, rows) = history(&mut rng);
        let events = random_events(&mut rng, &clips);
        let cat = clips_catalog();
        load(&cat, &clips, &rows);
        for (id, ty, observed, available) in &events {
            cat.conn()
                .execute_batch(&format!(
                    "INSERT INTO events (entity_id, event_type, observed_at, available_at, version, batch_id)
                     VALUES ('{id}', '{ty}', {}, {}, 1, 'b')",
                    sql_ts(*observed),
                    sql_ts(*available)
                ))
                .unwrap();
        }
        let select: Vec<String> = columns.iter().map(|c| format!("CAST(\"{c}\" AS DOUBLE)")).collect();
        let query = format!(
            "SELECT CAST(substr(entity_id, 2) AS DOUBLE), epoch(t0), {} FROM surface_decl ORDER BY entity_id, t0",
            select.join(", ")
        );
        // The same bits on one thread and on four.
        let mut runs = Vec::new();
        for threads in if case < 3 { vec![1, 4] } else { vec![] } {
            cat.conn().execute_batch(&format!("SET threads = {threads}")).unwrap();
            let s = session(&cat, &cfg, &[&closure]);
            let bits = |r: &Vec<Option<f64>>| r.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>();
            runs.push(values(s.conn(), &query).iter().map(bits).collect::<Vec<_>>());
        }
        assert!(runs.len() < 2 || runs[0] == runs[1], "case {case}: the surface differs between 1 and 4 threads");
        let s = session(&cat, &cfg, &[&closure]);
        let got = values(s.conn(), &query);
        for row in got {
            let entity = format!("c{}", row[0].unwrap() as i64);
            let t0 = row[1].unwrap() as i64;
            let vis = visible(&rows, &entity, t0);
            let known: Vec<(i64, i64)> = events
                .iter()
                .filter(|e| e.0 == entity && e.1 == "removed" && e.2 <= t0 && e.3 <= t0)
                .map(|e| (e.2, e.3))
                .collect();
            for (i, c) in columns.iter().enumerate() {
                let want = brute(c, &vis, &known, t0);
                assert!(
                    close(row[i + 2], want),
                    "case {case}, {entity} at {t0}: {c} is {:?}, brute force {want:?}\nrows: {rows:?}\nevents: {events:?}",
                    row[i + 2]
                );
                non_null += usize::from(want.is_some_and(|v| v != 0.0));
            }
            checked += 1;
        }
    }
    assert!(checked > 50 && non_null > 400, "only {checked} rows, {non_null} non-zero values checked");
}
