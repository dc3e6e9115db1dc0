//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use impchat_engine::EngineError;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Clone, Serialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody {
                message: message.into(),
                kind,
                param: None,
                code,
            },
        }
    }

    /// 400: the request is malformed or asks for something this server cannot do.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            message,
        )
    }

    pub fn model_not_found(requested: &str, served: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!("the model '{requested}' is not served here; this server runs '{served}'"),
        )
        .param("model")
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!(
                "no endpoint {method} {path}; this server has GET /v1/models and \
                 POST /v1/chat/completions"
            ),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_allowed"),
            "wrong HTTP method; use GET /v1/models and POST /v1/chat/completions",
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            message,
        )
    }

    /// 413 before the body is read: its declared length is already over the limit.
    pub fn declared_too_large(declared: u64, limit: usize) -> Self {
        Self::too_large(format!(
            "the request body is {declared} bytes, over the server's limit of {} MiB; \
             send smaller or fewer images",
            limit / (1024 * 1024)
        ))
    }

    /// 408: the body trickled in too slowly (or stopped); the connection is closed.
    pub fn body_timeout(seconds: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!(
                "the request body did not arrive within {seconds} s; send it in one go \
                 (the connection is closed)"
            ),
        )
    }

    /// 415: only JSON bodies are answered, so that a web page cannot send a form or
    /// `text/plain` request (which browsers send cross-origin without asking).
    pub fn not_json(content_type: Option<&str>) -> Self {
        let got = match content_type {
            Some(value) => format!("got '{value}'"),
            None => "the request has no Content-Type".into(),
        };
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            format!(
                "the request body must be JSON sent with 'Content-Type: application/json'; {got}"
            ),
        )
    }

    /// 403: a browser page from an origin that `--cors-origin` does not allow.
    pub fn origin_not_allowed(origin: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("origin_not_allowed"),
            format!(
                "requests from web pages at '{origin}' are refused; start the server with \
                 --cors-origin {origin} to let that page use the API"
            ),
        )
    }

    /// 403: a `Host` this server does not answer to (DNS rebinding gives a page on any name
    /// the server's address).
    pub fn host_not_allowed(host: &str, name: &str, answers_to: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some("host_not_allowed"),
            format!(
                "requests for the host '{host}' are refused; this server answers to \
                 {answers_to}; start it with --allow-host {name} if clients reach it by \
                 that name"
            ),
        )
    }

    pub fn queue_full(capacity: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("queue_full"),
            format!(
                "the server is busy: {capacity} requests are already waiting for the model; \
                 retry in a moment"
            ),
        )
    }

    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            "the server is shutting down",
        )
    }

    /// 503 for an answer cut off by the server's shutdown: a client must not take the text
    /// it got for a whole answer.
    pub fn interrupted(generated_tokens: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            format!(
                "the server is shutting down; the answer was cut off after \
                 {generated_tokens} tokens and is incomplete"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            message,
        )
    }

    /// Input problems the engine found (bad image, context overflow) are the client's (400);
    /// anything else is the server's (500).
    pub fn from_engine(err: EngineError) -> Self {
        match err {
            EngineError::Image { index, reason } => {
                Self::invalid(format!("image {}: {reason}", index + 1)).param("messages")
            }
            EngineError::EmptyPrompt
            | EngineError::ContextOverflow { .. }
            | EngineError::InvalidRequest(_) => Self::invalid(err.to_string()).param("messages"),
            other => Self::internal(format!("the model failed while answering: {other}")),
        }
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.body.param = Some(param.into());
        self
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.body.message
    }

    /// The JSON document sent as the response body (or as an SSE `data:` line).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.body })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.to_json())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        // The body may be unread or half read: the connection cannot carry another request.
        if matches!(
            self.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        ) {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openais_shape() {
        let json = ApiError::model_not_found("gpt-4o", "imp-v1.5-3b").to_json();
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(json["error"]["param"], "model");
        assert_eq!(json["error"]["code"], "model_not_found");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gpt-4o")));
    }

    #[test]
    fn engine_input_errors_are_the_clients_fault() {
        let err = EngineError::ContextOverflow {
            needed: 5000,
            per_image: 729,
            limit: 2048,
            images: 1,
            earlier_turns: 0,
        };
        assert_eq!(ApiError::from_engine(err).status(), StatusCode::BAD_REQUEST);
        let err = EngineError::Image {
            index: 0,
            reason: "not an image".into(),
        };
        let api = ApiError::from_engine(err);
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
        assert_eq!(api.message(), "image 1: not an image");
    }
}
