//! What `impchat` prints for a user or a script goes to stdout through here: `println!`
//! panics when stdout fails, and an answer lost to a full disk must not exit 0.

use std::fmt;
use std::io::{self, Write};

use anyhow::anyhow;

use crate::exit::{ExitKind, Failure};

/// The reader of stdout went away (`impchat ... | head`): nobody wants the rest, so the
/// process stops quietly with exit 0 instead of reporting an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` to stdout and flushes it, so a failure shows up here and not later.
pub fn print(text: &str) -> Result<(), Failure> {
    write_flushed(text.as_bytes()).map_err(stdout_failure)
}

/// Writes `text` and a newline to stdout.
pub fn print_line(text: &str) -> Result<(), Failure> {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    print(&line)
}

/// The raw write, for callers that stream and decide themselves when to stop.
pub fn write_flushed(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// A failed write to stdout: quiet for a closed pipe, exit 1 naming stdout otherwise
/// (a full disk, an I/O error).
pub fn stdout_failure(err: io::Error) -> Failure {
    if err.kind() == io::ErrorKind::BrokenPipe {
        return Failure::new(ExitKind::Failure, StdoutClosed);
    }
    Failure::new(
        ExitKind::Failure,
        anyhow!("cannot write to stdout: {err}; the output is incomplete"),
    )
}
