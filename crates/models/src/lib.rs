//! ImpChat's model manager: the catalog of Imp checkpoints, memory-fit checks, the models
//! directory (list, remove, verify), import of local checkpoints and verified, resumable
//! downloads from the Hugging Face Hub (only when the user asks for one).
//!
//! Loading weights is the engine's job; this crate checks files and structure only and does
//! not depend on the engine.

pub mod cancel;
pub mod catalog;
pub mod checkpoint;
pub mod hashing;
pub mod hub;
pub mod id;
pub mod import;
pub mod manifest;
pub mod memory;
pub mod store;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use cancel::CancelToken;
pub use catalog::{
    Catalog, CatalogEntry, CatalogError, CatalogFile, ImageAspect, LmFamily, QuantOption,
};
pub use checkpoint::{
    validate_checkpoint, CheckpointError, CheckpointReport, ShardReport, TokenizerFiles,
};
pub use hub::{
    pull, pull_with_hook, ConvertHook, HubConfig, Phase, Progress, PullError, PullOutcome,
    PullRequest, WantedFile,
};
pub use id::{InvalidModelId, ModelId};
pub use import::{import_checkpoint, ImportError};
pub use manifest::{Manifest, ManifestError, ManifestFile, Source, MANIFEST_FILE};
pub use memory::{
    available_memory, check_fit, estimate_file_bytes, estimate_ram, estimate_ram_with, fit, Fit,
    FitReport, ModelShape, Quant, RamEstimate, RuntimeAssumptions,
};
pub use store::{
    default_models_dir, discard_partial_download, get_installed, list_installed, mark_used,
    model_dir, partial_download_bytes, remove, staging_dir, verify, FileProblem, InstalledModel,
    Listing, StoreError, UnreadableModel, VerifyReport,
};
