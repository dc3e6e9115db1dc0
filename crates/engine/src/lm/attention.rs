//! Scaled dot-product attention over the KV cache. New rows see every cached key up to
//! their own position (a chunk of several tokens can follow an already filled cache),
//! within a sliding window if the model has one. f32 queries on the CPU, over f32 or f16
//! keys and values, run on the engine's flash-style kernel; anything else on candle ops
//! with an additive mask.

use candle_core::{DType, Device, Layout, Result, Storage, Tensor, WithDType};
use candle_transformers::utils::repeat_kv;
use half::f16;

use crate::kernels::{self, AttentionInput, KvValue, Visibility};

/// Which keys the new rows see: row `i` sits at position `past + i` and sees keys
/// `j <= past + i`, and with a sliding `window` only those with `past + i - j <= window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Causal {
    pub past: usize,
    pub window: Option<usize>,
}

impl Causal {
    /// Additive mask `(len, past + len)` for the tensor path; `None` when nothing needs
    /// masking (a single new token, no window in reach).
    pub fn mask(&self, len: usize, device: &Device) -> Result<Option<Tensor>> {
        let (past, window) = (self.past, self.window);
        let total = past + len;
        let window_bites = window.is_some_and(|w| total > w + 1);
        if len == 1 && !window_bites {
            return Ok(None);
        }
        let mask: Vec<f32> = (0..len)
            .flat_map(|i| {
                let query_pos = past + i;
                (0..total).map(move |j| {
                    let visible = j <= query_pos && window.is_none_or(|w| query_pos - j <= w);
                    if visible {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Ok(Some(Tensor::from_vec(mask, (len, total), device)?))
    }
}

/// `q` `(1, heads, L, d)`, `k`/`v` `(1, kv_heads, T, d)` → `(1, L, heads * d)`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, causal: Causal) -> Result<Tensor> {
    let visibility = Visibility::Causal {
        past: causal.past,
        window: causal.window,
    };
    let scale = 1.0 / (q.dim(3)? as f64).sqrt();
    match attend_on_cpu(q, k, v, scale, visibility)? {
        Some(out) => Ok(out),
        None => attend_tensors(q, k, v, causal),
    }
}

/// `softmax(q kᵀ · scale) v` on the engine's kernel for `q` `(1, heads, L, d)` and `k`/`v`
/// `(1, kv_heads, T, d)` (views are read in place) → `(1, L, heads * d)`. `None` unless
/// every tensor is on the CPU with unit-stride rows, `q` in f32 and `k`, `v` both in f32
/// or both in f16.
pub(crate) fn attend_on_cpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    visibility: Visibility,
) -> Result<Option<Tensor>> {
    let on_cpu = [q, k, v].iter().all(|t| t.device().is_cpu());
    if !on_cpu || q.dtype() != DType::F32 || k.dtype() != v.dtype() {
        return Ok(None);
    }
    match k.dtype() {
        DType::F32 => attend_kernel::<f32>(q, k, v, scale, visibility),
        DType::F16 => attend_kernel::<f16>(q, k, v, scale, visibility),
        _ => Ok(None),
    }
}

fn attend_kernel<E: KvValue + WithDType>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    visibility: Visibility,
) -> Result<Option<Tensor>> {
    let (_, heads, len, head_dim) = q.dims4()?;
    let (_, kv_heads, keys, _) = k.dims4()?;
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (Some(q), Some((k, k_stride)), Some((v, v_stride))) = (
        rows::<f32>(&q_storage, q_layout, head_dim).map(|(rows, _)| rows),
        rows::<E>(&k_storage, k_layout, head_dim),
        rows::<E>(&v_storage, v_layout, head_dim),
    ) else {
        return Ok(None);
    };
    if k_stride != v_stride {
        return Ok(None);
    }
    let input = AttentionInput {
        q,
        k,
        v,
        heads,
        kv_heads,
        head_dim,
        len,
        keys,
        kv_head_stride: k_stride,
        scale: scale as f32,
        visibility,
    };
    let out = kernels::attention(&input).map_err(candle_core::Error::wrap)?;
    Ok(Some(Tensor::from_vec(
        out,
        (1, len, heads * head_dim),
        &Device::Cpu,
    )?))
}

/// The values of a `(1, heads, rows, d)` view whose rows are contiguous, and the stride
/// between its heads.
fn rows<'a, E: WithDType>(
    storage: &'a Storage,
    layout: &Layout,
    d: usize,
) -> Option<(&'a [E], usize)> {
    let Storage::Cpu(cpu) = storage else {
        return None;
    };
    let data = E::cpu_storage_as_slice(cpu).ok()?;
    match layout.stride() {
        [_, head_stride, row_stride, 1] if *row_stride == d => {
            Some((data.get(layout.start_offset()..)?, *head_stride))
        }
        _ => None,
    }
}

/// candle ops with an additive mask (any dtype or device; keys and values are computed
/// in the queries' dtype).
fn attend_tensors(q: &Tensor, k: &Tensor, v: &Tensor, causal: Causal) -> Result<Tensor> {
    let (k, v) = (&k.to_dtype(q.dtype())?, &v.to_dtype(q.dtype())?);
    let (_, heads, len, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let mask = causal.mask(len, q.device())?;
    let (k, v) = if heads == kv_heads {
        (k.clone(), v.clone())
    } else {
        let n_rep = heads / kv_heads;
        (
            repeat_kv(k.contiguous()?, n_rep)?,
            repeat_kv(v.contiguous()?, n_rep)?,
        )
    };
    let scale = 1.0 / (head_dim as f64).sqrt();
    let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((1, len, heads * head_dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(len: usize, past: usize, window: Option<usize>) -> Option<Vec<Vec<f32>>> {
        Causal { past, window }
            .mask(len, &Device::Cpu)
            .expect("mask")
            .map(|m| m.to_vec2().expect("vec"))
    }

    #[test]
    fn mask_is_rectangular_after_a_filled_cache() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            mask_rows(2, 3, None),
            Some(vec![vec![0., 0., 0., 0., inf], vec![0., 0., 0., 0., 0.]])
        );
        assert_eq!(mask_rows(1, 10, None), None);
    }

    #[test]
    fn sliding_window_hides_old_keys() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            mask_rows(1, 4, Some(2)),
            Some(vec![vec![inf, inf, 0., 0., 0.]])
        );
    }

