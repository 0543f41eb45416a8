//! Setting a profile's parameters by dotted path (`aci.gamma`, `guards.coverage_ema.soft`):
//! what a grid point, a project's override and `--apply-top` do. Only the profile's own
//! leaves are paths; anything else is an error naming it (the seed ignored unknown paths).

use serde_json::Value as Json;

use crate::Profile;
use crate::grid::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("{path} is not a parameter of the governance profile (known: {known})")]
    UnknownPath { path: String, known: String },
    #[error("{path} = {value}: {why}")]
    BadValue { path: String, value: String, why: String },
}

impl Profile {
    /// Every parameter's dotted path, sorted.
    pub fn paths() -> Vec<String> {
        let mut out = Vec::new();
        leaves(&to_json(&Profile::default()), "", &mut out);
        out
    }

    /// This profile with each `(path, value)` set.
    pub fn with(&self, patch: &[(String, Value)]) -> Result<Profile, PatchError> {
        let mut json = to_json(self);
        let known = Profile::paths();
        for (path, value) in patch {
            if !known.contains(path) {
                return Err(PatchError::UnknownPath { path: path.clone(), known: known.join(", ") });
            }
            let slot = path.split('.').try_fold(&mut json, |j, k| j.get_mut(k)).expect("a known path has a slot");
            *slot = to_json_value(value);
        }
        serde_json::from_value(json).map_err(|e| {
            let (path, value) = patch.last().map(|(p, v)| (p.clone(), v.to_string())).unwrap_or_default();
            PatchError::BadValue { path, value, why: e.to_string() }
        })
    }

    /// The parameters where `self` differs from `base`, as (path, value) in path order.
    pub fn diff(&self, base: &Profile) -> Vec<(String, Json)> {
        let (a, b) = (to_json(self), to_json(base));
        Profile::paths()
            .into_iter()
            .filter_map(|p| {
                let get = |j: &Json| p.split('.').try_fold(j, |j, k| j.get(k)).cloned();
                let (x, y) = (get(&a)?, get(&b)?);
                (x != y).then_some((p, x))
            })
            .collect()
    }

    /// A project's override: a mapping (YAML) of any subset of the profile's sections and
    /// fields, laid over this profile. Unknown fields are errors naming them.
    pub fn overlay(&self, partial: Json) -> Result<Profile, String> {
        let mut json = to_json(self);
        merge(&mut json, partial, "")?;
        serde_json::from_value(json).map_err(|e| e.to_string())
    }
}

fn to_json(p: &Profile) -> Json {
    serde_json::to_value(p).expect("the profile is plain data")
}

fn to_json_value(v: &Value) -> Json {
    match v {
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Bool(b) => Json::Bool(*b),
        Value::Str(s) => Json::String(s.clone()),
        Value::List(l) => Json::Array(l.iter().map(to_json_value).collect()),
    }
}

fn leaves(j: &Json, prefix: &str, out: &mut Vec<String>) {
    match j {
        Json::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn merge(base: &mut Json, over: Json, at: &str) -> Result<(), String> {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                let slot = b.get_mut(&k).ok_or_else(|| format!("unknown field {path}"))?;
                merge(slot, v, &path)?;
            }
            Ok(())
        }
        (Json::Object(_), _) => Err(format!("{at} is a section: give it a mapping")),
        (slot, v) => {
            *slot = v;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_profiles_leaves() {
        let paths = Profile::paths();
        assert!(paths.contains(&"aci.gamma".to_string()));
        assert!(paths.contains(&"guards.coverage_ema.soft".to_string()));
        assert!(!paths.iter().any(|p| p == "aci" || p == "guards.coverage_ema"));
    }

    #[test]
    fn a_patch_sets_values_and_names_unknown_paths_and_bad_values() {
        let p = Profile::default();
        let q = p.with(&[("aci.gamma".into(), Value::Float(0.01)), ("hysteresis.dwell_pass".into(), Value::Int(4))]);
        let q = q.unwrap();
        assert_eq!((q.aci.gamma, q.hysteresis.dwell_pass), (0.01, 4));
        let diff: Vec<String> = q.diff(&p).into_iter().map(|(k, _)| k).collect();
        assert_eq!(diff, ["aci.gamma", "hysteresis.dwell_pass"]);
        let e = p.with(&[("aci.gama".into(), Value::Float(0.01))]).unwrap_err();
        assert!(matches!(&e, PatchError::UnknownPath { path, .. } if path == "aci.gama"), "{e}");
        let e = p.with(&[("hysteresis.dwell_pass".into(), Value::Str("x".into()))]).unwrap_err();
        assert!(e.to_string().contains("hysteresis.dwell_pass"), "{e}");
    }

    #[test]
    fn an_overlay_keeps_what_it_does_not_name_and_refuses_unknown_fields() {
        let p = Profile::default();
        let q = p.overlay(serde_json::json!({"aci": {"alpha_target": 0.2}})).unwrap();
        assert_eq!(q.aci.alpha_target, 0.2);
        assert_eq!(q.aci.gamma, p.aci.gamma);
        let e = p.overlay(serde_json::json!({"aci": {"alpha": 0.2}})).unwrap_err();
        assert!(e.contains("aci.alpha"), "{e}");
        assert!(p.overlay(serde_json::json!({"aci": 3})).unwrap_err().contains("aci is a section"));
    }
}
