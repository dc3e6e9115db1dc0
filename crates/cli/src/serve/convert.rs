//! Turns an OpenAI chat-completions request into the engine's [`GenerateRequest`],
//! refusing (400/413) what ImpChat cannot honour instead of quietly ignoring it.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use impchat_engine::{ChatMessage, GenerateRequest, ImageBytes, SamplingParams};
use serde_json::Value;

use super::api::{ChatCompletionRequest, RequestMessage};
use super::error::ApiError;

/// Answers are cut here when the request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
const MAX_STOP_STRINGS: usize = 16;

/// Accepts base64 with or without padding, as clients differ.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest image accepted, in decoded bytes.
    pub max_image_bytes: usize,
}

pub fn generate_request(
    request: &ChatCompletionRequest,
    limits: &Limits,
) -> Result<GenerateRequest, ApiError> {
    refuse_unsupported(request)?;
    let (system, messages) = conversation(&request.messages, limits)?;
    Ok(GenerateRequest {
        system,
        messages,
        sampling: sampling(request)?,
        max_new_tokens: max_tokens(request)? as usize,
        stop: stop_strings(request.stop.as_ref())?,
    })
}

fn refuse_unsupported(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n=1 is supported").param("n"));
    }
    if request
        .tools
        .as_ref()
        .is_some_and(|tools| !tools.is_empty())
    {
        return Err(ApiError::invalid("tools are not supported by Imp models").param("tools"));
    }
    if request.logprobs == Some(true) {
        return Err(ApiError::invalid("logprobs are not supported").param("logprobs"));
    }
    for (name, value) in [
        ("frequency_penalty", request.frequency_penalty),
        ("presence_penalty", request.presence_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(
                ApiError::invalid(format!("{name} is not supported; leave it at 0")).param(name),
            );
        }
    }
    Ok(())
}

fn sampling(request: &ChatCompletionRequest) -> Result<SamplingParams, ApiError> {
    let defaults = SamplingParams::default();
    let temperature = request.temperature.unwrap_or(defaults.temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid("temperature must be between 0 and 2").param("temperature"));
    }
    if let Some(top_p) = request.top_p {
        if top_p.is_nan() || top_p <= 0.0 || top_p > 1.0 {
            return Err(ApiError::invalid("top_p must be in (0, 1]").param("top_p"));
        }
    }
    if request.top_k == Some(0) {
        return Err(ApiError::invalid("top_k must be at least 1").param("top_k"));
    }
    Ok(SamplingParams {
        temperature,
        top_p: request.top_p,
        top_k: request.top_k.map(|k| k as usize),
        seed: request.seed.unwrap_or(defaults.seed),
        ..defaults
    })
}

fn max_tokens(request: &ChatCompletionRequest) -> Result<u32, ApiError> {
    let (param, value) = match (request.max_completion_tokens, request.max_tokens) {
        (Some(value), _) => ("max_completion_tokens", value),
        (None, Some(value)) => ("max_tokens", value),
        (None, None) => return Ok(DEFAULT_MAX_TOKENS),
    };
    if value == 0 {
        return Err(ApiError::invalid(format!("{param} must be at least 1")).param(param));
    }
    Ok(value)
}

fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let invalid =
        || ApiError::invalid("stop must be a string or an array of strings").param("stop");
    let strings = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid()),
    };
    if strings.len() > MAX_STOP_STRINGS {
        return Err(
            ApiError::invalid(format!("at most {MAX_STOP_STRINGS} stop strings")).param("stop"),
        );
    }
    Ok(strings.into_iter().filter(|s| !s.is_empty()).collect())
}

