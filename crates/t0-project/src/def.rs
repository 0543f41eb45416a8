//! `project.yaml`: the declaration of a domain. See `projects/clips/project.yaml` for a
//! commented example of every field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use t0_core::{Error, Result};

use crate::vocab::{self, ColType};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The measure columns of the canonical `observations` table.
    pub measures: Vec<Measure>,
    /// Source mapping file (relative to the project directory).
    #[serde(default = "d_sources")]
    pub sources: String,
    /// Folder of contract files.
    #[serde(default = "d_contracts")]
    pub contracts: String,
    #[serde(default = "d_rules")]
    pub heal_rules: String,
    /// Folder of feature-store SQL files.
    #[serde(default = "d_stores")]
    pub feature_stores: String,
    /// Certify configuration (T0 grid, parameters, SLA, baselines, stores).
    #[serde(default = "d_certify")]
    pub certify: String,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub features: Features,
    #[serde(default)]
    pub embed: EmbedInputs,
    #[serde(default)]
    pub train: TrainSettings,
}

/// How train-suite splits and evaluates (`train:` in project.yaml).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// `chronological` (default: blocks of whole T0s in time order, embargoed) or `random`
    /// (seeded, leaks time; train-suite warns).
    pub split: SplitKind,
    /// Shares of the distinct T0s for the calibration, validation and test blocks (in that
    /// time order, after training).
    pub calibration: f64,
    pub validation: f64,
    pub test: f64,
    /// The embargo before each block boundary. Default: the longest label horizon.
    pub embargo: Option<Horizon>,
    /// Seed of the random split (nothing else is random).
    pub seed: u64,
    /// Expanding-window folds inside the training block for stacking.
    pub folds: usize,
    /// Classification thresholds reported besides the one chosen on the calibration block.
    pub thresholds: Vec<f64>,
    /// Times (in the time-to-event label's unit, hours) at which S(t) is reported. Default:
    /// the quartiles of the training event times.
    pub survival_times: Vec<f64>,
    /// Model families to train (default: all that fit each label).
    pub models: Vec<String>,
    /// A binary or time-to-event label's block with fewer events than this is warned about:
    /// its figures rest on too few outcomes to compare models.
    pub min_events: usize,
    /// A categorical feature column whose levels get their own conformal intervals (Mondrian,
    /// group-conditional coverage) for value and flow labels. Default: none, one pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mondrian: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    Chronological,
    Random,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            split: SplitKind::Chronological,
            calibration: 0.1,
            validation: 0.15,
            test: 0.15,
            embargo: None,
            seed: 0,
            folds: 3,
            thresholds: vec![0.5],
            survival_times: Vec::new(),
            models: Vec::new(),
            min_events: 20,
            mondrian: None,
        }
    }
}

