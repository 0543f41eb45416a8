//! The governance profile a calibrate run uses: the default (`configs/governance.yaml`),
//! overlaid with the project's `governance.yaml` when it has one, then with `--profile FILE`
//! (each any subset of sections and fields; unknown ones are exit 2 naming them), then
//! `--set path=value` overrides.

use t0_acceptance::Profile;
use t0_acceptance::grid::Value;
use t0_core::{Error, Result};

/// The project file that overrides the default profile.
pub const PROJECT_FILE: &str = "governance.yaml";

pub struct Loaded {
    pub profile: Profile,
    /// Where it came from (`default`, the project file, `--set` overrides).
    pub source: String,
    /// The metrics' `profile` label: `default`, `project` or `custom` (low cardinality).
    pub name: String,
    pub hash: String,
}

/// Parse `path=value` (`--set`).
pub fn parse_set(text: &str) -> std::result::Result<(String, Value), String> {
    let grid = t0_acceptance::grid::Grid::parse(text).map_err(|e| e.to_string())?;
    match grid.params.as_slice() {
        [(path, values)] if values.len() == 1 => Ok((path.clone(), values[0].clone())),
        _ => Err(format!("--set {text:?}: expected one path=value")),
    }
}

/// `base` overlaid with the YAML file at `path`.
fn overlay(base: Profile, path: &std::path::Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::config(path, e.to_string()))?;
    let partial: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| Error::config(path, format!("not a YAML mapping: {e}")))?;
    base.overlay(partial).map_err(|e| Error::config(path, e))
}

pub fn load(project: &t0_project::Project, file: Option<&std::path::Path>, set: &[(String, Value)]) -> Result<Loaded> {
    let mut profile = Profile::default();
    let (mut source, mut name) = ("default".to_string(), "default");
    if let Some(path) = project.path(PROJECT_FILE).filter(|p| p.exists()) {
        profile = overlay(profile, &path)?;
        (source, name) = (path.display().to_string(), "project");
    }
    if let Some(path) = file {
        profile = overlay(profile, path)?;
        (source, name) = (format!("{source} + {}", path.display()), "custom");
    }
    if !set.is_empty() {
        profile = profile.with(set).map_err(|e| Error::Usage(format!("--set: {e}")))?;
        let shown: Vec<String> = set.iter().map(|(p, v)| format!("{p}={v}")).collect();
        source = format!("{source} + --set {}", shown.join(" "));
        name = "custom";
    }
    t0_acceptance::objective::Weights::parse(&profile.objective.weights)
        .map_err(|e| Error::Usage(format!("{source}: objective.weights: {e}")))?;
    t0_acceptance::objective::Constraint::parse_all(&profile.objective.constraints)
        .map_err(|e| Error::Usage(format!("{source}: objective.constraints: {e}")))?;
    let hash = t0_core::config::value_hash(&profile);
    Ok(Loaded { profile, source, name: name.to_string(), hash })
}
