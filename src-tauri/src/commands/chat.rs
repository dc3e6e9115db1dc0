//! Asking, regenerating, editing and continuing: each creates the answer's rows in the
//! store and streams the answer over `onEvent` (see `generation`).

use impchat_store::{MessageStatus, Role};
use tauri::ipc::Channel;
use tauri::State;

use crate::dto::StreamEvent;
use crate::error::{AppError, AppResult};
use crate::generation::{self, AnswerRows, Reply};
use crate::model_hash::ModelFileHashes;
use crate::state::AppState;

#[tauri::command]
pub async fn send_message(
    state: State<'_, AppState>,
    hashes: State<'_, ModelFileHashes>,
    conversation_id: String,
    text: String,
    image_tokens: Vec<String>,
    on_event: Channel<StreamEvent>,
) -> AppResult<MessageStatus> {
    let (busy, model) = generation::begin(&state, &hashes)?;
    let images = state.staging.resolve(&image_tokens)?;
    if text.trim().is_empty() && images.is_empty() {
        return Err(AppError::invalid(
            "the message is empty; type a question or attach an image",
        ));
    }
    let rows = {
        let store = state.store();
        let parent = store.current_leaf(&conversation_id)?;
        let shas: Vec<String> = images.into_iter().map(|image| image.sha256).collect();
        let user = store.add_user_message(&conversation_id, parent.as_deref(), &text, &shas)?;
        let assistant = store.begin_assistant(&conversation_id, &user)?;
        AnswerRows {
            user_message_id: user,
            assistant_message_id: assistant,
        }
    };
    state.staging.release(&image_tokens);
    generation::run(
        &state,
        &busy,
        &model,
        &conversation_id,
        rows,
        Reply::Answer,
        on_event,
    )
    .await
}

/// Another answer to the same question, as a sibling of `message_id` (an answer).
#[tauri::command]
pub async fn regenerate(
    state: State<'_, AppState>,
    hashes: State<'_, ModelFileHashes>,
    conversation_id: String,
    message_id: String,
    on_event: Channel<StreamEvent>,
) -> AppResult<MessageStatus> {
    let (busy, model) = generation::begin(&state, &hashes)?;
    let rows = {
        let store = state.store();
        let answer = store.message(&message_id)?;
        let question = match (answer.role, answer.parent_id) {
            (Role::Assistant, Some(parent)) => parent,
            _ => {
                return Err(AppError::invalid(
                    "only an answer can be regenerated; pick an answer",
                ))
            }
        };
        let assistant = store.begin_assistant(&conversation_id, &question)?;
        AnswerRows {
            user_message_id: question,
            assistant_message_id: assistant,
        }
    };
    generation::run(
        &state,
        &busy,
        &model,
        &conversation_id,
        rows,
        Reply::Answer,
        on_event,
    )
    .await
}

/// A new version of the user message `message_id` (same images), answered afresh.
#[tauri::command]
pub async fn edit_and_resend(
    state: State<'_, AppState>,
    hashes: State<'_, ModelFileHashes>,
    conversation_id: String,
    message_id: String,
    text: String,
    on_event: Channel<StreamEvent>,
) -> AppResult<MessageStatus> {
    let (busy, model) = generation::begin(&state, &hashes)?;
    let rows = {
        let store = state.store();
        let original = store.message(&message_id)?;
        if original.role != Role::User {
            return Err(AppError::invalid(
                "only your own messages can be edited; pick a question",
            ));
        }
        if text.trim().is_empty() && original.images.is_empty() {
            return Err(AppError::invalid("the message is empty; type a question"));
        }
        let shas: Vec<String> = original
            .images
            .into_iter()
            .map(|image| image.sha256)
            .collect();
        let user = store.add_user_message(
            &conversation_id,
            original.parent_id.as_deref(),
            &text,
            &shas,
        )?;
        let assistant = store.begin_assistant(&conversation_id, &user)?;
        AnswerRows {
            user_message_id: user,
            assistant_message_id: assistant,
        }
    };
    generation::run(
        &state,
        &busy,
        &model,
        &conversation_id,
        rows,
        Reply::Answer,
        on_event,
    )
    .await
}

/// Lets the model carry on writing the latest answer `message_id` (stopped, interrupted or
/// cut at the length limit): the new text is appended to the same stored answer and
/// streamed as `token` events; its stats and provenance become the continuation's.
#[tauri::command]
pub async fn continue_message(
    state: State<'_, AppState>,
    hashes: State<'_, ModelFileHashes>,
    conversation_id: String,
    message_id: String,
    on_event: Channel<StreamEvent>,
) -> AppResult<MessageStatus> {
    let (busy, model) = generation::begin(&state, &hashes)?;
    let rows = {
        let store = state.store();
        let answer = store.message(&message_id)?;
        let question = match (answer.role, answer.parent_id) {
            (Role::Assistant, Some(parent)) => parent,
            _ => {
                return Err(AppError::invalid(
                    "only an answer can be continued; pick one of the assistant's answers",
                ))
            }
        };
        if store.current_leaf(&conversation_id)?.as_deref() != Some(message_id.as_str()) {
            return Err(AppError::invalid(
                "only the latest answer of the conversation can be continued; ask a new question instead",
            ));
        }
        store.continue_answer(&message_id)?;
        AnswerRows {
            user_message_id: question,
            assistant_message_id: message_id,
        }
    };
    generation::run(
        &state,
        &busy,
        &model,
        &conversation_id,
        rows,
        Reply::Continue,
        on_event,
    )
    .await
}

/// Stops the answer being written; the model notices before its next token.
#[tauri::command]
pub fn stop_generation(state: State<'_, AppState>) {
    state.stop_generation();
}
