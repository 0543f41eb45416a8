//! House rules that a reviewer would otherwise have to remember: a function longer than
//! [`MAX_LINES`] lines says why in its doc comment ("Long because: ..."), so the next reader
//! knows it was a choice. Covers every library and binary source of the workspace (not tests).

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 120;
const REASON: &str = "Long because";

/// The checkout under test: cargo's runtime `CARGO_MANIFEST_DIR` (a test binary reused from
/// another checkout of the same build directory would carry that checkout's compile-time path).
fn workspace() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR"))).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The `src` trees of every crate and project generator.
fn sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut dirs = Vec::new();
    for parent in ["crates", "projects"] {
        let Ok(entries) = std::fs::read_dir(root.join(parent)) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            dirs.push(p.join("src"));
            dirs.push(p.join("generator/src"));
        }
    }
    let mut files = Vec::new();
    for d in dirs {
        rust_files(&d, &mut files);
    }
    files.sort();
    files
}

/// `fn` items longer than `max` lines without the reason in the comment lines above them:
/// (line, name, length). Relies on rustfmt's layout: a body ends at the first `}` line with
/// the signature's indentation.
fn long_unexplained(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let sig = ["pub fn ", "pub(crate) fn ", "fn ", "pub const fn ", "const fn ", "pub(super) fn "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p));
        let Some(rest) = sig else { continue };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = format!("{indent}}}");
        let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else { continue };
        let len = end + 2;
        if len <= max {
            continue;
        }
        // The comment block (and attributes) directly above the signature.
        let above = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[") || t.starts_with(')') || t.starts_with("reason")
            })
            .any(|l| l.contains(REASON));
        if !above {
            found.push((i + 1, name, len));
        }
    }
    found
}

#[test]
fn every_long_function_says_why() {
    let files = sources();
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), workspace().display());
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, name, len) in long_unexplained(&text, MAX_LINES) {
            offenders.push(format!("{}:{line}: fn {name} is {len} lines", f.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "functions over {MAX_LINES} lines without a \"{REASON}: ...\" comment (split them, or say why not):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scanner_finds_a_long_function_and_accepts_a_reason() {
    let body = "    let x = 1;\n".repeat(MAX_LINES);
    let bare = format!("/// Does things.\npub fn big() {{\n{body}}}\n");
    assert_eq!(long_unexplained(&bare, MAX_LINES), vec![(2, "big".to_string(), MAX_LINES + 2)]);
    let explained = format!("/// Does things.\n///\n/// {REASON}: it must.\npub fn big() {{\n{body}}}\n");
    assert!(long_unexplained(&explained, MAX_LINES).is_empty());
    let short = "fn small() {\n    let x = 1;\n}\n";
    assert!(long_unexplained(short, MAX_LINES).is_empty());
    let nested = format!("impl A {{\n    fn big(&self) {{\n{body}    }}\n}}\n");
    assert_eq!(long_unexplained(&nested, MAX_LINES).len(), 1);
}

/// The workspace crates `krate` depends on (normal dependencies), transitively.
fn workspace_closure(krate: &str) -> std::collections::BTreeSet<String> {
    let root = workspace();
    let direct = |name: &str| -> Vec<String> {
        let Ok(toml) = std::fs::read_to_string(root.join("crates").join(name).join("Cargo.toml")) else {
            return Vec::new();
        };
        let mut section = "";
        let mut deps = Vec::new();
        for line in toml.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if section == "[dependencies]" && line.starts_with("t0-") {
                deps.extend(line.split(['.', ' ', '=']).next().map(str::to_string));
            }
        }
        deps
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![krate.to_string()];
    while let Some(k) = todo.pop() {
        for d in direct(&k) {
            if seen.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    seen
}

/// The served model is read without the training code: score, calibrate and the model crate
/// never depend on `t0-train`, so a serving fix cannot change how models are fitted.
#[test]
fn serving_does_not_depend_on_training() {
    for krate in ["t0-model", "t0-score", "t0-calibrate"] {
        let deps = workspace_closure(krate);
        assert!(!deps.contains("t0-train"), "{krate} depends on t0-train (through {deps:?})");
    }
    // The scan can see such a dependency: the CLI has one.
    assert!(workspace_closure("t0-cli").contains("t0-train"));
    assert!(workspace_closure("t0-score").contains("t0-model"));
}
