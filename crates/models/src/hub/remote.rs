//! Asking the hub what a file is before downloading it.

use std::thread;

use crate::cancel::CancelToken;
use crate::hashing::ExpectedDigest;

use super::config::HubConfig;
use super::error::PullError;
use super::url::{join_location, origin, resolve_url};

/// Redirects followed while resolving (renamed repos answer with a relative redirect).
const MAX_RESOLVE_HOPS: usize = 5;

/// A file as the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    pub digest: ExpectedDigest,
    /// Where the bytes come from (the CDN URL for LFS files).
    pub download_url: String,
    /// Commit the revision resolved to, when the hub says.
    pub commit: Option<String>,
}

pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
}

/// Outcome of an attempt that may be worth repeating.
pub(crate) enum Attempt<T> {
    Done(T),
    Retry(String),
}

/// `Ok(None)` when the hub answers 404 (the caller decides whether that is fatal).
pub(crate) fn resolve(
    agent: &ureq::Agent,
    config: &HubConfig,
    target: &Target<'_>,
    file: &str,
    cancel: &CancelToken,
) -> Result<Option<RemoteFile>, PullError> {
    let url = resolve_url(&config.endpoint, target.repo, target.revision, file);
    let mut last_reason = String::new();
    for attempt in 0..=config.max_retries {
        if cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        if attempt > 0 {
            sleep_cancellable(config.backoff(attempt - 1), cancel)?;
        }
        match resolve_once(agent, config, target, file, &url)? {
            Attempt::Done(found) => return Ok(found),
            Attempt::Retry(reason) => last_reason = reason,
        }
    }
    Err(PullError::Connection {
        file: file.to_string(),
        attempts: config.max_retries + 1,
        reason: last_reason,
    })
}

fn resolve_once(
    agent: &ureq::Agent,
    config: &HubConfig,
    target: &Target<'_>,
    file: &str,
    first_url: &str,
) -> Result<Attempt<Option<RemoteFile>>, PullError> {
    let mut url = first_url.to_string();
    for _ in 0..MAX_RESOLVE_HOPS {
        let mut request = agent
            .head(&url)
            .config()
            .max_redirects(0)
            .build()
            .header("Accept-Encoding", "identity");
        if let Some(token) = auth_for(config, &url) {
            request = request.header("Authorization", token);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(e) => return retry_or_fail(file, e),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match status {
            200..=399 => {
                let linked_etag = header("x-linked-etag");
                let location = header("location");
                if (300..=399).contains(&status) && linked_etag.is_none() {
                    let Some(location) = location else {
                        return Err(protocol(
                            file,
                            format!("HTTP {status} without a Location header"),
                        ));
                    };
                    url = join_location(&url, &location);
                    continue;
                }
                let etag = linked_etag.or_else(|| header("etag")).ok_or_else(|| {
                    protocol(
                        file,
                        "no ETag: the hub gave no checksum to verify the file against".into(),
                    )
                })?;
                let digest = ExpectedDigest::from_etag(&etag).ok_or_else(|| {
                    protocol(
                        file,
                        format!("ETag {etag} is neither a SHA-256 nor a git SHA-1"),
                    )
                })?;
                let size = header("x-linked-size")
                    .or_else(|| header("content-length"))
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| protocol(file, "no X-Linked-Size or Content-Length".into()))?;
                let download_url = match location {
                    Some(location) if (300..=399).contains(&status) => {
                        join_location(&url, &location)
                    }
                    _ => url.clone(),
                };
                return Ok(Attempt::Done(Some(RemoteFile {
                    path: file.to_string(),
                    size,
                    digest,
                    download_url,
                    commit: header("x-repo-commit"),
                })));
            }
            404 => return Ok(Attempt::Done(None)),
            401 | 403 => return Err(gated(target, file, status)),
            _ => return status_outcome(file, status, &url).map(Attempt::Retry),
        }
    }
    Err(protocol(
        file,
        format!("more than {MAX_RESOLVE_HOPS} redirects while resolving"),
    ))
}

/// `Authorization` value when `url` is on the configured endpoint (never the CDN).
pub(crate) fn auth_for(config: &HubConfig, url: &str) -> Option<String> {
    let token = config.token.as_ref()?;
    (origin(url) == origin(&config.endpoint)).then(|| format!("Bearer {token}"))
}

pub(crate) fn gated(target: &Target<'_>, file: &str, status: u16) -> PullError {
    PullError::Gated {
        repo: target.repo.to_string(),
        file: file.to_string(),
        status,
    }
}

fn protocol(file: &str, reason: String) -> PullError {
    PullError::Protocol {
        file: file.to_string(),
        reason,
    }
}

/// Retryable statuses give the reason to retry; the rest are errors.
pub(crate) fn status_outcome(file: &str, status: u16, url: &str) -> Result<String, PullError> {
    if status == 408 || status == 429 || (500..=599).contains(&status) {
        Ok(format!("HTTP {status} from the server"))
    } else {
        Err(PullError::HttpStatus {
            file: file.to_string(),
            status,
            url: url.to_string(),
        })
    }
}

/// Transport errors are retried (the network may come back); malformed URLs are not.
pub(crate) fn retry_or_fail<T>(file: &str, error: ureq::Error) -> Result<Attempt<T>, PullError> {
    match error {
        ureq::Error::BadUri(reason) => Err(PullError::InvalidRequest(format!(
            "bad URL for {file}: {reason}; check the hub endpoint setting"
        ))),
        other => Ok(Attempt::Retry(other.to_string())),
    }
}

/// Sleeps in short slices so a cancel is noticed promptly.
pub(crate) fn sleep_cancellable(
    duration: std::time::Duration,
    cancel: &CancelToken,
) -> Result<(), PullError> {
    const SLICE: std::time::Duration = std::time::Duration::from_millis(20);
    let deadline = std::time::Instant::now() + duration;
    loop {
        if cancel.is_cancelled() {
            return Err(PullError::Cancelled);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        thread::sleep(SLICE.min(deadline - now));
    }
}