fn d_sources() -> String {
    "sources.yaml".into()
}
fn d_contracts() -> String {
    "contracts".into()
}
fn d_rules() -> String {
    "heal/rules.yaml".into()
}
fn d_stores() -> String {
    "feature-stores".into()
}
fn d_certify() -> String {
    "certify.yaml".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureType {
    /// A non-negative integer (negative values are quarantined).
    Count,
    Integer,
    Float,
    /// true/false, 1/0, yes/no (any case).
    Boolean,
    Text,
    /// Text with few distinct values: a categorical feature.
    Categorical,
}

impl MeasureType {
    pub fn col_type(self) -> ColType {
        match self {
            MeasureType::Count => ColType::Count,
            MeasureType::Integer => ColType::Integer,
            MeasureType::Float => ColType::Float,
            MeasureType::Boolean => ColType::Bool,
            MeasureType::Text | MeasureType::Categorical => ColType::Str,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: MeasureType,
    /// A row without a value is quarantined; a file without the column is refused (exit 4).
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    #[default]
    None,
    /// ln(1 + x); NULL for x <= -1.
    Log1p,
}

impl Transform {
    /// The inverse (back to the raw scale).
    pub fn invert(self, y: f64) -> f64 {
        match self {
            Transform::None => y,
            Transform::Log1p => y.exp_m1(),
        }
    }
    /// The transform applied to SQL expression `x`.
    pub fn sql(self, x: &str) -> String {
        match self {
            Transform::None => x.to_string(),
            Transform::Log1p => format!("CASE WHEN ({x}) > -1 THEN ln(1 + ({x})) END"),
        }
    }
    pub fn apply(self, x: f64) -> Option<f64> {
        match self {
            Transform::None => Some(x),
            Transform::Log1p => (x > -1.0).then(|| (1.0 + x).ln()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Sum,
    Count,
}

/// A duration written `<n> <unit>` (hours, days, weeks, months, years): calendar-aware in
/// SQL, so `1 year` after 2020-01-01 is 2021-01-01.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Horizon {
    pub n: i64,
    pub unit: String,
}

impl TryFrom<String> for Horizon {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: i64 = num.parse().map_err(|_| format!("horizon {s:?}: expected `<n> <unit>`, e.g. `168 hours`"))?;
        let unit = match unit.trim().trim_end_matches('s') {
            "h" | "hour" => "hour",
            "d" | "day" => "day",
            "w" | "week" => "week",
            "month" => "month",
            "y" | "year" => "year",
            other => return Err(format!("horizon {s:?}: unknown unit {other:?} (hours, days, weeks, months, years)")),
        };
        if n <= 0 {
            return Err(format!("horizon {s:?} must be positive"));
        }
        Ok(Horizon { n, unit: unit.to_string() })
    }
}

impl From<Horizon> for String {
    fn from(h: Horizon) -> String {
        format!("{} {}s", h.n, h.unit)
    }
}

impl Horizon {
    /// The horizon as a DuckDB interval literal.
    pub fn sql(&self) -> String {
        format!("INTERVAL '{} {}'", self.n, self.unit)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndStates {
    pub measure: String,
    pub values: Vec<String>,
}

/// When a value label is read: `<n> <unit>` after T0, or `next` (the first observation of
/// the measure after T0, known once it exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ValueHorizon {
    Next,
    After(Horizon),
}

impl TryFrom<String> for ValueHorizon {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s.trim() == "next" {
            return Ok(ValueHorizon::Next);
        }
        Horizon::try_from(s).map(ValueHorizon::After).map_err(|e| format!("{e}, or `next`"))
    }
}

impl From<ValueHorizon> for String {
    fn from(h: ValueHorizon) -> String {
        match h {
            ValueHorizon::Next => "next".into(),
            ValueHorizon::After(h) => h.into(),
        }
    }
}

/// What a window without any row of the entity means for a flow label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Absent {
    /// Nothing happened: the sum and the count are 0.
    Zero,
    /// Not known: the label needs a row of the entity at or after the window's end.
    Unknown,
}

/// Where a time-to-event label's follow-up ends (rows without the event are censored there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FollowUp {
    /// The entity's last observation (or event).
    #[default]
    LastSeen,
    /// The completeness watermark of the observations: the data covers every entity to it.
    Watermark,
    /// A timestamp in the entity's attributes (`{attribute: followed_until}`).
    Attribute(String),
}

/// A named target, computed only by `certify labels`, outside every feature closure.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelKind {
    /// The measure's last value at or before T0 + horizon, known once T0 + horizon is at or
    /// before the observations' completeness watermark; `horizon: next` takes the first
    /// observation after T0 instead. NULL (with a reason) when the entity ended first.
    Value {
        name: String,
        measure: String,
        horizon: ValueHorizon,
        #[serde(default)]
        transform: Transform,
    },
    /// Sum (or count of non-NULL values) of a flow measure over (T0, T0 + horizon], known once
    /// T0 + horizon is at or before the completeness watermark. `absent: zero` (the default for
    /// numeric measures) reads a window without rows as nothing happened; `absent: unknown`
    /// (the default otherwise) needs a row of the entity at or after T0 + horizon.
    Flow {
        name: String,
        measure: String,
        horizon: Horizon,
        agg: Agg,
        #[serde(default)]
        absent: Option<Absent>,
        #[serde(default)]
        transform: Transform,
    },
    /// Binary: the untransformed value of a value or flow label at or above `at_least`.
    Threshold { name: String, label: String, at_least: f64 },
    /// Binary: an event of one of `events` in (T0, T0 + horizon]; false when none happened
    /// and the window is inside the events' completeness watermark (or the entity ended
    /// first: nothing follows an end); NULL otherwise.
    EventWithin { name: String, events: Vec<String>, horizon: Horizon },
    /// Hours from T0 to the first end event (or end state) after T0, right-censored where
    /// follow-up ends (`follow_up`) or at the first `censor_events` event (a competing end);
    /// the event flag goes in `event_column` (default `<name>_event`).
    TimeToEvent {
        name: String,
        #[serde(default)]
        end_events: Vec<String>,
        #[serde(default)]
        end_states: Option<EndStates>,
        /// Events that end follow-up without being the event (censored there).
        #[serde(default)]
        censor_events: Vec<String>,
        #[serde(default)]
        follow_up: FollowUp,
        #[serde(default)]
        event_column: Option<String>,
    },
}

pub type Label = LabelKind;

impl LabelKind {
    pub fn name(&self) -> &str {
        match self {
            LabelKind::Value { name, .. }
            | LabelKind::Flow { name, .. }
            | LabelKind::Threshold { name, .. }
            | LabelKind::EventWithin { name, .. }
            | LabelKind::TimeToEvent { name, .. } => name,
        }
    }

    /// The columns this label writes into the labels file.
    pub fn columns(&self) -> Vec<String> {
        match self {
            LabelKind::TimeToEvent { name, event_column, .. } => {
                vec![name.clone(), event_column.clone().unwrap_or_else(|| format!("{name}_event"))]
            }
            other => vec![other.name().to_string()],
        }
    }

    /// The horizon over which the label matures (none for time-to-event, `next` and
    /// threshold labels: a threshold's is its base label's, see [`ProjectDef::horizon_of`]).
    pub fn horizon(&self) -> Option<&Horizon> {
        match self {
            LabelKind::Value { horizon: ValueHorizon::After(horizon), .. }
            | LabelKind::Flow { horizon, .. }
            | LabelKind::EventWithin { horizon, .. } => Some(horizon),
            _ => None,
        }
    }

    /// Whether rows of this label carry an event flag worth counting (binary and survival).
    pub fn has_events(&self) -> bool {
        matches!(self, LabelKind::Threshold { .. } | LabelKind::EventWithin { .. } | LabelKind::TimeToEvent { .. })
    }

    /// The value transform of a value or flow label.
    pub fn transform(&self) -> Transform {
        match self {
            LabelKind::Value { transform, .. } | LabelKind::Flow { transform, .. } => *transform,
            _ => Transform::None,
        }
    }

    /// Whether a regression model can train on it (a number per row).
    pub fn is_numeric(&self) -> bool {
        matches!(self, LabelKind::Value { .. } | LabelKind::Flow { .. })
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            LabelKind::Value { .. } => "value",
            LabelKind::Flow { .. } => "flow",
            LabelKind::Threshold { .. } => "threshold",
            LabelKind::EventWithin { .. } => "event_within",
            LabelKind::TimeToEvent { .. } => "time_to_event",
        }
    }
}

