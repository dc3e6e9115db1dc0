//! Opening the store: health check, moving a damaged file aside, migrations and
//! recovery of answers that were streaming when their writer died.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use crate::error::{Result, StoreError};
use crate::schema;
use crate::time::now_ms;
use crate::types::OpenNotice;
use crate::writers::{self, WriterLease};

pub(crate) const DB_FILE: &str = "impchat.db";
const IMAGES_DIR: &str = "images";
const BACKUPS_DIR: &str = "backups";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Held by a process while it opens (and perhaps creates or migrates) the store.
const OPEN_LOCK_FILE: &str = "open.lock";
/// A migration with its backup can take a while on a large store.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(60);
/// Databases up to this size are fully `quick_check`ed at every open.
const QUICK_CHECK_MAX_BYTES: u64 = 128 << 20;

/// The conversation store: one SQLite database plus a content-addressed image folder.
///
/// Not `Sync`: share it behind a `Mutex`. Streaming answers get their own
/// connection through [`Store::stream_writer`], so they do not hold that lock.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) data_dir: PathBuf,
    pub(crate) db_path: PathBuf,
    /// Stamped on every answer this store sets streaming; see `writers.rs`.
    pub(crate) lease: Arc<WriterLease>,
}

enum Health {
    Damaged(String),
    Failed(StoreError),
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: database `impchat.db`, images
    /// under `images/`, pre-migration backups under `backups/`.
    ///
    /// A damaged or non-SQLite database file is renamed to
    /// `impchat.db.damaged-<unix ms>` (never deleted, together with its `-wal`
    /// and `-shm`), a fresh store is created and the returned notice says so.
    pub fn open(data_dir: &Path) -> Result<(Store, Option<OpenNotice>)> {
        for dir in [data_dir.to_path_buf(), data_dir.join(IMAGES_DIR)] {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create the folder", dir, e))?;
        }
        // Held until the store is open: another process's half-made database must be
        // neither migrated twice nor taken for a damaged one and moved aside.
        let _opening = hold_open_lock(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        let (conn, notice) = match open_checked(&db_path) {
            Ok(conn) => (conn, None),
            Err(Health::Failed(e)) => return Err(e),
            Err(Health::Damaged(reason)) => {
                let moved_to = move_aside(&db_path)?;
                let conn = open_checked(&db_path).map_err(|health| match health {
                    Health::Failed(e) => e,
                    Health::Damaged(reason) => {
                        StoreError::corrupt("a freshly created database", reason)
                    }
                })?;
                let message = format!(
                    "The conversation database was damaged ({reason}), so ImpChat started a new one. \
                     The old file was kept at {}; nothing was deleted.",
                    moved_to.display()
                );
                let notice = OpenNotice {
                    message,
                    moved_to,
                    reason,
                };
                (conn, Some(notice))
            }
        };
        schema::migrate(&conn, &db_path, &data_dir.join(BACKUPS_DIR))?;
        let lease = WriterLease::acquire(data_dir, &conn)?;
        writers::recover_dead_writers(&conn, data_dir, &lease)?;
        let store = Store {
            conn,
            data_dir: data_dir.to_path_buf(),
            db_path,
            lease: Arc::new(lease),
        };
        Ok((store, notice))
    }

    /// The folder the store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The SQLite file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(schema::user_version(&self.conn)?)
    }

    /// Runs SQLite's full `PRAGMA integrity_check`; `Ok(())` when the file is sound,
    /// otherwise the problems SQLite found.
    pub fn integrity_check(&self) -> Result<(), Vec<String>> {
        let rows = pragma_lines(&self.conn, "integrity_check").map_err(|e| vec![e.to_string()])?;
        if rows == ["ok"] {
            Ok(())
        } else {
            Err(rows)
        }
    }

    pub(crate) fn images_dir(&self) -> PathBuf {
        self.data_dir.join(IMAGES_DIR)
    }

    /// A second connection to the same database, configured like the first.
    pub(crate) fn new_connection(&self) -> Result<Connection> {
        let conn = Connection::open(&self.db_path)?;
        configure(&conn)?;
        Ok(conn)
    }
}

/// Takes `open.lock` in the data folder, waiting up to [`OPEN_LOCK_WAIT`] for another
/// process that is opening the store. `None` where the file system has no locks; the
/// migration's own write lock still keeps the schema steps apart there.
fn hold_open_lock(data_dir: &Path) -> Result<Option<fs::File>> {
    let path = data_dir.join(OPEN_LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("create the lock file", &path, e))?;
    let deadline = Instant::now() + OPEN_LOCK_WAIT;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(Some(file)),
            Err(fs4::TryLockError::Error(_)) => return Ok(None),
            Err(fs4::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StoreError::OpenBusy {
                    lock: path,
                    seconds: OPEN_LOCK_WAIT.as_secs(),
                })
            }
        }
    }
}

