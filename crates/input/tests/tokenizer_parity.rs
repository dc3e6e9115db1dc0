//! Tokenizers built from slow files against transformers' AutoTokenizer ids, recorded by
//! fixtures/make_tokenizer_fixtures.py.

use std::path::{Path, PathBuf};

use impchat_input::tokenizer::{load_tokenizer, TokenizerError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

fn expected(name: &str) -> Expected {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected_ids.json")).unwrap())
            .unwrap();
    serde_json::from_value(all[name].clone()).unwrap()
}

fn check_against_transformers(name: &str) {
    let tok = load_tokenizer(&fixtures().join(name)).unwrap();
    let expected = expected(name);
    assert_eq!(
        tok.get_vocab_size(true),
        expected.vocab_size,
        "{name} vocabulary size"
    );
    assert!(expected.cases.len() >= 10);
    for case in &expected.cases {
        let ids = tok
            .encode(case.text.as_str(), true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, case.ids, "{name}: ids of {:?}", case.text);
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            case.decoded,
            "{name}: decode {:?}",
            case.text
        );
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            case.decoded_skip_special,
            "{name}: decode without specials {:?}",
            case.text
        );
    }
}

#[test]
fn codegen_slow_files_tokenize_like_transformers() {
    check_against_transformers("codegen");
}

#[test]
fn qwen2_slow_files_tokenize_like_transformers() {
    check_against_transformers("qwen2");
}

#[test]
fn imp_phi2_added_tokens_get_their_ids_and_flags() {
    let tok = load_tokenizer(&fixtures().join("codegen")).unwrap();
    let added: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(
        &std::fs::read(fixtures().join("codegen/added_tokens.json")).unwrap(),
    )
    .unwrap();
    for (content, id) in &added {
        assert_eq!(
            tok.token_to_id(content),
            Some(id.as_u64().unwrap() as u32),
            "{content:?}"
        );
    }
    let decoder = tok.get_added_tokens_decoder();
    let eos = tok.token_to_id("</s>").unwrap();
    assert!(decoder[&eos].special, "</s> is the eos token, so special");
    let image = tok.token_to_id("<image>").unwrap();
    assert!(!decoder[&image].special, "<image> is only an added token");
    let spaces = tok.token_to_id("    ").unwrap();
    assert!(!decoder[&spaces].special && decoder[&spaces].normalized);
}

#[test]
fn tokenizer_json_is_preferred_and_round_trips() {
    let built = load_tokenizer(&fixtures().join("codegen")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    built
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    // A broken vocab.json next to it must not matter.
    std::fs::write(dir.path().join("vocab.json"), b"not json").unwrap();
    let loaded = load_tokenizer(dir.path()).unwrap();
    for case in expected("codegen").cases {
        assert_eq!(
            loaded.encode(case.text.as_str(), true).unwrap().get_ids(),
            case.ids.as_slice()
        );
    }
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn missing_files_say_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("vocab.json") && msg.contains("merges.txt"),
        "{msg}"
    );

    let dir = copy_fixture("codegen");
    std::fs::remove_file(dir.path().join("merges.txt")).unwrap();
    assert!(matches!(
        load_tokenizer(dir.path()),
        Err(TokenizerError::Missing { .. })
    ));
}

#[test]
fn corrupt_files_are_named() {
    for (file, content) in [
        ("vocab.json", &b"{\"a\": 0, \"b\": "[..]),
        ("vocab.json", b"[1, 2, 3]"),
        ("merges.txt", b"#version: 0.2\na b c\n"),
        ("added_tokens.json", b"{\"</s>\": \"x\"}"),
        ("special_tokens_map.json", b"{"),
        ("tokenizer_config.json", b"[]"),
        ("tokenizer.json", b"{\"version\": \"1.0\"}"),
    ] {
        let dir = copy_fixture("codegen");
        std::fs::write(dir.path().join(file), content).unwrap();
        let err = load_tokenizer(dir.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::Corrupt { .. }),
            "{file}: {err:?}"
        );
        assert!(err.to_string().contains(file), "{file}: {err}");
    }
}

#[test]
fn added_token_ids_that_do_not_follow_the_vocabulary_are_refused() {
    let dir = copy_fixture("codegen");
    std::fs::write(dir.path().join("added_tokens.json"), b"{\"<image>\": 9999}").unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("added_tokens.json") && msg.contains("9999"),
        "{msg}"
    );
}

#[test]
fn sentencepiece_classes_need_tokenizer_json() {
    let dir = copy_fixture("codegen");
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        b"{\"tokenizer_class\": \"LlamaTokenizer\"}",
    )
    .unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Unsupported { class, .. } if class == "LlamaTokenizer"),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.json"));
}

#[test]
fn config_added_tokens_decoder_wins_over_added_tokens_json() {
    check_against_transformers("codegen_config");
    let tok = load_tokenizer(&fixtures().join("codegen_config")).unwrap();
    // The stale added_tokens.json is ignored, as transformers ignores it.
    assert_eq!(tok.token_to_id("<stale>"), None);
    let image = tok.token_to_id("<image>").unwrap();
    assert!(tok.get_added_tokens_decoder()[&image].special);
}

#[test]
fn saved_truncation_and_padding_are_not_applied_to_prompts() {
    let mut built = load_tokenizer(&fixtures().join("codegen")).unwrap();
    built
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 3,
            ..Default::default()
        }))
        .unwrap();
    built.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::Fixed(64),
        ..Default::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    built
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    let loaded = load_tokenizer(dir.path()).unwrap();
    let long = "The quick brown fox jumps over the lazy dog.";
    let ids = loaded.encode(long, true).unwrap().get_ids().to_vec();
    assert!(ids.len() > 3 && ids.len() < 64, "{}", ids.len());
    assert_eq!(loaded.decode(&ids, false).unwrap(), long);
}
