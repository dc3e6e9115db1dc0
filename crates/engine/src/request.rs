//! What callers (app, CLI, server) hand the engine and what it streams back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// Encoded image bytes exactly as the user supplied them (PNG, JPEG, ...).
#[derive(Debug, Clone)]
pub struct ImageBytes(pub Arc<[u8]>);

impl ImageBytes {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self(bytes.into())
    }
}

/// One turn of the conversation.
///
/// `text` may contain the literal `<image>` where images belong; when it has
/// fewer markers than `images`, the missing markers go first, each on its own line,
/// as Imp was trained (`"<image>\n" + question`).
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: Role,
    pub text: String,
    pub images: Vec<ImageBytes>,
}

impl ChatMessage {
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            text: text.into(),
            images: Vec::new(),
        }
    }
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            text: text.into(),
            images: Vec::new(),
        }
    }
    pub fn with_image(mut self, image: ImageBytes) -> Self {
        self.images.push(image);
        self
    }
}

/// How the next token is picked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 means off.
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299_792_458,
        }
    }
}

/// A whole generation request: the conversation so far, ending with the user's turn.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// `None` uses the model family's default system prompt.
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub sampling: SamplingParams,
    pub max_new_tokens: usize,
    /// Extra stop strings on top of the model's own end-of-turn token.
    pub stop: Vec<String>,
}

impl GenerateRequest {
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            system: None,
            messages,
            sampling: SamplingParams::default(),
            max_new_tokens: 512,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model's end-of-turn token.
    EndOfTurn,
    /// One of the request's stop strings.
    StopString,
    MaxTokens,
    /// The context window filled before the answer reached its token limit.
    ContextFull,
    Cancelled,
}

/// Figures for one answer, shown under it and stored with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub images: usize,
    pub image_encode_ms: f64,
    pub prompt_tokens: usize,
    /// Prompt tokens that were actually computed (the rest came from the session's cache).
    pub prompt_tokens_computed: usize,
    pub prompt_ms: f64,
    pub time_to_first_token_ms: f64,
    pub generated_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
    pub stop_reason: Option<StopReason>,
}

/// What a generation reports as it goes, in this order:
/// `ImageEncoded`* → `PromptProcessed` → `Token`* → `Done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum GenerationEvent {
    ImageEncoded {
        index: usize,
        ms: f64,
        /// The vision tower did not run for this image: its features were already in the
        /// session or in the model's feature cache.
        cached: bool,
        /// The features came from the model's feature cache, shared by all its sessions
        /// (encoded earlier for a regenerated answer, another session or a reopened chat).
        #[serde(default)]
        from_model_cache: bool,
    },
    PromptProcessed {
        tokens: usize,
        ms: f64,
    },
    /// A piece of text; never splits a UTF-8 character.
    Token {
        text: String,
    },
    Done {
        stats: GenerationStats,
    },
}

/// Stops a running generation from another thread; the generator checks it
/// before every token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
