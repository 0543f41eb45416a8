//! The calibration grid: every point of `--grid` (a cartesian product over the governance
//! profile's parameters) replays the score run's matured predictions from a fresh start and
//! is scored by ScoreV1 under the hard constraints. Points run in parallel and are collected
//! in grid order, so the files are identical on any thread count. Writes
//! `calib/<run>/calib_results.csv` (one row per point) and `calib_topk.json` (the best `k`,
//! each with its patch against the profile); `--apply-top FILE` writes the winner as a
//! profile file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use t0_acceptance::grid::{Grid, Value};
use t0_acceptance::objective::{self, Constraint, Weights};
use t0_acceptance::replay::{self, Calibration, Carry};
use t0_acceptance::{Profile, State};
use t0_core::{Error, Progress, Result, Root};
use t0_manifest::Location;

use crate::profile::Loaded;
use crate::steps::Step;

pub struct GridArgs {
    pub grid: Grid,
    /// The spec as given (inline text or `@file`).
    pub spec: String,
    /// ScoreV1 weights and hard constraints (the profile's objective when not given).
    pub weights: Option<String>,
    pub constraints: Option<String>,
    pub top_k: usize,
    /// Write the winner as a profile file here.
    pub apply_top: Option<PathBuf>,
}

impl GridArgs {
    /// What the run's id depends on.
    pub fn key(&self) -> String {
        format!("{:?}|{:?}|{:?}|{}", self.grid, self.weights, self.constraints, self.top_k)
    }
}

/// `--grid SPEC`: the inline form, or `@file` with `.txt` (the inline syntax, one
/// assignment per line), `.yaml`/`.yml` or `.json` (a mapping of path to list of values).
pub fn parse_spec(arg: &str) -> Result<Grid> {
    let Some(file) = arg.strip_prefix('@') else {
        return Grid::parse(arg).map_err(|e| Error::Usage(format!("--grid: {e}")));
    };
    let path = Path::new(file);
    let text = std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("--grid @{file}: {e}")))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bad = |why: String| Error::config(path, why);
    let mapping: serde_json::Value = match ext {
        "txt" => return Grid::parse(&text).map_err(|e| bad(e.to_string())),
        "yaml" | "yml" => serde_yaml::from_str(&text).map_err(|e| bad(format!("not YAML: {e}")))?,
        "json" => serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?,
        other => {
            return Err(Error::Usage(format!("--grid @{file}: unknown extension {other:?} (txt, yaml, yml, json)")));
        }
    };
    let map =
        mapping.as_object().ok_or_else(|| bad("expected a mapping of parameter path to list of values".into()))?;
    let mut grid = Grid::default();
    for (k, v) in map {
        let values = match v {
            serde_json::Value::Array(a) => a.iter().map(value).collect::<std::result::Result<Vec<_>, _>>(),
            one => value(one).map(|v| vec![v]),
        };
        let values = values.map_err(|w| bad(format!("{k}: {w}")))?;
        if values.is_empty() {
            return Err(bad(format!("{k}: no values")));
        }
        grid.params.push((k.clone(), values));
    }
    if grid.params.is_empty() {
        return Err(bad("the grid is empty".into()));
    }
    Ok(grid)
}

fn value(v: &serde_json::Value) -> std::result::Result<Value, String> {
    Ok(match v {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            n.as_i64().map_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)), Value::Int)
        }
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(a) => Value::List(a.iter().map(value).collect::<std::result::Result<_, _>>()?),
        other => return Err(format!("{other} is not a number, string, boolean or list")),
    })
}

/// One point's result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Its index in the grid's order.
    pub index: usize,
    pub params: Vec<(String, String)>,
    pub score: f64,
    pub feasible: bool,
    pub steps: usize,
    pub pass_share: f64,
    pub derisk_share: f64,
    pub block_share: f64,
    pub coverage: f64,
    pub surprisal_p95: f64,
    pub latency_p95_ms: Option<f64>,
    pub flap_rate_k: f64,
    pub violation_rate: f64,
    pub mean_risk_scale: f64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Top {
    pub rank: usize,
    pub point: Point,
    /// The parameters that differ from the profile the run used, as path → value.
    pub patch: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GridReport {
    pub spec: String,
    pub points: usize,
    pub weights: String,
    pub constraints: String,
    pub results: String,
    pub topk: String,
    pub top: Vec<Top>,
    /// The profile file `--apply-top` wrote.
    pub applied: Option<String>,
}

/// A grid point's assignments and the profile they make.
type Candidate = (Vec<(String, Value)>, Profile);

/// Check every point builds a profile (unknown paths and ill-typed values are exit 2
/// naming them), before anything is replayed.
fn profiles(base: &Profile, grid: &Grid) -> Result<Vec<Candidate>> {
    let known = Profile::paths();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    grid.check_paths(&known).map_err(|e| Error::Usage(format!("--grid: {e}")))?;
    grid.points()
        .into_iter()
        .map(|pt| {
            let p = base.with(&pt).map_err(|e| Error::Usage(format!("--grid: {e}")))?;
            Ok((pt, p))
        })
        .collect()
}

/// Replay every label's steps under `p` from a fresh start; the steps-weighted figures.
fn evaluate(p: &Profile, labels: &[(Calibration, Vec<replay::Observation>)], initial: State) -> replay::Summary {
    let mut records = Vec::new();
    let mut last = Carry::new(p, initial);
    for (cal, obs) in labels {
        let mut carry = Carry::new(p, initial);
        records.extend(replay::replay(p, cal, &mut carry, obs).0);
        last = carry;
    }
    replay::summarize(&records, &last)
}

fn point(index: usize, params: &[(String, Value)], s: &replay::Summary, score: f64, feasible: bool) -> Point {
    Point {
        index,
        params: params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        score,
        feasible,
        steps: s.steps,
        pass_share: s.pass_share,
        derisk_share: s.derisk_share,
        block_share: s.block_share,
        coverage: s.coverage.unwrap_or(f64::NAN),
        surprisal_p95: s.surprisal_p95.unwrap_or(f64::NAN),
        latency_p95_ms: s.latency_p95_ms,
        flap_rate_k: s.flap_rate_k,
        violation_rate: s.violation_rate,
        mean_risk_scale: s.mean_risk_scale,
    }
}

fn csv(grid: &Grid, points: &[Point]) -> String {
    let mut out: Vec<String> = grid.params.iter().map(|(k, _)| k.clone()).collect();
    out.insert(0, "point".into());
    out.extend(
        [
            "score",
            "feasible",
            "steps",
            "pass_share",
            "derisk_share",
            "block_share",
            "coverage",
            "surprisal_p95",
            "latency_p95_ms",
            "flap_rate_k",
            "violation_rate",
            "mean_risk_scale",
        ]
        .map(String::from),
    );
    let quote =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.into() };
    let mut text = out.join(",") + "\n";
    for p in points {
        let mut row: Vec<String> = vec![p.index.to_string()];
        row.extend(p.params.iter().map(|(_, v)| quote(v)));
        let lat = p.latency_p95_ms.map_or(String::new(), |v| v.to_string());
        row.extend([
            p.score.to_string(),
            p.feasible.to_string(),
            p.steps.to_string(),
            p.pass_share.to_string(),
            p.derisk_share.to_string(),
            p.block_share.to_string(),
            p.coverage.to_string(),
            p.surprisal_p95.to_string(),
            lat,
            p.flap_rate_k.to_string(),
            p.violation_rate.to_string(),
            p.mean_risk_scale.to_string(),
        ]);
        text += &(row.join(",") + "\n");
    }
    text
}

