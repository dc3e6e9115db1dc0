use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use tauri::{AppHandle, Runtime, State};

use crate::downloads::InstalledModelDto;
use crate::dto::{CatalogEntryDto, ImagePreviewDto, ModelInfoDto, ModelStatus};
use crate::error::{AppError, AppResult};
use crate::model_hash::ModelFileHashes;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PickKind {
    Folder,
    File,
}

/// Native dialog to choose a model folder or file; `None` when the user cancels.
#[tauri::command]
pub async fn pick_model_path<R: Runtime>(
    app: AppHandle<R>,
    kind: PickKind,
) -> AppResult<Option<String>> {
    use tauri_plugin_dialog::DialogExt;
    let (reply, picked) = tokio::sync::oneshot::channel();
    let dialog = app.dialog().file().set_title("Choose an Imp model");
    match kind {
        #[cfg(desktop)]
        PickKind::Folder => dialog.pick_folder(move |path| {
            let _ = reply.send(path);
        }),
        #[cfg(mobile)]
        PickKind::Folder => {
            return Err(AppError::invalid(
                "choosing a folder is not available on this device; choose the model file instead",
            ))
        }
        PickKind::File => dialog
            .add_filter("GGUF model", &["gguf"])
            .pick_file(move |path| {
                let _ = reply.send(path);
            }),
    }
    let picked = picked
        .await
        .map_err(|_| AppError::internal("the file dialog closed without an answer; try again"))?;
    picked
        .map(|path| {
            path.into_path()
                .map(|path| path.display().to_string())
                .map_err(|err| {
                    AppError::invalid(format!("the chosen location is not a local path: {err}"))
                })
        })
        .transpose()
}

#[tauri::command]
pub fn model_status(state: State<'_, AppState>) -> ModelStatus {
    state.model.status()
}

/// Loads the model at `path` (a checkpoint folder) on the model thread; remembered for next start.
#[tauri::command]
pub async fn load_model(
    state: State<'_, AppState>,
    hashes: State<'_, ModelFileHashes>,
    path: String,
) -> AppResult<ModelInfoDto> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err(AppError::invalid(
            "no model location given; choose a model folder",
        ));
    }
    let location = PathBuf::from(trimmed);
    if !location.exists() {
        return Err(AppError::not_found(format!(
            "{} does not exist; choose the folder that holds the model's config.json",
            location.display()
        )));
    }
    let threads = state.settings().threads;
    let info = state.model.load(location, threads).await?;
    // Starts hashing the weights in the background unless their digests are already known.
    hashes.lookup(std::path::Path::new(&info.path));
    state.update_settings(|settings| settings.last_model_path = Some(trimmed.to_string()))?;
    Ok(info)
}

#[tauri::command]
pub async fn unload_model(state: State<'_, AppState>) -> AppResult<()> {
    state.stop_generation();
    state.model.unload().await
}

/// Every released Imp model, with whether it fits in this machine's free memory, whether it
/// is installed (and where), and how much of an interrupted download is kept.
#[tauri::command]
pub fn model_catalog(state: State<'_, AppState>) -> AppResult<Vec<CatalogEntryDto>> {
    let downloads = &state.downloads;
    let installed = downloads.installed()?;
    let active = downloads.active_id();
    Ok(downloads
        .catalog()
        .models
        .iter()
        .map(|entry| {
            let mut dto = CatalogEntryDto::from(entry);
            dto.installed = installed
                .iter()
                .find(|m| m.id == entry.id || m.manifest.catalog_id.as_ref() == Some(&entry.id))
                .map(InstalledModelDto::from);
            dto.partial_bytes = downloads.partial_bytes(entry);
            dto.downloading = active.as_deref() == Some(entry.id.as_str());
            dto
        })
        .collect())
}

/// What the loaded model will see for a staged image: its preprocessed square.
#[tauri::command]
pub async fn image_preview(
    state: State<'_, AppState>,
    token: String,
) -> AppResult<ImagePreviewDto> {
    let image = state.staging.get(&token)?;
    let bytes = state.store().read_image(&image.sha256, false)?;
    state
        .model
        .run(move |slot| {
            let model = slot.model.as_ref().ok_or_else(AppError::no_model)?;
            let preview = model
                .preview_image(&bytes)
                .map_err(|err| AppError::invalid(err.to_string()))?;
            Ok(ImagePreviewDto {
                png_data_url: format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(&preview.png)
                ),
                size: preview.size,
                visual_tokens: preview.visual_tokens,
                aspect: preview.aspect,
            })
        })
        .await
}
