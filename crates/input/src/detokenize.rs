//! Streaming detokenisation: token ids in, UTF-8-safe text deltas out, cut at stop strings.

use tokenizers::Tokenizer;

use crate::tokenizer::TokenizerError;

const REPLACEMENT: char = '\u{FFFD}';

/// Decodes generated ids one at a time into text deltas that never split a character.
///
/// Each step decodes the ids since the last emitted chunk together with the chunk before
/// it as context (so decoders that strip a leading space, like SentencePiece's, keep the
/// spaces between tokens), and holds text back while it ends in U+FFFD, i.e. while a
/// byte-level or byte-fallback character is still incomplete.
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    /// The last emitted chunk's ids (the context), then the ids not emitted yet.
    ids: Vec<u32>,
    context_len: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            context_len: 0,
        }
    }

    /// Adds one generated id; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        let context = self.decode(&self.ids[..self.context_len])?;
        self.ids.push(id);
        let text = self.decode(&self.ids)?;
        if text.len() <= context.len() || text.ends_with(REPLACEMENT) {
            return Ok(None);
        }
        let Some(delta) = text.strip_prefix(context.as_str()) else {
            // The context decoded differently once more ids followed; wait for a stable cut.
            return Ok(None);
        };
        let delta = delta.to_owned();
        // The ids just emitted become the next step's context.
        self.ids.drain(..self.context_len);
        self.context_len = self.ids.len();
        Ok(Some(delta))
    }

    /// Returns whatever is still held back at the end of generation (an incomplete
    /// character comes out as U+FFFD), and starts the stream afresh.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        let context = self.decode(&self.ids[..self.context_len])?;
        let text = self.decode(&self.ids)?;
        self.ids.clear();
        self.context_len = 0;
        let delta = match text.strip_prefix(context.as_str()) {
            Some(rest) => rest.to_owned(),
            None => text.chars().skip(context.chars().count()).collect(),
        };
        Ok((!delta.is_empty()).then_some(delta))
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        self.tokenizer
            .decode(ids, self.skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }
}

/// What [`StopMatcher::push`] lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to show (may be empty while a possible stop string is held back).
    Emit(String),
    /// A stop string appeared; `before` is the rest of the text up to it. Nothing after
    /// it is ever emitted.
    Stopped { before: String },
}

/// Cuts a text stream at the first stop string, holding back any tail that could be
/// the start of one so that no part of a stop string is ever shown.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            stops,
            pending: String::new(),
            stopped: false,
        }
    }

    pub fn push(&mut self, delta: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome::Stopped {
                before: String::new(),
            };
        }
        self.pending.push_str(delta);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.stopped = true;
            self.pending.truncate(at);
            return StopOutcome::Stopped {
                before: std::mem::take(&mut self.pending),
            };
        }
        let hold_from = self.partial_stop_start();
        let held = self.pending.split_off(hold_from);
        StopOutcome::Emit(std::mem::replace(&mut self.pending, held))
    }

    /// The text still held back when the stream ends without a stop string.
    pub fn flush(self) -> String {
        if self.stopped {
            String::new()
        } else {
            self.pending
        }
    }

    /// Where the longest tail of `pending` that begins some stop string starts
    /// (`pending.len()` when there is none).
    fn partial_stop_start(&self) -> usize {
        self.pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.pending.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], deltas: &[&str]) -> (Vec<StopOutcome>, String) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let outs = deltas.iter().map(|d| m.push(d)).collect();
        (outs, m.flush())
    }

    fn emit(s: &str) -> StopOutcome {
        StopOutcome::Emit(s.to_string())
    }

    #[test]
    fn stop_split_across_three_deltas() {
        let (outs, rest) = run(&["</s>"], &["Hello <", "/", "s> more"]);
        assert_eq!(
            outs,
            vec![
                emit("Hello "),
                emit(""),
                StopOutcome::Stopped {
                    before: String::new()
                }
            ]
        );
        assert_eq!(rest, "");
    }

    #[test]
    fn stop_at_the_very_start() {
        let (outs, _) = run(&["<|im_end|>"], &["<|im_end|>", "ignored"]);
        assert_eq!(
            outs,
            vec![
                StopOutcome::Stopped {
                    before: String::new()
                },
                StopOutcome::Stopped {
                    before: String::new()
                }
            ]
        );
    }

    #[test]
    fn text_before_stop_in_same_delta_is_kept() {
        let (outs, _) = run(&["<|end|>"], &["Done.<|end|>junk"]);
        assert_eq!(
            outs,
            vec![StopOutcome::Stopped {
                before: "Done.".into()
            }]
        );
    }

    #[test]
    fn looks_like_a_stop_prefix_then_is_not() {
        let (outs, rest) = run(&["</s>"], &["a </", "b> c", " <"]);
        assert_eq!(outs, vec![emit("a "), emit("</b> c"), emit(" ")]);
        assert_eq!(rest, "<");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (outs, _) = run(
            &["<|endoftext|>", "<|im_end|>"],
            &["x<|im_end|>y<|endoftext|>"],
        );
        assert_eq!(outs, vec![StopOutcome::Stopped { before: "x".into() }]);
    }

    #[test]
    fn multibyte_text_is_held_on_char_boundaries() {
        let (outs, rest) = run(&["ü!"], &["grün", "ü", "?"]);
        assert_eq!(outs, vec![emit("grün"), emit(""), emit("ü?")]);
        assert_eq!(rest, "");
    }

    #[test]
    fn no_stops_emits_everything() {
        let (outs, rest) = run(&[""], &["a", "b"]);
        assert_eq!(outs, vec![emit("a"), emit("b")]);
        assert_eq!(rest, "");
    }
}
