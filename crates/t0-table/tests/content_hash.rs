//! The content hash is a function of the rows only: not of row groups, compression, file
//! split or write order. Any changed value changes it.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float32Builder, Float64Array, Int64Array, ListBuilder, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use t0_table::{ParquetSet, content_hash, read_parquet, write_parquet};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("t0", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("views", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("emb", DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), true),
    ]))
}

/// `n` rows; `bump` adds 1 to the views of row `bump`.
fn rows(n: usize, bump: Option<usize>) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("e{:04}", i % 97)).collect();
    let t0: Vec<i64> = (0..n).map(|i| 1_700_000_000_000_000 + (i as i64) * 3_600_000_000).collect();
    let views: Vec<Option<i64>> =
        (0..n).map(|i| if i % 13 == 0 { None } else { Some(i as i64 * 31 + i64::from(bump == Some(i))) }).collect();
    let score: Vec<Option<f64>> = (0..n).map(|i| if i % 17 == 0 { None } else { Some(i as f64 / 7.0) }).collect();
    let mut emb = ListBuilder::new(Float32Builder::new());
    for i in 0..n {
        emb.values().append_slice(&[i as f32, -(i as f32) / 3.0]);
        emb.append(i % 11 != 0);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(t0)),
        Arc::new(Int64Array::from(views)),
        Arc::new(Float64Array::from(score)),
        Arc::new(emb.finish()),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

fn write_with(path: &std::path::Path, batches: &[RecordBatch], rows_per_group: usize, compression: Compression) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_compression(compression)
        .build();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn hash_of(path: &std::path::Path) -> String {
    ParquetSet::open(path).unwrap().content_hash().unwrap().0
}

#[test]
fn same_rows_in_different_layouts_hash_alike() {
    let dir = tempfile::tempdir().unwrap();
    let batch = rows(1000, None);
    let reference = content_hash(&schema(), std::slice::from_ref(&batch)).unwrap();

    let small_groups = dir.path().join("small.parquet");
    write_with(&small_groups, std::slice::from_ref(&batch), 7, Compression::UNCOMPRESSED);
    let big_groups = dir.path().join("big.parquet");
    write_with(&big_groups, std::slice::from_ref(&batch), 100_000, Compression::SNAPPY);
    assert_ne!(
        std::fs::read(&small_groups).unwrap(),
        std::fs::read(&big_groups).unwrap(),
        "layouts must differ on disk"
    );
    assert_eq!(hash_of(&small_groups), reference);
    assert_eq!(hash_of(&big_groups), reference);

    // Split over two files, in reverse order of rows.
    let split = dir.path().join("split");
    std::fs::create_dir(&split).unwrap();
    write_with(&split.join("a.parquet"), &[batch.slice(600, 400)], 50, Compression::SNAPPY);
    write_with(&split.join("b.parquet"), &[batch.slice(0, 600)], 64, Compression::SNAPPY);
    assert_eq!(hash_of(&split), reference);

    // The project's own writer agrees too.
    let own = dir.path().join("own.parquet");
    write_parquet(&own, schema(), &[batch.slice(500, 500), batch.slice(0, 500)]).unwrap();
    assert_eq!(hash_of(&own), reference);
}

#[test]
fn one_changed_value_changes_the_hash() {
    let base = content_hash(&schema(), &[rows(1000, None)]).unwrap();
    let bumped = content_hash(&schema(), &[rows(1000, Some(500))]).unwrap();
    assert_ne!(base, bumped);
    // A dropped row and a NULL where a value was are changes too.
    let fewer = content_hash(&schema(), &[rows(999, None)]).unwrap();
    assert_ne!(base, fewer);
    let batch = rows(1000, None);
    let mut cols = batch.columns().to_vec();
    let mut scores: Vec<Option<f64>> =
        (0..1000).map(|i| if i % 17 == 0 { None } else { Some(i as f64 / 7.0) }).collect();
    scores[1] = None;
    cols[3] = Arc::new(Float64Array::from(scores));
    let nulled = content_hash(&schema(), &[RecordBatch::try_new(schema(), cols).unwrap()]).unwrap();
    assert_ne!(base, nulled);
}

#[test]
fn a_renamed_or_retyped_column_changes_the_hash() {
    let batch = rows(10, None);
    let base = content_hash(&schema(), std::slice::from_ref(&batch)).unwrap();
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[2] = Field::new("views_total", DataType::Int64, true);
    let renamed = Arc::new(Schema::new(fields));
    let b2 = RecordBatch::try_new(renamed.clone(), batch.columns().to_vec()).unwrap();
    assert_ne!(base, content_hash(&renamed, &[b2]).unwrap());
}

#[test]
fn corrupt_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.parquet");
    write_parquet(&p, schema(), &[rows(200, None)]).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&p, &bytes).unwrap();
    let err = read_parquet(&p).unwrap_err().to_string();
    assert!(err.contains("x.parquet"), "{err}");
}

