//! Tamper detection for every output kind (issue 30): the table is `t0_manifest::kinds`, the
//! registry every recorded output must match. For each kind one output of a finished loop (with
//! explanations and a calibration grid search) is damaged — a byte flipped in its file, a row deleted from its
//! table (added to an empty one) — and its reader must refuse: exit 3 naming it for a stage that consumes it, exit 1
//! naming it for `verify` where only people read it. A kind the loop never produces fails the
//! test. The table of what happened is a snapshot (`snapshots/…tamper_table.snap`).

use std::path::Path;

use t0_core::Root;
use t0_manifest::kinds::{OUTPUT_KINDS, OutputKind, Reader};
use t0_manifest::{Location, Output};

use crate::support::{copy_dir, expect, flip_byte, pristine, run};

/// Every output the root's manifests record, latest run first: (stage, run id, output).
fn outputs(root: &Path) -> Vec<(String, String, Output)> {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    let mut stmt = cat.conn().prepare("SELECT stage, run_id, manifest_path FROM manifests ORDER BY seq DESC").unwrap();
    let rows: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    rows.into_iter()
        .flat_map(|(stage, run_id, path)| {
            let m: t0_manifest::Manifest = serde_json::from_slice(&std::fs::read(root.join(path)).unwrap()).unwrap();
            m.outputs.into_iter().map(move |o| (stage.clone(), run_id.clone(), o))
        })
        .collect()
}

/// Damage `o` in `root`; returns how, and the text its reader must name.
fn damage(root: &Path, o: &Output) -> (&'static str, String) {
    match &o.location {
        Location::Table { table, run_id, .. } => {
            let only = run_id.as_ref().map(|r| format!(" WHERE run_id = '{r}'")).unwrap_or_default();
            let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
            let c = cat.conn();
            if let (Some(0), Some(r)) = (o.rows, run_id) {
                // An empty output (a passing audit's failing rows) gains a row from another run.
                let sql = format!("INSERT INTO {table} SELECT * REPLACE ('{r}' AS run_id) FROM {table} LIMIT 1");
                assert_eq!(c.execute(&sql, []).unwrap(), 1, "{}: no row to copy into {table}", o.name);
                return ("row added", table.clone());
            }
            let sql = format!("DELETE FROM {table} WHERE rowid = (SELECT min(rowid) FROM {table}{only})");
            assert_eq!(c.execute(&sql, []).unwrap(), 1, "{}: no row to delete in {table}", o.name);
            ("row deleted", table.clone())
        }
        Location::Parquet { path, .. } => {
            let file = if root.join(path).is_dir() {
                let mut files = crate::support::files_under(&root.join(path));
                files.retain(|f| f.extension().is_some_and(|x| x == "parquet"));
                files.remove(0)
            } else {
                root.join(path)
            };
            // A flipped byte may land in statistics and change no row (an equal file verifies:
            // the rows decide), so a row goes: a change any reader of the rows must see.
            let (schema, batches) = t0_table::read_parquet(&file).unwrap();
            let first = batches.iter().position(|b| b.num_rows() > 0).expect("a row to delete");
            let mut kept = batches.clone();
            kept[first] = batches[first].slice(1, batches[first].num_rows() - 1);
            t0_table::write_parquet(&file, schema, &kept).unwrap();
            ("row deleted", file.strip_prefix(root).unwrap().display().to_string())
        }
        Location::File { path } => {
            flip_byte(&root.join(path));
            ("byte flipped", path.clone())
        }
    }
}

/// One line of the table: the kind, what was damaged and how its reader answered.
fn check(root: &Path, kind: &OutputKind, all: &[(String, String, Output)]) -> String {
    let Some((stage, _, o)) = all.iter().find(|(_, _, o)| kind.matches(&o.name)) else {
        panic!("no output of kind {} in the loop: produce one, or drop the kind", kind.name);
    };
    assert!(kind.producers.iter().any(|p| p.as_str() == stage), "{} is produced by {stage}", o.name);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(root, dir.path());
    let (how, named) = damage(dir.path(), o);
    let (reader, args, code) = match kind.reader {
        Reader::Stage { stage, args } => (stage, args, 3),
        Reader::Verify => ("verify", &[][..], 1),
    };
    let out = run(dir.path(), reader, args);
    let said = format!("{}{}", out.stderr, out.stdout);
    assert_eq!(out.code, code, "{} ({how}): {reader} {args:?} exited {}: {}", o.name, out.code, out.stderr);
    assert!(said.contains(&named), "{} ({how}): {reader} must name {named}: {said}", o.name);
    assert!(!said.contains("panicked"), "{}: {said}", o.name);
    let command = [reader].iter().chain(args).copied().collect::<Vec<_>>().join(" ");
    let producers = kind.producers.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    format!("| {} | {producers} | {how} | `{command}` | {code} |", kind.name)
}

#[test]
fn every_output_kind_damaged_is_refused_by_its_reader_naming_it() {
    let root = tempfile::tempdir().unwrap();
    copy_dir(pristine(), root.path());
    // Explanations exist only when asked for, the grid search's outputs only after a search.
    expect(root.path(), "score", &["--explain-all"], 0);
    expect(root.path(), "calibrate", &["--grid", "aci.gamma=[0.005,0.02]"], 0);
    let all = outputs(root.path());
    for (_, _, o) in &all {
        assert!(t0_manifest::kinds::kind_of(&o.name).is_some(), "output {} has no kind", o.name);
    }
    let mut table = vec!["| kind | producer | damage | reader | exit |".to_string(), "|---|---|---|---|---|".into()];
    table.extend(OUTPUT_KINDS.iter().map(|k| check(root.path(), k, &all)));
    // A manifest is no output, but every consumer reads one: a flipped byte is named too.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(root.path(), dir.path());
    let manifest: String = t0_catalog::Catalog::open(&Root::new(dir.path()))
        .unwrap()
        .conn()
        .query_row("SELECT manifest_path FROM manifests WHERE stage = 'audit' ORDER BY seq DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    flip_byte(&dir.path().join(&manifest));
    let o = expect(dir.path(), "heal", &[], 3);
    assert!(o.stderr.contains(&manifest), "heal must name {manifest}: {}", o.stderr);
    table.push("| manifests/<stage>/<run>.json | every stage | byte flipped | `heal` | 3 |".into());
    insta::assert_snapshot!("tamper_table", table.join("\n"));
}
