//! Labels tell the truth: on generated panels with known truth, every label of every
//! (entity, T0) equals a brute-force computation from the raw rows, quiet entities included;
//! maturity follows the data's completeness watermark, not the entity being seen again.

use std::collections::BTreeMap;

use t0_clips_gen::Rng;

use crate::support::{Out, expect};

const DAY: i64 = 86_400;
/// 2023-01-01T00:00:00Z (the data ends before the tests' pinned clock).
const BASE: i64 = 1_672_531_200;

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

struct Obs {
    entity: String,
    at: i64,
    ratings: i64,
    score: Option<f64>,
}

struct Ev {
    entity: String,
    kind: &'static str,
    at: i64,
}

/// A project directory (and its data) from its files.
fn project(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

const STORE: &str = "CREATE OR REPLACE TEMP VIEW last_values AS SELECT entity_id, t0, count(*) AS n_obs, arg_max(ratings, observed_at) AS ratings_last FROM obs_asof GROUP BY entity_id, t0;\nCREATE OR REPLACE TEMP VIEW surface_last AS SELECT g.entity_id, g.t0, coalesce(l.n_obs, 0) AS n_obs, l.ratings_last FROM t0_grid g LEFT JOIN last_values l ON l.entity_id = g.entity_id AND l.t0 = g.t0;\n";

/// A sparse count panel: 40 items over two years, a row only in months something happened
/// (quiet items almost never), ends (delisted, death), competing ends (transfer) and promos.
fn sparse_panel(rng: &mut Rng) -> (Vec<Obs>, Vec<Ev>) {
    let (mut obs, mut evs) = (Vec::new(), Vec::new());
    for e in 0..40 {
        let id = format!("i{e:02}");
        let p = if e % 4 == 0 { 5 } else { 55 };
        for m in 0..24 {
            if rng.below(100) < p {
                let at = BASE + (m * 30 + rng.below(28) as i64) * DAY + rng.below(DAY as u64) as i64;
                let score = (rng.below(10) > 0).then(|| rng.below(1000) as f64 / 10.0);
                obs.push(Obs { entity: id.clone(), at, ratings: 1 + rng.below(9) as i64, score });
            }
        }
        let mut event = |kind: &'static str, pct: u64, evs: &mut Vec<Ev>| {
            if rng.below(100) < pct {
                evs.push(Ev { entity: id.clone(), kind, at: BASE + rng.below(700) as i64 * DAY + 3600 });
            }
        };
        event("delisted", 15, &mut evs);
        event("death", 35, &mut evs);
        event("transfer", 15, &mut evs);
        event("promo", 40, &mut evs);
        event("promo", 40, &mut evs);
    }
    // The data's last moment, so the watermark is known.
    obs.push(Obs { entity: "i01".into(), at: BASE + 725 * DAY, ratings: 1, score: Some(1.0) });
    (obs, evs)
}

fn write_panel(data: &std::path::Path, obs: &[Obs], evs: &[Ev]) {
    std::fs::create_dir_all(data).unwrap();
    let mut things = String::from("entity_id,kind,created_at,followed_until\n");
    for e in 0..40 {
        // Follow-up of a third of the items ends early (a study's own end of contact).
        let until = if e % 3 == 0 { iso(followed_until(e)) } else { String::new() };
        things.push_str(&format!("i{e:02},item,{},{until}\n", iso(BASE)));
    }
    let mut o = String::from("entity_id,observed_at,ratings,score\n");
    for r in obs {
        let s = r.score.map(|s| s.to_string()).unwrap_or_default();
        o.push_str(&format!("{},{},{},{s}\n", r.entity, iso(r.at), r.ratings));
    }
    let mut e = String::from("entity_id,event_type,observed_at\n");
    for x in evs {
        e.push_str(&format!("{},{},{}\n", x.entity, x.kind, iso(x.at)));
    }
    std::fs::write(data.join("things.csv"), things).unwrap();
    std::fs::write(data.join("obs.csv"), o).unwrap();
    std::fs::write(data.join("events.csv"), e).unwrap();
}

/// When item `e`'s declared follow-up ends (items with `e % 3 == 0` only).
fn followed_until(e: i64) -> i64 {
    BASE + (200 + 13 * e) * DAY
}

