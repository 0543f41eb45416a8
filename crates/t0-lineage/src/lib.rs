//! OpenLineage run events (spec 2-0-2) for every stage run: a START before the stage works,
//! then a COMPLETE naming the datasets its manifest read and wrote — each versioned by its
//! content hash, with its schema where it is Parquet — or a FAIL with the error. Appended to
//! `lineage/events.jsonl` under the root the stage wrote to (a bucket's events in its own
//! root). The events carry nothing the manifest does not: the manifest stays the proof, the
//! events are how lineage platforms (Marquez, DataHub, Airflow) learn of it.
//!
//! With an endpoint (`http`), each event is also POSTed there as it happens; one the endpoint
//! does not take is reported, never a reason to fail the stage.
//!
//! Byte-stable under a pinned clock: event times are the clock's, and a run's UUID derives
//! from the job, the start time and how many events the root's log already holds (two runs
//! of one stage under one pinned clock are two runs).

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

pub mod http;
pub use http::Endpoint;

use serde_json::{Value, json};
use t0_core::{Clock, Error, Result, Root};
use t0_manifest::{Location, Manifest, Output};

/// The spec every event follows, pinned (the schema is committed under `schemas/openlineage`).
pub const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Who produced the events.
pub const PRODUCER: &str = concat!("https://crates.io/crates/t0-clip/", env!("CARGO_PKG_VERSION"));
/// The events of a root, one JSON object a line, in the order they happened.
pub const EVENTS_FILE: &str = "lineage/events.jsonl";
/// The schema of the custom run facet `t0clip_run` (committed beside the spec's).
pub const RUN_FACET_SCHEMA: &str =
    "https://t0-clip.invalid/spec/facets/1-0-0/T0ClipRunFacet.json#/$defs/T0ClipRunFacet";

const PARENT_SCHEMA: &str = "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const VERSION_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
const SCHEMA_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const ERROR_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const DQ_SCHEMA: &str = "https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet";
/// The schema of the custom dataset facet `t0clip_model` (committed beside the spec's).
pub const MODEL_FACET_SCHEMA: &str =
    "https://t0-clip.invalid/spec/facets/1-0-0/T0ClipModelDatasetFacet.json#/$defs/T0ClipModelDatasetFacet";
const COLUMN_LINEAGE_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
const JOB_TYPE_SCHEMA: &str = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";

/// The run that started this one (an Airflow task): `namespace/job/run-uuid`, as Airflow's
/// OpenLineage provider renders `lineage_parent_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub namespace: String,
    pub job: String,
    pub run_id: String,
}

