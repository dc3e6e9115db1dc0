//! How the store's errors reach the UI.

use impchat_store::StoreError;

use crate::error::{AppError, ErrorKind};

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        let kind = match &err {
            StoreError::ConversationNotFound(_)
            | StoreError::MessageNotFound(_)
            | StoreError::ImageMissing(_) => ErrorKind::NotFound,
            StoreError::ImageDecode(_)
            | StoreError::InvalidArchive { .. }
            | StoreError::ArchiveTooNew { .. }
            | StoreError::NotAnAnswer(_)
            | StoreError::WrongConversation { .. }
            | StoreError::NotStreaming { .. }
            | StoreError::NotFinal(_) => ErrorKind::InvalidInput,
            StoreError::Io { .. } => ErrorKind::Io,
            _ => ErrorKind::Store,
        };
        AppError::new(kind, err.to_string())
    }
}
