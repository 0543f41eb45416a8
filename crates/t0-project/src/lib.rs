//! A t0-clip **project**: one directory that declares a domain — its measures, source
//! mappings, contracts, heal rules, feature stores, labels, model features and embed inputs —
//! so that the stages know only roles. The built-in project is the clips example
//! (`projects/clips`), used when neither `--project` nor `T0CLIP_PROJECT` names another.
//!
//! Everything a project declares is validated when it is loaded, before any data is touched:
//! errors name the file, the line and the problem (exit 2).

pub mod certify_config;
pub mod completeness;
pub mod contract;
pub mod declared;
pub mod def;
pub mod rules;
#[cfg(feature = "catalog")]
pub mod schema;
pub mod sources;
pub mod vocab;

use std::path::{Path, PathBuf};

use t0_core::{Error, Result};

pub use def::{
    Absent, Agg, EmbedInputs, EndStates, Features, FollowUp, Horizon, Label, LabelKind, Measure, MeasureType,
    ProjectDef, TextInput, Transform, ValueHorizon,
};

#[cfg(feature = "catalog")]
/// Describe every canonical table as a manifest output (acquire and heal produce them).
pub fn canonical_outputs(root: &t0_core::Root, catalog: &t0_catalog::Catalog) -> Result<Vec<t0_manifest::Output>> {
    vocab::CANONICAL
        .iter()
        .map(|t| {
            let key = vocab::spec(t).expect("canonical table").hash_key;
            let loc = t0_manifest::Location::Table {
                table: t.to_string(),
                key: key.iter().map(|k| k.to_string()).collect(),
                run_id: None,
            };
            t0_manifest::record_output(root, catalog, &vocab::canonical_name(t), loc)
        })
        .collect()
}

#[cfg(feature = "catalog")]
/// The latest producer of the canonical data (acquire, or heal after a repair or revert), its
/// manifest verified, with the names of the outputs a consumer must verify: the canonical
/// tables and, for a heal run, the ledger rows it appended (a consumer never builds on a
/// truncated or edited ledger).
pub fn canonical_producer(
    root: &t0_core::Root,
    catalog: &t0_catalog::Catalog,
) -> Result<(t0_manifest::Loaded, Vec<String>)> {
    let (stage, run_id) = t0_manifest::latest_producer(catalog, "canonical.observations")?
        .ok_or_else(|| Error::Refused("no canonical data is recorded: run `acquire` first".into()))?;
    let up = t0_manifest::load(root, catalog, stage, Some(&run_id))?;
    let mut names: Vec<String> = vocab::CANONICAL.iter().map(|t| vocab::canonical_name(t)).collect();
    if up.manifest.outputs.iter().any(|o| o.name == LEDGER_OUTPUT) {
        names.push(LEDGER_OUTPUT.into());
    }
    Ok((up, names))
}

/// The manifest output of a heal run's ledger rows.
pub const LEDGER_OUTPUT: &str = "heal.ledger";

/// The file every project directory holds.
pub const PROJECT_FILE: &str = "project.yaml";

/// The clips example, built into the binaries so that every command works with no flag.
const BUILTIN: &[(&str, &str)] = &[
    ("project.yaml", include_str!("../../../projects/clips/project.yaml")),
    ("sources.yaml", include_str!("../../../projects/clips/sources.yaml")),
    ("certify.yaml", include_str!("../../../projects/clips/certify.yaml")),
    ("heal/rules.yaml", include_str!("../../../projects/clips/heal/rules.yaml")),
    ("contracts/artifacts.yaml", include_str!("../../../projects/clips/contracts/artifacts.yaml")),
    ("contracts/entities.yaml", include_str!("../../../projects/clips/contracts/entities.yaml")),
    ("contracts/events.yaml", include_str!("../../../projects/clips/contracts/events.yaml")),
    ("contracts/interactions.yaml", include_str!("../../../projects/clips/contracts/interactions.yaml")),
    ("contracts/observations.yaml", include_str!("../../../projects/clips/contracts/observations.yaml")),
    ("feature-stores/base.sql", include_str!("../../../projects/clips/feature-stores/base.sql")),
    ("feature-stores/text.sql", include_str!("../../../projects/clips/feature-stores/text.sql")),
    ("feature-stores/history.sql", include_str!("../../../projects/clips/feature-stores/history.sql")),
    ("feature-stores/outcomes.sql", include_str!("../../../projects/clips/feature-stores/outcomes.sql")),
    ("feature-stores/priors.sql", include_str!("../../../projects/clips/feature-stores/priors.sql")),
    ("feature-stores/modality.sql", include_str!("../../../projects/clips/feature-stores/modality.sql")),
];

/// Where a project's files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The clips example compiled into the binary.
    Builtin,
    /// A project directory (absolute).
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Project {
    pub origin: Origin,
    pub def: ProjectDef,
    /// blake3 of `project.yaml`.
    pub hash: String,
    /// The text of `project.yaml` the definition was parsed from: errors quote its lines
    /// without reading the file again (which could have changed since).
    pub yaml: String,
}

