//! As-of features declared in project.yaml (`features.declared`), not written in SQL.
//!
//! Each declared store becomes a feature store that `certify` generates into the same
//! sandboxed as-of SQL as a hand-written one (`t0_certify::declared`). An aggregate is written
//! `<name>` or `<name> <argument>`: a window (`sum 3 months`) for the windowed ones, or `all`
//! for everything known at T0 (`count all`), `k` for `prev` (`prev 2`: the value two before
//! the last).
//!
//! ```yaml
//! features:
//!   declared:
//!     - store: trends
//!       windows: [3 months, 1 year]      # each windowed aggregate without its own window
//!       time_unit: days                  # time_since_*, rate and slope are per this unit
//!       measures:
//!         views: [last, prev, change, sum, mean, max, std, count_nonzero, rate, time_since_last]
//!       observations: [count, time_since_first]
//!       events:
//!         removed: [count 1 year, time_since_last]
//!       attributes: [region]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::def::{Horizon, MeasureType, is_identifier};

/// One declared feature store.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredStore {
    /// The store's entrypoint: its surface is `surface.<store>`, and it feeds the models.
    pub store: String,
    /// The windows (ending at T0) of every windowed aggregate that names none.
    #[serde(default)]
    pub windows: Vec<Horizon>,
    /// The unit of `time_since_*`, `rate` and `slope` (default days).
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Per measure, its aggregates.
    #[serde(default)]
    pub measures: BTreeMap<String, Vec<AggSpec>>,
    /// Aggregates of the observation rows themselves: `count`, `time_since_last`, `time_since_first`.
    #[serde(default)]
    pub observations: Vec<AggSpec>,
    /// Per event type, `count` and `time_since_last`/`time_since_first`.
    #[serde(default)]
    pub events: BTreeMap<String, Vec<AggSpec>>,
    /// Entity attributes (kept by acquire) as text columns, as known at T0.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// A strict store fails on view-definition or dataset drift against its baselines.
    #[serde(default)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Hours,
    #[default]
    Days,
    Weeks,
    /// 30.4375 days.
    Months,
    /// 365.25 days.
    Years,
}

impl TimeUnit {
    /// The unit in microseconds.
    pub fn micros(self) -> f64 {
        let hours = match self {
            TimeUnit::Hours => 1.0,
            TimeUnit::Days => 24.0,
            TimeUnit::Weeks => 168.0,
            TimeUnit::Months => 730.5,
            TimeUnit::Years => 8766.0,
        };
        hours * 3.6e9
    }
}

/// An aggregate as declared: `sum`, `sum 3 months`, `prev 2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AggSpec {
    pub agg: Agg,
    /// `prev`'s k (default 1).
    pub k: u32,
    /// The aggregate's own window (windowed aggregates).
    pub window: Option<Horizon>,
    /// Over everything known at T0 (`count all`): no window.
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    /// The latest non-NULL value known at T0.
    Last,
    /// The k-th non-NULL value before the latest.
    Prev,
    /// Time from the latest (observation, value or event) to T0.
    TimeSinceLast,
    /// Time from the earliest to T0.
    TimeSinceFirst,
    /// The latest value minus the latest at or before T0 − window.
    Change,
    /// `change` relative to the earlier value (NULL when it is 0).
    PctChange,
    /// `change` per time unit between the two values' observation times.
    Slope,
    /// Over (T0 − window, T0]: 0 when nothing was observed.
    Sum,
    Mean,
    Min,
    Max,
    /// Sample standard deviation (NULL under two values).
    Std,
    /// Rows (of observations or events) or non-NULL values (of a measure): 0 when none.
    Count,
    CountNonzero,
    /// `sum` per time unit of the window.
    Rate,
}

const AGGS: &[(&str, Agg)] = &[
    ("last", Agg::Last),
    ("prev", Agg::Prev),
    ("time_since_last", Agg::TimeSinceLast),
    ("time_since_first", Agg::TimeSinceFirst),
    ("change", Agg::Change),
    ("pct_change", Agg::PctChange),
    ("slope", Agg::Slope),
    ("sum", Agg::Sum),
    ("mean", Agg::Mean),
    ("min", Agg::Min),
    ("max", Agg::Max),
    ("std", Agg::Std),
    ("count", Agg::Count),
    ("count_nonzero", Agg::CountNonzero),
    ("rate", Agg::Rate),
];

