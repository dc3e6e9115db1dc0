//! A valid byte-level BPE tokenizer of any vocabulary size, written as the slow tokenizer
//! files of a Hugging Face checkpoint (`vocab.json`, `merges.txt`, `tokenizer_config.json`).
//!
//! The 256 GPT-2 byte symbols come first, then merged tokens: every pair of byte symbols,
//! then pair + byte, until the vocabulary is full. There is deliberately no end-of-turn
//! or end-of-text token, so a random-weight model can never stop before the benchmark's
//! token count. Decoded text is meaningless; only the ids' shapes matter.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::shapes::LmFamily;

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the rest
/// are shifted past U+0100.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or('?')
            }
        })
        .collect()
}

/// Tokens by id, and merges (left, right) by rank.
pub struct Vocabulary {
    pub tokens: Vec<String>,
    pub merges: Vec<(String, String)>,
}

/// The tokens (by id) and the merges (by rank) of a `size`-token vocabulary.
///
/// Phi-3's tokenizer becomes a SentencePiece-style vocabulary in GGUF, where llama.cpp
/// needs the `<0xNN>` byte tokens; they are ordinary (unreachable) entries here.
pub fn build(size: usize, family: LmFamily) -> Result<Vocabulary, String> {
    let symbols: Vec<String> = byte_symbols().into_iter().map(String::from).collect();
    let mut tokens = symbols.clone();
    if family == LmFamily::Phi3 {
        tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    }
    if size < tokens.len() {
        return Err(format!(
            "a vocabulary of {size} tokens cannot hold the {} byte tokens",
            tokens.len()
        ));
    }
    let wanted = size - tokens.len();
    let mut merges = Vec::with_capacity(wanted);
    // Pairs of byte symbols first, then pair + byte: each merge joins existing tokens.
    'pairs: for a in &symbols {
        for b in &symbols {
            if merges.len() == wanted {
                break 'pairs;
            }
            merges.push((a.clone(), b.clone()));
        }
    }
    'triples: for a in &symbols {
        for b in &symbols {
            for c in &symbols {
                if merges.len() == wanted {
                    break 'triples;
                }
                merges.push((format!("{a}{b}"), c.clone()));
            }
        }
    }
    tokens.extend(merges.iter().map(|(left, right)| format!("{left}{right}")));
    if tokens.len() < size {
        return Err(format!("cannot build {size} distinct byte-level tokens"));
    }
    Ok(Vocabulary { tokens, merges })
}

/// The token a random-weight model is steered to repeat: "Ġa" (" a"). Like a real
/// answer's words it starts with a space, and " a a a…" tokenizes back into the same
/// tokens, so the answer re-enters a follow-up prompt exactly as a real model's does.
pub fn answer_token(size: usize) -> Option<usize> {
    let id = 256 + usize::from(b' ') * 256 + usize::from(b'a');
    (id < size).then_some(id)
}

/// Writes `vocab.json`, `merges.txt` and `tokenizer_config.json` into `dir`.
pub fn write_tokenizer(dir: &Path, size: usize, family: LmFamily) -> io::Result<()> {
    let Vocabulary { tokens, merges } = build(size, family).map_err(io::Error::other)?;
    let vocab: Map<String, Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| (token, json!(id)))
        .collect();
    std::fs::write(dir.join("vocab.json"), Value::Object(vocab).to_string())?;

    let mut text = String::from("#version: 0.2\n");
    for (left, right) in &merges {
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{left} {right}");
    }
    std::fs::write(dir.join("merges.txt"), text)?;

    let class = match family {
        LmFamily::Qwen2 => "Qwen2Tokenizer",
        LmFamily::Phi2 => "CodeGenTokenizer",
        LmFamily::Phi3 => "GPT2Tokenizer",
    };
    let config = json!({
        "tokenizer_class": class,
        "add_bos_token": false,
        "add_eos_token": false,
        "add_prefix_space": false,
        "model_max_length": 4096,
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_have_the_exact_size_and_unique_tokens() {
        for (size, family) in [
            (51_200, LmFamily::Phi2),
            (151_936, LmFamily::Qwen2),
            (32_064, LmFamily::Phi3),
        ] {
            let Vocabulary { tokens, merges } = build(size, family).expect("builds");
            assert_eq!(tokens.len(), size);
            let unique: std::collections::HashSet<&String> = tokens.iter().collect();
            assert_eq!(unique.len(), size, "{family:?} tokens repeat");
            // Every merge joins two tokens that exist before it.
            let first = size - merges.len();
            for (rank, (left, right)) in merges.iter().enumerate() {
                assert_eq!(tokens[first + rank], format!("{left}{right}"));
            }
        }
    }

    #[test]
    fn every_byte_has_its_own_symbol() {
        let symbols = byte_symbols();
        let unique: std::collections::HashSet<&char> = symbols.iter().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(symbols[b' ' as usize], 'Ġ');
        assert_eq!(symbols[b'a' as usize], 'a');
    }

    #[test]
    fn the_answer_token_is_space_a() {
        let tokens = build(51_200, LmFamily::Phi2).expect("builds").tokens;
        let id = answer_token(51_200).expect("in the vocabulary");
        assert_eq!(tokens[id], "Ġa");
        assert_eq!(answer_token(1024), None);
    }

    #[test]
    fn too_small_a_vocabulary_is_refused() {
        assert!(build(100, LmFamily::Phi2).is_err());
    }
}
