//! The models directory: one folder per installed model (`<models_dir>/<id>/`) holding its
//! files and a manifest. Downloads and imports build the folder under `.staging/` and rename
//! it into place only when every file is verified, so a listed model is always complete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::hashing::sha256_file;
use crate::id::ModelId;
use crate::manifest::{now_ms, Manifest, ManifestError};

const STAGING_DIR: &str = ".staging";
const TRASH_PREFIX: &str = ".removing-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("model {id} is not installed in {models_dir}; `impchat models list` shows what is")]
    NotInstalled { id: ModelId, models_dir: PathBuf },
    #[error("model {id} is already installed at {path}; remove it first to install it again")]
    AlreadyInstalled { id: ModelId, path: PathBuf },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The folder name of ImpChat's data under the OS data dir: the desktop app's identifier,
/// so the app and the `impchat` command share one set of models.
const APP_DATA_FOLDER: &str = "app.impchat.desktop";

/// Where models live unless the user chose another folder: `<data dir>/app.impchat.desktop/models`
/// (e.g. `~/.local/share/app.impchat.desktop/models` on Linux). `None` when the OS reports no data dir.
pub fn default_models_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join(APP_DATA_FOLDER).join("models"))
}

pub fn model_dir(models_dir: &Path, id: &ModelId) -> PathBuf {
    models_dir.join(id.as_str())
}

