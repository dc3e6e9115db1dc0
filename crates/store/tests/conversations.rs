mod common;

use std::time::Duration;

use impchat_store::{Finish, FlushPolicy, MessageStatus, Role, Store, StoreError, DEFAULT_TITLE};
use serde_json::json;

#[test]
fn list_is_pinned_first_then_newest_and_hides_the_trash() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let old = store.create_conversation(Some("old")).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let middle = store.create_conversation(Some("middle")).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let new = store.create_conversation(Some("new")).unwrap();
    store.pin_conversation(&old.id, true).unwrap();
    store.delete_conversation(&middle.id).unwrap();

    let ids = |list: Vec<impchat_store::ConversationSummary>| {
        list.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_conversations(false).unwrap()),
        [old.id.clone(), new.id.clone()]
    );
    let with_trash = store.list_conversations(true).unwrap();
    assert_eq!(with_trash.len(), 3);
    assert!(with_trash.iter().any(|c| c.id == middle.id && c.deleted));

    store.restore_conversation(&middle.id).unwrap();
    assert_eq!(
        ids(store.list_conversations(false).unwrap()),
        [old.id.clone(), new.id.clone(), middle.id.clone()]
    );

    // Activity moves a conversation up.
    std::thread::sleep(Duration::from_millis(5));
    store
        .add_user_message(&middle.id, None, "hello", &[])
        .unwrap();
    assert_eq!(
        ids(store.list_conversations(false).unwrap()),
        [old.id, middle.id, new.id]
    );
}

#[test]
fn first_user_message_names_an_untitled_conversation_but_not_a_renamed_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let untitled = store.create_conversation(None).unwrap();
    assert_eq!(untitled.title, DEFAULT_TITLE);
    store
        .add_user_message(
            &untitled.id,
            None,
            "\n  What breed is this dog?\nsecond line",
            &[],
        )
        .unwrap();
    assert_eq!(
        store.conversation_summary(&untitled.id).unwrap().title,
        "What breed is this dog?"
    );

    let renamed = store.create_conversation(None).unwrap();
    store.rename_conversation(&renamed.id, "Dogs").unwrap();
    store
        .add_user_message(&renamed.id, None, "What breed?", &[])
        .unwrap();
    assert_eq!(
        store.conversation_summary(&renamed.id).unwrap().title,
        "Dogs"
    );
}

#[test]
fn settings_prompt_and_model_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(Some("c")).unwrap();
    let settings = json!({"temperature": 0.7, "topP": null, "topK": 40, "maxTokens": 512,
                          "repetitionPenalty": 1.1, "seed": null});
    store
        .set_chat_settings(&chat.id, Some("Be brief."), Some(&settings))
        .unwrap();
    store
        .set_model_id(&chat.id, Some("imp-v1.5-3b-phi2"))
        .unwrap();
    drop(store);

    let store = common::open(dir.path());
    let loaded = store.get_conversation(&chat.id).unwrap();
    assert_eq!(loaded.system_prompt.as_deref(), Some("Be brief."));
    assert_eq!(loaded.settings, Some(settings));
    assert_eq!(loaded.summary.model_id.as_deref(), Some("imp-v1.5-3b-phi2"));

    store.set_chat_settings(&chat.id, None, None).unwrap();
    let cleared = store.get_conversation(&chat.id).unwrap();
    assert_eq!((cleared.system_prompt, cleared.settings), (None, None));
}

#[test]
fn edits_and_regenerations_are_siblings_and_branches_can_be_switched() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(None).unwrap();
    let q1 = store
        .add_user_message(&chat.id, None, "question one", &[])
        .unwrap();
    let a1 = store
        .add_message(&chat.id, Some(&q1), Role::Assistant, "answer one", &[])
        .unwrap();
    let a1b = store.begin_assistant(&chat.id, &q1).unwrap();
    store.append(&a1b, "answer one, take two").unwrap();
    store
        .finish(
            &a1b,
            &Finish::complete(
                Some(json!({"generatedTokens": 5})),
                Some(json!({"seed": 7})),
            ),
        )
        .unwrap();
    let q2 = store
        .add_user_message(&chat.id, Some(&a1b), "question two", &[])
        .unwrap();
    // Editing the first question starts a new branch from the root.
    let q1_edit = store
        .add_user_message(&chat.id, None, "question one, edited", &[])
        .unwrap();

    let conversation = store.get_conversation(&chat.id).unwrap();
    let texts: Vec<&str> = conversation
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(texts, ["question one, edited"]);
    assert_eq!(
        conversation.messages[0].sibling_ids,
        [q1.clone(), q1_edit.clone()]
    );

    let back = store.switch_branch(&chat.id, &q1).unwrap();
    let ids: Vec<&str> = back.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [q1.as_str(), a1b.as_str(), q2.as_str()],
        "follows the newest version down to a leaf"
    );
    let answer = &back.messages[1];
    assert_eq!(answer.sibling_ids, [a1.clone(), a1b.clone()]);
    assert_eq!(answer.parent_id.as_deref(), Some(q1.as_str()));
    assert_eq!(answer.stats, Some(json!({"generatedTokens": 5})));
    assert_eq!(answer.provenance, Some(json!({"seed": 7})));
    assert_eq!(
        store.current_leaf(&chat.id).unwrap().as_deref(),
        Some(q2.as_str())
    );

    let first_answer = store.switch_branch(&chat.id, &a1).unwrap();
    assert_eq!(
        first_answer.messages.last().map(|m| m.content.as_str()),
        Some("answer one")
    );

    let tree = store.message_tree(&chat.id).unwrap();
    assert_eq!(tree.len(), 5);
}

