//! Our Q6_K decode matvec against candle's own `QMatMul` on the same `QTensor`, against
//! candle's dequantized weights, on every instruction-set tier this CPU runs and on the
//! portable scalar path; the linear layer's routing of decode rows to it; and Q4_K
//! layers' routing to the interleaved kernels.

mod common;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use impchat_engine::kernels::{
    BlockBytes, KernelError, Q4KInterleaved, Q6KMatrix, Tier, Q6_K_BLOCK_BYTES,
};
use impchat_engine::linear::{Linear, Weight};

/// `(rows, cols)`: rows that are not a multiple of the 4-row kernel nor of a parallel
/// task, one super-block per row up to Phi-2's 10240-wide `fc2`.
const SHAPES: [(usize, usize); 5] = [(37, 256), (96, 512), (133, 2560), (5, 768), (64, 10240)];

struct Case {
    tensor: Arc<QTensor>,
    /// Our matrix over the tensor's blocks.
    matrix: Q6KMatrix,
    /// candle's dequantization of the same blocks, row-major `rows x cols`.
    weights: Vec<f32>,
    cols: usize,
}

/// `rows x cols` seeded weights quantized to `dtype` by candle.
fn quantized_tensor(dtype: GgmlDType, rows: usize, cols: usize, seed: u64) -> Arc<QTensor> {
    let w = Tensor::from_vec(gaussian(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    Arc::new(QTensor::quantize(&w, dtype).unwrap())
}

fn case(rows: usize, cols: usize, seed: u64) -> Case {
    let tensor = quantized_tensor(GgmlDType::Q6K, rows, cols, seed);
    let weights = common::dequantized(&tensor);
    let bytes = BlockBytes::from_qtensor(tensor.clone()).expect("a CPU tensor lends its bytes");
    let matrix = Q6KMatrix::new(bytes, rows, cols).unwrap();
    Case {
        tensor,
        matrix,
        weights,
        cols,
    }
}

/// Deterministic N(0, 0.02)-like weights with a per-row offset, so rows have different
/// mins.
fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    common::gaussian_like(len, seed, 0.035)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v + (i % 7) as f32 * 0.004)
        .collect()
}

/// Activations with a different magnitude in every 32-value sub-block and a zero
/// super-block, so per-super-block scales and per-sub-block sums both matter.
fn activations(cols: usize) -> Vec<f32> {
    (0..cols)
        .map(|i| {
            if cols > 256 && i / 256 == 1 {
                return 0.0;
            }
            let wave = ((i * 7919) % 1009) as f32 / 1009.0 - 0.3;
            wave * (1.0 + (i / 32 % 5) as f32)
        })
        .collect()
}

/// The activations as the kernel sees them: int8 per 256 values, `d = max|x| / 127`,
/// rounded half to even.
fn quantized(x: &[f32]) -> Vec<f32> {
    x.chunks(256)
        .flat_map(|block| {
            let d = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            block.iter().map(move |v| (v * inv).round_ties_even() * d)
        })
        .collect()
}

/// Per row: `Σ w·x` in f64 and `Σ |w·x|`, the scale an error is measured against.
fn reference(c: &Case, x: &[f32]) -> Vec<(f64, f64)> {
    c.weights
        .chunks(c.cols)
        .map(|row| {
            row.iter().zip(x).fold((0f64, 0f64), |(s, a), (&w, &x)| {
                let p = f64::from(w) * f64::from(x);
                (s + p, a + p.abs())
            })
        })
        .collect()
}

fn tiers() -> Vec<Tier> {
    let tiers: Vec<Tier> = Tier::ALL.into_iter().filter(|t| t.is_available()).collect();
    assert!(tiers.contains(&Tier::Scalar));
    tiers
}

#[test]
fn matvec_equals_dequantized_weights_times_quantized_activations_on_every_tier() {
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let c = case(rows, cols, i as u64);
        let x = activations(cols);
        let expected = reference(&c, &quantized(&x));
        for tier in tiers() {
            let got = c.matrix.matvec_with(tier, &x).unwrap();
            assert_eq!(got.len(), rows);
            for (r, (&g, &(e, scale))) in got.iter().zip(&expected).enumerate() {
                // Integer dot products are exact; only f32 rounding of the scales and
                // the sums remains.
                let err = (f64::from(g) - e).abs();
                assert!(
                    err <= 1e-5 * scale + 1e-7,
                    "{tier:?} {rows}x{cols} row {r}: {g} vs {e} (err {err}, scale {scale})"
                );
            }
        }
    }
}

#[test]
fn matvec_is_close_to_the_f32_product_with_the_dequantized_weights() {
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let c = case(rows, cols, 10 + i as u64);
        let x = activations(cols);
        let expected = reference(&c, &x);
        let got = c.matrix.matvec(&x).unwrap();
        for (r, (&g, &(e, scale))) in got.iter().zip(&expected).enumerate() {
            // int8 activations with one scale per 256 values: at most half a step of
            // max|x|/127 per value, i.e. well under 1% of Σ|w·x|.
            let err = (f64::from(g) - e).abs();
            assert!(
                err <= 1e-2 * scale,
                "{rows}x{cols} row {r}: {g} vs {e} (err {err}, scale {scale})"
            );
        }
    }
}

