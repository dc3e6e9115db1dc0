//! Reads the language-model GGUF written by `impchat-convert` (llama.cpp's names and
//! metadata keys): checks the file against its own header before any tensor is read,
//! then hands out quantized [`Linear`]s, f32 norms/biases and typed metadata.
//!
//! The file is memory-mapped: tensors are built straight from the mapped bytes, with no
//! intermediate read buffer, and the pages of a tensor already copied are handed back.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Tensor};
use candle_nn::{LayerNorm, RmsNorm};
use memmap2::Mmap;

use crate::error::EngineError;
use crate::kernels::{
    BlockBytes, KernelError, Q4KInterleaved, Q4_0Matrix, Q6KInterleaved, Q8_0Matrix,
};
use crate::linear::{own_interleaved_kernels_are_faster, Linear};

/// Tensors are read in place from the page-aligned map as blocks of f16/f32 fields, so each
/// must start on an 8-byte boundary (GGUF aligns them to 32 unless `general.alignment` says
/// otherwise); a misaligned one would be undefined behaviour in candle's block casts.
const TENSOR_ALIGNMENT: u64 = 8;

/// An opened, checked GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    map: Arc<Mmap>,
}

/// One tensor's stored bytes inside the mapped file.
#[derive(Debug, Clone, Copy)]
pub struct TensorBytes<'a> {
    pub dtype: GgmlDType,
    /// Candle's order (`(out, in)` for a matrix).
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
    /// Where `bytes` start in the file (and in [`GgufFile::mapping`]).
    pub offset: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

/// Q4_0 runs on the engine's own kernel everywhere but aarch64, where candle's repacked
/// NEON path is faster (the rule `Linear::from_qmatmul` applies to copied weights).
fn own_q4_0_kernel() -> bool {
    crate::kernels::OWN_Q4_0_IS_FASTER
}

