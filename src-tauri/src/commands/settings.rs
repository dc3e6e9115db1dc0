use tauri::{AppHandle, Runtime, State};

use crate::error::{AppError, AppResult};
use crate::settings::AppSettings;
use crate::state::AppState;

#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> AppSettings {
    state.settings()
}

#[tauri::command]
pub fn set_settings(state: State<'_, AppState>, settings: AppSettings) -> AppResult<()> {
    state.set_settings(settings)
}

/// Shows the data folder in the system's file manager.
#[tauri::command]
pub fn open_data_dir<R: Runtime>(app: AppHandle<R>, state: State<'_, AppState>) -> AppResult<()> {
    use tauri_plugin_opener::OpenerExt;
    app.opener()
        .open_path(state.data_dir.display().to_string(), None::<&str>)
        .map_err(|err| {
            AppError::new(
                crate::error::ErrorKind::Io,
                format!(
                    "could not open {} in a file manager ({err}); open it by hand",
                    state.data_dir.display()
                ),
            )
        })
}

/// Start-up notices the page has not shown yet (also sent as `store-notice` events once the
/// page has loaded; events sent before it listens would be lost).
#[tauri::command]
pub fn take_store_notices(state: State<'_, AppState>) -> Vec<String> {
    state.take_notices()
}
