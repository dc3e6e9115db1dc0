//! Checks that a folder holds an Imp checkpoint the engine can load: config, weights and
//! tokenizer present and structurally sound. Reads only headers; the engine loads tensors.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use serde::{Deserialize, Serialize};

use crate::catalog::LmFamily;

pub const CONFIG_FILE: &str = "config.json";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_WEIGHTS_FILE: &str = "model.safetensors";
/// Same limit the safetensors crate applies to headers.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Tensor-name fragments every Imp checkpoint must contain, with a human name for messages.
const REQUIRED_GROUPS: [(&str, &[&str]); 4] = [
    ("SigLIP vision tower", &["vision_tower"]),
    ("multimodal projector", &["mm_projector"]),
    (
        "language-model token embeddings",
        &["embed_tokens", "embd.wte"],
    ),
    ("language-model output head", &["lm_head"]),
];

/// Root files copied on import: everything the engine may read, no Python remote code.
const IMPORTED_EXTENSIONS: [&str; 5] = ["json", "txt", "model", "safetensors", "tiktoken"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerFiles {
    TokenizerJson,
    VocabAndMerges,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    pub path: String,
    pub tensors: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    pub model_type: String,
    pub family: LmFamily,
    pub shards: Vec<ShardReport>,
    pub tensor_count: usize,
    pub tokenizer: TokenizerFiles,
    /// Root files an import copies (relative paths).
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0} is not a folder; choose the folder that contains config.json and the .safetensors files")]
    NotAFolder(PathBuf),
    #[error("no config.json in {0}; choose the folder of a Hugging Face Imp checkpoint")]
    MissingConfig(PathBuf),
    #[error(
        "{path} cannot be read as JSON ({reason}); the checkpoint is damaged, download it again"
    )]
    BadConfig { path: PathBuf, reason: String },
    #[error("{}", not_imp_message(.model_type.as_deref()))]
    NotImp { model_type: Option<String> },
    #[error("{}", no_weights_message(.dir, *.found_bin))]
    NoWeights { dir: PathBuf, found_bin: bool },
    #[error("{path} is not a valid safetensors index ({reason}); download it again")]
    BadIndex { path: PathBuf, reason: String },
    #[error("weight shard {shard} is missing (listed in {INDEX_FILE}); the download is incomplete, fetch that file again")]
    MissingShard { shard: String },
    #[error("weight shard {shard} is damaged: {reason}; download it again")]
    BadShard { shard: String, reason: String },
    #[error("{INDEX_FILE} puts tensor {tensor} in {shard}, but that shard does not contain it; the files come from different revisions, download them again together")]
    TensorNotInShard { tensor: String, shard: String },
    #[error("the weights have no {}; this is not a complete Imp (vision + projector + language model) checkpoint", .missing.join(", no "))]
    MissingTensors { missing: Vec<&'static str> },
    #[error(
        "no tokenizer in {0}: expected tokenizer.json, or vocab.json together with merges.txt"
    )]
    MissingTokenizer(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The engine's own check (what loading would refuse): config numbers against the
    /// weights, file kinds, sizes.
    #[error("{0}")]
    WouldNotLoad(impchat_engine::EngineError),
}

fn not_imp_message(model_type: Option<&str>) -> String {
    let found = match model_type {
        Some(t) => format!("config.json says model_type \"{t}\""),
        None => "config.json has no model_type".to_string(),
    };
    format!(
        "{found}; ImpChat runs only MILVLG Imp checkpoints (model_type imp, imp_qwen2 or imp_phi3)"
    )
}

