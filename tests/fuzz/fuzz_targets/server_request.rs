//! A request body sent to `impchat serve`'s `POST /v1/chat/completions`: parsed as the
//! handler parses it, converted by `generate_request` (data-URL images included), and any
//! refusal rendered as the server's JSON error response.
//!
//! The server's modules are compiled in from crates/cli (a binary crate) by path.
#![no_main]

#[allow(dead_code)]
#[path = "../../../crates/cli/src/serve"]
mod serve {
    pub mod api;
    pub mod convert;
    pub mod error;
}

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use serve::api::ChatCompletionRequest;
use serve::convert::{generate_request, Limits};

/// `impchat serve`'s default `--max-image-mib 16`.
const LIMITS: Limits = Limits {
    max_image_bytes: 16 * 1024 * 1024,
};

fuzz_target!(|body: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ChatCompletionRequest>(body) else {
        return;
    };
    match generate_request(&request, &LIMITS) {
        Ok(generate) => {
            assert!(generate.max_new_tokens > 0);
            assert!(generate.messages.last().is_some());
        }
        Err(refusal) => {
            assert!(!refusal.message().is_empty());
            let _ = refusal.into_response();
        }
    }
});
