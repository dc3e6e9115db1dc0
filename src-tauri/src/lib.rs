//! ImpChat's desktop/mobile shell: wires the engine, the conversation store and the model
//! manager to the web UI through the commands in docs/ipc.md. No business logic lives here.

mod commands;
mod downloads;
mod dto;
mod error;
mod generation;
mod model_hash;
mod platform;
mod settings;
mod staging;
mod state;
mod store_error;
mod worker;

use std::path::{Path, PathBuf};

use tauri::webview::PageLoadEvent;
use tauri::{AppHandle, Builder, Emitter, Manager, Runtime, WindowEvent};

pub use downloads::DownloadSource;
pub use error::{AppError, ErrorKind};
pub use settings::{AppSettings, ChatSettings};
use state::AppState;

/// Event carrying a start-up notice for the user, e.g. a damaged database moved aside.
pub const STORE_NOTICE_EVENT: &str = "store-notice";
/// Event carrying the new `ModelStatus` whenever it changes (loads, idle unloads, reloads).
pub const MODEL_STATUS_EVENT: &str = "model-status";

#[derive(Debug, Clone, serde::Serialize)]
struct Notice {
    message: String,
}

/// The app with its plugins, events and commands; `run` and the tests both build from
/// this, then call [`init`] with the data folder.
pub fn app_builder<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        .on_page_load(|webview, payload| {
            // Events sent before the page listens are lost; send notices once it has loaded.
            // The page can also pull them with `take_store_notices`.
            if payload.event() == PageLoadEvent::Finished {
                if let Some(state) = webview.try_state::<AppState>() {
                    for message in state.pending_notices() {
                        let _ = webview.emit(STORE_NOTICE_EVENT, Notice { message });
                    }
                }
            }
        })
        .on_window_event(|window, event| {
            // Nobody is left to read the answer.
            if let WindowEvent::Destroyed = event {
                if let Some(state) = window.try_state::<AppState>() {
                    state.stop_generation();
                    state.downloads.cancel_all();
                }
            }
            // A phone app in the background may be killed for its memory at any time: give
            // the model back now; the next message loads it again.
            #[cfg(mobile)]
            if let WindowEvent::Suspended = event {
                if let Some(state) = window.try_state::<AppState>() {
                    state.model.unload_until_needed();
                }
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::conversations::list_conversations,
            commands::conversations::create_conversation,
            commands::conversations::get_conversation,
            commands::conversations::rename_conversation,
            commands::conversations::pin_conversation,
            commands::conversations::delete_conversation,
            commands::conversations::restore_conversation,
            commands::conversations::purge_conversation,
            commands::conversations::search,
            commands::conversations::set_chat_settings,
            commands::conversations::switch_branch,
            commands::conversations::export_conversation,
            commands::conversations::export_bytes,
            commands::conversations::export_file_name,
            commands::conversations::save_export,
            commands::conversations::import_archive,
            commands::images::stage_image_path,
            commands::images::stage_image_bytes,
            commands::images::get_image,
            commands::model::image_preview,
            commands::chat::send_message,
            commands::chat::regenerate,
            commands::chat::edit_and_resend,
            commands::chat::continue_message,
            commands::chat::stop_generation,
            commands::model::model_status,
            commands::model::load_model,
            commands::model::unload_model,
            commands::model::pick_model_path,
            commands::model::model_catalog,
            commands::downloads::download_model,
            commands::downloads::cancel_download,
            commands::downloads::installed_models,
            commands::settings::get_settings,
            commands::settings::set_settings,
            commands::settings::open_data_dir,
            commands::settings::take_store_notices,
        ])
}

/// Opens the store and settings in `data_dir` (created if missing) for the commands, and
/// starts loading the last used model in the background.
pub fn init<R: Runtime>(app: &AppHandle<R>, data_dir: &Path) -> Result<(), AppError> {
    init_with(app, data_dir, DownloadSource::from_env()?)
}

/// [`init`] with model downloads from `source` (tests use a hub on loopback).
pub fn init_with<R: Runtime>(
    app: &AppHandle<R>,
    data_dir: &Path,
    source: DownloadSource,
) -> Result<(), AppError> {
    let state = AppState::open_with(data_dir, source)?;
    for message in state.pending_notices() {
        eprintln!("impchat: {message}");
    }
    let last_model = state.settings().last_model_path;
    let events = app.clone();
    state.model.on_status_change(move |status| {
        let _ = events.emit(MODEL_STATUS_EVENT, status);
    });
    app.manage(state);
    app.manage(model_hash::ModelFileHashes::open(data_dir));
    if let Some(path) = last_model {
        load_in_background(app.clone(), PathBuf::from(path));
    }
    Ok(())
}

/// Loads the last used model at start-up without holding up the window; the UI follows
/// progress through `model_status`, and a failure shows there (never a crash).
fn load_in_background<R: Runtime>(app: AppHandle<R>, path: PathBuf) {
    // Said at once, so the page's first `model_status` shows the load, not the set-up screen.
    app.state::<AppState>().model.mark_loading();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let threads = state.settings().threads;
        match state.model.load(path, threads).await {
            Ok(info) => {
                app.state::<model_hash::ModelFileHashes>()
                    .lookup(Path::new(&info.path));
            }
            Err(err) => eprintln!("impchat: {}", err.message),
        }
    });
}

#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let app = app_builder(Builder::default())
        .setup(|app| {
            let data_dir = app.path().app_data_dir()?;
            init(app.handle(), &data_dir)?;
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(err) = app {
        eprintln!("ImpChat could not start: {err}");
        std::process::exit(1);
    }
}
