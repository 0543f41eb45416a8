//! OpenLineage (issue 32): every event a loop emits validates against the pinned spec 2-0-2
//! (`schemas/openlineage/2-0-2`, committed), every facet against its own schema (the custom
//! `t0clip_run` facet against `schemas/t0clip`); each run is one START then one COMPLETE or
//! FAIL; a COMPLETE names the datasets of the manifest its run recorded, versioned by their
//! content hashes. (Byte stability under a pinned clock: `chain::same_inputs_give_…`.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{copy_of_pristine, expect, pristine};

/// The committed schemas by `$id`, offered to the validator instead of the network.
struct Pinned(HashMap<String, Value>);

impl jsonschema::Retrieve for Pinned {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.get(uri.as_str()).cloned().ok_or_else(|| format!("{uri} is not a pinned schema").into())
    }
}

fn pinned() -> HashMap<String, Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    crate::support::files_under(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (v["$id"].as_str().unwrap_or_else(|| panic!("{} has no $id", p.display())).to_string(), v)
        })
        .collect()
}

/// Validators by schema URL (with its fragment), built on first use.
struct Schemas {
    pinned: HashMap<String, Value>,
    built: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    fn new() -> Self {
        Schemas { pinned: pinned(), built: BTreeMap::new() }
    }

    /// The errors of `value` against the schema at `url` (an unpinned URL is one).
    fn errors(&mut self, url: &str, value: &Value) -> Vec<String> {
        if !self.built.contains_key(url) {
            let base = url.split('#').next().unwrap();
            if !self.pinned.contains_key(base) {
                return vec![format!("{url}: not a pinned schema")];
            }
            let v = jsonschema::options()
                .with_retriever(Pinned(self.pinned.clone()))
                .should_validate_formats(true)
                .build(&json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": url}))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            self.built.insert(url.to_string(), v);
        }
        self.built[url].iter_errors(value).map(|e| format!("{url} at {}: {e}", e.instance_path())).collect()
    }

    /// The event against RunEvent, and each facet in it against the schema it names.
    fn event_errors(&mut self, event: &Value) -> Vec<String> {
        let mut errors = self.errors(t0_lineage::RUN_EVENT_SCHEMA, event);
        let mut facets: Vec<&Value> = vec![&event["run"]["facets"], &event["job"]["facets"]];
        for side in ["inputs", "outputs"] {
            for d in event[side].as_array().unwrap() {
                facets.extend([&d["facets"], &d["inputFacets"], &d["outputFacets"]]);
            }
        }
        for facet in facets.into_iter().filter_map(Value::as_object).flat_map(|m| m.values()) {
            let url = facet["_schemaURL"].as_str().unwrap_or_default().to_string();
            errors.extend(self.errors(&url, facet));
        }
        errors
    }
}

fn events(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join(t0_lineage::EVENTS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_event_of_the_loop_follows_the_pinned_spec_and_names_what_its_run_recorded() {
    let mut schemas = Schemas::new();
    let events = events(pristine());
    assert!(events.len() >= 2 * 8, "{} events", events.len());
    for (i, e) in events.iter().enumerate() {
        let errors = schemas.event_errors(e);
        assert!(errors.is_empty(), "event {i}: {errors:#?}\n{e:#}");
    }
    // One START, then one COMPLETE or FAIL, per run.
    let mut runs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &events {
        runs.entry(e["run"]["runId"].as_str().unwrap()).or_default().push(e["eventType"].as_str().unwrap());
    }
    for (run, kinds) in &runs {
        assert!(
            kinds.len() == 2 && kinds[0] == "START" && ["COMPLETE", "FAIL"].contains(&kinds[1]),
            "{run}: {kinds:?}"
        );
    }
    // Each recorded run of the loop: its COMPLETE carries its manifest's hash and datasets.
    let root = t0_core::Root::new(pristine());
    let cat = t0_catalog::Catalog::open_read_only(&root).unwrap();
    let stages = ["acquire", "audit", "heal", "certify", "labels", "embed", "train-suite", "score", "calibrate"];
    for stage in stages {
        let m = t0_manifest::load(&root, &cat, stage.parse().unwrap(), None).unwrap();
        let done = events
            .iter()
            .find(|e| e["run"]["facets"]["t0clip_run"]["stageRunId"] == m.manifest.run_id.as_str())
            .unwrap_or_else(|| panic!("{stage}: no event names run {}", m.manifest.run_id));
        let facet = &done["run"]["facets"]["t0clip_run"];
        assert_eq!(facet["manifestHash"], m.manifest_hash.as_str(), "{stage}");
        assert_eq!(facet["stage"], stage);
        let versions = |side: &str| -> BTreeMap<String, String> {
            done[side]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["namespace"] == "t0clip")
                .map(|d| {
                    (
                        d["name"].as_str().unwrap().into(),
                        d["facets"]["version"]["datasetVersion"].as_str().unwrap().into(),
                    )
                })
                .collect()
        };
        let recorded: BTreeMap<String, String> =
            m.manifest.outputs.iter().map(|o| (o.name.clone(), o.content_hash.clone())).collect();
        assert_eq!(versions("outputs"), recorded, "{stage}: output datasets");
        let parquet = done["outputs"].as_array().unwrap().iter().filter(|d| d["facets"]["schema"]["fields"].is_array());
        if ["certify", "labels", "embed", "score"].contains(&stage) {
            assert!(parquet.count() > 0, "{stage}: no dataset with its schema");
        }
        // Catalog-table datasets carry their columns too.
        let table = match stage {
            "acquire" => Some(("canonical.observations", "observed_at")),
            "calibrate" => Some(("calib.acceptance", "run_id")),
            _ => None,
        };
        if let Some((name, column)) = table {
            let d = done["outputs"].as_array().unwrap().iter().find(|d| d["name"] == name).expect(name);
            let fields = d["facets"]["schema"]["fields"].as_array().unwrap_or_else(|| panic!("{name}: no schema"));
            assert!(fields.iter().any(|f| f["name"] == column), "{name}: {fields:?}");
        }
    }
    // audit's checks ride on the canonical tables it read, the failing ones failed; the
    // serving model is a dataset with its facet, its hash the dataset's version.
    let assertions: Vec<&Value> = events
        .iter()
        .filter(|e| e["run"]["facets"]["t0clip_run"]["stage"] == "audit")
        .flat_map(|e| e["inputs"].as_array().unwrap())
        .filter_map(|d| d["inputFacets"]["dataQualityAssertions"]["assertions"].as_array())
        .flatten()
        .collect();
    assert!(assertions.iter().any(|a| a["success"] == false), "no failed check in the loop's first audit");
    assert!(assertions.iter().any(|a| a["success"] == true && a["column"].is_string()), "{assertions:?}");
    let model = events
        .iter()
        .filter(|e| e["run"]["facets"]["t0clip_run"]["stage"] == "train-suite")
        .flat_map(|e| e["outputs"].as_array().unwrap())
        .find(|d| d["name"] == "run.model")
        .expect("train-suite's COMPLETE names its model");
    assert_eq!(model["facets"]["t0clip_model"]["modelHash"], model["facets"]["version"]["datasetVersion"]);
    assert!(model["facets"]["t0clip_model"]["selected"].as_array().is_some_and(|s| !s.is_empty()), "{model:#}");
    certified_surfaces_carry_column_lineage(&events);
}

/// Each certified surface names the canonical columns each feature reads (clips' `base`
/// store: `views_t0` is `arg_max(views, observed_at)` over the as-of observations, so it reads
/// views but not likes; `duration_s` reads the entity's attributes) and certify's checks.
fn certified_surfaces_carry_column_lineage(events: &[Value]) {
    let surfaces: Vec<&Value> = events
        .iter()
        .filter(|e| e["run"]["facets"]["t0clip_run"]["stage"] == "certify")
        .flat_map(|e| e["outputs"].as_array().unwrap())
        .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with("surface.")))
        .collect();
    assert!(surfaces.len() >= 5, "{} surfaces", surfaces.len());
    for d in &surfaces {
        assert!(d["facets"]["columnLineage"]["fields"].is_object(), "{}: no column lineage", d["name"]);
        let checks = d["facets"]["dataQualityAssertions"]["assertions"].as_array().unwrap();
        assert!(checks.iter().any(|a| a["assertion"] == "t0_certified" && a["success"] == true), "{checks:?}");
    }
    let base = surfaces.iter().find(|d| d["name"] == "surface.base").expect("the base store's surface");
    let reads = |feature: &str| -> Vec<(String, String, String)> {
        base["facets"]["columnLineage"]["fields"][feature]["inputFields"]
            .as_array()
            .unwrap_or_else(|| panic!("no lineage of {feature}"))
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["field"].as_str().unwrap().to_string(),
                    i["transformations"][0]["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let direct = |t: &str, c: &str| (format!("canonical.{t}"), c.to_string(), "DIRECT".to_string());
    let views = reads("views_t0");
    assert!(views.contains(&direct("observations", "views")), "{views:?}");
    assert!(!views.iter().any(|(_, c, _)| c == "likes"), "views_t0 does not read likes: {views:?}");
    assert!(
        views.iter().any(|(t, c, k)| t == "canonical.observations" && c == "available_at" && k == "INDIRECT"),
        "the availability filter: {views:?}"
    );
    assert!(reads("duration_s").contains(&direct("entities", "attrs")), "{:?}", reads("duration_s"));
    assert!(reads("likes_t0").contains(&direct("observations", "likes")));
}

#[test]
fn a_failed_run_says_why_and_a_parent_run_is_named() {
    let mut schemas = Schemas::new();
    // The validator can fail: a made-up event type is refused.
    let mut bad = events(pristine())[0].clone();
    bad["eventType"] = json!("DONE");
    assert!(!schemas.event_errors(&bad).is_empty());
    // So are a run id that is no UUID, and a facet without what its own schema requires.
    let complete = events(pristine()).into_iter().find(|e| e["eventType"] == "COMPLETE").unwrap();
    let mut bad = complete.clone();
    bad["run"]["runId"] = json!("run-1");
    assert!(!schemas.event_errors(&bad).is_empty(), "a non-UUID run id passed");
    let mut bad = complete;
    bad["outputs"][0]["facets"]["version"].as_object_mut().unwrap().remove("datasetVersion");
    assert!(!schemas.event_errors(&bad).is_empty(), "a version facet without its version passed");

    let dir = copy_of_pristine();
    let root = dir.path();
    let parent = "airflow/t0clip_daily.train_suite/01890a5d-ac96-7b45-8000-0123456789ab";
    // A flipped byte in the certified labels: train-suite refuses (3), and says so.
    let labels = root.join(crate::support::find(root, "lake/labels/", "labels.parquet"));
    crate::support::flip_byte(&labels);
    expect(root, "train-suite", &["--lineage-parent", parent], 3);
    let all = events(root);
    let (start, fail) = (&all[all.len() - 2], &all[all.len() - 1]);
    assert_eq!((start["eventType"].as_str(), fail["eventType"].as_str()), (Some("START"), Some("FAIL")));
    assert_eq!(start["run"]["runId"], fail["run"]["runId"]);
    for e in [start, fail] {
        let errors = schemas.event_errors(e);
        assert!(errors.is_empty(), "{errors:#?}\n{e:#}");
        assert_eq!(e["run"]["facets"]["parent"]["run"]["runId"], "01890a5d-ac96-7b45-8000-0123456789ab");
        assert_eq!(e["run"]["facets"]["parent"]["job"]["name"], "t0clip_daily.train_suite");
    }
    let message = fail["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
    assert!(message.contains("lake/labels/"), "{message}");
    assert_eq!(fail["run"]["facets"]["t0clip_run"]["exitCode"], 3);
    // A parent that is not NAMESPACE/JOB/UUID is a usage error, before anything runs.
    let before = events(root).len();
    expect(root, "score", &["--lineage-parent", "airflow/not-a-uuid"], 2);
    assert_eq!(events(root).len(), before);
    // A read-only command emits nothing.
    expect(root, "calibrate", &["status"], 0);
    assert_eq!(events(root).len(), before);
}

/// One HTTP request read off `s`: its request line and body.
fn request(s: &mut std::net::TcpStream) -> (String, String) {
    use std::io::{BufRead, Read};
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut length = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (line.trim().to_string(), String::from_utf8(body).unwrap())
}

#[test]
fn events_go_to_an_http_endpoint_as_they_happen_and_a_dead_one_is_a_warning() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/marquez", listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        (0..2)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                let got = request(&mut s);
                s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").unwrap();
                got
            })
            .collect::<Vec<_>>()
    });
    let dir = copy_of_pristine();
    let root = dir.path();
    expect(root, "train-suite", &["--lineage-url", &url], 99);
    let got = server.join().unwrap();
    let log = std::fs::read_to_string(root.join(t0_lineage::EVENTS_FILE)).unwrap();
    let last: Vec<&str> = log.lines().rev().take(2).collect();
    for ((line, body), logged) in got.iter().zip(last.iter().rev()) {
        assert_eq!(line, "POST /marquez/api/v1/lineage HTTP/1.1");
        assert_eq!(body, logged, "the endpoint got the event the log holds");
    }
    // Nobody listening: the stage's answer stands, each unsent event is a warning, the log
    // has them.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let before = events(root).len();
    let o = expect(root, "train-suite", &["--lineage-url", &url], 99);
    assert!(
        o.stderr.contains("warning: START event not sent") && o.stderr.contains("COMPLETE event not sent"),
        "{}",
        o.stderr
    );
    assert_eq!(events(root).len(), before + 2);
    expect(root, "train-suite", &["--lineage-url", "https://lineage.example"], 2);
}
