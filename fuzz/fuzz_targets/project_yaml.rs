//! Any text as a `project.yaml`: a definition or an error naming the file; never a panic.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(def) = t0_project::ProjectDef::parse(Path::new("project.yaml"), text) {
        // What certify derives from an accepted definition must not panic either.
        for store in &def.features.declared {
            let _ = store.columns(&def.measures);
        }
    }
});