impl Agg {
    pub fn as_str(self) -> &'static str {
        AGGS.iter().find(|(_, a)| *a == self).expect("every aggregate is listed").0
    }

    /// Whether it is computed over a window ending at T0.
    pub fn windowed(self) -> bool {
        !matches!(self, Agg::Last | Agg::Prev | Agg::TimeSinceLast | Agg::TimeSinceFirst)
    }

    /// Whether it may take `all` (everything known at T0) instead of a window.
    pub fn over_all(self) -> bool {
        matches!(self, Agg::Sum | Agg::Mean | Agg::Min | Agg::Max | Agg::Std | Agg::Count | Agg::CountNonzero)
    }

    /// Whether it needs a number (a boolean counts for `sum`, `mean` and `count_nonzero`).
    fn needs(self, ty: MeasureType) -> bool {
        let numeric = matches!(ty, MeasureType::Count | MeasureType::Integer | MeasureType::Float);
        match self {
            Agg::Last | Agg::Prev | Agg::TimeSinceLast | Agg::TimeSinceFirst | Agg::Count => true,
            Agg::Sum | Agg::Mean | Agg::CountNonzero | Agg::Rate => numeric || ty == MeasureType::Boolean,
            _ => numeric,
        }
    }
}

impl TryFrom<String> for AggSpec {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let t = s.trim();
        let (name, arg) = t.split_once(char::is_whitespace).map_or((t, ""), |(n, a)| (n, a.trim()));
        let agg = AGGS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).ok_or_else(|| {
            format!("aggregate {name:?} is not one of {}", AGGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
        })?;
        let mut spec = AggSpec { agg, k: 1, window: None, all: false };
        match (agg, arg) {
            (_, "") => {}
            (Agg::Prev, k) => {
                spec.k = k.parse().ok().filter(|k| *k >= 1).ok_or(format!("{t:?}: prev takes k >= 1, e.g. `prev 2`"))?
            }
            (a, "all") if a.over_all() => spec.all = true,
            (a, w) if a.windowed() => spec.window = Some(Horizon::try_from(w.to_string())?),
            (a, _) => return Err(format!("{t:?}: {} takes no argument", a.as_str())),
        }
        Ok(spec)
    }
}

impl From<AggSpec> for String {
    fn from(a: AggSpec) -> String {
        match (a.agg, a.window) {
            (Agg::Prev, _) if a.k != 1 => format!("prev {}", a.k),
            (agg, _) if a.all => format!("{} all", agg.as_str()),
            (agg, Some(w)) => format!("{} {}", agg.as_str(), String::from(w)),
            (agg, None) => agg.as_str().to_string(),
        }
    }
}

/// What a declared column reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Measure(String, MeasureType),
    Observations,
    Event(String),
    Attribute(String),
}

/// One generated column: its name, what it reads, the aggregate and its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub source: Source,
    pub agg: Option<AggSpec>,
    pub window: Option<Horizon>,
}

/// A window as a column-name suffix: `3mo`, `1y`, `36h`.
fn suffix(h: &Horizon) -> String {
    let u = match h.unit.as_str() {
        "hour" => "h",
        "day" => "d",
        "week" => "w",
        "month" => "mo",
        _ => "y",
    };
    format!("{}{u}", h.n)
}

