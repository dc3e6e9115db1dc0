//! Downloads from the Hugging Face Hub, started only by an explicit user action.
//!
//! Flow: resolve every file (`HEAD {endpoint}/{repo}/resolve/{revision}/{file}` without
//! following the redirect, to read the LFS SHA-256 and size the hub puts on it), download
//! files in parallel into `<models>/.staging/<id>/<file>.part` with HTTP Range resume, verify
//! each against the hub's digest before renaming it into place, then move the whole folder
//! into the models dir with a manifest.

mod config;
mod error;
mod progress;
mod pull;
mod remote;
mod transfer;
mod url;

pub use config::HubConfig;
pub use error::PullError;
pub use progress::{Phase, Progress};
pub use pull::{pull, pull_with_hook, ConvertHook, PullOutcome, PullRequest, WantedFile};
pub use remote::RemoteFile;
