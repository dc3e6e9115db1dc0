//! Importing a checkpoint folder the user already has: validate, copy into staging while
//! hashing, then move into the models dir with a manifest.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::cancel::CancelToken;
use crate::checkpoint::{validate_checkpoint, CheckpointError, CheckpointReport};
use crate::id::ModelId;
use crate::manifest::{Manifest, ManifestFile, Source};
use crate::store::{commit_staged, ensure_not_installed, staging_dir, InstalledModel, StoreError};

const COPY_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot copy {path}: {source}")]
    Copy { path: PathBuf, source: io::Error },
    #[error("import cancelled; nothing was installed")]
    Cancelled,
}

/// Validates `source_dir` and installs a copy of it as `id`. The original is left untouched.
/// What the engine would refuse to load (see [`impchat_engine::check_checkpoint`]) is
/// refused here too, with the same message, before anything is copied.
pub fn import_checkpoint(
    models_dir: &Path,
    source_dir: &Path,
    id: &ModelId,
    cancel: &CancelToken,
) -> Result<(InstalledModel, CheckpointReport), ImportError> {
    let report = validate_checkpoint(source_dir)?;
    impchat_engine::check_checkpoint(source_dir).map_err(CheckpointError::WouldNotLoad)?;
    ensure_not_installed(models_dir, id)?;
    let staged = staging_dir(models_dir, id);
    let result = copy_into_staging(source_dir, &staged, &report, cancel).and_then(|files| {
        let from = fs::canonicalize(source_dir).unwrap_or_else(|_| source_dir.to_path_buf());
        let manifest = Manifest::new(id.clone(), None, Source::Import { from }, files);
        Ok(commit_staged(models_dir, &staged, &manifest)?)
    });
    match result {
        Ok(installed) => Ok((installed, report)),
        Err(e) => {
            // A copy is cheap to redo, so a failed import leaves nothing behind.
            let _ = fs::remove_dir_all(&staged);
            Err(e)
        }
    }
}

fn copy_into_staging(
    source_dir: &Path,
    staged: &Path,
    report: &CheckpointReport,
    cancel: &CancelToken,
) -> Result<Vec<ManifestFile>, ImportError> {
    if staged.exists() {
        fs::remove_dir_all(staged).map_err(|source| ImportError::Copy {
            path: staged.to_path_buf(),
            source,
        })?;
    }
    fs::create_dir_all(staged).map_err(|source| ImportError::Copy {
        path: staged.to_path_buf(),
        source,
    })?;
    let mut files = Vec::with_capacity(report.files.len());
    for name in &report.files {
        let from = source_dir.join(name);
        let (size, sha256) = copy_hashing(&from, &staged.join(name), cancel)?;
        files.push(ManifestFile {
            path: name.clone(),
            size,
            sha256,
        });
    }
    Ok(files)
}

fn copy_hashing(
    from: &Path,
    to: &Path,
    cancel: &CancelToken,
) -> Result<(u64, String), ImportError> {
    use sha2::{Digest, Sha256};
    let copy_err = |source| ImportError::Copy {
        path: from.to_path_buf(),
        source,
    };
    let mut input = File::open(from).map_err(copy_err)?;
    let mut output = File::create(to).map_err(copy_err)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(ImportError::Cancelled);
        }
        let n = input.read(&mut buffer).map_err(copy_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(copy_err)?;
        size += n as u64;
    }
    output.sync_all().map_err(copy_err)?;
    Ok((size, hex::encode(hasher.finalize())))
}
