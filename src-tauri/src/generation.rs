//! One answer, start to finish: the store rows are created here, the model thread runs the
//! engine, tokens go both to the UI channel and to the store's batched writer, and the
//! answer is closed as complete / stopped / error with its stats and provenance.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use impchat_engine::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, ImageBytes, Role, SamplingParams,
    StopReason,
};
use impchat_store::{Conversation, Finish, MessageStatus, Store, StreamWriter};
use tauri::ipc::Channel;

use crate::dto::{ModelInfoDto, Provenance, StatsDto, StreamEvent};
use crate::error::{AppError, AppResult};
use crate::model_hash::ModelFileHashes;
use crate::settings::{AppSettings, ChatSettings, MAX_SEED};
use crate::state::{lock, AppState};

/// The rows an answer is written into.
pub struct AnswerRows {
    pub user_message_id: String,
    pub assistant_message_id: String,
}

/// Whether the answer row is written from scratch or carried on from its stored text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A new (empty) answer to the question before it.
    Answer,
    /// New text appended to the answer's stored text; the model sees that text as the
    /// start of its own, unfinished answer.
    Continue,
}

/// Everything the model thread needs for one answer.
struct Prepared {
    conversation_id: String,
    writer: StreamWriter,
    request: GenerateRequest,
    reply: Reply,
    provenance: Provenance,
}

/// Marks the app busy for one generation; dropping it frees the slot.
pub struct Busy<'a> {
    state: &'a AppState,
    pub cancel: CancelToken,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *lock(&self.state.generating) = None;
    }
}

/// The model an answer is written with, and its weight files' hash when known.
pub struct LoadedModel {
    pub info: ModelInfoDto,
    pub file_hash: Option<String>,
}

/// Claims the single generation slot and checks a model is ready.
pub fn begin<'a>(
    state: &'a AppState,
    hashes: &ModelFileHashes,
) -> AppResult<(Busy<'a>, LoadedModel)> {
    let info = state.model.ready_model().ok_or_else(AppError::no_model)?;
    let model = LoadedModel {
        file_hash: hashes.lookup(Path::new(&info.path)),
        info,
    };
    let mut generating = lock(&state.generating);
    if generating.is_some() {
        return Err(AppError::invalid(
            "ImpChat is still writing an answer; wait for it or press Stop, then try again",
        ));
    }
    let cancel = CancelToken::new();
    *generating = Some(cancel.clone());
    drop(generating);
    Ok((Busy { state, cancel }, model))
}

/// Streams the answer in `rows` and returns how it ended. Errors after the rows exist are
/// recorded on the answer and sent as an `error` event, so the call itself still succeeds.
pub async fn run(
    state: &AppState,
    busy: &Busy<'_>,
    model: &LoadedModel,
    conversation_id: &str,
    rows: AnswerRows,
    reply: Reply,
    on_event: Channel<StreamEvent>,
) -> AppResult<MessageStatus> {
    let prepared = {
        let store = state.store();
        prepare(
            &store,
            &state.settings(),
            model,
            conversation_id,
            &rows.assistant_message_id,
            reply,
        )
    };
    let _ = on_event.send(StreamEvent::Started {
        user_message_id: rows.user_message_id,
        assistant_message_id: rows.assistant_message_id.clone(),
    });
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            let _ = state
                .store()
                .finish(&rows.assistant_message_id, &Finish::failed(&err.message));
            return Ok(report_failure(&on_event, err.message));
        }
    };
    let cancel = busy.cancel.clone();
    let channel = on_event.clone();
    let outcome = state
        .model
        .run(move |slot| Ok(generate(slot, prepared, &cancel, &channel)))
        .await;
    match outcome {
        Ok(status) => Ok(status),
        // The model thread died mid-answer; the writer's drop marked the answer interrupted.
        Err(err) => Ok(report_failure(&on_event, err.message)),
    }
}

fn report_failure(on_event: &Channel<StreamEvent>, message: String) -> MessageStatus {
    let _ = on_event.send(StreamEvent::Error { message });
    MessageStatus::Error
}

fn prepare(
    store: &Store,
    settings: &AppSettings,
    model: &LoadedModel,
    conversation_id: &str,
    answer_id: &str,
    reply: Reply,
) -> AppResult<Prepared> {
    let conversation = store.get_conversation(conversation_id)?;
    let chat = ChatSettings::from_json(conversation.settings.as_ref())
        .unwrap_or_else(|| settings.defaults.clone());
    let seed = chat.seed.unwrap_or_else(random_seed);
    let system = conversation
        .system_prompt
        .clone()
        .or_else(|| settings.system_prompt.clone())
        .filter(|prompt| !prompt.trim().is_empty());
    let messages = history(store, &conversation, answer_id, reply)?;
    let request = GenerateRequest {
        system,
        messages,
        sampling: SamplingParams {
            temperature: chat.temperature,
            top_k: chat.top_k,
            top_p: chat.top_p,
            repetition_penalty: chat.repetition_penalty,
            seed,
            ..SamplingParams::default()
        },
        max_new_tokens: chat.max_tokens,
        stop: Vec::new(),
    };
    let LoadedModel { info, file_hash } = model;
    store.set_model_id(conversation_id, Some(&info.id))?;
    let writer = store.stream_writer(answer_id)?;
    let provenance = Provenance {
        model_id: info.id.clone(),
        model_file_hash: file_hash.clone(),
        quantization: info.quantization.clone(),
        image_size: info.image_size,
        sampling: chat,
        seed,
    };
    Ok(Prepared {
        conversation_id: conversation_id.to_string(),
        writer,
        request,
        reply,
        provenance,
    })
}