impl Project {
    /// `dir`, or the built-in clips example when `None`.
    pub fn load(dir: Option<&Path>) -> Result<Project> {
        match dir {
            None => Ok(Project::builtin()),
            Some(d) => {
                if !d.join(PROJECT_FILE).is_file() {
                    return Err(Error::Usage(format!(
                        "--project {}: no {PROJECT_FILE} there (a project is a directory with {PROJECT_FILE}; `acquire infer` writes one)",
                        d.display()
                    )));
                }
                let abs = std::fs::canonicalize(d).map_err(|e| t0_core::config::unreadable(d, e))?;
                let p = Project {
                    origin: Origin::Dir(abs),
                    def: ProjectDef::default(),
                    hash: String::new(),
                    yaml: String::new(),
                };
                p.parse()
            }
        }
    }

    pub fn builtin() -> Project {
        let p =
            Project { origin: Origin::Builtin, def: ProjectDef::default(), hash: String::new(), yaml: String::new() };
        p.parse().expect("the built-in clips project is valid (tested)")
    }

    fn parse(mut self) -> Result<Project> {
        let (name, text) = self.read(PROJECT_FILE)?;
        self.def = ProjectDef::parse(Path::new(&name), &text)?;
        self.hash = t0_core::blake3_hex(text.as_bytes());
        self.check_store_names(&name, &text)?;
        self.yaml = text;
        Ok(self)
    }

