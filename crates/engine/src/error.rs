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

    #[error("{}", overflow_message(*needed, *per_image, *limit, *images, *earlier_turns))]
    ContextOverflow {
        needed: usize,
        per_image: usize,
        limit: usize,
        /// Images in the whole conversation.
        images: usize,
        /// Messages before the last question (the history the prompt repeats).
        earlier_turns: usize,
    },

    #[error(
        "{}: the index names a shard outside the model folder ({shard:?}); every \
         model-*.safetensors shard must sit in the folder itself (re-download the model)",
        index.display()
    )]
    ShardOutsideFolder { shard: String, index: PathBuf },

    #[error(
        "this model has no vision projector, so it cannot look at images; its mmproj file \
         (mmproj-*.gguf) belongs beside the .gguf (ask again without images, or put the \
         mmproj file next to it and load the model again)"
    )]
    NoVisionTower,

    #[error(
        "found {count} vision files ({pattern}) next to {}; keep exactly one there, or name \
         the one to use",
        model.display()
    )]
    SeveralVisionFiles {
        model: PathBuf,
        count: usize,
        pattern: String,
    },

    #[error(
        "the model's weights are damaged ({found} in the output); re-download or re-convert it"
    )]
    DamagedWeights { found: &'static str },

    #[error(
        "the vision projector in {} outputs {projector} values per image token but the \
         language model's hidden size is {language_model}; the vision file belongs to a \
         different model (use the mmproj-*.gguf converted with this model)",
        path.display()
    )]
    ProjectorMismatch {
        path: PathBuf,
        projector: usize,
        language_model: usize,
    },

    #[error(transparent)]
    File(#[from] impchat_input::files::FileError),

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

/// Advice that fits what filled the context: images, a long history, or one long question.
fn overflow_message(
    needed: usize,
    per_image: usize,
    limit: usize,
    images: usize,
    earlier_turns: usize,
) -> String {
    let advice = if images > 0 {
        format!("use fewer images ({images} attached, {per_image} per image) or start a new chat")
    } else if earlier_turns > 0 {
        "the conversation so far is too long: start a new chat, or ask a shorter question"
            .to_string()
    } else {
        "shorten the question".to_string()
    };
    format!(
        "the conversation needs {needed} tokens but the model's context holds {limit}; {advice}"
    )
}

impl EngineError {
    /// A missing file stays [`EngineError::MissingFile`] (its message says what a model
    /// folder needs); everything else keeps the file error's own words.
    pub(crate) fn from_file(err: impchat_input::files::FileError) -> Self {
        if err.is_not_found() {
            EngineError::MissingFile {
                path: err.path().to_path_buf(),
            }
        } else {
            EngineError::File(err)
        }
    }

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
