//! The small JSON file in every installed model folder: where the files came from, what they
//! hash to, and when the model was installed and last used.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::id::ModelId;

pub const MANIFEST_FILE: &str = "impchat-model.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Hub {
        endpoint: String,
        repo: String,
        revision: String,
        /// Commit the revision resolved to (hub header `X-Repo-Commit`), when reported.
        commit: Option<String>,
    },
    Import {
        from: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the model folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: ModelId,
    /// Catalog entry this model was installed from, if any.
    pub catalog_id: Option<ModelId>,
    pub source: Source,
    pub files: Vec<ManifestFile>,
    pub installed_at_ms: u64,
    pub last_used_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid ImpChat model manifest ({source}); remove the folder and install the model again")]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has manifest format {found}; this ImpChat understands format {FORMAT_VERSION}, update ImpChat")]
    UnsupportedVersion { path: PathBuf, found: u32 },
}

impl Manifest {
    /// Lists a file written into the model folder (e.g. a converted GGUF) with its size and
    /// SHA-256, replacing any entry of the same name.
    pub fn record_file(&mut self, path: &Path) -> Result<(), String> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{} has no file name", path.display()))?;
        let sha256 = crate::hashing::sha256_file(path)
            .map_err(|err| format!("cannot hash {}: {err}", path.display()))?;
        let size = fs::metadata(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?
            .len();
        self.files.retain(|f| f.path != file_name);
        self.files.push(ManifestFile {
            path: file_name,
            size,
            sha256,
        });
        Ok(())
    }

    pub fn new(
        id: ModelId,
        catalog_id: Option<ModelId>,
        source: Source,
        files: Vec<ManifestFile>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            id,
            catalog_id,
            source,
            files,
            installed_at_ms: now_ms(),
            last_used_ms: None,
        }
    }

    pub fn path_in(model_dir: &Path) -> PathBuf {
        model_dir.join(MANIFEST_FILE)
    }

    pub fn read(model_dir: &Path) -> Result<Self, ManifestError> {
        let path = Self::path_in(model_dir);
        let text = fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|source| ManifestError::Invalid {
                path: path.clone(),
                source,
            })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                path,
                found: manifest.format_version,
            });
        }
        Ok(manifest)
    }

    /// Writes through a temporary file and a rename, so a crash leaves the old or the new
    /// manifest, never a torn one.
    pub fn write(&self, model_dir: &Path) -> io::Result<()> {
        let path = Self::path_in(model_dir);
        let temp = model_dir.join(format!("{MANIFEST_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut file = fs::File::create(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temp, &path)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
