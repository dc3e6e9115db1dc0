//! The shapes the store hands out. Field names serialise to camelCase so the
//! app shell can pass them straight to the UI (see docs/ipc.md).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;

/// A conversation id (UUID v4 text).
pub type ConversationId = String;
/// A message id (UUID v4 text).
pub type MessageId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Tokens are still arriving.
    Streaming,
    Complete,
    /// The user pressed stop.
    Stopped,
    /// The app died while the answer was streaming (set at the next open).
    Interrupted,
    Error,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(StoreError::corrupt(stringify!($ty), format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

text_enum!(Role { System => "system", User => "user", Assistant => "assistant" });
text_enum!(MessageStatus {
    Streaming => "streaming",
    Complete => "complete",
    Stopped => "stopped",
    Interrupted => "interrupted",
    Error => "error",
});

impl MessageStatus {
    /// Whether an answer with this status is finished (no more text will come).
    pub fn is_final(self) -> bool {
        self != MessageStatus::Streaming
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub title: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; bumped by every new message, rename and settings change.
    pub updated_at: i64,
    pub pinned: bool,
    pub model_id: Option<String>,
    /// In the trash.
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    #[serde(flatten)]
    pub summary: ConversationSummary,
    pub system_prompt: Option<String>,
    /// Per-chat `ChatSettings` JSON, opaque to the store.
    pub settings: Option<Value>,
    /// The active branch, oldest first.
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    pub sha256: String,
    pub mime: String,
    /// Pixel size after EXIF orientation is applied (what the user sees).
    pub width: u32,
    pub height: u32,
    /// Size of the original file.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub parent_id: Option<MessageId>,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub created_at: i64,
    pub images: Vec<ImageRef>,
    /// `GenerationStats` JSON, opaque to the store.
    pub stats: Option<Value>,
    /// `Provenance` JSON, opaque to the store.
    pub provenance: Option<Value>,
    pub error: Option<String>,
    /// Every version of this message (itself included), oldest first: edits of a
    /// user message or regenerations of an answer share a parent.
    pub sibling_ids: Vec<MessageId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    pub conversation_id: ConversationId,
    /// `None` when the conversation title matched.
    pub message_id: Option<MessageId>,
    pub title: String,
    /// Plain text with each match wrapped in `\u{1}` ... `\u{2}`.
    pub snippet: String,
    /// Relevance among hits of the same kind (title or message), higher is
    /// better (negated SQLite bm25).
    pub rank: f64,
}

/// Told to the user once after `Store::open` had to set a damaged database aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenNotice {
    /// A sentence for the UI (`store-notice` event).
    pub message: String,
    /// Where the damaged file now is (it is never deleted).
    pub moved_to: PathBuf,
    /// What SQLite said was wrong.
    pub reason: String,
}

/// What an archive import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub imported: usize,
    /// Conversations already in the store (same origin, same content).
    pub skipped: usize,
}

/// What `gc_images` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub images_removed: usize,
    pub bytes_freed: u64,
}

/// How a finished answer is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// Anything but `Streaming`.
    pub status: MessageStatus,
    pub error: Option<String>,
    pub stats: Option<Value>,
    pub provenance: Option<Value>,
}

impl Finish {
    pub fn complete(stats: Option<Value>, provenance: Option<Value>) -> Self {
        Finish {
            status: MessageStatus::Complete,
            error: None,
            stats,
            provenance,
        }
    }

    pub fn stopped(stats: Option<Value>, provenance: Option<Value>) -> Self {
        Finish {
            status: MessageStatus::Stopped,
            error: None,
            stats,
            provenance,
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Finish {
            status: MessageStatus::Error,
            error: Some(error.into()),
            stats: None,
            provenance: None,
        }
    }
}

/// Which conversations an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportScope<'a> {
    One(&'a str),
    /// Every conversation not in the trash.
    All,
}

impl<'a> From<Option<&'a str>> for ExportScope<'a> {
    fn from(id: Option<&'a str>) -> Self {
        id.map_or(ExportScope::All, ExportScope::One)
    }
}
