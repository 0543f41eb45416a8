//! The T0 grid as of T0: whether a decision (entity, T0) exists, and when, is decided only
//! from facts known at that T0 (DESIGN invariant 7).
//!
//! A fact is *known at t* through its version with `known_from <= t < known_to`
//! (`t0_project::vocab::history_sql`); a tombstone known at t means the fact is gone at t.
//! Rules, for every mode (ARCHITECTURE.md, "The T0 grid"):
//! - an entity takes part at t only while its known version at t is live and of
//!   `entity_kind`;
//! - `first_seen`: T0 is the first moment t at which the entity is known and its known
//!   creation time is at least `offset` before t: `min(greatest(created_at + offset,
//!   known_from))` over its live versions, counting a version only while it is still the known
//!   one. A revision or a late version never moves a T0 that was already reached;
//! - `every_k_days`: T0 = that first T0 + i·k days (i < `max_per_entity`), each kept only if
//!   the entity is known and live then and no end event is known then;
//! - `at_observations`: each observation fact gives T0 = `greatest(observed_at + offset, the
//!   moment it became known)` (a decision at an observation is made once it is available),
//!   kept under the same conditions; the first `max_per_entity` such T0s of the entity in time;
//! - `calendar`: T0 = each calendar point (the instant a day, week, month, quarter or year
//!   ends, or a listed date) + `offset`, for each entity known and live then that has an
//!   observation known then (`from: first_seen`) or whose known creation time has passed
//!   (`from: created`); calendar arithmetic, so a month end is a month end in every year;
//! - an end event (`end_events`) stops T0s only from the moment it is known;
//! - every T0 lies at or before `through`: the clock, and the latest availability in the
//!   observations (a T0 past the data would see data still to come); with `until: watermark`
//!   also the observations' completeness watermark.

use t0_catalog::Catalog;
use t0_core::Result;
use t0_core::error::Context;

use crate::population::Raw;
use crate::{Every, GridConfig, GridMode, WindowStart};

/// The database and table holding the grid, shared by the connections of one catalog.
pub const GRID_TABLE: &str = "t0work.main.grid";

