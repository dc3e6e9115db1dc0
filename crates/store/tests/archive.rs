//! Export/import: a .zip round trip is lossless, re-imports are skipped,
//! bad archives are refused without importing anything, Markdown is readable.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use impchat_store::{ExportScope, Finish, ImportReport, MessageStatus, Role, Store, StoreError};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct MessagePlan {
    /// Index into the messages made so far (modulo their count), or a new root.
    parent: Option<usize>,
    role: Role,
    content: String,
    status: MessageStatus,
    images: Vec<usize>,
    stats: Option<i64>,
}

#[derive(Debug, Clone)]
struct ConversationPlan {
    title: String,
    pinned: bool,
    system_prompt: Option<String>,
    settings: Option<f64>,
    model_id: Option<String>,
    messages: Vec<MessagePlan>,
    /// Which message's branch is active at the end.
    active: Option<usize>,
}

fn message_plan() -> impl Strategy<Value = MessagePlan> {
    (
        proptest::option::weighted(0.8, any::<usize>()),
        prop_oneof![Just(Role::User), Just(Role::Assistant), Just(Role::System)],
        any::<String>(),
        prop_oneof![
            Just(MessageStatus::Complete),
            Just(MessageStatus::Stopped),
            Just(MessageStatus::Error),
            Just(MessageStatus::Interrupted)
        ],
        proptest::collection::vec(0..3usize, 0..3),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(parent, role, content, status, images, stats)| MessagePlan {
                parent,
                role,
                content,
                status,
                images,
                stats,
            },
        )
}

fn conversation_plan() -> impl Strategy<Value = ConversationPlan> {
    (
        "\\PC{0,30}",
        any::<bool>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(-1e6f64..1e6),
        proptest::option::of("[a-z0-9.-]{1,20}"),
        proptest::collection::vec(message_plan(), 0..8),
        proptest::option::of(any::<usize>()),
    )
        .prop_map(
            |(title, pinned, system_prompt, settings, model_id, messages, active)| {
                ConversationPlan {
                    title,
                    pinned,
                    system_prompt,
                    settings,
                    model_id,
                    messages,
                    active,
                }
            },
        )
}

fn build(store: &Store, plan: &ConversationPlan, images: &[String]) -> String {
    let chat = store.create_conversation(Some(&plan.title)).unwrap().id;
    let mut ids: Vec<String> = Vec::new();
    for message in &plan.messages {
        let parent = message
            .parent
            .filter(|_| !ids.is_empty())
            .map(|p| ids[p % ids.len()].clone());
        let shas: Vec<String> = message.images.iter().map(|&i| images[i].clone()).collect();
        let id = if message.role == Role::Assistant && parent.is_some() {
            let id = store
                .begin_assistant(&chat, parent.as_deref().unwrap())
                .unwrap();
            store.append(&id, &message.content).unwrap();
            let finish = Finish {
                status: message.status,
                error: (message.status == MessageStatus::Error)
                    .then(|| format!("failed: {}", message.content)),
                stats: message
                    .stats
                    .map(|n| json!({"generatedTokens": n, "stopReason": null})),
                provenance: message.stats.map(|n| json!({"seed": n, "modelId": "m"})),
            };
            store.finish(&id, &finish).unwrap();
            id
        } else {
            store
                .add_message(
                    &chat,
                    parent.as_deref(),
                    message.role,
                    &message.content,
                    &shas,
                )
                .unwrap()
        };
        ids.push(id);
    }
    store.pin_conversation(&chat, plan.pinned).unwrap();
    let settings = plan
        .settings
        .map(|t| json!({"temperature": t, "topK": null}));
    store
        .set_chat_settings(&chat, plan.system_prompt.as_deref(), settings.as_ref())
        .unwrap();
    store.set_model_id(&chat, plan.model_id.as_deref()).unwrap();
    if let (Some(active), false) = (plan.active, ids.is_empty()) {
        store
            .switch_branch(&chat, &ids[active % ids.len()])
            .unwrap();
    }
    chat
}

