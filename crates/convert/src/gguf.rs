//! A streaming GGUF v3 writer: the header and tensor table first, then each tensor's data
//! as it is produced, a few tensors (one per worker) in memory at a time.
//! (candle's `gguf_file::write` needs every tensor in memory at once.)

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use crate::error::ConvertError;

const MAGIC: u32 = 0x4655_4747; // "GGUF"
const VERSION: u32 = 3;
pub const ALIGNMENT: u64 = 32;

/// One tensor of the output: its GGUF name, shape (outermost first, as candle and PyTorch
/// order it; GGUF stores it reversed) and storage type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: GgmlDType,
}

impl TensorSpec {
    pub fn byte_len(&self) -> u64 {
        let count: usize = self.shape.iter().product();
        (count / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

/// ggml's type ids (`enum ggml_type`).
fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

fn value_type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(v) => put_str(out, v),
        Value::Array(items) => {
            // Arrays are homogeneous by construction in this crate; an empty one is typed U32.
            let item_type = items.first().map_or(4, value_type_id);
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn padding(len: u64) -> u64 {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
}

/// Writes a GGUF file at `path` through a temporary `*.part` file that is renamed into
/// place only when everything was written, so a failed run leaves nothing behind.
/// `produce(i)` returns the bytes of `tensors[i]` in its `dtype`; `on_written` is called after each.
pub fn write<P, F>(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    produce: P,
    mut on_written: F,
) -> Result<u64, ConvertError>
where
    P: Fn(usize) -> Result<Vec<u8>, ConvertError> + Sync,
    F: FnMut(&TensorSpec, usize),
{
    let part = part_path(path);
    let result = write_to(&part, metadata, tensors, &produce, &mut on_written).and_then(|bytes| {
        std::fs::rename(&part, path).map_err(|source| ConvertError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(bytes)
    });
    if result.is_err() {
        // Best effort: the temporary file is ours and useless after a failure.
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

fn write_to<P, F>(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorSpec],
    produce: &P,
    on_written: &mut F,
) -> Result<u64, ConvertError>
where
    P: Fn(usize) -> Result<Vec<u8>, ConvertError> + Sync,
    F: FnMut(&TensorSpec, usize),
{
    let io = |source| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);

    let mut head = Vec::new();
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut head, key);
        head.extend_from_slice(&value_type_id(value).to_le_bytes());
        put_value(&mut head, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &dim in t.shape.iter().rev() {
            head.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        head.extend_from_slice(&ggml_type_id(t.dtype).to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset += t.byte_len() + padding(t.byte_len());
    }
    let pad = padding(head.len() as u64);
    head.resize(head.len() + pad as usize, 0);
    w.write_all(&head).map_err(io)?;

    let window = rayon::current_num_threads().max(1);
    let mut done = 0;
    for (c, chunk) in tensors.chunks(window).enumerate() {
        let first = c * window;
        let datas: Vec<Result<Vec<u8>, ConvertError>> = (first..first + chunk.len())
            .into_par_iter()
            .map(produce)
            .collect();
        for (t, data) in chunk.iter().zip(datas) {
            let data = data?;
            if data.len() as u64 != t.byte_len() {
                return Err(ConvertError::Quantize {
                    name: t.name.clone(),
                    dtype: format!("{:?}", t.dtype),
                    detail: format!("produced {} bytes, expected {}", data.len(), t.byte_len()),
                });
            }
            w.write_all(&data).map_err(io)?;
            w.write_all(&vec![0u8; padding(t.byte_len()) as usize])
                .map_err(io)?;
            done += 1;
            on_written(t, done);
        }
    }
    w.flush().map_err(io)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let mut file = file;
    file.stream_position().map_err(io)
}
