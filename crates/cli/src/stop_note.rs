//! An answer cut off because the context window filled is shown as cut off, not as if it
//! had reached --max-tokens or ended by itself.

use impchat_engine::{GenerationStats, StopReason};

/// The stop reason to report: engines that say `MaxTokens` when the context filled are
/// told apart by the count, since the answer then stopped short of `max_tokens`.
pub fn answer_stop_reason(stats: &GenerationStats, max_tokens: usize) -> Option<StopReason> {
    match stats.stop_reason {
        Some(StopReason::MaxTokens) if stats.generated_tokens < max_tokens => {
            Some(StopReason::ContextFull)
        }
        other => other,
    }
}

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

    fn stats(reason: StopReason, generated: usize) -> GenerationStats {
        GenerationStats {
            generated_tokens: generated,
            stop_reason: Some(reason),
            ..Default::default()
        }
    }

    #[test]
    fn a_max_tokens_stop_short_of_the_limit_is_a_full_context() {
        let short = stats(StopReason::MaxTokens, 10);
        assert_eq!(
            answer_stop_reason(&short, 512),
            Some(StopReason::ContextFull)
        );
        let reached = stats(StopReason::MaxTokens, 512);
        assert_eq!(
            answer_stop_reason(&reached, 512),
            Some(StopReason::MaxTokens)
        );
        let ended = stats(StopReason::EndOfTurn, 3);
        assert_eq!(answer_stop_reason(&ended, 512), Some(StopReason::EndOfTurn));
        assert!(cut_off_note(&ended, 2048).is_none());
    }
}