/// SQL that creates [`GRID_TABLE`] (one row per (entity_id, t0), ordered) on a catalog whose
/// canonical tables are `raw.<table>`, for T0s at or before `through` (none without it).
/// Only entities for which `keep` (SQL over `entity_id`) holds are kept: a bucket's.
pub fn grid_sql(g: &GridConfig, raw: &str, through: Option<&str>, keep: &str) -> String {
    let hist = |t: &str| t0_project::vocab::history_sql(t, &format!("{raw}.{t}")).expect("canonical table");
    let list = |v: &[String]| v.iter().map(|e| t0_catalog::quote_literal(e)).collect::<Vec<_>>().join(", ");
    let kind = match &g.entity_kind {
        Some(k) => format!(" AND kind = {}", t0_catalog::quote_literal(k)),
        None => String::new(),
    };
    let ends = if g.end_events.is_empty() {
        "WHERE false".to_string()
    } else {
        format!("WHERE NOT deleted AND event_type IN ({})", list(&g.end_events))
    };
    let off = format!("to_hours(CAST({} AS BIGINT))", g.offset_hours);
    let n = g.max_t0s().unwrap_or(12);
    let candidates = match g.mode {
        GridMode::FirstSeen => "SELECT entity_id, t0 FROM first".to_string(),
        GridMode::EveryKDays => format!(
            "SELECT f.entity_id, f.t0 + to_days(CAST(r.i * {k} AS INTEGER)) AS t0 FROM first f CROSS JOIN range(0, {n}) r(i)",
            k = g.every_days
        ),
        GridMode::AtObservations => format!(
            "SELECT entity_id, min(greatest(observed_at + {off}, known_from)) AS t0
             FROM {obs} o
             WHERE NOT deleted AND (known_to IS NULL OR greatest(observed_at + {off}, known_from) < known_to)
             GROUP BY entity_id, observed_at",
            obs = hist("observations")
        ),
        GridMode::Calendar => match through {
            Some(t) => calendar_sql(g, &format!("TIMESTAMP {}", t0_catalog::quote_literal(t)), &off),
            None => "SELECT NULL::VARCHAR AS entity_id, NULL::TIMESTAMP AS t0 WHERE false".into(),
        },
    };
    let rank = match (g.mode, g.max_t0s()) {
        (GridMode::AtObservations | GridMode::Calendar, Some(n)) => {
            format!("QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY t0) <= {n}")
        }
        _ => String::new(),
    };
    // A calendar window starts once the entity has been seen or created, as known at T0.
    let start = match (g.mode, g.from) {
        (GridMode::Calendar, WindowStart::Created) => "AND e.created_at <= c.t0".to_string(),
        (GridMode::Calendar, WindowStart::FirstSeen) => format!(
            "AND EXISTS (SELECT 1 FROM {obs} o WHERE o.entity_id = c.entity_id AND NOT o.deleted
                         AND o.known_from <= c.t0 AND (o.known_to IS NULL OR o.known_to > c.t0))",
            obs = hist("observations")
        ),
        _ => String::new(),
    };
    format!(
        "ATTACH IF NOT EXISTS ':memory:' AS t0work;
         CREATE OR REPLACE TABLE {GRID_TABLE} AS
         WITH ent AS (SELECT * FROM {ents} WHERE NOT deleted{kind}),
              ends AS (SELECT entity_id, known_from, known_to FROM {events} {ends}),
              first AS (SELECT entity_id, min(greatest(created_at + {off}, known_from)) AS t0 FROM ent
                        WHERE known_to IS NULL OR greatest(created_at + {off}, known_from) < known_to
                        GROUP BY entity_id),
              cand AS (SELECT DISTINCT c.entity_id, c.t0 FROM ({candidates}) c
                       WHERE {bound}
                         AND EXISTS (SELECT 1 FROM ent e WHERE e.entity_id = c.entity_id
                                     AND e.known_from <= c.t0 AND (e.known_to IS NULL OR e.known_to > c.t0) {start})
                         AND NOT EXISTS (SELECT 1 FROM ends x WHERE x.entity_id = c.entity_id
                                     AND x.known_from <= c.t0 AND (x.known_to IS NULL OR x.known_to > c.t0)))
         SELECT entity_id, t0 FROM cand WHERE {keep} {rank}
         ORDER BY entity_id, t0;",
        ents = hist("entities"),
        events = hist("events"),
        bound = match through {
            Some(t) => format!("c.t0 <= TIMESTAMP {}", t0_catalog::quote_literal(t)),
            None => "false".into(),
        },
    )
}

/// The calendar points of `g` up to `through` (SQL), each with every entity known by then:
/// (entity_id, t0) candidates before the per-T0 conditions.
fn calendar_sql(g: &GridConfig, through: &str, off: &str) -> String {
    let (trunc, step) = match g.every.unwrap_or(Every::Day) {
        Every::Day => ("day", "INTERVAL '1 day'"),
        Every::Week => ("week", "INTERVAL '7 days'"),
        Every::Month => ("month", "INTERVAL '1 month'"),
        Every::Quarter => ("quarter", "INTERVAL '3 months'"),
        Every::Year => ("year", "INTERVAL '1 year'"),
        Every::Dates => ("", ""),
    };
    let points = if trunc.is_empty() {
        format!("SELECT unnest([{}]::TIMESTAMP[]) AS p", g.date_literals().join(", "))
    } else {
        // Every point p with p + offset between the earliest entity's first sighting and the
        // bound. ISO weeks start on Monday: the declared weekday is that many days later, and
        // the series starts a week early so that no weekday before the truncation is missed.
        let lo = format!("(SELECT coalesce(min(known_from), {through}) FROM ent) - {off}");
        let start = match g.weekday {
            Some(w) if trunc == "week" => {
                format!("date_trunc('week', {lo}) - INTERVAL '7 days' + INTERVAL '{} days'", w as i64)
            }
            _ => format!("date_trunc('{trunc}', {lo})"),
        };
        format!("SELECT r.p FROM range({start}, {through} - {off} + {step}, {step}) r(p)")
    };
    format!(
        "SELECT e.entity_id, p.p + {off} AS t0
         FROM (SELECT entity_id, min(known_from) AS lo FROM ent GROUP BY entity_id) e
         JOIN ({points}) p ON p.p + {off} >= e.lo"
    )
}

