//! Conversation list, CRUD, search, export and import: straight through to the store.

use std::path::Path;

use impchat_store::{Conversation, ConversationSummary, ImportReport, SearchHit};
use tauri::{AppHandle, Manager, Runtime, State};

use crate::error::{AppError, AppResult};
use crate::settings::ChatSettings;
use crate::state::AppState;

/// How many search hits the UI gets at most.
const SEARCH_LIMIT: usize = 50;

#[tauri::command(async)]
pub fn list_conversations(
    state: State<'_, AppState>,
    include_deleted: Option<bool>,
) -> AppResult<Vec<ConversationSummary>> {
    Ok(state
        .store()
        .list_conversations(include_deleted.unwrap_or(false))?)
}

#[tauri::command(async)]
pub fn create_conversation(
    state: State<'_, AppState>,
    title: Option<String>,
) -> AppResult<ConversationSummary> {
    Ok(state.store().create_conversation(title.as_deref())?)
}

#[tauri::command(async)]
pub fn get_conversation(state: State<'_, AppState>, id: String) -> AppResult<Conversation> {
    Ok(state.store().get_conversation(&id)?)
}

#[tauri::command(async)]
pub fn rename_conversation(state: State<'_, AppState>, id: String, title: String) -> AppResult<()> {
    if title.trim().is_empty() {
        return Err(crate::error::AppError::invalid(
            "a conversation title cannot be empty; type a title",
        ));
    }
    Ok(state.store().rename_conversation(&id, &title)?)
}

#[tauri::command(async)]
pub fn pin_conversation(state: State<'_, AppState>, id: String, pinned: bool) -> AppResult<()> {
    Ok(state.store().pin_conversation(&id, pinned)?)
}

#[tauri::command(async)]
pub fn delete_conversation(state: State<'_, AppState>, id: String) -> AppResult<()> {
    Ok(state.store().delete_conversation(&id)?)
}

#[tauri::command(async)]
pub fn restore_conversation(state: State<'_, AppState>, id: String) -> AppResult<()> {
    Ok(state.store().restore_conversation(&id)?)
}

#[tauri::command(async)]
pub fn purge_conversation(state: State<'_, AppState>, id: String) -> AppResult<()> {
    state.store().purge_conversation(&id)?;
    Ok(())
}

#[tauri::command(async)]
pub fn search(state: State<'_, AppState>, query: String) -> AppResult<Vec<SearchHit>> {
    Ok(state.store().search(&query, SEARCH_LIMIT)?)
}

#[tauri::command(async)]
pub fn set_chat_settings(
    state: State<'_, AppState>,
    id: String,
    system_prompt: Option<String>,
    settings: Option<ChatSettings>,
) -> AppResult<()> {
    let settings = settings
        .map(|settings| {
            settings.validate()?;
            Ok::<_, crate::error::AppError>(settings.to_json())
        })
        .transpose()?;
    let system_prompt = system_prompt.filter(|prompt| !prompt.trim().is_empty());
    Ok(state
        .store()
        .set_chat_settings(&id, system_prompt.as_deref(), settings.as_ref())?)
}

#[tauri::command(async)]
pub fn switch_branch(
    state: State<'_, AppState>,
    conversation_id: String,
    message_id: String,
) -> AppResult<Conversation> {
    Ok(state.store().switch_branch(&conversation_id, &message_id)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Markdown,
    Zip,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::Markdown => "md",
            Self::Zip => "zip",
        }
    }

    fn filter_name(self) -> &'static str {
        match self {
            Self::Markdown => "Markdown",
            Self::Zip => "ImpChat archive",
        }
    }
}

/// The file name the save dialog suggests: the conversation's title made safe for every
/// file system, or a name for the whole collection.
fn suggested_file_name(title: Option<&str>, format: ExportFormat) -> String {
    let stem = match title {
        None => "ImpChat conversations".to_string(),
        Some(title) => {
            let safe: String = title
                .chars()
                .map(|c| match c {
                    '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '-',
                    c if c.is_control() => ' ',
                    c => c,
                })
                .take(80)
                .collect();
            // Windows refuses names ending in a dot or space; a leading dot hides the file.
            let safe = safe.trim_matches(|c: char| c == '.' || c.is_whitespace());
            if safe.is_empty() {
                "Conversation".to_string()
            } else {
                safe.to_string()
            }
        }
    };
    format!("{stem}.{}", format.extension())
}

