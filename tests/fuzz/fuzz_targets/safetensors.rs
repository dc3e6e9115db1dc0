//! A checkpoint folder the user points `--model` at: `model.safetensors`, or a
//! `model.safetensors.index.json` and its shards. The engine's `WeightFiles::open` checks
//! the index and every header; then candle maps the files and reads each tensor, as a load does.
//!
//! Input layout: byte 0 even = one `model.safetensors` (the rest); odd = an index (its
//! length in bytes 1..3, little-endian) followed by two shards split at a 4-byte length.
#![no_main]

use std::path::Path;

use candle_core::{DType, Device};
use impchat_engine::weights::WeightFiles;
use libfuzzer_sys::fuzz_target;

const SHARDS: [&str; 2] = [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];
/// Keeps one input's widened tensors small; the bytes themselves are bounded by the input.
const MAX_WIDENED_VALUES: usize = 1 << 22;

fn split_at_length(data: &[u8], width: usize) -> (&[u8], &[u8]) {
    if data.len() < width {
        return (data, &[]);
    }
    let (len, rest) = data.split_at(width);
    let mut bytes = [0u8; 8];
    bytes[..width].copy_from_slice(len);
    let len = usize::try_from(u64::from_le_bytes(bytes)).unwrap_or(usize::MAX);
    rest.split_at(len.min(rest.len()))
}

fn write_checkpoint(dir: &Path, data: &[u8]) -> std::io::Result<()> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    if mode & 1 == 0 {
        return std::fs::write(dir.join("model.safetensors"), rest);
    }
    let (index, shards) = split_at_length(rest, 2);
    std::fs::write(dir.join("model.safetensors.index.json"), index)?;
    let (first, second) = split_at_length(shards, 4);
    std::fs::write(dir.join(SHARDS[0]), first)?;
    std::fs::write(dir.join(SHARDS[1]), second)
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if write_checkpoint(dir.path(), data).is_err() {
        return;
    }
    let Ok(weights) = WeightFiles::open(dir.path()) else {
        return;
    };
    let _ = weights.parameter_count();
    let _ = weights.storage_dtype();
    let Ok(vb) = weights.var_builder(DType::F32, &Device::Cpu) else {
        return;
    };
    for (name, info) in &weights.tensors {
        let values = info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if values.is_some_and(|n| n <= MAX_WIDENED_VALUES) {
            let _ = vb.get(info.shape.as_slice(), name);
        }
    }
});
