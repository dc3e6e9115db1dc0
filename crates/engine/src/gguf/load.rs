//! Builds a whole model from the converter's two GGUF files: the language model keeps its
//! quantized matrices; the vision tower runs its linears on the engine's Q8_0 kernel
//! ([`GgufTower`]) and the small projector is widened to f32.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use impchat_input::image::{DecodeLimits, ImageAspect};
use impchat_input::template::ChatTemplate;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{PreTokenizerWrapper, Tokenizer};

use super::vision_weights::load_vision_tower;
use super::{spm, GgufFile};
use crate::config::Family;
use crate::error::EngineError;
use crate::linear::Linear;
use crate::lm::phi2::Phi2;
use crate::lm::phi3::Phi3;
use crate::lm::qwen2::Qwen2;
use crate::lm::{KvCache, LanguageModel};
use crate::memory::ReleaseFreedMemory;
use crate::model::{FeatureCache, Inner, ModelInfo, Runtime, Vision, DEFAULT_FEATURE_CACHE_BYTES};
use crate::projector::Projector;

const MMPROJ_PREFIX: &str = "mmproj-";

/// The `mmproj-{name}-{quant}.gguf` beside `lm_path` (`{name}-{quant}.gguf`): the one
/// whose name matches, or the only one in the folder; `None` when there is none.
pub fn find_mmproj(lm_path: &Path) -> Result<Option<PathBuf>, EngineError> {
    let dir = lm_path.parent().unwrap_or(Path::new("."));
    let stem = lm_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = stem
        .rsplit_once('-')
        .map_or(stem.as_str(), |(name, _)| name);
    let entries = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            file.starts_with(MMPROJ_PREFIX) && file.ends_with(".gguf")
        })
        .collect();
    candidates.sort();
    let matching: Vec<&PathBuf> = candidates
        .iter()
        .filter(|path| {
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .is_some_and(|f| f.starts_with(&format!("{MMPROJ_PREFIX}{name}-")))
        })
        .collect();
    match (matching.as_slice(), candidates.as_slice()) {
        ([one], _) => Ok(Some((*one).clone())),
        ([], [one]) => Ok(Some(one.clone())),
        ([], []) => Ok(None),
        _ => Err(EngineError::SeveralVisionFiles {
            model: lm_path.to_path_buf(),
            count: matching.len().max(candidates.len()),
            pattern: format!("{MMPROJ_PREFIX}{name}-*.gguf"),
        }),
    }
}