/// Asks where to save with the native dialog, then writes one conversation (`id`) or all of
/// them (`null`) there, as `export_conversation` does. `None` when the user cancels.
#[tauri::command]
pub async fn save_export<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    id: Option<String>,
    format: ExportFormat,
) -> AppResult<Option<String>> {
    use tauri_plugin_dialog::DialogExt;
    // A conversation that is gone is reported before any dialog opens.
    let title = match id.as_deref() {
        Some(id) => Some(state.store().conversation_summary(id)?.title),
        None => None,
    };
    let (reply, picked) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title(if id.is_some() {
            "Export conversation"
        } else {
            "Export all conversations"
        })
        .set_file_name(suggested_file_name(title.as_deref(), format))
        .add_filter(format.filter_name(), &[format.extension()])
        .save_file(move |path| {
            let _ = reply.send(path);
        });
    let picked = picked
        .await
        .map_err(|_| AppError::internal("the save dialog closed without an answer; try again"))?;
    let Some(picked) = picked else {
        return Ok(None);
    };
    let path = picked.into_path().map_err(|err| {
        AppError::invalid(format!(
            "the chosen location is not a file on this device ({err}); choose a folder on this device"
        ))
    })?;
    // Zipping many images takes a while; keep it off the async workers.
    let written = tauri::async_runtime::spawn_blocking(move || {
        write_export(&app.state::<AppState>(), id.as_deref(), format, &path)
    })
    .await
    .map_err(|err| AppError::internal(format!("the export stopped unexpectedly: {err}")))??;
    Ok(Some(written))
}

fn write_export(
    state: &AppState,
    id: Option<&str>,
    format: ExportFormat,
    path: &Path,
) -> AppResult<String> {
    let store = state.store();
    let scope = id.into();
    let written = match format {
        ExportFormat::Zip => store.export_archive(scope, path)?,
        ExportFormat::Markdown => store.export_markdown(scope, path)?,
    };
    Ok(written.display().to_string())
}

/// Writes one conversation (`id`) or all of them (`null`) to `path`; returns the path written.
#[tauri::command(async)]
pub fn export_conversation(
    state: State<'_, AppState>,
    id: Option<String>,
    format: ExportFormat,
    path: String,
) -> AppResult<String> {
    let path = std::path::PathBuf::from(path.trim());
    if path.as_os_str().is_empty() {
        return Err(AppError::invalid(
            "no file to export to; choose where to save",
        ));
    }
    write_export(&state, id.as_deref(), format, &path)
}

/// The export's bytes and file name, for a phone's share sheet (the page hands them to the Web
/// Share API); the bytes go through a file in the data folder that is removed at once.
#[tauri::command(async)]
pub fn export_bytes(
    state: State<'_, AppState>,
    id: Option<String>,
    format: ExportFormat,
) -> AppResult<tauri::ipc::Response> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let temp = state
        .data_dir
        .join(format!(".share-{nanos}.{}", format.extension()));
    let written = write_export(&state, id.as_deref(), format, &temp);
    let bytes = written.and_then(|path| {
        std::fs::read(&path)
            .map_err(|err| AppError::io(format!("could not read the export {path}"), &err))
    });
    let _ = std::fs::remove_file(&temp);
    Ok(tauri::ipc::Response::new(bytes?))
}

/// The file name an export of `id` (or of everything) gets.
#[tauri::command]
pub fn export_file_name(
    state: State<'_, AppState>,
    id: Option<String>,
    format: ExportFormat,
) -> AppResult<String> {
    let title = match id.as_deref() {
        Some(id) => Some(state.store().conversation_summary(id)?.title),
        None => None,
    };
    Ok(suggested_file_name(title.as_deref(), format))
}

/// Imports a .zip archive made by export; conversations already here are skipped.
#[tauri::command(async)]
pub fn import_archive(state: State<'_, AppState>, path: String) -> AppResult<ImportReport> {
    Ok(state
        .store()
        .import_archive(std::path::Path::new(path.trim()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggested_name_is_the_title_made_safe() {
        assert_eq!(
            suggested_file_name(Some("Receipts: March/April?"), ExportFormat::Markdown),
            "Receipts- March-April-.md"
        );
        assert_eq!(
            suggested_file_name(Some("  ..hidden. "), ExportFormat::Zip),
            "hidden.zip"
        );
        assert_eq!(
            suggested_file_name(Some("\u{7}"), ExportFormat::Zip),
            "Conversation.zip"
        );
        assert_eq!(
            suggested_file_name(None, ExportFormat::Zip),
            "ImpChat conversations.zip"
        );
        let long = "x".repeat(300);
        assert_eq!(
            suggested_file_name(Some(&long), ExportFormat::Markdown).len(),
            83
        );
    }
}
