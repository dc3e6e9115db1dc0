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
        .and_then(bearer_token);
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

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive
/// (RFC 9110), so `bearer TOKEN` works too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Why `key` cannot serve as an API key, if it cannot: an empty key would protect nothing,
/// and a header carries only visible ASCII, so a key with other characters never matches.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("the API key is empty")
    } else if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        Some("the API key has spaces or characters other than visible ASCII, which an HTTP header cannot carry")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn empty_or_unsendable_keys_are_refused() {
        assert!(key_problem("").is_some());
        assert!(key_problem("two words").is_some());
        assert!(key_problem("clé").is_some());
        assert!(key_problem("sk-local-123").is_none());
    }
}