/// Reads both files into the parts of a [`crate::Model`].
pub(crate) fn load_parts(lm_path: &Path, mmproj: Option<&Path>) -> Result<Inner, EngineError> {
    let mut lm_file = GgufFile::open(lm_path)?;
    let arch = lm_file.architecture()?.to_string();
    let family = match arch.as_str() {
        "phi2" => Family::Phi2,
        "qwen2" => Family::Qwen2,
        "phi3" => Family::Phi3,
        other => {
            return Err(EngineError::UnsupportedModelType {
                found: other.to_string(),
            })
        }
    };
    // The layer count sizes the model: check it against the blocks present first.
    let declared = lm_file.usize(&format!("{arch}.block_count"))?;
    let present = crate::validate::count_layers(lm_file.tensor_names(), "blk.");
    crate::validate::expect_layers(declared, present, lm_path)?;
    if lm_file.usize(&format!("{arch}.context_length"))? == 0 {
        return Err(EngineError::InvalidConfig {
            path: lm_path.to_path_buf(),
            reason: format!("{arch}.context_length is 0"),
        });
    }
    let mmproj_path = match mmproj {
        Some(path) => Some(path.to_path_buf()),
        None => find_mmproj(lm_path)?,
    };
    let vision_file = match &mmproj_path {
        Some(path) => {
            let file = GgufFile::open(path)?;
            file.expect_architecture("clip")?;
            Some(file)
        }
        None => None,
    };

    let lm: Box<dyn LanguageModel> = match family {
        Family::Phi2 => Box::new(Phi2::from_gguf(&mut lm_file)?),
        Family::Qwen2 => Box::new(Qwen2::from_gguf(&lm_file)?),
        Family::Phi3 => Box::new(Phi3::from_gguf(&lm_file)?),
    };

    let tokenizer = tokenizer(&lm_file, lm_path)?;
    let template = match lm_file.string("imp.prompt_template")? {
        "phi2" => ChatTemplate::Phi2,
        "chatml" => ChatTemplate::ChatMl,
        "phi3" => ChatTemplate::Phi3,
        other => {
            return Err(EngineError::InvalidConfig {
                path: lm_path.to_path_buf(),
                reason: format!("imp.prompt_template {other:?} is not a known template"),
            })
        }
    };
    let image_aspect = match lm_file.string("imp.image_aspect_ratio")? {
        "pad" => ImageAspect::Pad,
        "square" | "squash" | "resize" => ImageAspect::Square,
        other => {
            return Err(EngineError::InvalidConfig {
                path: lm_path.to_path_buf(),
                reason: format!("imp.image_aspect_ratio {other:?} is not supported"),
            })
        }
    };

    let vision = match &vision_file {
        Some(file) => {
            let tower = load_vision_tower(file)?;
            let hidden = tower.config().hidden_size;
            let projector = projector(file, hidden, lm.hidden_size())?;
            Some(Vision { tower, projector })
        }
        None => None,
    };
    let vision_config = vision.as_ref().map(|v| v.tower.config().clone());

    let mut eos_token_ids = Vec::new();
    if let Ok(id) = lm_file.usize("tokenizer.ggml.eos_token_id") {
        eos_token_ids.push(id as u32);
    }
    for stop in template.stop_strings() {
        if let Some(id) = tokenizer.token_to_id(stop) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }

    let bos_token_id = match family {
        Family::Phi3 => tokenizer.token_to_id("<s>"),
        Family::Phi2 | Family::Qwen2 => None,
    };

    let id = lm_file
        .string("general.name")
        .map(str::to_string)
        .unwrap_or_else(|_| {
            lm_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let info = ModelInfo {
        name: id.clone(),
        id,
        family,
        path: lm_path.to_path_buf(),
        vision: vision.is_some(),
        image_size: vision_config.as_ref().map_or(0, |c| c.image_size as u32),
        visual_tokens: vision_config.as_ref().map_or(0, |c| c.num_patches()),
        context_length: lm_file.usize(&format!("{arch}.context_length"))?,
        quantization: lm_file.storage_dtype(),
        image_aspect,
        parameters: lm_file.parameter_count()
            + vision_file.as_ref().map_or(0, GgufFile::parameter_count),
    };
    warm_up(lm.as_ref())?;
    Ok(Inner {
        info,
        tokenizer,
        template,
        lm,
        vision,
        eos_token_ids,
        bos_token_id,
        runtime: Runtime::default(),
        decode_limits: DecodeLimits::default(),
        features: FeatureCache::new(DEFAULT_FEATURE_CACHE_BYTES),
        vision_runs: AtomicU64::new(0),
        _release: ReleaseFreedMemory,
    })
}

/// The tokenizer from `tokenizer.ggml.*`: GPT-2 byte-level BPE (Phi-2, Qwen1.5) through
/// candle, SentencePiece-style (Phi-3) through [`spm`].
fn tokenizer(lm_file: &GgufFile, lm_path: &Path) -> Result<Tokenizer, EngineError> {
    if lm_file.string("tokenizer.ggml.model")? == "llama" {
        return spm::tokenizer(lm_file);
    }
    let mut tokenizer = Tokenizer::from_gguf(lm_file.content()).map_err(|e| {
        EngineError::Tokenizer(format!(
            "cannot rebuild the tokenizer from {}: {e}",
            lm_path.display()
        ))
    })?;
    if lm_file.string("tokenizer.ggml.pre").ok() == Some("phi-2") {
        // candle's default GPT-2 pipeline adds a prefix space; Phi-2's (CodeGen) does not,
        // and a stray space before every prompt chunk changes the prompt ids.
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, true, true,
        ))));
    }
    Ok(tokenizer)
}

/// candle repacks each quantized matrix into its fast layout on first use; pay for that
/// (seconds on a 3B model) at load time rather than in the first answer.
fn warm_up(lm: &dyn LanguageModel) -> Result<(), EngineError> {
    let ids = Tensor::new(&[[0u32, 0]], &Device::Cpu)?;
    let mut cache = KvCache::new(lm.num_layers());
    lm.forward_embeds_last(&lm.embed(&ids)?, &mut cache, 0)?;
    Ok(())
}

/// The `mlp2x_gelu` projector (`mm.0`, `mm.2`), widened to f32: it is small, and exact
/// f32 keeps its output, the language model's input, as close to the checkpoint's.
fn projector(file: &GgufFile, in_dim: usize, out_dim: usize) -> Result<Projector, EngineError> {
    // The projector's output is spliced into the language model's input: say so plainly
    // when the two files belong to different models.
    let projected = file.shape("mm.2.weight")?.first().copied().unwrap_or(0);
    if projected != out_dim {
        return Err(EngineError::ProjectorMismatch {
            path: file.path().to_path_buf(),
            projector: projected,
            language_model: out_dim,
        });
    }
    let dense = |name: &str, in_dim: usize| -> Result<Linear, EngineError> {
        let weight = format!("{name}.weight");
        file.expect_matrix(&weight, (out_dim, in_dim))?;
        let bias = file.bias(&format!("{name}.bias"), out_dim)?;
        Ok(Linear::dense(file.f32(&weight)?, Some(bias)))
    };
    Ok(Projector::from_linears(
        dense("mm.0", in_dim)?,
        dense("mm.2", out_dim)?,
    ))
}