    /// `(1, heads, rows, d)` random values, as a view of the first `rows` of a buffer
    /// with room for `capacity` rows (the KV cache's layout).
    fn cache_view(heads: usize, rows: usize, capacity: usize, d: usize, seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let values: Vec<f32> = (0..heads * capacity * d)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        Tensor::from_vec(values, (1, heads, capacity, d), &Device::Cpu)
            .and_then(|t| t.narrow(2, 0, rows))
            .expect("view")
    }

    /// The kernel against candle's matmul/mask/softmax on the same tensors: prefill from
    /// empty, a chunk and a single token after a filled cache, grouped-query heads,
    /// sliding windows, and head sizes that are and are not multiples of 16.
    #[test]
    fn kernel_matches_the_tensor_path() {
        let cases = [
            // heads, kv_heads, d, len, past, window
            (4, 4, 80, 37, 0, None),
            (4, 4, 80, 1, 300, None),
            (8, 2, 128, 5, 90, None),
            (6, 3, 72, 70, 0, Some(16)),
            (4, 1, 96, 3, 200, Some(64)),
        ];
        for (seed, &(heads, kv_heads, d, len, past, window)) in cases.iter().enumerate() {
            let keys = past + len;
            let q = cache_view(heads, len, len, d, seed as u64);
            let k = cache_view(kv_heads, keys, keys + 50, d, 100 + seed as u64);
            let v = cache_view(kv_heads, keys, keys + 50, d, 200 + seed as u64);
            let causal = Causal { past, window };
            let visibility = Visibility::Causal { past, window };
            let scale = 1.0 / (d as f64).sqrt();
            let fast = attend_on_cpu(&q, &k, &v, scale, visibility)
                .expect("kernel")
                .expect("f32 on the CPU takes the kernel");
            let slow = attend_tensors(&q, &k, &v, causal).expect("tensor path");
            let diff = |a: Tensor, b: Tensor| {
                (a - b)
                    .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                    .expect("diff")
            };
            let case = format!(
                "heads {heads}/{kv_heads}, d {d}, len {len} after {past}, window {window:?}"
            );
            let f32_diff = diff(fast, slow);
            assert!(f32_diff < 2e-5, "{case}: max diff {f32_diff}");
            // The same over f16 keys and values, as a KV cache keeps them.
            let (k, v) = (
                k.to_dtype(DType::F16).expect("k"),
                v.to_dtype(DType::F16).expect("v"),
            );
            let fast = attend_on_cpu(&q, &k, &v, scale, visibility)
                .expect("kernel")
                .expect("f16 keys on the CPU take the kernel");
            let slow = attend_tensors(&q, &k, &v, causal).expect("tensor path");
            let f16_diff = diff(fast, slow);
            assert!(f16_diff < 2e-5, "{case}, f16 keys: max diff {f16_diff}");
        }
    }
}
