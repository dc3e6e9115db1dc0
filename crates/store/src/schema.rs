//! Schema versions and the steps between them. `PRAGMA user_version` holds the
//! version; each step runs in its own transaction together with the version bump,
//! so a failed step leaves the database exactly at the previous version.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, MAIN_DB};

use crate::error::{Result, StoreError};
use crate::store::write_tx;
use crate::time::now_ms;

/// Version 1: conversations, the message tree, images and their join table.
/// `seq` columns are explicit rowid aliases so that full-text indexes keyed on
/// them survive `VACUUM`.
const V1: &str = "
CREATE TABLE conversations (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    auto_title      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    pinned          INTEGER NOT NULL DEFAULT 0,
    model_id        TEXT,
    deleted_at      INTEGER,
    system_prompt   TEXT,
    settings_json   TEXT,
    current_leaf_id TEXT
);
CREATE INDEX conversations_order ON conversations(pinned DESC, updated_at DESC);

CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id       TEXT REFERENCES messages(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL
                    CHECK (status IN ('streaming', 'complete', 'stopped', 'interrupted', 'error')),
    error           TEXT,
    created_at      INTEGER NOT NULL,
    stats_json      TEXT,
    provenance_json TEXT
);
CREATE INDEX messages_siblings ON messages(conversation_id, parent_id, created_at);
CREATE INDEX messages_parent ON messages(parent_id);
CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';

CREATE TABLE images (
    sha256     TEXT PRIMARY KEY,
    mime       TEXT NOT NULL,
    ext        TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    touched_at INTEGER NOT NULL
);

CREATE TABLE message_images (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    sha256     TEXT NOT NULL REFERENCES images(sha256),
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_images_sha ON message_images(sha256);
";

/// Version 2: full-text search over message text and titles (external-content
/// FTS5 tables kept in step by triggers), filled from existing rows.
const V2: &str = "
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content = 'messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.seq, new.content);
END;
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');

CREATE VIRTUAL TABLE conversations_fts USING fts5(
    title, content = 'conversations', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts(rowid, title) VALUES (new.seq, new.title);
END;
CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
    INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
END;
CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
    INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.seq, old.title);
    INSERT INTO conversations_fts(rowid, title) VALUES (new.seq, new.title);
END;
INSERT INTO conversations_fts(conversations_fts) VALUES ('rebuild');
";

/// Version 3: remember where an imported conversation came from, so importing
/// the same archive twice is detected.
const V3: &str = "
ALTER TABLE conversations ADD COLUMN origin_id TEXT;
CREATE INDEX conversations_origin ON conversations(origin_id) WHERE origin_id IS NOT NULL;
";

/// Version 4: which writer (one open store, see `writers.rs`) sets each answer
/// streaming, so an open recovers only the answers of writers that are gone.
const V4: &str = "
ALTER TABLE messages ADD COLUMN writer_id TEXT;
CREATE TABLE writers (
    id         TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL
);
";

/// `STEPS[i]` takes the database from version `i` to `i + 1`.
const STEPS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the database to `SCHEMA_VERSION`, backing it up first when it already
/// holds data. Returns the backup's path when one was made.
///
/// Every step takes the write lock (`BEGIN IMMEDIATE`, waiting out the busy
/// timeout) before it reads the version, so processes opening the same store at
/// once (the app and `impchat chat --save`, or several first opens of a new
/// store) each see the version the others left and never apply a step twice.
pub(crate) fn migrate(
    conn: &Connection,
    db_path: &Path,
    backups_dir: &Path,
) -> Result<Option<PathBuf>> {
    let mut backup_path: Option<PathBuf> = None;
    // The version the first step found: only a database that held data then is backed up.
    let mut first_found: Option<i64> = None;
    loop {
        let done = write_tx(conn, |conn| {
            let found = user_version(conn)?;
            let first = *first_found.get_or_insert(found);
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: db_path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found == SCHEMA_VERSION {
                return Ok(true);
            }
            // Taken under the write lock, so it is the database as it was
            // before this process or any other changed its schema.
            if first > 0 && backup_path.is_none() {
                backup_path = Some(backup(db_path, backups_dir, found)?);
            }
            let to = found + 1;
            let Some(step) = usize::try_from(found).ok().and_then(|at| STEPS.get(at)) else {
                return Err(StoreError::corrupt(
                    "the database's schema version",
                    format!("{found} is not a version ImpChat ever wrote"),
                ));
            };
            conn.execute_batch(step)
                .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {to}")))
                .map_err(|source| StoreError::Migration {
                    from: found,
                    to,
                    backup: backup_path.clone(),
                    source,
                })?;
            Ok(false)
        })?;
        if done {
            return Ok(backup_path);
        }
    }
}

/// Copies the database with SQLite's online backup API, through a connection of
/// its own: the migrating one holds the write lock, and in WAL mode a reader
/// beside it sees exactly the committed database from before the migration.
fn backup(db_path: &Path, backups_dir: &Path, version: i64) -> Result<PathBuf> {
    std::fs::create_dir_all(backups_dir)
        .map_err(|e| StoreError::io("create the backup folder", backups_dir, e))?;
    let path = backups_dir.join(format!("impchat-v{version}-{}.db", now_ms()));
    let source = Connection::open(db_path)?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    source.backup(MAIN_DB, &path, None::<fn(rusqlite::backup::Progress)>)?;
    // The copy inherits WAL mode; make it one self-contained file.
    let copy = Connection::open(&path)?;
    let _: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    Ok(path)
}
