mod common;

use impchat_store::{Store, MATCH_END, MATCH_START};

fn seeded(dir: &std::path::Path) -> (Store, String, String) {
    let store = common::open(dir);
    let cats = store.create_conversation(Some("Cat pictures")).unwrap();
    let q = store
        .add_user_message(
            &cats.id,
            None,
            "Is this a Maine Coon or a Norwegian forest cat?",
            &[],
        )
        .unwrap();
    store
        .add_message(
            &cats.id,
            Some(&q),
            impchat_store::Role::Assistant,
            "It is a Maine Coon: note the ear tufts.",
            &[],
        )
        .unwrap();
    let receipts = store.create_conversation(Some("Receipts")).unwrap();
    store
        .add_user_message(
            &receipts.id,
            None,
            "Total on this café receipt? The naïve reading says 12€.",
            &[],
        )
        .unwrap();
    (store, cats.id, receipts.id)
}

#[test]
fn finds_words_in_messages_with_marked_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let (store, cats, _) = seeded(dir.path());
    let hits = store.search("tufts", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].conversation_id, cats);
    assert_eq!(hits[0].title, "Cat pictures");
    assert!(hits[0].message_id.is_some());
    assert!(
        hits[0]
            .snippet
            .contains(&format!("{MATCH_START}tufts{MATCH_END}")),
        "{:?}",
        hits[0].snippet
    );
}

#[test]
fn titles_match_too_and_rank_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, cats, _) = seeded(dir.path());
    let hits = store.search("cat", 10).unwrap();
    assert!(hits.len() >= 2);
    assert_eq!(hits[0].message_id, None, "the title hit ranks first");
    assert_eq!(hits[0].conversation_id, cats);
    assert_eq!(
        hits[0].snippet,
        format!("{MATCH_START}Cat{MATCH_END} pictures")
    );
    let messages: Vec<_> = hits.iter().filter(|h| h.message_id.is_some()).collect();
    assert!(
        hits[1..].iter().all(|h| h.message_id.is_some()),
        "then messages"
    );
    assert!(
        messages.windows(2).all(|w| w[0].rank >= w[1].rank),
        "messages sorted by rank"
    );
}

#[test]
fn the_last_word_matches_as_a_prefix_while_typing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, cats, _) = seeded(dir.path());
    let typing = store.search("maine co", 10).unwrap();
    assert!(!typing.is_empty());
    assert!(typing.iter().all(|h| h.conversation_id == cats));
    assert!(
        store.search("maine co ", 10).unwrap().is_empty(),
        "a finished word is not a prefix"
    );
}

#[test]
fn accents_and_case_do_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, receipts) = seeded(dir.path());
    for query in ["CAFE", "naive", "café"] {
        let hits = store.search(query, 10).unwrap();
        assert_eq!(hits.len(), 1, "{query}");
        assert_eq!(hits[0].conversation_id, receipts);
    }
}

#[test]
fn fts_syntax_in_user_input_is_just_text() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = seeded(dir.path());
    for hostile in [
        "\"",
        "cat OR",
        "NEAR(cat",
        "cat*)",
        "-cat",
        "col:cat",
        "\"unbalanced",
        "^",
        "AND",
        "*",
        "'); DROP TABLE messages; --",
    ] {
        let result = store.search(hostile, 10);
        assert!(result.is_ok(), "{hostile:?} broke search: {result:?}");
    }
    // `OR` is a word to look for, not an operator: nothing contains "or" as a word prefix
    // except "or" itself in the cat question.
    let hits = store.search("coon OR", 10).unwrap();
    assert_eq!(hits.len(), 1, "both words must match the same message");
    assert!(store.search("", 10).unwrap().is_empty());
    assert!(store.search("   ", 10).unwrap().is_empty());
}

#[test]
fn trash_is_not_searched_and_edits_are_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, cats, receipts) = seeded(dir.path());
    store.delete_conversation(&receipts).unwrap();
    assert!(store.search("receipt", 10).unwrap().is_empty());
    store.restore_conversation(&receipts).unwrap();
    assert_eq!(
        store.search("receipt", 10).unwrap().len(),
        2,
        "title and message"
    );

    store.rename_conversation(&cats, "Kittens").unwrap();
    assert!(store.search("pictures", 10).unwrap().is_empty());
    assert_eq!(store.search("kittens", 10).unwrap().len(), 1);

    let question = store.current_leaf(&cats).unwrap().unwrap();
    let answer = store.begin_assistant(&cats, &question).unwrap();
    store.append(&answer, "Whiskers are ").unwrap();
    store.append(&answer, "remarkable").unwrap();
    assert_eq!(
        store.search("remarkable", 10).unwrap().len(),
        1,
        "streamed text is searchable"
    );

    store.purge_conversation(&cats).unwrap();
    assert!(store.search("remarkable", 10).unwrap().is_empty());
    assert!(store.search("tufts", 10).unwrap().is_empty());
}

#[test]
fn limit_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    for i in 0..20 {
        let chat = store
            .create_conversation(Some(&format!("chat {i}")))
            .unwrap();
        store
            .add_user_message(&chat.id, None, "the same llama question", &[])
            .unwrap();
    }
    assert_eq!(store.search("llama", 5).unwrap().len(), 5);
}
