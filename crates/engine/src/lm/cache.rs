//! Keys and values of past tokens for every layer, in one buffer that is extended in
//! place each step (never rebuilt) and can be cut back to a shared prefix when a
//! conversation is edited. A turn plans its length first, so the buffer is allocated once
//! at that size; past it, it grows by doubling. One allocation for all layers is large
//! enough that the allocator maps it fresh from the OS, whose pages stay untouched (and
//! cost no memory) until positions are written. On the CPU, f32 keys and values can be
//! kept in f16 ([`KvPrecision::F16`]), as llama.cpp keeps them by default.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;

/// Capacity is a multiple of this many positions.
const CHUNK: usize = 64;

/// The buffer is `(2 * layers, kv_heads, capacity, head_dim)`: layer `i`'s keys at `2i`,
/// its values at `2i + 1`; positions live on dim 2.
const SEQ_DIM: usize = 2;

/// How a cache keeps the f32 keys and values of a model running on the CPU (other
/// dtypes and devices are kept as computed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPrecision {
    /// Exactly as computed: for checks against reference implementations.
    F32,
    /// Rounded to f16: half the memory, and half the bytes every decoded token reads
    /// back, which at a few hundred positions is a tenth of a 3B model's weights.
    F16,
}

#[derive(Debug, Clone)]
pub struct KvCache {
    buffer: Option<Tensor>,
    precision: KvPrecision,
    /// Cached positions per layer (equal between steps).
    lens: Vec<usize>,
    /// Positions the current turn will need at most (prompt and answer).
    planned: usize,
}

impl KvCache {
    /// A cache that keeps keys and values exactly as computed.
    pub fn new(num_layers: usize) -> Self {
        Self::with_precision(num_layers, KvPrecision::F32)
    }

    pub fn with_precision(num_layers: usize, precision: KvPrecision) -> Self {
        Self {
            buffer: None,
            precision,
            lens: vec![0; num_layers],
            planned: 0,
        }
    }