    /// The surfaces `features` and `embed` read must be stores of the project's certify
    /// config: a typo is refused here, before any data is read.
    fn check_store_names(&self, name: &str, text: &str) -> Result<()> {
        if !self.has(&self.def.certify) {
            return Ok(());
        }
        let (cname, ctext) = self.read(&self.def.certify)?;
        let doc: serde_yaml::Value = t0_core::config::parse_yaml(&cname, &ctext)?;
        let mut stores: Vec<&str> =
            doc["stores"].as_sequence().into_iter().flatten().filter_map(|s| s["entrypoint"].as_str()).collect();
        for d in &self.def.features.declared {
            if stores.contains(&d.store.as_str()) {
                let line = def::line_of(text, def::key_line(text, "features"), &format!("store: {}", d.store));
                return Err(Error::config(
                    name,
                    format!(
                        "line {line}: features.declared store {:?} is also a store of {cname}: rename one",
                        d.store
                    ),
                ));
            }
            stores.push(&d.store);
        }
        let wanted = self
            .def
            .features
            .surfaces
            .iter()
            .map(|s| ("features", "features.surfaces", s))
            .chain(self.def.embed.text.iter().map(|t| ("embed", "embed.text surface", &t.surface)));
        for (section, what, s) in wanted {
            if !stores.contains(&s.as_str()) {
                let line = def::line_of(text, def::key_line(text, section), s);
                return Err(Error::config(
                    name,
                    format!("line {line}: {what} {s:?} is not a store of {cname} (stores: {})", stores.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The project directory, or `None` for the built-in project.
    pub fn dir(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Dir(d) => Some(d),
            Origin::Builtin => None,
        }
    }

    /// How errors and reports name a project file.
    pub fn display(&self, rel: &str) -> String {
        match &self.origin {
            Origin::Builtin => format!("projects/clips/{rel} (built-in)"),
            Origin::Dir(d) => d.join(rel).display().to_string(),
        }
    }

    /// Path of a project file on disk, `None` for the built-in project.
    pub fn path(&self, rel: &str) -> Option<PathBuf> {
        self.dir().map(|d| d.join(rel))
    }

    /// Read a project file: (display name, text). A missing file is a usage error naming it.
    pub fn read(&self, rel: &str) -> Result<(String, String)> {
        match &self.origin {
            Origin::Builtin => BUILTIN
                .iter()
                .find(|(n, _)| *n == rel)
                .map(|(_, t)| (self.display(rel), t.to_string()))
                .ok_or_else(|| Error::config(self.display(rel), "no such file in the built-in project")),
            Origin::Dir(_) => {
                let p = self.confined(rel)?;
                Ok((p.display().to_string(), t0_core::config::read_text(&p)?))
            }
        }
    }

    /// `rel` under the project directory, refused (exit 2 naming it) when it is absolute,
    /// climbs with `..`, or resolves through a symlink to a place outside the directory: a
    /// project reads only its own files, whatever its `project.yaml` names.
    pub fn confined(&self, rel: &str) -> Result<PathBuf> {
        let Origin::Dir(d) = &self.origin else {
            return Err(Error::internal(format!("project file {rel}"), "the built-in project has no directory"));
        };
        let plain =
            !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(Error::config(
                d.join(PROJECT_FILE),
                format!(
                    "{rel:?}: a project file must be a relative path inside the project (no `..`, no absolute path)"
                ),
            ));
        }
        let p = d.join(rel);
        if let Ok(real) = std::fs::canonicalize(&p)
            && !real.starts_with(d)
        {
            return Err(Error::config(&p, format!("resolves to {}, outside the project directory", real.display())));
        }
        Ok(p)
    }

    /// A configuration file: `over` (a command-line override) when given, else the project's
    /// `rel`. Returns (display name, text).
    pub fn read_or(&self, over: Option<&Path>, rel: &str) -> Result<(String, String)> {
        match over {
            Some(p) => Ok((p.display().to_string(), t0_core::config::read_text(p)?)),
            None => self.read(rel),
        }
    }

    /// Whether the project has a file `rel`.
    pub fn has(&self, rel: &str) -> bool {
        match &self.origin {
            Origin::Builtin => BUILTIN.iter().any(|(n, _)| *n == rel),
            Origin::Dir(d) => d.join(rel).is_file(),
        }
    }

    /// Files of folder `rel` ending in one of `exts`, in name order: (display name, text).
    pub fn read_dir(&self, rel: &str, exts: &[&str]) -> Result<Vec<(String, String)>> {
        let ok = |name: &str| exts.iter().any(|e| name.ends_with(&format!(".{e}")));
        match &self.origin {
            Origin::Builtin => {
                let prefix = format!("{}/", rel.trim_end_matches('/'));
                let mut v: Vec<_> = BUILTIN
                    .iter()
                    .filter(|(n, _)| n.starts_with(&prefix) && ok(n))
                    .map(|(n, t)| (self.display(n), t.to_string()))
                    .collect();
                v.sort();
                Ok(v)
            }
            Origin::Dir(_) => {
                let dir = self.confined(rel.trim_end_matches('/'))?;
                if !dir.is_dir() {
                    return Ok(Vec::new());
                }
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(|e| t0_core::config::unreadable(&dir, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(ok))
                    .collect();
                files.sort();
                files
                    .iter()
                    .map(|f| {
                        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        let f = self.confined(&format!("{}/{name}", rel.trim_end_matches('/')))?;
                        Ok((f.display().to_string(), t0_core::config::read_text(&f)?))
                    })
                    .collect()
            }
        }
    }

    /// A feature-store SQL file of the project (the built-in as-of views are certify's).
    pub fn store_sql(&self, file: &str) -> Result<(String, String)> {
        self.read(&format!("{}/{file}", self.def.feature_stores))
    }

    /// The project's measures with their storage types.
    pub fn measures(&self) -> &[Measure] {
        &self.def.measures
    }

    pub fn measure(&self, name: &str) -> Option<&Measure> {
        self.def.measures.iter().find(|m| m.name == name)
    }

    pub fn label(&self, name: &str) -> Option<&Label> {
        self.def.labels.iter().find(|l| l.name() == name)
    }

    /// A short record of the project for manifests and reports.
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.def.name,
            "dir": self.dir().map(|d| d.display().to_string()),
            "project_hash": self.hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_reads_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let (proj, outside) = (dir.path().join("proj"), dir.path().join("outside"));
        std::fs::create_dir_all(proj.join("contracts")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("c.yaml"), "table: observations\n").unwrap();
        std::fs::write(proj.join("sources.yaml"), "sources: []\n").unwrap();
        std::fs::write(proj.join(PROJECT_FILE), "name: p\nmeasures: [{name: v, type: count}]\n").unwrap();
        std::os::unix::fs::symlink(outside.join("c.yaml"), proj.join("contracts/c.yaml")).unwrap();
        std::os::unix::fs::symlink(&outside, proj.join("linked")).unwrap();
        let p = Project::load(Some(&proj)).unwrap();
        assert_eq!(p.read("sources.yaml").unwrap().1, "sources: []\n");
        for (rel, says) in [
            ("/etc/passwd", "must be a relative path inside the project"),
            ("../outside/c.yaml", "must be a relative path inside the project"),
            ("", "must be a relative path inside the project"),
            ("linked/c.yaml", "outside the project directory"),
        ] {
            let e = p.read(rel).unwrap_err();
            assert_eq!(e.exit_code(), t0_core::ExitCode::Usage, "{rel}");
            assert!(e.to_string().contains(says), "{rel}: {e}");
        }
        let e = p.read_dir("contracts", &["yaml"]).unwrap_err();
        assert!(e.to_string().contains("outside the project directory"), "{e}");
        assert!(p.read_dir("linked", &["yaml"]).is_err());
    }

    #[test]
    fn the_builtin_clips_project_is_valid_and_equals_its_directory() {
        let b = Project::builtin();
        assert_eq!(b.name(), "clips");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../projects/clips");
        let d = Project::load(Some(&dir)).unwrap();
        assert_eq!(b.hash, d.hash);
        for (rel, text) in BUILTIN {
            assert_eq!(d.read(rel).unwrap().1, *text, "{rel} differs from the built-in copy");
        }
        // Every file of the directory is built in.
        let mut on_disk = Vec::new();
        for sub in ["contracts", "feature-stores"] {
            on_disk.extend(d.read_dir(sub, &["yaml", "sql"]).unwrap().into_iter().map(|(n, _)| n));
        }
        for n in on_disk {
            let rel = n.split("projects/clips/").nth(1).unwrap_or(&n).to_string();
            assert!(BUILTIN.iter().any(|(r, _)| rel.ends_with(r)), "{rel} is not built in");
        }
    }
}
