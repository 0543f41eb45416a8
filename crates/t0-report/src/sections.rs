//! The sections of the page, each built from verified manifests and the outputs they name.
//! Stage reports are read as JSON values (a manifest's `summary`): the page shows what a run
//! recorded, whatever version of the stage wrote it, and a field it lacks is shown as "—".

use std::cell::RefCell;
use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, StringArray};
use serde_json::Value;
use t0_catalog::Catalog;
use t0_core::error::Context;
use t0_core::{Result, Root, Stage};
use t0_manifest::Loaded;

use crate::plot::{self, Series};
use crate::{Part, Section, Table};

pub(crate) enum Built {
    Section(Section),
    /// The section's id and why there is nothing to show.
    Empty(&'static str, String),
}

type Make = fn(&Reader) -> Result<Built>;

/// The sections, in page order.
pub(crate) const ALL: [Make; 9] = [
    leaderboard,
    crate::outcomes::predicted,
    acceptance,
    intervals,
    drift,
    crate::outcomes::contributions,
    audit,
    heal,
    chain,
];

/// Reads a root's runs through their verified manifests, and remembers which it read.
pub(crate) struct Reader<'a> {
    root: &'a Root,
    catalog: &'a Catalog,
    /// Every recorded run, in catalog order.
    runs: Vec<(Stage, String)>,
    read: RefCell<BTreeMap<String, String>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(root: &'a Root, catalog: &'a Catalog) -> Result<Self> {
        let mut stmt =
            catalog.conn().prepare("SELECT stage, run_id FROM manifests ORDER BY seq").ctx(|| "list runs".into())?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .ctx(|| "list runs".into())?;
        let runs = rows.into_iter().filter_map(|(s, r)| s.parse().ok().map(|s| (s, r))).collect();
        Ok(Reader { root, catalog, runs, read: RefCell::new(BTreeMap::new()) })
    }

    /// Every run of `stage`, oldest first, each manifest verified.
    pub(crate) fn runs(&self, stage: Stage) -> Result<Vec<Loaded>> {
        let ids: Vec<&String> = self.runs.iter().filter(|(s, _)| *s == stage).map(|(_, r)| r).collect();
        ids.into_iter().map(|id| self.load(stage, id)).collect()
    }

    pub(crate) fn latest(&self, stage: Stage) -> Result<Option<Loaded>> {
        Ok(self.runs(stage)?.pop())
    }

    fn load(&self, stage: Stage, run: &str) -> Result<Loaded> {
        let l = t0_manifest::load(self.root, self.catalog, stage, Some(run))?;
        self.read.borrow_mut().insert(self.root.relative(&l.path), l.manifest_hash.clone());
        Ok(l)
    }

    /// The rows of a Parquet output of `run`, checked against its content hash first.
    pub(crate) fn parquet(&self, run: &Loaded, name: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let out = run.manifest.output(name)?;
        t0_manifest::verify_output(self.root, self.catalog, &run.manifest, out)?;
        let path = out.path(self.root)?;
        let set = t0_table::ParquetSet::open(&path).map_err(|e| t0_core::Error::internal("report read", e))?;
        let (_, batches) = set.read_all().map_err(|e| t0_core::Error::internal("report read", e))?;
        Ok(batches)
    }

    /// (manifest path, blake3) of every manifest read, in path order.
    pub(crate) fn manifests(&self) -> Vec<(String, String)> {
        self.read.borrow().iter().map(|(p, h)| (p.clone(), h.clone())).collect()
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(f) => format!("{f:.4}"),
        None => v.as_str().map_or_else(|| "—".into(), str::to_string),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| num(v), str::to_string)
}

pub(crate) fn table(head: &[&str], rows: Vec<Vec<String>>) -> Table {
    Table { head: head.iter().map(|h| h.to_string()).collect(), rows }
}