    /// Plans room for `positions` in all: a first buffer is allocated at that size at
    /// once, rather than doubling (and copying) as a long prompt and its answer arrive.
    pub fn plan(&mut self, positions: usize) {
        self.planned = positions;
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.lens.first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything after the first `len` positions (keeps the buffer).
    pub fn truncate(&mut self, len: usize) {
        for cached in &mut self.lens {
            *cached = (*cached).min(len);
        }
    }

    /// Forgets everything and frees the buffer.
    pub fn clear(&mut self) {
        self.buffer = None;
        self.lens.fill(0);
    }

    /// Appends `k`, `v` `(1, kv_heads, L, head_dim)` to `layer` and returns views over all
    /// cached keys and values of that layer, new ones included.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some(&len) = self.lens.get(layer) else {
            candle_core::bail!("layer {layer} has no KV cache");
        };
        let needed = len + k.dim(SEQ_DIM)?;
        let (k, v) = (self.stored(k)?, self.stored(v)?);
        let buffer = match &self.buffer {
            Some(buffer) if buffer.dim(SEQ_DIM)? >= needed => buffer.clone(),
            _ => self.grow(&k, needed)?,
        };
        let keys = buffer.narrow(0, 2 * layer, 1)?;
        let values = buffer.narrow(0, 2 * layer + 1, 1)?;
        keys.slice_set(&k, SEQ_DIM, len)?;
        values.slice_set(&v, SEQ_DIM, len)?;
        self.lens[layer] = needed;
        Ok((
            keys.narrow(SEQ_DIM, 0, needed)?,
            values.narrow(SEQ_DIM, 0, needed)?,
        ))
    }

    /// `t` contiguous, in the dtype the cache keeps it in.
    fn stored(&self, t: &Tensor) -> Result<Tensor> {
        let t = t.contiguous()?;
        let to_f16 =
            self.precision == KvPrecision::F16 && t.dtype() == DType::F32 && t.device().is_cpu();
        if !to_f16 {
            return Ok(t);
        }
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
            candle_core::bail!("an f32 CPU tensor without f32 CPU storage");
        };
        let values = &data[layout.start_offset()..][..t.elem_count()];
        // F16C converts 8 at a time; candle's `to_dtype` goes value by value.
        let mut half = vec![f16::ZERO; values.len()];
        half.convert_from_f32_slice(values);
        Tensor::from_vec(half, t.shape(), t.device())
    }

    /// A buffer with room for `needed` positions and every layer's cached ones copied in:
    /// the plan for a first buffer, else at least twice the old capacity, so a long chat
    /// is not copied every turn.
    fn grow(&mut self, like: &Tensor, needed: usize) -> Result<Tensor> {
        let old_capacity = match &self.buffer {
            Some(buffer) => buffer.dim(SEQ_DIM)?,
            None => 0,
        };
        let capacity = if old_capacity == 0 && needed <= self.planned {
            self.planned
        } else {
            needed.max(self.planned).max(old_capacity * 2)
        };
        let capacity = capacity.div_ceil(CHUNK) * CHUNK;
        let (_, kv_heads, _, head_dim) = like.dims4()?;
        let shape = (2 * self.lens.len(), kv_heads, capacity, head_dim);
        let grown = Tensor::zeros(shape, like.dtype(), like.device())?;
        if let Some(old) = &self.buffer {
            for (layer, &len) in self.lens.iter().enumerate().filter(|(_, &len)| len > 0) {
                for part in [2 * layer, 2 * layer + 1] {
                    let kept = old.narrow(0, part, 1)?.narrow(SEQ_DIM, 0, len)?;
                    grown
                        .narrow(0, part, 1)?
                        .slice_set(&kept.contiguous()?, SEQ_DIM, 0)?;
                }
            }
        }
        self.buffer = Some(grown.clone());
        Ok(grown)
    }

    /// Bytes the buffer holds (0 before the first append); pages not yet written cost
    /// no memory.
    pub fn bytes(&self) -> usize {
        self.buffer
            .as_ref()
            .map_or(0, |b| b.elem_count() * b.dtype().size_in_bytes())
    }

    /// Positions the buffer holds room for (0 before the first append).
    pub fn capacity(&self) -> usize {
        self.buffer
            .as_ref()
            .and_then(|b| b.dim(SEQ_DIM).ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    fn kv(start: f32, len: usize) -> Tensor {
        let data: Vec<f32> = (0..len * 2).map(|i| start + i as f32).collect();
        Tensor::from_vec(data, (1, 1, len, 2), &Device::Cpu).expect("tensor")
    }

    #[test]
    fn appends_grow_and_keep_earlier_positions() {
        let mut cache = KvCache::new(1);
        cache.append(0, &kv(0.0, 3), &kv(100.0, 3)).expect("append");
        // Force a growth past the first chunk.
        let (k, v) = cache
            .append(0, &kv(6.0, 300), &kv(106.0, 300))
            .expect("append");
        assert_eq!(cache.len(), 303);
        assert_eq!(k.dims(), &[1, 1, 303, 2]);
        let k: Vec<f32> = k.flatten_all().expect("flat").to_vec1().expect("vec");
        let expected: Vec<f32> = (0..606).map(|i| i as f32).collect();
        assert_eq!(k, expected);
        assert_eq!(
            v.i((0, 0, 302, 1))
                .expect("i")
                .to_scalar::<f32>()
                .expect("s"),
            100.0 + 605.0
        );
    }

    #[test]
    fn a_planned_turn_allocates_its_length_once() {
        let mut cache = KvCache::new(1);
        cache.plan(300);
        let (k, _) = cache.append(0, &kv(0.0, 3), &kv(0.0, 3)).expect("append");
        let buffer = |cache: &KvCache| cache.capacity();
        assert_eq!(
            buffer(&cache),
            320,
            "300 positions rounded up to whole chunks"
        );
        assert_eq!(k.dims(), &[1, 1, 3, 2]);
        let (k, _) = cache
            .append(0, &kv(6.0, 297), &kv(6.0, 297))
            .expect("append");
        assert_eq!(buffer(&cache), 320, "no growth within the plan");
        let k: Vec<f32> = k.flatten_all().expect("flat").to_vec1().expect("vec");
        assert_eq!(k, (0..600).map(|i| i as f32).collect::<Vec<_>>());
        cache.append(0, &kv(0.0, 21), &kv(0.0, 21)).expect("append");
        assert_eq!(buffer(&cache), 640, "past the buffer, capacity doubles");
    }

    /// f16 keeps what a cache is read for (nearly the same numbers) in half the memory:
    /// the buffer and the views it hands out are f16, rounded to nearest.
    #[test]
    fn an_f16_cache_keeps_rounded_values_in_half_the_bytes() {
        let mut cache = KvCache::with_precision(1, KvPrecision::F16);
        let third = Tensor::from_vec(
            vec![1.0f32 / 3.0, 1000.1, -2.5e-3, 7.0],
            (1, 1, 2, 2),
            &Device::Cpu,
        )
        .expect("tensor");
        let (k, v) = cache.append(0, &third, &third).expect("append");
        assert_eq!((k.dtype(), v.dtype()), (DType::F16, DType::F16));
        let expected: Vec<f32> = [1.0f32 / 3.0, 1000.1, -2.5e-3, 7.0]
            .iter()
            .map(|&x| f16::from_f32(x).to_f32())
            .collect();
        let got: Vec<f32> = k
            .to_dtype(DType::F32)
            .and_then(|k| k.flatten_all()?.to_vec1())
            .expect("values");
        assert_eq!(got, expected);
        assert_ne!(got[0], 1.0 / 3.0, "values are rounded, not kept exactly");
        // An exact cache keeps f32.
        let mut exact = KvCache::new(1);
        let (k, _) = exact.append(0, &third, &third).expect("append");
        assert_eq!(k.dtype(), DType::F32);
        assert_eq!(
            k.flatten_all()
                .and_then(|k| k.to_vec1::<f32>())
                .expect("values")[0],
            1.0 / 3.0
        );
    }

    #[test]
    fn truncate_then_append_overwrites_the_tail() {
        let mut cache = KvCache::new(2);
        for layer in 0..2 {
            cache
                .append(layer, &kv(0.0, 4), &kv(0.0, 4))
                .expect("append");
        }
        cache.truncate(2);
        assert_eq!(cache.len(), 2);
        let (k, _) = cache.append(0, &kv(50.0, 1), &kv(50.0, 1)).expect("append");
        let k: Vec<f32> = k.flatten_all().expect("flat").to_vec1().expect("vec");
        assert_eq!(k, vec![0.0, 1.0, 2.0, 3.0, 50.0, 51.0]);
        cache.clear();
        assert!(cache.is_empty());
    }
}