/// acquire .. `certify labels --json` of project `proj` on `data`: (its output, its report).
fn until_labels(root: &std::path::Path, proj: &std::path::Path, data: &std::path::Path) -> (Out, serde_json::Value) {
    let p = ["--project", proj.to_str().unwrap()];
    expect(root, "acquire", &[&p[..], &["--input", data.to_str().unwrap()]].concat(), 0);
    expect(root, "audit", &p, 0);
    expect(root, "heal", &p, 99);
    expect(root, "certify", &p, 0);
    let out = expect(root, "certify", &[&p[..], &["labels", "--json"]].concat(), 0);
    let report = serde_json::from_str(out.stdout.trim()).unwrap();
    (out, report)
}

/// (entity, t0 seconds) → column → value, from the labels file of `root`'s latest run.
fn read_labels(
    root: &std::path::Path,
    report: &serde_json::Value,
    cols: &[&str],
) -> BTreeMap<(String, i64), Vec<Option<f64>>> {
    let cat = t0_catalog::Catalog::open(&t0_core::Root::new(root)).unwrap();
    let path = root.join(report["path"].as_str().unwrap());
    let select = cols.iter().map(|c| format!("CAST(\"{c}\" AS DOUBLE)")).collect::<Vec<_>>().join(", ");
    let mut stmt = cat
        .conn()
        .prepare(&format!("SELECT entity_id, epoch(t0)::BIGINT, {select} FROM read_parquet('{}')", path.display()))
        .unwrap();
    let n = cols.len();
    stmt.query_map([], |r| {
        let vals = (0..n).map(|k| r.get::<_, Option<f64>>(k + 2)).collect::<Result<Vec<_>, _>>()?;
        Ok(((r.get::<_, String>(0)?, r.get::<_, i64>(1)?), vals))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(1.0),
        (a, b) => a == b,
    }
}

/// Every label from the raw rows by loops, with the rules the project file states.
fn brute_force(e: &str, t0: i64, obs: &[Obs], evs: &[Ev]) -> Vec<Option<f64>> {
    let w_obs = obs.iter().map(|o| o.at).max().unwrap();
    let w_ev = evs.iter().map(|o| o.at).max().unwrap();
    let mine: Vec<&Obs> = obs.iter().filter(|o| o.entity == e).collect();
    let first = |kinds: &[&str]| {
        evs.iter().filter(|x| x.entity == e && kinds.contains(&x.kind) && x.at > t0).map(|x| x.at).min()
    };
    let ended = first(&["delisted", "death"]);
    let ended_by = |h: i64| ended.is_some_and(|x| x <= h);
    // flow: ratings over (t0, t0 + 90 d]; absent rows are zero.
    let h = t0 + 90 * DAY;
    let flow = (h <= w_obs && !ended_by(h))
        .then(|| mine.iter().filter(|o| o.at > t0 && o.at <= h).map(|o| o.ratings as f64).sum::<f64>());
    let busy = flow.map(|f| if f >= 20.0 { 1.0 } else { 0.0 });
    // value: the last score at or before t0 + 60 d.
    let h = t0 + 60 * DAY;
    let value = if h > w_obs || ended_by(h) {
        None
    } else {
        mine.iter().filter(|o| o.at <= h && o.score.is_some()).max_by_key(|o| o.at).and_then(|o| o.score)
    };
    // next: the first score after t0 inside the watermark, unless the entity ended first.
    let next = mine.iter().filter(|o| o.at > t0 && o.at <= w_obs && o.score.is_some()).min_by_key(|o| o.at);
    let next = match (next, ended) {
        (Some(n), Some(x)) if x < n.at => None,
        (None, _) => None,
        (Some(n), _) => n.score,
    };
    // event_within: a promo in (t0, t0 + 60 d]; false after an end or inside the watermark.
    let promo = evs.iter().any(|x| x.entity == e && x.kind == "promo" && x.at > t0 && x.at <= h);
    let promo = if promo {
        Some(1.0)
    } else if ended_by(h) || h <= w_ev {
        Some(0.0)
    } else {
        None
    };
    // time to death, censored at a transfer or at the watermark (follow_up: watermark).
    let (death, transfer) = (first(&["death"]), first(&["transfer"]));
    let event = death.is_some_and(|d| transfer.is_none_or(|k| d <= k) && d <= w_obs);
    let until = if event { death.unwrap() } else { transfer.map_or(w_obs, |k| k.min(w_obs)) };
    let hours = ((until - t0).max(0)) as f64 / 3600.0;
    // The same, censored where the entity's declared follow-up ends (NULL without one).
    let n: i64 = e[1..].parse().unwrap();
    let (f_hours, f_event) = if n % 3 == 0 {
        let f = followed_until(n);
        let event = death.is_some_and(|d| transfer.is_none_or(|k| d <= k) && d <= f);
        let until = if event { death.unwrap() } else { transfer.map_or(f, |k| k.min(f)) };
        (Some(((until - t0).max(0)) as f64 / 3600.0), Some(if event { 1.0 } else { 0.0 }))
    } else {
        (None, None)
    };
    vec![flow, busy, value, next, promo, Some(hours), Some(if event { 1.0 } else { 0.0 }), f_hours, f_event]
}

const PROJECT: &str = "name: sparse
measures:
  - {name: ratings, type: count}
  - {name: score, type: float}
labels:
  - {name: y_ratings, kind: flow, measure: ratings, horizon: 90 days, agg: sum}
  - {name: y_busy, kind: threshold, label: y_ratings, at_least: 20}
  - {name: y_score, kind: value, measure: score, horizon: 60 days}
  - {name: y_next, kind: value, measure: score, horizon: next}
  - {name: y_promo, kind: event_within, events: [promo], horizon: 60 days}
  - {name: tte_death, kind: time_to_event, end_events: [death], censor_events: [transfer], follow_up: watermark, event_column: died}
  - {name: tte_followed, kind: time_to_event, end_events: [death], censor_events: [transfer], follow_up: {attribute: followed_until}}
features:
  surfaces: [last]
";

const COLUMNS: [&str; 9] =
    ["y_ratings", "y_busy", "y_score", "y_next", "y_promo", "tte_death", "died", "tte_followed", "tte_followed_event"];

#[test]
fn labels_of_a_sparse_count_panel_equal_a_brute_force_computation_quiet_entities_included() {
    let mut rng = Rng::new(20_261_204);
    let (obs, evs) = sparse_panel(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let (proj, data, root) = (dir.path().join("project"), dir.path().join("data"), dir.path().join("root"));
    project(
        &proj,
        &[
            ("project.yaml", PROJECT),
            (
                "sources.yaml",
                "sources:\n  - {name: things, table: entities, glob: things.csv, attributes: [followed_until], availability: observed_time}\n  - {name: obs, table: observations, glob: obs.csv, availability: observed_time}\n  - {name: events, table: events, glob: events.csv, availability: observed_time}\n",
            ),
            (
                "contracts/observations.yaml",
                "table: observations\nchecks:\n  - type: not_null\n    columns: [entity_id, observed_at]\n",
            ),
            (
                "certify.yaml",
                "t0: {mode: every_k_days, offset_hours: 0, every_days: 30, max_per_entity: 24, end_events: [delisted, death]}\nstores:\n  - {entrypoint: last, files: [asof.sql, last.sql], strict: true}\n",
            ),
            ("feature-stores/last.sql", STORE),
        ],
    );
    write_panel(&data, &obs, &evs);
    let (out, report) = until_labels(&root, &proj, &data);
    let p = ["--project", proj.to_str().unwrap()];
    let got = read_labels(&root, &report, &COLUMNS);
    assert!(got.len() > 300, "{} grid rows", got.len());
    let mut quiet_zero = 0;
    for ((e, t0), vals) in &got {
        let want = brute_force(e, *t0, &obs, &evs);
        for (k, c) in COLUMNS.iter().enumerate() {
            assert!(close(vals[k], want[k]), "{e} at {}: {c} is {:?}, brute force {:?}", iso(*t0), vals[k], want[k]);
        }
        quiet_zero += usize::from(vals[0] == Some(0.0));
    }
    assert!(quiet_zero > 20, "quiet windows are zero, not dropped: {quiet_zero}");
    // Every NULL has its reason: known + NULL reasons = rows, per label.
    for l in report["per_label"].as_array().unwrap() {
        let nulls: u64 = l["nulls"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(l["known"].as_u64().unwrap() + nulls, got.len() as u64, "{l}");
    }
    let reasons = &report["per_label"][0]["nulls"];
    assert!(reasons["past_watermark"].as_u64() > Some(0) && reasons["ended"].as_u64() > Some(0), "{reasons}");
    assert!(out.stdout.contains(&iso(BASE + 725 * DAY)[..10]), "the watermark is reported: {}", out.stdout);

    // Every death is in its survival label's rows, whatever the other labels' horizons.
    let train = expect(&root, "train-suite", &[&p[..], &["--json"]].concat(), 0);
    let tv: serde_json::Value = serde_json::from_str(train.stdout.trim()).unwrap();
    let tte = tv["labels"].as_array().unwrap().iter().find(|l| l["label"] == "tte_death").unwrap().clone();
    let in_blocks: u64 = tte["blocks"].as_object().unwrap().values().map(|b| b["rows"].as_u64().unwrap()).sum();
    let deaths: u64 = tte["blocks"].as_object().unwrap().values().map(|b| b["events"].as_u64().unwrap()).sum();
    let known_deaths = got.values().filter(|v| v[6] == Some(1.0)).count() as u64;
    assert_eq!((in_blocks, deaths), (got.len() as u64, known_deaths), "{tte}");
    assert!(deaths > 0 && tv["target"] == "y_ratings", "{tv}");
    // A block with fewer events than train.min_events (20) is said.
    let few = tte["blocks"]["test"]["events"].as_u64().unwrap();
    let said = format!("label tte_death: the test block holds {few} events");
    assert!(
        few >= 20 || tv["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().starts_with(&said)),
        "{tv}"
    );
    if std::env::var_os("T0CLIP_KEEP_TEST_ROOT").is_some() {
        // For a closing note's figures: the project, data and root stay for the stages' `show`.
        eprintln!("kept {}", dir.keep().display());
    }
}

#[test]
fn a_yearly_panel_published_a_month_late_keeps_its_last_labelled_year_and_says_why_otherwise() {
    // 30 regions, one figure per year (stamped at year end, published 31 days later).
    let mut rng = Rng::new(7);
    let (mut things, mut obs) =
        (String::from("entity_id,kind,created_at\n"), String::from("entity_id,observed_at,gdp\n"));
    for e in 0..30 {
        things.push_str(&format!("r{e:02},region,2000-01-01T00:00:00Z\n"));
        for y in 2000..2010 {
            obs.push_str(&format!("r{e:02},{y}-12-31T00:00:00Z,{}\n", 100 + rng.below(900)));
        }
    }
    let run = |complete_through: &str, horizon: &str| -> (serde_json::Value, usize) {
        let dir = tempfile::tempdir().unwrap();
        let (proj, root) = (dir.path().join("project"), dir.path().join("root"));
        let data = proj.join("data");
        project(
            &proj,
            &[
                (
                    "project.yaml",
                    &format!(
                        "name: yearly\nmeasures:\n  - {{name: gdp, type: float}}\nlabels:\n  - {{name: y_gdp, kind: value, measure: gdp, horizon: {horizon}}}\nfeatures:\n  surfaces: [last]\n"
                    ),
                ),
                (
                    "sources.yaml",
                    &format!(
                        "sources:\n  - {{name: things, table: entities, glob: things.csv, availability: observed_time}}\n  - {{name: obs, table: observations, glob: obs.csv, availability: observed_time + 31d{complete_through}}}\n"
                    ),
                ),
                (
                    "contracts/observations.yaml",
                    "table: observations\nchecks:\n  - type: not_null\n    columns: [entity_id, observed_at]\n",
                ),
                (
                    "certify.yaml",
                    "t0: {mode: at_observations, offset_hours: 0, max_per_entity: 20}\nstores:\n  - {entrypoint: last, files: [asof.sql, last.sql], strict: true}\n",
                ),
                ("feature-stores/last.sql", &STORE.replace("ratings", "gdp")),
                ("data/things.csv", &things),
                ("data/obs.csv", &obs),
            ],
        );
        let (_, report) = until_labels(&root, &proj, &data);
        // T0s labelled with the 2009 figure: those published in early 2009 (the 2008 figure).
        let got = read_labels(&root, &report, &["y_gdp"]);
        let last_year = got.iter().filter(|((_, t0), v)| iso(*t0).starts_with("2009-01") && v[0].is_some()).count();
        (report, last_year)
    };
    // By default the table covers the world through its last figure (2009-12-31): the label at
    // 2010-01-31 is not known, and the report says why instead of dropping it silently.
    let (report, last_year) = run("", "1 years");
    assert_eq!(last_year, 0);
    assert_eq!(report["per_label"][0]["nulls"]["past_watermark"], 60, "{report}");
    // Published data covers the world through its publication: the last year is kept.
    let (report, last_year) = run(", complete_through: latest_available", "1 years");
    assert_eq!(last_year, 30, "{report}");
    assert_eq!(report["coverage"]["observations"], "2010-01-31 00:00:00", "{report}");
    // `horizon: next` needs no declaration: the next figure exists.
    let (_, last_year) = run("", "next");
    assert_eq!(last_year, 30);
}

#[test]
fn a_project_of_survival_labels_only_trains_every_label_and_score_serves_its_times() {
    let (obs, evs) = sparse_panel(&mut Rng::new(20_261_204));
    let dir = tempfile::tempdir().unwrap();
    let (proj, root) = (dir.path().join("project"), dir.path().join("root"));
    let data = proj.join("data");
    let yaml = "name: survival\nmeasures:\n  - {name: ratings, type: count}\n  - {name: score, type: float}\nlabels:\n  - {name: tte_death, kind: time_to_event, end_events: [death], censor_events: [transfer], follow_up: watermark}\nfeatures:\n  surfaces: [last]\n  target: tte_death\ntrain:\n  min_events: 5\n";
    project(
        &proj,
        &[
            ("project.yaml", yaml),
            (
                "sources.yaml",
                "sources:\n  - {name: things, table: entities, glob: things.csv, attributes: [followed_until], availability: observed_time}\n  - {name: obs, table: observations, glob: obs.csv, availability: observed_time}\n  - {name: events, table: events, glob: events.csv, availability: observed_time}\n",
            ),
            (
                "contracts/observations.yaml",
                "table: observations\nchecks:\n  - type: not_null\n    columns: [entity_id, observed_at]\n",
            ),
            (
                "certify.yaml",
                "t0: {mode: every_k_days, offset_hours: 0, every_days: 30, max_per_entity: 24, end_events: [death]}\nstores:\n  - {entrypoint: last, files: [asof.sql, last.sql], strict: true}\n",
            ),
            ("feature-stores/last.sql", STORE),
        ],
    );
    write_panel(&data, &obs, &evs);
    until_labels(&root, &proj, &data);
    let p = ["--project", proj.to_str().unwrap()];
    let train = expect(&root, "train-suite", &[&p[..], &["--json"]].concat(), 0);
    let tv: serde_json::Value = serde_json::from_str(train.stdout.trim()).unwrap();
    assert!(tv["target"].is_null() && tv["metrics"].is_null(), "{tv}");
    let selected: Vec<&serde_json::Value> =
        tv["leaderboard"].as_array().unwrap().iter().filter(|e| e["selected"] == true).collect();
    assert_eq!((selected.len(), selected[0]["label"].as_str()), (1, Some("tte_death")), "{tv}");
    // No value target, yet the survival label is served: median, quantiles and its bound.
    let score = expect(&root, "score", &[&p[..], &["--json"]].concat(), 0);
    let sv: serde_json::Value = serde_json::from_str(score.stdout.trim()).unwrap();
    let labels = sv["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 1, "{sv}");
    assert_eq!((labels[0]["label"].as_str(), labels[0]["kind"].as_str()), (Some("tte_death"), Some("time_to_event")));
    assert!(labels[0]["rows"].as_u64().unwrap() > 0 && sv["label"] == "tte_death", "{sv}");
    let c = t0_catalog::duckdb::Connection::open_in_memory().unwrap();
    let ok: bool = c
        .query_row(
            &format!(
                "SELECT bool_and(q10 <= prediction AND prediction <= q90 AND lower_bound <= lower_bound_80)
                 FROM read_parquet('{}')",
                root.join(sv["path"].as_str().unwrap()).display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ok);
}
