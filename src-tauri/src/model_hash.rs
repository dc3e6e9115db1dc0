//! The SHA-256 that answer provenance records as `modelFileHash`, without slowing loading.
//!
//! A model is its weight files: a `.gguf` file, or the `.safetensors` (and `.gguf`) files at
//! the top of a checkpoint folder. One file's hash is its plain SHA-256 (what `sha256sum`
//! prints); several files hash to the SHA-256 of their `sha256sum` listing
//! (`"<hex>  <name>\n"` per file, sorted by name). Each file's digest comes from the model
//! manager's manifest when the model was downloaded or imported (recorded at install time),
//! otherwise it is computed once on a background thread and cached in the data folder by
//! path, size and modification time. Until then the hash is unknown (`None`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use impchat_models::hashing::{sha256_file, StreamHasher};
use impchat_models::Manifest;
use serde::{Deserialize, Serialize};

use crate::state::lock;

const CACHE_FILE: &str = "model-hashes.json";

/// One weight file as it is on disk now; a changed file gets a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileKey {
    path: PathBuf,
    size: u64,
    modified_ns: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    #[serde(flatten)]
    key: FileKey,
    sha256: String,
}

#[derive(Default)]
struct Known {
    digests: HashMap<FileKey, String>,
    /// Models being hashed now, so a second request does not start a second thread.
    hashing: HashSet<PathBuf>,
}

/// Model-file digests known to the app; cheap to query, shared with the hashing threads.
#[derive(Clone)]
pub struct ModelFileHashes {
    cache_path: PathBuf,
    known: Arc<Mutex<Known>>,
}

