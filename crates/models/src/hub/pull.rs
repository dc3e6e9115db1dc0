//! A whole model download: resolve, parallel transfers, one progress stream, atomic install.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;
use crate::catalog::CatalogEntry;
use crate::hashing::Digests;
use crate::id::ModelId;
use crate::manifest::{Manifest, ManifestFile, Source, MANIFEST_FILE};
use crate::store::{commit_staged, ensure_not_installed, staging_dir, InstalledModel};

use super::config::HubConfig;
use super::error::PullError;
use super::progress::{eta, Phase, Progress, SpeedMeter};
use super::remote::{resolve, RemoteFile, Target};
use super::transfer::{bytes_on_disk, part_path, Counters, Transfer};
use super::url::is_valid_repo;

const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Remembers which digests the files in staging belong to, so a resume never mixes revisions.
const PULL_STATE_FILE: &str = ".impchat-pull.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedFile {
    pub path: String,
    /// A 404 skips the file instead of failing the download.
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Folder name the model is installed under.
    pub id: ModelId,
    pub catalog_id: Option<ModelId>,
    pub repo: String,
    pub revision: String,
    pub files: Vec<WantedFile>,
}

impl PullRequest {
    /// Downloads a catalog entry at its catalog revision, installed under its catalog id.
    pub fn from_catalog(entry: &CatalogEntry) -> Self {
        Self {
            id: entry.id.clone(),
            catalog_id: Some(entry.id.clone()),
            repo: entry.repo.clone(),
            revision: entry.revision.clone(),
            files: entry
                .files
                .iter()
                .map(|f| WantedFile {
                    path: f.path.clone(),
                    optional: f.optional,
                })
                .collect(),
        }
    }