impl Parent {
    /// Parse `namespace/job/run-uuid` (the job may itself hold slashes); exit 2 otherwise.
    pub fn parse(text: &str) -> Result<Parent> {
        let bad = || {
            Error::Usage(format!(
                "--lineage-parent / T0CLIP_LINEAGE_PARENT: {text:?} is not NAMESPACE/JOB/RUN_UUID (a UUID like 01890a5d-ac96-7b45-8000-0123456789ab)"
            ))
        };
        let (rest, run_id) = text.rsplit_once('/').ok_or_else(bad)?;
        let (namespace, job) = rest.split_once('/').ok_or_else(bad)?;
        if namespace.is_empty() || job.is_empty() || !is_uuid(run_id) {
            return Err(bad());
        }
        Ok(Parent { namespace: namespace.into(), job: job.into(), run_id: run_id.to_ascii_lowercase() })
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A UUID (version 8: vendor-defined) from the first 16 bytes of blake3(`seed`).
fn uuid_from(seed: &str) -> String {
    let h = blake3::hash(seed.as_bytes());
    let mut b: [u8; 16] = h.as_bytes()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The columns (name, SQL type) of catalog tables a run's manifest names, by table.
pub type TableColumns = std::collections::BTreeMap<String, Vec<(String, String)>>;

/// One stage run's events, from its START.
pub struct RunEvents {
    root: Root,
    namespace: String,
    job: String,
    run_id: String,
    parent: Option<Parent>,
    endpoint: Option<Endpoint>,
    /// Events the endpoint did not take (each is in the root's log all the same).
    unsent: RefCell<Vec<String>>,
    /// The schemas of the catalog-table datasets, when the caller read them.
    tables: TableColumns,
}

impl RunEvents {
    /// Emit the START of `stage` on `root` (job `<namespace>/<stage>`; a bucket's job names it).
    pub fn start(
        root: &Root,
        namespace: &str,
        stage: &str,
        clock: &Clock,
        (parent, endpoint): (Option<Parent>, Option<Endpoint>),
    ) -> Result<Self> {
        let job = match root.bucket() {
            b if b.is_whole() => stage.to_string(),
            b => format!("{stage}.bucket-{}-of-{}", b.index(), b.count()),
        };
        let seen = count_lines(&root.join(EVENTS_FILE))?;
        let run_id = uuid_from(&format!("{namespace}|{job}|{}|{seen}", clock.stamp()));
        let events = RunEvents {
            root: root.clone(),
            namespace: namespace.into(),
            job,
            run_id,
            parent,
            endpoint,
            unsent: RefCell::new(Vec::new()),
            tables: TableColumns::new(),
        };
        events.emit(&events.event("START", clock, events.run_facets(None), Vec::new(), Vec::new()))?;
        Ok(events)
    }

    /// The columns of the catalog tables the run's manifest names: their datasets carry them
    /// as the schema facet (a Parquet dataset's come from its footer).
    pub fn with_tables(mut self, tables: TableColumns) -> Self {
        self.tables = tables;
        self
    }

    /// The run's UUID.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// COMPLETE: the datasets the run's manifest read and wrote (none when it had nothing to
    /// do), its exit code and, when it recorded a run, the run id and manifest.
    /// Returns what the endpoint did not take over the run, one line each.
    pub fn complete(self, clock: &Clock, exit_code: u8, recorded: Option<(&Manifest, &str)>) -> Result<Vec<String>> {
        let (mut inputs, mut outputs): (Vec<Value>, Vec<Value>) = match recorded {
            Some((m, _)) => (
                m.inputs.iter().map(|o| self.dataset(o)).collect(),
                m.outputs.iter().map(|o| self.dataset(o)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        if let Some((m, _)) = recorded {
            stage_facets(m, &self.namespace, &mut inputs, &mut outputs);
        }
        let mut facets = self.run_facets(None);
        facets["t0clip_run"] = run_facet(exit_code, recorded);
        self.emit(&self.event("COMPLETE", clock, facets, inputs, outputs))?;
        Ok(self.unsent.into_inner())
    }

    /// FAIL, with the error and the exit code it maps to.
    pub fn fail(self, clock: &Clock, exit_code: u8, message: &str) -> Result<Vec<String>> {
        let mut facets = self.run_facets(Some(message));
        facets["t0clip_run"] = run_facet(exit_code, None);
        self.emit(&self.event("FAIL", clock, facets, Vec::new(), Vec::new()))?;
        Ok(self.unsent.into_inner())
    }

    fn run_facets(&self, error: Option<&str>) -> Value {
        let mut facets = json!({});
        if let Some(p) = &self.parent {
            facets["parent"] = json!({
                "_producer": PRODUCER,
                "_schemaURL": PARENT_SCHEMA,
                "run": {"runId": p.run_id},
                "job": {"namespace": p.namespace, "name": p.job},
            });
        }
        if let Some(message) = error {
            facets["errorMessage"] = json!({
                "_producer": PRODUCER,
                "_schemaURL": ERROR_SCHEMA,
                "message": message,
                "programmingLanguage": "Rust",
            });
        }
        facets
    }

    fn event(&self, kind: &str, clock: &Clock, run_facets: Value, inputs: Vec<Value>, outputs: Vec<Value>) -> Value {
        json!({
            "eventTime": clock.stamp(),
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "eventType": kind,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": self.job,
                "facets": {"jobType": {
                    "_producer": PRODUCER,
                    "_schemaURL": JOB_TYPE_SCHEMA,
                    "processingType": "BATCH",
                    "integration": "T0CLIP",
                    "jobType": "STAGE",
                }},
            },
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// A manifest output as a dataset: named by its output name in the root's namespace (a
    /// source file by its path), versioned by its content hash, with its Parquet schema.
    fn dataset(&self, out: &Output) -> Value {
        let (namespace, name) = match &out.location {
            Location::File { path } if Path::new(path).is_absolute() => ("file".to_string(), path.clone()),
            _ => (self.namespace.clone(), out.name.clone()),
        };
        let mut facets = json!({"version": {
            "_producer": PRODUCER,
            "_schemaURL": VERSION_SCHEMA,
            "datasetVersion": out.content_hash,
        }});
        if let Some(fields) = self.schema_fields(&out.location) {
            facets["schema"] = json!({"_producer": PRODUCER, "_schemaURL": SCHEMA_SCHEMA, "fields": fields});
        }
        json!({"namespace": namespace, "name": name, "facets": facets})
    }

    /// The columns of a Parquet output (its first file's footer) or of a catalog table (as
    /// the caller read them), if it is one and they are known.
    fn schema_fields(&self, location: &Location) -> Option<Vec<Value>> {
        let path = match location {
            Location::Parquet { path, .. } => path,
            Location::Table { table, .. } => {
                let cols = self.tables.get(table)?;
                return Some(
                    cols.iter()
                        .enumerate()
                        .map(|(i, (name, ty))| json!({"name": name, "type": ty, "ordinal_position": i + 1}))
                        .collect(),
                );
            }
            Location::File { .. } => return None,
        };
        let schema = t0_table::ParquetSet::open(&self.root.join(path)).and_then(|s| s.schema()).ok()?;
        Some(
            schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| json!({"name": f.name(), "type": f.data_type().to_string(), "ordinal_position": i + 1}))
                .collect(),
        )
    }

    fn emit(&self, event: &Value) -> Result<()> {
        let path = self.root.join(EVENTS_FILE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut line = serde_json::to_vec(event).expect("plain JSON");
        line.push(b'\n');
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        f.write_all(&line).map_err(|e| Error::io(&path, e))?;
        if let Some(endpoint) = &self.endpoint
            && let Err(e) = endpoint.post(&line[..line.len() - 1])
        {
            self.unsent
                .borrow_mut()
                .push(format!("{} event not sent: {e}", event["eventType"].as_str().unwrap_or("?")));
        }
        Ok(())
    }
}

/// What a stage's report adds to its datasets: audit's checks as data-quality assertions on
/// the canonical tables it read; certify's column lineage and checks on each surface;
/// train-suite's serving model as the custom `t0clip_model` facet on its model file
/// (OpenLineage has no model entity yet).
fn stage_facets(m: &Manifest, namespace: &str, inputs: &mut [Value], outputs: &mut [Value]) {
    match m.stage {
        t0_core::Stage::Audit => {
            for d in inputs.iter_mut() {
                let Some(table) = d["name"].as_str().and_then(|n| n.strip_prefix("canonical.")).map(str::to_string)
                else {
                    continue;
                };
                let assertions = audit_assertions(&m.summary, &table);
                if !assertions.is_empty() {
                    d["inputFacets"] = json!({"dataQualityAssertions": {
                        "_producer": PRODUCER,
                        "_schemaURL": DQ_SCHEMA,
                        "assertions": assertions,
                    }});
                }
            }
        }
        t0_core::Stage::Certify => {
            for d in outputs.iter_mut() {
                let Some(entry) = d["name"].as_str().and_then(|n| n.strip_prefix("surface.")).map(str::to_string)
                else {
                    continue;
                };
                let stores = m.summary["stores"].as_array().map(Vec::as_slice).unwrap_or_default();
                let Some(store) = stores.iter().find(|s| s["entrypoint"] == entry.as_str()) else { continue };
                if let Some(facet) = column_lineage(namespace, &store["column_lineage"]) {
                    d["facets"]["columnLineage"] = facet;
                }
                d["facets"]["dataQualityAssertions"] = json!({
                    "_producer": PRODUCER,
                    "_schemaURL": DQ_SCHEMA,
                    "assertions": certify_assertions(store),
                });
            }
        }
        t0_core::Stage::TrainSuite => {
            for d in outputs.iter_mut().filter(|d| d["name"] == "run.model") {
                let s = &m.summary;
                d["facets"]["t0clip_model"] = json!({
                    "_producer": PRODUCER,
                    "_schemaURL": MODEL_FACET_SCHEMA,
                    "modelHash": d["facets"]["version"]["datasetVersion"],
                    "target": s["target"],
                    "snapshot": s["snapshot"],
                    "features": s["features"],
                    "metrics": s["metrics"],
                    "selected": s["leaderboard"].as_array().map(|l| {
                        l.iter().filter(|e| e["selected"] == true).cloned().collect::<Vec<_>>()
                    }),
                });
            }
        }
        _ => {}
    }
}

/// A store's column lineage (`t0_certify::columns`, as certify recorded it) as the
/// `columnLineage` facet: each surface column's canonical inputs, and what decides the rows
/// as the dataset-wide inputs. None when certify recorded none.
fn column_lineage(namespace: &str, lineage: &Value) -> Option<Value> {
    let fields = lineage["fields"].as_object()?;
    let input = |i: &Value| {
        let (kind, subtype, description) = match i["how"].as_str() {
            Some("direct") => ("DIRECT", "TRANSFORMATION", "the value is computed from it"),
            Some("join") => ("INDIRECT", "JOIN", "matches facts to the entity and T0"),
            _ if t0_project::vocab::BOOKKEEPING.contains(&i["column"].as_str().unwrap_or_default())
                || i["column"] == "observed_at" =>
            {
                ("INDIRECT", "FILTER", "the as-of availability filter: versions observed and available by T0")
            }
            _ => ("INDIRECT", "FILTER", "decides which facts count"),
        };
        json!({
            "namespace": namespace,
            "name": format!("canonical.{}", i["table"].as_str().unwrap_or_default()),
            "field": i["column"],
            "transformations": [{"type": kind, "subtype": subtype, "description": description}],
        })
    };
    let list = |v: &Value| v.as_array().map(|a| a.iter().map(input).collect::<Vec<_>>()).unwrap_or_default();
    let fields: serde_json::Map<String, Value> =
        fields.iter().map(|(f, inputs)| (f.clone(), json!({"inputFields": list(inputs)}))).collect();
    Some(json!({
        "_producer": PRODUCER,
        "_schemaURL": COLUMN_LINEAGE_SCHEMA,
        "fields": fields,
        "dataset": list(&lineage["dataset"]),
    }))
}

/// certify's checks of one store as assertions: certified (the static checks, the dry run, the
/// grid, the SLA and the baselines all passed), and the replay of the previous surface of the
/// same definition unchanged when there was one.
fn certify_assertions(store: &Value) -> Vec<Value> {
    let mut out = vec![json!({
        "assertion": "t0_certified",
        "success": store["status"] == "CERTIFIED",
    })];
    let replay = &store["replay"];
    if replay.is_object() {
        let moved = ["changed", "appeared", "disappeared"].iter().map(|k| replay[k].as_u64().unwrap_or(0)).sum::<u64>();
        out.push(json!({"assertion": "replay_unchanged", "success": moved == 0}));
    }
    out
}

/// The audit checks of one table that ran (a skipped check asserted nothing), as assertions:
/// success when no row failed; the column when the check names exactly one.
fn audit_assertions(summary: &Value, table: &str) -> Vec<Value> {
    let findings = summary["findings"].as_array().map(Vec::as_slice).unwrap_or_default();
    findings
        .iter()
        .filter(|f| f["table"] == table && f["skipped"].is_null())
        .map(|f| {
            let check = f["check"].as_str().unwrap_or_default();
            let (kind, args) = check.split_once('(').map_or((check, ""), |(k, a)| (k, a.trim_end_matches(')')));
            let mut a = json!({
                "assertion": kind,
                "name": check,
                "success": f["failing"].as_u64() == Some(0),
                "severity": f["severity"],
            });
            if !args.is_empty() && !args.contains(',') {
                a["column"] = json!(args);
            }
            a
        })
        .collect()
}

/// The custom run facet: what t0-clip recorded for the run (schema `T0ClipRunFacet.json`).
fn run_facet(exit_code: u8, recorded: Option<(&Manifest, &str)>) -> Value {
    let mut f = json!({"_producer": PRODUCER, "_schemaURL": RUN_FACET_SCHEMA, "exitCode": exit_code});
    if let Some((m, manifest_hash)) = recorded {
        f["stageRunId"] = json!(m.run_id);
        f["stage"] = json!(m.stage.as_str());
        f["manifestHash"] = json!(manifest_hash);
        f["codeVersion"] = json!(m.code_version);
        if let Some(g) = m.gate {
            f["gate"] = json!(g.as_str());
        }
    }
    f
}

fn count_lines(path: &Path) -> Result<usize> {
    match std::fs::read(path) {
        Ok(b) => Ok(b.iter().filter(|c| **c == b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_is_namespace_job_and_uuid() {
        let p = Parent::parse("airflow/t0clip_daily.certify/01890A5D-AC96-7B45-8000-0123456789AB").unwrap();
        assert_eq!(p.namespace, "airflow");
        assert_eq!(p.job, "t0clip_daily.certify");
        assert_eq!(p.run_id, "01890a5d-ac96-7b45-8000-0123456789ab");
        for bad in ["airflow/job", "a/b/not-a-uuid", "/job/01890a5d-ac96-7b45-8000-0123456789ab"] {
            assert!(Parent::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_uuids_are_version_8_and_differ_by_seed() {
        let a = uuid_from("x");
        assert!(is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, uuid_from("y"));
        assert_eq!(a, uuid_from("x"));
    }
}
