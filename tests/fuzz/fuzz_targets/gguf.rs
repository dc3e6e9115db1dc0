//! A `.gguf` file the user points `--model` at: the engine's reader opens it (header,
//! metadata, tensor table checked against the file's length) and the loaders' accessors
//! read every tensor as they would: raw bytes, a copied QTensor widened to f32, and for
//! matrices the repacked kernel layouts of `GgufFile::linear`.
#![no_main]

use std::io::Write;

use impchat_engine::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

/// Keeps one input's widened tensors small; the bytes themselves are bounded by the input.
const MAX_WIDENED_VALUES: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).and_then(|()| file.flush()).is_err() {
        return;
    }
    let Ok(gguf) = GgufFile::open(file.path()) else {
        return;
    };
    let _ = gguf.architecture();
    let _ = gguf.parameter_count();
    let _ = gguf.storage_dtype();
    for key in [
        "phi2.context_length",
        "phi2.block_count",
        "qwen2.embedding_length",
    ] {
        let _ = gguf.usize(key);
    }
    let _ = gguf.f64_or("phi2.attention.layer_norm_epsilon", 1e-5);
    let names: Vec<String> = gguf.content().tensor_infos.keys().cloned().collect();
    for name in &names {
        let Ok(tensor) = gguf.tensor_bytes(name) else {
            continue;
        };
        let shape = tensor.shape.to_vec();
        let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if values.is_some_and(|n| n <= MAX_WIDENED_VALUES) {
            let _ = gguf.f32(name);
        }
        if let (Some(base), [rows, cols]) = (name.strip_suffix(".weight"), shape.as_slice()) {
            let _ = gguf.linear(base, *cols, *rows, false);
            let _ = gguf.embedding(name, (*rows, *cols));
        }
    }
    let _ = gguf.qtensor_stacked(&names);
});
