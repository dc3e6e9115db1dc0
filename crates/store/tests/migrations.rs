//! Databases from every earlier schema version open, keep their data, become
//! searchable and are backed up before the upgrade.

use std::fs;
use std::path::{Path, PathBuf};

use impchat_store::{MessageStatus, Role, Store, StoreError, SCHEMA_VERSION};
use rusqlite::Connection;

const V1: &str = include_str!("fixtures/schema_v1.sql");
const V2: &str = include_str!("fixtures/schema_v2.sql");
const V3: &str = include_str!("fixtures/schema_v3.sql");

/// A database at an old version holding one conversation with two answers to
/// one question (the second is active) and one answer left streaming.
fn old_database(dir: &Path, ddl: &str) -> PathBuf {
    let path = dir.join("impchat.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(ddl).unwrap();
    conn.execute_batch(
        "INSERT INTO conversations (id, title, created_at, updated_at, pinned, current_leaf_id)
             VALUES ('c1', 'Holiday photos', 1000, 2000, 1, 'a2');
         INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at)
             VALUES ('q1', 'c1', NULL, 'user', 'Where was this lighthouse photographed?', 'complete', 1000),
                    ('a1', 'c1', 'q1', 'assistant', 'Probably Brittany.', 'complete', 1100),
                    ('a2', 'c1', 'q1', 'assistant', 'It looks like Cornwall.', 'complete', 1200),
                    ('a3', 'c1', 'q1', 'assistant', 'It might', 'streaming', 1300);
         INSERT INTO images (sha256, mime, ext, width, height, bytes, touched_at)
             VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'image/png', 'png', 4, 3, 99, 1000);
         INSERT INTO message_images (message_id, position, sha256)
             VALUES ('q1', 0, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');",
    )
    .unwrap();
    path
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir.join("backups")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_migrated(dir: &Path, from: i64) {
    let (store, notice) = Store::open(dir).unwrap();
    assert_eq!(notice, None);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);

    let chat = store.get_conversation("c1").unwrap();
    assert_eq!(chat.summary.title, "Holiday photos");
    assert!(chat.summary.pinned);
    let texts: Vec<&str> = chat.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Where was this lighthouse photographed?",
            "It looks like Cornwall."
        ]
    );
    assert_eq!(chat.messages[1].sibling_ids, ["a1", "a2", "a3"]);
    assert_eq!(chat.messages[0].role, Role::User);
    assert_eq!(chat.messages[0].images.len(), 1);
    assert_eq!(
        (
            chat.messages[0].images[0].width,
            chat.messages[0].images[0].height
        ),
        (4, 3)
    );
    assert_eq!(
        store.message("a3").unwrap().status,
        MessageStatus::Interrupted
    );

    // Old text is indexed, and new text is indexed as it is written.
    let hits = store.search("lighthouse", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id.as_deref(), Some("q1"));
    assert_eq!(store.search("holiday", 10).unwrap()[0].message_id, None);
    store
        .add_user_message("c1", Some("a2"), "And the harbour?", &[])
        .unwrap();
    assert_eq!(store.search("harbour", 10).unwrap().len(), 1);

    let backups = backups(dir);
    assert_eq!(backups.len(), 1, "one backup before the upgrade");
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(&format!("impchat-v{from}-")), "{name}");
    let backup = Connection::open(&backups[0]).unwrap();
    let version: i64 = backup
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, from, "the backup is the database as it was");
    let messages: i64 = backup
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(messages, 4);
    drop(store);

    // Opening again migrates nothing and backs up nothing.
    let (store, _) = Store::open(dir).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(self::backups(dir).len(), 1);
}

#[test]
fn schema_version_1_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    old_database(dir.path(), V1);
    assert_migrated(dir.path(), 1);
}

#[test]
fn schema_version_2_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    old_database(dir.path(), V2);
    assert_migrated(dir.path(), 2);
}

#[test]
fn schema_version_3_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    old_database(dir.path(), V3);
    assert_migrated(dir.path(), 3);
}

#[test]
fn the_fixtures_cover_every_earlier_version() {
    assert_eq!(
        SCHEMA_VERSION, 4,
        "add a fixture and a test for the version you just replaced"
    );
}

#[test]
fn a_new_store_starts_at_the_latest_version_without_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(backups(dir.path()).is_empty());
}

#[test]
fn a_failed_step_leaves_the_previous_version_and_names_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(dir.path(), V2);
    // Something (a bad downgrade, a hand edit) already added the column step 3 adds.
    Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE conversations ADD COLUMN origin_id TEXT")
        .unwrap();
    let err = Store::open(dir.path()).err().expect("the step must fail");
    match &err {
        StoreError::Migration {
            from, to, backup, ..
        } => {
            assert_eq!((*from, *to), (2, 3));
            assert!(backup.as_ref().is_some_and(|b| b.exists()));
        }
        other => panic!("expected a migration error, got {other}"),
    }
    assert!(
        err.to_string().contains("backup") || err.to_string().contains("copy made before"),
        "{err}"
    );
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let titles: i64 = conn
        .query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(titles, 1);
}

#[test]
fn a_database_from_a_newer_app_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(dir.path(), V2);
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let before = fs::read(&path).unwrap();
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Update ImpChat"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(backups(dir.path()).is_empty());
}