/// The leaderboard of the latest train-suite run: each model's validation and test metric,
/// per label and fusion strategy, the selected one marked.
fn leaderboard(r: &Reader) -> Result<Built> {
    let Some(run) = r.latest(Stage::TrainSuite)? else {
        return Ok(Built::Empty("leaderboard", "no train-suite run yet".into()));
    };
    let rows = run.manifest.summary["leaderboard"].as_array().cloned().unwrap_or_default();
    let mut by_label: BTreeMap<String, Series> = BTreeMap::new();
    let mut cells = Vec::new();
    for e in &rows {
        let label = text(&e["label"]);
        if let (Some(v), Some(t)) = (e["valid"].as_f64(), e["test"].as_f64()) {
            let metric = text(&e["metric"]);
            by_label
                .entry(label.clone())
                .or_insert_with(|| Series { name: format!("{label} ({metric})"), points: Vec::new() })
                .points
                .push((v, t));
        }
        cells.push(vec![
            label,
            text(&e["model"]),
            text(&e["fusion"]),
            text(&e["metric"]),
            num(&e["valid"]),
            num(&e["test"]),
            if e["selected"] == true { "selected".into() } else { String::new() },
        ]);
    }
    let series: Vec<Series> = by_label.into_values().collect();
    let svg = plot::scatter("Validation against test metric, each model", ("validation", "test"), &series, true)?;
    Ok(Built::Section(Section {
        id: "leaderboard",
        title: "Leaderboard",
        intro: format!(
            "Train-suite run {}: every model of every label and fusion strategy, its metric on the validation and the test block; the selected model of each label is marked. Points near the diagonal generalise as validated.",
            run.manifest.run_id
        ),
        parts: vec![Part::Plot {
            svg,
            table: table(&["label", "model", "fusion", "metric", "valid", "test", ""], cells),
        }],
    }))
}

fn level(state: &str) -> f64 {
    match state {
        "PASS" => 2.0,
        "DERISK" => 1.0,
        _ => 0.0,
    }
}

/// The acceptance state after each calibrate run, with the transitions and why.
fn acceptance(r: &Reader) -> Result<Built> {
    let runs = r.runs(Stage::Calibrate)?;
    if runs.is_empty() {
        return Ok(Built::Empty("acceptance", "no calibrate run yet".into()));
    }
    let mut points = Vec::new();
    let mut cells = Vec::new();
    let mut before: Option<String> = None;
    for (i, run) in runs.iter().enumerate() {
        let s = &run.manifest.summary;
        let state = text(&s["state"]);
        points.push((i as f64 + 1.0, level(&state)));
        let transition = match &before {
            Some(b) if *b != state => format!("{b} → {state}"),
            Some(_) => "unchanged".into(),
            None => "initial".into(),
        };
        cells.push(vec![
            (i + 1).to_string(),
            run.manifest.run_id.clone(),
            text(&s["model_run"]),
            state.clone(),
            transition,
            text(&s["reason"]),
        ]);
        before = Some(state);
    }
    let svg = plot::lines(
        "Acceptance state after each calibrate run (2 PASS, 1 DERISK, 0 BLOCK)",
        ("calibrate run", "state"),
        &[Series { name: "state".into(), points }],
        true,
    )?;
    Ok(Built::Section(Section {
        id: "acceptance",
        title: "Acceptance state",
        intro: "The governance loop: the state each calibrate run left on the model it judged, each change and the guard that caused it (its reason); then, per label, the transitions within each replay, the guards breached and the adaptive α it ended with.".into(),
        parts: vec![
            Part::Plot { svg, table: table(&["#", "calibrate run", "model run", "state", "transition", "why"], cells) },
            Part::Table(table(
                &["calibrate run", "label", "steps", "transitions", "guards breached", "blocked by", "final α", "why"],
                runs.iter().flat_map(replay_rows).collect(),
            )),
        ],
    }))
}

/// One row per label replayed by a calibrate run: what happened step by step, summed.
fn replay_rows(run: &Loaded) -> Vec<Vec<String>> {
    let counts = |v: &Value| -> String {
        let m = v.as_object().map(|m| m.iter().map(|(k, n)| format!("{k}: {}", num(n))).collect::<Vec<_>>());
        m.filter(|m| !m.is_empty()).map_or_else(|| "—".into(), |m| m.join(", "))
    };
    let labels = run.manifest.summary["labels"].as_array().cloned().unwrap_or_default();
    labels
        .iter()
        .map(|l| {
            let s = &l["summary"];
            vec![
                run.manifest.run_id.clone(),
                text(&l["label"]),
                num(&s["steps"]),
                counts(&s["transitions"]),
                counts(&s["violations_by_type"]),
                counts(&s["block_rate_by_reason"]),
                num(&s["final_alpha"]),
                text(&l["why"]),
            ]
        })
        .collect()
}

