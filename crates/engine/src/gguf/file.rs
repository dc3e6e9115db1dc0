//! Reads the language-model GGUF written by `impchat-convert` (llama.cpp's names and
//! metadata keys): checks the file against its own header before any tensor is read,
//! then hands out quantized [`Linear`]s, f32 norms/biases and typed metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Tensor};
use candle_nn::LayerNorm;

use crate::error::EngineError;
use crate::linear::Linear;

/// An opened, checked GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Reads the header and checks that the file holds every tensor it describes.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| EngineError::CorruptWeights {
            path: path.to_path_buf(),
            reason: format!("unreadable GGUF header: {e}"),
        })?;
        let gguf = Self {
            path: path.to_path_buf(),
            content,
            reader,
        };
        gguf.check_length(file_len)?;
        Ok(gguf)
    }

    fn check_length(&self, file_len: u64) -> Result<(), EngineError> {
        let mut needed = self.content.tensor_data_offset;
        for (name, info) in &self.content.tensor_infos {
            let dtype = info.ggml_dtype;
            let elems = info.shape.elem_count();
            if !elems.is_multiple_of(dtype.block_size()) {
                return Err(self.corrupt(format!(
                    "tensor {name} has {elems} values, not a whole number of {dtype:?} blocks"
                )));
            }
            let bytes = (elems / dtype.block_size() * dtype.type_size()) as u64;
            needed = needed.max(self.content.tensor_data_offset + info.offset + bytes);
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

    /// Reads one tensor as stored (quantized or not).
    pub fn qtensor(&mut self, name: &str) -> Result<Arc<QTensor>, EngineError> {
        self.shape(name)?;
        let tensor = self
            .content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| EngineError::CorruptWeights {
                path: self.path.clone(),
                reason: format!("cannot read tensor {name}: {e}"),
            })?;
        Ok(Arc::new(tensor))
    }

    /// Reads one tensor and widens it to a dense f32 tensor (norms, biases).
    pub fn f32(&mut self, name: &str) -> Result<Tensor, EngineError> {
        Ok(self.qtensor(name)?.dequantize(&Device::Cpu)?)
    }

    /// A matrix kept in its stored type, for matmuls and row gathers.
    pub fn qmatmul(&mut self, name: &str, shape: (usize, usize)) -> Result<QMatMul, EngineError> {
        self.expect_shape(name, &[shape.0, shape.1])?;
        Ok(QMatMul::from_arc(self.qtensor(name)?)?)
    }

    /// `{name}.weight` of shape `(out, in)` and, with `with_bias`, `{name}.bias`.
    pub fn linear(
        &mut self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        with_bias: bool,
    ) -> Result<Linear, EngineError> {
        let weight = self.qmatmul(&format!("{name}.weight"), (out_dim, in_dim))?;
        let bias = if with_bias {
            let bias_name = format!("{name}.bias");
            self.expect_shape(&bias_name, &[out_dim])?;
            Some(self.f32(&bias_name)?)
        } else {
            None
        };
        Ok(Linear::from_qmatmul(weight, bias))
    }

    /// `{name}.weight` and `{name}.bias` as an f32 LayerNorm.
    pub fn layer_norm(
        &mut self,
        name: &str,
        dim: usize,
        eps: f64,
    ) -> Result<LayerNorm, EngineError> {
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