/// Which certified surfaces feed the models and how their columns become features.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Store entrypoints joined on (entity_id, t0); every column is a feature unless excluded.
    #[serde(default)]
    pub surfaces: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Per-column transforms applied before standardisation.
    #[serde(default)]
    pub transforms: BTreeMap<String, Transform>,
    /// Categorical columns keep their most frequent levels up to this many; the rest is `other`.
    #[serde(default = "d_levels")]
    pub max_levels: usize,
    /// Embed input names whose vectors are features.
    #[serde(default)]
    pub embeddings: Vec<String>,
    /// Fused embeddings (`fused.<strategy>`): one strategy or a list. train-suite trains
    /// the suite once per strategy, each with that fused vector (and the modality presence
    /// flags) beside the surface columns, and selects across them on validation.
    #[serde(default, deserialize_with = "one_or_many")]
    pub fusion: Vec<FusionStrategy>,
    /// The label train-suite fits by default.
    #[serde(default)]
    pub target: Option<String>,
    /// Columns that must never be a feature (besides every label column): selecting one is a
    /// gate failure (exit 1) naming it.
    #[serde(default)]
    pub leakage: Vec<String>,
    /// As-of features declared instead of written: each entry is a store certify generates
    /// (`crate::declared`), and its surface feeds the models like those in `surfaces`.
    #[serde(default)]
    pub declared: Vec<crate::declared::DeclaredStore>,
}

