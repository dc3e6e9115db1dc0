//! Turns user input into model input without any weights, and model tokens back into text.
//!
//! - [`image`]: [`image::decode`] sniffs and decodes untrusted bytes within [`image::DecodeLimits`]
//!   (EXIF orientation applied, alpha dropped as PIL's `convert("RGB")`);
//!   [`image::preprocess`] pads (LLaVA `expand2square`) and resizes exactly as PIL's BICUBIC;
//!   [`image::to_pixel_values`] gives CHW `f32` in `[-1, 1]`; [`image::visual_tokens`].
//! - [`tokenizer`]: [`tokenizer::load_tokenizer`] reads `tokenizer.json`, or builds the same
//!   tokenizer HF builds from `vocab.json` + `merges.txt` (+ added / special tokens).
//! - [`template`]: [`template::ChatTemplate`] renders Imp's Phi-2, ChatML and Phi-3 prompts.
//! - [`splice`]: [`splice::tokenize_prompt`] splits a prompt on `<image>` into
//!   [`splice::PromptPiece`]s, as Imp's `tokenizer_image_token`.
//! - [`files`]: only regular files are opened, small ones with a size cap.
//! - [`source`]: [`source::read_user_file`] reads a user's file or stdin within a size cap
//!   and a deadline (devices refused, FIFOs and pipes timed out).
//! - [`detokenize`]: [`detokenize::TextStream`] turns ids into UTF-8-safe text deltas;
//!   [`detokenize::StopMatcher`] cuts the text at stop strings without leaking their prefixes.

pub mod detokenize;
pub mod files;
pub mod image;
pub mod source;
pub mod splice;
pub mod template;
pub mod tokenizer;

pub use detokenize::{StopMatcher, StopOutcome, TextStream};
pub use image::{DecodeLimits, DecodedImage, ImageAspect, ImageError};
pub use splice::{PromptError, PromptPiece};
pub use template::{ChatTemplate, Role, Turn};
pub use tokenizer::TokenizerError;
