//! The parts of an Imp `config.json` the converter needs, for both the old phi-msft keys
//! (`n_embd`, `n_layer`, …) and the Hugging Face ones (`hidden_size`, …).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConvertError;

/// The language model family of an Imp checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `model_type: imp`, Phi-2.
    Phi2,
    /// `model_type: imp_qwen2`, Qwen1.5.
    Qwen2,
    /// `model_type: imp_phi3`, Phi-3-mini.
    Phi3,
}

impl Family {
    /// The llama.cpp architecture name (`general.architecture`).
    pub fn arch(self) -> &'static str {
        match self {
            Self::Phi2 => "phi2",
            Self::Qwen2 => "qwen2",
            Self::Phi3 => "phi3",
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Self::Phi2 => "imp",
            Self::Qwen2 => "imp_qwen2",
            Self::Phi3 => "imp_phi3",
        }
    }
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(alias = "n_embd")]
    hidden_size: Option<usize>,
    #[serde(alias = "n_layer")]
    num_hidden_layers: Option<usize>,
    #[serde(alias = "n_head")]
    num_attention_heads: Option<usize>,
    #[serde(alias = "n_head_kv")]
    num_key_value_heads: Option<usize>,
    #[serde(alias = "n_inner")]
    intermediate_size: Option<usize>,
    #[serde(alias = "n_positions")]
    max_position_embeddings: Option<usize>,
    #[serde(alias = "layer_norm_epsilon")]
    layer_norm_eps: Option<f64>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rotary_dim: Option<usize>,
    rope_scaling: Option<serde_json::Value>,
    sliding_window: Option<usize>,
    vocab_size: Option<usize>,
    #[serde(default)]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
    pad_token_id: Option<u32>,
    image_aspect_ratio: Option<String>,
    image_token: Option<String>,
    mm_hidden_size: Option<usize>,
    mm_projector_type: Option<String>,
    mm_vision_select_layer: Option<i64>,
    mm_vision_select_feature: Option<String>,
    mm_vision_tower: Option<String>,
    vision_tower_config: Option<RawVision>,
}

#[derive(Deserialize, Default)]
struct RawVision {
    hidden_size: Option<usize>,
    image_size: Option<usize>,
    intermediate_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    num_attention_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
}

/// Language model hyper-parameters, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub context: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub rotary_dims: usize,
    pub vocab_size: usize,
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    /// Phi-3's attention window (Hugging Face applies it whenever the config sets one).
    pub sliding_window: Option<usize>,
}

impl LmConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// Vision tower + projector settings, resolved. `layers` is the number of encoder
/// layers Imp runs (the base tower's count cut at `mm_vision_select_layer`).
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub norm_eps: f32,
    pub projector_type: String,
    pub aspect_ratio: String,
    pub image_token: String,
}

impl VisionConfig {
    pub fn visual_tokens(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub family: Family,
    pub lm: LmConfig,
    pub vision: VisionConfig,
}

/// SigLIP-so400m-patch14-384, the tower every released Imp uses, for checkpoints whose
/// config.json leaves `vision_tower_config` out.
const SIGLIP_HIDDEN: usize = 1152;
const SIGLIP_INTERMEDIATE: usize = 4304;
const SIGLIP_HEADS: usize = 16;
const SIGLIP_LAYERS: usize = 27;
const SIGLIP_PATCH: usize = 14;
const SIGLIP_EPS: f64 = 1e-6;

pub fn read_config(dir: &Path) -> Result<ModelConfig, ConvertError> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(ConvertError::MissingConfig {
            dir: dir.to_path_buf(),
        });
    }
    let bytes = std::fs::read(&path).map_err(|source| ConvertError::Read {
        path: path.clone(),
        source,
    })?;
    let raw: RawConfig = serde_json::from_slice(&bytes).map_err(|e| ConvertError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    resolve(path, raw)
}