/// The active branch before the answer being written (up to and including it when it is
/// continued), as the engine's messages.
fn history(
    store: &Store,
    conversation: &Conversation,
    answer_id: &str,
    reply: Reply,
) -> AppResult<Vec<ChatMessage>> {
    let end = conversation
        .messages
        .iter()
        .position(|message| message.id == answer_id)
        .map_or(conversation.messages.len(), |at| match reply {
            Reply::Answer => at,
            Reply::Continue => at + 1,
        });
    let mut messages = Vec::with_capacity(end);
    for message in &conversation.messages[..end] {
        // A failed answer is not something the model said.
        if message.status == MessageStatus::Error {
            continue;
        }
        let images = message
            .images
            .iter()
            .map(|image| Ok(ImageBytes::new(store.read_image(&image.sha256, false)?)))
            .collect::<AppResult<Vec<_>>>()?;
        messages.push(ChatMessage {
            role: match message.role {
                impchat_store::Role::System => Role::System,
                impchat_store::Role::User => Role::User,
                impchat_store::Role::Assistant => Role::Assistant,
            },
            text: message.content.clone(),
            images,
        });
    }
    Ok(messages)
}

/// Runs on the model thread.
fn generate(
    slot: &mut crate::worker::Slot,
    prepared: Prepared,
    cancel: &CancelToken,
    channel: &Channel<StreamEvent>,
) -> MessageStatus {
    let Prepared {
        conversation_id,
        mut writer,
        request,
        reply,
        provenance,
    } = prepared;
    let Some((_, session)) = slot.model_and_session(&conversation_id) else {
        let message =
            "the model was unloaded before the answer started; load a model and try again";
        let _ = writer.finish(&Finish::failed(message));
        return report_failure(channel, message.to_string());
    };
    let mut save_error: Option<String> = None;
    let result = {
        let mut on_event = |event: GenerationEvent| match event {
            GenerationEvent::Token { text } => {
                if let Err(err) = writer.append(&text) {
                    save_error.get_or_insert(err.to_string());
                }
                let _ = channel.send(StreamEvent::Token { text });
            }
            GenerationEvent::ImageEncoded {
                index, ms, cached, ..
            } => {
                let _ = channel.send(StreamEvent::ImageEncoded { index, ms, cached });
            }
            GenerationEvent::PromptProcessed { tokens, ms } => {
                let _ = channel.send(StreamEvent::PromptProcessed { tokens, ms });
            }
            // Stats come with the call's result.
            GenerationEvent::Done { .. } => {}
        };
        match reply {
            Reply::Answer => session.generate(&request, cancel, &mut on_event),
            Reply::Continue => session.continue_answer(&request, cancel, &mut on_event),
        }
    };
    let (finish, stats) = match result {
        Ok(stats) => {
            let dto = StatsDto::from(&stats);
            let stats_json = serde_json::to_value(&dto).ok();
            let provenance_json = serde_json::to_value(&provenance).ok();
            let finish = match stats.stop_reason {
                Some(StopReason::Cancelled) => Finish::stopped(stats_json, provenance_json),
                // Cut off by the token limit or a full context: kept as complete; the stats'
                // stopReason tells the UI to show it as cut off.
                Some(
                    StopReason::EndOfTurn
                    | StopReason::StopString
                    | StopReason::MaxTokens
                    | StopReason::ContextFull,
                )
                | None => Finish::complete(stats_json, provenance_json),
            };
            (finish, dto)
        }
        Err(err) => (Finish::failed(err.to_string()), StatsDto::default()),
    };
    let status = finish.status;
    let failure = finish.error.clone();
    // Where the answer was taken from this writer mid-way (another process that
    // could not tell it was alive), it ended in a new row that is now the active
    // branch; the UI reloads the conversation after `done` and shows that row.
    if let Err(err) = writer.finish(&finish) {
        save_error.get_or_insert(err.to_string());
    }
    if let Some(message) = failure {
        return report_failure(channel, message);
    }
    if let Some(err) = save_error {
        return report_failure(
            channel,
            format!("the answer was shown but could not be saved completely: {err}"),
        );
    }
    let _ = channel.send(StreamEvent::Done { stats, status });
    status
}

/// A fresh seed that JavaScript numbers carry exactly.
fn random_seed() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now()) & MAX_SEED
}
