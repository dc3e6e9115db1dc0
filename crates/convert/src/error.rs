use std::path::PathBuf;

use impchat_input::TokenizerError;

/// Everything that can stop a conversion. Each message names the file or tensor at fault
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{} is not a model folder: it has no config.json. Pick the folder that holds the checkpoint's config.json and *.safetensors files.", dir.display())]
    MissingConfig { dir: PathBuf },
    #[error("Could not read {}: {source}. Check the file exists and is readable.", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged or not what a Hugging Face checkpoint holds ({detail}). Re-download the model.", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{} says model_type {found:?}, which is not an Imp checkpoint; the converter handles \"imp\" (Phi-2), \"imp_qwen2\" (Qwen1.5) and \"imp_phi3\" (Phi-3).", path.display())]
    UnknownModelType { path: PathBuf, found: String },
    #[error("{} has a setting the converter cannot express: {detail}.", path.display())]
    UnsupportedConfig { path: PathBuf, detail: String },
    #[error("{} holds no weights: expected model.safetensors or model.safetensors.index.json with its shards. (PyTorch .bin checkpoints are not supported; save them as safetensors first.)", dir.display())]
    MissingWeights { dir: PathBuf },
    #[error("Shard {shard} named by {} is missing from the folder. Download every model-*-of-*.safetensors file of the checkpoint.", index.display())]
    MissingShard { index: PathBuf, shard: String },
    #[error("Tensor {name} is missing from the checkpoint in {}. The download may be incomplete, or this is not an Imp checkpoint.", dir.display())]
    MissingTensor { dir: PathBuf, name: String },
    #[error("Tensor {name} in {} has shape {found:?}, but config.json implies {expected:?}. The weights do not belong to this config.", path.display())]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("Tensor {name} in {} has dtype {dtype}, which the converter cannot read (it reads F32, F16 and BF16).", path.display())]
    TensorDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("Unknown quantization {found:?} for the {part}; choose one of {allowed}.")]
    UnsupportedQuant {
        part: &'static str,
        found: String,
        allowed: &'static str,
    },
    #[error("Could not load the tokenizer from {}: {source}", dir.display())]
    Tokenizer {
        dir: PathBuf,
        source: TokenizerError,
    },
    #[error("The tokenizer in {} is inconsistent with config.json: {detail}.", dir.display())]
    Vocabulary { dir: PathBuf, detail: String },
    #[error("Could not quantize tensor {name} to {dtype}: {detail}")]
    Quantize {
        name: String,
        dtype: String,
        detail: String,
    },
    #[error("{name:?} cannot be used as an output file name: use letters, digits, '.', '-' and '_' only.")]
    InvalidName { name: String },
    #[error("{} already exists. Remove it or convert with overwrite enabled.", path.display())]
    OutputExists { path: PathBuf },
    #[error("Could not write {}: {source}. Check there is free disk space and the folder is writable.", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
