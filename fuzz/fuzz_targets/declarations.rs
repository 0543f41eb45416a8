//! Any text as one of a project's other declarations, the first byte choosing which: a
//! contract, heal rules (and the SQL plans they compile to), a source mapping (checked against
//! the built-in project) or a certify configuration. Each is accepted or refused with an error
//! naming the file; never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use t0_project::certify_config::{self, CertifyConfig};
use t0_project::contract::Contract;
use t0_project::rules::{PlanContext, RuleSet, current_with_rowid};
use t0_project::sources::AcquireConfig;
use t0_project::{Project, vocab};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 4 {
        0 => {
            let _ = Contract::parse(Path::new("contracts/x.yaml"), text);
        }
        1 => rules(text),
        2 => {
            if let Ok(cfg) = t0_core::config::parse_yaml::<AcquireConfig>("sources.yaml", text) {
                let _ = cfg.validate("sources.yaml", &Project::builtin());
            }
        }
        _ => {
            if let Ok(cfg) = t0_core::config::parse_yaml::<CertifyConfig>("certify.yaml", text) {
                let _ = certify_config::validate(&cfg, "certify.yaml");
                let _ = cfg.t0.date_literals();
            }
        }
    }
});

/// Accepted rules compile to plans over their table's columns (typed as the catalog types
/// them, measures as DOUBLE).
fn rules(text: &str) {
    let Ok(set) = RuleSet::parse(Path::new("heal/rules.yaml"), text) else { return };
    for rule in &set.rules {
        let Some(spec) = vocab::spec(&rule.table) else { continue };
        let mut types: BTreeMap<String, String> =
            spec.columns.iter().map(|(c, t, _)| (c.to_string(), t.sql().to_string())).collect();
        for m in Project::builtin().measures() {
            types.entry(m.name.clone()).or_insert_with(|| "DOUBLE".into());
        }
        let ctx = PlanContext { now: "2000-01-01 00:00:00".into(), types, current: current_with_rowid(&rule.table) };
        let _ = rule.plans(&ctx);
    }
}
