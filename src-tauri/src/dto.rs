//! The engine's and model manager's types in the shapes docs/ipc.md gives the UI
//! (camelCase). The store's types already serialise that way and pass straight through.

use impchat_engine::{Family, GenerationStats, ImageAspect, ModelInfo, StopReason};
use impchat_models::{check_fit, CatalogEntry, Fit, Quant};
use impchat_store::MessageStatus;
use serde::Serialize;

use crate::settings::ChatSettings;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfoDto {
    pub id: String,
    pub name: String,
    pub family: Family,
    pub path: String,
    pub image_size: u32,
    pub visual_tokens: usize,
    pub context_length: usize,
    pub quantization: String,
    pub image_aspect: ImageAspect,
}

impl From<&ModelInfo> for ModelInfoDto {
    fn from(info: &ModelInfo) -> Self {
        Self {
            id: info.id.clone(),
            name: info.name.clone(),
            family: info.family,
            path: info.path.display().to_string(),
            image_size: info.image_size,
            visual_tokens: info.visual_tokens,
            context_length: info.context_length,
            quantization: info.quantization.clone(),
            image_aspect: info.image_aspect,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    None,
    Loading,
    Ready,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStatus {
    pub state: ModelState,
    pub model: Option<ModelInfoDto>,
    pub error: Option<String>,
}

impl ModelStatus {
    pub fn none() -> Self {
        Self {
            state: ModelState::None,
            model: None,
            error: None,
        }
    }
    pub fn loading() -> Self {
        Self {
            state: ModelState::Loading,
            model: None,
            error: None,
        }
    }
    pub fn ready(info: ModelInfoDto) -> Self {
        Self {
            state: ModelState::Ready,
            model: Some(info),
            error: None,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            state: ModelState::Error,
            model: None,
            error: Some(message.into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsDto {
    pub images: usize,
    pub image_encode_ms: f64,
    pub prompt_tokens: usize,
    pub prompt_tokens_computed: usize,
    pub prompt_ms: f64,
    pub time_to_first_token_ms: f64,
    pub generated_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
    pub stop_reason: Option<StopReason>,
}

impl From<&GenerationStats> for StatsDto {
    fn from(stats: &GenerationStats) -> Self {
        Self {
            images: stats.images,
            image_encode_ms: stats.image_encode_ms,
            prompt_tokens: stats.prompt_tokens,
            prompt_tokens_computed: stats.prompt_tokens_computed,
            prompt_ms: stats.prompt_ms,
            time_to_first_token_ms: stats.time_to_first_token_ms,
            generated_tokens: stats.generated_tokens,
            decode_ms: stats.decode_ms,
            decode_tokens_per_s: stats.decode_tokens_per_s,
            stop_reason: stats.stop_reason,
        }
    }
}

/// Which model and settings produced an answer, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub model_id: String,
    pub model_file_hash: Option<String>,
    pub quantization: String,
    pub image_size: u32,
    pub sampling: ChatSettings,
    pub seed: u64,
}

/// What a streaming command sends over its `onEvent` channel.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum StreamEvent {
    #[serde(rename_all = "camelCase")]
    Started {
        user_message_id: String,
        assistant_message_id: String,
    },
    ImageEncoded {
        index: usize,
        ms: f64,
        cached: bool,
    },
    PromptProcessed {
        tokens: usize,
        ms: f64,
    },
    Token {
        text: String,
    },
    Done {
        stats: StatsDto,
        status: MessageStatus,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePreviewDto {
    pub png_data_url: String,
    pub size: u32,
    pub visual_tokens: usize,
    pub aspect: ImageAspect,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntryDto {
    pub id: String,
    pub name: String,
    pub repo: String,
    pub family: String,
    pub params: String,
    pub image_size: u32,
    pub visual_tokens: u32,
    pub license: String,
    pub good_at: String,
    pub download_bytes: u64,
    pub ram_bytes: u64,
    pub fits: Fit,
}

impl From<&CatalogEntry> for CatalogEntryDto {
    fn from(entry: &CatalogEntry) -> Self {
        // The app loads the published 16-bit checkpoints; quantized files do not exist yet.
        let ram_bytes = entry.estimate_ram(Quant::F16, entry.context_length).total;
        Self {
            id: entry.id.as_str().to_string(),
            name: entry.name.clone(),
            repo: entry.repo.clone(),
            family: entry.family.as_str().to_string(),
            params: format!("{:.1}B", entry.params_billions),
            image_size: entry.image_size,
            visual_tokens: entry.visual_tokens,
            license: entry.license.clone(),
            good_at: entry.good_at.clone(),
            download_bytes: entry.download_bytes(),
            ram_bytes,
            // Where the OS does not say how much memory is free, promise nothing.
            fits: check_fit(ram_bytes).map_or(Fit::Tight, |report| report.fit),
        }
    }
}