#[test]
fn messages_cannot_cross_conversations_or_reference_unknown_things() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let a = store.create_conversation(None).unwrap();
    let b = store.create_conversation(None).unwrap();
    let in_a = store.add_user_message(&a.id, None, "hi", &[]).unwrap();
    assert!(matches!(
        store.add_user_message(&b.id, Some(&in_a), "hi", &[]),
        Err(StoreError::WrongConversation { .. })
    ));
    assert!(matches!(
        store.add_user_message("no-such-chat", None, "hi", &[]),
        Err(StoreError::ConversationNotFound(_))
    ));
    assert!(matches!(
        store.add_user_message(&a.id, Some("no-such-message"), "hi", &[]),
        Err(StoreError::MessageNotFound(_))
    ));
    let missing_image = "0".repeat(64);
    let err = store
        .add_user_message(
            &a.id,
            Some(&in_a),
            "look",
            std::slice::from_ref(&missing_image),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::ImageMissing(ref sha) if *sha == missing_image));
    assert!(err.to_string().contains("add the image again"), "{err}");
    // A failed insert leaves no half-written message behind.
    assert_eq!(store.message_tree(&a.id).unwrap().len(), 1);
    assert!(matches!(
        store.get_conversation("nope"),
        Err(StoreError::ConversationNotFound(_))
    ));
    assert!(matches!(
        store.rename_conversation("nope", "x"),
        Err(StoreError::ConversationNotFound(_))
    ));
}

#[test]
fn streaming_answers_survive_reopen_and_stale_ones_become_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(None).unwrap();
    let question = store
        .add_user_message(&chat.id, None, "tell me a story", &[])
        .unwrap();
    let answer = store.begin_assistant(&chat.id, &question).unwrap();
    assert_eq!(
        store.message(&answer).unwrap().status,
        MessageStatus::Streaming
    );

    let policy = FlushPolicy {
        max_delay: Duration::from_secs(3600),
        max_chars: 10,
    };
    let mut writer = store.stream_writer_with(&answer, policy).unwrap();
    assert!(!writer.append("Once ").unwrap(), "5 chars stay buffered");
    assert_eq!(store.message(&answer).unwrap().content, "");
    assert!(
        writer.append("upon ✨ a").unwrap(),
        "reaching 10 chars flushes"
    );
    assert_eq!(store.message(&answer).unwrap().content, "Once upon ✨ a");
    assert_eq!(writer.committed_chars(), 13);
    writer.append(" time").unwrap();
    // The app dies here: the writer is leaked, never finished or dropped.
    std::mem::forget(writer);
    drop(store);
    // A leaked writer still holds its lock, so it looks alive (as it must: another
    // process cannot tell a stuck writer from a slow one). A dead process's lock goes
    // with it (crash.rs kills one for real); here its lock file goes instead.
    for lock in std::fs::read_dir(dir.path().join("writers")).unwrap() {
        std::fs::remove_file(lock.unwrap().path()).unwrap();
    }

    let store = common::open(dir.path());
    let message = store.message(&answer).unwrap();
    assert_eq!(message.status, MessageStatus::Interrupted);
    assert_eq!(message.content, "Once upon ✨ a");
    assert!(matches!(
        store.append(&answer, "more"),
        Err(StoreError::NotStreaming { .. })
    ));

    // "Continue" reopens it and appends.
    store.continue_answer(&answer).unwrap();
    let mut writer = store.stream_writer(&answer).unwrap();
    writer.append(" time.").unwrap();
    writer.finish(&Finish::stopped(None, None)).unwrap();
    let message = store.message(&answer).unwrap();
    assert_eq!(
        (message.content.as_str(), message.status),
        ("Once upon ✨ a time.", MessageStatus::Stopped)
    );
    assert!(matches!(
        store.continue_answer(&question),
        Err(StoreError::NotAnAnswer(_))
    ));
}

#[test]
fn a_dropped_writer_saves_its_buffer_and_marks_the_answer_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(None).unwrap();
    let question = store.add_user_message(&chat.id, None, "q", &[]).unwrap();
    let answer = store.begin_assistant(&chat.id, &question).unwrap();
    let mut writer = store.stream_writer(&answer).unwrap();
    writer.append("partial").unwrap();
    drop(writer);
    let message = store.message(&answer).unwrap();
    assert_eq!(
        (message.content.as_str(), message.status),
        ("partial", MessageStatus::Interrupted)
    );
}

