//! Model files the user points at must be ordinary files: a FIFO would block the open
//! forever, `/dev/zero` or `/dev/urandom` never end, and `/proc` files lie about their
//! size. Everything is checked with `stat` before anything is opened, and small files
//! (configs, tokenizers, indexes) are read with a size cap.

use std::fs::{self, File, FileType};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Caps for the small files of a model folder: far above any real one, far below what
/// would hurt to hold in memory.
pub mod caps {
    /// `config.json`, `generation_config.json`, `tokenizer_config.json` and the like.
    pub const CONFIG: u64 = 4 << 20;
    /// `model.safetensors.index.json`.
    pub const INDEX: u64 = 16 << 20;
    /// `tokenizer.json`, `vocab.json`, `merges.txt` (Qwen's tokenizer.json is 7 MB).
    pub const TOKENIZER: u64 = 64 << 20;
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "{} is {kind}, not a regular file; point at the model's own files \
         (a copy on disk, not a device, pipe or system file)",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is {size} bytes, over the {limit}-byte limit for this kind of file; \
         it cannot be the model's real file (re-download or re-convert the model)",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    pub fn path(&self) -> &Path {
        match self {
            FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::Io { path, .. } => path,
        }
    }

    /// True when the file does not exist at all (callers name what was expected).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What `path` is (following symlinks): `None` when nothing is there, its length when it
/// is a regular file, and an error naming what it is otherwise. Never opens the file.
pub fn regular_file_len(path: &Path) -> Result<Option<u64>, FileError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let not_regular = |kind| FileError::NotRegular {
        path: path.to_path_buf(),
        kind,
    };
    if !metadata.is_file() {
        return Err(not_regular(describe(metadata.file_type())));
    }
    if is_kernel_file(path) {
        return Err(not_regular("a file of the kernel's /proc or /sys"));
    }
    Ok(Some(metadata.len()))
}

/// Like [`regular_file_len`], with a missing file an error too.
pub fn require_regular_file(path: &Path) -> Result<u64, FileError> {
    regular_file_len(path)?.ok_or_else(|| FileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// Opens a regular file for reading (checked first, so a FIFO is refused, not waited on).
pub fn open_regular(path: &Path) -> Result<(File, u64), FileError> {
    let len = require_regular_file(path)?;
    let file = File::open(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((file, len))
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let (file, len) = open_regular(path)?;
    let too_large = |size| FileError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow after the stat; read one byte past the cap to notice.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_string(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_capped(path, limit)?;
    String::from_utf8(bytes).map_err(|e| FileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

fn describe(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// `/proc` and `/sys` files claim sizes (0 or 4096) that have nothing to do with what
/// reading them gives.
fn is_kernel_file(path: &Path) -> bool {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return false;
    }
    fs::canonicalize(path)
        .map(|real| real.starts_with("/proc") || real.starts_with("/sys"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, b"{}").expect("write");
        assert_eq!(read_capped(&path, 2).expect("read"), b"{}");
        let err = read_capped(&path, 1).expect_err("over the cap");
        assert!(
            matches!(
                err,
                FileError::TooLarge {
                    size: 2,
                    limit: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("1-byte limit"), "{err}");
        assert_eq!(
            regular_file_len(&dir.path().join("none")).expect("ok"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn devices_and_kernel_files_are_named_for_what_they_are() {
        for (path, kind) in [
            ("/dev/zero", "character device"),
            ("/dev/urandom", "character device"),
            ("/proc/self/status", "/proc"),
            ("/tmp", "folder"),
        ] {
            let err = read_capped(Path::new(path), 1 << 20).expect_err(path);
            let message = err.to_string();
            assert!(
                message.contains(path) && message.contains(kind),
                "{message}"
            );
        }
    }
}
