//! heal end to end on a small listing history with one defect per rule: each rule's repair,
//! dry run, the closed loop (audit after heal), idempotence, as-of replay before and after a
//! repair, revert (and its conflict), the ledger chain and its tamper detection, and malformed
//! rules refused with file and line.

use std::path::Path;

use t0_acquire::AcquireArgs;
use t0_audit::AuditArgs;
use t0_catalog::Catalog;
use t0_core::{Clock, Error, ExitCode, NoProgress, Root};
use t0_heal::HealArgs;

const ENTITIES: &str = "entity_id,kind,parent_id,created_at
ch1,channel,,2025-12-01 00:00:00
c1,clip,ch1,2026-01-01 00:00:00
c2,clip,ch1,2026-01-01 00:00:00
c3,clip,ch1,2026-01-01 00:00:00
c4,clip,ch1,2026-01-01 00:00:00
c5,clip,ch1,2026-01-01 00:00:00
c6,clip,ch1,2026-01-01 00:00:00
c7,clip,ch1,2026-01-01 00:00:00
c8,clip,ch1,2026-01-01 00:00:00
c9,clip,ch1,2026-01-01 00:00:00
c10,clip,ch1,2026-01-01 00:00:00
c11,clip,ch1,2027-01-01 00:00:00
";

// One defect per entity (see each line's comment in the test).
const OBSERVATIONS: &str = "entity_id,observed_at,views,likes,comments,available_at,status
c1,2026-01-03 00:00:00,100,10,1,2026-01-03 01:00:00,live
c1,2026-01-04 00:00:00,80,8,1,2026-01-04 01:00:00,live
c1,2026-01-05 00:00:00,120,12,2,2026-01-05 01:00:00,live
c2,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c2,2026-01-03 00:00:30,10,1,0,2026-01-03 01:00:30,stale
c3,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c3,2026-01-03 00:00:40,10,1,0,2026-01-03 01:00:40,live
c4,2026-01-06 00:00:00,10,1,0,2026-01-06 01:00:00,sold
c4,2026-01-06 00:00:20,10,1,0,2026-01-06 01:00:20,removed
c5,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,LIVE
c6,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c6,2026-01-04 00:00:00,10,1,0,2026-01-04 01:00:00,removed
c6,2026-01-05 00:00:00,10,1,0,2026-01-05 01:00:00,live
c7,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c7,2026-01-05 00:00:00,12,1,0,2026-01-05 01:00:00,sold
c8,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c8,2026-01-04 00:00:00,10,1,0,2026-01-04 01:00:00,removed
c8,2026-01-06 00:00:00,11,1,0,2026-01-06 01:00:00,live
c9,2026-01-03 00:00:00,40,50,0,2026-01-03 01:00:00,live
c10,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
c10,2027-01-01 00:00:00,10,1,0,2027-01-01 01:00:00,live
c11,2026-01-03 00:00:00,10,1,0,2026-01-03 01:00:00,live
";

const EVENTS: &str = "entity_id,event_type,value,observed_at
c4,sold,9.5,2026-01-05 12:00:00
c6,removed,,2026-01-03 12:00:00
c8,removed,,2026-01-03 12:00:00
c8,relisted,,2026-01-05 00:00:00
";

/// The shipped rules plus one that removes entities created after the heal time, so the
/// orphan rule has something to answer on the next round.
fn rules_text() -> String {
    format!(
        "{}
  - id: quarantine_future_entities
    version: 1
    answers: future_timestamps
    table: entities
    fix: quarantine
    where: \"observed_at > {{now}} OR available_at > {{now}}\"
    reason: \"entity created after the heal time\"
",
        include_str!("../../../projects/clips/heal/rules.yaml").trim_end()
    )
}

const NOW: &str = "2026-02-01T00:00:00Z";

fn clock(at: &str) -> Clock {
    Clock::from_arg(Some(at)).unwrap()
}

struct Env {
    root: tempfile::TempDir,
    input: tempfile::TempDir,
    rules: std::path::PathBuf,
}

