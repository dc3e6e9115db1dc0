//! Plain scaled dot-product attention over the KV cache, with a rectangular causal
//! mask so that a chunk of several tokens can follow an already filled cache.

use candle_core::{Device, Result, Tensor};
use candle_transformers::utils::repeat_kv;

/// Additive mask `(L, past + L)`: query `i` (at position `past + i`) sees key `j` iff
/// `j <= past + i` and, with a sliding window `w`, `past + i - j <= w`.
/// `None` when nothing needs masking (a single new token, no window in reach).
pub fn causal_mask(
    len: usize,
    past: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
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

/// `q` `(1, heads, L, d)`, `k`/`v` `(1, kv_heads, T, d)` → `(1, L, heads * d)`.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (_, heads, len, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    // The cache views are strided (capacity > length); matmul reads them in place.
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
        Some(mask) => scores.broadcast_add(mask)?,
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

    #[test]
    fn mask_is_rectangular_after_a_filled_cache() {
        let mask = causal_mask(2, 3, None, &Device::Cpu)
            .expect("mask")
            .expect("some");
        let rows: Vec<Vec<f32>> = mask.to_vec2().expect("vec");
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            rows,
            vec![vec![0., 0., 0., 0., inf], vec![0., 0., 0., 0., 0.]]
        );
        assert!(causal_mask(1, 10, None, &Device::Cpu)
            .expect("mask")
            .is_none());
    }

    #[test]
    fn sliding_window_hides_old_keys() {
        let mask = causal_mask(1, 4, Some(2), &Device::Cpu)
            .expect("mask")
            .expect("some");
        let rows: Vec<Vec<f32>> = mask.to_vec2().expect("vec");
        let inf = f32::NEG_INFINITY;
        assert_eq!(rows, vec![vec![inf, inf, 0., 0., 0.]]);
    }
}
