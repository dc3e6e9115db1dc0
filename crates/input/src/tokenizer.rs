//! Loads a model's tokenizer from its folder: `tokenizer.json`, or the same tokenizer
//! Hugging Face builds from the slow files (`vocab.json` + `merges.txt` + added and
//! special tokens) of GPT-2 / CodeGen (Phi-2) and Qwen2 checkpoints.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

const TOKENIZER_JSON: &str = "tokenizer.json";
const VOCAB_JSON: &str = "vocab.json";
const MERGES_TXT: &str = "merges.txt";
const ADDED_TOKENS_JSON: &str = "added_tokens.json";
const SPECIAL_TOKENS_MAP_JSON: &str = "special_tokens_map.json";
const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";

/// Qwen2's pre-tokenisation pattern (`tokenization_qwen2.PRETOKENIZE_REGEX`).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `special_tokens_map.json` / `tokenizer_config.json` keys that name special tokens.
const SPECIAL_TOKEN_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];
const EXTRA_SPECIAL_KEYS: [&str; 2] = ["additional_special_tokens", "extra_special_tokens"];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "No tokenizer in {}: it needs {TOKENIZER_JSON}, or {VOCAB_JSON} and {MERGES_TXT}. \
         Re-download or re-import the model.",
        dir.display()
    )]
    Missing { dir: PathBuf },
    #[error("Could not read {}: {source}. Check the file exists and is readable.", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged or not a tokenizer file ({detail}). Re-download the model.", file.display())]
    Corrupt { file: PathBuf, detail: String },
    #[error(
        "{} names a {class} tokenizer, which ImpChat can only load from a {TOKENIZER_JSON}. \
         Add the model's {TOKENIZER_JSON} to its folder.",
        file.display()
    )]
    Unsupported { file: PathBuf, class: String },
    #[error("Could not turn token ids back into text: {0}")]
    Decode(String),
}

/// How the slow tokenizer files are turned into a fast tokenizer (HF's converters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlowKind {
    /// `GPT2Converter`: GPT-2, CodeGen (Phi-2).
    Gpt2,
    /// `Qwen2Tokenizer`: NFC, Qwen's split pattern, then byte-level without its regex.
    Qwen2,
}

/// Loads the tokenizer in a model folder, preferring `tokenizer.json`.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer, TokenizerError> {
    let json = dir.join(TOKENIZER_JSON);
    if json.is_file() {
        let bytes = read(&json)?;
        return Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Corrupt {
            file: json,
            detail: e.to_string(),
        });
    }
    let vocab = dir.join(VOCAB_JSON);
    let merges = dir.join(MERGES_TXT);
    if !vocab.is_file() || !merges.is_file() {
        return Err(TokenizerError::Missing {
            dir: dir.to_path_buf(),
        });
    }
    let config = read_optional_object(&dir.join(TOKENIZER_CONFIG_JSON))?;
    let kind = slow_kind(&dir.join(TOKENIZER_CONFIG_JSON), config.as_ref())?;
    let mut tokenizer = build_bpe(&vocab, &merges, kind)?;
    add_tokens(dir, config.as_ref(), &mut tokenizer)?;
    Ok(tokenizer)
}

fn slow_kind(file: &Path, config: Option<&Map<String, Value>>) -> Result<SlowKind, TokenizerError> {
    let class = config
        .and_then(|c| c.get("tokenizer_class"))
        .and_then(Value::as_str)
        .unwrap_or("GPT2Tokenizer");
    match class.trim_end_matches("Fast") {
        "GPT2Tokenizer" | "CodeGenTokenizer" => Ok(SlowKind::Gpt2),
        "Qwen2Tokenizer" => Ok(SlowKind::Qwen2),
        other => Err(TokenizerError::Unsupported {
            file: file.to_path_buf(),
            class: other.to_owned(),
        }),
    }
}

