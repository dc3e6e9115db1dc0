//! Rebuilds a SentencePiece-style tokenizer (`tokenizer.ggml.model = "llama"`, Phi-3)
//! from GGUF metadata as a `tokenizers` BPE with byte fallback, the form Phi-3's own
//! `tokenizer.json` takes.
//!
//! The file stores scores, not merges: every token reachable by merging has score
//! `-(rank + 1)`. SentencePiece (and llama.cpp) merge the adjacent pair whose result scores
//! highest, which is exactly a BPE whose merges are all `(left, right)` splits of each
//! scored token, ordered by that token's score.

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Map, Value as Json};
use tokenizers::Tokenizer;

use super::GgufFile;
use crate::error::EngineError;

/// llama.cpp's `llama_token_type` values this needs.
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_UNUSED: i64 = 5;

const SPACE: &str = "\u{2581}";

pub fn tokenizer(file: &GgufFile) -> Result<Tokenizer, EngineError> {
    let fail = |reason: String| {
        EngineError::Tokenizer(format!(
            "cannot rebuild the tokenizer from {}: {reason}",
            file.path().display()
        ))
    };
    let metadata = &file.content().metadata;
    let array = |key: &str| match metadata.get(key) {
        Some(Value::Array(values)) => Ok(values),
        _ => Err(fail(format!("{key} is missing or not a list"))),
    };
    let tokens = array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| fail(format!("tokenizer.ggml.tokens: {e}")))?;
    let scores = array("tokenizer.ggml.scores")?
        .iter()
        .map(|v| v.to_f32())
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| fail(format!("tokenizer.ggml.scores: {e}")))?;
    let types = array("tokenizer.ggml.token_type")?
        .iter()
        .map(|v| v.to_i32().map(i64::from))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|e| fail(format!("tokenizer.ggml.token_type: {e}")))?;
    if scores.len() != tokens.len() || types.len() != tokens.len() {
        return Err(fail(format!(
            "{} tokens but {} scores and {} types",
            tokens.len(),
            scores.len(),
            types.len()
        )));
    }
    let token_id = |key: &str| file.usize(key).ok().filter(|&id| id < tokens.len());
    let unk = token_id("tokenizer.ggml.unknown_token_id")
        .or_else(|| types.iter().position(|&t| t == TYPE_UNKNOWN))
        .ok_or_else(|| fail("no unknown token".into()))?;
    let bos = token_id("tokenizer.ggml.bos_token_id");
    let add_bos = matches!(
        metadata.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    let phi3 = file.architecture()? == "phi3";

    let vocab: Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(id, text)| (text.clone(), json!(id)))
        .collect();
    let merges = merges(&tokens, &scores, &vocab);
    let added: Vec<Json> = types
        .iter()
        .enumerate()
        .filter(|(id, &kind)| {
            *id == unk
                || matches!(
                    kind,
                    TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNUSED
                )
        })
        .map(|(id, &kind)| {
            let text = &tokens[id];
            json!({
                "id": id,
                "content": text,
                "single_word": false,
                "lstrip": false,
                "rstrip": phi3 && strips_following_space(text),
                "normalized": false,
                "special": kind != TYPE_USER_DEFINED,
            })
        })
        .collect();
    let post_processor = match bos.filter(|_| add_bos) {
        Some(bos) => {
            let bos_text = &tokens[bos];
            json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [
                    {"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": bos_text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}
                ],
                "special_tokens": {bos_text.as_str(): {"id": bos_text, "ids": [bos], "tokens": [bos_text]}}
            })
        }
        None => Json::Null,
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
        ]},
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": tokens[unk],
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        }
    });
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| fail(e.to_string()))
}

/// Phi-3's chat-role tokens (`<|user|>`, `<|end|>`, ...) swallow the whitespace after them
/// in its `tokenizer.json`; GGUF has no field for that, so it follows from the name (as in
/// llama.cpp's Phi-3 rule). `<|endoftext|>` keeps it.
fn strips_following_space(token: &str) -> bool {
    token.starts_with("<|") && token.ends_with("|>") && token != "<|endoftext|>"
}

/// Every `(left, right)` split of each scored token whose halves are tokens, best score first.
fn merges(tokens: &[String], scores: &[f32], vocab: &Map<String, Json>) -> Vec<[String; 2]> {
    let mut ranked: Vec<(f32, usize, [String; 2])> = Vec::new();
    for (id, (text, &score)) in tokens.iter().zip(scores).enumerate() {
        if score >= 0.0 {
            continue;
        }
        for (split, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((score, id, [left.to_string(), right.to_string()]));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, _, pair)| pair).collect()
}
