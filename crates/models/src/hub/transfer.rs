//! Downloading one file into `<file>.part` with Range resume, retries and verification.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cancel::CancelToken;
use crate::hashing::{digest_file, Digests};

use super::config::HubConfig;
use super::error::PullError;
use super::remote::{
    auth_for, gated, resolve, retry_or_fail, sleep_cancellable, status_outcome, Attempt,
    RemoteFile, Target,
};
use super::url::resolve_url;

const READ_CHUNK: usize = 64 * 1024;

/// How a completed request ended.
enum Step {
    /// The `.part` holds every byte.
    Complete,
    /// The CDN refused a link that worked before: signed URLs expire, so ask the hub again.
    LinkExpired,
}

/// Byte counters shared by all workers of one pull.
#[derive(Default)]
pub(crate) struct Counters {
    /// Bytes on disk across all files (drives the progress bar).
    pub on_disk: AtomicU64,
    /// Bytes received in this session (drives the speed).
    pub transferred: AtomicU64,
}

pub(crate) fn part_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_os_string();
    name.push(".part");
    PathBuf::from(name)
}

/// Bytes of `remote` already on disk in staging (finished file or partial download).
pub(crate) fn bytes_on_disk(remote: &RemoteFile, staged_root: &Path) -> u64 {
    let final_path = staged_root.join(&remote.path);
    let len = fs::metadata(&final_path)
        .or_else(|_| fs::metadata(part_path(&final_path)))
        .map(|m| m.len())
        .unwrap_or(0);
    len.min(remote.size)
}

/// Keeps this file's share of `Counters::on_disk` in step with its length on disk.
struct Accounted<'a> {
    counted: u64,
    counters: &'a Counters,
}

impl Accounted<'_> {
    fn set(&mut self, len: u64) {
        if len >= self.counted {
            self.counters
                .on_disk
                .fetch_add(len - self.counted, Ordering::Relaxed);
        } else {
            self.counters
                .on_disk
                .fetch_sub(self.counted - len, Ordering::Relaxed);
        }
        self.counted = len;
    }

    fn add(&mut self, bytes: u64) {
        let len = self.counted + bytes;
        self.set(len);
    }
}

pub(crate) struct Transfer<'a> {
    pub agent: &'a ureq::Agent,
    pub config: &'a HubConfig,
    pub target: &'a Target<'a>,
    pub staged_root: &'a Path,
    pub counters: &'a Counters,
    pub stop: &'a CancelToken,
}

