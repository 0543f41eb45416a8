use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::TableError;

const MAGIC: &[u8] = b"t0clip-content-v1\0";

/// Canonical content hash of `batches` (all sharing `schema`), rows ordered by `key` columns
/// first and then by every other column (in name order). See the crate docs for the encoding.
pub fn content_hash(schema: &Schema, batches: &[RecordBatch], key: &[&str]) -> Result<String, TableError> {
    let mut h = ContentHasher::new(schema, key)?;
    for b in batches {
        h.push(b)?;
    }
    h.finish()
}

/// Incremental form of [`content_hash`]: push batches, then finish. Rows are buffered until
/// `finish` because the canonical order is global.
pub struct ContentHasher {
    order: Vec<usize>,
    names: Vec<String>,
    types: Vec<DataType>,
    batches: Vec<RecordBatch>,
}

impl ContentHasher {
    pub fn new(schema: &Schema, key: &[&str]) -> Result<Self, TableError> {
        let mut order = Vec::with_capacity(schema.fields().len());
        for k in key {
            let i = schema.index_of(k)?;
            if !order.contains(&i) {
                order.push(i);
            }
        }
        // The other columns by name: a table whose columns were added in another order (a
        // measure declared later, `acquire --evolve-schema`) hashes like one made at once.
        let mut rest: Vec<usize> = (0..schema.fields().len()).filter(|i| !order.contains(i)).collect();
        rest.sort_by(|&a, &b| schema.field(a).name().cmp(schema.field(b).name()));
        order.extend(rest);
        for f in schema.fields() {
            type_name(f.name(), f.data_type())?;
        }
        Ok(ContentHasher {
            order,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            types: schema.fields().iter().map(|f| f.data_type().clone()).collect(),
            batches: Vec::new(),
        })
    }

    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        if batch.num_columns() != self.types.len() {
            return Err(TableError::Read {
                path: "<batch>".into(),
                message: format!("expected {} columns, got {}", self.types.len(), batch.num_columns()),
            });
        }
        if batch.num_rows() > 0 {
            self.batches.push(batch.clone());
        }
        Ok(())
    }

    pub fn finish(self) -> Result<String, TableError> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        put_u64(&mut buf, self.names.len() as u64);
        // The header lists columns in canonical (key-first) order so that the same columns in
        // a different physical order still hash alike.
        for &i in &self.order {
            put_bytes(&mut buf, self.names[i].as_bytes());
            put_bytes(&mut buf, type_name(&self.names[i], &self.types[i])?.as_bytes());
        }
        let fields: Vec<SortField> = self.order.iter().map(|&i| SortField::new(self.types[i].clone())).collect();
        let converter = RowConverter::new(fields)?;
        let mut rows = converter.empty_rows(0, 0);
        let mut at: Vec<(u32, u32)> = Vec::new();
        for (bi, b) in self.batches.iter().enumerate() {
            let cols: Vec<ArrayRef> = self.order.iter().map(|&i| b.column(i).clone()).collect();
            converter.append(&mut rows, &cols)?;
            at.extend((0..b.num_rows() as u32).map(|r| (bi as u32, r)));
        }
        let mut idx: Vec<usize> = (0..at.len()).collect();
        idx.sort_unstable_by(|&a, &b| rows.row(a).cmp(&rows.row(b)));
        put_u64(&mut buf, idx.len() as u64);
        for i in idx {
            let (bi, r) = at[i];
            let batch = &self.batches[bi as usize];
            for &c in &self.order {
                encode(&mut buf, batch.column(c).as_ref(), r as usize);
            }
            if buf.len() >= 1 << 16 {
                hasher.update(&buf);
                buf.clear();
            }
        }
        hasher.update(&buf);
        Ok(hasher.finalize().to_hex().to_string())
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