impl GgufFile {
    /// Reads the header and checks that the file holds every tensor it describes.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let (file, _) = impchat_input::files::open_regular(path).map_err(EngineError::from_file)?;
        // SAFETY: the map is read-only and private. Like every mmap-based loader, this
        // relies on the model file not being truncated while the model loads; models live
        // in ImpChat's own folder and are replaced by rename, never rewritten in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(path, e))?;
        let file_len = map.len() as u64;
        let corrupt = |reason: String| EngineError::CorruptWeights {
            path: path.to_path_buf(),
            reason: format!("unreadable GGUF header: {reason}"),
        };
        // candle's reader divides by this unchecked.
        if super::alignment::declared_alignment(&map) == Some(0) {
            return Err(corrupt("general.alignment is 0".to_string()));
        }
        // Any other panic in candle's reader is a damaged header too, not a crash.
        let read = std::panic::catch_unwind(|| Content::read(&mut Cursor::new(&map[..])));
        let content = match read {
            Ok(content) => content.map_err(|e| corrupt(e.to_string()))?,
            Err(_) => return Err(corrupt("candle could not read its layout".to_string())),
        };
        let gguf = Self {
            path: path.to_path_buf(),
            content,
            map: Arc::new(map),
        };
        gguf.check_length(file_len)?;
        Ok(gguf)
    }

    fn check_length(&self, file_len: u64) -> Result<(), EngineError> {
        let mut needed = self.content.tensor_data_offset;
        for (name, info) in &self.content.tensor_infos {
            let dtype = info.ggml_dtype;
            // Checked here, so that `elem_count` and the byte ranges below cannot overflow
            // later: a damaged header can claim any dimensions.
            let too_large = || {
                self.corrupt(format!(
                    "tensor {name} claims dimensions {:?}, more than any file holds",
                    info.shape.dims()
                ))
            };
            // Zero dimensions are left out: candle's strides multiply all the others even
            // when the tensor is empty.
            let dims = info.shape.dims();
            let nonzero = dims
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(too_large)?;
            let elems = if dims.contains(&0) { 0 } else { nonzero };
            if !elems.is_multiple_of(dtype.block_size()) {
                return Err(self.corrupt(format!(
                    "tensor {name} has {elems} values, not a whole number of {dtype:?} blocks"
                )));
            }
            let start = self
                .content
                .tensor_data_offset
                .checked_add(info.offset)
                .ok_or_else(too_large)?;
            if !start.is_multiple_of(TENSOR_ALIGNMENT) {
                return Err(self.corrupt(format!(
                    "tensor {name} starts at byte {start}, not a multiple of {TENSOR_ALIGNMENT} \
                     as GGUF tensors are"
                )));
            }
            let end = (elems / dtype.block_size())
                .checked_mul(dtype.type_size())
                .and_then(|bytes| u64::try_from(bytes).ok())
                .and_then(|bytes| bytes.checked_add(start))
                .ok_or_else(too_large)?;
            needed = needed.max(end);
        }
        if needed > file_len {
            return Err(self.corrupt(format!(
                "the file has {file_len} bytes but its header needs {needed} (incomplete download?)"
            )));
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> EngineError {
        EngineError::CorruptWeights {
            path: self.path.clone(),
            reason,
        }
    }

    fn invalid(&self, reason: String) -> EngineError {
        EngineError::InvalidConfig {
            path: self.path.clone(),
            reason,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header: metadata and tensor descriptions.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// Total number of weights in the file.
    pub fn parameter_count(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|info| info.shape.elem_count() as u64)
            .sum()
    }

    /// The storage type holding most weights, lower-case ("q4k", "q8_0", "f16", ...).
    pub fn storage_dtype(&self) -> String {
        let mut counts: Vec<(String, u64)> = Vec::new();
        for info in self.content.tensor_infos.values() {
            let name = format!("{:?}", info.ggml_dtype).to_ascii_lowercase();
            let n = info.shape.elem_count() as u64;
            match counts.iter_mut().find(|(d, _)| *d == name) {
                Some((_, total)) => *total += n,
                None => counts.push((name, n)),
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map_or_else(|| "f32".to_string(), |(d, _)| d)
    }

    /// `general.architecture` (`phi2`, `qwen2`, `phi3`, `clip`, ...).
    pub fn architecture(&self) -> Result<&str, EngineError> {
        self.string("general.architecture")
    }

    /// Fails with [`EngineError::UnsupportedModelType`] unless the file is `expected`.
    pub fn expect_architecture(&self, expected: &str) -> Result<(), EngineError> {
        let found = self.architecture()?;
        if found != expected {
            return Err(EngineError::UnsupportedModelType {
                found: found.to_string(),
            });
        }
        Ok(())
    }

    pub fn string(&self, key: &str) -> Result<&str, EngineError> {
        match self.content.metadata.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.invalid(format!("{key} is {other:?}, expected a string"))),
            None => Err(self.invalid(format!("metadata key {key} is missing"))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize, EngineError> {
        let value = self
            .content
            .metadata
            .get(key)
            .ok_or_else(|| self.invalid(format!("metadata key {key} is missing")))?;
        value
            .to_u64()
            .map(|v| v as usize)
            .or_else(|_| value.to_u32().map(|v| v as usize))
            .map_err(|_| self.invalid(format!("{key} is {value:?}, expected an integer")))
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, EngineError> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(Value::F32(v)) => Ok(f64::from(*v)),
            Some(Value::F64(v)) => Ok(*v),
            Some(other) => Err(self.invalid(format!("{key} is {other:?}, expected a number"))),
        }
    }

    /// Names of all tensors in the file.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The tensor's shape in candle's order (`(out, in)` for a matrix).
    pub fn shape(&self, name: &str) -> Result<&[usize], EngineError> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| info.shape.dims())
            .ok_or_else(|| EngineError::TensorMissing {
                name: name.to_string(),
            })
    }

    /// The whole mapped file, for weights that borrow their bytes instead of copying them.
    pub fn mapping(&self) -> &Arc<Mmap> {
        &self.map
    }

    /// One tensor's stored bytes, borrowed from the map (bounds checked at open).
    pub fn tensor_bytes(&self, name: &str) -> Result<TensorBytes<'_>, EngineError> {
        let info =
            self.content
                .tensor_infos
                .get(name)
                .ok_or_else(|| EngineError::TensorMissing {
                    name: name.to_string(),
                })?;
        let dtype = info.ggml_dtype;
        let len = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
        let start = self.content.tensor_data_offset + info.offset;
        let offset = usize::try_from(start)
            .map_err(|_| self.corrupt(format!("tensor {name} starts past the address space")))?;
        let bytes = self
            .map
            .get(offset..offset + len)
            .ok_or_else(|| self.corrupt(format!("tensor {name} lies outside the file")))?;
        Ok(TensorBytes {
            dtype,
            shape: info.shape.dims(),
            bytes,
            offset,
        })
    }

    /// Reads one tensor as stored (quantized or not) into its own memory.
    pub fn qtensor(&self, name: &str) -> Result<Arc<QTensor>, EngineError> {
        let tensor = self.tensor_bytes(name)?;
        let qtensor = qtensor_from_ggml(
            tensor.dtype,
            tensor.bytes,
            tensor.shape.to_vec(),
            &Device::Cpu,
        )
        .map_err(|e| self.corrupt(format!("cannot read tensor {name}: {e}")))?;
        self.release(tensor.offset, tensor.bytes.len());
        Ok(Arc::new(qtensor))
    }

    /// Concatenates several `(rows_i, cols)` matrices of one storage type along their
    /// rows without widening them (each row is a whole number of blocks, so the stored
    /// bytes simply follow each other). `None` when their types or widths differ.
    pub fn qtensor_stacked(&self, names: &[String]) -> Result<Option<Arc<QTensor>>, EngineError> {
        let parts = names
            .iter()
            .map(|name| self.tensor_bytes(name))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        let same_layout = parts
            .iter()
            .all(|p| p.dtype == first.dtype && p.shape.len() == 2 && p.shape[1] == first.shape[1]);
        if !same_layout || first.shape.len() != 2 {
            return Ok(None);
        }
        let rows = parts.iter().map(|p| p.shape[0]).sum::<usize>();
        // An empty stack has no bytes: candle would cast an empty Vec's dangling, unaligned
        // pointer to blocks.
        if rows == 0 || first.shape[1] == 0 {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
        for part in &parts {
            bytes.extend_from_slice(part.bytes);
        }
        let qtensor = qtensor_from_ggml(
            first.dtype,
            &bytes,
            vec![rows, first.shape[1]],
            &Device::Cpu,
        )
        .map_err(|e| self.corrupt(format!("cannot stack {}: {e}", names.join(", "))))?;
        for part in &parts {
            self.release(part.offset, part.bytes.len());
        }
        Ok(Some(Arc::new(qtensor)))
    }

    /// Hands back the pages of bytes already copied out, so loading never holds the file
    /// twice (once mapped, once copied).
    fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        {
            // SAFETY: the map is private and never written, so dropped pages read back the
            // same file bytes if anything touches them again. Purely advisory: a failure
            // only means the pages stay resident until the map is dropped.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }

    /// Reads one tensor and widens it to a dense f32 tensor (norms, biases).
    pub fn f32(&self, name: &str) -> Result<Tensor, EngineError> {
        Ok(self.qtensor(name)?.dequantize(&Device::Cpu)?)
    }

    /// A matrix kept in its stored type, for matmuls and row gathers.
    pub fn qmatmul(&self, name: &str, shape: (usize, usize)) -> Result<QMatMul, EngineError> {
        self.expect_shape(name, &[shape.0, shape.1])?;
        Ok(QMatMul::from_arc(self.qtensor(name)?)?)
    }

    /// A token-embedding table kept exactly as stored, even at F16, since it only ever
    /// has rows gathered (a widened f32 copy of a 150k-row vocabulary would cost GBs).
    pub fn embedding(&self, name: &str, shape: (usize, usize)) -> Result<QMatMul, EngineError> {
        self.expect_matrix(name, shape)?;
        Ok(QMatMul::QTensor(self.qtensor(name)?))
    }

    /// Fails unless `name` is a matrix of `shape` (`(out, in)`).
    pub fn expect_matrix(&self, name: &str, shape: (usize, usize)) -> Result<(), EngineError> {
        self.expect_shape(name, &[shape.0, shape.1])
    }

    /// A bias vector of `len` values, widened to f32.
    pub fn bias(&self, name: &str, len: usize) -> Result<Tensor, EngineError> {
        self.expect_shape(name, &[len])?;
        self.f32(name)
    }

    /// `{name}.weight` of shape `(out, in)` and, with `with_bias`, `{name}.bias`.
    /// Q4_0 weights are repacked for the engine's own kernel straight from the map.
    pub fn linear(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Linear, EngineError> {
        let weight_name = format!("{name}.weight");
        self.expect_matrix(&weight_name, (out_dim, in_dim))?;
        let bias = if with_bias {
            Some(self.bias(&format!("{name}.bias"), out_dim)?)
        } else {
            None
        };
        if let Some(matrix) = self.repacked_q4_0(&weight_name)? {
            return Ok(Linear::q4_0(matrix, bias));
        }
        if let Some(linear) = self.repacked_interleaved(&weight_name, bias.clone())? {
            return Ok(linear);
        }
        let weight = QMatMul::from_arc(self.qtensor(&weight_name)?)?;
        Ok(Linear::from_qmatmul(weight, bias))
    }

    /// A Q4_0 matrix repacked for the engine's own kernel straight from the map (one
    /// copy, whose source pages are then handed back), where that kernel is the one that
    /// runs Q4_0 ([`Linear::from_qmatmul`]'s rule).
    fn repacked_q4_0(&self, name: &str) -> Result<Option<Q4_0Matrix>, EngineError> {
        let tensor = self.tensor_bytes(name)?;
        if !own_q4_0_kernel() || tensor.dtype != GgmlDType::Q4_0 || tensor.shape.len() != 2 {
            return Ok(None);
        }
        let map: Arc<dyn AsRef<[u8]> + Send + Sync> = self.map.clone();
        let bytes = BlockBytes::Mapped {
            map,
            range: tensor.offset..tensor.offset + tensor.bytes.len(),
        };
        let matrix = Q4_0Matrix::new(bytes, tensor.shape[0], tensor.shape[1])
            .map_err(|e| self.corrupt(format!("tensor {name}: {e}")))?;
        self.release(tensor.offset, tensor.bytes.len());
        Ok(Some(matrix))
    }

    /// A Q4_K, Q6_K or Q8_0 matrix repacked for the engine's own kernels straight from the
    /// map (one copy, whose source pages are then handed back), where those kernels are
    /// the ones that run them ([`Linear::from_qmatmul`]'s rule).
    fn repacked_interleaved(
        &self,
        name: &str,
        bias: Option<Tensor>,
    ) -> Result<Option<Linear>, EngineError> {
        let tensor = self.tensor_bytes(name)?;
        if !own_interleaved_kernels_are_faster() || tensor.shape.len() != 2 {
            return Ok(None);
        }
        let (bytes, rows, cols) = (tensor.bytes, tensor.shape[0], tensor.shape[1]);
        let corrupt = |e: KernelError| self.corrupt(format!("tensor {name}: {e}"));
        let linear = match tensor.dtype {
            GgmlDType::Q4K => Linear::q4_k(
                Q4KInterleaved::from_q4_k(bytes, rows, cols).map_err(corrupt)?,
                bias,
            ),
            GgmlDType::Q6K => Linear::q6_k(
                Q6KInterleaved::from_q6_k(bytes, rows, cols).map_err(corrupt)?,
                bias,
            ),
            GgmlDType::Q8_0 => Linear::q8_0(
                Q8_0Matrix::from_blocks(bytes, rows, cols).map_err(corrupt)?,
                bias,
            ),
            _ => return Ok(None),
        };
        self.release(tensor.offset, tensor.bytes.len());
        Ok(Some(linear))
    }

    /// `{name}.weight` and `{name}.bias` as an f32 LayerNorm.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm, EngineError> {
        let weight_name = format!("{name}.weight");
        let bias_name = format!("{name}.bias");
        self.expect_shape(&weight_name, &[dim])?;
        self.expect_shape(&bias_name, &[dim])?;
        Ok(LayerNorm::new(
            self.f32(&weight_name)?,
            self.f32(&bias_name)?,
            eps,
        ))
    }

    /// `{name}.weight` as an f32 RMSNorm.
    pub fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm, EngineError> {
        let weight_name = format!("{name}.weight");
        self.expect_shape(&weight_name, &[dim])?;
        Ok(RmsNorm::new(self.f32(&weight_name)?, eps))
    }

    fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<(), EngineError> {
        let found = self.shape(name)?;
        if found != expected {
            return Err(EngineError::ShapeMismatch {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }
}