/// A conversation with ids replaced by positions, so copies compare equal.
fn normalized(store: &Store, id: &str) -> Value {
    let conversation = store.get_conversation(id).unwrap();
    let tree = store.message_tree(id).unwrap();
    let position = |id: &str| tree.iter().position(|m| m.id == id).unwrap();
    let messages: Vec<Value> = tree
        .iter()
        .map(|m| {
            let image_bytes: Vec<Vec<u8>> = m
                .images
                .iter()
                .map(|i| store.read_image(&i.sha256, false).unwrap())
                .collect();
            json!({
                "parent": m.parent_id.as_deref().map(position),
                "role": m.role, "content": m.content, "status": m.status, "error": m.error,
                "createdAt": m.created_at, "stats": m.stats, "provenance": m.provenance,
                "images": m.images, "imageBytes": image_bytes,
                "siblings": m.sibling_ids.iter().map(|s| position(s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut summary = serde_json::to_value(&conversation.summary).unwrap();
    summary.as_object_mut().unwrap().remove("id");
    json!({
        "summary": summary,
        "systemPrompt": conversation.system_prompt,
        "settings": conversation.settings,
        "activeBranch": conversation.messages.iter().map(|m| position(&m.id)).collect::<Vec<_>>(),
        "messages": messages,
    })
}

fn all_normalized(store: &Store) -> Vec<String> {
    let mut all: Vec<String> = store
        .list_conversations(true)
        .unwrap()
        .iter()
        .map(|c| normalized(store, &c.id).to_string())
        .collect();
    all.sort();
    all
}

fn image_pool(store: &Store) -> Vec<String> {
    (0..3)
        .map(|i| {
            store
                .put_image(&common::png(8 + i, 5, i as u8))
                .unwrap()
                .sha256
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn zip_export_import_round_trips_losslessly(plans in proptest::collection::vec(conversation_plan(), 1..4)) {
        let source_dir = tempfile::tempdir().unwrap();
        let source = common::open(source_dir.path());
        let images = image_pool(&source);
        for plan in &plans {
            build(&source, plan, &images);
        }
        let archive = source_dir.path().join("export.zip");
        prop_assert_eq!(source.export_archive(ExportScope::All, &archive).unwrap(), archive.clone());

        let target_dir = tempfile::tempdir().unwrap();
        let target = common::open(target_dir.path());
        let report = target.import_archive(&archive).unwrap();
        prop_assert_eq!(report, ImportReport { imported: plans.len(), skipped: 0 });
        prop_assert_eq!(all_normalized(&source), all_normalized(&target));
        let source_ids: Vec<_> = source.list_conversations(true).unwrap().into_iter().map(|c| c.id).collect();
        prop_assert!(target.list_conversations(true).unwrap().iter().all(|c| !source_ids.contains(&c.id)), "new ids");

        // The same archive again, into either store, adds nothing.
        prop_assert_eq!(target.import_archive(&archive).unwrap(), ImportReport { imported: 0, skipped: plans.len() });
        prop_assert_eq!(source.import_archive(&archive).unwrap(), ImportReport { imported: 0, skipped: plans.len() });
        // An export of the imported copies is recognised as the same conversations.
        let again = target_dir.path().join("again.zip");
        target.export_archive(ExportScope::All, &again).unwrap();
        prop_assert_eq!(source.import_archive(&again).unwrap(), ImportReport { imported: 0, skipped: plans.len() });
        prop_assert_eq!(source.list_conversations(true).unwrap().len(), plans.len());
    }
}

fn sample(store: &Store) -> (String, String) {
    let image = store.put_image(&common::png(30, 20, 7)).unwrap();
    let chat = store.create_conversation(Some("Sample chat")).unwrap().id;
    let question = store
        .add_user_message(
            &chat,
            None,
            "What colour is this?",
            std::slice::from_ref(&image.sha256),
        )
        .unwrap();
    store
        .add_message(
            &chat,
            Some(&question),
            Role::Assistant,
            "Mostly *red*.",
            &[],
        )
        .unwrap();
    (chat, image.sha256)
}

#[test]
fn a_changed_conversation_is_imported_again_as_a_new_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, _) = sample(&store);
    let archive = dir.path().join("one.zip");
    store
        .export_archive(ExportScope::One(&chat), &archive)
        .unwrap();
    store.rename_conversation(&chat, "Renamed since").unwrap();
    assert_eq!(
        store.import_archive(&archive).unwrap(),
        ImportReport {
            imported: 1,
            skipped: 0
        }
    );
    assert_eq!(store.list_conversations(false).unwrap().len(), 2);
}

#[test]
fn a_trashed_conversation_exports_alone_with_its_flag_but_not_with_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, _) = sample(&store);
    let kept = store.create_conversation(Some("kept")).unwrap().id;
    store.delete_conversation(&chat).unwrap();

    let all = dir.path().join("all.zip");
    store.export_archive(ExportScope::All, &all).unwrap();
    let one = dir.path().join("one.zip");
    store.export_archive(ExportScope::One(&chat), &one).unwrap();

    let target_dir = tempfile::tempdir().unwrap();
    let target = common::open(target_dir.path());
    assert_eq!(target.import_archive(&all).unwrap().imported, 1);
    assert_eq!(
        target.list_conversations(true).unwrap()[0].title,
        store.conversation_summary(&kept).unwrap().title
    );
    assert_eq!(target.import_archive(&one).unwrap().imported, 1);
    let trashed: Vec<_> = target
        .list_conversations(true)
        .unwrap()
        .into_iter()
        .filter(|c| c.deleted)
        .collect();
    assert_eq!(trashed.len(), 1);
    assert_eq!(trashed[0].title, "Sample chat");
}

#[test]
fn the_archive_has_a_manifest_conversations_and_images_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, sha) = sample(&store);
    let archive = dir.path().join("a.zip");
    store
        .export_archive(ExportScope::One(&chat), &archive)
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["format"], "impchat-archive");
    assert_eq!(manifest["formatVersion"], 1);
    assert_eq!(manifest["schemaVersion"], impchat_store::SCHEMA_VERSION);
    assert!(manifest["appVersion"].is_string());
    let mut image = Vec::new();
    zip.by_name(&format!("images/{sha}.png"))
        .unwrap()
        .read_to_end(&mut image)
        .unwrap();
    assert_eq!(image, store.read_image(&sha, false).unwrap());
    assert!(zip.by_name("conversations.json").is_ok());
}

/// Rewrites one entry of an archive.
fn tampered(source: &Path, target: &Path, name: &str, replace: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut input = zip::ZipArchive::new(std::fs::File::open(source).unwrap()).unwrap();
    let mut output = zip::ZipWriter::new(std::fs::File::create(target).unwrap());
    for i in 0..input.len() {
        let mut entry = input.by_index(i).unwrap();
        let entry_name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if entry_name == name {
            bytes = replace(bytes);
        }
        output
            .start_file(entry_name, zip::write::SimpleFileOptions::default())
            .unwrap();
        output.write_all(&bytes).unwrap();
    }
    output.finish().unwrap();
}

#[test]
fn bad_archives_are_refused_and_import_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, sha) = sample(&store);
    let good = dir.path().join("good.zip");
    store
        .export_archive(ExportScope::One(&chat), &good)
        .unwrap();

    let target_dir = tempfile::tempdir().unwrap();
    let target = common::open(target_dir.path());

    let not_zip = dir.path().join("notes.zip");
    std::fs::write(&not_zip, b"just text").unwrap();
    let err = target.import_archive(&not_zip).unwrap_err();
    assert!(matches!(err, StoreError::InvalidArchive { .. }), "{err}");
    assert!(
        err.to_string().contains("made by ImpChat's export"),
        "{err}"
    );

    let wrong_image = dir.path().join("wrong_image.zip");
    tampered(&good, &wrong_image, &format!("images/{sha}.png"), |_| {
        common::png(3, 3, 99)
    });
    let err = target.import_archive(&wrong_image).unwrap_err();
    assert!(
        err.to_string().contains("does not match its SHA-256"),
        "{err}"
    );

    let broken_tree = dir.path().join("broken_tree.zip");
    tampered(&good, &broken_tree, "conversations.json", |bytes| {
        let mut conversations: Value = serde_json::from_slice(&bytes).unwrap();
        conversations[0]["messages"][1]["parentId"] = json!("nobody");
        serde_json::to_vec(&conversations).unwrap()
    });
    let err = target.import_archive(&broken_tree).unwrap_err();
    assert!(err.to_string().contains("parent is missing"), "{err}");

    let too_new = dir.path().join("too_new.zip");
    tampered(&good, &too_new, "manifest.json", |bytes| {
        let mut manifest: Value = serde_json::from_slice(&bytes).unwrap();
        manifest["formatVersion"] = json!(99);
        serde_json::to_vec(&manifest).unwrap()
    });
    let err = target.import_archive(&too_new).unwrap_err();
    assert!(
        matches!(err, StoreError::ArchiveTooNew { found: 99, .. }),
        "{err}"
    );

    let missing = dir.path().join("does-not-exist.zip");
    assert!(matches!(
        target.import_archive(&missing),
        Err(StoreError::Io { .. })
    ));

    assert!(
        target.list_conversations(true).unwrap().is_empty(),
        "nothing half-imported"
    );
    assert_eq!(
        target.import_archive(&good).unwrap().imported,
        1,
        "the good archive still imports"
    );
}

