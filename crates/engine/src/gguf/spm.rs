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
    // Optional: byte fallback spells out anything the vocabulary lacks.
    let unk = token_id("tokenizer.ggml.unknown_token_id")
        .or_else(|| types.iter().position(|&t| t == TYPE_UNKNOWN));
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
            Some(*id) == unk
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
            "unk_token": unk.map(|unk| &tokens[unk]),
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

#[cfg(test)]
mod tests {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;

    /// A vocabulary of the bytes' `<0xNN>` tokens plus `▁`, `a`, `b`, `▁a` and `ab`, with
    /// `unk` first when asked, as a GGUF file.
    fn spm_file(with_unk: bool, dir: &std::path::Path) -> GgufFile {
        let mut tokens: Vec<String> = Vec::new();
        let mut types = Vec::new();
        if with_unk {
            tokens.push("<unk>".into());
            types.push(TYPE_UNKNOWN as i32);
        }
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6); // llama.cpp's BYTE
        }
        for text in [SPACE, "a", "b", "\u{2581}a", "ab"] {
            tokens.push(text.into());
            types.push(1); // NORMAL
        }
        let scores: Vec<Value> = (0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect();
        let metadata = [
            ("general.architecture", Value::String("phi3".into())),
            ("tokenizer.ggml.model", Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ),
            ("tokenizer.ggml.scores", Value::Array(scores)),
            (
                "tokenizer.ggml.token_type",
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
        ];
        let tensor = QTensor::quantize(
            &Tensor::zeros((1, 32), candle_core::DType::F32, &Device::Cpu).expect("zeros"),
            GgmlDType::F32,
        )
        .expect("tensor");
        let path = dir.join(format!("spm-{with_unk}.gguf"));
        let mut file = std::fs::File::create(&path).expect("create");
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut file, &metadata, &[("t", &tensor)]).expect("write");
        GgufFile::open(&path).expect("open")
    }

    /// SentencePiece vocabularies normally have `<unk>`, but byte fallback needs none: a
    /// file without one still loads, and spells out what it lacks in byte tokens.
    #[test]
    fn a_vocabulary_without_an_unknown_token_falls_back_to_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for with_unk in [true, false] {
            let tokenizer = tokenizer(&spm_file(with_unk, dir.path())).expect("tokenizer");
            let ids = tokenizer
                .encode("ab a!", false)
                .expect("encode")
                .get_ids()
                .to_vec();
            let first = u32::from(with_unk);
            let words = first + 256;
            // "▁ab" has no token, and "▁a" outscores "ab": "▁a" "b"; then "▁a"; "!" has
            // no token but its byte, 0x21.
            assert_eq!(
                ids,
                vec![words + 3, words + 2, words + 3, first + 0x21],
                "with <unk>: {with_unk}"
            );
        }
    }
}
