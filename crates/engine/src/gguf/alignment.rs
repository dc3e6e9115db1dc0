//! Finds `general.alignment` in a GGUF header before candle reads it: candle 0.11 divides by
//! that value unchecked, so a crafted 0 would panic inside its reader (and abort a process
//! whose panic hook aborts, as a fuzzer's does) instead of being reported as a bad file.
//!
//! Only the key-value section is walked, element by element, and every length is checked
//! against the bytes that remain, so a header claiming huge counts costs nothing.

const MAGIC: &[u8; 4] = b"GGUF";
const ALIGNMENT_KEY: &[u8] = b"general.alignment";
/// Arrays of arrays deeper than this are not walked; candle itself does not nest them.
const MAX_NESTING: u32 = 4;

/// The header's `general.alignment` as an unsigned number, when the header has one that can
/// be read; `None` when it has none, or the header is too damaged to walk (candle's reader
/// then reports what is wrong).
pub(crate) fn declared_alignment(bytes: &[u8]) -> Option<u64> {
    let mut header = Reader { bytes, version: 0 };
    if header.take(4)? != MAGIC {
        return None;
    }
    header.version = header.u32()?;
    let _tensor_count = header.count()?;
    let kv_count = header.count()?;
    for _ in 0..kv_count {
        let key = header.string()?;
        let value_type = header.u32()?;
        if key == ALIGNMENT_KEY {
            return header.unsigned(value_type);
        }
        header.skip_value(value_type, 0)?;
    }
    None
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// GGUF version 1 wrote counts and string lengths as u32, later versions as u64.
    version: u32,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N as u64)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn count(&mut self) -> Option<u64> {
        if self.version == 1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.count()?;
        self.take(len)
    }

    /// Reads a value of an integer type as u64; a negative or non-integer one is `None`.
    fn unsigned(&mut self, value_type: u32) -> Option<u64> {
        match value_type {
            0 => self.array::<1>().map(|b| u64::from(b[0])),
            1 => u64::try_from(i8::from_le_bytes(self.array()?)).ok(),
            2 => self.array().map(|b| u64::from(u16::from_le_bytes(b))),
            3 => u64::try_from(i16::from_le_bytes(self.array()?)).ok(),
            4 => self.u32().map(u64::from),
            5 => u64::try_from(i32::from_le_bytes(self.array()?)).ok(),
            10 => self.u64(),
            11 => u64::try_from(i64::from_le_bytes(self.array()?)).ok(),
            _ => None,
        }
    }

    fn skip_value(&mut self, value_type: u32, depth: u32) -> Option<()> {
        match value_type {
            8 => self.string().map(drop),
            9 => {
                if depth >= MAX_NESTING {
                    return None;
                }
                let element_type = self.u32()?;
                let count = self.count()?;
                match fixed_size(element_type) {
                    Some(size) => self.take(count.checked_mul(size)?).map(drop),
                    // Every string or array element takes at least 4 bytes, so this loop
                    // ends when the bytes do, whatever `count` claims.
                    None => (0..count).try_for_each(|_| self.skip_value(element_type, depth + 1)),
                }
            }
            other => self.take(fixed_size(other)?).map(drop),
        }
    }
}

/// Bytes of one value of a scalar GGUF type; `None` for strings, arrays and unknown types.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for (key, value_type, value) in kvs {
            bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(&value_type.to_le_bytes());
            bytes.extend_from_slice(value);
        }
        bytes
    }

    #[test]
    fn the_alignment_is_found_after_strings_and_arrays() {
        let mut name = 5u64.to_le_bytes().to_vec();
        name.extend_from_slice(b"phi-2");
        let mut tokens = 8u32.to_le_bytes().to_vec();
        tokens.extend_from_slice(&2u64.to_le_bytes());
        for token in ["a", "bc"] {
            tokens.extend_from_slice(&(token.len() as u64).to_le_bytes());
            tokens.extend_from_slice(token.as_bytes());
        }
        let mut scores = 6u32.to_le_bytes().to_vec();
        scores.extend_from_slice(&2u64.to_le_bytes());
        scores.extend_from_slice(&[0; 8]);
        let bytes = header(&[
            ("general.name", 8, name),
            ("tokenizer.ggml.tokens", 9, tokens),
            ("tokenizer.ggml.scores", 9, scores),
            ("general.alignment", 4, 0u32.to_le_bytes().to_vec()),
        ]);
        assert_eq!(declared_alignment(&bytes), Some(0));
        let bytes = header(&[("general.alignment", 10, 64u64.to_le_bytes().to_vec())]);
        assert_eq!(declared_alignment(&bytes), Some(64));
    }

    #[test]
    fn huge_claimed_counts_end_the_walk_without_allocating() {
        let mut array = 8u32.to_le_bytes().to_vec();
        array.extend_from_slice(&u64::MAX.to_le_bytes());
        let bytes = header(&[("tokenizer.ggml.tokens", 9, array)]);
        assert_eq!(declared_alignment(&bytes), None);
        let mut fixed = 4u32.to_le_bytes().to_vec();
        fixed.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(declared_alignment(&header(&[("x", 9, fixed)])), None);
        assert_eq!(declared_alignment(b"GGU"), None);
        assert_eq!(declared_alignment(&header(&[])), None);
    }
}
