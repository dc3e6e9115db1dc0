//! Reading a request body with a size cap and a deadline, so that neither a huge nor a
//! trickling body ties up the server.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_LENGTH;
use axum::http::HeaderMap;
use futures_util::StreamExt;

use super::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// Time any body gets, on top of what its length needs at `min_bytes_per_second`.
    pub grace: Duration,
    /// The slowest upload accepted: 32 MiB at 256 KiB/s takes two minutes, 1 KiB a moment.
    pub min_bytes_per_second: u64,
}

impl BodyLimits {
    /// How long a body of `declared` bytes (the cap when unknown, as with chunked uploads)
    /// may take to arrive.
    pub fn deadline(&self, declared: Option<u64>) -> Duration {
        let bytes = declared.unwrap_or(self.max_bytes as u64);
        self.grace + Duration::from_secs(bytes / self.min_bytes_per_second.max(1))
    }
}

/// The whole body, or 413 when its declared or actual length is over the cap (the former
/// before reading a byte of it), or 408 when it does not arrive in time.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
) -> Result<Bytes, ApiError> {
    let declared = declared_length(headers)?;
    if let Some(length) = declared.filter(|&length| length > limits.max_bytes as u64) {
        return Err(ApiError::declared_too_large(length, limits.max_bytes));
    }
    let deadline = limits.deadline(declared);
    let capacity = declared.map_or(0, |length| length as usize);
    match tokio::time::timeout(deadline, collect(body, capacity, limits.max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::body_timeout(deadline.as_secs())),
    }
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(CONTENT_LENGTH) else {
        return Ok(None);
    };
    // hyper has already refused a malformed Content-Length; this is for other front ends.
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid("the Content-Length header is not a number"))
}

async fn collect(body: Body, capacity: usize, max_bytes: usize) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut collected = Vec::with_capacity(capacity);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|err| ApiError::invalid(format!("cannot read the request body: {err}")))?;
        if collected.len() + chunk.len() > max_bytes {
            return Err(ApiError::too_large(format!(
                "the request body is larger than the server's limit of {} MiB; send smaller \
                 or fewer images",
                max_bytes / (1024 * 1024)
            )));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(collected))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_bytes: 32 * 1024 * 1024,
        grace: Duration::from_secs(5),
        min_bytes_per_second: 256 * 1024,
    };

    #[test]
    fn small_bodies_get_the_grace_and_large_ones_time_for_their_length() {
        assert_eq!(LIMITS.deadline(Some(1000)), Duration::from_secs(5));
        assert_eq!(
            LIMITS.deadline(Some(32 * 1024 * 1024)),
            Duration::from_secs(5 + 128)
        );
        assert_eq!(LIMITS.deadline(None), Duration::from_secs(5 + 128));
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_without_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, (1u64 << 30).into());
        // A body that never ends: reading it would hang.
        let body =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let err = read_body(&headers, body, &LIMITS)
            .await
            .expect_err("refused");
        assert_eq!(err.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            err.message().contains("1073741824 bytes"),
            "{}",
            err.message()
        );
    }
}
