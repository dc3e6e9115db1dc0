use std::io;
use std::path::PathBuf;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid download request: {0}")]
    InvalidRequest(String),
    #[error("the hub answered 404 for {file} in {repo} at revision {revision}: the repository, revision or file does not exist (check the spelling, or whether the file was renamed)")]
    NotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("the hub refused {file} in {repo} (HTTP {status}): the repository is gated or private; accept its terms on the Hugging Face website and set an access token (HF_TOKEN)")]
    Gated {
        repo: String,
        file: String,
        status: u16,
    },
    #[error("the server answered HTTP {status} for {file} ({url}); try again later")]
    HttpStatus {
        file: String,
        status: u16,
        url: String,
    },
    #[error("could not download {file} after {attempts} attempts: {reason}; check the network connection and run the download again (finished parts are kept)")]
    Connection {
        file: String,
        attempts: u32,
        reason: String,
    },
    #[error("{file} is corrupt: its {algorithm} is {actual} but the hub says {expected}; the damaged download was deleted, run the download again")]
    ChecksumMismatch {
        file: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("the hub sent an unusable response for {file}: {reason}")]
    Protocol { file: String, reason: String },
    #[error("download cancelled; partial files are kept and the next download resumes them")]
    Cancelled,
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("converting the downloaded model failed: {0}")]
    Convert(String),
}

impl PullError {
    /// True when running the same download again can pick up where this one stopped.
    pub fn can_resume(&self) -> bool {
        matches!(
            self,
            PullError::Cancelled | PullError::Connection { .. } | PullError::HttpStatus { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> PullError {
        let path = path.into();
        move |source| PullError::Io { path, source }
    }
}
