//! Reads tensors one at a time from a single or sharded safetensors checkpoint, so memory
//! stays bounded by the largest tensor rather than the model.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use half::{bf16, f16};
use serde::Deserialize;

use crate::error::ConvertError;

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";
/// Refuse absurd headers before allocating for them (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    start: u64,
}

/// The tensors of a checkpoint, by name; data is read on demand.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<PathBuf>,
    entries: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self, ConvertError> {
        let index = dir.join(INDEX_FILE);
        let files = if index.is_file() {
            shard_files(dir, &index)?
        } else if dir.join(SINGLE_FILE).is_file() {
            vec![dir.join(SINGLE_FILE)]
        } else {
            return Err(ConvertError::MissingWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut entries = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            read_header(file, i, &mut entries)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            entries,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Checks a tensor's shape against what the config implies.
    pub fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<(), ConvertError> {
        let entry = self.entry(name)?;
        if entry.shape != expected {
            return Err(ConvertError::TensorShape {
                path: self.files[entry.file].clone(),
                name: name.to_owned(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        Ok(())
    }

    /// Reads one tensor as f32 on the CPU.
    pub fn load_f32(&self, name: &str) -> Result<Tensor, ConvertError> {
        let entry = self.entry(name)?;
        let path = &self.files[entry.file];
        let count: usize = entry.shape.iter().product();
        let mut bytes = vec![0u8; count * entry.dtype.size()];
        let read = |source| ConvertError::Read {
            path: path.clone(),
            source,
        };
        let mut file = File::open(path).map_err(read)?;
        file.seek(SeekFrom::Start(entry.start)).map_err(read)?;
        file.read_exact(&mut bytes).map_err(read)?;
        let values: Vec<f32> = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        Tensor::from_vec(values, entry.shape.as_slice(), &Device::Cpu).map_err(|e| {
            ConvertError::Corrupt {
                path: path.clone(),
                detail: format!("tensor {name}: {e}"),
            }
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry, ConvertError> {
        self.entries
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_owned(),
            })
    }
}

fn shard_files(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let bytes = std::fs::read(index).map_err(|source| ConvertError::Read {
        path: index.to_path_buf(),
        source,
    })?;
    let parsed: Index = serde_json::from_slice(&bytes).map_err(|e| ConvertError::Corrupt {
        path: index.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut shards: Vec<&String> = parsed.weight_map.values().collect();
    shards.sort();
    shards.dedup();
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        let is_plain_name = Path::new(shard)
            .file_name()
            .is_some_and(|f| f == shard.as_str());
        let file = dir.join(shard);
        if !is_plain_name || !file.is_file() {
            return Err(ConvertError::MissingShard {
                index: index.to_path_buf(),
                shard: shard.clone(),
            });
        }
        files.push(file);
    }
    Ok(files)
}

fn read_header(
    path: &Path,
    file_index: usize,
    out: &mut HashMap<String, Entry>,
) -> Result<(), ConvertError> {
    let read = |source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |detail: String| ConvertError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(read)?;
    let file_len = file.metadata().map_err(read)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| corrupt("too short for a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len + 8 > file_len {
        return Err(corrupt(format!(
            "header length {header_len} does not fit the file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(read)?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("bad header: {e}")))?;
    let data_start = 8 + header_len;
    for (name, value) in map {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| corrupt(format!("bad header entry {name}: {e}")))?;
        let dtype = match entry.dtype.as_str() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            other => {
                return Err(ConvertError::TensorDtype {
                    path: path.to_path_buf(),
                    name,
                    dtype: other.to_owned(),
                });
            }
        };
        let count: usize = entry.shape.iter().product();
        let (begin, end) = entry.data_offsets;
        if end < begin
            || end - begin != (count * dtype.size()) as u64
            || data_start + end > file_len
        {
            return Err(corrupt(format!(
                "tensor {name}'s data offsets do not match its shape or the file size"
            )));
        }
        out.insert(
            name,
            Entry {
                file: file_index,
                dtype,
                shape: entry.shape,
                start: data_start + begin,
            },
        );
    }
    Ok(())
}
