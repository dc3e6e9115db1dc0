//! GGUF models as `impchat-convert` writes them: a llama.cpp-compatible language-model
//! file and its `mmproj-*.gguf` companion (vision tower + projector in clip naming).

mod file;
pub(crate) mod load;
mod spm;

pub use file::{GgufFile, TensorBytes};
pub use load::find_mmproj;