fn no_weights_message(dir: &Path, found_bin: bool) -> String {
    if found_bin {
        format!("{} has only PyTorch .bin weights; ImpChat needs .safetensors (download the current revision of the model)", dir.display())
    } else {
        format!(
            "no {SINGLE_WEIGHTS_FILE} or {INDEX_FILE} in {}; the weights are missing",
            dir.display()
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { path, source }
}

#[derive(Deserialize)]
struct ConfigHead {
    model_type: Option<String>,
}

#[derive(Deserialize)]
struct WeightIndex {
    weight_map: BTreeMap<String, String>,
}

/// Validates the checkpoint in `dir` and describes it.
pub fn validate_checkpoint(dir: &Path) -> Result<CheckpointReport, CheckpointError> {
    if !dir.is_dir() {
        return Err(CheckpointError::NotAFolder(dir.to_path_buf()));
    }
    let (model_type, family) = read_model_type(dir)?;
    let (shards, tensor_count) = check_weights(dir)?;
    let tokenizer = find_tokenizer(dir)?;
    Ok(CheckpointReport {
        model_type,
        family,
        shards,
        tensor_count,
        tokenizer,
        files: importable_files(dir)?,
    })
}

fn read_model_type(dir: &Path) -> Result<(String, LmFamily), CheckpointError> {
    let path = dir.join(CONFIG_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingConfig(dir.to_path_buf()))
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let config: ConfigHead =
        serde_json::from_slice(&text).map_err(|e| CheckpointError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let model_type = config.model_type;
    match model_type.as_deref().and_then(LmFamily::from_model_type) {
        Some(family) => Ok((model_type.unwrap_or_default(), family)),
        None => Err(CheckpointError::NotImp { model_type }),
    }
}

fn check_weights(dir: &Path) -> Result<(Vec<ShardReport>, usize), CheckpointError> {
    let index_path = dir.join(INDEX_FILE);
    let single = dir.join(SINGLE_WEIGHTS_FILE);
    // Shard name -> tensors the index assigns to it (empty for a single-file checkpoint).
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if index_path.exists() {
        let text = fs::read(&index_path).map_err(io_err(&index_path))?;
        let index: WeightIndex =
            serde_json::from_slice(&text).map_err(|e| CheckpointError::BadIndex {
                path: index_path.clone(),
                reason: e.to_string(),
            })?;
        if index.weight_map.is_empty() {
            return Err(CheckpointError::BadIndex {
                path: index_path,
                reason: "weight_map is empty".into(),
            });
        }
        for (tensor, shard) in index.weight_map {
            if !is_plain_file_name(&shard) {
                return Err(CheckpointError::BadIndex {
                    path: index_path,
                    reason: format!("shard name {shard:?} is not a file name in this folder"),
                });
            }
            expected.entry(shard).or_default().push(tensor);
        }
    } else if single.exists() {
        expected.insert(SINGLE_WEIGHTS_FILE.to_string(), Vec::new());
    } else {
        return Err(CheckpointError::NoWeights {
            dir: dir.to_path_buf(),
            found_bin: has_pytorch_bin(dir),
        });
    }

    let mut all_names: HashSet<String> = HashSet::new();
    let mut shards = Vec::new();
    for (shard, tensors) in &expected {
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(CheckpointError::MissingShard {
                shard: shard.clone(),
            });
        }
        let names = read_shard_tensor_names(&path).map_err(|reason| CheckpointError::BadShard {
            shard: shard.clone(),
            reason,
        })?;
        if let Some(tensor) = tensors.iter().find(|t| !names.contains(*t)) {
            return Err(CheckpointError::TensorNotInShard {
                tensor: tensor.clone(),
                shard: shard.clone(),
            });
        }
        let bytes = fs::metadata(&path).map_err(io_err(&path))?.len();
        shards.push(ShardReport {
            path: shard.clone(),
            tensors: names.len(),
            bytes,
        });
        all_names.extend(names);
    }
    let missing: Vec<&'static str> = REQUIRED_GROUPS
        .iter()
        .filter(|(_, fragments)| {
            !all_names
                .iter()
                .any(|name| fragments.iter().any(|f| name.contains(f)))
        })
        .map(|(group, _)| *group)
        .collect();
    if !missing.is_empty() {
        return Err(CheckpointError::MissingTensors { missing });
    }
    Ok((shards, all_names.len()))
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && name != ".." && name != "."
}

fn has_pytorch_bin(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".bin"))
        })
        .unwrap_or(false)
}

/// Reads a safetensors header and checks it against the file length. Returns tensor names.
pub fn read_shard_tensor_names(path: &Path) -> Result<BTreeSet<String>, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        format!("the file is only {file_len} bytes, too short for a safetensors header")
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(format!(
            "its header claims {header_len} bytes but the file is {file_len} bytes"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| format!("unreadable header: {e}"))?;
    let data_len = metadata.data_len() as u64;
    let expected_len = 8 + header_len + data_len;
    if expected_len != file_len {
        return Err(format!(
            "its header describes {expected_len} bytes but the file has {file_len} (truncated or padded)"
        ));
    }
    Ok(metadata.tensors().into_keys().collect())
}

fn find_tokenizer(dir: &Path) -> Result<TokenizerFiles, CheckpointError> {
    if dir.join("tokenizer.json").is_file() {
        Ok(TokenizerFiles::TokenizerJson)
    } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
        Ok(TokenizerFiles::VocabAndMerges)
    } else {
        Err(CheckpointError::MissingTokenizer(dir.to_path_buf()))
    }
}

fn importable_files(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let wanted = !name.starts_with('.')
            && name != crate::manifest::MANIFEST_FILE
            && Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|ext| IMPORTED_EXTENSIONS.contains(&ext));
        if wanted && entry.path().is_file() {
            files.push(name.to_string());
        }
    }
    files.sort();
    Ok(files)
}
