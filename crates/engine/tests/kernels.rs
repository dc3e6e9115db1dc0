//! Our Q4_0 matmul against candle's own Q4_0 dequantization and an f32 matmul, on every
//! instruction-set tier this CPU runs and on the portable scalar path.

mod common;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use impchat_engine::kernels::{BlockBytes, KernelError, Q4_0Matrix, Tier};
use impchat_engine::linear::{Linear, Weight};

const SHAPES: [(usize, usize); 4] = [(96, 160), (37, 2560), (160, 1440), (5, 32)];
const TOKENS: [usize; 4] = [1, 2, 7, 237];

struct Case {
    matrix: Q4_0Matrix,
    /// The GGML Q4_0 blocks the matrix was built from.
    blocks: Vec<u8>,
    /// candle's dequantization of the same blocks, row-major `n x k`.
    weights: Vec<f32>,
}

fn case(n: usize, k: usize, seed: u64) -> Case {
    let device = Device::Cpu;
    let w = Tensor::from_vec(gaussian(n * k, seed), (n, k), &device).unwrap();
    let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
    let bytes = q.data().unwrap().into_owned();
    let weights = common::dequantized(&q);
    let matrix = Q4_0Matrix::new(BlockBytes::Owned(bytes.clone()), n, k).unwrap();
    Case {
        matrix,
        blocks: bytes,
        weights,
    }
}

/// Deterministic N(0, 0.02)-like weights.
fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    common::gaussian_like(len, seed, 0.035)
}

/// Checks one tier on every shape and token count. Two references:
/// * exact: candle's dequantized weights times the int8-rounded activations; only f32
///   summation order differs, so the error is within 1e-5 of `Σ |w x|`;
/// * true f32 product: rounding each activation moves it by at most `d / 2` of its block,
///   so the error is at most `Σ_blocks d / 2 · Σ |w|` (plus the same f32 slack).
fn check_tier(tier: Tier) {
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let case = case(n, k, seed as u64);
        for m in TOKENS {
            let x = common::activations(m, k);
            let got = case.matrix.matmul_with(tier, &x).unwrap();
            assert_eq!(got.len(), m * n);

            let (exact, magnitude) =
                common::reference(&case.weights, n, k, &common::int8_rounded(&x, k));
            let (truth, _) = common::reference(&case.weights, n, k, &x);
            for t in 0..m {
                let xt = &x[t * k..(t + 1) * k];
                for r in 0..n {
                    let i = t * n + r;
                    let slack = 1e-5 * magnitude[i] + 1e-7;
                    let diff = (got[i] as f64 - exact[i]).abs();
                    assert!(
                        diff <= slack,
                        "{tier:?} {n}x{k} m={m} out[{t}][{r}] = {} but dequantized product is {} (diff {diff:e} > {slack:e})",
                        got[i],
                        exact[i]
                    );
                    let w = &case.weights[r * k..(r + 1) * k];
                    let bound: f64 = xt
                        .chunks(32)
                        .zip(w.chunks(32))
                        .map(|(xb, wb)| {
                            let d = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
                            d / 2.0 * wb.iter().map(|w| w.abs() as f64).sum::<f64>()
                        })
                        .sum::<f64>()
                        + slack;
                    let diff = (got[i] as f64 - truth[i]).abs();
                    assert!(
                        diff <= bound,
                        "{tier:?} {n}x{k} m={m} out[{t}][{r}] is {diff:e} off the f32 product (bound {bound:e})"
                    );
                }
            }
        }
    }
}

#[test]
fn scalar_tier_matches_candle_dequantized_matmul() {
    check_tier(Tier::Scalar);
}

#[test]
fn avx2_tier_matches_candle_dequantized_matmul() {
    if Tier::Avx2.is_available() {
        check_tier(Tier::Avx2);
    } else {
        eprintln!("this CPU has no AVX2; tier not tested");
    }
}

#[test]
fn avx_vnni_tier_matches_candle_dequantized_matmul() {
    if Tier::AvxVnni.is_available() {
        check_tier(Tier::AvxVnni);
    } else {
        eprintln!("this CPU has no AVX-VNNI; tier not tested");
    }
}