#[test]
fn markdown_export_is_readable_with_images_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, sha) = sample(&store);
    let other = store.create_conversation(Some("Second chat")).unwrap().id;
    store
        .add_user_message(&other, None, "hello there", &[])
        .unwrap();
    let out = tempfile::tempdir().unwrap();

    let one = out.path().join("sample chat.md");
    store
        .export_markdown(ExportScope::One(&chat), &one)
        .unwrap();
    let text = std::fs::read_to_string(&one).unwrap();
    assert!(text.starts_with("# Sample chat\n"), "{text}");
    assert!(text.contains("## You\n"), "{text}");
    assert!(text.contains("## Assistant\n\nMostly *red*."), "{text}");
    assert!(!text.contains("Second chat"));
    let link = format!("(<sample chat-images/{sha}.png>)");
    assert!(text.contains(&link), "{text}");
    let copied = out
        .path()
        .join("sample chat-images")
        .join(format!("{sha}.png"));
    assert_eq!(
        std::fs::read(copied).unwrap(),
        store.read_image(&sha, false).unwrap()
    );

    let all = out.path().join("all.md");
    store.export_markdown(ExportScope::All, &all).unwrap();
    let text = std::fs::read_to_string(&all).unwrap();
    assert!(
        text.contains("# Sample chat")
            && text.contains("# Second chat")
            && text.contains("hello there")
    );
}