/// Where an unfinished download or import of `id` is assembled (`<file>.part` files included).
pub fn staging_dir(models_dir: &Path, id: &ModelId) -> PathBuf {
    models_dir.join(STAGING_DIR).join(id.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledModel {
    pub id: ModelId,
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Bytes the folder takes (sum of file lengths, manifest included).
    pub size_on_disk: u64,
}

impl InstalledModel {
    pub fn last_used_ms(&self) -> Option<u64> {
        self.manifest.last_used_ms
    }

    /// The commit the hub resolved the requested revision to when this model was downloaded
    /// (`X-Repo-Commit`); `None` for imports and for hubs that did not say.
    pub fn hub_commit(&self) -> Option<&str> {
        match &self.manifest.source {
            crate::manifest::Source::Hub { commit, .. } => commit.as_deref(),
            crate::manifest::Source::Import { .. } => None,
        }
    }
}

/// A folder in the models dir that looks like a model but cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableModel {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Installed models, most recently used first, never-used ones by id.
    pub models: Vec<InstalledModel>,
    pub unreadable: Vec<UnreadableModel>,
}

/// Lists installed models. A missing models dir is an empty list; one damaged folder is
/// reported in `unreadable` without hiding the others.
pub fn list_installed(models_dir: &Path) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    let entries = match fs::read_dir(models_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(io_error("cannot read models folder", models_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("cannot read models folder", models_dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        match read_installed(&path) {
            Ok(Some(model)) => listing.models.push(model),
            Ok(None) => {}
            Err(reason) => listing.unreadable.push(UnreadableModel { path, reason }),
        }
    }
    listing.models.sort_by(|a, b| {
        b.manifest
            .last_used_ms
            .cmp(&a.manifest.last_used_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(listing)
}

/// `Ok(None)` for folders without a manifest (not ours, left alone).
fn read_installed(path: &Path) -> Result<Option<InstalledModel>, String> {
    if !Manifest::path_in(path).exists() {
        return Ok(None);
    }
    let manifest = Manifest::read(path).map_err(|e| e.to_string())?;
    let folder_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if manifest.id.as_str() != folder_name {
        return Err(format!(
            "its manifest names model {} but the folder is {folder_name}; rename the folder back or remove it",
            manifest.id
        ));
    }
    let size_on_disk = dir_size(path).map_err(|e| format!("cannot measure its size: {e}"))?;
    Ok(Some(InstalledModel {
        id: manifest.id.clone(),
        path: path.to_path_buf(),
        manifest,
        size_on_disk,
    }))
}

pub fn get_installed(models_dir: &Path, id: &ModelId) -> Result<InstalledModel, StoreError> {
    let path = model_dir(models_dir, id);
    if !Manifest::path_in(&path).exists() {
        return Err(StoreError::NotInstalled {
            id: id.clone(),
            models_dir: models_dir.to_path_buf(),
        });
    }
    let manifest = Manifest::read(&path)?;
    let size_on_disk = dir_size(&path).map_err(io_error("cannot measure", &path))?;
    Ok(InstalledModel {
        id: id.clone(),
        path,
        manifest,
        size_on_disk,
    })
}

fn dir_size(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Deletes an installed model and returns the bytes freed. The folder is first renamed out of
/// the listing, so an interrupted removal never leaves a half-deleted model that looks usable.
pub fn remove(models_dir: &Path, id: &ModelId) -> Result<u64, StoreError> {
    let installed = get_installed(models_dir, id)?;
    let trash = models_dir.join(format!("{TRASH_PREFIX}{}-{}", id, now_ms()));
    fs::rename(&installed.path, &trash).map_err(io_error("cannot move aside", &installed.path))?;
    fs::remove_dir_all(&trash).map_err(io_error("cannot delete", &trash))?;
    Ok(installed.size_on_disk)
}

/// Records that the model was just used (for "last used" sorting and clean-up hints).
pub fn mark_used(models_dir: &Path, id: &ModelId) -> Result<(), StoreError> {
    let installed = get_installed(models_dir, id)?;
    let mut manifest = installed.manifest;
    manifest.last_used_ms = Some(now_ms());
    manifest
        .write(&installed.path)
        .map_err(io_error("cannot update manifest in", &installed.path))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileProblem {
    Missing {
        path: String,
    },
    WrongSize {
        path: String,
        expected: u64,
        actual: u64,
    },
    WrongHash {
        path: String,
        expected: String,
        actual: String,
    },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing { path } => write!(f, "{path} is missing"),
            FileProblem::WrongSize {
                path,
                expected,
                actual,
            } => {
                write!(f, "{path} is {actual} bytes, expected {expected}")
            }
            FileProblem::WrongHash {
                path,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "{path} has SHA-256 {actual}, expected {expected} (the file is damaged)"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub id: ModelId,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub problems: Vec<FileProblem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-hashes every file of an installed model against its manifest.
pub fn verify(models_dir: &Path, id: &ModelId) -> Result<VerifyReport, StoreError> {
    let installed = get_installed(models_dir, id)?;
    let mut report = VerifyReport {
        id: id.clone(),
        files_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
    };
    for file in &installed.manifest.files {
        let path = installed.path.join(&file.path);
        report.files_checked += 1;
        let actual_size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                report.problems.push(FileProblem::Missing {
                    path: file.path.clone(),
                });
                continue;
            }
            Err(e) => return Err(io_error("cannot read", &path)(e)),
        };
        if actual_size != file.size {
            report.problems.push(FileProblem::WrongSize {
                path: file.path.clone(),
                expected: file.size,
                actual: actual_size,
            });
            continue;
        }
        let actual = sha256_file(&path).map_err(io_error("cannot read", &path))?;
        report.bytes_checked += actual_size;
        if actual != file.sha256 {
            report.problems.push(FileProblem::WrongHash {
                path: file.path.clone(),
                expected: file.sha256.clone(),
                actual,
            });
        }
    }
    Ok(report)
}

/// Moves a fully verified staging folder into place: writes the manifest, then renames.
pub(crate) fn commit_staged(
    models_dir: &Path,
    staged: &Path,
    manifest: &Manifest,
) -> Result<InstalledModel, StoreError> {
    let target = model_dir(models_dir, &manifest.id);
    if target.exists() {
        return Err(StoreError::AlreadyInstalled {
            id: manifest.id.clone(),
            path: target,
        });
    }
    manifest
        .write(staged)
        .map_err(io_error("cannot write manifest in", staged))?;
    fs::rename(staged, &target).map_err(io_error("cannot move into place", staged))?;
    // Best effort: an empty `.staging` folder is harmless if another install still uses it.
    let _ = fs::remove_dir(models_dir.join(STAGING_DIR));
    get_installed(models_dir, &manifest.id)
}

/// Bytes kept from an unfinished download of `id` (0 when there is none).
pub fn partial_download_bytes(models_dir: &Path, id: &ModelId) -> u64 {
    dir_size(&staging_dir(models_dir, id)).unwrap_or(0)
}

/// Deletes an unfinished download of `id`; returns the bytes freed.
pub fn discard_partial_download(models_dir: &Path, id: &ModelId) -> Result<u64, StoreError> {
    let staged = staging_dir(models_dir, id);
    let bytes = partial_download_bytes(models_dir, id);
    match fs::remove_dir_all(&staged) {
        Ok(()) => {
            let _ = fs::remove_dir(models_dir.join(STAGING_DIR));
            Ok(bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error("cannot delete", &staged)(e)),
    }
}

/// Refuses to start an install over an existing model.
pub(crate) fn ensure_not_installed(models_dir: &Path, id: &ModelId) -> Result<(), StoreError> {
    let target = model_dir(models_dir, id);
    if target.exists() {
        return Err(StoreError::AlreadyInstalled {
            id: id.clone(),
            path: target,
        });
    }
    Ok(())
}
