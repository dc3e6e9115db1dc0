//! GGUF headers that claim impossible tensors are refused as corrupt, not panicked on
//! (found by tests/fuzz's `gguf` target).

use std::io::Write;

use impchat_engine::gguf::GgufFile;
use impchat_engine::EngineError;

/// A GGUF v3 file with no metadata and one F32 tensor of `dims` (ggml order) at `offset`.
fn gguf_with_tensor(dims: &[u64], offset: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend(0u64.to_le_bytes()); // metadata entries
    out.extend(1u64.to_le_bytes());
    out.push(b't');
    out.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend(d.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(offset.to_le_bytes());
    out.resize(out.len().next_multiple_of(32) + 64, 0);
    out
}

fn open(bytes: &[u8]) -> Result<GgufFile, EngineError> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write");
    GgufFile::open(file.path())
}

fn assert_corrupt(bytes: &[u8], expect: &str) {
    match open(bytes) {
        Err(EngineError::CorruptWeights { reason, .. }) => {
            assert!(reason.contains(expect), "{reason}")
        }
        other => panic!("expected CorruptWeights, got {other:?}"),
    }
}

#[test]
fn dimensions_whose_product_overflows_are_corrupt() {
    assert_corrupt(
        &gguf_with_tensor(&[1 << 40, 1 << 40], 0),
        "claims dimensions",
    );
}

#[test]
fn an_empty_tensor_whose_other_dimensions_overflow_is_corrupt() {
    assert_corrupt(
        &gguf_with_tensor(&[1 << 40, 1 << 40, 0], 0),
        "claims dimensions",
    );
}

#[test]
fn a_tensor_whose_byte_length_overflows_is_corrupt() {
    // 2^62 f32 values fit in usize, their 2^64 bytes do not.
    assert_corrupt(&gguf_with_tensor(&[1 << 62], 0), "claims dimensions");
}

#[test]
fn an_offset_past_the_address_space_is_corrupt() {
    assert_corrupt(&gguf_with_tensor(&[4], u64::MAX - 15), "claims dimensions");
}

#[test]
fn a_small_tensor_inside_the_file_opens() {
    let gguf = open(&gguf_with_tensor(&[4], 0)).expect("opens");
    assert_eq!(gguf.tensor_bytes("t").expect("bytes").bytes.len(), 16);
}

#[test]
fn a_misaligned_tensor_is_corrupt() {
    // Read in place, an f32 tensor at an odd offset would be cast from a misaligned pointer.
    assert_corrupt(&gguf_with_tensor(&[4], 3), "not a multiple of 8");
}

#[test]
fn an_empty_stack_of_matrices_is_not_stacked() {
    // (0, 32) f32 matrices: stacking them would hand candle an empty, unaligned buffer.
    let gguf = open(&gguf_with_tensor(&[32, 0], 0)).expect("opens");
    assert!(gguf
        .qtensor_stacked(&["t".to_string()])
        .expect("no error")
        .is_none());
}
