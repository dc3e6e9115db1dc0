//! Loads a model's tokenizer from its folder: `tokenizer.json`, or the same tokenizer
//! Hugging Face builds from the slow files (`vocab.json` + `merges.txt` + added and
//! special tokens) of GPT-2 / CodeGen (Phi-2) and Qwen2 checkpoints.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::files::{caps, read_capped, regular_file_len, FileError};

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
    #[error(transparent)]
    File(#[from] FileError),
}

impl TokenizerError {
    fn corrupt(file: &Path, detail: impl ToString) -> Self {
        Self::Corrupt {
            file: file.to_path_buf(),
            detail: detail.to_string(),
        }
    }
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
    if regular_file_len(&json)?.is_some() {
        let mut tokenizer =
            Tokenizer::from_bytes(read(&json)?).map_err(|e| TokenizerError::corrupt(&json, e))?;
        // Prompts are tokenised whole: a saved truncation or padding setting would cut or
        // pad them silently.
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenizerError::corrupt(&json, e))?;
        tokenizer.with_padding(None);
        return Ok(tokenizer);
    }
    let vocab = dir.join(VOCAB_JSON);
    let merges = dir.join(MERGES_TXT);
    if regular_file_len(&vocab)?.is_none() || regular_file_len(&merges)?.is_none() {
        return Err(TokenizerError::Missing {
            dir: dir.to_path_buf(),
        });
    }
    let config_file = dir.join(TOKENIZER_CONFIG_JSON);
    let config = read_optional_object(&config_file)?;
    let kind = slow_kind(&config_file, config.as_ref())?;
    let mut tokenizer = build_bpe(&vocab, &merges, kind)?;

    let map_file = dir.join(SPECIAL_TOKENS_MAP_JSON);
    let special_map = read_optional_object(&map_file)?;
    let mut specials: Vec<AddedToken> = Vec::new();
    for source in [config.as_ref(), special_map.as_ref()]
        .into_iter()
        .flatten()
    {
        collect_specials(source, &mut specials);
    }
    // As `PreTrainedTokenizerBase.from_pretrained`: the config's `added_tokens_decoder`
    // wins over the legacy `added_tokens.json`.
    let added = match config
        .as_ref()
        .and_then(|c| c.get("added_tokens_decoder"))
        .and_then(Value::as_object)
    {
        Some(decoder) => added_from_config(&config_file, decoder)?,
        None => added_from_file(&dir.join(ADDED_TOKENS_JSON), &specials)?,
    };
    add_at_their_ids(&mut tokenizer, added)?;
    add_specials(&mut tokenizer, specials, &map_file)?;
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
    let vocab_map = read_vocab(vocab)?;
    let merge_list = read_merges(merges)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map, merge_list)
        .build()
        .map_err(|e| TokenizerError::corrupt(merges, e))?;
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
            .map_err(|e| TokenizerError::corrupt(vocab, e))?;
            let pre: Vec<PreTokenizerWrapper> =
                vec![split.into(), ByteLevel::new(false, true, false).into()];
            tokenizer
                .with_normalizer(Some(NFC))
                .map_err(|e| TokenizerError::corrupt(vocab, e))?;
            tokenizer.with_pre_tokenizer(Some(Sequence::new(pre)));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(true, false, true)));
    Ok(tokenizer)
}

fn read_vocab(file: &Path) -> Result<Vocab, TokenizerError> {
    let Value::Object(map) = read_json(file)? else {
        return Err(TokenizerError::corrupt(
            file,
            "expected an object mapping tokens to ids",
        ));
    };
    map.into_iter()
        .map(
            |(token, id)| match id.as_u64().and_then(|id| u32::try_from(id).ok()) {
                Some(id) => Ok((token, id)),
                None => Err(TokenizerError::corrupt(
                    file,
                    format!("the id of {token:?} is not a number"),
                )),
            },
        )
        .collect()
}