/// Build the grid on `catalog`; returns the latest moment a T0 may take (`through`), or
/// `None` when the catalog has no observations. `watermark` (the observations' completeness
/// watermark) bounds it too for a calendar grid with `until: watermark`.
pub fn build(
    catalog: &Catalog,
    g: &GridConfig,
    now: &str,
    watermark: Option<&str>,
    raw: &Raw,
) -> Result<Option<String>> {
    let keep = raw.keeps("entity_id");
    let raw = raw.qualifier();
    let cap = match (g.until, watermark) {
        (crate::WindowEnd::Watermark, Some(w)) => format!("TIMESTAMP {}", t0_catalog::quote_literal(w)),
        (crate::WindowEnd::Watermark, None) => "NULL::TIMESTAMP".into(),
        (crate::WindowEnd::Data, _) => "TIMESTAMP '9999-12-31 00:00:00'".into(),
    };
    let through: Option<String> = catalog
        .conn()
        .query_row(
            &format!(
                "SELECT CAST(CASE WHEN {cap} IS NOT NULL THEN least(TIMESTAMP {}, (SELECT max(available_at) FROM {raw}.observations), {cap}) END AS VARCHAR)",
                t0_catalog::quote_literal(now)
            ),
            [],
            |r| r.get(0),
        )
        .ctx(|| "grid bound".into())?;
    catalog.conn().execute_batch(&grid_sql(g, raw, through.as_deref(), &keep)).ctx(|| "build the T0 grid".into())?;
    Ok(through)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog with `rows` inserted: `E id created avail [version deleted kind]`,
    /// `O id observed avail [version deleted]`, `V id type observed avail` (times are day
    /// numbers of January 2026, `late` = 2027-01-01).
    fn catalog(rows: &[&str]) -> Catalog {
        let cat = Catalog::in_memory().unwrap();
        let t = |d: &str| match d {
            "late" => "TIMESTAMP '2027-01-01 00:00:00'".to_string(),
            d => format!("TIMESTAMP '2026-01-01 00:00:00' + INTERVAL {} DAY", d.parse::<i64>().unwrap() - 1),
        };
        for r in rows {
            let f: Vec<&str> = r.split_whitespace().collect();
            let (version, deleted) = (f.get(4).copied().unwrap_or("1"), f.get(5).copied().unwrap_or("false"));
            let sql = match f[0] {
                "E" => format!(
                    "INSERT INTO entities (entity_id, kind, parent_id, created_at, observed_at, available_at, version, batch_id, deleted)
                     VALUES ('{}', '{}', 'p', {c}, {c}, {}, {version}, 'b', {deleted})",
                    f[1],
                    f.get(6).copied().unwrap_or("item"),
                    t(f[3]),
                    c = t(f[2])
                ),
                "O" => format!(
                    "INSERT INTO observations (entity_id, observed_at, available_at, version, batch_id, deleted)
                     VALUES ('{}', {}, {}, {version}, 'b', {deleted})",
                    f[1],
                    t(f[2]),
                    t(f[3])
                ),
                _ => format!(
                    "INSERT INTO events (entity_id, event_type, observed_at, available_at, version, batch_id)
                     VALUES ('{}', '{}', {}, {}, 1, 'b')",
                    f[1],
                    f[2],
                    t(f[3]),
                    t(f[4])
                ),
            };
            cat.conn().execute_batch(&sql).unwrap();
        }
        cat
    }

    /// The grid as `entity day` strings (day of January 2026, fractional for hours).
    fn grid(cat: &Catalog, g: &GridConfig) -> Vec<String> {
        grid_at(cat, g, "2026-12-31 00:00:00", None)
    }

    /// The grid built at clock `now` with a completeness watermark.
    fn grid_at(cat: &Catalog, g: &GridConfig, now: &str, watermark: Option<&str>) -> Vec<String> {
        build(cat, g, now, watermark, &Raw::catalog(cat).unwrap()).unwrap();
        let mut stmt = cat
            .conn()
            .prepare(&format!(
                "SELECT entity_id, epoch(t0 - TIMESTAMP '2026-01-01 00:00:00') / 86400.0 + 1 FROM {GRID_TABLE} ORDER BY ALL"
            ))
            .unwrap();
        stmt.query_map([], |r| Ok(format!("{} {}", r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    fn cfg(mode: GridMode, offset_hours: i64, max: i64) -> GridConfig {
        GridConfig {
            mode,
            offset_hours,
            every_days: 7,
            max_per_entity: Some(max),
            entity_kind: Some("item".into()),
            end_events: vec!["removed".into()],
            ..GridConfig::default()
        }
    }

    fn calendar(every: Every) -> GridConfig {
        GridConfig { max_per_entity: None, every: Some(every), ..cfg(GridMode::Calendar, 0, 1) }
    }

    const DATA: &[&str] = &["O a 30 30", "O b 30 30"];

    #[test]
    fn first_seen_is_decided_by_what_was_known_at_t0() {
        let base = [DATA, &["E a 10 10", "E b 5 20"]].concat();
        let g = cfg(GridMode::FirstSeen, 24, 1);
        // a: created the 10th, known then: T0 the 11th. b: created the 5th but known only from
        // the 20th (a backfill): its first T0 is when it became known.
        assert_eq!(grid(&catalog(&base), &g), ["a 11", "b 20"]);
        // Late versions (known only in 2027): an earlier creation, a tombstone, a new entity
        // created before every T0, another kind. No T0 moves, appears or disappears.
        let late =
            [&base[..], &["E a 3 late 2", "E b 5 late 2 true", "E c 2 late", "E a 3 late 3 false group"]].concat();
        assert_eq!(grid(&catalog(&late), &g), ["a 11", "b 20"]);
        // A revision known before its T0 does move it: at the 9th, a is known as created the 7th.
        let early = [&base[..], &["E a 7 9 2"]].concat();
        assert_eq!(grid(&catalog(&early), &g), ["a 9", "b 20"]);
        // A valid version is not destroyed by a later tombstone: the T0 reached before it stays.
        let removed = [&base[..], &["E a 10 25 2 true"]].concat();
        assert_eq!(grid(&catalog(&removed), &g), ["a 11", "b 20"]);
    }

    #[test]
    fn every_k_days_stops_at_an_end_event_only_once_it_is_known() {
        let base = [DATA, &["E a 1 1"]].concat();
        let g = cfg(GridMode::EveryKDays, 24, 5);
        let all = ["a 2", "a 9", "a 16", "a 23", "a 30"];
        assert_eq!(grid(&catalog(&base), &g), all);
        // Removed on the 12th, known the 13th: no T0 from then on.
        assert_eq!(grid(&catalog(&[&base[..], &["V a removed 12 13"]].concat()), &g), ["a 2", "a 9"]);
        // The same removal known only in 2027 stops nothing before then.
        assert_eq!(grid(&catalog(&[&base[..], &["V a removed 12 late"]].concat()), &g), all);
        // Another event type stops nothing.
        assert_eq!(grid(&catalog(&[&base[..], &["V a paused 12 13"]].concat()), &g), all);
    }

    #[test]
    fn at_observations_waits_for_each_observation_to_be_known() {
        let base: Vec<&str> = vec!["E a 1 1", "O a 3 3", "O a 5 6", "O a 9 9", "O b 30 30"];
        let g = cfg(GridMode::AtObservations, 0, 3);
        // The 5th's observation is known on the 6th: its decision is made then.
        assert_eq!(grid(&catalog(&base), &g), ["a 3", "a 6", "a 9"]);
        // Observations known only in 2027 add no T0 and push none out through max_per_entity;
        // a late tombstone of a known one removes nothing.
        let late = [&base[..], &["O a 2 late", "O a 4 late", "O a 3 late 2 true"]].concat();
        assert_eq!(grid(&catalog(&late), &g), ["a 3", "a 6", "a 9"]);
        // An observation retracted before its T0 makes none; the next one takes its place.
        let retracted = [&base[..], &["O a 5 5 2 true", "O a 20 20"]].concat();
        assert_eq!(grid(&catalog(&retracted), &g), ["a 3", "a 9", "a 20"]);
        // No T0 before the entity is known, none after its removal is known.
        let ended = [&base[..], &["V a removed 7 8"]].concat();
        assert_eq!(grid(&catalog(&ended), &g), ["a 3", "a 6"]);
    }

    #[test]
    fn no_t0_lies_past_the_clock_or_the_data() {
        let cat = catalog(&["E a 1 1", "O a 3 3"]);
        let g = cfg(GridMode::EveryKDays, 24, 10);
        // The data ends on the 3rd: T0s on the 2nd only.
        let through: Option<String> =
            build(&cat, &g, "2026-01-20 00:00:00", None, &Raw::catalog(&cat).unwrap()).unwrap();
        assert_eq!(through.as_deref(), Some("2026-01-03 00:00:00"));
        assert_eq!(grid(&cat, &g), ["a 2"]);
        // With later data, the clock bounds it.
        let cat = catalog(&["E a 1 1", "O a 3 3", "O a 28 28"]);
        assert_eq!(
            build(&cat, &g, "2026-01-20 00:00:00", None, &Raw::catalog(&cat).unwrap()).unwrap().as_deref(),
            Some("2026-01-20 00:00:00")
        );
    }

    #[test]
    fn calendar_months_start_once_the_entity_is_seen_or_created() {
        // a: created (and known) on Jan 1, first observation Feb 9; the data runs to Jul 19.
        let cat = catalog(&["E a 1 1", "O a 40 40", "O b 200 200"]);
        // Month ends: Mar 1 (day 60), Apr 1, May 1, Jun 1, Jul 1 (182); b is no entity.
        assert_eq!(grid(&cat, &calendar(Every::Month)), ["a 60", "a 91", "a 121", "a 152", "a 182"]);
        let created = GridConfig { from: WindowStart::Created, ..calendar(Every::Month) };
        assert_eq!(grid(&cat, &created), ["a 1", "a 32", "a 60", "a 91", "a 121", "a 152", "a 182"]);
        // The first two only; an offset of six hours moves every point.
        let first = GridConfig { max_per_entity: Some(2), offset_hours: 6, ..calendar(Every::Month) };
        assert_eq!(grid(&cat, &first), ["a 60.25", "a 91.25"]);
    }

    #[test]
    fn calendar_years_and_quarters_follow_the_calendar_through_a_leap_year() {
        let cat = catalog(&["E a 1 1", "O a 1 1", "O b 1200 1200"]);
        // 2027-01-01 is day 366, 2028-01-01 day 731, 2029-01-01 day 1097 (2028 has 366 days).
        assert_eq!(
            grid_at(&cat, &calendar(Every::Year), "2030-01-01 00:00:00", None),
            ["a 1", "a 366", "a 731", "a 1097"]
        );
        let q = grid_at(&cat, &calendar(Every::Quarter), "2026-12-31 00:00:00", None);
        assert_eq!(q, ["a 1", "a 91", "a 182", "a 274"]);
        // Every day of January up to the bound.
        let d = grid_at(&cat, &calendar(Every::Day), "2026-01-04 00:00:00", None);
        assert_eq!(d, ["a 1", "a 2", "a 3", "a 4"]);
    }

    #[test]
    fn calendar_weeks_stop_at_a_known_end_and_at_the_watermark() {
        // Jan 1 2026 is a Thursday: its Mondays are the 5th, 12th, 19th and 26th.
        let base: Vec<&str> = vec!["E a 1 1", "O a 2 2", "O b 30 30"];
        let mon = GridConfig { weekday: Some(crate::Weekday::Monday), ..calendar(Every::Week) };
        assert_eq!(grid(&catalog(&base), &mon), ["a 5", "a 12", "a 19", "a 26"]);
        let fri = GridConfig { weekday: Some(crate::Weekday::Friday), ..calendar(Every::Week) };
        assert_eq!(grid(&catalog(&base), &fri), ["a 2", "a 9", "a 16", "a 23", "a 30"]);
        // A removal known on the 14th stops them then; one known only in 2027 stops nothing.
        assert_eq!(grid(&catalog(&[&base[..], &["V a removed 13 14"]].concat()), &mon), ["a 5", "a 12"]);
        assert_eq!(grid(&catalog(&[&base[..], &["V a removed 13 late"]].concat()), &mon).len(), 4);
        // An entity or observation known only in 2027 makes no T0 before then.
        // (Its late availability extends the data to the clock: a's Mondays run to December.)
        let late = grid(&catalog(&[&base[..], &["E c 1 late", "O c 1 late"]].concat()), &mon);
        assert!(late.len() == 52 && late.iter().all(|r| r.starts_with("a ")), "{late:?}");
        // until: watermark stops at the observations' completeness watermark.
        let until = GridConfig { until: crate::WindowEnd::Watermark, ..mon.clone() };
        let cat = catalog(&base);
        assert_eq!(grid_at(&cat, &until, "2026-12-31 00:00:00", Some("2026-01-15 00:00:00")), ["a 5", "a 12"]);
    }

    #[test]
    fn a_calendar_grid_says_what_it_is_missing() {
        let check = |yaml: &str| {
            let g: GridConfig = serde_yaml::from_str(yaml).unwrap();
            g.validate("certify.yaml").map_err(|e| e.to_string())
        };
        assert!(check("{mode: calendar, offset_hours: 0, every: month}").is_ok());
        let cases = [
            ("{mode: calendar, offset_hours: 0}", "needs `every`"),
            ("{mode: every_k_days, offset_hours: 0, every: month}", "is for mode calendar"),
            ("{mode: calendar, offset_hours: 0, every: week}", "`weekday`"),
            ("{mode: calendar, offset_hours: 0, every: month, weekday: friday}", "`weekday`"),
            ("{mode: calendar, offset_hours: 0, every: dates}", "`dates`"),
            ("{mode: calendar, offset_hours: 0, every: dates, dates: [2024-13-01]}", "not YYYY-MM-DD"),
            ("{mode: first_seen, offset_hours: 0, until: watermark}", "for mode calendar"),
            ("{mode: calendar, offset_hours: 0, every: day, max_per_entity: 0}", "at least 1"),
            ("{mode: every_k_days, offset_hours: 0, every_days: 0}", "every_days must be at least 1"),
            ("{mode: first_seen, offset_hours: 9223372036854775807}", "more than a century"),
            ("{mode: first_seen, offset_hours: -878401}", "more than a century"),
        ];
        for (yaml, want) in cases {
            let e = check(yaml).unwrap_err();
            assert!(e.contains("certify.yaml") && e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn calendar_dates_are_the_listed_ones_inside_the_window() {
        let cat = catalog(&["E a 1 1", "O a 2 2", "O b 30 30"]);
        let g = GridConfig {
            dates: vec!["2026-01-01".into(), "2026-01-10".into(), "2026-01-20T12:00:00Z".into(), "2027-05-01".into()],
            ..calendar(Every::Dates)
        };
        // Jan 1 is before a's first observation; May 2027 is past the data.
        assert_eq!(grid(&cat, &g), ["a 10", "a 20.5"]);
    }
}