#[test]
fn avx512_vnni_tier_matches_candle_dequantized_matmul() {
    if Tier::Avx512Vnni.is_available() {
        check_tier(Tier::Avx512Vnni);
    } else {
        eprintln!("this CPU has no AVX512-VNNI; tier not tested");
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let case = case(160, 1440, 9);
    let x = common::activations(7, 1440);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| case.matrix.matmul(&x).unwrap())
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn blocks_inside_a_shared_buffer_give_the_same_product() {
    let case = case(37, 2560, 3);
    let blocks = case.blocks.clone();
    // The blocks somewhere inside a larger shared buffer, as in a mapped GGUF.
    let mut file = vec![0xAAu8; 1000];
    let start = file.len();
    file.extend_from_slice(&blocks);
    file.extend_from_slice(&[0x55; 77]);
    let shared: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(file);
    let mapped = Q4_0Matrix::new(
        BlockBytes::Mapped {
            map: shared,
            range: start..start + blocks.len(),
        },
        37,
        2560,
    )
    .unwrap();
    let x = common::activations(2, 2560);
    assert_eq!(mapped.matmul(&x).unwrap(), case.matrix.matmul(&x).unwrap());
}

#[test]
fn blocks_can_come_from_a_memory_mapped_file() {
    let case = case(96, 160, 4);
    let blocks = case.blocks.clone();
    // An anonymous mapping stands in for the GGUF file's map (same `Mmap` type).
    let mut map = memmap2::MmapOptions::new()
        .len(64 + blocks.len())
        .map_anon()
        .unwrap();
    map[64..].copy_from_slice(&blocks);
    let map = map.make_read_only().unwrap();
    let mapped = Q4_0Matrix::new(
        BlockBytes::Mapped {
            map: Arc::new(map),
            range: 64..64 + blocks.len(),
        },
        96,
        160,
    )
    .unwrap();
    let linear = Linear::q4_0(mapped, None);
    let x = common::activations(3, 160);
    let got = linear
        .forward(&Tensor::from_vec(x.clone(), (3, 160), &Device::Cpu).unwrap())
        .unwrap();
    let expected = case.matrix.matmul(&x).unwrap();
    assert_eq!(
        got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        expected
    );
}

#[test]
fn bad_shapes_and_ranges_are_refused() {
    let blocks = vec![0u8; 2 * 18];
    assert_eq!(
        Q4_0Matrix::new(BlockBytes::Owned(blocks.clone()), 1, 48).unwrap_err(),
        KernelError::BadColumns { cols: 48 }
    );
    assert_eq!(
        Q4_0Matrix::new(BlockBytes::Owned(blocks.clone()), 2, 64).unwrap_err(),
        KernelError::WrongByteCount {
            rows: 2,
            cols: 64,
            expected: 72,
            found: 36
        }
    );
    let shared: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(blocks);
    let err = Q4_0Matrix::new(
        BlockBytes::Mapped {
            map: shared,
            range: 10..46,
        },
        1,
        64,
    )
    .unwrap_err();
    assert_eq!(
        err,
        KernelError::RangeOutOfBounds {
            start: 10,
            end: 46,
            len: 36
        }
    );
    let matrix = Q4_0Matrix::new(BlockBytes::Owned(vec![0u8; 36]), 1, 64).unwrap();
    assert_eq!(
        matrix.matmul(&[0.0; 65]).unwrap_err(),
        KernelError::BadInput { len: 65, cols: 64 }
    );
}

#[test]
fn q4_0_linear_uses_our_kernel_and_matches_candle() {
    let device = Device::Cpu;
    let w = Tensor::randn(0f32, 0.02, (96, 160), &device).unwrap();
    let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q4_0).unwrap());
    let bias = Tensor::randn(0f32, 1.0, 96, &device).unwrap();
    let candle = QMatMul::from_arc(q.clone()).unwrap();
    let ours = Linear::from_qmatmul(QMatMul::from_arc(q).unwrap(), Some(bias.clone()));
    if cfg!(target_arch = "x86_64") {
        assert!(matches!(ours.weight(), Weight::Q4_0(_)));
    }
    let x = Tensor::randn(0f32, 1.0, (2, 3, 160), &device).unwrap();
    let expected = candle.forward(&x).unwrap().broadcast_add(&bias).unwrap();
    let got = ours.forward(&x).unwrap();
    assert_eq!(got.dims(), &[2, 3, 96]);
    // Both quantize the activations to int8 blocks (candle stores the block scale as f16).
    let diff = (got - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = expected
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff <= 0.01 * scale,
        "max diff {diff} vs output scale {scale}"
    );
}
