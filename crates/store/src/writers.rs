//! Who is writing which streaming answer, and whether that writer is still alive.
//!
//! Every open [`Store`](crate::Store) holds an exclusive lock on its own file
//! `writers/<uuid>.lock` for as long as it (or a [`StreamWriter`](crate::StreamWriter)
//! made from it) lives, and stamps that uuid on every answer it sets streaming.
//! The OS drops the lock when the process dies, however it dies (flock on Linux,
//! macOS and Android, LockFileEx on Windows), so no clock or heartbeat is needed:
//! a streaming answer is recovered (marked `interrupted`) only when its writer's
//! lock can be taken, that is when its writer is gone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fs4::{FileExt, TryLockError};
use rusqlite::{params, Connection};

use crate::error::{Result, StoreError};
use crate::store::write_tx;
use crate::time::now_ms;

pub(crate) const WRITERS_DIR: &str = "writers";

/// This process's claim on the answers it writes. Shared (`Arc`) by the store
/// and its stream writers, so the lock lives while any of them does.
#[derive(Debug)]
pub(crate) struct WriterLease {
    id: String,
    path: PathBuf,
    /// `None` where the platform or file system refused the lock: then others
    /// see this writer as dead and may take its answers, which the stream
    /// writer notices and answers by moving on to a new row (nothing is lost).
    file: Option<File>,
}

impl WriterLease {
    /// Creates and locks a fresh lock file, then records the writer in the
    /// `writers` table (only after the lock is held, so a file that a sweep
    /// finds listed there is never one whose owner has yet to lock it).
    pub(crate) fn acquire(data_dir: &Path, conn: &Connection) -> Result<Self> {
        let dir = data_dir.join(WRITERS_DIR);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create the folder", &dir, e))?;
        let id = uuid::Uuid::new_v4().to_string();
        let path = lock_path(data_dir, &id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create the writer lock", &path, e))?;
        let file = match FileExt::try_lock(&file) {
            Ok(()) => Some(file),
            Err(_) => None,
        };
        write_tx(conn, |conn| {
            conn.execute(
                "INSERT INTO writers (id, started_at) VALUES (?1, ?2)",
                params![id, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(WriterLease { id, path, file })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        // Closing the file releases the lock; the `writers` row goes at the
        // next open's sweep (a missing file reads as a writer that is gone).
        drop(self.file.take());
        let _ = fs::remove_file(&self.path);
    }
}

fn lock_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join(WRITERS_DIR).join(format!("{id}.lock"))
}

/// Whether the writer `id` still holds its lock.
fn is_alive(data_dir: &Path, id: &str) -> bool {
    let path = lock_path(data_dir, id);
    // Never create it: a missing file is a writer that has gone.
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        // Cannot tell (permissions, odd file system): leave its answers alone.
        Err(_) => return true,
    };
    match FileExt::try_lock(&file) {
        Err(TryLockError::WouldBlock) => true,
        // Taken: its owner is gone. Closing `file` drops the probe's lock.
        Ok(()) => false,
        // Locks unsupported here: no writer can hold one either, so the old
        // rule applies (the live writer, if any, moves to a new row).
        Err(TryLockError::Error(_)) => false,
    }
}

/// Marks `interrupted` the streaming answers of every writer that is gone
/// (and those written by builds that did not record a writer), and forgets
/// those writers. Answers of live writers, in this process or another, stay
/// streaming. Returns how many answers were recovered.
pub(crate) fn recover_dead_writers(
    conn: &Connection,
    data_dir: &Path,
    own: &WriterLease,
) -> Result<usize> {
    let mut candidates: Vec<Option<String>> = conn
        .prepare(
            "SELECT DISTINCT writer_id FROM messages WHERE status = 'streaming'
             UNION SELECT id FROM writers",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    candidates.retain(|id| id.as_deref() != Some(own.id()));
    let mut recovered = 0;
    for writer in candidates {
        if let Some(id) = &writer {
            if is_alive(data_dir, id) {
                continue;
            }
        }
        recovered += write_tx(conn, |conn| {
            let changed = conn.execute(
                "UPDATE messages SET status = 'interrupted'
                 WHERE status = 'streaming' AND writer_id IS ?1",
                [&writer],
            )?;
            conn.execute("DELETE FROM writers WHERE id IS ?1", [&writer])?;
            Ok(changed)
        })?;
        if let Some(id) = &writer {
            let _ = fs::remove_file(lock_path(data_dir, id));
        }
    }
    Ok(recovered)
}