/// Empirical coverage of the served intervals against their nominal level per calibrate run,
/// and the mean interval width of each score run.
fn intervals(r: &Reader) -> Result<Built> {
    let cal = r.runs(Stage::Calibrate)?;
    let scores = r.runs(Stage::Score)?;
    if cal.is_empty() && scores.is_empty() {
        return Ok(Built::Empty("intervals", "no score or calibrate run yet".into()));
    }
    let mut parts = Vec::new();
    if !cal.is_empty() {
        let (mut cov, mut nom, mut cells) = (Vec::new(), Vec::new(), Vec::new());
        for (i, run) in cal.iter().enumerate() {
            let s = &run.manifest.summary;
            let x = i as f64 + 1.0;
            if let Some(c) = s["coverage"].as_f64() {
                cov.push((x, c));
            }
            if let Some(n) = s["nominal"].as_f64() {
                nom.push((x, n));
            }
            cells.push(vec![
                run.manifest.run_id.clone(),
                text(&s["label"]),
                num(&s["nominal"]),
                num(&s["coverage"]),
                num(&s["matured"]),
                num(&s["mean_abs_error"]),
            ]);
        }
        let series =
            [Series { name: "empirical coverage".into(), points: cov }, Series { name: "nominal".into(), points: nom }];
        let svg = plot::lines("Coverage of the served intervals", ("calibrate run", "coverage"), &series, false)?;
        parts.push(Part::Plot {
            svg,
            table: table(&["calibrate run", "label", "nominal", "coverage", "matured", "mean |error|"], cells),
        });
    }
    parts.extend(crate::overtime::parts(r)?);
    if !scores.is_empty() {
        let (mut width, mut cells) = (Vec::new(), Vec::new());
        for (i, run) in scores.iter().enumerate() {
            let s = &run.manifest.summary;
            let nominal = s["intervals"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
            if let Some(w) = nominal[1].as_f64() {
                width.push((i as f64 + 1.0, 2.0 * w));
            }
            cells.push(vec![
                run.manifest.run_id.clone(),
                text(&s["label"]),
                num(&nominal[0]),
                num(&nominal[1]),
                text(&s["interval_method"]),
                text(&s["acceptance"]),
            ]);
        }
        let svg = plot::lines(
            "Mean width of the nominal interval",
            ("score run", "width"),
            &[Series { name: "width".into(), points: width }],
            false,
        )?;
        parts.push(Part::Plot {
            svg,
            table: table(&["score run", "label", "level", "mean half-width", "method", "acceptance"], cells),
        });
    }
    Ok(Built::Section(Section {
        id: "intervals",
        title: "Intervals",
        intro: format!(
            "Whether the intervals hold: empirical coverage of matured predictions against the nominal level per calibrate run; then, over T0, every step calibrate replayed for each value label — the rolling coverage of the last {} steps and the coverage EMA against the target, with the level 1 − α the adaptive α issued each interval at, and the width of the served interval; and the mean width per score run.",
            crate::overtime::WINDOW
        ),
        parts,
    }))
}

/// PSI of every feature and of the prediction in the latest score run, highest first, and
/// per score run.
fn drift(r: &Reader) -> Result<Built> {
    let runs = r.runs(Stage::Score)?;
    if runs.is_empty() {
        return Ok(Built::Empty("drift", "no score run yet".into()));
    }
    let mut per_run: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for run in &runs {
        let mut psi = Vec::new();
        for b in r.parquet(run, "drift")? {
            let col = |n: &str| b.column_by_name(n).cloned();
            let (Some(label), Some(kind), Some(name), Some(v)) = (col("label"), col("kind"), col("name"), col("psi"))
            else {
                continue;
            };
            let (label, kind, name) = (strings(&label), strings(&kind), strings(&name));
            let v = v.as_any().downcast_ref::<Float64Array>().cloned();
            for i in 0..name.len() {
                let value = v.as_ref().map_or(f64::NAN, |a| a.value(i));
                psi.push((format!("{} {} ({})", label[i], name[i], kind[i]), value));
            }
        }
        per_run.push((run.manifest.run_id.clone(), psi));
    }
    let (last_run, last) = per_run.last().cloned().unwrap_or_default();
    let mut sorted = last.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted.truncate(25);
    let svg = plot::bars(&format!("PSI in score run {last_run}, highest first"), "PSI", &sorted)?;
    let runs_head: Vec<String> = per_run.iter().map(|(id, _)| id.clone()).collect();
    let mut head = vec!["feature".to_string()];
    head.extend(runs_head);
    let rows = sorted
        .iter()
        .map(|(name, _)| {
            let mut row = vec![name.clone()];
            row.extend(per_run.iter().map(|(_, psi)| {
                psi.iter().find(|(n, _)| n == name).map_or_else(|| "—".into(), |(_, v)| format!("{v:.4}"))
            }));
            row
        })
        .collect();
    Ok(Built::Section(Section {
        id: "drift",
        title: "Drift",
        intro: "Population stability index of each feature and of the prediction against the model's training block: above 0.1 a feature moved, above 0.25 it moved a lot.".into(),
        parts: vec![Part::Plot { svg, table: Table { head, rows } }],
    }))
}

fn strings(a: &arrow::array::ArrayRef) -> Vec<String> {
    match a.as_any().downcast_ref::<StringArray>() {
        Some(s) => (0..s.len()).map(|i| s.value(i).to_string()).collect(),
        None => vec![String::new(); a.len()],
    }
}

/// Failing rows of each audit check over the audit runs (checks that ever failed).
fn audit(r: &Reader) -> Result<Built> {
    let runs = r.runs(Stage::Audit)?;
    if runs.is_empty() {
        return Ok(Built::Empty("audit", "no audit run yet".into()));
    }
    let mut checks: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut cells = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let s = &run.manifest.summary;
        for f in s["findings"].as_array().into_iter().flatten() {
            let name = format!("{}: {}", text(&f["table"]), text(&f["check"]));
            let failing = f["failing"].as_f64().unwrap_or(0.0);
            checks.entry(name.clone()).or_default().push((i as f64 + 1.0, failing));
            if failing > 0.0 {
                cells.push(vec![run.manifest.run_id.clone(), name, num(&f["failing"]), text(&f["severity"])]);
            }
        }
    }
    let series: Vec<Series> = checks
        .into_iter()
        .filter(|(_, p)| p.iter().any(|(_, f)| *f > 0.0))
        .map(|(name, points)| Series { name, points })
        .collect();
    let svg = plot::lines("Failing rows per check", ("audit run", "failing rows"), &series, false)?;
    Ok(Built::Section(Section {
        id: "audit",
        title: "Audit findings",
        intro: format!(
            "{} audit runs; each check that ever found failing rows, run by run (heal's repairs bring them down).",
            runs.len()
        ),
        parts: vec![Part::Plot { svg, table: table(&["audit run", "check", "failing rows", "severity"], cells) }],
    }))
}

