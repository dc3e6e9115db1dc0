//! The tokenizer as llama.cpp reads it from GGUF metadata (`tokenizer.ggml.*`): a GPT-2
//! byte-level BPE (`gpt2`, Phi-2 and Qwen1.5) or a SentencePiece-style vocabulary with
//! scores (`llama`, Phi-3).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use crate::config::{Family, ModelConfig};
use crate::error::ConvertError;

/// llama.cpp's `llama_token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template` is added by the caller).
pub fn tokenizer_metadata(
    dir: &Path,
    config: &ModelConfig,
) -> Result<Vec<(String, Value)>, ConvertError> {
    let tokenizer = impchat_input::tokenizer::load_tokenizer(dir).map_err(|source| {
        ConvertError::Tokenizer {
            dir: dir.to_path_buf(),
            source,
        }
    })?;
    let inconsistent = |detail: String| ConvertError::Vocabulary {
        dir: dir.to_path_buf(),
        detail,
    };
    let size = config.lm.vocab_size;
    let vocab = tokenizer.get_vocab(true);
    let mut tokens: Vec<Option<String>> = vec![None; size];
    for (text, &id) in &vocab {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            inconsistent(format!(
                "token {text:?} has id {id}, but the model's vocab_size is {size}"
            ))
        })?;
        *slot = Some(text.clone());
    }
    let added = tokenizer.get_added_tokens_decoder();
    let spm = config.family == Family::Phi3;
    let specials = SpecialTokens::read(dir, &vocab, config)?;
    for (name, id) in specials.named() {
        if id as usize >= size {
            return Err(inconsistent(format!(
                "the {name} token id {id} is outside the vocabulary of {size}"
            )));
        }
    }

    let merges = bpe_merges(&tokenizer)
        .map_err(|detail| inconsistent(format!("cannot read the BPE merges: {detail}")))?;
    let mut texts = Vec::with_capacity(size);
    let mut types = Vec::with_capacity(size);
    for (id, token) in tokens.into_iter().enumerate() {
        let Some(text) = token else {
            texts.push(Value::String(format!("[PAD{id}]")));
            types.push(Value::I32(TokenType::Unused as i32));
            continue;
        };
        let kind = match added.get(&(id as u32)) {
            _ if spm && Some(id as u32) == specials.unk => TokenType::Unknown,
            Some(token) if token.special => TokenType::Control,
            Some(_) => TokenType::UserDefined,
            None if spm && is_byte_token(&text) => TokenType::Byte,
            None => TokenType::Normal,
        };
        texts.push(Value::String(text));
        types.push(Value::I32(kind as i32));
    }

    let mut meta = vec![(
        "tokenizer.ggml.model".to_owned(),
        Value::String(if spm { "llama" } else { "gpt2" }.into()),
    )];
    if !spm {
        let pre = if config.family == Family::Qwen2 {
            "qwen2"
        } else {
            "phi-2"
        };
        meta.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    }
    if spm {
        // SentencePiece merges the highest-scoring pair first; a BPE merge's rank becomes
        // its result's (negated) score, so llama.cpp merges in the same order.
        let mut scores = vec![0f32; texts.len()];
        for (rank, (left, right)) in merges.iter().enumerate() {
            if let Some(&id) = vocab.get(&format!("{left}{right}")) {
                if let Some(score) = scores.get_mut(id as usize) {
                    if *score == 0.0 {
                        *score = -(rank as f32) - 1.0;
                    }
                }
            }
        }
        meta.push(("tokenizer.ggml.tokens".into(), Value::Array(texts)));
        meta.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.into_iter().map(Value::F32).collect()),
        ));
    } else {
        meta.push(("tokenizer.ggml.tokens".into(), Value::Array(texts)));
        let merges = merges
            .into_iter()
            .map(|(l, r)| Value::String(format!("{l} {r}")))
            .collect();
        meta.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
    }
    meta.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    for (name, id) in specials.named() {
        meta.push((format!("tokenizer.ggml.{name}_token_id"), Value::U32(id)));
    }
    meta.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(specials.add_bos),
    ));
    meta.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(specials.add_eos),
    ));
    Ok(meta)
}

fn is_byte_token(text: &str) -> bool {
    text.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && text[3..5].chars().all(|c| c.is_ascii_hexdigit())
}

/// The BPE merges in rank order, read from the tokenizer's serialised form (the only
/// public way to get them out of a `tokenizers` BPE model).
fn bpe_merges(tokenizer: &tokenizers::Tokenizer) -> Result<Vec<(String, String)>, String> {
    let json: Json = serde_json::from_str(&tokenizer.to_string(false).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let Some(merges) = json.pointer("/model/merges").and_then(Json::as_array) else {
        return Ok(Vec::new());
    };
    merges
        .iter()
        .map(|m| match m {
            Json::String(s) => s
                .split_once(' ')
                .map(|(l, r)| (l.to_owned(), r.to_owned()))
                .ok_or_else(|| format!("merge {s:?}")),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(l), Json::String(r)] => Ok((l.clone(), r.clone())),
                _ => Err(format!("merge {m}")),
            },
            other => Err(format!("merge {other}")),
        })
        .collect()
}

struct SpecialTokens {
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
}

impl SpecialTokens {
    /// Token strings from tokenizer_config.json / special_tokens_map.json, ids from
    /// config.json where the files leave them out. The end-of-sequence id is config.json's
    /// `eos_token_id` first: that is the token Imp's generation stops at (`</s>`,
    /// `<|im_end|>`, `<|end|>`), where the tokenizer files often name `<|endoftext|>`.
    fn read(
        dir: &Path,
        vocab: &HashMap<String, u32>,
        config: &ModelConfig,
    ) -> Result<Self, ConvertError> {
        let tokenizer_config = read_object(&dir.join("tokenizer_config.json"))?;
        let special_map = read_object(&dir.join("special_tokens_map.json"))?;
        let named = |key: &str| -> Option<u32> {
            [&special_map, &tokenizer_config]
                .into_iter()
                .find_map(|source| {
                    let value = source.get(key)?;
                    let text = value
                        .as_str()
                        .or_else(|| value.get("content").and_then(Json::as_str))?;
                    vocab.get(text).copied()
                })
        };
        let flag = |key: &str, default: bool| {
            tokenizer_config
                .get(key)
                .and_then(Json::as_bool)
                .unwrap_or(default)
        };
        let lm = &config.lm;
        Ok(Self {
            bos: named("bos_token").or(lm.bos_token_id),
            eos: lm.eos_token_id.or_else(|| named("eos_token")),
            unk: named("unk_token"),
            pad: named("pad_token").or(lm.pad_token_id),
            add_bos: flag("add_bos_token", config.family == Family::Phi3),
            add_eos: flag("add_eos_token", false),
        })
    }

    fn named(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            ("bos", self.bos),
            ("eos", self.eos),
            ("unknown", self.unk),
            ("padding", self.pad),
        ]
        .into_iter()
        .filter_map(|(name, id)| id.map(|id| (name, id)))
    }
}

fn read_object(path: &Path) -> Result<serde_json::Map<String, Json>, ConvertError> {
    if !path.is_file() {
        return Ok(serde_json::Map::new());
    }
    let bytes = std::fs::read(path).map_err(|source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(ConvertError::Corrupt {
            path: path.to_path_buf(),
            detail: "expected a JSON object".into(),
        }),
        Err(e) => Err(ConvertError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}
