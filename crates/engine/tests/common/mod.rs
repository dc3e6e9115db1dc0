//! Helpers shared by the engine's integration tests.

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
