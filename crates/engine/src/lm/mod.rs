//! The language models behind Imp, one file per architecture, all driven through
//! [`LanguageModel`] with input embeddings so image features can be spliced in.

pub mod cache;
pub mod phi2;
pub mod phi3;
pub mod qwen2;

pub(crate) mod attention;
mod layers;
mod rotary;
mod swiglu_block;

pub use cache::{KvCache, KvPrecision};

use candle_core::{IndexOp, Result, Tensor};

/// A causal decoder that accepts input embeddings and extends a [`KvCache`].
///
/// Weights are shared and immutable; all per-conversation state lives in the cache,
/// so one model serves many sessions at once.
pub trait LanguageModel: Send + Sync {
    /// Token ids `(1, L)` (u32) to input embeddings `(1, L, hidden)`.
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;

    /// Runs `embeds` `(1, L, hidden)` placed at positions `pos..pos + L` (`pos` must equal
    /// `cache.len()`), appends their keys/values to `cache` and returns the final hidden
    /// states `(1, L, hidden)` after the last norm.
    fn hidden_states(&self, embeds: &Tensor, cache: &mut KvCache, pos: usize) -> Result<Tensor>;

    /// Hidden states `(.., hidden)` to logits `(.., vocab)`.
    fn lm_head(&self, hidden: &Tensor) -> Result<Tensor>;

    fn num_layers(&self) -> usize;
    fn hidden_size(&self) -> usize;

    /// Logits `(1, L, vocab)` for every position (for parity checks and scoring).
    fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache, pos: usize) -> Result<Tensor> {
        let hidden = self.hidden_states(embeds, cache, pos)?;
        self.lm_head(&hidden)
    }

    /// Logits `(vocab,)` of the last position only: what generation needs, without paying
    /// for the vocabulary projection of every prompt token.
    fn forward_embeds_last(
        &self,
        embeds: &Tensor,
        cache: &mut KvCache,
        pos: usize,
    ) -> Result<Tensor> {
        let hidden = self.hidden_states(embeds, cache, pos)?;
        let len = hidden.dim(1)?;
        let last = hidden.i((0, len - 1..len))?;
        self.lm_head(&last)?.squeeze(0)
    }
}

/// Fails when the caller's position and the cache disagree (a logic error that would
/// otherwise silently corrupt the attention pattern).
pub(crate) fn check_position(cache: &KvCache, pos: usize) -> Result<()> {
    if cache.len() != pos {
        candle_core::bail!(
            "position {pos} does not follow the {} cached tokens",
            cache.len()
        )
    }
    Ok(())
}

#[cfg(test)]
mod reference_tests;
