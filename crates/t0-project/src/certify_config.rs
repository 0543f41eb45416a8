//! A project's certify configuration (`certify.yaml`): the T0 grid, store parameters, the SLA
//! of gated columns, baselines and the hand-written stores. Parsed and checked here without a
//! catalog; `t0-certify` builds the grid and certifies the stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use t0_core::{Error, Result};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyConfig {
    #[serde(default)]
    pub t0: GridConfig,
    /// Named values the store SQL reads from the one-row `certify_params` table (besides
    /// `sla_hours`): integers become BIGINT, decimals DOUBLE, booleans BOOLEAN, text VARCHAR.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    #[serde(default)]
    pub sla: SlaConfig,
    /// T0 days (YYYY-MM-DD) whose dataset hash is a baseline; default: the days already
    /// baselined for a store, or else the earliest `baseline_days_default` T0 days.
    #[serde(default)]
    pub baseline_days: Vec<String>,
    #[serde(default = "three")]
    pub baseline_days_default: usize,
    /// Hand-written stores (project.yaml's `features.declared` adds the generated ones).
    #[serde(default)]
    pub stores: Vec<StoreConfig>,
}

/// A store parameter.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Param {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Param {
    pub fn sql(&self) -> String {
        match self {
            Param::Int(v) => format!("CAST({v} AS BIGINT)"),
            Param::Float(v) => format!("CAST({v:?} AS DOUBLE)"),
            Param::Bool(v) => format!("{v}"),
            Param::Text(v) => t0_core::config::quote_literal(v),
        }
    }
}

fn three() -> usize {
    3
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum GridMode {
    /// One T0 per entity: its first observation plus `offset_hours`.
    FirstSeen,
    /// T0 = first observation + `offset_hours` + i * `every_days`, while the entity is live
    /// (before an end event) and its T0 is within the data (`max_per_entity` at most).
    EveryKDays,
    /// T0 = each observation time + `offset_hours` (the first `max_per_entity`), before an end
    /// event: the natural grid of a panel observed at regular times.
    AtObservations,
    /// T0 = every calendar point of `every` (day, week on `weekday`, month end, quarter end,
    /// year end, or the listed `dates`) + `offset_hours`, inside each entity's window: from
    /// `from` (its first observation known, or its creation) while it is live and not ended,
    /// up to the data (`until: data`) or the observations' completeness watermark.
    Calendar,
}

/// The calendar points of a [`GridMode::Calendar`] grid. A period's point is the instant it
/// ends (the first instant of the next period): a month-end T0 sees the whole month.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    Day,
    /// Every `weekday` at 00:00.
    Week,
    Month,
    Quarter,
    Year,
    /// The listed `dates` only.
    Dates,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Where a calendar grid's entity window starts.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WindowStart {
    /// Once an observation of the entity is known (it has been seen).
    #[default]
    FirstSeen,
    /// Once the entity's known creation time has passed.
    Created,
}

/// Where every calendar grid ends besides the entity's end.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WindowEnd {
    /// The clock and the latest availability in the observations.
    #[default]
    Data,
    /// Also the observations' completeness watermark (sources.yaml `complete_through`).
    Watermark,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    pub mode: GridMode,
    pub offset_hours: i64,
    #[serde(default = "seven")]
    pub every_days: i64,
    /// The first this many T0s of each entity (default 12; a calendar grid: no limit).
    #[serde(default)]
    pub max_per_entity: Option<i64>,
    // The calendar fields are left out of the serialised form when unset, so the definition
    // hash of a grid that does not use them is what it was before they existed.
    /// Calendar grid: the period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Every>,
    /// Calendar grid, `every: week`: the day of the week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<Weekday>,
    /// Calendar grid, `every: dates`: the dates (YYYY-MM-DD) or UTC times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<String>,
    /// Calendar grid: where each entity's window starts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub from: WindowStart,
    /// Calendar grid: where T0s stop besides the entity's end.
    #[serde(default, skip_serializing_if = "is_default")]
    pub until: WindowEnd,
    /// Only entities of this kind get T0s (others, e.g. parents, are context); default: all.
    #[serde(default)]
    pub entity_kind: Option<String>,
    /// Event types after which an entity gets no more T0s (every_k_days, at_observations).
    #[serde(default)]
    pub end_events: Vec<String>,
}

/// The largest T0 offset: a century either way (more is a typo, and overflows time).
pub const MAX_OFFSET_HOURS: i64 = 100 * 366 * 24;

