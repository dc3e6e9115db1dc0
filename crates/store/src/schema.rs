//! Schema versions and the steps between them. `PRAGMA user_version` holds the
//! version; each step runs in its own transaction together with the version bump,
//! so a failed step leaves the database exactly at the previous version.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, MAIN_DB};

use crate::error::{Result, StoreError};
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

/// `STEPS[i]` takes the database from version `i` to `i + 1`.
const STEPS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Brings the database to `SCHEMA_VERSION`, backing it up first when it already
/// holds data. Returns the backup's path when one was made.
pub(crate) fn migrate(
    conn: &Connection,
    db_path: &Path,
    backups_dir: &Path,
) -> Result<Option<PathBuf>> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: db_path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(None);
    }
    let backup = if found > 0 {
        Some(backup(conn, backups_dir, found)?)
    } else {
        None
    };
    for (from, step) in STEPS.iter().enumerate().skip(found as usize) {
        let from = from as i64;
        let to = from + 1;
        run_step(conn, step, to).map_err(|source| StoreError::Migration {
            from,
            to,
            backup: backup.clone(),
            source,
        })?;
    }
    Ok(backup)
}

fn run_step(conn: &Connection, sql: &str, to: i64) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = conn
        .execute_batch(sql)
        .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {to}")));
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            // The step's error is the one worth reporting; a failed rollback
            // leaves nothing committed either.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Copies the live database with SQLite's online backup API.
fn backup(conn: &Connection, backups_dir: &Path, version: i64) -> Result<PathBuf> {
    std::fs::create_dir_all(backups_dir)
        .map_err(|e| StoreError::io("create the backup folder", backups_dir, e))?;
    let path = backups_dir.join(format!("impchat-v{version}-{}.db", now_ms()));
    conn.backup(MAIN_DB, &path, None::<fn(rusqlite::backup::Progress)>)?;
    // The copy inherits WAL mode; make it one self-contained file.
    let copy = Connection::open(&path)?;
    let _: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    Ok(path)
}
