//! Any text as a timestamp: the hand-written ISO-8601 path reads what chrono reads wherever it
//! reads at all, and every time accepted, with or without a format and zone, is in the stored
//! range.
#![no_main]

use t0_source::time::{MAX_TIME, MIN_TIME, Zone, check_fast_path, parse_time};

const FORMATS: [&str; 6] = ["%Y", "%Y-%m", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S%z", "%s", "%Y%j"];
const ZONES: [&str; 3] = ["UTC", "+05:30", "Europe/Berlin"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(v) = std::str::from_utf8(rest) else { return };
    if let Err(e) = check_fast_path(v) {
        panic!("{e}");
    }
    let zone = Zone::parse(ZONES[pick as usize % ZONES.len()]).expect("a known zone");
    let format = (pick & 0x80 != 0).then(|| FORMATS[pick as usize % FORMATS.len()]);
    if let Ok(t) = parse_time(v, format, zone) {
        assert!((MIN_TIME..=MAX_TIME).contains(&t), "{v:?} read as {t}");
    }
});