#[test]
fn errors_are_recorded_and_streaming_is_not_a_final_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let chat = store.create_conversation(None).unwrap();
    let question = store.add_user_message(&chat.id, None, "q", &[]).unwrap();
    let answer = store.begin_assistant(&chat.id, &question).unwrap();
    let not_final = Finish {
        status: MessageStatus::Streaming,
        error: None,
        stats: None,
        provenance: None,
    };
    assert!(matches!(
        store.finish(&answer, &not_final),
        Err(StoreError::NotFinal(_))
    ));
    store
        .finish(&answer, &Finish::failed("out of memory"))
        .unwrap();
    let message = store.message(&answer).unwrap();
    assert_eq!(message.status, MessageStatus::Error);
    assert_eq!(message.error.as_deref(), Some("out of memory"));
    assert!(matches!(
        store.finish(&answer, &Finish::complete(None, None)),
        Err(StoreError::NotStreaming { .. })
    ));
}

#[test]
fn images_are_stored_once_with_thumbnails_and_collected_after_purge() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let bytes = common::png(300, 200, 1);
    let first = store.put_image(&bytes).unwrap();
    let second = store.put_image(&bytes).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        (first.width, first.height, first.mime.as_str()),
        (300, 200, "image/png")
    );
    assert_eq!(first.bytes, bytes.len() as u64);

    let original = store.image_path(&first.sha256, false).unwrap();
    assert!(original.starts_with(dir.path().join("images").join(&first.sha256[..2])));
    assert_eq!(std::fs::read(&original).unwrap(), bytes);
    let files: Vec<_> = std::fs::read_dir(original.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(
        files.len(),
        2,
        "one original and one thumbnail, no temp files"
    );
    let thumbnail =
        image::load_from_memory(&store.read_image(&first.sha256, true).unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 171));

    let chat = store.create_conversation(None).unwrap();
    let other = store.put_image(&common::png(10, 10, 2)).unwrap();
    let message = store
        .add_user_message(
            &chat.id,
            None,
            "two pictures",
            &[other.sha256.clone(), first.sha256.clone()],
        )
        .unwrap();
    assert_eq!(
        store.message(&message).unwrap().images,
        [other.clone(), first.clone()]
    );

    // A staged image nobody refers to yet survives the default collection.
    let staged = store.put_image(&common::png(10, 10, 3)).unwrap();
    store.gc_images().unwrap();
    assert!(store.image(&staged.sha256).is_ok());

    store.delete_conversation(&chat.id).unwrap();
    assert_eq!(
        store
            .gc_images_older_than(Duration::ZERO)
            .unwrap()
            .images_removed,
        1,
        "only the staged one"
    );
    assert!(
        store.image(&first.sha256).is_ok(),
        "a trashed conversation keeps its images"
    );

    store.purge_conversation(&chat.id).unwrap();
    assert!(matches!(
        store.get_conversation(&chat.id),
        Err(StoreError::ConversationNotFound(_))
    ));
    assert!(store.message(&message).is_err());
    let report = store.gc_images_older_than(Duration::ZERO).unwrap();
    assert_eq!(report.images_removed, 2);
    assert!(!original.exists());
    assert!(matches!(
        store.image(&first.sha256),
        Err(StoreError::ImageMissing(_))
    ));
}

#[test]
fn exif_orientation_is_applied_to_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    // Orientation 6: the camera was turned; the picture shows 20 wide, 40 high.
    let image = store
        .put_image(&common::png_with_orientation(40, 20, 6))
        .unwrap();
    assert_eq!((image.width, image.height), (20, 40));
    let thumbnail =
        image::load_from_memory(&store.read_image(&image.sha256, true).unwrap()).unwrap();
    assert!(thumbnail.height() > thumbnail.width());
}

#[test]
fn non_images_are_refused_with_a_clear_error_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    for bad in [
        &b"{\"not\": \"an image\"}"[..],
        &b"\x89PNG\r\n\x1a\n truncated"[..],
        &[][..],
    ] {
        let err = store.put_image(bad).unwrap_err();
        assert!(matches!(err, StoreError::ImageDecode(_)), "{err}");
        assert!(
            err.to_string().contains("Convert it to PNG or JPEG"),
            "{err}"
        );
    }
    let stored: Vec<_> = walk(&dir.path().join("images"));
    assert!(stored.is_empty(), "{stored:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_second_store_on_the_same_folder_sees_committed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (writer_store, _) = Store::open(dir.path()).unwrap();
    let chat = writer_store.create_conversation(Some("shared")).unwrap();
    let (reader_store, _) = Store::open(dir.path()).unwrap();
    assert_eq!(
        reader_store.conversation_summary(&chat.id).unwrap().title,
        "shared"
    );
}