impl Transfer<'_> {
    /// Downloads (or resumes, or just re-checks) one file and returns its digests once it is
    /// verified and renamed into place inside the staging folder.
    pub(crate) fn download(&self, resolved: &RemoteFile) -> Result<Digests, PullError> {
        let mut remote = resolved.clone();
        let remote = &mut remote;
        let final_path = self.staged_root.join(&remote.path);
        let part = part_path(&final_path);
        if let Some(parent) = final_path.parent() {
            fs::create_dir_all(parent).map_err(PullError::io(parent))?;
        }
        let mut accounted = Accounted {
            counted: bytes_on_disk(remote, self.staged_root),
            counters: self.counters,
        };

        if final_path.exists() {
            let digests = digest_file(&final_path).map_err(PullError::io(&final_path))?;
            if fs::metadata(&final_path).map(|m| m.len()).ok() == Some(remote.size)
                && digests.satisfies(&remote.digest)
            {
                return Ok(digests);
            }
            fs::remove_file(&final_path).map_err(PullError::io(&final_path))?;
            accounted.set(current_len(&part).min(remote.size));
        }

        let mut failures = 0u32;
        loop {
            if self.stop.is_cancelled() {
                return Err(PullError::Cancelled);
            }
            let outcome = match self.attempt(remote, &part, &mut accounted)? {
                Attempt::Done(Step::Complete) => break,
                Attempt::Done(Step::LinkExpired) => {
                    self.refresh_link(remote)?;
                    Attempt::Retry("the download link expired".to_string())
                }
                retry => retry,
            };
            match outcome {
                Attempt::Done(_) => break,
                Attempt::Retry(reason) => {
                    failures += 1;
                    if failures > self.config.max_retries {
                        return Err(PullError::Connection {
                            file: remote.path.clone(),
                            attempts: failures,
                            reason,
                        });
                    }
                    sleep_cancellable(self.config.backoff(failures - 1), self.stop)?;
                }
            }
        }

        let digests = digest_file(&part).map_err(PullError::io(&part))?;
        if !digests.satisfies(&remote.digest) {
            fs::remove_file(&part).map_err(PullError::io(&part))?;
            accounted.set(0);
            return Err(PullError::ChecksumMismatch {
                file: remote.path.clone(),
                algorithm: remote.digest.algorithm(),
                expected: remote.digest.hex().to_string(),
                actual: digests.matching(&remote.digest).to_string(),
            });
        }
        fs::rename(&part, &final_path).map_err(PullError::io(&final_path))?;
        Ok(digests)
    }

    /// One HTTP request: resumes from the `.part` length when there is one.
    fn attempt(
        &self,
        remote: &RemoteFile,
        part: &Path,
        accounted: &mut Accounted<'_>,
    ) -> Result<Attempt<Step>, PullError> {
        let mut offset = current_len(part);
        if offset > remote.size {
            remove_part(part)?;
            offset = 0;
        }
        accounted.set(offset);
        if offset == remote.size {
            return Ok(Attempt::Done(Step::Complete));
        }

        let mut request = self
            .agent
            .get(&remote.download_url)
            .header("Accept-Encoding", "identity");
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        if let Some(auth) = auth_for(self.config, &remote.download_url) {
            request = request.header("Authorization", auth);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(e) => return retry_or_fail(&remote.path, e),
        };
        let status = response.status().as_u16();
        let start = match status {
            200 => 0,
            206 => {
                let content_range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if content_range != Some(offset) {
                    remove_part(part)?;
                    accounted.set(0);
                    return Ok(Attempt::Retry(format!(
                        "the server resumed at {content_range:?} instead of byte {offset}; restarting the file"
                    )));
                }
                offset
            }
            416 => {
                // The part no longer matches what the server has: start this file over.
                remove_part(part)?;
                accounted.set(0);
                return Ok(Attempt::Retry(
                    "HTTP 416 (range not satisfiable); restarting the file from zero".into(),
                ));
            }
            404 => {
                return Err(PullError::NotFound {
                    repo: self.target.repo.to_string(),
                    revision: self.target.revision.to_string(),
                    file: remote.path.clone(),
                })
            }
            401 | 403 if self.is_storage_link(remote) => {
                return Ok(Attempt::Done(Step::LinkExpired))
            }
            401 | 403 => return Err(gated(self.target, &remote.path, status)),
            _ => {
                return status_outcome(&remote.path, status, &remote.download_url)
                    .map(Attempt::Retry)
            }
        };

        let mut file = if start == 0 {
            accounted.set(0);
            File::create(part)
        } else {
            OpenOptions::new().append(true).open(part)
        }
        .map_err(PullError::io(part))?;

        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut len = start;
        loop {
            if self.stop.is_cancelled() {
                file.flush().map_err(PullError::io(part))?;
                return Err(PullError::Cancelled);
            }
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    file.flush().map_err(PullError::io(part))?;
                    return Ok(Attempt::Retry(format!(
                        "connection lost after {len} of {} bytes ({e})",
                        remote.size
                    )));
                }
            };
            if len + n as u64 > remote.size {
                drop(file);
                remove_part(part)?;
                accounted.set(0);
                return Err(PullError::Protocol {
                    file: remote.path.clone(),
                    reason: format!(
                        "the server sent more than the {} bytes the hub announced",
                        remote.size
                    ),
                });
            }
            file.write_all(&buffer[..n]).map_err(PullError::io(part))?;
            len += n as u64;
            accounted.add(n as u64);
            self.counters
                .transferred
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        file.flush().map_err(PullError::io(part))?;
        if len < remote.size {
            return Ok(Attempt::Retry(format!(
                "connection closed after {len} of {} bytes",
                remote.size
            )));
        }
        Ok(Attempt::Done(Step::Complete))
    }

    /// True when the bytes come from where the hub redirected us (LFS storage / CDN), whose
    /// signed links expire, rather than from the hub's own resolve URL.
    fn is_storage_link(&self, remote: &RemoteFile) -> bool {
        let hub_url = resolve_url(
            &self.config.endpoint,
            self.target.repo,
            self.target.revision,
            &remote.path,
        );
        remote.download_url != hub_url
    }

    /// Asks the hub for a fresh download URL; the file itself must not have changed.
    fn refresh_link(&self, remote: &mut RemoteFile) -> Result<(), PullError> {
        let fresh = resolve(
            self.agent,
            self.config,
            self.target,
            &remote.path,
            self.stop,
        )?
        .ok_or_else(|| PullError::NotFound {
            repo: self.target.repo.to_string(),
            revision: self.target.revision.to_string(),
            file: remote.path.clone(),
        })?;
        if fresh.digest != remote.digest || fresh.size != remote.size {
            return Err(PullError::Protocol {
                file: remote.path.clone(),
                reason: "the file changed on the hub during the download; run the download again"
                    .into(),
            });
        }
        remote.download_url = fresh.download_url;
        Ok(())
    }
}

fn current_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn remove_part(part: &Path) -> Result<(), PullError> {
    match fs::remove_file(part) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PullError::io(part)(e)),
        _ => Ok(()),
    }
}

/// First byte of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(range_start("bytes 100-999/1000"), Some(100));
        assert_eq!(range_start("bytes */1000"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