fn env() -> Env {
    let input = tempfile::tempdir().unwrap();
    for (name, body) in [("entities.csv", ENTITIES), ("observations.csv", OBSERVATIONS), ("events.csv", EVENTS)] {
        std::fs::write(input.path().join(name), body).unwrap();
    }
    let rules = input.path().join("rules.yaml");
    std::fs::write(&rules, rules_text()).unwrap();
    let env = Env { root: tempfile::tempdir().unwrap(), input, rules };
    env.acquire();
    env
}

impl Env {
    fn root(&self) -> Root {
        Root::new(self.root.path())
    }
    fn acquire(&self) {
        let args = AcquireArgs {
            project: t0_project::Project::builtin(),
            evolve_schema: false,
            input: self.input.path().to_path_buf(),
            config: None,
            chunk_rows: 1000,
            deny_unmatched: false,
        };
        t0_acquire::run(&self.root(), clock("2026-01-31T00:00:00Z"), &args, &NoProgress).unwrap();
    }
    /// Audit with the shipped contracts; returns (check name -> failing) of the run.
    fn audit(&self) -> std::collections::BTreeMap<String, u64> {
        self.audit_at(NOW)
    }
    fn audit_at(&self, at: &str) -> std::collections::BTreeMap<String, u64> {
        let args = AuditArgs {
            project: t0_project::Project::builtin(),
            sample: 5,
            contracts: None,
            as_of: Some(at.into()),
            rebaseline: false,
        };
        let r = t0_audit::run(&self.root(), clock(at), &args, &NoProgress).unwrap();
        r.findings.iter().map(|f| (format!("{}.{}", f.table, f.check), f.failing)).collect()
    }
    fn heal_args(&self, dry_run: bool) -> HealArgs {
        HealArgs { project: t0_project::Project::builtin(), dry_run, rules: Some(self.rules.clone()), limit: 1000 }
    }
    fn heal(&self, at: &str) -> Result<t0_heal::HealReport, Error> {
        t0_heal::run(&self.root(), clock(at), &self.heal_args(false), &NoProgress)
    }
    fn catalog(&self) -> Catalog {
        Catalog::open(&self.root()).unwrap()
    }
    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let cat = self.catalog();
        let mut stmt = cat.conn().prepare(sql).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push((0..n).map(|i| r.get::<_, Option<String>>(i).unwrap()).collect());
        }
        out
    }
    fn one(&self, sql: &str) -> Option<String> {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }
    /// The observation `(entity, observed_at)` as a reader at `as_of` sees it: the newest
    /// version available by then, unless that version is a tombstone. Written here
    /// independently of the stores' as-of helpers.
    fn seen(&self, entity: &str, observed: &str, as_of: &str, column: &str) -> Option<String> {
        let rows = self.query(&format!(
            "SELECT CAST({column} AS VARCHAR), CAST(deleted AS VARCHAR) FROM observations
             WHERE entity_id = '{entity}' AND observed_at = TIMESTAMP '{observed}' AND available_at <= TIMESTAMP '{as_of}'
             ORDER BY version DESC LIMIT 1"
        ));
        match rows.first() {
            Some(r) if r[1].as_deref() == Some("false") => r[0].clone(),
            _ => None,
        }
    }
    fn current(&self, entity: &str, observed: &str, column: &str) -> Option<String> {
        self.seen(entity, observed, "2100-01-01 00:00:00", column)
    }
    fn hash(&self, table: &str) -> String {
        let cat = self.catalog();
        cat.content_hash(&format!("SELECT * FROM {table}"), &[]).unwrap().0
    }
}

fn code(e: &Error) -> ExitCode {
    e.exit_code()
}