/// The system prompt (all system/developer messages joined) and the chat turns.
fn conversation(
    messages: &[RequestMessage],
    limits: &Limits,
) -> Result<(Option<String>, Vec<ChatMessage>), ApiError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let param = format!("messages[{index}]");
        let content = Content::parse(&message.content, &param, limits)?;
        match message.role.as_str() {
            "system" | "developer" => {
                content.refuse_images(&param, "system messages")?;
                system.push(content.text);
            }
            "user" => {
                let mut turn = ChatMessage::user(content.text);
                turn.images = content.images;
                turns.push(turn);
            }
            "assistant" => {
                content.refuse_images(&param, "assistant messages")?;
                turns.push(ChatMessage::assistant(content.text));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "role '{other}' is not supported; use system, user or assistant"
                ))
                .param(format!("{param}.role")));
            }
        }
    }
    match turns.last() {
        Some(last) if last.role == impchat_engine::Role::User => {}
        Some(_) => {
            return Err(ApiError::invalid("the last message must be the user's").param("messages"))
        }
        None => {
            return Err(
                ApiError::invalid("messages must contain at least one user message")
                    .param("messages"),
            )
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, turns))
}

/// A message's text parts (joined by newlines) and images, in order.
struct Content {
    text: String,
    images: Vec<ImageBytes>,
}

impl Content {
    fn parse(content: &Value, param: &str, limits: &Limits) -> Result<Self, ApiError> {
        let param = format!("{param}.content");
        match content {
            Value::Null => Ok(Self {
                text: String::new(),
                images: Vec::new(),
            }),
            Value::String(text) => Ok(Self {
                text: text.clone(),
                images: Vec::new(),
            }),
            Value::Array(parts) => {
                let mut texts = Vec::new();
                let mut images = Vec::new();
                for (index, part) in parts.iter().enumerate() {
                    let param = format!("{param}[{index}]");
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => match part.get("text").and_then(Value::as_str) {
                            Some(text) => texts.push(text.to_owned()),
                            None => {
                                return Err(ApiError::invalid(
                                    "a text part needs a \"text\" string",
                                )
                                .param(format!("{param}.text")))
                            }
                        },
                        Some("image_url") => images.push(image_part(part, &param, limits)?),
                        Some(other) => {
                            return Err(ApiError::invalid(format!(
                                "content part type '{other}' is not supported; ImpChat takes \
                                 \"text\" and \"image_url\" parts"
                            ))
                            .param(format!("{param}.type")))
                        }
                        None => {
                            return Err(ApiError::invalid("each content part needs a \"type\"")
                                .param(format!("{param}.type")))
                        }
                    }
                }
                Ok(Self {
                    text: texts.join("\n"),
                    images,
                })
            }
            _ => Err(
                ApiError::invalid("content must be a string or an array of content parts")
                    .param(param),
            ),
        }
    }

    fn refuse_images(&self, param: &str, what: &str) -> Result<(), ApiError> {
        if self.images.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid(format!(
            "{what} cannot carry images; put them in a user message"
        ))
        .param(format!("{param}.content")))
    }
}

/// `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`; a bare string
/// for `image_url` is accepted too.
fn image_part(part: &Value, param: &str, limits: &Limits) -> Result<ImageBytes, ApiError> {
    let param = format!("{param}.image_url");
    let url = match part.get("image_url") {
        Some(Value::String(url)) => Some(url.as_str()),
        Some(object) => object.get("url").and_then(Value::as_str),
        None => None,
    };
    let url = url.ok_or_else(|| {
        ApiError::invalid("an image_url part needs \"image_url\": {\"url\": \"data:...\"}")
            .param(param.clone())
    })?;
    decode_data_url(url, limits).map_err(|err| err.param(format!("{param}.url")))
}