impl Features {
    /// Every store whose surface feeds the models: `surfaces`, then the declared stores.
    pub fn feeding(&self) -> Vec<String> {
        let mut out = self.surfaces.clone();
        out.extend(self.declared.iter().map(|d| d.store.clone()).filter(|d| !self.surfaces.contains(d)));
        out
    }
}

fn d_levels() -> usize {
    20
}

/// A value written either alone (`fusion: concat`) or as a list (`fusion: [concat, sum_pool]`).
fn one_or_many<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

impl Default for Features {
    fn default() -> Self {
        Features {
            surfaces: Vec::new(),
            exclude: Vec::new(),
            transforms: BTreeMap::new(),
            max_levels: d_levels(),
            embeddings: Vec::new(),
            fusion: Vec::new(),
            target: None,
            leakage: Vec::new(),
            declared: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedInputs {
    /// Text columns of certified surfaces to embed.
    #[serde(default)]
    pub text: Vec<TextInput>,
    /// Artifact columns (content hashes) of certified surfaces to embed.
    #[serde(default)]
    pub artifacts: Vec<ArtifactInput>,
    /// Model directories, relative to the models directory (`--models`, `T0CLIP_MODELS`) or
    /// absolute.
    #[serde(default)]
    pub models: EmbedModels,
    /// Fusion strategies, each written as `fused.<strategy>` (default: all three).
    #[serde(default = "d_fusion")]
    pub fusion: Vec<FusionStrategy>,
    /// Common dimension of the seeded per-modality projections that fusion pools.
    #[serde(default = "d_fusion_dim")]
    pub fusion_dim: usize,
}

impl Default for EmbedInputs {
    fn default() -> Self {
        EmbedInputs {
            text: Vec::new(),
            artifacts: Vec::new(),
            models: EmbedModels::default(),
            fusion: d_fusion(),
            fusion_dim: d_fusion_dim(),
        }
    }
}

fn d_fusion() -> Vec<FusionStrategy> {
    vec![FusionStrategy::Concat, FusionStrategy::SumPool, FusionStrategy::MaxPool]
}

fn d_fusion_dim() -> usize {
    32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionStrategy {
    Concat,
    SumPool,
    MaxPool,
}

impl FusionStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            FusionStrategy::Concat => "concat",
            FusionStrategy::SumPool => "sum_pool",
            FusionStrategy::MaxPool => "max_pool",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedModels {
    /// A BERT-family sentence model directory (config.json, tokenizer.json, model.safetensors).
    #[serde(default = "d_text_model")]
    pub text: String,
    /// An EfficientNet-Lite0 directory holding model.safetensors.
    #[serde(default = "d_image_model")]
    pub image: String,
}

fn d_text_model() -> String {
    "all-minilm-l6-v2".into()
}

fn d_image_model() -> String {
    "efficientnet-lite0".into()
}

impl Default for EmbedModels {
    fn default() -> Self {
        EmbedModels { text: d_text_model(), image: d_image_model() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    /// Name of the embedding (`embeddings.<name>`, features `<name>_NN`).
    pub name: String,
    pub surface: String,
    pub column: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// PNG, JPEG, GIF, WebP: the learned (EfficientNet-Lite0) and the handcrafted vector.
    Image,
    /// WAV: MFCC, log-mel, RMS, zero-crossing rate, spectral centroid.
    Audio,
    /// Animated GIF/WebP/PNG, or MP4 and other containers through `ffmpeg`.
    Video,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactInput {
    /// Name of the embedding (`embeddings.<name>`; images also `embeddings.<name>_handcrafted`).
    pub name: String,
    pub surface: String,
    /// A column of content hashes (the `content_hash` of `artifacts`), NULL when no artifact
    /// is visible at T0: the surface decides visibility, embed never looks past it.
    pub column: String,
    pub kind: MediaKind,
}

impl EmbedInputs {
    /// Every embedding output name embed writes (without the `embeddings.` prefix).
    pub fn output_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.text.iter().map(|t| t.name.clone()).collect();
        for a in &self.artifacts {
            v.push(a.name.clone());
            if a.kind == MediaKind::Image {
                v.push(format!("{}_handcrafted", a.name));
            }
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.artifacts.is_empty()
    }
}

fn at(file: &Path, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::config(file, format!("line {line}: {msg}"))
}

/// A plain SQL identifier: measures and labels become column names.
pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
}

/// 1-based line of the first line at or after `from` (1-based) that contains `needle`.
pub fn line_of(text: &str, from: usize, needle: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or(from.max(1))
}

/// 1-based line of top-level key `key:`.
pub fn key_line(text: &str, key: &str) -> usize {
    let head = format!("{key}:");
    text.lines().position(|l| l.starts_with(&head)).map(|i| i + 1).unwrap_or(1)
}

impl ProjectDef {
    /// The horizon a label matures over, a threshold's being its base label's.
    pub fn horizon_of<'a>(&'a self, label: &'a Label) -> Option<&'a Horizon> {
        match label {
            LabelKind::Threshold { label: base, .. } => {
                self.labels.iter().find(|l| l.name() == base).and_then(|b| b.horizon())
            }
            other => other.horizon(),
        }
    }

    /// What an empty window means for a flow label: as declared, else `zero` for a numeric
    /// measure (a flow that did not flow) and `unknown` for others.
    pub fn absent_of(&self, label: &Label) -> Absent {
        let LabelKind::Flow { measure, absent, .. } = label else { return Absent::Unknown };
        absent.unwrap_or_else(|| {
            let numeric = self.measures.iter().any(|m| {
                m.name == *measure && matches!(m.ty, MeasureType::Count | MeasureType::Integer | MeasureType::Float)
            });
            if numeric { Absent::Zero } else { Absent::Unknown }
        })
    }

    /// Parse and validate `project.yaml`; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<ProjectDef> {
        let def: ProjectDef = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            at(file, line, e)
        })?;
        def.validate(file, text)?;
        Ok(def)
    }

    /// Every cross-field rule of project.yaml, each refusing with the line it concerns.
    ///
    /// Long because: a flat list of independent checks in the order of the file's sections.
    fn validate(&self, file: &Path, text: &str) -> Result<()> {
        if !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || self.name.is_empty() {
            return Err(at(file, key_line(text, "name"), "name must be non-empty [A-Za-z0-9_-]"));
        }
        let mlines = t0_core::config::item_lines(text, "measures");
        let obs = vocab::spec("observations").expect("role table");
        let mut seen = BTreeSet::new();
        for (i, m) in self.measures.iter().enumerate() {
            let line = mlines.get(i).copied().unwrap_or(0);
            if !is_identifier(&m.name) {
                return Err(at(
                    file,
                    line,
                    format!("measure {:?}: a name is lower-case [a-z0-9_], not starting with a digit", m.name),
                ));
            }
            if obs.has_column(&m.name) || vocab::BOOKKEEPING.contains(&m.name.as_str()) || m.name == "t0" {
                return Err(at(file, line, format!("measure {:?}: that column is a role of every project", m.name)));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(at(file, line, format!("measure {:?} is declared twice", m.name)));
            }
        }
        let llines = t0_core::config::item_lines(text, "labels");
        let mut columns: BTreeSet<String> = BTreeSet::new();
        for (i, l) in self.labels.iter().enumerate() {
            let line = llines.get(i).copied().unwrap_or(0);
            let name = l.name();
            let err = |msg: String| at(file, line, format!("label {name:?}: {msg}"));
            for c in l.columns() {
                if !is_identifier(&c) {
                    return Err(err(format!("{c:?} is not a plain lower-case column name")));
                }
                if ["entity_id", "t0"].contains(&c.as_str()) || !columns.insert(c.clone()) {
                    return Err(err(format!("column {c:?} is used twice")));
                }
            }
            let measure_ok = |m: &str, numeric: bool| -> Result<()> {
                match self.measures.iter().find(|x| x.name == m) {
                    None => Err(err(format!(
                        "names measure {m:?}, which the project does not declare (measures: {})",
                        self.measures.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                    Some(x)
                        if numeric
                            && !matches!(x.ty, MeasureType::Count | MeasureType::Integer | MeasureType::Float) =>
                    {
                        Err(err(format!("measure {m:?} is {:?}, not a number", x.ty)))
                    }
                    Some(_) => Ok(()),
                }
            };
            match l {
                LabelKind::Value { measure, .. } | LabelKind::Flow { measure, agg: Agg::Sum, .. } => {
                    measure_ok(measure, true)?
                }
                LabelKind::Flow { measure, agg: Agg::Count, .. } => measure_ok(measure, false)?,
                LabelKind::Threshold { label, .. } => {
                    let pos = self.labels.iter().position(|x| x.name() == label);
                    match pos.map(|p| (p, &self.labels[p])) {
                        Some((p, base)) if p < i && base.is_numeric() => {}
                        Some((p, _)) if p >= i => {
                            return Err(err(format!("label {label:?} must be declared before it")));
                        }
                        Some(_) => return Err(err(format!("label {label:?} is not a value or flow label"))),
                        None => return Err(err(format!("names label {label:?}, which is not declared"))),
                    }
                }
                LabelKind::EventWithin { events, .. } if events.is_empty() => {
                    return Err(err("`events` is empty".into()));
                }
                LabelKind::EventWithin { .. } => {}
                LabelKind::TimeToEvent { end_events, end_states, censor_events, .. } => {
                    if end_events.is_empty() && end_states.is_none() {
                        return Err(err("needs `end_events` or `end_states`".into()));
                    }
                    if let LabelKind::TimeToEvent { follow_up: FollowUp::Attribute(a), .. } = l
                        && !is_identifier(a)
                    {
                        return Err(err(format!("follow_up attribute {a:?} is not a plain lower-case name")));
                    }
                    if let Some(e) = censor_events.iter().find(|e| end_events.contains(e)) {
                        return Err(err(format!("event {e:?} is both an end event and a censoring event")));
                    }
                    if let Some(s) = end_states {
                        measure_ok(&s.measure, false)?;
                    }
                }
            }
        }
        let f = &self.features;
        let fline = |needle: &str| line_of(text, key_line(text, "features"), needle);
        if let Some(t) = f.target.as_ref().filter(|t| !self.labels.iter().any(|l| l.name() == *t)) {
            return Err(at(file, fline("target"), format!("features.target {t:?} is not a declared label")));
        }
        let outputs = self.embed.output_names();
        for e in &f.embeddings {
            if !outputs.contains(e) {
                return Err(at(
                    file,
                    fline(e),
                    format!("features.embeddings names {e:?}, which is not an embed output ({})", outputs.join(", ")),
                ));
            }
        }
        for s in &f.fusion {
            if !self.embed.fusion.contains(s) {
                return Err(at(
                    file,
                    fline("fusion"),
                    format!("features.fusion names {}, which embed.fusion does not write", s.as_str()),
                ));
            }
        }
        if let Some(dup) = f.fusion.iter().enumerate().find(|(k, s)| f.fusion[..*k].contains(s)) {
            return Err(at(file, fline("fusion"), format!("features.fusion names {} twice", dup.1.as_str())));
        }
        if !f.fusion.is_empty() && self.embed.is_empty() {
            return Err(at(file, fline("fusion"), "features.fusion needs embed inputs"));
        }
        if self.embed.fusion_dim == 0 || self.embed.fusion_dim > 4096 {
            return Err(at(
                file,
                line_of(text, key_line(text, "embed"), "fusion_dim"),
                "embed.fusion_dim must be between 1 and 4096",
            ));
        }
        if f.max_levels == 0 {
            return Err(at(file, fline("max_levels"), "features.max_levels must be at least 1"));
        }
        self.validate_declared(file, text)?;
        let mut names = BTreeSet::new();
        for name in &outputs {
            if !is_identifier(name) || !names.insert(name.clone()) {
                return Err(at(
                    file,
                    line_of(text, key_line(text, "embed"), name),
                    format!("embed input name {name:?} must be a unique lower-case identifier"),
                ));
            }
        }
        Ok(())
    }

    /// Declared stores: unique names, valid aggregates, no column named like a label.
    fn validate_declared(&self, file: &Path, text: &str) -> Result<()> {
        let mut stores = BTreeSet::new();
        let leak = self.leakage();
        for d in &self.features.declared {
            let line = line_of(text, key_line(text, "features"), &format!("store: {}", d.store));
            let err = |m: String| at(file, line, format!("features.declared store {:?}: {m}", d.store));
            if !is_identifier(&d.store) || !stores.insert(d.store.as_str()) {
                return Err(err("a store name is a unique lower-case identifier".into()));
            }
            let cols = d.columns(&self.measures).map_err(err)?;
            if let Some(c) =
                cols.iter().find(|c| leak.contains(&c.name) || ["entity_id", "t0"].contains(&c.name.as_str()))
            {
                return Err(err(format!("column {:?} is a label, a key or a declared leakage column", c.name)));
            }
        }
        Ok(())
    }

    /// Every column a feature must never be: label columns and the declared leakage list.
    pub fn leakage(&self) -> BTreeSet<String> {
        self.labels.iter().flat_map(|l| l.columns()).chain(self.features.leakage.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<ProjectDef, String> {
        ProjectDef::parse(Path::new("p/project.yaml"), text).map_err(|e| e.to_string())
    }

    const OK: &str = "name: panel\nmeasures:\n  - {name: pop, type: count}\n  - {name: region, type: categorical}\nlabels:\n  - {name: y_pop, kind: value, measure: pop, horizon: 1 year, transform: log1p}\n  - {name: y_big, kind: threshold, label: y_pop, at_least: 1000}\nfeatures:\n  surfaces: [base]\n  target: y_pop\n";

    #[test]
    fn a_valid_project_parses() {
        let d = parse(OK).unwrap();
        assert_eq!(d.measures.len(), 2);
        assert_eq!(d.labels[0].name(), "y_pop");
        assert!(d.leakage().contains("y_big"));
        assert_eq!(Horizon::try_from("168 hours".to_string()).unwrap().sql(), "INTERVAL '168 hour'");
    }

    #[test]
    fn malformed_projects_name_file_line_and_problem() {
        let cases = [
            (OK.replace("type: count", "type: cnt"), "line 3", "unknown variant `cnt`"),
            (OK.replace("measure: pop", "measure: people"), "line 6", "does not declare"),
            (OK.replace("label: y_pop", "label: y_nope"), "line 7", "not declared"),
            (OK.replace("target: y_pop", "target: y_gone"), "line 10", "not a declared label"),
            (OK.replace("1 year", "1 fortnight"), "line 6", "unknown unit"),
            (OK.replace("name: region", "name: observed_at"), "line 4", "role"),
            (OK.replace("name: region", "name: pop"), "line 4", "twice"),
            (OK.replace("kind: value", "kind: guess"), "line 6", "unknown variant `guess`"),
        ];
        for (text, line, what) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains("p/project.yaml") && e.contains(line) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn fusion_is_one_strategy_or_a_list_of_those_embed_writes() {
        let with = |features: &str, embed: &str| {
            OK.replace("  target: y_pop\n", &format!("  target: y_pop\n  fusion: {features}\n"))
                + &format!("embed:\n  text:\n    - {{name: t, surface: base, column: region}}\n  fusion: {embed}\n")
        };
        let one = parse(&with("sum_pool", "[concat, sum_pool]")).unwrap();
        assert_eq!(one.features.fusion, vec![FusionStrategy::SumPool]);
        let two = parse(&with("[concat, sum_pool]", "[concat, sum_pool]")).unwrap();
        assert_eq!(two.features.fusion, vec![FusionStrategy::Concat, FusionStrategy::SumPool]);
        let e = parse(&with("[concat, max_pool]", "[concat, sum_pool]")).unwrap_err();
        assert!(e.contains("max_pool") && e.contains("embed.fusion does not write"), "{e}");
        let e = parse(&with("[concat, concat]", "[concat]")).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(parse(OK).unwrap().features.fusion.is_empty());
    }
}
