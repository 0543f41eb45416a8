//! A reader for PyTorch's legacy (non-zip) checkpoint format, so a `.pth` written by
//! `torch.save(..., _use_new_zipfile_serialization=False)` (or by torch < 1.6) converts to
//! safetensors without installing PyTorch. candle reads the zip format only.
//!
//! The legacy layout is a sequence of pickles followed by raw storages:
//! magic number, protocol version, system info, the object (a state dict whose tensors refer
//! to storages by persistent id), the list of storage keys; then, for each key in that order,
//! the element count as a little-endian u64 and the storage's bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::ModelError;

/// `torch.serialization.MAGIC_NUMBER` as pickled with protocol 2 (LONG1 of 10 bytes).
const MAGIC: [u8; 15] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];

struct TensorRef {
    name: String,
    storage_key: String,
    dtype: DType,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn pickle<R: BufRead>(r: &mut R, what: &str) -> Result<Object, String> {
    let mut stack = Stack::empty();
    stack.read_loop(r).map_err(|e| format!("{what}: {e}"))?;
    stack.finalize().map_err(|e| format!("{what}: {e}"))
}

fn usizes(o: Object) -> Result<Vec<usize>, String> {
    match o {
        Object::Tuple(v) => v
            .into_iter()
            .map(|x| match x {
                Object::Int(i) if i >= 0 => Ok(i as usize),
                Object::Long(i) if i >= 0 => Ok(i as usize),
                other => Err(format!("expected a size, found {other:?}")),
            })
            .collect(),
        other => Err(format!("expected a tuple of sizes, found {other:?}")),
    }
}

fn tensor_ref(name: String, value: Object) -> Result<Option<TensorRef>, String> {
    let Object::Reduce { callable, args } = value else { return Ok(None) };
    match *callable {
        Object::Class { ref module_name, ref class_name }
            if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let Object::Tuple(mut args) = *args else { return Err(format!("{name}: tensor arguments are not a tuple")) };
    if args.len() < 4 {
        return Err(format!("{name}: tensor has {} arguments, expected at least 4", args.len()));
    }
    let stride = usizes(args.remove(3)).map_err(|e| format!("{name}: stride: {e}"))?;
    let size = usizes(args.remove(2)).map_err(|e| format!("{name}: size: {e}"))?;
    let offset = match args.remove(1) {
        Object::Int(i) if i >= 0 => i as usize,
        Object::Long(i) if i >= 0 => i as usize,
        other => return Err(format!("{name}: storage offset {other:?}")),
    };
    let Object::PersistentLoad(pid) = args.remove(0) else {
        return Err(format!("{name}: storage is not a persistent id"));
    };
    let Object::Tuple(mut pid) = *pid else { return Err(format!("{name}: persistent id is not a tuple")) };
    if pid.len() < 5 {
        return Err(format!("{name}: storage id has {} fields", pid.len()));
    }
    let key = match pid.remove(2) {
        Object::Unicode(s) => s,
        other => return Err(format!("{name}: storage key {other:?}")),
    };
    let dtype = match pid.remove(1) {
        Object::Class { class_name, .. } => match class_name.as_str() {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "ByteStorage" => DType::U8,
            other => return Err(format!("{name}: unsupported storage type {other}")),
        },
        other => return Err(format!("{name}: storage type {other:?}")),
    };
    Ok(Some(TensorRef { name, storage_key: key, dtype, offset, size, stride }))
}

/// Every tensor of a legacy checkpoint's state dict, by name (other entries are ignored).
pub fn read_legacy(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let err = |m: String| ModelError::new(path, m);
    let f = std::fs::File::open(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    let mut r = BufReader::new(f);
    let mut magic = [0u8; 15];
    r.read_exact(&mut magic).map_err(|e| err(format!("too short: {e}")))?;
    if magic != MAGIC {
        return Err(err(
            "not a legacy PyTorch checkpoint (magic number differs; a zip checkpoint candle reads itself)".into(),
        ));
    }
    let proto = pickle(&mut r, "protocol version").map_err(err)?;
    if !matches!(proto, Object::Int(1001)) {
        return Err(err(format!("unsupported protocol version {proto:?}")));
    }
    let sys = pickle(&mut r, "system info").map_err(err)?;
    if let Object::Dict(items) = &sys {
        for (k, v) in items {
            if *k == Object::Unicode("little_endian".into()) && *v != Object::Bool(true) {
                return Err(err("big-endian checkpoints are not supported".into()));
            }
        }
    }
    let obj = pickle(&mut r, "state dict").map_err(err)?;
    let entries = match obj {
        Object::Dict(d) => d,
        Object::Build { callable, .. } => match *callable {
            Object::Dict(d) => d,
            other => return Err(err(format!("the checkpoint is not a state dict: {other:?}"))),
        },
        other => return Err(err(format!("the checkpoint is not a state dict: {:?}", std::mem::discriminant(&other)))),
    };
    let mut refs = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        if let Some(t) = tensor_ref(name, v).map_err(err)? {
            refs.push(t);
        }
    }
    let keys = match pickle(&mut r, "storage keys").map_err(err)? {
        Object::List(v) => v
            .into_iter()
            .map(|k| match k {
                Object::Unicode(s) => Ok(s),
                other => Err(err(format!("storage key {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(err(format!("storage key list {other:?}"))),
    };
    let dtypes: HashMap<&str, DType> = refs.iter().map(|t| (t.storage_key.as_str(), t.dtype)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| err(format!("storage {key}: truncated: {e}")))?;
        let numel = u64::from_le_bytes(n) as usize;
        let dtype = dtypes.get(key.as_str()).copied().unwrap_or(DType::U8);
        let mut bytes = vec![0u8; numel * dtype.size_in_bytes()];
        r.read_exact(&mut bytes).map_err(|e| err(format!("storage {key}: truncated: {e}")))?;
        storages.insert(key, bytes);
    }
    let mut out = Vec::with_capacity(refs.len());
    for t in refs {
        let bytes = storages
            .get(&t.storage_key)
            .ok_or_else(|| err(format!("{}: storage {} missing", t.name, t.storage_key)))?;
        let es = t.dtype.size_in_bytes();
        let numel: usize = t.size.iter().product();
        // Gather the strided view element by element (checkpoints are small; most are contiguous).
        let mut data = Vec::with_capacity(numel * es);
        let mut idx = vec![0usize; t.size.len()];
        for _ in 0..numel {
            let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            let at = off * es;
            let src =
                bytes.get(at..at + es).ok_or_else(|| err(format!("{}: view reaches past its storage", t.name)))?;
            data.extend_from_slice(src);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        let tensor = Tensor::from_raw_buffer(&data, t.dtype, &t.size, &Device::Cpu)
            .map_err(|e| err(format!("{}: {e}", t.name)))?;
        out.push((t.name, tensor));
    }
    Ok(out)
}

/// Convert a legacy checkpoint to safetensors (floating-point tensors only; BatchNorm's
/// `num_batches_tracked` counters are not weights). Returns the number of tensors written.
pub fn convert_to_safetensors(pth: &Path, out: &Path) -> Result<usize, ModelError> {
    let tensors: HashMap<String, Tensor> =
        read_legacy(pth)?.into_iter().filter(|(_, t)| t.dtype().is_float()).collect();
    if tensors.is_empty() {
        return Err(ModelError::new(pth, "the checkpoint holds no floating-point tensors"));
    }
    let tmp = out.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp).map_err(|e| ModelError::new(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, out).map_err(|e| ModelError::new(out, e.to_string()))?;
    Ok(tensors.len())
}
