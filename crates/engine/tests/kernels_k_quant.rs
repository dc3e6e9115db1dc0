//! Q4_K and Q6_K repacked for the interleaved kernels ([`Q4KInterleaved`],
//! [`Q6KInterleaved`]): their weights against candle's dequantization of the same GGML
//! blocks, their matmul against their own weights in f64 on every instruction-set tier
//! this CPU runs, clear errors for wrong sizes, and the linear layer's routing to them.

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use impchat_engine::kernels::{Interleaved, KernelError, Q4KInterleaved, Q6KInterleaved, Tier};
use impchat_engine::linear::{Linear, Weight};

/// `(rows, cols)`: one super-block, a ragged row group, Phi-2's width.
const SHAPES: [(usize, usize); 3] = [(16, 256), (37, 512), (64, 2560)];
const TOKENS: [usize; 4] = [1, 3, 7, 13];

/// A K-quant format: its GGML type and its repacking.
struct Format<const BITS: usize, const MINS: bool> {
    dtype: GgmlDType,
    name: &'static str,
    block_bytes: usize,
    repack: fn(&[u8], usize, usize) -> Result<Interleaved<BITS, MINS>, KernelError>,
}

const Q4_K: Format<4, true> = Format {
    dtype: GgmlDType::Q4K,
    name: "Q4_K",
    block_bytes: 144,
    repack: Q4KInterleaved::from_q4_k,
};

const Q6_K: Format<6, false> = Format {
    dtype: GgmlDType::Q6K,
    name: "Q6_K",
    block_bytes: 210,
    repack: Q6KInterleaved::from_q6_k,
};

/// `n x k` seeded weights with an offset per row, so the mins are not all alike.
fn quantized(dtype: GgmlDType, n: usize, k: usize, seed: u64) -> QTensor {
    let values: Vec<f32> = common::gaussian_like(n * k, seed, 0.05)
        .iter()
        .enumerate()
        .map(|(i, v)| v + 0.01 * (i / k % 7) as f32)
        .collect();
    let w = Tensor::from_vec(values, (n, k), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype).unwrap()
}

impl<const BITS: usize, const MINS: bool> Format<BITS, MINS> {
    /// The repacked matrix and candle's dequantization of the same blocks (`n x k`).
    fn case(&self, n: usize, k: usize, seed: u64) -> (Interleaved<BITS, MINS>, Vec<f32>) {
        let q = quantized(self.dtype, n, k, seed);
        let blocks = q.data().unwrap().into_owned();
        (
            (self.repack)(&blocks, n, k).unwrap(),
            common::dequantized(&q),
        )
    }

    fn check_weights(&self) {
        for (seed, &(n, k)) in SHAPES.iter().enumerate() {
            let (matrix, candle_weights) = self.case(n, k, seed as u64);
            assert_eq!(matrix.dequantize(), candle_weights, "{} {n}x{k}", self.name);
        }
    }

    fn check_tier(&self, tier: Tier) {
        for (seed, &(n, k)) in SHAPES.iter().enumerate() {
            let (matrix, _) = self.case(n, k, seed as u64 + 10);
            let weights = matrix.dequantize();
            for m in TOKENS {
                let x = common::activations(m, k);
                let got = matrix.matmul_with(tier, &x).unwrap();
                let label = format!("{} {tier:?} {n}x{k} m={m}", self.name);
                common::assert_matches_dequantized_product(
                    &label,
                    &got,
                    &weights,
                    (n, k),
                    &x,
                    1e-6,
                );
            }
        }
    }

    fn check_errors(&self) {
        let one = vec![0u8; self.block_bytes];
        assert_eq!(
            (self.repack)(&one, 1, 300).unwrap_err(),
            KernelError::KQuantBadColumns {
                quant: self.name,
                cols: 300
            }
        );
        let err = (self.repack)(&one, 2, 256).unwrap_err();
        assert_eq!(
            err,
            KernelError::KQuantWrongByteCount {
                quant: self.name,
                rows: 2,
                cols: 256,
                expected: 2 * self.block_bytes,
                found: self.block_bytes
            }
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    /// A `Linear` over candle's `QMatMul` runs on the repacked matrix where our kernels
    /// are the faster ones, with the bias added, close to candle's own product.
    fn check_linear(&self, is_ours: fn(&Weight) -> bool) {
        let tensor = std::sync::Arc::new(quantized(self.dtype, 40, 512, 7));
        let candle = QMatMul::from_arc(tensor.clone()).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 40, &Device::Cpu).unwrap();
        let linear = Linear::from_qmatmul(candle.clone(), Some(bias.clone()));
        let ours_expected = cfg!(target_arch = "x86_64") && Tier::best() != Tier::Scalar;
        assert_eq!(
            is_ours(linear.weight()),
            ours_expected,
            "{:?}",
            linear.weight()
        );
        let matrix = (self.repack)(&tensor.data().unwrap(), 40, 512).unwrap();
        for tokens in [1, 5] {
            let xs = Tensor::randn(0f32, 1.0, (1, tokens, 512), &Device::Cpu).unwrap();
            let got = linear.forward(&xs).unwrap();
            assert_eq!(got.dims(), [1, tokens, 40]);
            let theirs = candle.forward(&xs).unwrap().broadcast_add(&bias).unwrap();
            if ours_expected {
                let x = xs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let b = bias.to_vec1::<f32>().unwrap();
                let expected = matrix.matmul_bias(Tier::best(), &x, Some(&b)).unwrap();
                assert_eq!(
                    got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    expected
                );
            }
            // Candle rounds activations per 256 values, ours per 32: close, not equal.
            let diff = max_abs(&(&got - &theirs).unwrap());
            assert!(
                diff <= 0.02 * max_abs(&theirs),
                "{} {tokens} rows: {diff} off candle's",
                self.name
            );
        }
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn repacked_weights_equal_candles_dequantization() {
    Q4_K.check_weights();
    Q6_K.check_weights();
}

#[test]
fn every_tier_matches_the_dequantized_product() {
    for tier in Tier::ALL {
        if tier.is_available() {
            Q4_K.check_tier(tier);
            Q6_K.check_tier(tier);
        } else {
            eprintln!("this CPU lacks {tier:?}; tier not tested");
        }
    }
}

#[test]
fn wrong_sizes_are_clear_errors() {
    Q4_K.check_errors();
    Q6_K.check_errors();
}

#[test]
fn linear_runs_k_quants_on_the_interleaved_kernels_close_to_candle() {
    Q4_K.check_linear(|w| matches!(w, Weight::Q4K(_)));
    Q6_K.check_linear(|w| matches!(w, Weight::Q6K(_)));
}
