//! ImpChat's inference engine: loads an Imp checkpoint and answers questions about images.
//!
//! Knows nothing of Tauri, SQLite or HTTP; the app, the CLI and the server all use
//! the same small API: [`Model::load`], [`Model::info`], [`Model::new_session`] and
//! [`Session::generate`], which streams [`GenerationEvent`]s.

pub mod config;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod linear;
pub mod lm;
mod memory;
pub mod model;
pub mod projector;
pub mod request;
pub mod sampler;
pub mod session;
mod validate;
pub mod vision;
pub mod weights;

pub use config::Family;
pub use error::EngineError;
pub use impchat_input::image::ImageAspect;
pub use model::{check_checkpoint, ImagePreview, LoadOptions, Model, ModelInfo};
pub use request::{
    CancelToken, ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes, Role,
    SamplingParams, StopReason,
};
pub use session::Session;
