//! Block bytes that a weight either owns or borrows from a shared mapping.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::QTensor;

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

impl BlockBytes {
    /// All the blocks of a CPU `QTensor`, borrowed without a copy (`None` for a tensor on
    /// another device, whose bytes candle would have to copy out).
    pub fn from_qtensor(tensor: Arc<QTensor>) -> Option<Self> {
        let bytes = QTensorBytes::new(tensor)?;
        let len = bytes.as_ref().len();
        Some(Self::Mapped {
            map: Arc::new(bytes),
            range: 0..len,
        })
    }
}

/// The block bytes of a CPU `QTensor`, kept alive with the tensor.
///
/// No unsafe code is needed: every borrow goes through `QTensor::data`, which for a CPU
/// tensor hands out its own storage (`Cow::Borrowed`) for as long as `&self` lives, and
/// the `Arc` keeps the tensor (and its never-mutated storage) alive for as long as any
/// weight holds these bytes.
pub struct QTensorBytes(Arc<QTensor>);

impl QTensorBytes {
    /// `None` unless the tensor lends its bytes (CPU storage).
    pub fn new(tensor: Arc<QTensor>) -> Option<Self> {
        match tensor.data() {
            Ok(Cow::Borrowed(_)) => {}
            _ => return None,
        }
        Some(Self(tensor))
    }
}

impl AsRef<[u8]> for QTensorBytes {
    fn as_ref(&self) -> &[u8] {
        match self.0.data() {
            Ok(Cow::Borrowed(bytes)) => bytes,
            // `new` admits only tensors that lend their bytes, and a tensor's storage never
            // changes device; an empty slice would fail `BlockBytes::validate` anyway.
            _ => &[],
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
