//! The `chat.completion.chunk` objects of a streamed answer, as SSE `data:` payloads.

use impchat_engine::GenerationStats;

use super::api::{finish_reason, ChatCompletionChunk, ChunkChoice, Delta, Usage};

pub struct ChunkStream {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChunkStream {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        Self {
            id,
            created,
            model,
            include_usage,
        }
    }

    /// The first chunk: the assistant role and empty content.
    pub fn role(&self) -> String {
        let delta = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        self.choice(delta, None)
    }

    pub fn content(&self, text: String) -> String {
        self.choice(
            Delta {
                role: None,
                content: Some(text),
            },
            None,
        )
    }

    /// The final chunk with `finish_reason`, the usage chunk if asked for, then `[DONE]`.
    pub fn finish(&self, stats: &GenerationStats) -> Vec<String> {
        let mut tail = vec![self.choice(Delta::default(), Some(finish_reason(stats)))];
        if self.include_usage {
            tail.push(self.render(Vec::new(), Some(Some(Usage::from(stats)))));
        }
        tail.push("[DONE]".into());
        tail
    }

    fn choice(&self, delta: Delta, finish_reason: Option<&'static str>) -> String {
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        };
        let usage = self.include_usage.then_some(None);
        self.render(vec![choice], usage)
    }

    fn render(&self, choices: Vec<ChunkChoice>, usage: Option<Option<Usage>>) -> String {
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        // Plain structs of strings and numbers always serialise.
        serde_json::to_string(&chunk).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use impchat_engine::StopReason;
    use serde_json::Value;

    fn parse(data: &str) -> Value {
        serde_json::from_str(data).expect("chunk is JSON")
    }

    #[test]
    fn a_stream_starts_with_the_role_and_ends_with_usage_and_done() {
        let chunks = ChunkStream::new("chatcmpl-1".into(), 7, "imp".into(), true);
        let first = parse(&chunks.role());
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(first["usage"].is_null());

        let delta = parse(&chunks.content("Hel".into()));
        assert_eq!(delta["choices"][0]["delta"]["content"], "Hel");
        assert!(delta["choices"][0]["finish_reason"].is_null());

        let stats = GenerationStats {
            prompt_tokens: 10,
            generated_tokens: 3,
            stop_reason: Some(StopReason::MaxTokens),
            ..Default::default()
        };
        let tail = chunks.finish(&stats);
        assert_eq!(tail.len(), 3);
        assert_eq!(parse(&tail[0])["choices"][0]["finish_reason"], "length");
        let usage = parse(&tail[1]);
        assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
        assert_eq!(usage["usage"]["total_tokens"], 13);
        assert_eq!(tail[2], "[DONE]");
    }

    #[test]
    fn without_include_usage_there_is_no_usage_field() {
        let chunks = ChunkStream::new("chatcmpl-1".into(), 7, "imp".into(), false);
        assert!(parse(&chunks.role()).get("usage").is_none());
        let tail = chunks.finish(&GenerationStats::default());
        assert_eq!(tail.len(), 2);
        assert_eq!(parse(&tail[0])["choices"][0]["finish_reason"], "stop");
    }
}