#[test]
fn matvec_matches_candles_qmatmul_on_the_same_tensor() {
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let c = case(rows, cols, 20 + i as u64);
        let x = activations(cols);
        let xs = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
        let theirs: Vec<f32> = QMatMul::from_arc(c.tensor.clone())
            .unwrap()
            .forward(&xs)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let scales = reference(&c, &x);
        for tier in tiers() {
            let ours = c.matrix.matvec_with(tier, &x).unwrap();
            for (r, ((&o, &t), &(_, scale))) in ours.iter().zip(&theirs).zip(&scales).enumerate() {
                // Both quantize the activations to int8 per 256 values; they may round a
                // value differently (candle clamps to -128), nothing more.
                let err = f64::from((o - t).abs());
                assert!(
                    err <= 2e-3 * scale + 1e-6,
                    "{tier:?} {rows}x{cols} row {r}: ours {o}, candle {t}"
                );
            }
        }
    }
}

#[test]
fn q6_k_wrong_sizes_are_clear_errors() {
    let c = case(8, 512, 4);
    let mut bytes = c.tensor.data().unwrap().into_owned();
    bytes.push(0);
    let err = Q6KMatrix::new(BlockBytes::Owned(bytes.clone()), 8, 512).unwrap_err();
    assert_eq!(
        err,
        KernelError::KQuantWrongByteCount {
            quant: "Q6_K",
            rows: 8,
            cols: 512,
            expected: 8 * 2 * Q6_K_BLOCK_BYTES,
            found: 8 * 2 * Q6_K_BLOCK_BYTES + 1,
        }
    );
    assert!(err.to_string().contains("Q6_K"), "{err}");
    assert_eq!(
        Q6KMatrix::new(BlockBytes::Owned(bytes), 8, 128).unwrap_err(),
        KernelError::KQuantBadColumns {
            quant: "Q6_K",
            cols: 128
        }
    );
    assert_eq!(
        c.matrix.matvec(&[0.0; 768]).unwrap_err(),
        KernelError::BadInput {
            len: 768,
            cols: 512
        }
    );
}

#[test]
fn linear_runs_q6_k_decode_rows_over_candles_bytes_and_prefill_on_candle() {
    let c = case(40, 512, 7);
    let candle = QMatMul::from_arc(c.tensor.clone()).unwrap();
    let linear = Linear::from_qmatmul(candle.clone(), None);
    let ours_expected = cfg!(target_arch = "x86_64") && Tier::best() != Tier::Scalar;
    let own_bytes = match linear.weight() {
        Weight::Q6K { own, .. } => Some(own.bytes()),
        _ => None,
    };
    assert_eq!(
        own_bytes.is_some(),
        ours_expected,
        "got {:?}",
        linear.weight()
    );
    if let Some(bytes) = own_bytes {
        let lent = c.tensor.data().unwrap();
        assert_eq!(
            bytes.as_slice().as_ptr(),
            lent.as_ptr(),
            "Q6_K blocks were copied"
        );
    }

    let x = activations(512);
    let one = Tensor::from_vec(x.clone(), (1, 1, 512), &Device::Cpu).unwrap();
    let got = linear.forward(&one).unwrap();
    assert_eq!(got.dims(), [1, 1, 40]);
    if ours_expected {
        let mine = c.matrix.matvec(&x).unwrap();
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), mine);
    }

    let many = Tensor::randn(0f32, 1.0, (1, 5, 512), &Device::Cpu).unwrap();
    let got = linear.forward(&many).unwrap();
    let theirs = candle.forward(&many).unwrap();
    assert_eq!(
        max_abs(&(got - theirs).unwrap()),
        0.0,
        "several rows must go through candle unchanged"
    );
}

#[test]
fn linear_runs_q4_k_on_the_interleaved_kernels_close_to_candle() {
    let tensor = quantized_tensor(GgmlDType::Q4K, 40, 512, 7);
    let candle = QMatMul::from_arc(tensor.clone()).unwrap();
    let bias = Tensor::randn(0f32, 1.0, 40, &Device::Cpu).unwrap();
    let linear = Linear::from_qmatmul(candle.clone(), Some(bias.clone()));
    let ours_expected = cfg!(target_arch = "x86_64") && Tier::best() != Tier::Scalar;
    assert_eq!(
        matches!(linear.weight(), Weight::Q4K(_)),
        ours_expected,
        "got {:?}",
        linear.weight()
    );
    let tiles = Q4KInterleaved::from_q4_k(&tensor.data().unwrap(), 40, 512).unwrap();
    for tokens in [1, 5] {
        let xs = Tensor::randn(0f32, 1.0, (1, tokens, 512), &Device::Cpu).unwrap();
        let got = linear.forward(&xs).unwrap();
        assert_eq!(got.dims(), [1, tokens, 40]);
        let theirs = candle.forward(&xs).unwrap().broadcast_add(&bias).unwrap();
        if ours_expected {
            let x = xs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = bias.to_vec1::<f32>().unwrap();
            let expected = tiles.matmul_bias(Tier::best(), &x, Some(&b)).unwrap();
            assert_eq!(
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                expected
            );
        }
        // Candle rounds activations per 256 values, ours per 32: close, not equal.
        let diff = max_abs(&(&got - &theirs).unwrap());
        assert!(
            diff <= 0.02 * max_abs(&theirs),
            "{tokens} rows: Q4_K is {diff} off candle's"
        );
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}
