//! GGUF models as `impchat-convert` writes them: a llama.cpp-compatible language-model
//! file and its `mmproj-*.gguf` companion (vision tower + projector in clip naming).

mod alignment;
mod file;
pub(crate) mod load;
mod spm;
mod vision_weights;

pub use file::{GgufFile, TensorBytes};
pub use load::find_mmproj;
pub use vision_weights::load_vision_tower;
