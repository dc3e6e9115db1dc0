//! Several stores open on one folder at once (the app and `impchat chat --save`
//! share it by design): an open recovers only the answers of writers that are
//! gone, a writer whose row was taken anyway goes on in a new row, and first
//! opens of a new store do not race.

mod common;

use std::path::Path;
use std::sync::{Arc, Barrier};

use impchat_store::{Finish, MessageStatus, Store, SCHEMA_VERSION};
use rusqlite::Connection;

/// A conversation with one question and a streaming answer under it.
fn question_and_answer(store: &Store) -> (String, String, String) {
    let chat = store.create_conversation(Some("shared")).unwrap();
    let question = store
        .add_user_message(&chat.id, None, "What is in this picture?", &[])
        .unwrap();
    let answer = store.begin_assistant(&chat.id, &question).unwrap();
    (chat.id, question, answer)
}

#[test]
fn opening_the_store_leaves_a_live_writers_answer_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let writer_store = common::open(dir.path());
    let (chat, _, answer) = question_and_answer(&writer_store);
    let mut writer = writer_store.stream_writer(&answer).unwrap();
    writer.append("A cat ").unwrap();
    writer.flush().unwrap();

    // A second process (the app, or another `chat --save`) opens the store.
    let other = common::open(dir.path());
    assert_eq!(
        other.message(&answer).unwrap().status,
        MessageStatus::Streaming,
        "the answer of a live writer must not be marked interrupted"
    );

    writer.append("on a mat.").unwrap();
    let ended_in = writer.finish(&Finish::complete(None, None)).unwrap();
    assert_eq!(ended_in, answer, "a live writer keeps its row");
    let message = other.message(&answer).unwrap();
    assert_eq!(message.content, "A cat on a mat.");
    assert_eq!(message.status, MessageStatus::Complete);
    let branch = other.get_conversation(&chat).unwrap().messages;
    assert_eq!(branch.len(), 2);
}

#[test]
fn an_answer_begun_but_not_yet_streamed_survives_another_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (_, _, answer) = question_and_answer(&store);
    drop(common::open(dir.path()));
    assert_eq!(
        store.message(&answer).unwrap().status,
        MessageStatus::Streaming
    );
    let mut writer = store.stream_writer(&answer).unwrap();
    writer.append("still mine").unwrap();
    assert_eq!(
        writer.finish(&Finish::complete(None, None)).unwrap(),
        answer
    );
}

#[test]
fn answers_of_writers_that_are_gone_are_interrupted_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, question, recorded) = question_and_answer(&store);
    let legacy = store.begin_assistant(&chat, &question).unwrap();
    drop(store);
    let conn = Connection::open(dir.path().join("impchat.db")).unwrap();
    // A writer whose lock file is gone, and a row from a build that recorded no writer.
    conn.execute(
        "UPDATE messages SET writer_id = 'b7c1e9a0-dead-4000-8000-000000000000' WHERE id = ?1",
        [&recorded],
    )
    .unwrap();
    conn.execute(
        "UPDATE messages SET writer_id = NULL WHERE id = ?1",
        [&legacy],
    )
    .unwrap();
    drop(conn);
    let store = common::open(dir.path());
    for id in [&recorded, &legacy] {
        assert_eq!(
            store.message(id).unwrap().status,
            MessageStatus::Interrupted
        );
    }
}

#[test]
fn a_dropped_store_leaves_no_lock_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        drop(common::open(dir.path()));
    }
    let store = common::open(dir.path());
    let locks: Vec<_> = std::fs::read_dir(dir.path().join("writers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(locks.len(), 1, "only the open store's lock: {locks:?}");
    drop(store);
    let left = std::fs::read_dir(dir.path().join("writers"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[test]
fn a_writer_whose_row_was_taken_goes_on_in_a_new_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, question, answer) = question_and_answer(&store);
    let mut writer = store.stream_writer(&answer).unwrap();
    writer.append("The first half, ").unwrap();
    writer.flush().unwrap();

    // An older ImpChat opening the store marks every streaming row interrupted.
    Connection::open(dir.path().join("impchat.db"))
        .unwrap()
        .execute(
            "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'",
            [],
        )
        .unwrap();

    writer.append("and the second half.").unwrap();
    let ended_in = writer
        .finish(&Finish::complete(Some(serde_json::json!({"n": 1})), None))
        .unwrap();
    assert_ne!(ended_in, answer, "the rest goes to a new row");

    let taken = store.message(&answer).unwrap();
    assert_eq!(
        taken.content, "The first half, ",
        "what was committed stays"
    );
    assert_eq!(taken.status, MessageStatus::Interrupted);
    let moved = store.message(&ended_in).unwrap();
    assert_eq!(moved.content, "The first half, and the second half.");
    assert_eq!(moved.status, MessageStatus::Complete);
    assert_eq!(moved.stats, Some(serde_json::json!({"n": 1})));
    assert_eq!(moved.parent_id.as_deref(), Some(question.as_str()));
    assert_eq!(moved.sibling_ids, [answer.clone(), ended_in.clone()]);
    let branch = store.get_conversation(&chat).unwrap().messages;
    assert_eq!(
        branch.last().map(|m| m.id.as_str()),
        Some(ended_in.as_str()),
        "the new row is the active branch"
    );

    // The session goes on under the new row.
    let next = store
        .add_user_message(&chat, Some(&ended_in), "And then?", &[])
        .unwrap();
    assert!(store.begin_assistant(&chat, &next).is_ok());
}

#[test]
fn a_taken_writer_dropped_without_new_text_adds_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, _, answer) = question_and_answer(&store);
    let mut writer = store.stream_writer(&answer).unwrap();
    writer.append("partial").unwrap();
    writer.flush().unwrap();
    store
        .finish(&answer, &Finish::failed("taken by someone else"))
        .unwrap();
    drop(writer);
    let tree = store.message_tree(&chat).unwrap();
    assert_eq!(tree.len(), 2, "question and the one answer");
}

fn open_at_once(dir: &Path, openers: usize) -> Vec<Result<Store, String>> {
    let barrier = Arc::new(Barrier::new(openers));
    let handles: Vec<_> = (0..openers)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let dir = dir.to_path_buf();
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&dir)
                    .map(|(store, _)| store)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn simultaneous_first_opens_of_a_new_store_all_succeed() {
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let stores = open_at_once(dir.path(), 6);
        for (i, store) in stores.iter().enumerate() {
            match store {
                Ok(store) => assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION),
                Err(e) => panic!("round {round}: opener {i} failed: {e}"),
            }
        }
        let store = stores.into_iter().next().unwrap().unwrap();
        assert_eq!(store.integrity_check(), Ok(()));
    }
}

#[test]
fn simultaneous_opens_of_an_old_store_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("impchat.db")).unwrap();
    conn.execute_batch(include_str!("fixtures/schema_v2.sql"))
        .unwrap();
    conn.execute_batch(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'old', 1, 1)",
    )
    .unwrap();
    drop(conn);
    let stores = open_at_once(dir.path(), 5);
    for store in &stores {
        let store = store.as_ref().unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.conversation_summary("c1").unwrap().title, "old");
    }
    let backups = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .count();
    assert_eq!(backups, 1, "backed up once, before the one migration");
}
