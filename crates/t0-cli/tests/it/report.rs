//! The report (issue 32) as a person sees it: the page of a finished loop rendered by headless
//! Chromium (Debian's `chromium`), a screenshot taken, no console error, every section and
//! every plot there and drawn; under 1 MB, byte-identical when written again, and refused
//! (exit 3, named) when a manifest it reads was changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{copy_of_pristine, expect, find, flip_byte};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium on `page` with `args`; (stdout, stderr). Fails, saying so, when Chromium
/// is not installed: the browser test never passes without a browser.
fn chromium(page: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, as .ci/run does); the browser test cannot pass without a browser"
    );
    let o = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const SECTIONS: [&str; 9] =
    ["leaderboard", "outcomes", "acceptance", "intervals", "drift", "contributions", "audit", "heal", "chain"];

#[test]
fn the_report_renders_in_a_browser_with_every_section_and_plot() {
    let dir = copy_of_pristine();
    let root = dir.path();
    let out = expect(root, "report", &["--json"], 0);
    let summary: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let page = root.join(t0_report::REPORT_FILE);
    let bytes = std::fs::read(&page).unwrap();
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let shown: Vec<&str> = summary["sections"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap()).collect();
    assert_eq!(shown, SECTIONS, "{summary}");
    // Intervals: coverage per calibrate run, the replayed label's coverage and width over T0
    // (from calibrate's step trace), the width per score run.
    let intervals = summary["sections"].as_array().unwrap().iter().find(|s| s[0] == "intervals").unwrap();
    assert_eq!(intervals[1], 4, "{summary}");
    // Written again: the same bytes.
    expect(root, "report", &[], 0);
    assert!(std::fs::read(&page).unwrap() == bytes, "the report differs when written again");

    let profile = tempfile::tempdir().unwrap();
    let (dom, log) = chromium(&page, profile.path(), &["--dump-dom"]);
    for line in log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")) {
        assert!(!line.to_lowercase().contains("error") && !line.contains("Uncaught"), "console: {line}");
    }
    for id in SECTIONS {
        let start = dom.find(&format!("<section id=\"{id}\"")).unwrap_or_else(|| panic!("section {id} not rendered"));
        let body = &dom[start..start + dom[start..].find("</section>").unwrap()];
        assert!(body.contains("<td>"), "section {id} has no numbers");
        if id != "chain" {
            // A plot is drawn: an SVG with marks in it, not an empty frame.
            let svg = &body[body.find("<svg").unwrap_or_else(|| panic!("section {id} has no plot"))..];
            let marks =
                ["<circle", "<polyline", "<rect", "<path"].iter().map(|m| svg.matches(m).count()).sum::<usize>();
            assert!(marks > 3, "section {id}: a plot with {marks} marks");
        }
    }
    for title in ["y_log_views: coverage over T0", "y_log_views: interval width over T0", "issued level 1 − α"] {
        assert!(dom.contains(title), "no {title:?} in the page");
    }
    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&shot_dir).unwrap();
    let shot = shot_dir.join("screenshot.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&page, profile.path(), &[&format!("--screenshot={}", shot.display()), "--window-size=1280,4000"]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 4000));
    let colours: std::collections::BTreeSet<&[u8]> = buf.chunks(info.color_type.samples()).collect();
    assert!(colours.len() > 16, "the screenshot is nearly blank: {} colours", colours.len());
}

#[test]
fn a_changed_manifest_stops_the_report_naming_it() {
    let dir = copy_of_pristine();
    let root = dir.path();
    let m = find(root, "manifests/calibrate/", ".json");
    flip_byte(&root.join(&m));
    let o = expect(root, "report", &[], 3);
    assert!(o.stderr.contains(&m), "{}", o.stderr);
}