    fn validate(&self) -> Result<(), PullError> {
        let invalid = |msg: String| Err(PullError::InvalidRequest(msg));
        if !is_valid_repo(&self.repo) {
            return invalid(format!(
                "{:?} is not a Hugging Face repo name (owner/name)",
                self.repo
            ));
        }
        if self.revision.trim().is_empty() {
            return invalid(
                "the revision is empty; use a branch such as main or a commit hash".into(),
            );
        }
        if self.files.is_empty() {
            return invalid("no files to download".into());
        }
        let mut seen = HashSet::new();
        for file in &self.files {
            let plain = !file.path.is_empty()
                && !file.path.contains('\\')
                && file
                    .path
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..");
            if !plain || file.path == MANIFEST_FILE || file.path == PULL_STATE_FILE {
                return invalid(format!("{:?} is not a plain relative file path", file.path));
            }
            if !seen.insert(file.path.as_str()) {
                return invalid(format!("{} is listed twice", file.path));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    pub installed: InstalledModel,
    /// Optional files the hub does not have.
    pub skipped_optional: Vec<String>,
    /// Bytes received over the network in this call.
    pub transferred_bytes: u64,
    /// Bytes reused from an earlier, interrupted download.
    pub resumed_bytes: u64,
}

/// Hook point for converting a verified download (e.g. to GGUF) before it is installed.
/// Runs on the staging folder after every file is verified and before the folder is moved
/// into the models dir; files it adds must be appended to `manifest.files`. An error aborts
/// the install and keeps the verified downloads in staging for the next attempt.
/// No converter ships in this crate yet.
pub trait ConvertHook {
    fn convert_staged(&self, staged_dir: &Path, manifest: &mut Manifest) -> Result<(), String>;
}

/// Downloads `request` into `models_dir`. Blocking: run it on a worker thread. `on_progress`
/// is called on this thread about ten times a second; cancel through `cancel`.
pub fn pull(
    models_dir: &Path,
    config: &HubConfig,
    request: &PullRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<PullOutcome, PullError> {
    run_pull(models_dir, config, request, on_progress, cancel, None)
}

/// [`pull`] with a conversion step before the install.
pub fn pull_with_hook(
    models_dir: &Path,
    config: &HubConfig,
    request: &PullRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
    hook: &dyn ConvertHook,
) -> Result<PullOutcome, PullError> {
    run_pull(models_dir, config, request, on_progress, cancel, Some(hook))
}

fn run_pull(
    models_dir: &Path,
    config: &HubConfig,
    request: &PullRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
    hook: Option<&dyn ConvertHook>,
) -> Result<PullOutcome, PullError> {
    request.validate()?;
    if config.parallel_files == 0 {
        return Err(PullError::InvalidRequest(
            "parallel_files must be at least 1".into(),
        ));
    }
    ensure_not_installed(models_dir, &request.id)?;
    let staged = staging_dir(models_dir, &request.id);

    let agent = config.agent();
    let target = Target {
        repo: &request.repo,
        revision: &request.revision,
    };
    let (remotes, skipped_optional) =
        resolve_all(&agent, config, &target, request, on_progress, cancel)?;
    if remotes.is_empty() {
        return Err(PullError::InvalidRequest(format!(
            "none of the requested files exist in {} at {}",
            request.repo, request.revision
        )));
    }
    fs::create_dir_all(&staged).map_err(PullError::io(&staged))?;
    forget_other_revisions(&staged, &remotes)?;

    let counters = Counters::default();
    let resumed_bytes: u64 = remotes.iter().map(|r| bytes_on_disk(r, &staged)).sum();
    counters.on_disk.store(resumed_bytes, Ordering::Relaxed);
    let transfer = Transfer {
        agent: &agent,
        config,
        target: &target,
        staged_root: &staged,
        counters: &counters,
        stop: &CancelToken::new(),
    };
    let digests = download_all(&transfer, &remotes, on_progress, cancel)?;

    let files: Vec<ManifestFile> = remotes
        .iter()
        .zip(&digests)
        .map(|(remote, digests)| ManifestFile {
            path: remote.path.clone(),
            size: remote.size,
            sha256: digests.sha256.clone(),
        })
        .collect();
    let bytes_total: u64 = files.iter().map(|f| f.size).sum();
    on_progress(&Progress {
        phase: Phase::Installing,
        bytes_done: bytes_total,
        bytes_total,
        files_done: files.len(),
        files_total: files.len(),
        bytes_per_second: 0.0,
        eta: None,
    });
    let source = Source::Hub {
        endpoint: config.endpoint.clone(),
        repo: request.repo.clone(),
        revision: request.revision.clone(),
        commit: remotes.iter().find_map(|r| r.commit.clone()),
    };
    let mut manifest = Manifest::new(
        request.id.clone(),
        request.catalog_id.clone(),
        source,
        files,
    );
    if let Some(hook) = hook {
        hook.convert_staged(&staged, &mut manifest)
            .map_err(PullError::Convert)?;
    }
    remove_strays(&staged, &manifest)?;
    let installed = commit_staged(models_dir, &staged, &manifest)?;
    Ok(PullOutcome {
        installed,
        skipped_optional,
        transferred_bytes: counters.transferred.load(Ordering::Relaxed),
        resumed_bytes,
    })
}

fn resolve_all(
    agent: &ureq::Agent,
    config: &HubConfig,
    target: &Target<'_>,
    request: &PullRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<(Vec<RemoteFile>, Vec<String>), PullError> {
    let mut remotes = Vec::new();
    let mut skipped = Vec::new();
    for (index, wanted) in request.files.iter().enumerate() {
        on_progress(&Progress {
            phase: Phase::Resolving,
            bytes_done: 0,
            bytes_total: remotes.iter().map(|r: &RemoteFile| r.size).sum(),
            files_done: index,
            files_total: request.files.len(),
            bytes_per_second: 0.0,
            eta: None,
        });
        match resolve(agent, config, target, &wanted.path, cancel)? {
            Some(remote) => remotes.push(remote),
            None if wanted.optional => skipped.push(wanted.path.clone()),
            None => {
                return Err(PullError::NotFound {
                    repo: request.repo.clone(),
                    revision: request.revision.clone(),
                    file: wanted.path.clone(),
                })
            }
        }
    }
    Ok((remotes, skipped))
}

/// Deletes staged files whose expected digest changed since they were downloaded (another
/// revision), then records the current digests.
fn forget_other_revisions(staged: &Path, remotes: &[RemoteFile]) -> Result<(), PullError> {
    let state_path = staged.join(PULL_STATE_FILE);
    let previous: BTreeMap<String, String> = fs::read(&state_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<PullState>(&bytes).ok())
        .map(|state| state.digests)
        .unwrap_or_default();
    for remote in remotes {
        let changed = previous
            .get(&remote.path)
            .is_some_and(|digest| digest != remote.digest.hex());
        if changed {
            let final_path = staged.join(&remote.path);
            for path in [part_path(&final_path), final_path] {
                if path.exists() {
                    fs::remove_file(&path).map_err(PullError::io(&path))?;
                }
            }
        }
    }
    let state = PullState {
        digests: remotes
            .iter()
            .map(|r| (r.path.clone(), r.digest.hex().to_string()))
            .collect(),
    };
    let json = serde_json::to_vec(&state)
        .map_err(|e| PullError::io(&state_path)(std::io::Error::other(e)))?;
    fs::write(&state_path, json).map_err(PullError::io(&state_path))
}

#[derive(Serialize, Deserialize)]
struct PullState {
    digests: BTreeMap<String, String>,
}

/// Runs the transfers on `parallel_files` threads and reports progress from this thread.
/// Returns digests in the order of `remotes`.
fn download_all(
    transfer: &Transfer<'_>,
    remotes: &[RemoteFile],
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<Vec<Digests>, PullError> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..remotes.len()).collect());
    let results: Mutex<Vec<Option<Digests>>> = Mutex::new(vec![None; remotes.len()]);
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    let files_done = AtomicUsize::new(0);
    let workers = transfer.config.parallel_files.min(remotes.len()).max(1);
    let running = AtomicUsize::new(workers);
    let bytes_total: u64 = remotes.iter().map(|r| r.size).sum();

    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !transfer.stop.is_cancelled() {
                    let next = lock(&queue).pop_front();
                    let Some(index) = next else { break };
                    match transfer.download(&remotes[index]) {
                        Ok(digests) => {
                            lock(&results)[index] = Some(digests);
                            files_done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            lock(&first_error).get_or_insert(error);
                            transfer.stop.cancel();
                        }
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }

        let mut meter = SpeedMeter::new();
        let mut last_report: Option<Instant> = None;
        loop {
            if cancel.is_cancelled() {
                transfer.stop.cancel();
            }
            let finished = running.load(Ordering::SeqCst) == 0;
            let now = Instant::now();
            if finished || last_report.is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL) {
                let bytes_done = transfer.counters.on_disk.load(Ordering::Relaxed);
                let speed =
                    meter.sample(now, transfer.counters.transferred.load(Ordering::Relaxed));
                on_progress(&Progress {
                    phase: Phase::Downloading,
                    bytes_done,
                    bytes_total,
                    files_done: files_done.load(Ordering::SeqCst),
                    files_total: remotes.len(),
                    bytes_per_second: speed,
                    eta: eta(bytes_total.saturating_sub(bytes_done), speed),
                });
                last_report = Some(now);
            }
            if finished {
                break;
            }
            thread::sleep(POLL_INTERVAL);
        }
    });

    if cancel.is_cancelled() {
        return Err(PullError::Cancelled);
    }
    if let Some(error) = lock(&first_error).take() {
        return Err(error);
    }
    let results = std::mem::take(&mut *lock(&results));
    results
        .into_iter()
        .zip(remotes)
        .map(|(digests, remote)| {
            digests.ok_or_else(|| PullError::Protocol {
                file: remote.path.clone(),
                reason: "the transfer ended without a result".into(),
            })
        })
        .collect()
}

/// A worker that panicked poisons the lock; the data (plain results) is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes anything in staging that is not part of the model (leftovers of earlier attempts).
fn remove_strays(staged: &Path, manifest: &Manifest) -> Result<(), PullError> {
    let keep: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    remove_strays_in(staged, staged, &keep)
}

fn remove_strays_in(root: &Path, dir: &Path, keep: &HashSet<&str>) -> Result<(), PullError> {
    for entry in fs::read_dir(dir).map_err(PullError::io(dir))? {
        let entry = entry.map_err(PullError::io(dir))?;
        let path = entry.path();
        if path.is_dir() {
            remove_strays_in(root, &path, keep)?;
            if fs::read_dir(&path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
            {
                fs::remove_dir(&path).map_err(PullError::io(&path))?;
            }
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
            .map(|p| p.replace('\\', "/"));
        if relative.is_none_or(|p| !keep.contains(p.as_str())) {
            fs::remove_file(&path).map_err(PullError::io(&path))?;
        }
    }
    Ok(())
}
