//! Q4_K repacked for the interleaved kernels ([`Q4KInterleaved`]): its weights against
//! candle's dequantization of the same GGML blocks, and its matmul against its own
//! weights in f64 on every instruction-set tier this CPU runs.

mod common;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use impchat_engine::kernels::{KernelError, Q4KInterleaved, Tier};

/// `(rows, cols)`: one super-block, a ragged row group, Phi-2's width.
const SHAPES: [(usize, usize); 3] = [(16, 256), (37, 512), (64, 2560)];
const TOKENS: [usize; 4] = [1, 3, 7, 13];

struct Case {
    matrix: Q4KInterleaved,
    /// candle's dequantization of the GGML blocks, row-major `n x k`.
    candle_weights: Vec<f32>,
}

fn case(n: usize, k: usize, seed: u64) -> Case {
    let device = Device::Cpu;
    // An offset per row, so the mins are not all alike.
    let values: Vec<f32> = common::gaussian_like(n * k, seed, 0.05)
        .iter()
        .enumerate()
        .map(|(i, v)| v + 0.01 * (i / k % 7) as f32)
        .collect();
    let w = Tensor::from_vec(values, (n, k), &device).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
    let blocks = q.data().unwrap().into_owned();
    let candle_weights = common::dequantized(&q);
    Case {
        matrix: Q4KInterleaved::from_q4_k(&blocks, n, k).unwrap(),
        candle_weights,
    }
}

#[test]
fn repacked_weights_equal_candles_dequantization() {
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let case = case(n, k, seed as u64);
        assert_eq!(case.matrix.dequantize(), case.candle_weights, "{n}x{k}");
    }
}

fn check_tier(tier: Tier) {
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let case = case(n, k, seed as u64 + 10);
        let weights = case.matrix.dequantize();
        for m in TOKENS {
            let x = common::activations(m, k);
            let got = case.matrix.matmul_with(tier, &x).unwrap();
            let label = format!("{tier:?} {n}x{k} m={m}");
            common::assert_matches_dequantized_product(&label, &got, &weights, (n, k), &x, 1e-6);
        }
    }
}

#[test]
fn every_tier_matches_the_dequantized_product() {
    for tier in Tier::ALL {
        if tier.is_available() {
            check_tier(tier);
        } else {
            eprintln!("this CPU lacks {tier:?}; tier not tested");
        }
    }
}

#[test]
fn wrong_sizes_are_clear_errors() {
    assert_eq!(
        Q4KInterleaved::from_q4_k(&[0u8; 144], 1, 300).unwrap_err(),
        KernelError::KQuantBadColumns {
            quant: "Q4_K",
            cols: 300
        }
    );
    let err = Q4KInterleaved::from_q4_k(&[0u8; 144], 2, 256).unwrap_err();
    assert_eq!(
        err,
        KernelError::KQuantWrongByteCount {
            quant: "Q4_K",
            rows: 2,
            cols: 256,
            expected: 288,
            found: 144
        }
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}
