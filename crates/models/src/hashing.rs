//! File digests: SHA-256 (what the manifest records and LFS oids use) and the git blob SHA-1
//! the hub reports as the ETag of small, non-LFS files.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

const READ_CHUNK: usize = 1 << 20;

/// What the hub promises a file hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedDigest {
    /// LFS object id: SHA-256 of the content, lowercase hex.
    Sha256(String),
    /// Git blob id: SHA-1 of `"blob {len}\0"` followed by the content, lowercase hex.
    GitSha1(String),
}

impl ExpectedDigest {
    /// Parses an ETag value as sent by the hub (quoted, maybe weak).
    pub fn from_etag(etag: &str) -> Option<Self> {
        let value = etag
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_ascii_lowercase();
        if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match value.len() {
            64 => Some(Self::Sha256(value)),
            40 => Some(Self::GitSha1(value)),
            _ => None,
        }
    }

    pub fn hex(&self) -> &str {
        match self {
            Self::Sha256(hex) | Self::GitSha1(hex) => hex,
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::GitSha1(_) => "git-sha1",
        }
    }
}

/// Computes SHA-256 and the git blob SHA-1 of one stream in a single pass.
pub struct StreamHasher {
    sha256: Sha256,
    git_sha1: Sha1,
}

impl StreamHasher {
    /// `total_len` must be the final length: git hashes it into its header first.
    pub fn new(total_len: u64) -> Self {
        let mut git_sha1 = Sha1::new();
        git_sha1.update(format!("blob {total_len}\0").as_bytes());
        Self {
            sha256: Sha256::new(),
            git_sha1,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.git_sha1.update(bytes);
    }

    /// Feeds the whole content of a reader (used to re-hash a resumed `.part`).
    pub fn update_from(&mut self, mut reader: impl Read) -> io::Result<u64> {
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                return Ok(total);
            }
            self.update(&buffer[..n]);
            total += n as u64;
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            git_sha1: hex::encode(self.git_sha1.finalize()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub git_sha1: String,
}

impl Digests {
    /// The digest that `expected` is expressed in.
    pub fn matching(&self, expected: &ExpectedDigest) -> &str {
        match expected {
            ExpectedDigest::Sha256(_) => &self.sha256,
            ExpectedDigest::GitSha1(_) => &self.git_sha1,
        }
    }

    pub fn satisfies(&self, expected: &ExpectedDigest) -> bool {
        self.matching(expected) == expected.hex()
    }
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Both digests of a file.
pub fn digest_file(path: &Path) -> io::Result<Digests> {
    let len = std::fs::metadata(path)?.len();
    let mut hasher = StreamHasher::new(len);
    hasher.update_from(File::open(path)?)?;
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let mut hasher = StreamHasher::new(6);
        hasher.update(b"hello\n");
        let digests = hasher.finish();
        assert_eq!(digests.git_sha1, "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(
            digests.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn etags_parse_by_length() {
        let lfs = format!("\"{}\"", "a".repeat(64));
        assert_eq!(
            ExpectedDigest::from_etag(&lfs),
            Some(ExpectedDigest::Sha256("a".repeat(64)))
        );
        let weak = format!("W/\"{}\"", "B".repeat(40));
        assert_eq!(
            ExpectedDigest::from_etag(&weak),
            Some(ExpectedDigest::GitSha1("b".repeat(40)))
        );
        assert_eq!(ExpectedDigest::from_etag("\"abc\""), None);
        assert_eq!(ExpectedDigest::from_etag(&"z".repeat(64)), None);
    }
}
