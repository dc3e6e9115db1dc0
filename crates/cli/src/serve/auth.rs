//! `--api-key`: every request must carry `Authorization: Bearer KEY`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

pub async fn require_api_key(
    State(key): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let provided = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match provided {
        Some(given) if bool::from(given.as_bytes().ct_eq(key.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized(
            "wrong API key; use the key the server was started with (--api-key)",
        )
        .into_response(),
        None => ApiError::unauthorized(
            "missing API key; send the header 'Authorization: Bearer KEY' with the server's \
             --api-key",
        )
        .into_response(),
    }
}
