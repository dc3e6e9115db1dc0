//! Every number of a model's config checked against the weights actually present, before
//! anything is allocated from it: a config claiming 10⁹ layers or a hidden size its
//! embedding table does not have is refused with both numbers named, not an abort.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{CheckpointConfig, Family, LmConfig};
use crate::error::EngineError;
use crate::lm::phi2;
use crate::weights::WeightFiles;

/// How many distinct layers `prefix{N}.…` the tensor names hold.
pub(crate) fn count_layers<'a>(names: impl Iterator<Item = &'a str>, prefix: &str) -> usize {
    names
        .filter_map(|name| name.strip_prefix(prefix))
        .filter_map(|rest| rest.split('.').next())
        .filter_map(|index| index.parse::<usize>().ok())
        .collect::<BTreeSet<_>>()
        .len()
}

fn invalid(path: &Path, reason: String) -> EngineError {
    EngineError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    }
}

/// The language model's layer count must be exactly the layers the weights hold.
pub(crate) fn expect_layers(
    declared: usize,
    present: usize,
    path: &Path,
) -> Result<(), EngineError> {
    if declared == 0 || declared != present {
        return Err(invalid(
            path,
            format!(
                "it declares {declared} language-model layers but the weights hold {present}; \
                 the config and the weights belong to different models"
            ),
        ));
    }
    Ok(())
}

/// The vision tower keeps at most the layers the weights hold (Imp drops the last one).
pub(crate) fn expect_kept_layers(
    declared: usize,
    present: usize,
    path: &Path,
) -> Result<(), EngineError> {
    if declared == 0 || declared > present {
        return Err(invalid(
            path,
            format!(
                "it asks for {declared} vision-tower layers but the weights hold {present}; \
                 the config and the weights belong to different models"
            ),
        ));
    }
    Ok(())
}

/// The language-model numbers of `config.json` against the checkpoint's tensors.
pub(crate) fn check_language_model(
    config: &CheckpointConfig,
    weights: &WeightFiles,
) -> Result<(), EngineError> {
    let path = config.path.as_path();
    let (layer_prefix, embedding) = match config.family {
        Family::Phi2 => match phi2::Layout::detect(|name| weights.contains(name)) {
            Some(phi2::Layout::Msft) => ("transformer.h.", "transformer.embd.wte.weight"),
            _ => ("model.layers.", "model.embed_tokens.weight"),
        },
        Family::Qwen2 | Family::Phi3 => ("model.layers.", "model.embed_tokens.weight"),
    };
    let (vocab, hidden, layers, context) = match &config.lm {
        LmConfig::Phi2(c) => (
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.max_position_embeddings,
        ),
        LmConfig::Qwen2(c) => (
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.max_position_embeddings,
        ),
        LmConfig::Phi3(c) => (
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.max_position_embeddings,
        ),
    };
    if context == 0 {
        return Err(invalid(path, "max_position_embeddings is 0".to_string()));
    }
    let present = count_layers(weights.tensors.keys().map(String::as_str), layer_prefix);
    expect_layers(layers, present, path)?;
    let Some(table) = weights.tensors.get(embedding) else {
        return Err(EngineError::TensorMissing {
            name: embedding.to_string(),
        });
    };
    if table.shape != [vocab, hidden] {
        return Err(invalid(
            path,
            format!(
                "vocab_size {vocab} and hidden_size {hidden} do not match the embedding \
                 table {embedding} of shape {:?}; the config and the weights belong to \
                 different models",
                table.shape
            ),
        ));
    }
    Ok(())
}

/// The projector must map the tower's width to the language model's hidden size.
pub(crate) fn check_projector(
    weights: &WeightFiles,
    prefix: &str,
    vision_hidden: usize,
    lm_hidden: usize,
    path: &Path,
) -> Result<(), EngineError> {
    let output = format!("{prefix}mm_projector.2.weight");
    let input = format!("{prefix}mm_projector.0.weight");
    for name in [&output, &input] {
        if !weights.contains(name) {
            return Err(EngineError::TensorMissing { name: name.clone() });
        }
    }
    let projected = weights.tensors[&output].shape.first().copied().unwrap_or(0);
    if projected != lm_hidden {
        return Err(EngineError::ProjectorMismatch {
            path: path.to_path_buf(),
            projector: projected,
            language_model: lm_hidden,
        });
    }
    let takes = weights.tensors[&input].shape.get(1).copied().unwrap_or(0);
    if takes != vision_hidden {
        return Err(invalid(
            path,
            format!(
                "the vision tower's hidden_size is {vision_hidden} but the projector \
                 {input} takes {takes} values"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_counted_once_each() {
        let names = [
            "model.layers.0.mlp.weight",
            "model.layers.0.attn.weight",
            "model.layers.1.mlp.weight",
            "model.layers.x.mlp.weight",
            "model.norm.weight",
        ];
        assert_eq!(count_layers(names.into_iter(), "model.layers."), 2);
    }
}