impl ModelFileHashes {
    /// Reads the cache in `data_dir`; a missing or unreadable cache only means re-hashing.
    pub fn open(data_dir: &Path) -> Self {
        let cache_path = data_dir.join(CACHE_FILE);
        let entries: Vec<CacheEntry> = fs::read(&cache_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let digests = entries
            .into_iter()
            .map(|entry| (entry.key, entry.sha256))
            .collect();
        Self {
            cache_path,
            known: Arc::new(Mutex::new(Known {
                digests,
                hashing: HashSet::new(),
            })),
        }
    }

    /// The model's hash if every weight file's digest is known; otherwise starts hashing the
    /// rest in the background (once) and returns `None`. Never reads the weights itself.
    pub fn lookup(&self, model_path: &Path) -> Option<String> {
        let files = weight_files(model_path).ok()?;
        if files.is_empty() {
            return None;
        }
        let manifest = manifest_digests(model_path);
        let mut known = lock(&self.known);
        let mut listing = Vec::with_capacity(files.len());
        let mut missing = false;
        for key in &files {
            let digest = known
                .digests
                .get(key)
                .cloned()
                .or_else(|| manifest.get(&(key.path.clone(), key.size)).cloned());
            match digest {
                Some(digest) => listing.push((key, digest)),
                None => missing = true,
            }
        }
        if !missing {
            return Some(combine(&listing));
        }
        if known.hashing.insert(model_path.to_path_buf()) {
            let hashes = self.clone();
            let owned = model_path.to_path_buf();
            // Hashing gigabytes takes a while; a failed thread start only leaves the hash unknown.
            let started = std::thread::Builder::new()
                .name("impchat-model-hash".into())
                .spawn(move || hashes.hash_missing(&owned, files));
            if started.is_err() {
                known.hashing.remove(model_path);
            }
        }
        None
    }

    fn hash_missing(&self, model_path: &Path, files: Vec<FileKey>) {
        for key in files {
            if lock(&self.known).digests.contains_key(&key) {
                continue;
            }
            // An unreadable file leaves the hash unknown; loading reports real problems.
            let Ok(digest) = sha256_file(&key.path) else {
                break;
            };
            lock(&self.known).digests.insert(key, digest);
        }
        let entries: Vec<CacheEntry> = {
            let mut known = lock(&self.known);
            known.hashing.remove(model_path);
            known
                .digests
                .iter()
                .map(|(key, sha256)| CacheEntry {
                    key: key.clone(),
                    sha256: sha256.clone(),
                })
                .collect()
        };
        // Only a cache: if it cannot be written, the next start hashes again.
        let _ = write_cache(&self.cache_path, &entries);
    }

    /// Waits until no model is being hashed.
    #[cfg(test)]
    fn wait_idle(&self) {
        while !lock(&self.known).hashing.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn write_cache(path: &Path, entries: &[CacheEntry]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(entries).map_err(std::io::Error::other)?;
    let temp = path.with_extension("json.tmp");
    fs::write(&temp, json)?;
    fs::rename(&temp, path)
}

/// The weight files of the model at `path`, sorted by name, as they are on disk now.
fn weight_files(path: &Path) -> std::io::Result<Vec<FileKey>> {
    let mut paths = if path.is_dir() {
        fs::read_dir(path)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| {
                file.is_file()
                    && file
                        .extension()
                        .is_some_and(|ext| ext == "safetensors" || ext == "gguf")
            })
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let meta = fs::metadata(&path)?;
            let modified_ns = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map(|age| u64::try_from(age.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            Ok(FileKey {
                path,
                size: meta.len(),
                modified_ns,
            })
        })
        .collect()
}

/// Digests the model manager recorded when it installed the model, by absolute path and size.
fn manifest_digests(model_path: &Path) -> HashMap<(PathBuf, u64), String> {
    let dir = if model_path.is_dir() {
        Some(model_path)
    } else {
        model_path.parent()
    };
    let Some(manifest) = dir.and_then(|dir| Manifest::read(dir).ok().map(|m| (dir, m))) else {
        return HashMap::new();
    };
    let (dir, manifest) = manifest;
    manifest
        .files
        .into_iter()
        .map(|file| ((dir.join(&file.path), file.size), file.sha256))
        .collect()
}

/// One file: its digest. Several: the SHA-256 of their `sha256sum` listing.
fn combine(listing: &[(&FileKey, String)]) -> String {
    if let [(_, digest)] = listing {
        return digest.clone();
    }
    let text: String = listing
        .iter()
        .map(|(key, digest)| {
            let name = key
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{digest}  {name}\n")
        })
        .collect();
    let mut hasher = StreamHasher::new(text.len() as u64);
    hasher.update(text.as_bytes());
    hasher.finish().sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn wait_for(hashes: &ModelFileHashes, path: &Path) -> String {
        hashes.lookup(path);
        hashes.wait_idle();
        hashes.lookup(path).expect("hashed")
    }

    #[test]
    fn a_single_file_hashes_to_its_sha256_and_is_cached_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("imp.gguf");
        fs::write(&model, b"abc").expect("write");
        let hashes = ModelFileHashes::open(dir.path());
        assert_eq!(wait_for(&hashes, &model), ABC_SHA256);

        // The cache answers at once after a restart, without hashing.
        let reopened = ModelFileHashes::open(dir.path());
        assert_eq!(reopened.lookup(&model).as_deref(), Some(ABC_SHA256));

        // A changed file is hashed again.
        fs::write(&model, b"").expect("rewrite");
        assert_eq!(wait_for(&reopened, &model), EMPTY_SHA256);
    }

    #[test]
    fn several_files_hash_to_the_sha256_of_their_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model");
        fs::create_dir(&model).expect("mkdir");
        fs::write(model.join("b.safetensors"), b"").expect("write");
        fs::write(model.join("a.safetensors"), b"abc").expect("write");
        fs::write(model.join("config.json"), b"{}").expect("write");
        let hashes = ModelFileHashes::open(dir.path());
        let listing = format!("{ABC_SHA256}  a.safetensors\n{EMPTY_SHA256}  b.safetensors\n");
        let mut expected = StreamHasher::new(listing.len() as u64);
        expected.update(listing.as_bytes());
        assert_eq!(wait_for(&hashes, &model), expected.finish().sha256);
    }

    #[test]
    fn the_manifest_digest_is_used_without_reading_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model");
        fs::create_dir(&model).expect("mkdir");
        fs::write(model.join("model.gguf"), b"abc").expect("write");
        let recorded = "1".repeat(64);
        let manifest = Manifest::new(
            "imp-test".parse().expect("id"),
            None,
            impchat_models::Source::Import {
                from: PathBuf::from("/elsewhere"),
            },
            vec![impchat_models::ManifestFile {
                path: "model.gguf".into(),
                size: 3,
                sha256: recorded.clone(),
            }],
        );
        manifest.write(&model).expect("manifest");
        let hashes = ModelFileHashes::open(dir.path());
        // Known at once: the recorded digest, not one computed from the bytes.
        assert_eq!(
            hashes.lookup(&model.join("model.gguf")),
            Some(recorded.clone())
        );
        assert_eq!(hashes.lookup(&model), Some(recorded));
    }

    #[test]
    fn a_missing_model_has_no_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hashes = ModelFileHashes::open(dir.path());
        assert_eq!(hashes.lookup(&dir.path().join("gone.gguf")), None);
        hashes.wait_idle();
        assert_eq!(hashes.lookup(&dir.path().join("gone.gguf")), None);
    }
}
