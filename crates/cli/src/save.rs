//! `impchat chat --save`: records the conversation in the same store the ImpChat app reads,
//! with stats and provenance in the app's shape (docs/ipc.md), streaming the answer into
//! the database as it is generated so a crash loses at most a few words.

use std::path::{Path, PathBuf};

use impchat_engine::{GenerateRequest, GenerationStats, ImageBytes, ModelInfo, StopReason};
use impchat_store::{Finish, MessageId, Store, StreamWriter};
use serde_json::{json, Value};

use crate::exit::{ExitKind, Failure};

/// The app's Tauri identifier; its data folder is `<platform data dir>/<identifier>`.
const APP_IDENTIFIER: &str = "app.impchat.desktop";

/// The app's data folder (`~/.local/share/app.impchat.desktop` on Linux).
pub fn app_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join(APP_IDENTIFIER))
}

/// The store `--save` writes to, opened before the model loads so that a store problem
/// is reported at once instead of after a load of several gigabytes.
pub struct SaveStore {
    store: Store,
}

impl SaveStore {
    pub fn open(dir: &Path) -> Result<Self, Failure> {
        let (store, notice) = Store::open(dir).map_err(|err| {
            Failure::new(
                ExitKind::Failure,
                anyhow::anyhow!(
                    "cannot open the conversation store in '{}': {err}. Name another folder \
                     with --data-dir DIR, or leave out --save to chat without saving",
                    dir.display()
                ),
            )
        })?;
        if let Some(notice) = notice {
            eprintln!("impchat: {}", notice.message);
        }
        Ok(Self { store })
    }

    /// Records chats with the model that has been loaded.
    pub fn recorder(self, info: &ModelInfo, seed_flag: Option<u64>) -> Recorder {
        Recorder {
            store: self.store,
            model_id: info.id.clone(),
            quantization: info.quantization.clone(),
            image_size: info.image_size,
            seed_flag,
            conversation: None,
            leaf: None,
            broken: false,
        }
    }
}

pub struct Recorder {
    store: Store,
    model_id: String,
    quantization: String,
    image_size: u32,
    /// The `--seed` given, if any; without one the chat's settings say `null` (the app then
    /// picks a seed per answer) while each answer's provenance records the seed it used.
    seed_flag: Option<u64>,
    conversation: Option<String>,
    leaf: Option<MessageId>,
    /// After the first failed write the chat goes on unsaved, with one warning.
    broken: bool,
}

/// The answer being written.
pub struct AnswerRecord {
    writer: StreamWriter,
}

impl Recorder {
    /// The next question starts a new conversation.
    pub fn new_conversation(&mut self) {
        self.conversation = None;
        self.leaf = None;
    }

    /// Stores the question and an empty, streaming answer under it.
    pub fn begin_turn(&mut self, request: &GenerateRequest) -> Option<AnswerRecord> {
        if self.broken {
            return None;
        }
        let outcome = self.try_begin_turn(request);
        self.check(outcome)
    }

    fn try_begin_turn(&mut self, request: &GenerateRequest) -> impchat_store::Result<AnswerRecord> {
        let question = request
            .messages
            .last()
            .map(|m| (m.text.as_str(), &m.images[..]));
        let (text, images) = question.unwrap_or(("", &[] as &[ImageBytes]));
        let conversation = match &self.conversation {
            Some(id) => id.clone(),
            None => {
                let summary = self.store.create_conversation(None)?;
                self.store.set_model_id(&summary.id, Some(&self.model_id))?;
                let settings = chat_settings(request, self.seed_flag);
                self.store.set_chat_settings(
                    &summary.id,
                    request.system.as_deref(),
                    Some(&settings),
                )?;
                self.conversation = Some(summary.id.clone());
                summary.id
            }
        };
        let mut hashes = Vec::with_capacity(images.len());
        for image in images {
            hashes.push(self.store.put_image(&image.0)?.sha256);
        }
        let question =
            self.store
                .add_user_message(&conversation, self.leaf.as_deref(), text, &hashes)?;
        let answer = self.store.begin_assistant(&conversation, &question)?;
        self.leaf = Some(answer.clone());
        Ok(AnswerRecord {
            writer: self.store.stream_writer(&answer)?,
        })
    }

    pub fn append(&mut self, record: &mut AnswerRecord, delta: &str) {
        if !self.broken {
            let outcome = record.writer.append(delta);
            self.check(outcome);
        }
    }

    /// Records how the answer ended.
    pub fn finish(
        &mut self,
        record: AnswerRecord,
        request: &GenerateRequest,
        outcome: Result<&GenerationStats, String>,
    ) {
        let finish = match outcome {
            Ok(stats) => {
                let stats_json = Some(stats_json(stats));
                let provenance = Some(self.provenance(request));
                match stats.stop_reason {
                    Some(StopReason::Cancelled) => Finish::stopped(stats_json, provenance),
                    // A full context or the token limit cut the answer off: it is kept as
                    // complete, and its stats' stopReason lets the app say it was cut off.
                    Some(
                        StopReason::EndOfTurn
                        | StopReason::StopString
                        | StopReason::MaxTokens
                        | StopReason::ContextFull,
                    )
                    | None => Finish::complete(stats_json, provenance),
                }
            }
            Err(message) => Finish::failed(message),
        };
        if !self.broken {
            let outcome = record.writer.finish(&finish);
            // The answer may have ended in a new row (its first was taken while it was
            // written); the conversation goes on under the row that holds it.
            if let Some(ended_in) = self.check(outcome) {
                self.leaf = Some(ended_in);
            }
        }
    }

    fn check<T>(&mut self, outcome: impchat_store::Result<T>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(err) => {
                eprintln!("impchat: could not save the chat ({err}); it goes on unsaved");
                self.broken = true;
                None
            }
        }
    }

    fn provenance(&self, request: &GenerateRequest) -> Value {
        json!({
            "modelId": self.model_id,
            "modelFileHash": null,
            "quantization": self.quantization,
            "imageSize": self.image_size,
            "sampling": chat_settings(request, Some(request.sampling.seed)),
            "seed": request.sampling.seed,
        })
    }
}

/// `ChatSettings` of docs/ipc.md.
fn chat_settings(request: &GenerateRequest, seed: Option<u64>) -> Value {
    let sampling = &request.sampling;
    json!({
        "temperature": sampling.temperature,
        "topP": sampling.top_p,
        "topK": sampling.top_k,
        "maxTokens": request.max_new_tokens,
        "repetitionPenalty": sampling.repetition_penalty,
        "seed": seed,
    })
}

/// `GenerationStats` of docs/ipc.md.
fn stats_json(stats: &GenerationStats) -> Value {
    json!({
        "images": stats.images,
        "imageEncodeMs": stats.image_encode_ms,
        "promptTokens": stats.prompt_tokens,
        "promptTokensComputed": stats.prompt_tokens_computed,
        "promptMs": stats.prompt_ms,
        "timeToFirstTokenMs": stats.time_to_first_token_ms,
        "generatedTokens": stats.generated_tokens,
        "decodeMs": stats.decode_ms,
        "decodeTokensPerS": stats.decode_tokens_per_s,
        "stopReason": stats.stop_reason,
    })
}