fn seven() -> i64 {
    7
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

impl GridConfig {
    /// The most T0s one entity may have (`None`: no limit).
    pub fn max_t0s(&self) -> Option<i64> {
        match (self.max_per_entity, self.mode) {
            (Some(n), _) => Some(n.max(1)),
            (None, GridMode::Calendar) => None,
            (None, _) => Some(12),
        }
    }

    /// Cross-field rules of `t0:` (exit 2 naming the file).
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |m: &str| Err(Error::config(name, format!("t0: {m}")));
        let calendar = self.mode == GridMode::Calendar;
        match (calendar, self.every) {
            (true, None) => return bad("mode calendar needs `every` (day, week, month, quarter, year or dates)"),
            (false, Some(_)) => return bad("`every` is for mode calendar (every_k_days counts `every_days`)"),
            _ => {}
        }
        if (self.every == Some(Every::Week)) != self.weekday.is_some() {
            return bad("`weekday` (monday … sunday) goes with `every: week`, and only with it");
        }
        if (self.every == Some(Every::Dates)) == self.dates.is_empty() {
            return bad("`dates` (a list of YYYY-MM-DD) goes with `every: dates`, and only with it");
        }
        if let Some(d) = self.dates.iter().find(|d| t0_core::clock::parse_utc(d).is_none()) {
            return bad(&format!("date {d:?} is not YYYY-MM-DD or a UTC time"));
        }
        if !calendar && (self.from != WindowStart::FirstSeen || self.until != WindowEnd::Data) {
            return bad("`from` and `until` are for mode calendar");
        }
        if self.max_per_entity.is_some_and(|n| n < 1) {
            return bad("max_per_entity must be at least 1");
        }
        if self.every_days < 1 {
            return bad("every_days must be at least 1 (0 would repeat every T0 of an entity)");
        }
        if self.offset_hours.abs() > MAX_OFFSET_HOURS {
            return bad(&format!(
                "offset_hours {} is more than a century ({MAX_OFFSET_HOURS} hours)",
                self.offset_hours
            ));
        }
        Ok(())
    }

    /// The calendar dates as SQL timestamps (UTC, normalised).
    pub fn date_literals(&self) -> Vec<String> {
        self.dates
            .iter()
            .filter_map(|d| t0_core::clock::parse_utc(d))
            .map(|t| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S")))
            .collect()
    }
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            mode: GridMode::FirstSeen,
            offset_hours: 24,
            every_days: 7,
            max_per_entity: None,
            every: None,
            weekday: None,
            dates: Vec::new(),
            from: WindowStart::FirstSeen,
            until: WindowEnd::Data,
            entity_kind: None,
            end_events: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// An artifact counts only if it arrived within this many hours of being observed.
    pub hours: i64,
    /// Gated columns: certification fails if one is non-NULL while its artifact was late.
    #[serde(default)]
    pub gated: Vec<GatedColumn>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatedColumn {
    pub store: String,
    pub column: String,
    /// Artifact kind the column derives from.
    pub artifact: String,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig { hours: 6, gated: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub entrypoint: String,
    /// SQL files of the closure, in execution order; the last defines `surface_<entrypoint>`.
    pub files: Vec<String>,
    /// A strict store fails on view-definition or dataset drift against its baselines; a
    /// tolerant one records the drift in its notes and rebaselines.
    #[serde(default)]
    pub strict: bool,
    /// Why this store may change rows of T0s a previous run certified (a reason, recorded in
    /// every certificate). Without it a replay difference fails the store, tolerant or not.
    #[serde(default)]
    pub may_change_past: Option<String>,
}

/// The configuration's own rules (exit 2 naming `name`): the T0 grid, unique store
/// entrypoints, parameter names, gated columns naming stores.
pub fn validate(cfg: &CertifyConfig, name: &str) -> Result<()> {
    let bad = |m: String| Error::config(name, m);
    cfg.t0.validate(name)?;
    if cfg.stores.is_empty() {
        return Err(bad(
            "stores: at least one store is needed (here, or declared in project.yaml features.declared)".into()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &cfg.stores {
        if !crate::def::is_identifier(&s.entrypoint) || !seen.insert(&s.entrypoint) {
            return Err(bad(format!(
                "stores: entrypoint {:?} must be a unique lower-case identifier (a store declared in project.yaml counts)",
                s.entrypoint
            )));
        }
    }
    for k in cfg.params.keys() {
        if !crate::def::is_identifier(k) || k == "sla_hours" {
            return Err(bad(format!("params: {k:?} must be a lower-case identifier other than sla_hours")));
        }
    }
    for g in &cfg.sla.gated {
        if !seen.contains(&g.store) {
            return Err(bad(format!("sla.gated: {}.{} names no store", g.store, g.column)));
        }
    }
    Ok(())
}
