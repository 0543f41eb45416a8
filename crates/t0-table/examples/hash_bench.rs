//! Content-hash throughput against raw blake3 over the same bytes (bench/hash.sh).
//!
//! Builds ROWS rows shaped like a canonical observations table (ids, two clocks, version,
//! batch, counts, a title), then times, on the current rayon pool:
//! - raw: blake3 of the rows' canonical encoding as one buffer (single-threaded `hash`, and
//!   `update_rayon` over the pool), the bytes encoded beforehand and outside the clock;
//! - content: `t0_table::content_hash` over the Arrow batches (encoding included).
//!
//! Prints one JSON object. Usage: hash_bench [ROWS] [RUNS]
#![expect(clippy::print_stdout, reason = "a bench prints its result")]
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

fn table(rows: usize) -> (Arc<Schema>, Vec<RecordBatch>) {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("observed_at", ts(), false),
        Field::new("available_at", ts(), false),
        Field::new("version", DataType::Int64, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("views", DataType::Int64, true),
        Field::new("likes", DataType::Int64, true),
        Field::new("title", DataType::Utf8, true),
    ]));
    let per = 65_536;
    let batches = (0..rows)
        .step_by(per)
        .map(|lo| {
            let r: Vec<usize> = (lo..(lo + per).min(rows)).collect();
            let t = |i: &usize| 1_767_225_600_000_000 + (*i as i64 % 30) * 86_400_000_000 + (*i as i64 / 30);
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(r.iter().map(|i| format!("clip{:07}", i / 30)).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(r.iter().map(t).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(r.iter().map(|i| t(i) + 3_600_000_000).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(r.iter().map(|i| 1 + (*i % 3) as i64).collect::<Vec<_>>())),
                Arc::new(StringArray::from(r.iter().map(|i| format!("b{:03}", i % 997)).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(
                    r.iter().map(|i| (i % 13 != 0).then_some((*i as i64 * 7919) % 1_000_003)).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(r.iter().map(|i| Some((*i as i64 * 31) % 10_007)).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    r.iter()
                        .map(|i| (i % 17 != 0).then(|| format!("a clip about topic {} number {}", i % 101, i / 30)))
                        .collect::<Vec<_>>(),
                )),
            ];
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    (schema, batches)
}

/// The bytes the content hash digests: every row's canonical encoding, back to back.
fn encoded(batches: &[RecordBatch]) -> Vec<u8> {
    // Same layout as the hash's encoding: a presence byte, then 8 bytes for fixed-width
    // values or a length and the bytes for strings; columns in name order.
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        let mut order: Vec<usize> = (0..b.num_columns()).collect();
        order.sort_by(|&x, &y| schema.field(x).name().cmp(schema.field(y).name()));
        for r in 0..b.num_rows() {
            for &c in &order {
                let a = b.column(c);
                if a.is_null(r) {
                    out.push(0);
                    continue;
                }
                out.push(1);
                if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
                    out.extend_from_slice(&(s.value(r).len() as u64).to_le_bytes());
                    out.extend_from_slice(s.value(r).as_bytes());
                } else if let Some(v) = a.as_any().downcast_ref::<Int64Array>() {
                    out.extend_from_slice(&v.value(r).to_le_bytes());
                } else if let Some(v) = a.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    out.extend_from_slice(&v.value(r).to_le_bytes());
                }
            }
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let (schema, batches) = table(rows);
    let bytes = encoded(&batches);
    let (mut raw1, mut rawp, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    let mut hash = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(blake3::hash(&bytes));
        raw1.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(blake3::Hasher::new().update_rayon(&bytes).finalize());
        rawp.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        hash = t0_table::content_hash(&schema, &batches).unwrap();
        ours.push(t.elapsed().as_secs_f64());
    }
    let (r1, rp, o) = (median(raw1), median(rawp), median(ours));
    let mb = bytes.len() as f64 / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "rows": rows, "bytes": bytes.len(), "threads": rayon::current_num_threads(),
            "raw_blake3_s": r1, "raw_blake3_parallel_s": rp, "content_hash_s": o,
            "raw_mb_s": mb / r1, "raw_parallel_mb_s": mb / rp, "content_mb_s": mb / o,
            "share_of_raw": r1 / o, "share_of_raw_parallel": rp / o, "hash": hash,
        })
    );
}
