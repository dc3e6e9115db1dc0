//! Downloading catalog models from the app (docs/ipc.md, "Model downloads").

use impchat_models::Quant;
use tauri::ipc::Channel;
use tauri::{AppHandle, Manager, Runtime, State};

use crate::downloads::{DownloadProgress, InstalledModelDto};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Downloads, verifies and installs catalog model `id`, converted to `quant` when that is a
/// quantized format ("q4_k_m", "q4_0", "q8_0"; "f16" or none keeps the published files).
/// Progress goes to `on_event`; an earlier, interrupted download of `id` is resumed.
#[tauri::command]
pub async fn download_model<R: Runtime>(
    app: AppHandle<R>,
    id: String,
    quant: Option<String>,
    on_event: Channel<DownloadProgress>,
) -> AppResult<InstalledModelDto> {
    let quant = quant.map(|name| parse_quant(&name)).transpose()?;
    let report = move |progress: DownloadProgress| {
        // A closed window stops listening; the download itself goes on until cancelled.
        let _ = on_event.send(progress);
    };
    tauri::async_runtime::spawn_blocking(move || {
        app.state::<AppState>()
            .downloads
            .download(&id, quant, &report)
    })
    .await
    .map_err(|err| AppError::internal(format!("the download stopped unexpectedly: {err}")))?
}

/// Stops the download of `id`; its parts are kept for the next attempt. False when `id` was
/// not downloading.
#[tauri::command]
pub fn cancel_download(state: State<'_, AppState>, id: String) -> bool {
    state.downloads.cancel(&id)
}

/// Every model in the models folder, most recently used first.
#[tauri::command]
pub fn installed_models(state: State<'_, AppState>) -> AppResult<Vec<InstalledModelDto>> {
    Ok(state
        .downloads
        .installed()?
        .iter()
        .map(InstalledModelDto::from)
        .collect())
}

fn parse_quant(name: &str) -> AppResult<Quant> {
    Quant::ALL
        .into_iter()
        .find(|quant| quant.as_str() == name.trim().to_ascii_lowercase())
        .ok_or_else(|| {
            AppError::invalid(format!(
                "{name:?} is not a weight format ImpChat offers; use q4_k_m, q4_0, q8_0 or f16"
            ))
        })
}
