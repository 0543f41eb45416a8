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
//! - an end event (`end_events`) stops T0s only from the moment it is known;
//! - every T0 lies at or before `through`: the clock, and the latest availability in the
//!   observations (a T0 past the data would see data still to come).

use t0_catalog::Catalog;
use t0_core::Result;
use t0_core::error::Context;

use crate::{GridConfig, GridMode};

/// The database and table holding the grid, shared by the connections of one catalog.
pub const GRID_TABLE: &str = "t0work.main.grid";

/// SQL that creates [`GRID_TABLE`] (one row per (entity_id, t0), ordered) on a catalog whose
/// canonical tables are `raw.<table>`, for T0s at or before `through` (none without it).
pub fn grid_sql(g: &GridConfig, raw: &str, through: Option<&str>) -> String {
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
    let n = g.max_per_entity.max(1);
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
    };
    let rank = match g.mode {
        GridMode::AtObservations => format!("QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY t0) <= {n}"),
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
                                     AND e.known_from <= c.t0 AND (e.known_to IS NULL OR e.known_to > c.t0))
                         AND NOT EXISTS (SELECT 1 FROM ends x WHERE x.entity_id = c.entity_id
                                     AND x.known_from <= c.t0 AND (x.known_to IS NULL OR x.known_to > c.t0)))
         SELECT entity_id, t0 FROM cand {rank}
         ORDER BY entity_id, t0;",
        ents = hist("entities"),
        events = hist("events"),
        bound = match through {
            Some(t) => format!("c.t0 <= TIMESTAMP {}", t0_catalog::quote_literal(t)),
            None => "false".into(),
        },
    )
}

/// Build the grid on `catalog`; returns the latest moment a T0 may take (`through`), or
/// `None` when the catalog has no observations.
pub fn build(catalog: &Catalog, g: &GridConfig, now: &str) -> Result<Option<String>> {
    let raw = format!("\"{}\".main", catalog.database_name()?.replace('"', "\"\""));
    let through: Option<String> = catalog
        .conn()
        .query_row(
            &format!(
                "SELECT CAST(least(TIMESTAMP {}, (SELECT max(available_at) FROM {raw}.observations)) AS VARCHAR)",
                t0_catalog::quote_literal(now)
            ),
            [],
            |r| r.get(0),
        )
        .ctx(|| "grid bound".into())?;
    catalog.conn().execute_batch(&grid_sql(g, &raw, through.as_deref())).ctx(|| "build the T0 grid".into())?;
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
        build(cat, g, "2026-12-31 00:00:00").unwrap();
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
            max_per_entity: max,
            entity_kind: Some("item".into()),
            end_events: vec!["removed".into()],
        }
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
        let through: Option<String> = build(&cat, &g, "2026-01-20 00:00:00").unwrap();
        assert_eq!(through.as_deref(), Some("2026-01-03 00:00:00"));
        assert_eq!(grid(&cat, &g), ["a 2"]);
        // With later data, the clock bounds it.
        let cat = catalog(&["E a 1 1", "O a 3 3", "O a 28 28"]);
        assert_eq!(build(&cat, &g, "2026-01-20 00:00:00").unwrap().as_deref(), Some("2026-01-20 00:00:00"));
    }
}