fn resolve(path: PathBuf, raw: RawConfig) -> Result<ModelConfig, ConvertError> {
    let model_type = raw.model_type.clone().unwrap_or_default();
    let family = match model_type.as_str() {
        "imp" => Family::Phi2,
        "imp_qwen2" => Family::Qwen2,
        "imp_phi3" => Family::Phi3,
        _ => {
            return Err(ConvertError::UnknownModelType {
                path,
                found: model_type,
            })
        }
    };
    let missing = |key: &str| ConvertError::Corrupt {
        path: path.clone(),
        detail: format!("it has no {key}"),
    };
    let unsupported = |detail: String| ConvertError::UnsupportedConfig {
        path: path.clone(),
        detail,
    };

    if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "rope_scaling is set; only plain RoPE checkpoints (as every released Imp) convert"
                .into(),
        ));
    }
    let hidden = raw.hidden_size.ok_or_else(|| missing("hidden_size"))?;
    let heads = raw
        .num_attention_heads
        .ok_or_else(|| missing("num_attention_heads"))?;
    if heads == 0 || hidden % heads != 0 {
        return Err(unsupported(format!(
            "hidden size {hidden} is not a multiple of {heads} attention heads"
        )));
    }
    let head_dim = hidden / heads;
    let norm_eps = match family {
        Family::Phi2 => raw
            .layer_norm_eps
            .ok_or_else(|| missing("layer_norm_eps"))?,
        Family::Qwen2 | Family::Phi3 => raw.rms_norm_eps.ok_or_else(|| missing("rms_norm_eps"))?,
    };
    let rotary_dims = match (family, raw.rotary_dim, raw.partial_rotary_factor) {
        (Family::Phi2, Some(dims), _) => dims,
        (Family::Phi2, None, Some(factor)) => (head_dim as f64 * factor).round() as usize,
        (Family::Phi2, None, None) => return Err(missing("partial_rotary_factor or rotary_dim")),
        _ => head_dim,
    };
    let eos_token_id = match &raw.eos_token_id {
        Some(serde_json::Value::Array(ids)) => ids.first().and_then(|v| v.as_u64()),
        Some(v) => v.as_u64(),
        None => None,
    }
    .and_then(|id| u32::try_from(id).ok());
    let lm = LmConfig {
        hidden,
        layers: raw
            .num_hidden_layers
            .ok_or_else(|| missing("num_hidden_layers"))?,
        heads,
        kv_heads: raw.num_key_value_heads.unwrap_or(heads),
        intermediate: raw.intermediate_size.unwrap_or(4 * hidden),
        context: raw
            .max_position_embeddings
            .ok_or_else(|| missing("max_position_embeddings"))?,
        norm_eps: norm_eps as f32,
        rope_theta: raw.rope_theta.unwrap_or(10_000.0) as f32,
        rotary_dims,
        vocab_size: raw.vocab_size.ok_or_else(|| missing("vocab_size"))?,
        tie_embeddings: raw.tie_word_embeddings,
        bos_token_id: raw.bos_token_id,
        eos_token_id,
        pad_token_id: raw.pad_token_id,
        sliding_window: match family {
            Family::Phi3 => raw.sliding_window,
            Family::Phi2 | Family::Qwen2 => None,
        },
    };

    let projector_type = raw
        .mm_projector_type
        .clone()
        .unwrap_or_else(|| "mlp2x_gelu".into());
    if projector_type != "mlp2x_gelu" {
        return Err(unsupported(format!(
            "mm_projector_type {projector_type:?}; Imp uses \"mlp2x_gelu\""
        )));
    }
    if let Some(feature) = raw.mm_vision_select_feature.as_deref() {
        if feature != "patch" {
            return Err(unsupported(format!(
                "mm_vision_select_feature {feature:?}; Imp uses \"patch\""
            )));
        }
    }
    let tower = raw.vision_tower_config.unwrap_or_default();
    if let Some(act) = tower.hidden_act.as_deref() {
        if act != "gelu_pytorch_tanh" {
            return Err(unsupported(format!(
                "vision hidden_act {act:?}; SigLIP uses \"gelu_pytorch_tanh\""
            )));
        }
    }
    let base_layers = tower.num_hidden_layers.unwrap_or(SIGLIP_LAYERS);
    let select = raw.mm_vision_select_layer.unwrap_or(-2);
    let layers = if select < 0 {
        base_layers as i64 + select + 1
    } else {
        select
    };
    let layers = usize::try_from(layers)
        .ok()
        .filter(|&l| l > 0 && l <= base_layers)
        .ok_or_else(|| {
            unsupported(format!(
                "mm_vision_select_layer {select} with a {base_layers}-layer tower"
            ))
        })?;
    let default_image = if raw
        .mm_vision_tower
        .as_deref()
        .is_some_and(|t| t.contains("196"))
    {
        196
    } else {
        384
    };
    let vision_hidden = tower.hidden_size.unwrap_or(SIGLIP_HIDDEN);
    if let Some(mm) = raw.mm_hidden_size {
        if mm != vision_hidden {
            return Err(unsupported(format!(
                "mm_hidden_size {mm} differs from the tower's hidden size {vision_hidden}"
            )));
        }
    }
    let vision = VisionConfig {
        hidden: vision_hidden,
        intermediate: tower.intermediate_size.unwrap_or(SIGLIP_INTERMEDIATE),
        heads: tower.num_attention_heads.unwrap_or(SIGLIP_HEADS),
        layers,
        patch_size: tower.patch_size.unwrap_or(SIGLIP_PATCH),
        image_size: tower.image_size.unwrap_or(default_image),
        norm_eps: tower.layer_norm_eps.unwrap_or(SIGLIP_EPS) as f32,
        projector_type,
        aspect_ratio: raw.image_aspect_ratio.unwrap_or_else(|| "square".into()),
        image_token: raw.image_token.unwrap_or_else(|| "<image>".into()),
    };
    Ok(ModelConfig {
        path,
        family,
        lm,
        vision,
    })
}
