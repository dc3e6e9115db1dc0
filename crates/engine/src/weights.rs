//! Finds a checkpoint's safetensors files (one file or the shards of an index), checks
//! every header against its file size before anything is mapped, and opens them mmap'd.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;

use impchat_input::files::{caps, open_regular, regular_file_len};

use crate::config::read_json;
use crate::error::EngineError;

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";
/// Headers are small; anything larger than this is a corrupt length prefix.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// As written in the header: "F32", "F16", "BF16", ...
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The checked weight files of a checkpoint and what each tensor looks like.
#[derive(Debug, Clone)]
pub struct WeightFiles {
    pub files: Vec<PathBuf>,
    pub tensors: HashMap<String, TensorInfo>,
}

impl WeightFiles {
    /// Locates and checks the weights in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let files = locate(dir)?;
        let mut tensors = HashMap::new();
        for file in &files {
            tensors.extend(read_header(file)?);
        }
        Ok(Self { files, tensors })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Total number of weights over all files.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// The storage type most weights use, lower-case ("f32", "f16", "bf16").
    pub fn storage_dtype(&self) -> String {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for t in self.tensors.values() {
            *counts.entry(t.dtype.as_str()).or_default() +=
                t.shape.iter().product::<usize>() as u64;
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d.to_ascii_lowercase())
            .unwrap_or_else(|| "f32".to_string())
    }

    /// Maps every file; tensors are converted to `dtype` as they are read.
    pub fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<VarBuilder<'static>, EngineError> {
        // SAFETY: the files are opened read-only and only read through the map; the
        // caller must not modify them while the model is loaded (as with any mmap'd model).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&self.files, dtype, device) };
        vb.map_err(|e| EngineError::CorruptWeights {
            path: self.files.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })
    }
}

/// The weight files to load: the shards named by the index, or the single file.
fn locate(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let index = dir.join(INDEX_FILE);
    if regular_file_len(&index)?.is_some() {
        let value = read_json(&index, caps::INDEX)?;
        let Some(map) = value.get("weight_map").and_then(Value::as_object) else {
            return Err(EngineError::InvalidConfig {
                path: index,
                reason: "no \"weight_map\" object".to_string(),
            });
        };
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            if !stays_inside(shard) {
                return Err(EngineError::ShardOutsideFolder {
                    shard: shard.to_string(),
                    index,
                });
            }
            let path = dir.join(shard);
            if regular_file_len(&path)?.is_none() {
                return Err(EngineError::MissingShard { shard: path, index });
            }
            files.push(path);
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if regular_file_len(&single)?.is_some() {
        return Ok(vec![single]);
    }
    Err(EngineError::MissingFile { path: single })
}

/// A shard name is a path below the model folder: no `..`, no root, no drive.
fn stays_inside(shard: &str) -> bool {
    let path = Path::new(shard);
    !shard.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// Reads the JSON header of a safetensors file and checks that the file is long enough
/// to hold every tensor it describes.
pub fn read_header(path: &Path) -> Result<HashMap<String, TensorInfo>, EngineError> {
    let corrupt = |reason: String| EngineError::CorruptWeights {
        path: path.to_path_buf(),
        reason,
    };
    let (mut file, file_len) = open_regular(path).map_err(EngineError::from_file)?;
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| corrupt(format!("only {file_len} bytes, too short for a header")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(corrupt(format!(
            "the header claims {header_len} bytes but the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| corrupt(format!("cannot read the header: {e}")))?;
    let header: HashMap<String, Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("unreadable header: {e}")))?;

    let data_len = file_len - 8 - header_len;
    let mut tensors = HashMap::new();
    let mut needed = 0u64;
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let info =
            parse_entry(&entry).ok_or_else(|| corrupt(format!("bad header entry {name}")))?;
        let end = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.get(1))
            .and_then(Value::as_u64)
            .ok_or_else(|| corrupt(format!("bad data offsets for {name}")))?;
        needed = needed.max(end);
        tensors.insert(name, info);
    }
    if needed > data_len {
        return Err(corrupt(format!(
            "the file holds {data_len} bytes of tensor data but its header needs {needed} \
             (incomplete download?)"
        )));
    }
    Ok(tensors)
}

fn parse_entry(entry: &Value) -> Option<TensorInfo> {
    let dtype = entry.get("dtype")?.as_str()?.to_string();
    let shape = entry
        .get("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<Vec<_>>>()?;
    Some(TensorInfo { dtype, shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn write_checkpoint(dir: &Path) -> PathBuf {
        let a = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .expect("a")
            .reshape((2, 3))
            .expect("r");
        let path = dir.join(SINGLE_FILE);
        candle_core::safetensors::save(&HashMap::from([("a".to_string(), a)]), &path)
            .expect("save");
        path
    }

    #[test]
    fn reads_header_and_counts_parameters() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_checkpoint(dir.path());
        let weights = WeightFiles::open(dir.path()).expect("open");
        assert_eq!(weights.parameter_count(), 6);
        assert_eq!(weights.storage_dtype(), "f32");
        assert!(weights.contains("a"));
        let vb = weights.var_builder(DType::F32, &Device::Cpu).expect("vb");
        let a: Vec<Vec<f32>> = vb.get((2, 3), "a").expect("get").to_vec2().expect("vec");
        assert_eq!(a[1], vec![3.0, 4.0, 5.0]);
    }

    #[test]
    fn truncated_file_is_reported_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_checkpoint(dir.path());
        let len = std::fs::metadata(&path).expect("meta").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(len - 4).expect("truncate");
        match WeightFiles::open(dir.path()) {
            Err(EngineError::CorruptWeights { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(reason.contains("incomplete"), "{reason}");
            }
            other => panic!("expected CorruptWeights, got {other:?}"),
        }
    }

    #[test]
    fn missing_weights_name_the_expected_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = WeightFiles::open(dir.path()).expect_err("no weights");
        assert!(
            matches!(err, EngineError::MissingFile { ref path } if path.ends_with(SINGLE_FILE))
        );
        assert!(
            err.to_string().contains("complete Hugging Face checkpoint"),
            "{err}"
        );
    }
}