#[test]
fn each_rule_repairs_its_defect_and_the_loop_closes() {
    let env = env();
    let first = env.audit();
    for check in [
        "observations.monotonic_counter",
        "observations.duplicate_snapshots",
        "observations.allowed_values(status)",
        "observations.status_transitions",
        "observations.likes_within_views",
        "observations.future_timestamps",
        "entities.future_timestamps",
    ] {
        assert!(first[check] > 0, "{check} should fail before heal: {first:?}");
    }

    // A dry run plans every patch and changes nothing.
    let before = env.hash("observations");
    let dry = t0_heal::run(&env.root(), clock(NOW), &env.heal_args(true), &NoProgress).unwrap();
    assert!(dry.dry_run && dry.cells_patched > 0);
    assert_eq!(env.hash("observations"), before);
    assert_eq!(env.one("SELECT CAST(count(*) AS VARCHAR) FROM heal_ledger"), Some("0".into()));

    let r = env.heal(NOW).unwrap();
    assert_eq!(r.cells_patched, dry.cells_patched, "the dry run plans exactly what heal applies");
    assert_eq!(r.patches, dry.patches);
    let cur = |e: &str, at: &str, col: &str| env.current(e, &format!("2026-01-0{at}"), col);
    // c1: a regression is carried up to the running maximum (views, likes; comments held).
    assert_eq!(cur("c1", "4 00:00:00", "views"), Some("100".into()));
    assert_eq!(cur("c1", "4 00:00:00", "likes"), Some("10".into()));
    assert_eq!(cur("c1", "4 00:00:00", "comments"), Some("1".into()));
    // c2: a near-duplicate: live beats stale even though stale is newer.
    assert_eq!(cur("c2", "3 00:00:00", "status"), Some("live".into()));
    assert_eq!(cur("c2", "3 00:00:30", "status"), None);
    // c3: all else equal, the newest copy is kept.
    assert_eq!(cur("c3", "3 00:00:00", "status"), None);
    assert_eq!(cur("c3", "3 00:00:40", "status"), Some("live".into()));
    // c4: sold beats removed.
    assert_eq!(cur("c4", "6 00:00:00", "status"), Some("sold".into()));
    assert_eq!(cur("c4", "6 00:00:20", "status"), None);
    // c5: an off-vocabulary status is mapped.
    assert_eq!(cur("c5", "3 00:00:00", "status"), Some("live".into()));
    // c6: a removed listing is not revived.
    assert_eq!(cur("c6", "5 00:00:00", "status"), Some("removed".into()));
    // c7: sold without a sold event is quarantined, with the reason.
    assert_eq!(cur("c7", "5 00:00:00", "status"), None);
    assert_eq!(cur("c7", "3 00:00:00", "status"), Some("live".into()));
    // c8: a relisted event allows the revival: untouched.
    assert_eq!(cur("c8", "6 00:00:00", "status"), Some("live".into()));
    // c9: likes clamped to views.
    assert_eq!(cur("c9", "3 00:00:00", "likes"), Some("40".into()));
    // c10: a row stamped in the future is quarantined.
    assert_eq!(env.current("c10", "2027-01-01 00:00:00", "views"), None);
    let reasons = env.query("SELECT table_name, row_key, reason FROM heal_quarantine ORDER BY table_name, row_key");
    let reasons: Vec<String> = reasons.iter().map(|r| format!("{:?}", r)).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("c11") && reasons[0].contains("entity created after"), "{reasons:?}");
    assert!(reasons[1].contains("c10|2027-01-01") && reasons[1].contains("stamped after"), "{reasons:?}");
    assert!(reasons[2].contains("c7|2026-01-05") && reasons[2].contains("without a sold event"), "{reasons:?}");
    // Every cell is one ledger entry naming its rule, rule hash and finding.
    let rule_ids = env.query("SELECT DISTINCT rule_id FROM heal_ledger ORDER BY 1");
    assert_eq!(rule_ids.len(), 7, "{rule_ids:?}");
    let ledger: Vec<Vec<Option<String>>> =
        env.query("SELECT rule_id, rule_hash, finding FROM heal_ledger WHERE row_key = 'c1|2026-01-04 00:00:00'");
    let rules = t0_heal::rules::RuleSet::load(Some(&env.rules), &t0_project::Project::builtin()).unwrap();
    let mono = rules.rules.iter().find(|r| r.id == "monotonic_counters").unwrap();
    assert_eq!(ledger.len(), 2, "views and likes: {ledger:?}");
    assert_eq!(ledger[0][0].as_deref(), Some("monotonic_counters@1"));
    assert_eq!(ledger[0][1], Some(mono.hash()));
    assert_eq!(ledger[0][2], Some(format!("{}:monotonic_counter", r.audit_run)));
    assert_eq!(env.one("SELECT CAST(count(*) AS VARCHAR) FROM heal_ledger"), Some(r.cells_patched.to_string()));

    // Closed loop: the repaired findings are gone; the removed entity leaves c11's snapshot
    // orphaned, which the next round quarantines.
    let second = env.audit();
    let answered: Vec<String> = rules.rules.iter().map(|r| format!("{}.{}", r.table, r.answers)).collect();
    for (check, n) in &first {
        if *n > 0 && answered.contains(check) {
            assert_eq!(second[check], 0, "{check} still fails after heal: {second:?}");
        }
    }
    assert_eq!(second["observations.orphan_reference"], 1, "{second:?}");
    let r2 = env.heal("2026-02-02T00:00:00Z").unwrap();
    assert_eq!((r2.cells_patched, r2.quarantined), (1, 1));
    let third = env.audit();
    assert!(answered.iter().all(|c| third.get(c).is_none_or(|n| *n == 0)), "{third:?}");
    assert!(
        third
            .iter()
            .filter(|(_, n)| **n > 0)
            .all(|(c, _)| c.ends_with("lateness") || c.ends_with("clip_without_title")),
        "{third:?}"
    );

    // Idempotent: nothing left to repair, and the same heal again is already done.
    let e = env.heal("2026-02-03T00:00:00Z").unwrap_err();
    assert_eq!(code(&e), ExitCode::NothingToDo, "{e}");
    let dry = t0_heal::run(&env.root(), clock(NOW), &env.heal_args(true), &NoProgress).unwrap();
    assert_eq!(dry.cells_patched, 0);
    let check = t0_heal::verify_ledger(&env.root()).unwrap();
    assert_eq!((check.first_broken, check.entries), (None, r.cells_patched + 1));
}

