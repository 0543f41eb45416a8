use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::TableError;

const MAGIC: &[u8] = b"t0clip-content-v2\0";

/// Context of the key each row digest is keyed with (blake3 `derive_key`, over the header).
const ROW_CONTEXT: &str = "t0clip content v2 row digest";

/// Canonical content hash of `batches` (all sharing `schema`): a function of the multiset of
/// rows and the columns' names and types only. See the crate docs for the construction.
pub fn content_hash(schema: &Schema, batches: &[RecordBatch]) -> Result<String, TableError> {
    let mut h = ContentHasher::new(schema)?;
    for b in batches {
        h.push(b)?;
    }
    Ok(h.finish())
}

/// The order-independent state of a content hash: how many rows and the lane-wise sum of
/// their digests. States of disjoint sets of rows add up to the state of their union, so a
/// table that only grows is hashed by adding the state of what was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentState {
    pub rows: u64,
    pub lanes: [u64; 8],
}

impl ContentState {
    pub fn add(&mut self, other: &ContentState) {
        self.rows += other.rows;
        for (a, b) in self.lanes.iter_mut().zip(other.lanes) {
            *a = a.wrapping_add(b);
        }
    }

    fn add_digest(&mut self, d: &[u8; 64]) {
        self.rows += 1;
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            *lane = lane.wrapping_add(u64::from_le_bytes(d[k * 8..k * 8 + 8].try_into().expect("8 bytes")));
        }
    }

    /// Hex form, for recording beside a hash so a later append can continue from it.
    pub fn to_hex(&self) -> String {
        let mut s = format!("{:016x}", self.rows);
        for l in self.lanes {
            s.push_str(&format!("{l:016x}"));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<ContentState> {
        if s.len() != 9 * 16 || !s.is_ascii() {
            return None;
        }
        let word = |k: usize| u64::from_str_radix(&s[k * 16..(k + 1) * 16], 16).ok();
        let mut lanes = [0u64; 8];
        for (k, l) in lanes.iter_mut().enumerate() {
            *l = word(k + 1)?;
        }
        Some(ContentState { rows: word(0)?, lanes })
    }
}

/// Streaming form of [`content_hash`]: push batches in any order and any split, then finish.
/// Nothing is buffered: each row is digested as it is pushed.
#[derive(Clone)]
pub struct ContentHasher {
    /// Column indices in canonical (name) order.
    order: Vec<usize>,
    types: Vec<DataType>,
    /// (name, type) of each column, in canonical order: what the header encodes.
    columns: Vec<(String, String)>,
    header: Vec<u8>,
    key: [u8; 32],
    state: ContentState,
}

/// Rows per unit of parallel work when a batch is digested.
const ROWS_PER_TASK: usize = 8192;

impl ContentHasher {
    pub fn new(schema: &Schema) -> Result<Self, TableError> {
        // Columns by name: a table whose columns were added in another order (a measure
        // declared later, `acquire --evolve-schema`) hashes like one made at once.
        let mut order: Vec<usize> = (0..schema.fields().len()).collect();
        order.sort_by(|&a, &b| schema.field(a).name().cmp(schema.field(b).name()));
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        put_u64(&mut header, order.len() as u64);
        let mut columns = Vec::with_capacity(order.len());
        for &i in &order {
            let f = schema.field(i);
            let ty = type_name(f.name(), f.data_type())?;
            put_bytes(&mut header, f.name().as_bytes());
            put_bytes(&mut header, ty.as_bytes());
            columns.push((f.name().to_string(), ty.to_string()));
        }
        // Row digests are keyed by the header: the same values under other names or types
        // give other digests.
        let key = blake3::derive_key(ROW_CONTEXT, &header);
        Ok(ContentHasher {
            order,
            types: schema.fields().iter().map(|f| f.data_type().clone()).collect(),
            columns,
            header,
            key,
            state: ContentState::default(),
        })
    }

    /// Continue from the state of rows already hashed (a table before an append).
    pub fn resume(schema: &Schema, state: ContentState) -> Result<Self, TableError> {
        let mut h = ContentHasher::new(schema)?;
        h.state = state;
        Ok(h)
    }

    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        if batch.num_columns() != self.types.len() {
            return Err(TableError::Read {
                path: "<batch>".into(),
                message: format!("expected {} columns, got {}", self.types.len(), batch.num_columns()),
            });
        }
        let cols: Vec<Col> = self.order.iter().map(|&i| Col::new(batch.column(i).as_ref())).collect();
        let digest_rows = |lo: usize, hi: usize| {
            let mut st = ContentState::default();
            let mut buf = Vec::with_capacity(256);
            let mut out = [0u8; 64];
            for r in lo..hi {
                buf.clear();
                for c in &cols {
                    c.encode(&mut buf, r);
                }
                blake3::Hasher::new_keyed(&self.key).update(&buf).finalize_xof().fill(&mut out);
                st.add_digest(&out);
            }
            st
        };
        let n = batch.num_rows();
        // The sum is commutative: tasks may finish in any order and on any thread.
        let tasks: Vec<ContentState> = if n > ROWS_PER_TASK {
            (0..n.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .map(|t| digest_rows(t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(n)))
                .collect()
        } else {
            vec![digest_rows(0, n)]
        };
        for t in &tasks {
            self.state.add(t);
        }
        Ok(())
    }

    /// Add the rows another hasher saw (a disjoint set of rows with the same columns): the
    /// result hashes like one hasher that saw both. False, and nothing added, when the two
    /// hash different columns or types.
    pub fn merge(&mut self, other: &ContentHasher) -> bool {
        if self.header != other.header {
            return false;
        }
        self.state.add(&other.state);
        true
    }

    /// The columns this hasher and `other` name or type differently, as `name: type / type`
    /// (`-` where one lacks the column): why [`ContentHasher::merge`] refused.
    pub fn differences(&self, other: &ContentHasher) -> Vec<String> {
        let mut out = Vec::new();
        let theirs: std::collections::BTreeMap<&str, &str> =
            other.columns.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let ours: std::collections::BTreeMap<&str, &str> =
            self.columns.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        for name in ours.keys().chain(theirs.keys().filter(|n| !ours.contains_key(*n))) {
            let (a, b) = (ours.get(name).copied(), theirs.get(name).copied());
            if a != b {
                out.push(format!("{name}: {} / {}", a.unwrap_or("-"), b.unwrap_or("-")));
            }
        }
        out
    }

    /// The state so far (to record beside the hash for a later [`ContentHasher::resume`]).
    pub fn state(&self) -> ContentState {
        self.state
    }

    pub fn finish(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&self.header);
        h.update(&self.state.rows.to_le_bytes());
        for l in self.state.lanes {
            h.update(&l.to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// A column ready to encode row by row: fixed-width values converted once to their 8-byte
/// canonical form and strings read from their buffers, so a row costs no dynamic dispatch.
/// The bytes are exactly those of [`encode`], which the rest (lists, views) still uses.
enum Col<'a> {
    /// Integers, dates, timestamps and floats (NaN canonical), as their encoded u64.
    Fixed {
        nulls: Option<arrow::buffer::NullBuffer>,
        values: Vec<u64>,
    },
    Bool(&'a arrow::array::BooleanArray),
    Utf8(&'a arrow::array::StringArray),
    Other(&'a dyn Array),
}

impl<'a> Col<'a> {
    fn new(a: &'a dyn Array) -> Col<'a> {
        fn ints<T: arrow::datatypes::ArrowPrimitiveType>(a: &dyn Array, f: impl Fn(T::Native) -> u64) -> Vec<u64> {
            a.as_primitive::<T>().values().iter().map(|v| f(*v)).collect()
        }
        let canon = |v: f64| if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() };
        let values = match a.data_type() {
            DataType::Int8 => ints::<Int8Type>(a, |v| v as i64 as u64),
            DataType::Int16 => ints::<Int16Type>(a, |v| v as i64 as u64),
            DataType::Int32 => ints::<Int32Type>(a, |v| v as i64 as u64),
            DataType::Int64 => ints::<Int64Type>(a, |v| v as u64),
            DataType::UInt8 => ints::<UInt8Type>(a, |v| v as u64),
            DataType::UInt16 => ints::<UInt16Type>(a, |v| v as u64),
            DataType::UInt32 => ints::<UInt32Type>(a, |v| v as u64),
            DataType::UInt64 => ints::<UInt64Type>(a, |v| v),
            DataType::Float32 => ints::<Float32Type>(a, |v| canon(v as f64)),
            DataType::Float64 => ints::<Float64Type>(a, canon),
            DataType::Date32 => ints::<Date32Type>(a, |v| v as i64 as u64),
            DataType::Timestamp(TimeUnit::Second, _) => ints::<TimestampSecondType>(a, |v| v as u64),
            DataType::Timestamp(TimeUnit::Millisecond, _) => ints::<TimestampMillisecondType>(a, |v| v as u64),
            DataType::Timestamp(TimeUnit::Microsecond, _) => ints::<TimestampMicrosecondType>(a, |v| v as u64),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => ints::<TimestampNanosecondType>(a, |v| v as u64),
            DataType::Boolean => return Col::Bool(a.as_boolean()),
            DataType::Utf8 => return Col::Utf8(a.as_string::<i32>()),
            _ => return Col::Other(a),
        };
        Col::Fixed { nulls: a.logical_nulls(), values }
    }

    #[inline]
    fn encode(&self, buf: &mut Vec<u8>, i: usize) {
        match self {
            Col::Fixed { nulls, values } => {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    buf.push(0);
                } else {
                    buf.push(1);
                    buf.extend_from_slice(&values[i].to_le_bytes());
                }
            }
            Col::Bool(a) => {
                if a.is_null(i) {
                    buf.push(0);
                } else {
                    buf.extend_from_slice(&[1, a.value(i) as u8]);
                }
            }
            Col::Utf8(a) => {
                if a.is_null(i) {
                    buf.push(0);
                } else {
                    buf.push(1);
                    put_bytes(buf, a.value(i).as_bytes());
                }
            }
            Col::Other(a) => encode(buf, *a, i),
        }
    }
}

fn type_name(column: &str, dt: &DataType) -> Result<String, TableError> {
    Ok(match dt {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "utf8".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Date32 => "date32".into(),
        DataType::Timestamp(unit, tz) => {
            let u = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            format!("timestamp[{u},{}]", tz.as_deref().unwrap_or(""))
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("list<{}>", type_name(column, f.data_type())?)
        }
        other => {
            return Err(TableError::Unsupported { column: column.to_string(), data_type: other.to_string() });
        }
    })
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_u64(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    // One NaN bit pattern, so NaNs that differ only in payload hash alike.
    let v = if v.is_nan() { f64::NAN } else { v };
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// Append the canonical encoding of `a[i]`. Types were validated by `type_name`.
fn encode(buf: &mut Vec<u8>, a: &dyn Array, i: usize) {
    if a.is_null(i) {
        buf.push(0);
        return;
    }
    buf.push(1);
    match a.data_type() {
        DataType::Boolean => buf.push(a.as_boolean().value(i) as u8),
        DataType::Int8 => put_u64(buf, a.as_primitive::<Int8Type>().value(i) as i64 as u64),
        DataType::Int16 => put_u64(buf, a.as_primitive::<Int16Type>().value(i) as i64 as u64),
        DataType::Int32 => put_u64(buf, a.as_primitive::<Int32Type>().value(i) as i64 as u64),
        DataType::Int64 => put_u64(buf, a.as_primitive::<Int64Type>().value(i) as u64),
        DataType::UInt8 => put_u64(buf, a.as_primitive::<UInt8Type>().value(i) as u64),
        DataType::UInt16 => put_u64(buf, a.as_primitive::<UInt16Type>().value(i) as u64),
        DataType::UInt32 => put_u64(buf, a.as_primitive::<UInt32Type>().value(i) as u64),
        DataType::UInt64 => put_u64(buf, a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => put_f64(buf, a.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => put_f64(buf, a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => put_bytes(buf, a.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => put_bytes(buf, a.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => put_bytes(buf, a.as_string_view().value(i).as_bytes()),
        DataType::Binary => put_bytes(buf, a.as_binary::<i32>().value(i)),
        DataType::LargeBinary => put_bytes(buf, a.as_binary::<i64>().value(i)),
        DataType::BinaryView => put_bytes(buf, a.as_binary_view().value(i)),
        DataType::Date32 => put_u64(buf, a.as_primitive::<Date32Type>().value(i) as i64 as u64),
        DataType::Timestamp(unit, _) => {
            // The unit is part of the header; the raw i64 is the value.
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
            };
            put_u64(buf, v as u64);
        }
        DataType::List(_) => encode_list(buf, &a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => encode_list(buf, &a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(_, _) => encode_list(buf, &a.as_fixed_size_list().value(i)),
        _ => unreachable!("type validated in ContentHasher::new"),
    }
}

fn encode_list(buf: &mut Vec<u8>, values: &ArrayRef) {
    put_u64(buf, values.len() as u64);
    for j in 0..values.len() {
        encode(buf, values.as_ref(), j);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int32Array, Int64Array,
        StringArray, TimestampMicrosecondArray, TimestampSecondArray, UInt16Array, UInt64Array,
    };

    use super::*;

    /// The prepared columns write exactly the bytes of the generic encoder, NULLs, NaNs and
    /// slices included.
    #[test]
    fn prepared_columns_encode_like_the_generic_encoder() {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(vec![Some(-3), None, Some(7), Some(0), Some(1)])),
            Arc::new(Int32Array::from(vec![Some(-70000), Some(1), None, Some(9), None])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(-1), Some(2), None, Some(i64::MAX)])),
            Arc::new(UInt16Array::from(vec![Some(65535), None, Some(0), Some(3), Some(4)])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(0), None, Some(5), Some(6)])),
            Arc::new(Float32Array::from(vec![Some(f32::NAN), Some(-0.0), Some(1.5), None, Some(f32::INFINITY)])),
            Arc::new(Float64Array::from(vec![Some(-f64::NAN), None, Some(0.1), Some(-2.5), Some(f64::MIN)])),
            Arc::new(Date32Array::from(vec![Some(-1), Some(19000), None, Some(0), Some(1)])),
            Arc::new(TimestampSecondArray::from(vec![Some(-5), None, Some(1), Some(2), Some(3)])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), None, Some(0), Some(1), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true), Some(false)])),
            Arc::new(StringArray::from(vec![Some(""), None, Some("héllo"), Some("x"), Some("a\0b")])),
        ];
        for a in &cols {
            for view in [a.clone(), a.slice(1, 3)] {
                let prepared = Col::new(view.as_ref());
                for i in 0..view.len() {
                    let (mut fast, mut generic) = (Vec::new(), Vec::new());
                    prepared.encode(&mut fast, i);
                    encode(&mut generic, view.as_ref(), i);
                    assert_eq!(fast, generic, "{} row {i}", view.data_type());
                }
            }
        }
    }

    /// Hashers of disjoint row sets merge into the hash of their union (how `commit` joins
    /// bucket tables); hashers of other columns refuse to merge.
    #[test]
    fn hashers_of_parts_merge_into_the_whole() {
        use arrow::datatypes::Field;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let batch = |v: Vec<i64>| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap();
        let whole = content_hash(&schema, &[batch(vec![1, 2, 3, 4, 5])]).unwrap();
        let mut a = ContentHasher::new(&schema).unwrap();
        a.push(&batch(vec![4, 1])).unwrap();
        let mut b = ContentHasher::new(&schema).unwrap();
        b.push(&batch(vec![5, 3, 2])).unwrap();
        assert!(a.merge(&b));
        assert_eq!(a.finish(), whole);
        let other = Arc::new(Schema::new(vec![Field::new("y", DataType::Int64, true)]));
        let mut c = ContentHasher::new(&other).unwrap();
        assert!(!c.merge(&b));
        assert_eq!(c.state().rows, 0);
    }
}
