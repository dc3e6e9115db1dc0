//! Splits a rendered prompt at its `<image>` markers into token runs and image slots,
//! as Imp's `tokenizer_image_token` does.

use tokenizers::Tokenizer;

use crate::template::IMAGE_MARKER;

/// A run of prompt tokens, or the place where image `n`'s visual tokens go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptPiece {
    Text(Vec<u32>),
    Image(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("The prompt is empty. Type a message and try again.")]
    Empty,
    #[error(
        "The prompt has {markers} <image> marker(s) but {images} image(s) were attached; \
         each attached image needs exactly one marker."
    )]
    ImageCountMismatch { markers: usize, images: usize },
    #[error("Could not tokenize the prompt: {0}")]
    Tokenize(String),
}

/// Tokenizes `prompt` chunk by chunk around its literal `<image>` markers, with the
/// tokenizer's special tokens (so tokenizers that add a BOS add it), dropping a leading
/// `bos_id` from every chunk after the first, and yields `Image(i)` between chunks in order.
/// Empty chunks yield no `Text` piece.
pub fn tokenize_prompt(
    tok: &Tokenizer,
    prompt: &str,
    n_images: usize,
    bos_id: Option<u32>,
) -> Result<Vec<PromptPiece>, PromptError> {
    tokenize_prompt_at(tok, prompt, IMAGE_MARKER, n_images, bos_id)
}

/// [`tokenize_prompt`] with images at `marker` instead of `<image>` (see
/// [`crate::template::unique_image_marker`]): any `<image>` in the prompt is plain text.
pub fn tokenize_prompt_at(
    tok: &Tokenizer,
    prompt: &str,
    marker: &str,
    n_images: usize,
    bos_id: Option<u32>,
) -> Result<Vec<PromptPiece>, PromptError> {
    if prompt.is_empty() || marker.is_empty() {
        return Err(PromptError::Empty);
    }
    let chunks: Vec<&str> = prompt.split(marker).collect();
    let markers = chunks.len() - 1;
    if markers != n_images {
        return Err(PromptError::ImageCountMismatch {
            markers,
            images: n_images,
        });
    }
    let mut pieces = Vec::with_capacity(chunks.len() * 2);
    for (index, chunk) in chunks.iter().enumerate() {
        if index > 0 {
            pieces.push(PromptPiece::Image(index - 1));
        }
        let encoding = tok
            .encode(*chunk, true)
            .map_err(|e| PromptError::Tokenize(e.to_string()))?;
        let mut ids = encoding.get_ids();
        if index > 0 {
            if let (Some(bos), Some(&first)) = (bos_id, ids.first()) {
                if first == bos {
                    ids = &ids[1..];
                }
            }
        }
        if !ids.is_empty() {
            pieces.push(PromptPiece::Text(ids.to_vec()));
        }
    }
    Ok(pieces)
}

/// The prompt's length in model positions, each image counting `visual_tokens_per_image`.
pub fn count_tokens(pieces: &[PromptPiece], visual_tokens_per_image: usize) -> usize {
    pieces
        .iter()
        .map(|piece| match piece {
            PromptPiece::Text(ids) => ids.len(),
            PromptPiece::Image(_) => visual_tokens_per_image,
        })
        .sum()
}
