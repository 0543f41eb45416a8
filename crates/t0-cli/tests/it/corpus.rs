//! The malformed-input corpus (`fixtures/malformed/corpus.yaml`, issue 30): every case runs
//! its stage on its files and must end as the corpus says — an exit code, a message, the rows
//! quarantined with their reasons and raw text — never with a panic, and every acquire that
//! ingests accounts for each row it read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use t0_core::Root;

use crate::support::{copy_dir, expect, fixture, pristine, repo, run};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "acquire")]
    stage: String,
    #[serde(default)]
    root: Start,
    #[serde(default)]
    files: BTreeMap<String, Content>,
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    /// A shipped project (`projects/<name>`) copied to `{dir}/proj` before `files` are written
    /// over it.
    project: Option<String>,
    #[serde(default)]
    sql: Vec<String>,
    args: Option<Vec<String>>,
    expect: Expect,
}

fn acquire() -> String {
    "acquire".into()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Start {
    #[default]
    Empty,
    Acquired,
    Audited,
    Pristine,
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Hex { hex: String },
    Parquet { parquet: String, truncate: Option<usize>, flip: Option<i64> },
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Says {
    One(String),
    All(Vec<String>),
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    exit: i32,
    says: Option<Says>,
    quarantined: Option<u64>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    raw: Vec<String>,
    query: Option<Query>,
}

#[derive(Debug, serde::Deserialize)]
struct Query {
    sql: String,
    equals: String,
}

const PANEL_SOURCES: &str = "sources:
  - {name: obs, table: observations, glob: \"obs*\", entities: {kind: clip}, availability: column}
";

fn corpus() -> Vec<Case> {
    let path = repo("fixtures/malformed/corpus.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Parquet file of `csv`'s rows, every column text.
fn parquet_bytes(csv: &str) -> Vec<u8> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let mut lines = csv.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let schema = Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>()));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| Some(r[i])).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.parquet");
    t0_table::write_parquet(&file, schema, &[batch]).unwrap();
    std::fs::read(file).unwrap()
}

fn bytes(c: &Content) -> Vec<u8> {
    match c {
        Content::Text(t) => t.as_bytes().to_vec(),
        Content::Hex { hex } => {
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
        }
        Content::Parquet { parquet, truncate, flip } => {
            let mut b = parquet_bytes(parquet);
            if let Some(n) = truncate {
                b.truncate(*n);
            }
            if let Some(i) = flip {
                let i = if *i < 0 { b.len() - i.unsigned_abs() as usize } else { *i as usize };
                b[i] = !b[i];
            }
            b
        }
    }
}

/// A root the case starts from: bases are built once and copied.
fn start(s: &Start, into: &Path) {
    static ACQUIRED: OnceLock<tempfile::TempDir> = OnceLock::new();
    static AUDITED: OnceLock<tempfile::TempDir> = OnceLock::new();
    let acquired = || {
        ACQUIRED.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            expect(d.path(), "acquire", &["--input", fixture().to_str().unwrap()], 0);
            d
        })
    };
    match s {
        Start::Empty => {}
        Start::Acquired => copy_dir(acquired().path(), into),
        Start::Audited => {
            let base = AUDITED.get_or_init(|| {
                let d = tempfile::tempdir().unwrap();
                copy_dir(acquired().path(), d.path());
                expect(d.path(), "audit", &[], 1);
                d
            });
            copy_dir(base.path(), into);
        }
        Start::Pristine => copy_dir(pristine(), into),
    }
}

