//! The one error type every command rejects with: `{ kind, message }` as docs/ipc.md says.

use serde::Serialize;

/// What kind of thing went wrong, so the UI can react (e.g. open model set-up on `no_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself was wrong (bad argument, unsupported file, ...).
    InvalidInput,
    /// A conversation, message, image or staged token that does not exist.
    NotFound,
    /// A command needs a loaded model and none is loaded.
    NoModel,
    /// The model could not be loaded or failed while answering.
    Engine,
    /// The conversation store failed.
    Store,
    /// Reading or writing a file failed.
    Io,
    /// A model download failed in a way that trying again may fix (network, damaged file).
    Download,
    /// The user cancelled; what was done so far is kept.
    Cancelled,
    /// A part of the app itself stopped working (e.g. the model thread ended).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    /// Says what was wrong and what to do.
    pub message: String,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{what}: {err}"))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn no_model() -> Self {
        Self::new(
            ErrorKind::NoModel,
            "no model is loaded; choose a model folder in the model set-up first",
        )
    }
}

pub type AppResult<T> = Result<T, AppError>;