/// An event type as a name part: lower case, anything else `_`.
pub fn event_part(event: &str) -> String {
    event.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

impl DeclaredStore {
    /// The store's columns in order (measures, observations, events, attributes; each in its
    /// declared aggregate order), with the measure types from `measures`. An error names what
    /// is wrong (the caller adds file and line).
    pub fn columns(&self, measures: &[crate::def::Measure]) -> std::result::Result<Vec<Column>, String> {
        let mut out = Vec::new();
        let mut expand = |prefix: &str, source: Source, specs: &[AggSpec], allowed: &dyn Fn(Agg) -> bool| {
            for spec in specs {
                if !allowed(spec.agg) {
                    return Err(format!("{prefix}: {} does not apply", spec.agg.as_str()));
                }
                let windows: Vec<Option<Horizon>> = match (&spec.window, spec.agg.windowed()) {
                    _ if spec.all => vec![None],
                    (Some(w), _) => vec![Some(w.clone())],
                    (None, true) if self.windows.is_empty() => {
                        return Err(format!(
                            "{prefix}: {} needs a window (`{} 1 year`, or the store's `windows`)",
                            spec.agg.as_str(),
                            spec.agg.as_str()
                        ));
                    }
                    (None, true) => self.windows.iter().cloned().map(Some).collect(),
                    (None, false) => vec![None],
                };
                for window in windows {
                    let mut name = format!("{prefix}_{}", spec.agg.as_str());
                    if spec.agg == Agg::Prev && spec.k != 1 {
                        name.push_str(&spec.k.to_string());
                    }
                    if let Some(w) = &window {
                        name = format!("{name}_{}", suffix(w));
                    } else if spec.all {
                        name.push_str("_all");
                    }
                    out.push(Column { name, source: source.clone(), agg: Some(spec.clone()), window });
                }
            }
            Ok(())
        };
        for (m, specs) in &self.measures {
            let ty = measures.iter().find(|x| x.name == *m).map(|x| x.ty).ok_or_else(|| {
                format!(
                    "measure {m:?} is not declared (measures: {})",
                    measures.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            expand(m, Source::Measure(m.clone(), ty), specs, &|a: Agg| a.needs(ty))
                .map_err(|e| format!("{e} to a {ty:?} measure"))?;
        }
        let rows = |a: Agg| matches!(a, Agg::Count | Agg::TimeSinceLast | Agg::TimeSinceFirst);
        expand("obs", Source::Observations, &self.observations, &rows)
            .map_err(|e| format!("{e} to observations (count, time_since_last, time_since_first)"))?;
        for (e, specs) in &self.events {
            expand(&format!("ev_{}", event_part(e)), Source::Event(e.clone()), specs, &rows)
                .map_err(|x| format!("{x} to events (count, time_since_last, time_since_first)"))?;
        }
        for a in &self.attributes {
            if !is_identifier(a) {
                return Err(format!("attribute {a:?} is not a plain lower-case name"));
            }
            out.push(Column { name: a.clone(), source: Source::Attribute(a.clone()), agg: None, window: None });
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(c) = out.iter().find(|c| !seen.insert(c.name.as_str())) {
            return Err(format!("column {:?} is declared twice", c.name));
        }
        if out.is_empty() {
            return Err("declares no feature".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::Measure;

    fn m(name: &str, ty: MeasureType) -> Measure {
        Measure { name: name.into(), ty, required: false, description: None }
    }

    #[test]
    fn aggregates_parse_with_their_argument_and_name_their_columns() {
        let store: DeclaredStore = serde_yaml::from_str(
            "store: s\nwindows: [3 months, 1 year]\nmeasures:\n  v: [last, prev 2, sum, change 10 years]\nobservations: [count 7 days, count all, time_since_first]\nevents:\n  Sold Out: [count]\nattributes: [region]\n",
        )
        .unwrap();
        let cols = store.columns(&[m("v", MeasureType::Count)]).unwrap();
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "v_last",
                "v_prev2",
                "v_sum_3mo",
                "v_sum_1y",
                "v_change_10y",
                "obs_count_7d",
                "obs_count_all",
                "obs_time_since_first",
                "ev_sold_out_count_3mo",
                "ev_sold_out_count_1y",
                "region"
            ]
        );
        assert_eq!(String::from(cols[1].agg.clone().unwrap()), "prev 2");
    }

    #[test]
    fn a_wrong_declaration_says_what_is_wrong() {
        let cases = [
            ("store: s\nmeasures:\n  v: [total]\n", "not one of"),
            ("store: s\nmeasures:\n  v: [sum]\n", "needs a window"),
            ("store: s\nmeasures:\n  v: [prev 0]\n", "k >= 1"),
            ("store: s\nmeasures:\n  v: [last 3 days]\n", "takes no argument"),
            ("store: s\nmeasures:\n  v: [change all]\n", "expected `<n> <unit>`"),
            ("store: s\nmeasures:\n  t: [mean 1 year]\n", "does not apply to a Text measure"),
            ("store: s\nmeasures:\n  w: [last]\n", "not declared"),
            ("store: s\nobservations: [mean 1 year]\n", "to observations"),
            ("store: s\nwindows: [1 year]\nmeasures:\n  v: [sum, sum 1 year]\n", "declared twice"),
            ("store: s\n", "declares no feature"),
        ];
        let measures = [m("v", MeasureType::Float), m("t", MeasureType::Text)];
        for (yaml, want) in cases {
            let e = serde_yaml::from_str::<DeclaredStore>(yaml)
                .map_err(|e| e.to_string())
                .and_then(|s| s.columns(&measures).map(|_| ()))
                .unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