/// Long because: parse the objective, build and check every point, replay them in
/// parallel, rank, and write the three files — one sequence a reader follows top to bottom.
pub fn run(
    root: &Root,
    run_id: &str,
    loaded: &Loaded,
    args: &GridArgs,
    steps: &[(&t0_model::Model, Vec<Step>)],
    initial: State,
    progress: &dyn Progress,
) -> Result<GridReport> {
    let base = &loaded.profile;
    let weights = args.weights.clone().unwrap_or_else(|| base.objective.weights.clone());
    let constraints = args.constraints.clone().unwrap_or_else(|| base.objective.constraints.clone());
    let w = Weights::parse(&weights).map_err(|e| Error::Usage(format!("--objective-weights: {e}")))?;
    let c = Constraint::parse_all(&constraints).map_err(|e| Error::Usage(format!("--hard-constraints: {e}")))?;
    let candidates = profiles(base, &args.grid)?;
    let labels: Vec<(Calibration, Vec<replay::Observation>)> =
        steps.iter().map(|(m, s)| (crate::calibration(m), s.iter().map(|s| s.obs).collect())).collect();
    progress.phase("grid", Some(candidates.len() as u64));
    let points: Vec<Point> = candidates
        .par_iter()
        .enumerate()
        .map(|(i, (params, p))| {
            let s = evaluate(p, &labels, initial);
            let (m, r) = (s.metrics(), replay::references(p));
            let feasible = c.iter().all(|c| c.holds(&m, &r));
            let score = objective::score_v1(&w, &c, &m, &r);
            progress.advance(1);
            point(i, params, &s, score, feasible)
        })
        .collect();
    progress.finish();
    let mut ranked: Vec<&Point> = points.iter().collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    let top: Vec<Top> = ranked
        .iter()
        .take(args.top_k.max(1))
        .enumerate()
        .map(|(rank, p)| Top {
            rank: rank + 1,
            point: (*p).clone(),
            patch: candidates[p.index].1.diff(base).into_iter().collect(),
        })
        .collect();
    let dir = format!("calib/{run_id}");
    let (results, topk) = (format!("{dir}/calib_results.csv"), format!("{dir}/calib_topk.json"));
    t0_core::fsio::write_atomic(&root.join(&results), csv(&args.grid, &points).as_bytes())?;
    t0_core::fsio::write_atomic(&root.join(&topk), &t0_model::json_bytes(&top)?)?;
    let applied = match (&args.apply_top, top.first()) {
        (Some(path), Some(best)) => Some(apply(path, &candidates[best.point.index].1, run_id, best, &args.spec)?),
        _ => None,
    };
    Ok(GridReport { spec: args.spec.clone(), points: points.len(), weights, constraints, results, topk, top, applied })
}

/// Write the winning profile, with a comment naming the calibration run.
fn apply(path: &Path, p: &Profile, run_id: &str, best: &Top, spec: &str) -> Result<String> {
    let yaml = serde_yaml::to_string(p)
        .map_err(|e| Error::Internal { context: "write profile".into(), message: e.to_string() })?;
    let text = format!(
        "# Governance profile written by `calibrate --apply-top`, calibrate run {run_id}:\n\
         # the best of the grid {spec} (ScoreV1 {}), changing {}.\n{yaml}",
        best.point.score,
        best.patch.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    t0_core::fsio::write_atomic(path, text.as_bytes())?;
    Ok(path.display().to_string())
}

/// Record the grid's files as outputs.
pub fn record(root: &Root, catalog: &t0_catalog::Catalog, g: &GridReport) -> Result<Vec<t0_manifest::Output>> {
    Ok(vec![
        t0_manifest::record_output(root, catalog, "calib.results", Location::File { path: g.results.clone() })?,
        t0_manifest::record_output(root, catalog, "calib.topk", Location::File { path: g.topk.clone() })?,
    ])
}