/// What each heal rule changed, run by run.
fn heal(r: &Reader) -> Result<Built> {
    let runs = r.runs(Stage::Heal)?;
    if runs.is_empty() {
        return Ok(Built::Empty("heal", "no heal run yet".into()));
    }
    let mut per_rule: BTreeMap<String, f64> = BTreeMap::new();
    let mut cells = Vec::new();
    for run in &runs {
        for rule in run.manifest.summary["rules"].as_array().into_iter().flatten() {
            let id = text(&rule["id"]);
            *per_rule.entry(id.clone()).or_default() += rule["cells"].as_f64().unwrap_or(0.0);
            cells.push(vec![
                run.manifest.run_id.clone(),
                id,
                num(&rule["rows"]),
                num(&rule["cells"]),
                num(&rule["tombstones"]),
                rule["skipped"].as_str().map_or_else(|| text(&rule["finding"]), |s| format!("skipped: {s}")),
            ]);
        }
    }
    let bars: Vec<(String, f64)> = per_rule.into_iter().collect();
    let svg = plot::bars("Cells patched per rule, all heal runs", "cells", &bars)?;
    Ok(Built::Section(Section {
        id: "heal",
        title: "Heal patches",
        intro: "Each repair rule's changes: rows repaired, cells patched, rows removed (tombstones), and the finding it answered. Every cell is a ledger entry.".into(),
        parts: vec![Part::Plot { svg, table: table(&["heal run", "rule", "rows", "cells", "tombstones", "finding"], cells) }],
    }))
}

/// The latest run of each stage, its manifest hash and what it was made from: the chain
/// `verify` proves.
fn chain(r: &Reader) -> Result<Built> {
    let mut cells = Vec::new();
    for stage in Stage::ALL {
        let Some(run) = r.latest(stage)? else { continue };
        let up: Vec<String> = run.manifest.upstream.iter().map(|u| format!("{} {}", u.stage, u.run_id)).collect();
        cells.push(vec![
            stage.to_string(),
            run.manifest.run_id.clone(),
            run.manifest.gate.map_or_else(String::new, |g| g.as_str().to_string()),
            run.manifest_hash.clone(),
            up.join(", "),
        ]);
    }
    if cells.is_empty() {
        return Ok(Built::Empty("chain", "no run recorded yet".into()));
    }
    Ok(Built::Section(Section {
        id: "chain",
        title: "Certificate chain",
        intro: "The latest run of each stage, the blake3 of its manifest and the runs it was made from; `verify` proves every link.".into(),
        parts: vec![Part::Table(table(&["stage", "run", "gate", "manifest blake3", "made from"], cells))],
    }))
}
