//! Fault injection for tests of atomicity: a stage passes named points where a test may stop
//! it. With `T0CLIP_PAUSE_AT=<point>` (or `<point>#<n>`, the n-th time it is reached) in the
//! environment the process announces `paused at <point>` on stderr and sleeps, so a test can
//! kill it there with SIGKILL. Without the variable a point costs one environment lookup.
//!
//! The points: `catalog.commit` and `catalog.committed` (around every catalog transaction's
//! commit), `<stage>.manifest` (outputs written, nothing recorded), `<stage>.record` (the
//! manifest file written, its catalog row not yet), `<stage>.recorded` (all done), and
//! `heal.apply`, `heal.commit`.

use std::collections::HashMap;
use std::sync::Mutex;

/// Pause here for a minute when `T0CLIP_PAUSE_AT` names `point` (and this is its n-th pass).
#[expect(clippy::print_stderr, reason = "the kill test waits for this line; it prints only when asked to pause")]
pub fn pause_point(point: &str) {
    let Ok(want) = std::env::var("T0CLIP_PAUSE_AT") else { return };
    let (name, nth) = match want.split_once('#') {
        Some((n, k)) => (n.to_string(), k.parse::<u32>().unwrap_or(1)),
        None => (want, 1),
    };
    if name != point {
        return;
    }
    static PASSES: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let pass = {
        let mut passes = PASSES.lock().unwrap_or_else(|e| e.into_inner());
        let n = passes.get_or_insert_with(HashMap::new).entry(name).or_insert(0);
        *n += 1;
        *n
    };
    if pass == nth {
        eprintln!("paused at {point}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
