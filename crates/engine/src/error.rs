//! Everything that can go wrong while loading a model or answering, worded for the user.

use std::path::PathBuf;

/// Model families this engine runs, as named in `config.json`'s `model_type`.
pub const SUPPORTED_MODEL_TYPES: &str =
    "\"imp\" (Phi-2), \"imp_qwen2\" (Qwen1.5), \"imp_phi3\" (Phi-3)";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "{} is missing; the model folder must be a complete Hugging Face checkpoint \
         (config.json, tokenizer files and model*.safetensors)",
        path.display()
    )]
    MissingFile { path: PathBuf },

    #[error(
        "{} is not a model folder; pick the folder of a Hugging Face Imp checkpoint \
         (the one holding config.json)",
        path.display()
    )]
    NotAFolder { path: PathBuf },

    #[error(
        "weight shard {} listed in {} is missing; download the model again or copy every \
         model-*.safetensors file into the folder",
        shard.display(),
        index.display()
    )]
    MissingShard { shard: PathBuf, index: PathBuf },

    #[error("{} is truncated or corrupt ({reason}); download it again", path.display())]
    CorruptWeights { path: PathBuf, reason: String },

    #[error("cannot read {}: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },

    #[error("model type {found:?} is not supported; supported types: {SUPPORTED_MODEL_TYPES}")]
    UnsupportedModelType { found: String },

    #[error(
        "weight {name} is missing from the checkpoint; the files do not match config.json \
         (wrong or partial download?)"
    )]
    TensorMissing { name: String },

    #[error(
        "weight {name} has shape {found:?} but config.json implies {expected:?}; the weights \
         and config.json belong to different models"
    )]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("image {index}: {reason}")]
    Image { index: usize, reason: String },

    #[error("the prompt is empty; type a question or attach an image")]
    EmptyPrompt,

    #[error(
        "the conversation needs {needed} tokens (incl. {per_image} per image) but the model \
         allows {limit}; start a new chat or use fewer images"
    )]
    ContextOverflow {
        needed: usize,
        per_image: usize,
        limit: usize,
    },

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("model computation failed: {0}")]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for EngineError {
    fn from(err: candle_core::Error) -> Self {
        match innermost(&err) {
            candle_core::Error::CannotFindTensor { path } => {
                EngineError::TensorMissing { name: path.clone() }
            }
            candle_core::Error::UnexpectedShape { msg, expected, got } => {
                let name = msg
                    .strip_prefix("shape mismatch for ")
                    .unwrap_or(msg)
                    .to_string();
                EngineError::ShapeMismatch {
                    name,
                    expected: expected.dims().to_vec(),
                    found: got.dims().to_vec(),
                }
            }
            _ => EngineError::Candle(err),
        }
    }
}

/// Looks through candle's backtrace/context wrappers for the error that actually happened.
fn innermost(err: &candle_core::Error) -> &candle_core::Error {
    match err {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::Context { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => innermost(inner),
        other => other,
    }
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::MissingFile { path }
        } else {
            EngineError::Io { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use std::collections::HashMap;

    #[test]
    fn candle_lookup_errors_become_typed_errors() {
        let mut map = HashMap::new();
        map.insert(
            "w".to_string(),
            Tensor::zeros((2, 3), DType::F32, &Device::Cpu).expect("zeros"),
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);

        let err = EngineError::from(vb.get((3, 2), "w").expect_err("wrong shape"));
        match err {
            EngineError::ShapeMismatch {
                name,
                expected,
                found,
            } => {
                assert_eq!(name, "w");
                assert_eq!(expected, vec![3, 2]);
                assert_eq!(found, vec![2, 3]);
            }
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }

        let err = EngineError::from(vb.get((1,), "nope").expect_err("missing"));
        assert!(
            matches!(err, EngineError::TensorMissing { ref name } if name == "nope"),
            "{err:?}"
        );
    }
}