/// `merges.txt`: an optional `#version` line, then one `left right` pair per line.
fn read_merges(file: &Path) -> Result<Merges, TokenizerError> {
    let bytes = read(file)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| TokenizerError::corrupt(file, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with("#version") && !line.is_empty())
        .map(
            |(index, line)| match line.split(' ').collect::<Vec<_>>()[..] {
                [left, right] => Ok((left.to_owned(), right.to_owned())),
                _ => Err(TokenizerError::corrupt(
                    file,
                    format!("line {} is not a pair of tokens: {line:?}", index + 1),
                )),
            },
        )
        .collect()
}

/// One added token with the id its file gives it.
struct Added {
    id: u32,
    token: AddedToken,
    file: PathBuf,
}

fn added_from_config(
    file: &Path,
    decoder: &Map<String, Value>,
) -> Result<Vec<Added>, TokenizerError> {
    decoder
        .iter()
        .map(|(id, token)| {
            let id: u32 = id.parse().map_err(|_| {
                TokenizerError::corrupt(file, format!("added token id {id:?} is not a number"))
            })?;
            let token = added_token_from_json(token, false).ok_or_else(|| {
                TokenizerError::corrupt(file, format!("added token {id} has no \"content\""))
            })?;
            Ok(Added {
                id,
                token,
                file: file.to_path_buf(),
            })
        })
        .collect()
}

/// Legacy `added_tokens.json`: a token is special when a special-token key also names
/// it, and only non-special ones are normalised.
fn added_from_file(file: &Path, specials: &[AddedToken]) -> Result<Vec<Added>, TokenizerError> {
    let Some(map) = read_optional_object(file)? else {
        return Ok(Vec::new());
    };
    map.into_iter()
        .map(|(content, id)| {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    TokenizerError::corrupt(file, format!("the id of {content:?} is not a number"))
                })?;
            let special = specials.iter().any(|s| s.content == content);
            let token = AddedToken::from(content, special).normalized(!special);
            Ok(Added {
                id,
                token,
                file: file.to_path_buf(),
            })
        })
        .collect()
}

/// Adds tokens in id order, checking each lands on the id its file gives it (the model's
/// embedding rows are laid out by those ids).
fn add_at_their_ids(
    tokenizer: &mut Tokenizer,
    mut added: Vec<Added>,
) -> Result<(), TokenizerError> {
    added.sort_by_key(|a| a.id);
    for Added { id, token, file } in added {
        let content = token.content.clone();
        let result = if token.special {
            tokenizer.add_special_tokens([token])
        } else {
            tokenizer.add_tokens([token])
        };
        result.map_err(|e| TokenizerError::corrupt(&file, e))?;
        let got = tokenizer.token_to_id(&content);
        if got != Some(id) {
            let got = got.map_or("no id".to_owned(), |g| g.to_string());
            return Err(TokenizerError::corrupt(
                &file,
                format!("it gives {content:?} id {id}, but the vocabulary puts it at {got}"),
            ));
        }
    }
    Ok(())
}

/// Named special tokens are matched whole in the text even when the base vocabulary
/// already has them (GPT-2's "<|endoftext|>", which keeps its id); missing ones get new ids.
fn add_specials(
    tokenizer: &mut Tokenizer,
    specials: Vec<AddedToken>,
    file: &Path,
) -> Result<(), TokenizerError> {
    let added_already = tokenizer.get_added_tokens_decoder();
    let specials: Vec<AddedToken> = specials
        .into_iter()
        .filter(|s| !added_already.values().any(|t| t.content == s.content))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| TokenizerError::corrupt(file, e))?;
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
    read_capped(file, caps::TOKENIZER).map_err(|e| match e {
        FileError::Io { path, source } => TokenizerError::Read { file: path, source },
        other => TokenizerError::File(other),
    })
}

fn read_json(file: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_slice(&read(file)?).map_err(|e| TokenizerError::corrupt(file, e))
}

/// Reads a JSON object file that a model folder may leave out.
fn read_optional_object(file: &Path) -> Result<Option<Map<String, Value>>, TokenizerError> {
    if regular_file_len(file)?.is_none() {
        return Ok(None);
    }
    match read_json(file)? {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(TokenizerError::corrupt(file, "expected a JSON object")),
    }
}