#[test]
fn a_replay_before_the_repair_sees_the_original_data() {
    let env = env();
    env.audit();
    env.heal(NOW).unwrap();
    let (e, obs) = ("c1", "2026-01-04 00:00:00");
    // Before the repair became available: the original (regressed) value.
    assert_eq!(env.seen(e, obs, "2026-01-20 00:00:00", "views"), Some("80".into()));
    assert_eq!(env.seen(e, obs, "2026-01-31 23:59:59", "views"), Some("80".into()));
    // From the repair on: the repaired value.
    assert_eq!(env.seen(e, obs, "2026-02-01 00:00:00", "views"), Some("100".into()));
    // A removed row is visible before its removal and gone after.
    assert_eq!(env.seen("c2", "2026-01-03 00:00:30", "2026-01-20 00:00:00", "status"), Some("stale".into()));
    assert_eq!(env.seen("c2", "2026-01-03 00:00:30", "2026-02-01 00:00:00", "status"), None);
    // A repair never becomes visible before the fact it repairs: the future row's tombstone
    // is available no earlier than the row itself.
    let avail =
        env.one("SELECT CAST(max(available_at) AS VARCHAR) FROM observations WHERE entity_id = 'c10' AND deleted");
    assert_eq!(avail.as_deref(), Some("2027-01-01 01:00:00"));
}