/// Opens the file and runs `quick_check`, refuses a database from a newer
/// app, then applies the connection settings (switching to WAL rewrites the
/// header, so that comes last).
fn open_checked(db_path: &Path) -> std::result::Result<Connection, Health> {
    check_header(db_path)?;
    let conn = Connection::open(db_path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    let problems = if needs_quick_check(db_path) {
        pragma_lines(&conn, "quick_check").map_err(classify)?
    } else {
        // Still reads the header and the schema, which catches a file that
        // is not a database or whose first pages are damaged.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(classify)?;
        vec!["ok".to_string()]
    };
    if problems != ["ok"] {
        let mut reason = problems.into_iter().take(3).collect::<Vec<_>>().join("; ");
        if reason.is_empty() {
            reason = "quick_check returned nothing".into();
        }
        return Err(Health::Damaged(reason));
    }
    let found = schema::user_version(&conn).map_err(classify)?;
    if found > schema::SCHEMA_VERSION {
        return Err(Health::Failed(StoreError::NewerSchema {
            path: db_path.to_path_buf(),
            found,
            supported: schema::SCHEMA_VERSION,
        }));
    }
    configure(&conn).map_err(|e| match e {
        StoreError::Sqlite(e) => classify(e),
        other => Health::Failed(other),
    })?;
    Ok(conn)
}

/// `quick_check` reads the whole file (about 13 s for a 650 MiB database with a
/// million messages on a slow laptop), so a large database gets it only when the
/// last session did not close cleanly (its WAL file was left behind). The full
/// check is always available as [`Store::integrity_check`].
fn needs_quick_check(db_path: &Path) -> bool {
    let size = |path: &Path| fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut wal = db_path.as_os_str().to_os_string();
    wal.push("-wal");
    size(db_path) <= QUICK_CHECK_MAX_BYTES || size(Path::new(&wal)) > 0
}

/// Refuses a file that is not SQLite before SQLite touches it: given a garbage
/// main file SQLite may delete a `-wal` beside it, and that must be kept too.
fn check_header(db_path: &Path) -> std::result::Result<(), Health> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    let mut file = match fs::File::open(db_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Health::Failed(StoreError::io(
                "open the database",
                db_path,
                e,
            )))
        }
    };
    let mut header = Vec::with_capacity(MAGIC.len());
    std::io::Read::by_ref(&mut file)
        .take(MAGIC.len() as u64)
        .read_to_end(&mut header)
        .map_err(|e| Health::Failed(StoreError::io("read the database", db_path, e)))?;
    if header.is_empty() || header == MAGIC {
        Ok(())
    } else {
        Err(Health::Damaged("the file is not an SQLite database".into()))
    }
}

fn classify(e: rusqlite::Error) -> Health {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            Health::Damaged(e.to_string())
        }
        _ => Health::Failed(StoreError::Sqlite(e)),
    }
}

/// WAL keeps readers and the streaming writer out of each other's way;
/// `synchronous = NORMAL` is crash-safe in WAL mode (only a power cut can lose
/// the last commits, never corrupt the file).
pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::corrupt(
            "the database journal",
            format!("SQLite refused WAL mode and stayed in {mode} mode"),
        ));
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")?;
    Ok(())
}

fn pragma_lines(conn: &Connection, pragma: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA {pragma}"))?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    rows.collect()
}

/// Renames the database and its WAL/shared-memory companions out of the way.
fn move_aside(db_path: &Path) -> Result<PathBuf> {
    let stamp = now_ms();
    let target = |suffix: &str| {
        let mut name = db_path.as_os_str().to_os_string();
        name.push(format!(".damaged-{stamp}{suffix}"));
        PathBuf::from(name)
    };
    let moved_to = target("");
    fs::rename(db_path, &moved_to)
        .map_err(|e| StoreError::io("move the damaged database aside", db_path, e))?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = db_path.as_os_str().to_os_string();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        if companion.exists() {
            fs::rename(&companion, target(suffix))
                .map_err(|e| StoreError::io("move the damaged database aside", &companion, e))?;
        }
    }
    Ok(moved_to)
}

/// Runs `f` inside `BEGIN IMMEDIATE ... COMMIT` (taking the write lock up front,
/// so a concurrent writer waits instead of failing half-way), rolling back on error.
pub(crate) fn write_tx<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let outcome = f(conn).and_then(|value| {
        conn.execute_batch("COMMIT")?;
        Ok(value)
    });
    if outcome.is_err() && !conn.is_autocommit() {
        // The original error matters; a failed rollback still commits nothing.
        let _ = conn.execute_batch("ROLLBACK");
    }
    outcome
}
