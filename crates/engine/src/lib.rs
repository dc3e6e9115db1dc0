//! ImpChat's inference engine: loads an Imp checkpoint and answers questions about images.
//!
//! Knows nothing of Tauri, SQLite or HTTP; the app, the CLI and the server all use
//! the same small API: [`Model::load`], [`Model::info`], [`Model::new_session`] and
//! [`Session::generate`], which streams [`GenerationEvent`]s.

pub mod linear;
pub mod projector;
pub mod request;
pub mod vision;

pub use request::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes, Role,
    SamplingParams, StopReason,
};
