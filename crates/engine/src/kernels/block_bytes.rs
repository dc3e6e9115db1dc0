//! Block bytes that a weight either owns or borrows from a shared mapping.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::KernelError;

/// The raw quantized blocks of one weight matrix.
#[derive(Clone)]
pub enum BlockBytes {
    /// Bytes copied into memory (e.g. from a candle `QTensor`).
    Owned(Vec<u8>),
    /// `range` of a buffer shared with others, typically an `Arc<memmap2::Mmap>` of the
    /// whole GGUF file: zero-copy, and the mapping lives as long as any weight using it.
    Mapped {
        map: Arc<dyn AsRef<[u8]> + Send + Sync>,
        range: Range<usize>,
    },
}

impl BlockBytes {
    /// Checks that a mapped range lies inside its mapping.
    pub(crate) fn validate(&self) -> Result<(), KernelError> {
        match self {
            Self::Owned(_) => Ok(()),
            Self::Mapped { map, range } => {
                let len = map.as_ref().as_ref().len();
                if range.start > range.end || range.end > len {
                    return Err(KernelError::RangeOutOfBounds {
                        start: range.start,
                        end: range.end,
                        len,
                    });
                }
                Ok(())
            }
        }
    }

    /// The bytes; call only after [`BlockBytes::validate`] succeeded.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Mapped { map, range } => &map.as_ref().as_ref()[range.clone()],
        }
    }
}

impl fmt::Debug for BlockBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Owned(bytes) => write!(f, "Owned({} bytes)", bytes.len()),
            Self::Mapped { range, .. } => write!(f, "Mapped({range:?})"),
        }
    }
}
