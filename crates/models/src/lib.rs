//! ImpChat's model manager: the catalog of Imp checkpoints, memory-fit checks, the models
//! directory (list, remove, verify), import of local checkpoints and verified, resumable
//! downloads from the Hugging Face Hub (only when the user asks for one).
//!
//! Loading weights is the engine's job; this crate checks files and structure only and does
//! not depend on the engine.

pub mod catalog;
pub mod id;
pub mod memory;

pub use catalog::{
    Catalog, CatalogEntry, CatalogError, CatalogFile, ImageAspect, LmFamily, QuantOption,
};
pub use id::{InvalidModelId, ModelId};
pub use memory::{
    available_memory, check_fit, estimate_file_bytes, estimate_ram, estimate_ram_with, fit, Fit,
    FitReport, ModelShape, Quant, RamEstimate, RuntimeAssumptions,
};
