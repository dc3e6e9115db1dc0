//! ImpChat's conversation store: SQLite (WAL, versioned migrations with
//! automatic backups, self-healing open) plus content-addressed image files.
//!
//! It knows nothing of models: model ids, generation stats, provenance and chat
//! settings are opaque strings and JSON values to it.
//!
//! ```no_run
//! # fn main() -> Result<(), impchat_store::StoreError> {
//! use impchat_store::{Finish, Store};
//! let (store, notice) = Store::open(std::path::Path::new("/tmp/impchat"))?;
//! if let Some(notice) = notice { eprintln!("{}", notice.message); }
//! let chat = store.create_conversation(None)?;
//! let question = store.add_user_message(&chat.id, None, "What is in this picture?", &[])?;
//! let answer = store.begin_assistant(&chat.id, &question)?;
//! let mut writer = store.stream_writer(&answer)?;
//! writer.append("A cat")?;
//! writer.finish(&Finish::complete(None, None))?;
//! # Ok(()) }
//! ```

mod archive;
mod conversations;
mod error;
mod images;
mod markdown;
mod messages;
mod schema;
mod search;
mod store;
mod stream;
mod time;
mod types;
mod writers;

pub use archive::{ARCHIVE_FORMAT, ARCHIVE_FORMAT_VERSION};
pub use conversations::DEFAULT_TITLE;
pub use error::{Result, StoreError};
pub use images::{GC_GRACE, THUMBNAIL_SIZE};
pub use schema::SCHEMA_VERSION;
pub use search::{fts_query, MATCH_END, MATCH_START};
pub use store::Store;
pub use stream::{FlushPolicy, StreamWriter};
pub use types::{
    Conversation, ConversationId, ConversationSummary, ExportScope, Finish, GcReport, ImageRef,
    ImportReport, Message, MessageId, MessageStatus, OpenNotice, Role, SearchHit,
};
