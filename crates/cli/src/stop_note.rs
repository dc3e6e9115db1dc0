//! An answer cut off because the context window filled is shown as cut off, not as if it
//! had reached --max-tokens or ended by itself.

use impchat_engine::{GenerationStats, StopReason};

/// What to tell the user about an answer the context cut off; `None` for any other ending.
pub fn cut_off_note(stats: &GenerationStats, context_length: usize) -> Option<String> {
    (stats.stop_reason == Some(StopReason::ContextFull)).then(|| {
        format!(
            "the answer was cut off: the model's context of {context_length} tokens is full \
             ({} prompt + {} answer tokens)",
            stats.prompt_tokens, stats.generated_tokens
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_context_is_called_cut_off() {
        let stats = |reason| GenerationStats {
            prompt_tokens: 2000,
            generated_tokens: 48,
            stop_reason: Some(reason),
            ..Default::default()
        };
        let note = cut_off_note(&stats(StopReason::ContextFull), 2048).expect("a note");
        assert!(note.contains("context of 2048 tokens is full"), "{note}");
        for reason in [
            StopReason::MaxTokens,
            StopReason::EndOfTurn,
            StopReason::Cancelled,
        ] {
            assert!(cut_off_note(&stats(reason), 2048).is_none());
        }
    }
}
