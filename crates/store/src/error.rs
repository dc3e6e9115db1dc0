use std::io;
use std::path::PathBuf;

/// Everything the store can refuse or fail at. Each message says what was
/// wrong and what the user (or the calling code) can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another ImpChat process has been opening this store for {seconds} s and still holds {}; \
         quit it (or wait until it has started) and try again",
        lock.display()
    )]
    OpenBusy { lock: PathBuf, seconds: u64 },

    #[error("cannot {action} {path}: {source}. Check that the data folder exists, is writable and the disk is not full")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("database error: {0}. If this keeps happening, quit ImpChat and check the data folder's disk")]
    Sqlite(#[from] rusqlite::Error),

    #[error("the database {path} was written by a newer ImpChat (schema version {found}; this build understands up to {supported}). Update ImpChat to open it; the file was left untouched")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("upgrading the database from schema version {from} to {to} failed: {source}. Nothing was changed by the failed step; a copy made before the upgrade is at {}", backup.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(no backup was needed: the database was empty)".into()))]
    Migration {
        from: i64,
        to: i64,
        backup: Option<PathBuf>,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "conversation {0} does not exist (it may have been purged); refresh the conversation list"
    )]
    ConversationNotFound(String),

    #[error("message {0} does not exist (its conversation may have been purged); reload the conversation")]
    MessageNotFound(String),

    #[error("message {message} belongs to another conversation than {conversation}; reload the conversation and try again")]
    WrongConversation {
        conversation: String,
        message: String,
    },

    #[error("message {id} is {status}, not a streaming answer, so text cannot be added to it; start a new answer instead")]
    NotStreaming { id: String, status: String },

    #[error("{0} is not a final message status; finish an answer as complete, stopped, interrupted or error")]
    NotFinal(String),

    #[error("only assistant answers can be continued; message {0} is not one")]
    NotAnAnswer(String),

    #[error("the file is not an image ImpChat can read (PNG, JPEG, WebP, GIF, BMP or TIFF): {0}. Convert it to PNG or JPEG and add it again")]
    ImageDecode(String),

    #[error("image {0} is not in the store; add the image again before sending it")]
    ImageMissing(String),

    #[error("stored data for {what} is damaged ({detail}); export what you can and report this")]
    CorruptRow { what: String, detail: String },

    #[error("{path} is not a usable ImpChat archive: {reason}. Choose a .zip file made by ImpChat's export")]
    InvalidArchive { path: PathBuf, reason: String },

    #[error("the archive {path} was made by a newer ImpChat (archive format {found}; this build reads up to {supported}). Update ImpChat to import it")]
    ArchiveTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        StoreError::CorruptRow {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
