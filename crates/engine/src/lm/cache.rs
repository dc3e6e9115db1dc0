//! Keys and values of past tokens, per layer, in buffers that are extended in place each
//! step (never rebuilt) and can be cut back to a shared prefix when a conversation is
//! edited. A turn plans its length first, so the buffers are allocated once at that size;
//! past the plan they grow by doubling.

use candle_core::{Result, Tensor};

/// Capacity is a multiple of this many positions.
const CHUNK: usize = 64;

/// Buffers are `(1, kv_heads, capacity, head_dim)`; positions live on dim 2.
const SEQ_DIM: usize = 2;

#[derive(Debug, Clone, Default)]
struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Positions the current turn will need at most (prompt and answer).
    planned: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); num_layers],
            planned: 0,
        }
    }

    /// Plans room for `positions` in all: the first buffers are allocated at that size at
    /// once, rather than doubling (and copying) as a long prompt and its answer arrive,
    /// and without the unused tail doubling leaves.
    pub fn plan(&mut self, positions: usize) {
        self.planned = positions;
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything after the first `len` positions (keeps the buffers).
    pub fn truncate(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.len = layer.len.min(len);
        }
    }

    /// Forgets everything and frees the buffers.
    pub fn clear(&mut self) {
        for layer in &mut self.layers {
            *layer = LayerCache::default();
        }
    }

    /// Appends `k`, `v` `(1, kv_heads, L, head_dim)` to `layer` and returns views over all
    /// cached keys and values of that layer, new ones included.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some(entry) = self.layers.get_mut(layer) else {
            candle_core::bail!("layer {layer} has no KV cache");
        };
        let new = k.dim(SEQ_DIM)?;
        let needed = entry.len + new;
        let k_buf = reserve(entry.k.take(), k, entry.len, needed, self.planned)?;
        let v_buf = reserve(entry.v.take(), v, entry.len, needed, self.planned)?;
        k_buf.slice_set(&k.contiguous()?, SEQ_DIM, entry.len)?;
        v_buf.slice_set(&v.contiguous()?, SEQ_DIM, entry.len)?;
        entry.len = needed;
        let out = (
            k_buf.narrow(SEQ_DIM, 0, needed)?,
            v_buf.narrow(SEQ_DIM, 0, needed)?,
        );
        entry.k = Some(k_buf);
        entry.v = Some(v_buf);
        Ok(out)
    }
}

/// Returns a buffer with room for `needed` positions, keeping the first `used` ones.
fn reserve(
    buf: Option<Tensor>,
    like: &Tensor,
    used: usize,
    needed: usize,
    planned: usize,
) -> Result<Tensor> {
    if let Some(buf) = &buf {
        if buf.dim(SEQ_DIM)? >= needed {
            return Ok(buf.clone());
        }
    }
    let old_capacity = match &buf {
        Some(b) => b.dim(SEQ_DIM)?,
        None => 0,
    };
    // A first buffer takes exactly the plan; a buffer that must grow (a later turn of a
    // conversation) at least doubles, so a long chat is not copied every turn.
    let capacity = if old_capacity == 0 && needed <= planned {
        planned
    } else {
        needed.max(planned).max(old_capacity * 2)
    };
    let capacity = capacity.div_ceil(CHUNK) * CHUNK;
    let mut shape = like.dims().to_vec();
    shape[SEQ_DIM] = capacity;
    let grown = Tensor::zeros(shape, like.dtype(), like.device())?;
    if let (Some(old), true) = (buf, used > 0) {
        grown.slice_set(&old.narrow(SEQ_DIM, 0, used)?.contiguous()?, SEQ_DIM, 0)?;
    }
    Ok(grown)
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
        let buffer = |cache: &KvCache| cache.layers[0].k.as_ref().expect("buffer").dims()[2];
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