/// An archive of `sample`, and an empty store to import into.
fn good_archive() -> (tempfile::TempDir, std::path::PathBuf, String, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let (chat, sha) = sample(&store);
    let good = dir.path().join("good.zip");
    store
        .export_archive(ExportScope::One(&chat), &good)
        .unwrap();
    let target = common::open(&dir.path().join("target"));
    (dir, good, sha, target)
}

#[test]
fn an_entry_that_inflates_past_its_cap_is_refused_naming_the_cap() {
    let (dir, good, sha, target) = good_archive();

    let padded = dir.path().join("padded_manifest.zip");
    tampered(&good, &padded, "manifest.json", |mut bytes| {
        // Still valid JSON: whitespace after the object.
        bytes.extend(std::iter::repeat_n(b' ', 100 << 10));
        bytes
    });
    let err = target.import_archive(&padded).unwrap_err();
    assert!(matches!(err, StoreError::InvalidArchive { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("manifest.json inflates to more than 65536 bytes"),
        "{err}"
    );

    // Zeros deflate about a thousandfold: a small file that inflates to 64 MiB.
    let bomb = dir.path().join("bomb.zip");
    let name = format!("images/{sha}.png");
    tampered(&good, &bomb, &name, |_| vec![0; (64 << 20) + 1]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let err = target.import_archive(&bomb).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{name} inflates to more than 67108864 bytes")),
        "{err}"
    );
    assert!(target.list_conversations(true).unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn a_device_or_a_fifo_given_as_the_archive_is_refused_without_reading_it() {
    let (dir, _, _, target) = good_archive();
    let err = target.import_archive(Path::new("/dev/zero")).unwrap_err();
    assert!(matches!(err, StoreError::InvalidArchive { .. }), "{err}");
    assert!(
        err.to_string().contains("it is a device, not a file"),
        "{err}"
    );

    let err = target.import_archive(dir.path()).unwrap_err();
    assert!(err.to_string().contains("it is a folder"), "{err}");

    let fifo = dir.path().join("pipe.zip");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // Opening a FIFO with no writer blocks forever; the import must not.
    let (sent, received) = std::sync::mpsc::channel();
    let target_dir = target.data_dir().to_path_buf();
    drop(target);
    std::thread::spawn(move || {
        let target = common::open(&target_dir);
        let _ = sent.send(target.import_archive(&fifo).map_err(|e| e.to_string()));
    });
    let outcome = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("importing a FIFO must not block");
    let err = outcome.unwrap_err();
    assert!(
        err.contains("it is a named pipe (FIFO), not a file"),
        "{err}"
    );
}