/// `batch` with its rows in another order (a fixed permutation) and its columns reversed.
fn shuffled(batch: &RecordBatch) -> RecordBatch {
    let n = batch.num_rows() as u64;
    let idx = arrow::array::UInt64Array::from((0..n).map(|i| (i * 7919 + 13) % n).collect::<Vec<_>>());
    let fields: Vec<Field> = schema().fields().iter().rev().map(|f| f.as_ref().clone()).collect();
    let cols: Vec<ArrayRef> =
        batch.columns().iter().rev().map(|c| arrow::compute::take(c.as_ref(), &idx, None).unwrap()).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

#[test]
fn row_order_column_order_and_batching_do_not_matter() {
    let batch = rows(1000, None);
    let reference = content_hash(&schema(), std::slice::from_ref(&batch)).unwrap();
    let other = shuffled(&batch);
    assert_eq!(content_hash(&other.schema(), &[other.slice(0, 333), other.slice(333, 667)]).unwrap(), reference);
}

#[test]
fn an_appended_batch_continues_from_the_recorded_state() {
    let batch = rows(1000, None);
    let full = content_hash(&schema(), std::slice::from_ref(&batch)).unwrap();
    let mut before = t0_table::ContentHasher::new(&schema()).unwrap();
    before.push(&batch.slice(0, 900)).unwrap();
    // The state is recorded as hex (beside the hash) and read back for the append.
    let recorded = before.state().to_hex();
    let state = t0_table::ContentState::from_hex(&recorded).unwrap();
    assert_eq!(state.rows, 900);
    let mut after = t0_table::ContentHasher::resume(&schema(), state).unwrap();
    after.push(&batch.slice(900, 100)).unwrap();
    assert_eq!(after.finish(), full);
    assert!(t0_table::ContentState::from_hex(&recorded[1..]).is_none());
}

#[test]
fn every_single_changed_value_and_every_row_level_edit_changes_the_hash() {
    let n = 300;
    let batch = rows(n, None);
    let base = content_hash(&schema(), std::slice::from_ref(&batch)).unwrap();
    let mut seen = std::collections::BTreeSet::from([base.clone()]);
    // Each cell of the numeric columns, one at a time: +1 (or a value where NULL was).
    for c in [2usize, 3] {
        for r in 0..n {
            let mut cols = batch.columns().to_vec();
            cols[c] = match c {
                2 => {
                    let a = batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
                    let v: Vec<Option<i64>> = (0..n)
                        .map(|i| if i == r { Some(a.value(i) + 1) } else { a.is_valid(i).then(|| a.value(i)) })
                        .collect();
                    Arc::new(Int64Array::from(v))
                }
                _ => {
                    let a = batch.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
                    let v: Vec<Option<f64>> = (0..n)
                        .map(|i| if i == r { Some(a.value(i) + 0.5) } else { a.is_valid(i).then(|| a.value(i)) })
                        .collect();
                    Arc::new(Float64Array::from(v))
                }
            };
            let h = content_hash(&schema(), &[RecordBatch::try_new(schema(), cols).unwrap()]).unwrap();
            assert!(seen.insert(h), "column {c}, row {r}: the change left the hash as another table's");
        }
    }
    // A duplicated row, a dropped row, and two rows that swap one value.
    let dup = arrow::compute::concat_batches(&schema(), &[batch.clone(), batch.slice(7, 1)]).unwrap();
    assert!(seen.insert(content_hash(&schema(), &[dup]).unwrap()));
    let dropped = arrow::compute::concat_batches(&schema(), &[batch.slice(0, 7), batch.slice(8, n - 8)]).unwrap();
    assert!(seen.insert(content_hash(&schema(), &[dropped]).unwrap()));
    let mut cols = batch.columns().to_vec();
    let ids: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "e{:04}",
                if i == 1 {
                    2
                } else if i == 2 {
                    1
                } else {
                    i % 97
                }
            )
        })
        .collect();
    cols[0] = Arc::new(StringArray::from(ids));
    assert!(seen.insert(content_hash(&schema(), &[RecordBatch::try_new(schema(), cols).unwrap()]).unwrap()));
}

#[test]
fn the_hash_does_not_depend_on_the_thread_count() {
    // More rows than one parallel task takes, so the batch is split over threads.
    let batch = rows(30_000, None);
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| content_hash(&schema(), std::slice::from_ref(&batch)).unwrap())
    };
    assert_eq!(on(1), on(3));
}

#[test]
fn parts_of_a_sorted_dataset_sort_back_to_the_bytes_one_writer_writes() {
    // One writer's file: rows ordered by (entity_id, t0).
    let batch = rows(1000, None);
    let one = t0_table::sorted(&schema(), std::slice::from_ref(&batch), &["entity_id", "t0"]).unwrap();
    let ids = one.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    assert!((1..one.num_rows()).all(|i| ids.value(i - 1) <= ids.value(i)), "not ordered by entity_id");
    // The same rows as two buckets wrote them (entities split by parity, each bucket's part
    // in its own order), put back together.
    let shuffled = shuffled(&batch);
    let other = t0_table::sorted(&shuffled.schema(), std::slice::from_ref(&shuffled), &["t0"]).unwrap();
    let other = arrow::record_batch::RecordBatch::try_new(
        schema(),
        schema().fields().iter().map(|f| other.column(other.schema().index_of(f.name()).unwrap()).clone()).collect(),
    )
    .unwrap();
    let parity = |b: &RecordBatch, odd: bool| {
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let keep = arrow::array::BooleanArray::from(
            (0..b.num_rows()).map(|i| ids.value(i).as_bytes()[4] % 2 == u8::from(odd)).collect::<Vec<_>>(),
        );
        arrow::compute::filter_record_batch(b, &keep).unwrap()
    };
    let parts = [parity(&other, true), parity(&other, false)];
    assert!(parts.iter().all(|p| p.num_rows() > 0));
    let joined = t0_table::sorted(&schema(), &parts, &["entity_id", "t0"]).unwrap();
    let bytes = |b: &RecordBatch| t0_table::parquet_bytes(schema(), std::slice::from_ref(b)).unwrap();
    assert_eq!(bytes(&joined), bytes(&one), "the sorted union is not the one writer's file");
    // A key column that is not there is an error, not a panic.
    assert!(t0_table::sorted(&schema(), &parts, &["no_such_column"]).is_err());
}
