//! The engine's and model manager's types in the shapes docs/ipc.md gives the UI
//! (camelCase). The store's types already serialise that way and pass straight through.

use impchat_engine::{Family, GenerationStats, ImageAspect, ModelInfo, StopReason};
use impchat_models::{check_fit, CatalogEntry, Fit, Quant};
use impchat_store::MessageStatus;
use serde::Serialize;

use crate::downloads::InstalledModelDto;
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
    /// `ready` but not in memory: unloaded after the idle time (or in the background); the
    /// next message loads it again by itself.
    pub idle: bool,
}

impl Default for ModelStatus {
    fn default() -> Self {
        Self::none()
    }
}

impl ModelStatus {
    pub fn none() -> Self {
        Self {
            state: ModelState::None,
            model: None,
            error: None,
            idle: false,
        }
    }
    pub fn loading() -> Self {
        Self {
            state: ModelState::Loading,
            model: None,
            error: None,
            idle: false,
        }
    }
    /// Loading again the model that was unloaded while idle.
    pub fn reloading(info: ModelInfoDto) -> Self {
        Self {
            state: ModelState::Loading,
            model: Some(info),
            error: None,
            idle: false,
        }
    }
    pub fn ready(info: ModelInfoDto) -> Self {
        Self {
            state: ModelState::Ready,
            model: Some(info),
            error: None,
            idle: false,
        }
    }
    pub fn unloaded_while_idle(info: ModelInfoDto) -> Self {
        Self {
            state: ModelState::Ready,
            model: Some(info),
            error: None,
            idle: true,
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            state: ModelState::Error,
            model: None,
            error: Some(message.into()),
            idle: false,
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
pub struct QuantOptionDto {
    /// "q4_k_m", "q4_0", "q8_0" or "f16" (the published files, not converted).
    pub quant: Quant,
    pub recommended: bool,
    pub file_bytes: u64,
    pub ram_bytes: u64,
    pub context_tokens: u32,
    pub fits: Fit,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntryDto {
    pub id: String,
    pub name: String,
    pub repo: String,
    /// Branch or commit the catalog asks for; the installed model records the commit it got.
    pub revision: String,
    pub family: String,
    pub params: String,
    pub image_size: u32,
    pub visual_tokens: u32,
    pub license: String,
    pub good_at: String,
    pub download_bytes: u64,
    /// Memory and fit for `default_quant` (what Download gets unless another format is chosen).
    pub ram_bytes: u64,
    pub fits: Fit,
    pub quantizations: Vec<QuantOptionDto>,
    /// The format to offer first on this device (phones: 4-bit).
    pub default_quant: Quant,
    /// The model to suggest first on this device (phones: the 196 px checkpoint).
    pub suggested: bool,
    pub installed: Option<InstalledModelDto>,
    /// Bytes kept from an interrupted download; the next download resumes from them.
    pub partial_bytes: u64,
    pub downloading: bool,
}

/// Where the OS does not say how much memory is free, promise nothing.
fn fit_now(ram_bytes: u64) -> Fit {
    check_fit(ram_bytes).map_or(Fit::Tight, |report| report.fit)
}

impl From<&CatalogEntry> for CatalogEntryDto {
    fn from(entry: &CatalogEntry) -> Self {
        let quantizations = entry
            .quantizations
            .iter()
            .map(|option| {
                let context_tokens = crate::platform::context_tokens(option.context_tokens);
                let ram_bytes = entry.estimate_ram(option.quant, context_tokens).total;
                QuantOptionDto {
                    quant: option.quant,
                    recommended: option.recommended,
                    file_bytes: option.file_bytes,
                    ram_bytes,
                    context_tokens,
                    fits: fit_now(ram_bytes),
                }
            })
            .collect::<Vec<QuantOptionDto>>();
        // The card's figures are for what the Download button gets by default; without a
        // catalog format the published 16-bit checkpoint, loaded as it is.
        let default_quant = crate::platform::default_quant(entry);
        let ram_bytes = quantizations
            .iter()
            .find(|option| option.quant == default_quant)
            .map_or_else(
                || entry.estimate_ram(Quant::F16, entry.context_length).total,
                |option| option.ram_bytes,
            );
        Self {
            id: entry.id.as_str().to_string(),
            name: entry.name.clone(),
            repo: entry.repo.clone(),
            revision: entry.revision.clone(),
            family: entry.family.as_str().to_string(),
            params: format!("{:.1}B", entry.params_billions),
            image_size: entry.image_size,
            visual_tokens: entry.visual_tokens,
            license: entry.license.clone(),
            good_at: entry.good_at.clone(),
            download_bytes: entry.download_bytes(),
            ram_bytes,
            fits: fit_now(ram_bytes),
            quantizations,
            default_quant,
            suggested: crate::platform::suggested(entry),
            installed: None,
            partial_bytes: 0,
            downloading: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use impchat_models::Catalog;

    use super::*;

    #[test]
    fn a_catalog_card_shows_the_memory_of_the_format_download_gets() {
        let catalog = Catalog::builtin().expect("catalog");
        for entry in &catalog.models {
            let card = CatalogEntryDto::from(entry);
            let offered = card
                .quantizations
                .iter()
                .find(|q| q.quant == card.default_quant)
                .expect("the default format is one of the offered ones");
            assert_eq!(card.ram_bytes, offered.ram_bytes, "{}", card.id);
            let unconverted = entry.estimate_ram(Quant::F16, entry.context_length).total;
            assert!(card.ram_bytes < unconverted, "{}", card.id);
        }
    }
}
