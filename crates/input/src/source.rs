//! Reads a file the user named (or stdin, as `-`) within a size cap and a time limit.
//!
//! `metadata().len()` is 0 for devices, pipes and `/proc` files, so a size check on it lets
//! `/dev/zero` read forever; here every read goes through a bounded reader instead. Devices
//! are refused outright; pipes and FIFOs (stdin, `<(cat x.png)`, `mkfifo`) are read with a
//! deadline, so a FIFO nobody writes to, or a writer that never finishes, fails in bounded
//! time instead of hanging the caller.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

/// The path that means "read standard input".
pub const STDIN: &str = "-";

/// Why a user's file could not be read; the messages say what was wrong, the caller adds
/// which file and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no such file")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    #[error("this is a folder, not a file")]
    Directory,
    /// A device, socket or other special file: it may never end, so it is not read at all.
    #[error("this is {kind}, not a regular file")]
    NotAFile { kind: &'static str },
    /// Standard input is a terminal: nothing sensible can be typed there.
    #[error("standard input is a terminal, not a file or pipe")]
    StdinIsTerminal,
    #[error("it holds more than {}, the most accepted", human_cap(.cap))]
    TooLarge { cap: u64 },
    /// A pipe or FIFO had not delivered everything (reached its end) in time.
    #[error("the data did not finish arriving within {} s", .after.as_secs_f64())]
    TimedOut { after: Duration },
    #[error("{0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for SourceError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => SourceError::NotFound,
            io::ErrorKind::PermissionDenied => SourceError::PermissionDenied,
            _ => SourceError::Io(err),
        }
    }
}

fn human_cap(&cap: &u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if cap >= MIB && cap % MIB == 0 {
        format!("{} MiB", cap / MIB)
    } else {
        format!("{cap} bytes")
    }
}

/// Reads all of `path` (or stdin when it is [`STDIN`]), refusing more than `cap` bytes,
/// devices and folders; pipes and FIFOs must reach their end within `timeout`.
pub fn read_user_file(path: &Path, cap: u64, timeout: Duration) -> Result<Vec<u8>, SourceError> {
    if path == Path::new(STDIN) {
        return platform::read_stdin(cap, timeout);
    }
    let metadata = std::fs::metadata(path)?;
    match FileKind::of(&metadata) {
        FileKind::Regular => read_regular(path, &metadata, cap),
        FileKind::Directory => Err(SourceError::Directory),
        FileKind::Pipe => platform::read_fifo(path, cap, timeout),
        FileKind::Special(kind) => Err(SourceError::NotAFile { kind }),
    }
}

/// What kind of thing a path names, as far as reading it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Regular,
    Directory,
    /// A pipe or FIFO: it ends when its writer closes it, which may take a while.
    #[cfg_attr(not(unix), allow(dead_code))] // only Unix tells FIFOs apart
    Pipe,
    /// Anything else (a device, a socket): described for the error message.
    Special(&'static str),
}

impl FileKind {
    fn of(metadata: &Metadata) -> Self {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            return FileKind::Regular;
        }
        if file_type.is_dir() {
            return FileKind::Directory;
        }
        platform::special_kind(&file_type)
    }
}

fn read_regular(path: &Path, metadata: &Metadata, cap: u64) -> Result<Vec<u8>, SourceError> {
    if metadata.len() > cap {
        return Err(SourceError::TooLarge { cap });
    }
    let file = File::open(path)?;
    // The path may have been swapped for something else since the check above.
    if !file.metadata()?.is_file() {
        return Err(SourceError::NotAFile {
            kind: "no longer a regular file",
        });
    }
    read_capped(file, cap)
}

/// Reads to the end, but never more than `cap + 1` bytes: files under `/proc` report a
/// length of 0 whatever they hold.
fn read_capped(reader: impl Read, cap: u64) -> Result<Vec<u8>, SourceError> {
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(SourceError::TooLarge { cap });
    }
    Ok(bytes)
}

#[cfg(unix)]
mod platform {
    use std::fs::{File, FileType, OpenOptions};
    use std::io::{self, Read};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::{read_capped, FileKind, SourceError};

    pub fn special_kind(file_type: &FileType) -> FileKind {
        if file_type.is_fifo() {
            FileKind::Pipe
        } else {
            FileKind::Special(describe(file_type))
        }
    }

    fn describe(file_type: &FileType) -> &'static str {
        if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a special file"
        }
    }

    pub fn read_fifo(path: &Path, cap: u64, timeout: Duration) -> Result<Vec<u8>, SourceError> {
        // A blocking open(2) of a FIFO waits for a writer, possibly forever; a non-blocking
        // one returns at once and the wait moves into `poll`, which has a timeout.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        match FileKind::of(&file.metadata()?) {
            FileKind::Pipe => read_with_deadline(file, cap, timeout),
            FileKind::Regular => read_capped(file, cap),
            FileKind::Directory => Err(SourceError::Directory),
            FileKind::Special(kind) => Err(SourceError::NotAFile { kind }),
        }
    }

    pub fn read_stdin(cap: u64, timeout: Duration) -> Result<Vec<u8>, SourceError> {
        // A duplicate of fd 0, so its metadata can be read and dropping it closes only the copy.
        let stdin = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let file_type = stdin.metadata()?.file_type();
        if file_type.is_file() {
            return read_capped(stdin, cap);
        }
        if file_type.is_fifo() || file_type.is_socket() {
            return read_with_deadline(stdin, cap, timeout);
        }
        if file_type.is_char_device() && std::io::IsTerminal::is_terminal(&stdin) {
            return Err(SourceError::StdinIsTerminal);
        }
        Err(SourceError::NotAFile {
            kind: describe(&file_type),
        })
    }

    /// Reads until end of file, waiting in `poll` (never in `read`) so the deadline holds
    /// whether or not the descriptor is non-blocking.
    fn read_with_deadline(
        mut file: File,
        cap: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, SourceError> {
        let deadline = Instant::now() + timeout;
        let limit = usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX);
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&file, left)? {
                return Err(SourceError::TimedOut { after: timeout });
            }
            let room = (limit - bytes.len()).min(chunk.len());
            match file.read(&mut chunk[..room]) {
                Ok(0) => return Ok(bytes),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Err(err.into()),
            }
            if bytes.len() >= limit {
                return Err(SourceError::TooLarge { cap });
            }
        }
    }

    /// Waits up to `timeout` for data or end of file; false when the time ran out.
    fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
        let mut poll_fd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: one valid pollfd that outlives the call, and nfds = 1.
            let ready = unsafe { libc::poll(&mut poll_fd, 1, millis) };
            if ready >= 0 {
                return Ok(ready > 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(not(unix))]
mod platform {
    use std::fs::FileType;
    use std::path::Path;
    use std::time::Duration;

    use super::{read_capped, FileKind, SourceError};

    pub fn special_kind(_file_type: &FileType) -> FileKind {
        FileKind::Special("a special file")
    }

    pub fn read_fifo(_path: &Path, _cap: u64, _timeout: Duration) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::NotAFile {
            kind: "a special file",
        })
    }

    /// Without `poll` there is no deadline here; the cap still bounds what is read.
    pub fn read_stdin(cap: u64, _timeout: Duration) -> Result<Vec<u8>, SourceError> {
        read_capped(std::io::stdin().lock(), cap)
    }
}
