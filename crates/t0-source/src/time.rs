//! Timestamps as sources write them: ISO-8601 read by hand on the common shapes (checked
//! against chrono), strftime formats, zones for times without an offset, and the range of
//! times t0-clip stores.

use chrono::{NaiveDateTime, TimeZone};

/// A time zone for naive timestamps.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    pub fn parse(s: &str) -> Option<Zone> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return chrono::FixedOffset::east_opt(0).map(Zone::Fixed);
        }
        if let Some(rest) = s.strip_prefix('+').map(|r| (1, r)).or_else(|| s.strip_prefix('-').map(|r| (-1, r))) {
            let (sign, hm) = rest;
            let (h, m) = hm.split_once(':').unwrap_or((hm, "0"));
            let (h, m) = (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?);
            let secs = h.checked_mul(3600)?.checked_add(m.checked_mul(60)?)?.checked_mul(sign)?;
            return chrono::FixedOffset::east_opt(secs).map(Zone::Fixed);
        }
        s.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
    }
}

/// The common ISO-8601 shapes, read by hand (chrono's `parse_from_str` re-reads its format
/// string for every cell, which was a tenth of acquire's time): `YYYY-MM-DD[T| ]HH:MM:SS[.f]`,
/// after a `T` optionally `Z` or `±HH:MM`. Returns the time as written and its offset in
/// seconds; None for any other shape, which [`general_iso`] then reads (the two agree where
/// both read, as a test checks).
fn fast_iso(v: &str) -> Option<(NaiveDateTime, Option<i64>)> {
    let b = v.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let d = |i: usize| b[i].is_ascii_digit().then(|| (b[i] - b'0') as u32);
    let two = |i: usize| Some(d(i)? * 10 + d(i + 1)?);
    let year = two(0)? * 100 + two(2)?;
    let t = b[10];
    if b[4] != b'-' || b[7] != b'-' || !(t == b'T' || t == b' ') || b[13] != b':' || b[16] != b':' || year == 0 {
        return None;
    }
    let (month, day, hour, minute, second) = (two(5)?, two(8)?, two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            nanos = nanos.checked_mul(10)? + (b[i] - b'0') as u32;
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos *= 10u32.pow((9 - digits) as u32);
    }
    let naive =
        chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = match &b[i..] {
        [] => None,
        [b'Z'] if t == b'T' => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if t == b'T' => {
            let digit = |c: u8| c.is_ascii_digit().then(|| (c - b'0') as i64);
            let (h, m) = (digit(*h1)? * 10 + digit(*h2)?, digit(*m1)? * 10 + digit(*m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            Some(if *sign == b'-' { -(h * 3600 + m * 60) } else { h * 3600 + m * 60 })
        }
        _ => return None,
    };
    Some((naive, offset))
}

/// Any ISO-8601 form chrono reads: Ok(µs UTC) when it carries an offset, Err(the time as
/// written) when it does not (local to the source's zone).
fn general_iso(v: &str) -> std::result::Result<std::result::Result<i64, NaiveDateTime>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Ok(t.timestamp_micros()));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
        .or_else(|| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .map(Err)
        .ok_or_else(|| format!("not a timestamp: {v:?}"))
}

/// The earliest time t0-clip stores: 0001-01-01T00:00:00Z (µs).
pub const MIN_TIME: i64 = -62_135_596_800_000_000;
/// The latest: 9999-12-31T23:59:59.999999Z. A year outside 1..=9999 (year 0, negative years,
/// year 10000 reached by a leap second on the last day) is not a date any source means.
pub const MAX_TIME: i64 = 253_402_300_799_999_999;

/// `t` when it is in the stored range, else why not.
pub fn in_range(t: i64, v: &str) -> std::result::Result<i64, String> {
    if (MIN_TIME..=MAX_TIME).contains(&t) {
        Ok(t)
    } else {
        Err(format!("{v:?} is outside the times t0-clip stores (years 1 to 9999, UTC)"))
    }
}

/// Parse a timestamp: with `format` if given (a `%z` in it carries the offset), else ISO-8601
/// with or without offset; a time without offset is local to `zone`. A leap second (`:60`) is
/// read as POSIX time reads it, the first instant of the next minute; a time outside years
/// 1 to 9999 UTC is refused (the row is quarantined with the reason).
pub fn parse_time(v: &str, format: Option<&str>, zone: Zone) -> std::result::Result<i64, String> {
    in_range(parse_any_time(v, format, zone)?, v)
}

fn parse_any_time(v: &str, format: Option<&str>, zone: Zone) -> std::result::Result<i64, String> {
    let naive = match format {
        Some(f) => {
            if let Ok(t) = chrono::DateTime::parse_from_str(v, f) {
                return Ok(t.timestamp_micros());
            }
            // A format without time (or without day / month: `%Y`, `%Y-%m`) means its start.
            NaiveDateTime::parse_from_str(v, f)
                .ok()
                .or_else(|| chrono::NaiveDate::parse_from_str(v, f).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
                .or_else(|| {
                    let (v, f) = if f.contains("%m") {
                        (format!("{v}|01"), format!("{f}|%d"))
                    } else {
                        (format!("{v}|01|01"), format!("{f}|%m|%d"))
                    };
                    chrono::NaiveDate::parse_from_str(&v, &f).ok().and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .ok_or_else(|| format!("not a timestamp in format {f:?}: {v:?}"))?
        }
        None => match fast_iso(v) {
            Some((naive, Some(offset))) => return Ok(naive.and_utc().timestamp_micros() - offset * 1_000_000),
            Some((naive, None)) => naive,
            None => match general_iso(v)? {
                Ok(utc) => return Ok(utc),
                Err(naive) => naive,
            },
        },
    };
    let local = match zone {
        Zone::Fixed(z) => z.from_local_datetime(&naive).single().map(|t| t.timestamp_micros()),
        Zone::Named(z) => z.from_local_datetime(&naive).single().map(|t| t.timestamp_micros()),
    };
    local.ok_or_else(|| format!("local time {v:?} is ambiguous or does not exist in the source's time zone"))
}

/// Where the hand-written fast path reads `v`, it must read what chrono reads (the fuzzer's
/// and the tests' oracle); Err describes a disagreement.
pub fn check_fast_path(v: &str) -> std::result::Result<(), String> {
    let Some((naive, offset)) = fast_iso(v) else { return Ok(()) };
    let fast = naive.and_utc().timestamp_micros() - offset.unwrap_or(0) * 1_000_000;
    let general = match general_iso(v) {
        Ok(Ok(utc)) => Some(utc),
        Ok(Err(naive)) => Some(naive.and_utc().timestamp_micros()),
        Err(_) => None,
    };
    if general == Some(fast) { Ok(()) } else { Err(format!("{v:?}: fast path {fast}, chrono {general:?}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µs UTC of `v` as UTC-local, by the general parser.
    fn general(v: &str) -> Option<i64> {
        match general_iso(v).ok()? {
            Ok(utc) => Some(utc),
            Err(naive) => Some(naive.and_utc().timestamp_micros()),
        }
    }

    fn fast(v: &str) -> Option<i64> {
        fast_iso(v).map(|(naive, off)| naive.and_utc().timestamp_micros() - off.unwrap_or(0) * 1_000_000)
    }

    #[test]
    fn times_outside_years_1_to_9999_are_refused_and_a_leap_second_is_the_next_minute() {
        let utc = Zone::parse("UTC").unwrap();
        let at = |v: &str, f: Option<&str>| parse_time(v, f, utc);
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
        for (v, f) in [
            ("9999-12-31T23:59:60Z", None),
            ("9999-12-31T23:59:60", None),
            ("0000-01-01", None),
            ("0000-12-31 23:59:59", None),
            ("-1", Some("%Y")),
            ("0", Some("%Y")),
            ("10000", Some("%Y")),
            ("+10000-01-01T00:00:00Z", None),
        ] {
            let e = at(v, f).expect_err(v);
            assert!(e.contains("outside the times t0-clip stores") || e.contains("not a timestamp"), "{v}: {e}");
        }
        assert!(at("-1", Some("%Y")).unwrap_err().contains("outside"));
        assert_eq!(at("0001-01-01", None), Ok(MIN_TIME));
        assert_eq!(at("9999-12-31T23:59:59.999999Z", None), Ok(MAX_TIME));
        assert_eq!(at("2016-12-31T23:59:60Z", None), Ok(t("2017-01-01T00:00:00Z")));
        assert_eq!(at("2016-12-31 23:59:60", None), Ok(t("2017-01-01T00:00:00Z")));
        assert_eq!(at("2016-12-31T23:59:60.5+00:00", None), Ok(t("2017-01-01T00:00:00.5Z")));
        // A leap second is not read as any time before it.
        assert!(at("2016-12-31T23:59:60Z", None).unwrap() > at("2016-12-31T23:59:59.999999Z", None).unwrap());
    }

    #[test]
    fn a_zone_offset_that_overflows_is_no_zone() {
        assert!(Zone::parse("+999999:00").is_none());
        assert!(Zone::parse("-2147483647").is_none());
        assert!(Zone::parse("+05:30").is_some());
    }

    #[test]
    fn the_iso_fast_path_agrees_with_chrono_wherever_it_reads() {
        let mut read = 0;
        let mut cases: Vec<String> = [
            "2026-02-18 20:27:51",
            "2026-02-18T20:27:51",
            "2026-02-18T20:27:51Z",
            "2026-02-18T20:27:51.5Z",
            "2026-02-18T20:27:51.123456789+05:30",
            "2026-02-18T20:27:51.1234567891Z",
            "2026-02-18T20:27:51-00:45",
            "2024-02-29 23:59:59.999999",
            "2023-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-02-18 24:00:00",
            "2026-02-18 20:60:00",
            "2026-02-18 20:27:60",
            "2026-02-18 20:27:51Z",
            "2026-02-18t20:27:51Z",
            "2026-02-18T20:27:51z",
            "2026-02-18T20:27:51+5:30",
            "2026-02-18T20:27:51+24:00",
            "2026-02-18T20:27:51.",
            "2026-02-18T20:27",
            "2026-02-18",
            "0000-01-01 00:00:00",
            "+2026-02-18 20:27:51",
            "2026/02/18 20:27:51",
            "2026-02-18 20:27:51 ",
            "２026-02-18 20:27:51",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A sweep of digits through every position of two shapes.
        for shape in ["2026-02-18T20:27:51.250+01:00", "1999-12-31 23:59:59"] {
            for pos in 0..shape.len() {
                for c in ['0', '3', '9', 'x', ':', '-'] {
                    let mut s: Vec<char> = shape.chars().collect();
                    s[pos] = c;
                    cases.push(s.into_iter().collect());
                }
            }
        }
        for v in &cases {
            if let Some(f) = fast(v) {
                read += 1;
                assert_eq!(Some(f), general(v), "{v:?}");
            }
        }
        assert!(read > 60, "the fast path read only {read} of {} cases", cases.len());
    }
}