fn decode_data_url(url: &str, limits: &Limits) -> Result<ImageBytes, ApiError> {
    let lower_prefix = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower_prefix.starts_with("http://") || lower_prefix.starts_with("https://") {
        return Err(ApiError::invalid(
            "ImpChat works offline and does not download image URLs; send the image inline \
             as a data URL (data:image/png;base64,...)",
        ));
    }
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(ApiError::invalid(
            "image_url.url must be a data URL (data:image/png;base64,...)",
        ));
    };
    let Some((header, data)) = rest.split_once(',') else {
        return Err(ApiError::invalid("the data URL has no ',' before its data"));
    };
    let mut header_parts = header.split(';');
    let mime = header_parts
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !header_parts.any(|part| part.trim().eq_ignore_ascii_case("base64")) {
        return Err(ApiError::invalid(
            "only base64 data URLs are supported (data:image/png;base64,...)",
        ));
    }
    if !mime.starts_with("image/") {
        let shown = if mime.is_empty() {
            "no media type"
        } else {
            mime.as_str()
        };
        return Err(ApiError::invalid(format!(
            "the data URL holds {shown}, not an image; send a PNG, JPEG, WebP, GIF, BMP or TIFF \
             image (data:image/png;base64,...)"
        )));
    }
    let too_large = |bytes: usize| {
        ApiError::too_large(format!(
            "the image is {:.1} MiB, more than the {:.1} MiB limit; send a smaller image (the \
             model sees at most a few hundred pixels across)",
            bytes as f64 / MIB,
            limits.max_image_bytes as f64 / MIB
        ))
    };
    let data = data.trim();
    let decoded_upper_bound = data.len() / 4 * 3 + 3;
    if decoded_upper_bound > limits.max_image_bytes + 3 {
        return Err(too_large(data.len() / 4 * 3));
    }
    let bytes = BASE64
        .decode(data)
        .map_err(|err| ApiError::invalid(format!("the image data is not valid base64: {err}")))?;
    if bytes.len() > limits.max_image_bytes {
        return Err(too_large(bytes.len()));
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid("the image data URL is empty"));
    }
    Ok(ImageBytes::new(bytes))
}

const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const LIMITS: Limits = Limits {
        max_image_bytes: 1024,
    };

    fn parse(json: Value) -> Result<GenerateRequest, ApiError> {
        let request: ChatCompletionRequest = serde_json::from_value(json).expect("schema");
        generate_request(&request, &LIMITS)
    }

    #[test]
    fn text_parts_and_images_become_one_user_turn() {
        let png = format!("data:image/png;base64,{}", BASE64.encode(b"\x89PNG fake"));
        let request = parse(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is"},
                    {"type": "image_url", "image_url": {"url": png}},
                    {"type": "text", "text": "this?"}
                ]}
            ],
            "stop": "END", "max_tokens": 7, "temperature": 0.5, "seed": 42
        }))
        .expect("valid");
        assert_eq!(request.system.as_deref(), Some("Be brief."));
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].text, "What is\nthis?");
        assert_eq!(&*request.messages[0].images[0].0, b"\x89PNG fake");
        assert_eq!(request.stop, vec!["END".to_string()]);
        assert_eq!(request.max_new_tokens, 7);
        assert_eq!(request.sampling.seed, 42);
    }

    #[test]
    fn remote_and_non_image_urls_are_refused_with_the_reason() {
        for (url, needle) in [
            (
                "https://example.com/cat.png",
                "does not download image URLs",
            ),
            (
                "data:application/pdf;base64,JVBERi0=",
                "application/pdf, not an image",
            ),
            ("data:image/png,rawbytes", "only base64"),
            ("data:image/png;base64,@@@", "not valid base64"),
        ] {
            let err = parse(serde_json::json!({"model": "m", "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
            ]}))
            .expect_err(url);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{url}");
            assert!(err.message().contains(needle), "{url}: {}", err.message());
            assert_eq!(
                err.to_json()["error"]["param"],
                "messages[0].content[0].image_url.url"
            );
        }
    }

    #[test]
    fn oversized_images_get_413() {
        let big = format!("data:image/png;base64,{}", BASE64.encode(vec![0u8; 2048]));
        let err = parse(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}}]}
        ]}))
        .expect_err("too big");
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn conversations_must_end_with_the_user() {
        let err = parse(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
        ]}))
        .expect_err("ends with assistant");
        assert!(err.message().contains("last message"));
        let err = parse(serde_json::json!({"model": "m", "messages": []})).expect_err("empty");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn out_of_range_sampling_is_refused() {
        let cases = [
            ("temperature", serde_json::json!(3.0)),
            ("top_p", serde_json::json!(0.0)),
            ("max_tokens", serde_json::json!(0)),
        ];
        for (field, value) in cases {
            let err = parse(serde_json::json!({"model": "m", field: value,
                "messages": [{"role": "user", "content": "hi"}]}))
            .expect_err(field);
            assert_eq!(err.to_json()["error"]["param"], field);
        }
    }
}
