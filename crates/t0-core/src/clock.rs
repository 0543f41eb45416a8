use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{Error, Result};

/// The single source of "now" for a stage run. Pinned with `--now` / `T0CLIP_NOW` so that a
/// replay or a test produces bit-identical outputs; the wall clock otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: DateTime<Utc>,
    pinned: bool,
}

impl Clock {
    pub fn wall() -> Self {
        // Whole microseconds: the resolution of a DuckDB TIMESTAMP.
        let now = Utc::now();
        let micros = now.timestamp_micros();
        Clock { now: DateTime::from_timestamp_micros(micros).unwrap_or(now), pinned: false }
    }

    pub fn pinned(now: DateTime<Utc>) -> Self {
        Clock { now, pinned: true }
    }

    /// A pinned clock is a replay or a test: a stage records no wall-time measurement
    /// (latency) then, so its outputs stay bit-identical.
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// `Some(text)` pins the clock to that instant; `None` uses the wall clock.
    pub fn from_arg(arg: Option<&str>) -> Result<Self> {
        match arg {
            None => Ok(Clock::wall()),
            Some(s) => parse_utc(s).map(Clock::pinned).ok_or_else(|| {
                Error::Usage(format!("--now: cannot parse {s:?} as a UTC time (e.g. 2026-01-31T12:00:00Z)"))
            }),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// ISO-8601 with microseconds and a `Z`, the form used in manifests.
    pub fn stamp(&self) -> String {
        format_utc(self.now)
    }
}

pub fn format_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`: a UTC instant as DuckDB reads a `TIMESTAMP` literal.
pub fn sql_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Parse RFC 3339, or a naive `YYYY-MM-DD[ T]HH:MM:SS[.f]` / `YYYY-MM-DD` taken as UTC.
pub fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms_and_rejects_garbage() {
        let a = parse_utc("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_utc("2026-01-02 03:04:05").unwrap(), a);
        assert_eq!(parse_utc("2026-01-02T05:04:05+02:00").unwrap(), a);
        assert_eq!(format_utc(a), "2026-01-02T03:04:05.000000Z");
        assert!(parse_utc("2026-13-02").is_none());
        assert!(Clock::from_arg(Some("yesterday")).is_err());
    }
}
