//! The slice of OpenAI's chat-completions schema this server speaks.

use impchat_engine::{GenerationStats, StopReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's schema, but common among local servers.
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    /// A string or an array of strings.
    pub stop: Option<Value>,
    pub n: Option<u32>,
    pub tools: Option<Vec<Value>>,
    pub logprobs: Option<bool>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    /// A string, an array of content parts, or null (assistant turns).
    #[serde(default)]
    pub content: Value,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl From<&GenerationStats> for Usage {
    fn from(stats: &GenerationStats) -> Self {
        Self {
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.generated_tokens,
            total_tokens: stats.prompt_tokens + stats.generated_tokens,
        }
    }
}

/// OpenAI's `finish_reason`: "stop" only for an answer the model ended itself (or a stop
/// string ended); "length" for one cut short by the token limit or the context window.
pub fn finish_reason(stats: &GenerationStats) -> &'static str {
    match stats.stop_reason {
        Some(StopReason::EndOfTurn | StopReason::StopString) => "stop",
        // The queue reports a cancelled answer as an error; should one get here, it is
        // incomplete all the same.
        Some(StopReason::MaxTokens | StopReason::ContextFull | StopReason::Cancelled) => "length",
        None => "stop",
    }
}

#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: [Choice; 1],
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    pub logprobs: Option<()>,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    /// Present (null until the last chunk) only when the client asked for usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<()>,
}

#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(stop_reason: StopReason) -> &'static str {
        finish_reason(&GenerationStats {
            stop_reason: Some(stop_reason),
            ..Default::default()
        })
    }

    #[test]
    fn only_an_answer_the_model_ended_is_stop() {
        assert_eq!(reason(StopReason::EndOfTurn), "stop");
        assert_eq!(reason(StopReason::StopString), "stop");
        assert_eq!(reason(StopReason::MaxTokens), "length");
        assert_eq!(reason(StopReason::ContextFull), "length");
        assert_eq!(reason(StopReason::Cancelled), "length");
    }
}