#[test]
fn a_quarantined_revision_reverts_to_the_last_valid_version() {
    let env = env();
    // A revision of c1's first snapshot, stamped available in the future: the quarantine of
    // future timestamps flags it, but version 1 of the same fact is valid.
    std::fs::write(
        env.input.path().join("observations-revision.csv"),
        "entity_id,observed_at,views,likes,comments,available_at,status\nc1,2026-01-03 00:00:00,5000,9,1,2027-06-01 00:00:00,live\n",
    )
    .unwrap();
    env.acquire();
    let key = "entity_id = 'c1' AND observed_at = TIMESTAMP '2026-01-03 00:00:00'";
    assert_eq!(
        env.one(&format!("SELECT CAST(max(version) AS VARCHAR) FROM observations WHERE {key}")),
        Some("2".into())
    );
    assert!(env.audit()["observations.future_timestamps"] > 0);
    env.heal(NOW).unwrap();
    // The fact is back at version 1's values as a new version; nothing was removed.
    assert_eq!(env.current("c1", "2026-01-03 00:00:00", "views"), Some("100".into()));
    assert_eq!(env.current("c1", "2026-01-03 00:00:00", "likes"), Some("10".into()));
    let versions = env.query(&format!(
        "SELECT CAST(version AS VARCHAR), CAST(deleted AS VARCHAR), CAST(views AS VARCHAR) FROM observations WHERE {key} ORDER BY version"
    ));
    let flat: Vec<String> = versions
        .iter()
        .map(|r| r.iter().map(|c| c.clone().unwrap_or_default()).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(flat, ["1 false 100", "2 false 5000", "3 false 100"]);
    // Ledgered cell by cell, and listed in the quarantine with the version it went back to.
    let cells = env.query(
        "SELECT column_name, old_value, new_value, rule_id FROM heal_ledger WHERE row_key = 'c1|2026-01-03 00:00:00' ORDER BY column_name",
    );
    let cells: Vec<String> =
        cells.iter().map(|r| r.iter().map(|c| c.clone().unwrap_or_default()).collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(cells, ["likes 9 10 quarantine_future@1", "views 5000 100 quarantine_future@1"]);
    let why = env.one("SELECT reason FROM heal_quarantine WHERE row_key = 'c1|2026-01-03 00:00:00'").unwrap();
    assert!(why.starts_with("reverted to version 1: "), "{why}");
    // A reader before the repair still sees version 1 (the revision was never available then).
    assert_eq!(env.seen("c1", "2026-01-03 00:00:00", "2026-01-20 00:00:00", "views"), Some("100".into()));
}

#[test]
fn revert_restores_pre_images_and_refuses_after_a_later_change() {
    let env = env();
    let first = env.audit();
    let before = env.hash("observations");
    let healed = env.heal(NOW).unwrap();
    let root = env.root();

    let r = t0_heal::revert(&root, clock("2026-02-05T00:00:00Z"), &healed.run_id, 1000, &NoProgress).unwrap();
    assert_eq!(r.cells_restored, healed.cells_patched);
    assert_eq!(env.current("c1", "2026-01-04 00:00:00", "views"), Some("80".into()));
    assert_eq!(env.current("c2", "2026-01-03 00:00:30", "status"), Some("stale".into()));
    assert_eq!(env.current("c10", "2027-01-01 00:00:00", "views"), Some("10".into()));
    // The restored state audits exactly like the original (history checks aside), seen from
    // after the revert.
    let again = env.audit_at("2026-02-05T00:00:00Z");
    for (check, n) in &first {
        if !check.ends_with("row_count") && !check.contains("drift") {
            assert_eq!(again[check], *n, "{check}");
        }
    }
    // Versions were appended, never rewritten: the pre-heal rows are all still there.
    assert_ne!(env.hash("observations"), before);
    let originals = env.one("SELECT CAST(count(*) AS VARCHAR) FROM observations WHERE batch_id NOT LIKE 'heal-%'");
    assert_eq!(originals, Some(OBSERVATIONS.lines().count().saturating_sub(1).to_string()));
    let released =
        env.one(&format!("SELECT CAST(count(*) AS VARCHAR) FROM heal_quarantine WHERE released_by = '{}'", r.run_id));
    assert_eq!(released, Some("3".into()));
    // Reverting again: every cell already holds its pre-image.
    let e = t0_heal::revert(&root, clock("2026-02-06T00:00:00Z"), &healed.run_id, 10, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::NothingToDo, "{e}");
    assert_eq!(t0_heal::verify_ledger(&root).unwrap().first_broken, None);

    // Heal again, then the source changes a repaired cell: reverting that heal is refused and
    // names the cell.
    env.heal("2026-02-07T00:00:00Z").unwrap();
    let healed2 = t0_manifest::latest_run_id(&env.catalog(), t0_core::Stage::Heal).unwrap().unwrap();
    let changed = OBSERVATIONS.replace("c1,2026-01-04 00:00:00,80,8,1", "c1,2026-01-04 00:00:00,90,8,1");
    std::fs::write(env.input.path().join("observations.csv"), changed).unwrap();
    env.acquire();
    let e = t0_heal::revert(&root, clock("2026-02-08T00:00:00Z"), &healed2, 10, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::Refused, "{e}");
    assert!(e.to_string().contains("observations c1|2026-01-04 00:00:00 views"), "{e}");
    let e = t0_heal::revert(&root, clock("2026-02-08T00:00:00Z"), "nosuchrun", 10, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::Usage, "{e}");
}

#[test]
fn a_stale_audit_is_refused_and_the_same_heal_twice_is_already_done() {
    let env = env();
    env.audit();
    env.heal(NOW).unwrap();
    // Without a new audit the same heal is already recorded.
    let e = env.heal("2026-02-02T00:00:00Z").unwrap_err();
    assert_eq!(code(&e), ExitCode::NothingToDo, "{e}");
    // With other rules, the findings are stale: the data changed after that audit.
    let other = env.input.path().join("other.yaml");
    std::fs::write(
        &other,
        rules_text().replace("version: 1\n    answers: monotonic", "version: 2\n    answers: monotonic"),
    )
    .unwrap();
    let args = HealArgs { rules: Some(other), ..HealArgs::default() };
    let e = t0_heal::run(&env.root(), clock(NOW), &args, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::Refused, "{e}");
    assert!(e.to_string().contains("audit again"), "{e}");
}

#[test]
fn the_drop_policy_removes_regressed_snapshots() {
    let env = env();
    env.audit();
    let drop = rules_text().replace("policy: carry_max", "policy: drop");
    let path = env.input.path().join("drop.yaml");
    std::fs::write(&path, drop).unwrap();
    let args = HealArgs { rules: Some(path), ..HealArgs::default() };
    t0_heal::run(&env.root(), clock(NOW), &args, &NoProgress).unwrap();
    assert_eq!(env.current("c1", "2026-01-04 00:00:00", "views"), None);
    assert_eq!(env.current("c1", "2026-01-05 00:00:00", "views"), Some("120".into()));
    assert_eq!(env.audit()["observations.monotonic_counter"], 0);
}

#[test]
fn an_edited_ledger_entry_is_named_by_verify_ledger() {
    let env = env();
    env.audit();
    env.heal(NOW).unwrap();
    assert_eq!(t0_heal::verify_ledger(&env.root()).unwrap().first_broken, None);
    env.catalog().conn().execute_batch("UPDATE heal_ledger SET new_value = '99' WHERE seq = 4").unwrap();
    let c = t0_heal::verify_ledger(&env.root()).unwrap();
    assert_eq!(c.first_broken, Some(4), "{c:?}");
    assert!(c.reason.unwrap().contains("entry_hash"));
    // Removing an entry (and relinking nothing) is caught at the gap.
    env.catalog()
        .conn()
        .execute_batch(
            "UPDATE heal_ledger SET new_value = old_value WHERE false; DELETE FROM heal_ledger WHERE seq = 2",
        )
        .unwrap();
    assert_eq!(t0_heal::verify_ledger(&env.root()).unwrap().first_broken, Some(3));
}

fn refused(env: &Env, rules: &str, line: usize, needle: &str) {
    let path = env.input.path().join("bad.yaml");
    std::fs::write(&path, rules).unwrap();
    let args = HealArgs { rules: Some(path.clone()), ..HealArgs::default() };
    let e = t0_heal::run(&env.root(), clock(NOW), &args, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::Usage, "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains(&format!("line {line}:")), "{msg}");
    assert!(msg.contains(needle), "expected {needle:?} in {msg}");
}

#[test]
fn malformed_rules_are_refused_with_file_and_line() {
    let env = env();
    env.audit();
    let head = "rules:\n  - id: a\n    version: 1\n    answers: x\n    table: observations\n";
    refused(&env, &format!("{head}    fix: teleport\n"), 2, "unknown variant");
    refused(&env, &format!("{head}    fix: quarantine\n    reason: r\n"), 2, "needs `where`");
    refused(&env, &format!("{head}    fix: clamp\n    column: nope\n    min: 0\n"), 2, "no column \"nope\"");
    refused(
        &env,
        &format!("{head}    fix: quarantine\n    reason: r\n    where: \"views >>> 1\"\n"),
        2,
        "does not prepare",
    );
    refused(
        &env,
        &format!("{head}    fix: map_values\n    column: status\n    map: {{a: b}}\n    colour: red\n"),
        2,
        "unknown field",
    );
    refused(
        &env,
        "rules:\n  - id: a\n    answers: x\n    table: observations\n    fix: drop\n",
        2,
        "missing `version`",
    );
    let twice = format!("{head}    fix: map_values\n    column: status\n    map: {{a: b}}\n{}", &head[7..]);
    refused(&env, &format!("{twice}    fix: map_values\n    column: status\n    map: {{a: b}}\n"), 9, "used twice");
    let nope = "rules:\n  - id: a\n    version: 1\n    answers: x\n    table: nope\n    fix: map_values\n    column: a\n    map: {}\n";
    refused(&env, nope, 2, "not a canonical table");
    // Nothing was recorded by the refused runs.
    assert_eq!(env.one("SELECT CAST(count(*) AS VARCHAR) FROM heal_ledger"), Some("0".into()));
}

#[test]
fn the_shipped_rules_answer_the_generator_defects() {
    // The generator's defect knobs against the shipped contracts and rules: every finding a
    // rule answers is gone after one heal.
    let data = tempfile::tempdir().unwrap();
    let opt = t0_clips_gen::GenerateOptions { entities: 2000, media: 0, future: 0.002, ..Default::default() };
    t0_clips_gen::generate(data.path(), &opt, &NoProgress).unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = Root::new(root.path());
    let args = AcquireArgs {
        project: t0_project::Project::builtin(),
        evolve_schema: false,
        input: data.path().to_path_buf(),
        config: None,
        chunk_rows: 100_000,
        deny_unmatched: false,
    };
    t0_acquire::run(&root, clock("2026-12-01T00:00:00Z"), &args, &NoProgress).unwrap();
    let audit = |at: &str| {
        let args = AuditArgs {
            project: t0_project::Project::builtin(),
            sample: 1,
            contracts: None,
            as_of: Some(at.into()),
            rebaseline: false,
        };
        t0_audit::run(&root, clock(at), &args, &NoProgress).unwrap()
    };
    let before = audit("2026-12-01T00:00:00Z");
    let r = t0_heal::run(&root, clock("2026-12-01T00:00:00Z"), &HealArgs::default(), &NoProgress).unwrap();
    let after = audit("2026-12-01T00:00:00Z");
    let ran: Vec<&str> = r.rules.iter().filter(|x| x.skipped.is_none()).map(|x| x.id.as_str()).collect();
    // Orphans never reach the canonical tables from a source: acquire quarantines them.
    let expected =
        ["quarantine_future", "map_status", "dedupe_snapshots", "status_machine", "clamp_likes", "monotonic_counters"];
    assert_eq!(ran, expected);
    for rule in r.rules.iter().filter(|x| x.skipped.is_none()) {
        let f = |rep: &t0_audit::AuditReport| {
            rep.findings.iter().find(|f| f.check == rule.answers && f.table == "observations").map(|f| f.failing)
        };
        assert!(f(&before).unwrap() > 0, "the generator should inject what {} answers", rule.id);
        assert!(rule.cells > 0, "{} patched nothing", rule.id);
        assert_eq!(f(&after), Some(0), "{} left its finding open", rule.id);
    }
    assert!(Path::new(&root.catalog()).exists());
}

#[test]
fn a_rule_changes_only_what_its_finding_flagged_and_a_tampered_flag_list_is_refused() {
    let env = env();
    // Each rule's plan matches more than the finding it answers flagged.
    let rules = env.input.path().join("scoped.yaml");
    std::fs::write(
        &rules,
        "rules:
  - {id: cap_likes, version: 1, answers: likes_within_views, table: observations, fix: clamp, column: likes, max: 5}
  - id: prefer_stale
    version: 1
    answers: duplicate_snapshots
    table: observations
    fix: dedupe
    key: [entity_id]
    order: observed_at
    columns: [views, likes, comments]
    precedence: {column: status, order: [stale, live]}
  - {id: carry_views, version: 1, answers: status_transitions, table: observations, fix: monotonic,
     key: [entity_id], order: observed_at, columns: [views], policy: carry_max}
",
    )
    .unwrap();
    env.audit();
    let args = HealArgs { rules: Some(rules), ..env.heal_args(false) };

    // A flagged row changed in the catalog after audit recorded it: refused, naming the output.
    let cat = env.catalog();
    cat.conn()
        .execute_batch(
            "UPDATE audit_failing SET row_key = 'c1|2026-01-03 00:00:00' WHERE check_name = 'likes_within_views'",
        )
        .unwrap();
    let e = t0_heal::run(&env.root(), clock(NOW), &args, &NoProgress).unwrap_err();
    assert_eq!(code(&e), ExitCode::Refused, "{e}");
    assert!(e.to_string().contains("table audit_failing"), "{e}");
    cat.conn()
        .execute_batch(
            "UPDATE audit_failing SET row_key = 'c9|2026-01-03 00:00:00' WHERE check_name = 'likes_within_views'",
        )
        .unwrap();
    drop(cat);

    let r = t0_heal::run(&env.root(), clock(NOW), &args, &NoProgress).unwrap();
    let scope = |id: &str| r.rules.iter().find(|x| x.id == id).unwrap().scope.clone().unwrap();
    assert_eq!(scope("cap_likes"), "1 flagged rows");
    assert_eq!(scope("prefer_stale"), "3 partitions by entity_id holding 3 flagged rows");
    // The clamp reaches c9 (flagged: likes above views) and not c1's likes of 10 and 12.
    assert_eq!(env.current("c9", "2026-01-03 00:00:00", "likes"), Some("5".into()));
    assert_eq!(env.current("c1", "2026-01-03 00:00:00", "likes"), Some("10".into()));
    // Dedupe sees the whole partition of a flagged row: c2's later snapshot was flagged, and
    // the earlier one is what precedence removes.
    assert_eq!(env.current("c2", "2026-01-03 00:00:00", "views"), None);
    assert_eq!(env.current("c2", "2026-01-03 00:00:30", "status"), Some("stale".into()));
    // c1's regression belongs to no partition status_transitions flagged: left for its own rule.
    assert_eq!(env.current("c1", "2026-01-04 00:00:00", "views"), Some("80".into()));
    assert_eq!(r.rules.iter().find(|x| x.id == "carry_views").unwrap().cells, 0);
}

/// A heal run that died after its catalog commit left ledger rows no manifest records: the
/// next heal purges them and the versions of its batch — unless a recorded run carries the
/// same batch (the versions are that run's too), which are kept.
#[test]
fn a_dead_runs_versions_are_purged_unless_a_recorded_run_carries_its_batch() {
    let env = env();
    env.audit();
    let healed = env.heal(NOW).unwrap();
    let batch = env.one("SELECT batch_id FROM heal_batches").unwrap();
    let versions =
        |b: &str| env.one(&format!("SELECT CAST(count(*) AS VARCHAR) FROM observations WHERE batch_id = '{b}'"));
    let kept = versions(&batch);
    assert_ne!(kept.as_deref(), Some("0"), "the heal appended versions");
    // A new audit, so that the next heal is a new run; then two runs that died after their
    // commit: one whose batch the recorded heal carries, one with a batch of its own.
    env.audit_at("2026-02-02T00:00:00Z");
    let cat = env.catalog();
    cat.conn()
        .execute_batch(&format!(
            "INSERT INTO heal_ledger SELECT * REPLACE ('dead-shared' AS run_id) FROM heal_ledger LIMIT 1;
             INSERT INTO heal_ledger SELECT * REPLACE ('dead-own' AS run_id) FROM heal_ledger LIMIT 1;
             INSERT INTO heal_batches VALUES ('dead-shared', '{batch}'), ('dead-own', 'heal-own');
             INSERT INTO observations SELECT * REPLACE ('heal-own' AS batch_id) FROM observations WHERE batch_id = '{batch}' LIMIT 2;"
        ))
        .unwrap();
    drop(cat);
    assert_eq!(versions("heal-own").as_deref(), Some("2"));
    // The next heal purges both dead runs first (whatever it then has to do).
    if let Err(e) = env.heal("2026-02-02T00:00:00Z") {
        assert_eq!(code(&e), ExitCode::NothingToDo, "{e}");
    }
    assert_eq!(
        env.one("SELECT CAST(count(*) AS VARCHAR) FROM heal_ledger WHERE run_id LIKE 'dead-%'").as_deref(),
        Some("0")
    );
    assert_eq!(versions("heal-own").as_deref(), Some("0"), "the dead run's own versions are purged");
    assert_eq!(versions(&batch), kept, "the versions of a batch a recorded run carries are kept");
    assert_eq!(env.query(&format!("SELECT run_id FROM manifests WHERE run_id = '{}'", healed.run_id)).len(), 1);
}