fn build_bpe(vocab: &Path, merges: &Path, kind: SlowKind) -> Result<Tokenizer, TokenizerError> {
    // Parsed here first so that a damaged vocabulary is reported by its own name.
    let vocab_json = read_json(vocab)?;
    if !vocab_json
        .as_object()
        .is_some_and(|m| m.values().all(Value::is_u64))
    {
        return Err(TokenizerError::Corrupt {
            file: vocab.to_path_buf(),
            detail: "expected an object mapping tokens to ids".into(),
        });
    }
    let (Some(vocab_str), Some(merges_str)) = (vocab.to_str(), merges.to_str()) else {
        return Err(TokenizerError::Read {
            file: vocab.to_path_buf(),
            source: std::io::Error::other("the folder's path is not valid UTF-8"),
        });
    };
    let bpe =
        BPE::from_file(vocab_str, merges_str)
            .build()
            .map_err(|e| TokenizerError::Corrupt {
                file: merges.to_path_buf(),
                detail: e.to_string(),
            })?;
    let mut tokenizer = Tokenizer::new(bpe);
    match kind {
        SlowKind::Gpt2 => {
            tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        SlowKind::Qwen2 => {
            let split = Split::new(
                SplitPattern::Regex(QWEN2_PATTERN.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Corrupt {
                file: vocab.to_path_buf(),
                detail: e.to_string(),
            })?;
            let pre: Vec<PreTokenizerWrapper> =
                vec![split.into(), ByteLevel::new(false, true, false).into()];
            tokenizer
                .with_normalizer(Some(NFC))
                .map_err(|e| TokenizerError::Corrupt {
                    file: vocab.to_path_buf(),
                    detail: e.to_string(),
                })?;
            tokenizer.with_pre_tokenizer(Some(Sequence::new(pre)));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(true, false, true)));
    Ok(tokenizer)
}

/// Adds the added and special tokens the way `PreTrainedTokenizerBase.from_pretrained`
/// does: `tokenizer_config.json`'s `added_tokens_decoder` if present, otherwise
/// `added_tokens.json` (special when also named in `special_tokens_map.json`); then the
/// named special tokens not added yet (new ids only for those missing from the vocabulary).
fn add_tokens(
    dir: &Path,
    config: Option<&Map<String, Value>>,
    tokenizer: &mut Tokenizer,
) -> Result<(), TokenizerError> {
    let map_file = dir.join(SPECIAL_TOKENS_MAP_JSON);
    let special_map = read_optional_object(&map_file)?;
    let mut specials: Vec<AddedToken> = Vec::new();
    for source in [config, special_map.as_ref()].into_iter().flatten() {
        collect_specials(source, &mut specials);
    }

    let config_file = dir.join(TOKENIZER_CONFIG_JSON);
    let added: Vec<(u32, AddedToken, PathBuf)> = match config
        .and_then(|c| c.get("added_tokens_decoder"))
        .and_then(Value::as_object)
    {
        Some(decoder) => {
            let mut out = Vec::with_capacity(decoder.len());
            for (id, token) in decoder {
                let corrupt = |detail: String| TokenizerError::Corrupt {
                    file: config_file.clone(),
                    detail,
                };
                let id: u32 = id
                    .parse()
                    .map_err(|_| corrupt(format!("added token id {id:?} is not a number")))?;
                let token = added_token_from_json(token, false)
                    .ok_or_else(|| corrupt(format!("added token {id} has no \"content\"")))?;
                out.push((id, token, config_file.clone()));
            }
            out
        }
        None => {
            let file = dir.join(ADDED_TOKENS_JSON);
            let mut out = Vec::new();
            if let Some(map) = read_optional_object(&file)? {
                for (content, id) in map {
                    let id = id
                        .as_u64()
                        .and_then(|id| u32::try_from(id).ok())
                        .ok_or_else(|| TokenizerError::Corrupt {
                            file: file.clone(),
                            detail: format!("the id of {content:?} is not a number"),
                        })?;
                    let special = specials.iter().any(|s| s.content == *content);
                    let token = AddedToken::from(content.clone(), special).normalized(!special);
                    out.push((id, token, file.clone()));
                }
            }
            out
        }
    };

    let mut added = added;
    added.sort_by_key(|(id, _, _)| *id);
    for (id, token, file) in added {
        let content = token.content.clone();
        let result = if token.special {
            tokenizer.add_special_tokens([token])
        } else {
            tokenizer.add_tokens([token])
        };
        result.map_err(|e| TokenizerError::Corrupt {
            file: file.clone(),
            detail: e.to_string(),
        })?;
        let got = tokenizer.token_to_id(&content);
        if got != Some(id) {
            return Err(TokenizerError::Corrupt {
                file,
                detail: format!(
                    "it gives {content:?} id {id}, but the vocabulary puts it at {}",
                    got.map_or("no id".to_owned(), |g| g.to_string())
                ),
            });
        }
    }
    // Named special tokens are matched whole in the text even when the base vocabulary
    // already has them (GPT-2's "<|endoftext|>"); they keep their vocabulary id.
    let added_already = tokenizer.get_added_tokens_decoder();
    let specials: Vec<AddedToken> = specials
        .into_iter()
        .filter(|s| !added_already.values().any(|t| t.content == s.content))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| TokenizerError::Corrupt {
            file: map_file,
            detail: e.to_string(),
        })?;
    Ok(())
}

fn collect_specials(source: &Map<String, Value>, out: &mut Vec<AddedToken>) {
    let mut push = |value: &Value| {
        if let Some(token) = added_token_from_json(value, true) {
            if !out.iter().any(|t| t.content == token.content) {
                out.push(token);
            }
        }
    };
    for key in SPECIAL_TOKEN_KEYS {
        if let Some(value) = source.get(key) {
            push(value);
        }
    }
    for key in EXTRA_SPECIAL_KEYS {
        if let Some(list) = source.get(key).and_then(Value::as_array) {
            list.iter().for_each(&mut push);
        }
    }
}

/// A token given as a plain string or as an `AddedToken` object (`{"content": ...}`).
fn added_token_from_json(value: &Value, force_special: bool) -> Option<AddedToken> {
    let flag =
        |key: &str, default: bool| value.get(key).and_then(Value::as_bool).unwrap_or(default);
    match value {
        Value::String(content) => Some(AddedToken::from(content.clone(), true).normalized(false)),
        Value::Object(_) => {
            let content = value.get("content")?.as_str()?.to_owned();
            let special = force_special || flag("special", false);
            Some(
                AddedToken::from(content, special)
                    .single_word(flag("single_word", false))
                    .lstrip(flag("lstrip", false))
                    .rstrip(flag("rstrip", false))
                    .normalized(flag("normalized", !special)),
            )
        }
        _ => None,
    }
}

fn read(file: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(file).map_err(|source| TokenizerError::Read {
        file: file.to_path_buf(),
        source,
    })
}

fn read_json(file: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_slice(&read(file)?).map_err(|e| TokenizerError::Corrupt {
        file: file.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Reads a JSON object file that a model folder may leave out.
fn read_optional_object(file: &Path) -> Result<Option<Map<String, Value>>, TokenizerError> {
    if !file.is_file() {
        return Ok(None);
    }
    match read_json(file)? {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(TokenizerError::Corrupt {
            file: file.to_path_buf(),
            detail: "expected a JSON object".into(),
        }),
    }
}
