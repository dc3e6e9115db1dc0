//! Streaming detokenisation and prompt splicing with real tokenizers.

use std::path::Path;

use impchat_input::detokenize::{StopMatcher, StopOutcome, TextStream};
use impchat_input::splice::{count_tokens, tokenize_prompt, PromptError, PromptPiece};
use impchat_input::template::{ChatTemplate, Turn};
use impchat_input::tokenizer::load_tokenizer;
use tokenizers::Tokenizer;

fn codegen() -> Tokenizer {
    load_tokenizer(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers/codegen"))
        .unwrap()
}

/// Streams `ids` one at a time, returning each delta.
fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut s = TextStream::new(tok, skip_special);
    let mut out: Vec<String> = ids.iter().filter_map(|&id| s.push(id).unwrap()).collect();
    out.extend(s.finish().unwrap());
    out
}

#[test]
fn emoji_and_cjk_split_across_byte_tokens_are_never_cut() {
    let tok = codegen();
    let text = "Hi 😀👍🏽 你好世界 ok";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    // The tiny vocabulary has no merges for these: every character is several tokens.
    assert!(ids.len() > text.chars().count());
    let deltas = stream(&tok, &ids, true);
    assert_eq!(deltas.concat(), text);
    for d in &deltas {
        assert!(
            !d.contains('\u{FFFD}'),
            "delta {d:?} carries a broken character"
        );
    }
    // Something was emitted before the end: it streams, it doesn't wait for finish.
    assert!(deltas.len() > 5, "{deltas:?}");
}

#[test]
fn special_tokens_are_skipped_or_kept() {
    let tok = codegen();
    let eos = tok.token_to_id("</s>").unwrap();
    let mut ids = tok.encode("Done.", false).unwrap().get_ids().to_vec();
    ids.push(eos);
    assert_eq!(stream(&tok, &ids, true).concat(), "Done.");
    assert_eq!(stream(&tok, &ids, false).concat(), "Done.</s>");
}

#[test]
fn an_unfinished_character_comes_out_at_finish_as_replacement() {
    let tok = codegen();
    let ids = tok.encode("a😀", false).unwrap().get_ids().to_vec();
    let cut = &ids[..ids.len() - 1];
    let mut s = TextStream::new(&tok, true);
    let deltas: Vec<String> = cut.iter().filter_map(|&id| s.push(id).unwrap()).collect();
    assert_eq!(deltas, vec!["a".to_string()]);
    assert_eq!(s.finish().unwrap(), Some("\u{FFFD}".to_string()));
    assert_eq!(s.finish().unwrap(), None);
}

/// A SentencePiece-style tokenizer (Llama / Phi-3): byte fallback, "▁" for spaces, and a
/// decoder that strips the leading space of the whole text.
fn sentencepiece_like() -> Tokenizer {
    let json = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": null, "post_processor": null,
      "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": true, "ignore_merges": false,
        "vocab": {"▁Hello": 0, "▁world": 1, "<0xE4>": 2, "<0xBD>": 3, "<0xA0>": 4, "!": 5},
        "merges": []}
    }"#;
    Tokenizer::from_bytes(json).unwrap()
}

#[test]
fn byte_fallback_and_leading_space_decoders_stream_correctly() {
    let tok = sentencepiece_like();
    // "▁Hello▁world" then 你 as three byte tokens, then "!".
    let deltas = stream(&tok, &[0, 1, 2, 3, 4, 5], true);
    assert_eq!(deltas, vec!["Hello", " world", "你", "!"]);
}

#[test]
fn stop_string_is_cut_from_streamed_text() {
    let tok = codegen();
    let ids = tok
        .encode("Sure: A</s>B", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let mut s = TextStream::new(&tok, false);
    let mut stop = StopMatcher::new(vec!["</s>".into()]);
    let mut shown = String::new();
    let mut stopped = false;
    for id in ids {
        if let Some(delta) = s.push(id).unwrap() {
            match stop.push(&delta) {
                StopOutcome::Emit(t) => shown.push_str(&t),
                StopOutcome::Stopped { before } => {
                    shown.push_str(&before);
                    stopped = true;
                    break;
                }
            }
        }
    }
    assert!(stopped);
    assert_eq!(shown, "Sure: A");
}

#[test]
fn prompt_is_split_at_image_markers() {
    let tok = codegen();
    let prompt = ChatTemplate::Phi2.render("SYS", &[Turn::user("<image>\nWhat is this?")]);
    let pieces = tokenize_prompt(&tok, &prompt, 1, None).unwrap();
    let (before, after) = prompt.split_once("<image>").unwrap();
    assert_eq!(
        pieces,
        vec![
            PromptPiece::Text(tok.encode(before, true).unwrap().get_ids().to_vec()),
            PromptPiece::Image(0),
            PromptPiece::Text(tok.encode(after, true).unwrap().get_ids().to_vec()),
        ]
    );
    let text_tokens =
        tok.encode(before, true).unwrap().len() + tok.encode(after, true).unwrap().len();
    assert_eq!(count_tokens(&pieces, 729), text_tokens + 729);
}

#[test]
fn images_are_numbered_in_order_and_empty_chunks_dropped() {
    let tok = codegen();
    let pieces = tokenize_prompt(&tok, "<image><image>\nCompare", 2, None).unwrap();
    assert_eq!(pieces[0], PromptPiece::Image(0));
    assert_eq!(pieces[1], PromptPiece::Image(1));
    assert!(matches!(&pieces[2], PromptPiece::Text(ids) if !ids.is_empty()));
    assert_eq!(pieces.len(), 3);
}

#[test]
fn leading_bos_is_kept_once() {
    let mut tok = codegen();
    let bos = tok.token_to_id("<|endoftext|>").unwrap();
    // Make it add a BOS like Llama-style tokenizers do.
    let template = tokenizers::processors::template::TemplateProcessing::builder()
        .try_single("<|endoftext|> $A")
        .unwrap()
        .special_tokens(vec![("<|endoftext|>", bos)])
        .build()
        .unwrap();
    tok.with_post_processor(Some(template));
    let pieces = tokenize_prompt(&tok, "Hi <image> there", 1, Some(bos)).unwrap();
    let PromptPiece::Text(first) = &pieces[0] else {
        panic!("{pieces:?}")
    };
    let PromptPiece::Text(last) = &pieces[2] else {
        panic!("{pieces:?}")
    };
    assert_eq!(first[0], bos);
    assert_ne!(last[0], bos);
    assert_eq!(
        last,
        &tok.encode(" there", false).unwrap().get_ids().to_vec()
    );
}

#[test]
fn marker_count_must_match_images() {
    let tok = codegen();
    assert!(matches!(
        tokenize_prompt(&tok, "no marker", 1, None),
        Err(PromptError::ImageCountMismatch {
            markers: 0,
            images: 1
        })
    ));
    assert!(matches!(
        tokenize_prompt(&tok, "<image> <image>", 1, None),
        Err(PromptError::ImageCountMismatch {
            markers: 2,
            images: 1
        })
    ));
    assert!(matches!(
        tokenize_prompt(&tok, "", 0, None),
        Err(PromptError::Empty)
    ));
}
