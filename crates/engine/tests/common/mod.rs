//! Helpers shared by the engine's integration tests (each test binary uses some).
#![allow(dead_code)]

pub mod checkpoint;

/// `len` deterministic N(0, σ)-like values, `σ ≈ 0.58 · spread`: each is the sum of four
/// uniforms from a 64-bit LCG seeded with `seed`, minus 2, times `spread`.
pub fn gaussian_like(len: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f32>() - 2.0) * spread)
        .collect()
}

/// `m x k` activations with varied magnitudes per block of 32, so each block gets its own
/// activation scale.
pub fn activations(m: usize, k: usize) -> Vec<f32> {
    (0..m * k)
        .map(|i| {
            let wave = ((i * 7919) % 1009) as f32 / 1009.0 - 0.5;
            wave * (1.0 + (i / 32 % 5) as f32)
        })
        .collect()
}

/// The activations as the kernel sees them: int8 blocks of 32 (each row's last block
/// zero-padded), `d = max|x| / 127`, rounded half to even.
pub fn int8_rounded(x: &[f32], k: usize) -> Vec<f32> {
    x.chunks(k)
        .flat_map(|row| {
            row.chunks(32).flat_map(|block| {
                let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                block.iter().map(move |v| (v * inv).round_ties_even() * d)
            })
        })
        .collect()
}

/// `x · Wᵀ` for row-major `n x k` weights `w`, in f64, and per output `Σ |w| |x|` (the
/// scale of its rounding error).
pub fn reference(w: &[f32], n: usize, k: usize, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let m = x.len() / k;
    let mut out = vec![0f64; m * n];
    let mut magnitude = vec![0f64; m * n];
    for t in 0..m {
        let x = &x[t * k..(t + 1) * k];
        for r in 0..n {
            let w = &w[r * k..(r + 1) * k];
            out[t * n + r] = w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
            magnitude[t * n + r] = w
                .iter()
                .zip(x)
                .map(|(&w, &x)| (w as f64 * x as f64).abs())
                .sum();
        }
    }
    (out, magnitude)
}

/// candle's dequantization of `q`, row-major.
pub fn dequantized(q: &candle_core::quantized::QTensor) -> Vec<f32> {
    q.dequantize(&candle_core::Device::Cpu)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("a CPU QTensor dequantizes")
}

/// Asserts that `got` (`m x n`) is `x · Wᵀ` for the row-major `n x k` weights `weights`
/// with `x` rounded to int8 blocks as the kernels round it: only f32 summation order
/// differs, so each output is within `1e-5 Σ |w x|` (plus `floor`).
pub fn assert_matches_dequantized_product(
    label: &str,
    got: &[f32],
    weights: &[f32],
    (n, k): (usize, usize),
    x: &[f32],
    floor: f64,
) {
    assert_eq!(got.len(), x.len() / k * n, "{label}: output size");
    let (exact, magnitude) = reference(weights, n, k, &int8_rounded(x, k));
    for (i, (&got, (&exact, &magnitude))) in
        got.iter().zip(exact.iter().zip(&magnitude)).enumerate()
    {
        let slack = 1e-5 * magnitude + floor;
        let diff = (got as f64 - exact).abs();
        assert!(
            diff <= slack,
            "{label} out[{}][{}] = {got} but the dequantized product is {exact} \
             (diff {diff:e} > {slack:e})",
            i / n,
            i % n
        );
    }
}
