//! Attaching images (dropped paths or raw bytes) and reading stored ones back.

use std::path::PathBuf;

use tauri::ipc::{InvokeBody, Request, Response};
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::staging::{decode_limits, StagedImage};
use crate::state::AppState;

/// A file dropped on the window: read here, so the page needs no file-system access.
#[tauri::command]
pub async fn stage_image_path(state: State<'_, AppState>, path: String) -> AppResult<StagedImage> {
    let path = PathBuf::from(path);
    let name = path.display().to_string();
    let max = decode_limits().max_file_bytes;
    let meta = std::fs::metadata(&path)
        .map_err(|err| AppError::io(format!("cannot read {name}"), &err))?;
    if meta.is_dir() {
        return Err(AppError::invalid(format!(
            "{name} is a folder; drop an image file instead"
        )));
    }
    if meta.len() > max {
        return Err(AppError::invalid(format!(
            "{name} is {} MiB; ImpChat accepts images up to {} MiB. Shrink or re-compress it and try again.",
            meta.len().div_ceil(1 << 20),
            max >> 20
        )));
    }
    let bytes =
        std::fs::read(&path).map_err(|err| AppError::io(format!("cannot read {name}"), &err))?;
    state.staging.stage(&state.store(), &bytes, &name)
}

/// Raw request body: the file's bytes; header `x-file-name` (URI-encoded) names it for errors.
#[tauri::command]
pub async fn stage_image_bytes(
    state: State<'_, AppState>,
    request: Request<'_>,
) -> AppResult<StagedImage> {
    let InvokeBody::Raw(bytes) = request.body() else {
        return Err(AppError::invalid(
            "stage_image_bytes expects the file's bytes as the raw request body (a Uint8Array)",
        ));
    };
    let name = request
        .headers()
        .get("x-file-name")
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "the attached file".to_string());
    state.staging.stage(&state.store(), bytes, &name)
}

/// A stored image (or its JPEG thumbnail) as raw bytes.
#[tauri::command(async)]
pub fn get_image(
    state: State<'_, AppState>,
    sha256: String,
    thumbnail: Option<bool>,
) -> AppResult<Response> {
    let bytes = state
        .store()
        .read_image(&sha256, thumbnail.unwrap_or(false))?;
    Ok(Response::new(bytes))
}