fn prepare(case: &Case, dir: &Path, root: &Path) -> Vec<String> {
    let d = dir.to_str().unwrap();
    if let Some(p) = &case.project {
        copy_dir(&repo(&format!("projects/{p}")), &dir.join("proj"));
    }
    for (name, content) in &case.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes(content)).unwrap();
    }
    for (link, target) in &case.symlinks {
        let path = dir.join(link);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A link replaces what the copied project has there.
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
        std::os::unix::fs::symlink(target.replace("{dir}", d), &path).unwrap();
    }
    start(&case.root, root);
    if !case.sql.is_empty() {
        let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
        for s in &case.sql {
            cat.conn().execute_batch(s).unwrap_or_else(|e| panic!("{}: {s}: {e}", case.name));
        }
    }
    if case.stage == "acquire" && !case.files.contains_key("sources.yaml") {
        std::fs::write(dir.join("sources.yaml"), PANEL_SOURCES).unwrap();
    }
    let args = case.args.clone().unwrap_or_else(|| {
        assert_eq!(case.stage, "acquire", "{}: only acquire has default arguments", case.name);
        ["--input", "{dir}/in", "--config", "{dir}/sources.yaml", "--json"].map(String::from).to_vec()
    });
    args.iter().map(|a| a.replace("{dir}", d)).collect()
}

/// The quarantined rows of the root, in file order: (reason, raw).
fn quarantine(root: &Path) -> Vec<(String, Option<String>)> {
    let cat = t0_catalog::Catalog::open(&Root::new(root)).unwrap();
    let mut stmt = cat.conn().prepare("SELECT reason, raw FROM quarantine ORDER BY file, row_number").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// What a case did that the corpus does not say; empty when it behaved.
fn check(case: &Case) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let args = prepare(case, dir.path(), &root);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&root, &case.stage, &argv);
    let mut wrong = Vec::new();
    let both = format!("{}\n{}", out.stderr, out.stdout);
    if both.contains("panicked") {
        wrong.push(format!("panicked: {}", out.stderr));
    }
    let e = &case.expect;
    if out.code != e.exit {
        wrong.push(format!("exit {} (want {}): {}", out.code, e.exit, out.stderr.trim()));
    }
    let says = match &e.says {
        None => Vec::new(),
        Some(Says::One(s)) => vec![s.clone()],
        Some(Says::All(v)) => v.clone(),
    };
    for s in says.iter().filter(|s| !both.contains(s.as_str())) {
        wrong.push(format!("does not say {s:?}: {}", both.trim()));
    }
    if case.stage == "acquire" && out.code == 0 {
        let r: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let n = |k: &str| r[k].as_u64().unwrap();
        if n("rows_read") != n("rows_ingested") + n("rows_unchanged") + n("rows_quarantined") {
            wrong.push(format!("rows read != ingested + unchanged + quarantined: {r}"));
        }
        let q = quarantine(&root);
        if e.quarantined.is_some_and(|want| want != n("rows_quarantined") || want != q.len() as u64) {
            wrong.push(format!("quarantined {} (table: {q:?}), want {:?}", n("rows_quarantined"), e.quarantined));
        }
        for (i, want) in e.reasons.iter().enumerate() {
            if !q.get(i).is_some_and(|(reason, _)| reason.contains(want.as_str())) {
                wrong.push(format!("quarantined row {i}: want reason {want:?}, have {:?}", q.get(i)));
            }
        }
        for (i, want) in e.raw.iter().enumerate() {
            if !q.get(i).and_then(|(_, raw)| raw.as_deref()).is_some_and(|raw| raw.contains(want.as_str())) {
                wrong.push(format!("quarantined row {i}: want raw {want:?}, have {:?}", q.get(i)));
            }
        }
    }
    if let Some(query) = &e.query {
        let cat = t0_catalog::Catalog::open(&Root::new(&root)).unwrap();
        let got: String =
            cat.conn().query_row(&format!("SELECT CAST(({}) AS VARCHAR)", query.sql), [], |r| r.get(0)).unwrap();
        if got != query.equals {
            wrong.push(format!("{} = {got:?}, want {:?}", query.sql, query.equals));
        }
    }
    wrong
}

#[test]
fn every_malformed_input_ends_as_the_corpus_says_and_none_panics() {
    let cases = corpus();
    assert!(cases.len() >= 60, "the corpus has {} cases (issue 30 asks for 60)", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(&c.name), "case {} twice", c.name);
    }
    let only = std::env::var("T0CLIP_CORPUS_CASE").ok();
    let failures: Vec<String> = cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .flat_map(|c| check(c).into_iter().map(move |w| format!("{}: {w}", c.name)))
        .collect();
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
