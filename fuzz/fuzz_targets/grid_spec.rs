//! Any text as `calibrate --grid`, `--objective-weights` and `--hard-constraints`: parsed or
//! refused with a message, never a panic; a parsed grid is applied to the default profile.
#![no_main]

use t0_acceptance::grid::Grid;
use t0_acceptance::objective::{Constraint, Weights};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else { return };
    if let Ok(grid) = Grid::parse(spec) {
        for (path, values) in &grid.params {
            for v in values {
                let _ = t0_acceptance::Profile::default().with(&[(path.clone(), v.clone())]);
            }
        }
    }
    let _ = Weights::parse(spec);
    let _ = Constraint::parse_all(spec);
});
