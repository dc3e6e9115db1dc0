//! Conversation list, CRUD, search, export and import: straight through to the store.

use impchat_store::{Conversation, ConversationSummary, ImportReport, SearchHit};
use tauri::State;

use crate::error::AppResult;
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

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Markdown,
    Zip,
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
        return Err(crate::error::AppError::invalid(
            "no file to export to; choose where to save",
        ));
    }
    let store = state.store();
    let scope = id.as_deref().into();
    let written = match format {
        ExportFormat::Zip => store.export_archive(scope, &path)?,
        ExportFormat::Markdown => store.export_markdown(scope, &path)?,
    };
    Ok(written.display().to_string())
}

/// Imports a .zip archive made by export; conversations already here are skipped.
#[tauri::command(async)]
pub fn import_archive(state: State<'_, AppState>, path: String) -> AppResult<ImportReport> {
    Ok(state
        .store()
        .import_archive(std::path::Path::new(path.trim()))?)
}
