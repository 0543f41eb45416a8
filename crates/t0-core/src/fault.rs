//! Fault injection for tests of atomicity: a stage passes named points where a test may stop
//! it. With `T0CLIP_PAUSE_AT=<point>` in the environment the process announces
//! `paused at <point>` on stderr and sleeps, so a test can kill it there with SIGKILL. Without
//! the variable a point costs one environment lookup.

/// Pause here for a minute when `T0CLIP_PAUSE_AT` names `point`.
#[expect(clippy::print_stderr, reason = "the kill test waits for this line; it prints only when asked to pause")]
pub fn pause_point(point: &str) {
    if std::env::var("T0CLIP_PAUSE_AT").is_ok_and(|p| p == point) {
        eprintln!("paused at {point}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}
