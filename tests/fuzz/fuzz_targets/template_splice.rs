//! A conversation as the user typed it: each family's chat template renders it with image
//! slots at a marker no text contains, and `tokenize_prompt_at` splits it there with the
//! fixture checkpoints' real tokenizers, as `Session::generate` builds its prompt (so a
//! `<image>` the user typed stays text).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use impchat_input::splice::{count_tokens, tokenize_prompt_at};
use impchat_input::template::{unique_image_marker, with_image_slots, ChatTemplate, Turn};
use impchat_input::tokenizer::load_tokenizer;
use impchat_input::PromptPiece;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tokenizers::Tokenizer;

/// One fixture per template, with the tokenizer files that family ships.
const FAMILIES: [(ChatTemplate, &str); 3] = [
    (ChatTemplate::Phi2, "imp-v1.5-3b-phi2"),
    (ChatTemplate::ChatMl, "imp-v1.5-2b-qwen1.5"),
    (ChatTemplate::Phi3, "imp-v1.5-4b-phi3"),
];
/// SigLIP at 384 px with 14 px patches.
const VISUAL_TOKENS: usize = 729;

#[derive(Debug, Arbitrary)]
struct Message {
    from_user: bool,
    text: String,
    /// Images attached to a user message (the app allows a few).
    images: u8,
}

#[derive(Debug, Arbitrary)]
struct Conversation {
    family: u8,
    system: Option<String>,
    messages: Vec<Message>,
    /// An answer being continued (`render_continuing`).
    partial: Option<String>,
}

fn tokenizers() -> &'static [(ChatTemplate, Tokenizer, Option<u32>)] {
    static LOADED: OnceLock<Vec<(ChatTemplate, Tokenizer, Option<u32>)>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
        FAMILIES
            .iter()
            .map(|&(template, dir)| {
                let tokenizer = load_tokenizer(&fixtures.join(dir))
                    .unwrap_or_else(|e| panic!("fixture tokenizer {dir}: {e}"));
                // As `Model::load`: only Phi-3's prompts start with a BOS to drop per chunk.
                let bos = match template {
                    ChatTemplate::Phi3 => tokenizer.token_to_id("<s>"),
                    _ => None,
                };
                (template, tokenizer, bos)
            })
            .collect()
    })
}

fuzz_target!(|conversation: Conversation| {
    let families = tokenizers();
    let (template, tokenizer, bos) = &families[usize::from(conversation.family) % families.len()];
    let texts = conversation
        .system
        .iter()
        .map(String::as_str)
        .chain(conversation.messages.iter().map(|m| m.text.as_str()))
        .chain(conversation.partial.as_deref());
    let marker = unique_image_marker(texts);
    let mut images = 0usize;
    let turns: Vec<Turn> = conversation
        .messages
        .iter()
        .map(|message| {
            if message.from_user {
                let attached = usize::from(message.images % 4);
                images += attached;
                Turn::user(with_image_slots(&message.text, attached, &marker))
            } else {
                Turn::assistant(message.text.clone())
            }
        })
        .collect();
    let system = conversation
        .system
        .as_deref()
        .unwrap_or(template.default_system());
    let prompt = match &conversation.partial {
        Some(partial) => template.render_continuing(system, &turns, partial),
        None => template.render(system, &turns),
    };
    let Ok(pieces) = tokenize_prompt_at(tokenizer, &prompt, &marker, images, *bos) else {
        return;
    };
    // The session indexes its images with these: one slot per image, in order.
    let slots: Vec<usize> = pieces
        .iter()
        .filter_map(|piece| match piece {
            PromptPiece::Image(index) => Some(*index),
            PromptPiece::Text(_) => None,
        })
        .collect();
    assert_eq!(slots, (0..images).collect::<Vec<_>>());
    assert!(pieces
        .iter()
        .all(|piece| !matches!(piece, PromptPiece::Text(ids) if ids.is_empty())));
    let _ = count_tokens(&pieces, VISUAL_TOKENS);
});
