//! A damaged database is moved aside (never deleted), the user is told, and a
//! fresh, usable store takes its place.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use impchat_store::{Store, StoreError};

fn assert_recovered(dir: &Path, damaged: &[u8]) -> PathBuf {
    let (store, notice) = Store::open(dir).expect("a damaged file must not stop the app");
    let notice = notice.expect("the user must be told");
    assert!(notice.moved_to.starts_with(dir));
    assert!(
        notice
            .moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("impchat.db.damaged-"),
        "{:?}",
        notice.moved_to
    );
    assert_eq!(
        fs::read(&notice.moved_to).unwrap(),
        damaged,
        "the old file is kept byte for byte"
    );
    assert!(
        notice
            .message
            .contains(&notice.moved_to.display().to_string()),
        "{}",
        notice.message
    );
    assert!(!notice.reason.is_empty());

    assert!(store.list_conversations(true).unwrap().is_empty());
    let chat = store.create_conversation(Some("after recovery")).unwrap();
    store
        .add_user_message(&chat.id, None, "still works", &[])
        .unwrap();
    drop(store);
    let store = common::open(dir);
    assert_eq!(store.list_conversations(false).unwrap().len(), 1);
    assert_eq!(store.integrity_check(), Ok(()));
    notice.moved_to
}

#[test]
fn a_truncated_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    for i in 0..200 {
        let chat = store
            .create_conversation(Some(&format!("chat {i}")))
            .unwrap();
        store
            .add_user_message(&chat.id, None, &"lorem ipsum dolor ".repeat(40), &[])
            .unwrap();
    }
    drop(store);
    let db = dir.path().join("impchat.db");
    let bytes = fs::read(&db).unwrap();
    assert!(
        bytes.len() > 100_000,
        "the test needs a multi-page database"
    );
    let truncated = &bytes[..bytes.len() / 2];
    fs::write(&db, truncated).unwrap();
    assert_recovered(dir.path(), truncated);
}

#[test]
fn random_bytes_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let noise: Vec<u8> = (0..16_384)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(dir.path().join("impchat.db"), &noise).unwrap();
    assert_recovered(dir.path(), &noise);
}

#[test]
fn a_json_file_named_impchat_db_is_moved_aside_with_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let json = br#"{"conversations": [{"title": "not a database"}]}"#;
    fs::write(dir.path().join("impchat.db"), json).unwrap();
    fs::write(dir.path().join("impchat.db-wal"), b"stale wal").unwrap();
    let moved = assert_recovered(dir.path(), json);
    let mut wal = moved.into_os_string();
    wal.push("-wal");
    let listing: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        fs::read(PathBuf::from(&wal)).ok().as_deref(),
        Some(&b"stale wal"[..]),
        "{listing:?}"
    );
}

#[test]
fn a_healthy_database_opens_without_notice_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(Some("keep me")).unwrap();
    drop(store);
    let store = common::open(dir.path());
    assert_eq!(
        store.conversation_summary(&chat.id).unwrap().title,
        "keep me"
    );
    let damaged: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
        .collect();
    assert!(damaged.is_empty());
}

#[test]
fn an_unwritable_data_folder_is_an_error_not_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("occupied");
    fs::write(&file, b"a file where the data folder should be").unwrap();
    let err = Store::open(&file)
        .err()
        .expect("cannot create a folder over a file");
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("writable"), "{err}");
    assert_eq!(
        fs::read(&file).unwrap(),
        b"a file where the data folder should be"
    );
}
