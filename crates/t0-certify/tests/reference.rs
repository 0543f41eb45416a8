//! docs/project.md documents every field of project.yaml and certify.yaml: its two examples
//! parse with the real parsers, and every field they serialise back to is in its tables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn doc() -> String {
    // The runtime variable: a test binary reused from another checkout keeps its compile-time one.
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    std::fs::read_to_string(dir.join("../../docs/project.md")).expect("docs/project.md")
}

/// The `n`-th fenced yaml block of the page.
fn example(doc: &str, n: usize) -> String {
    doc.split("```yaml\n").nth(n + 1).and_then(|b| b.split("```").next()).expect("a yaml example").to_string()
}

/// Every field path of a serialised value: `a.b`, `a[].b`.
fn fields(v: &serde_yaml::Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                let k = k.as_str().expect("string keys");
                let p = if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
                out.insert(p.clone());
                fields(child, &p, out);
            }
        }
        serde_yaml::Value::Sequence(s) => s.iter().for_each(|item| fields(item, &format!("{path}[]"), out)),
        serde_yaml::Value::Tagged(t) => fields(&t.value, path, out),
        _ => {}
    }
}

/// The fields of `value` the page's tables do not list (a `<…>` segment of a row stands for
/// any key the user chooses).
fn undocumented(doc: &str, value: &serde_yaml::Value) -> Vec<String> {
    let rows: Vec<&str> =
        doc.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).collect();
    // A section (`features`, `labels`) is listed through its fields.
    let listed = |p: &str| {
        rows.iter().any(|r| r.starts_with(&format!("{p}.")) || r.starts_with(&format!("{p}[]")))
            || rows.iter().any(|r| {
                let (rs, ps): (Vec<&str>, Vec<&str>) = (r.split('.').collect(), p.split('.').collect());
                rs.len() == ps.len() && rs.iter().zip(&ps).all(|(r, p)| r == p || r.starts_with('<'))
            })
    };
    let mut all = BTreeSet::new();
    fields(value, "", &mut all);
    all.into_iter().filter(|p| !listed(p)).collect()
}

#[test]
fn every_project_field_is_documented() {
    let doc = doc();
    let def = t0_project::ProjectDef::parse(Path::new("docs/project.md"), &example(&doc, 0)).unwrap();
    let value = serde_yaml::to_value(&def).unwrap();
    let missing = undocumented(&doc, &value);
    assert!(missing.is_empty(), "project.yaml fields missing from docs/project.md: {missing:?}");
    // The walk sees deep fields: the test fails when one is not listed.
    assert!(!undocumented(&doc.replace("| `features.declared[].time_unit` |", "|"), &value).is_empty());
}

#[test]
fn every_certify_field_is_documented() {
    let doc = doc();
    let cfg: t0_certify::CertifyConfig = serde_yaml::from_str(&example(&doc, 1)).unwrap();
    let missing = undocumented(&doc, &serde_yaml::to_value(&cfg).unwrap());
    assert!(missing.is_empty(), "certify.yaml fields missing from docs/project.md: {missing:?}");
}
