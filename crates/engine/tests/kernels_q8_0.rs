//! Our Q8_0 matmul against its own dequantized weights in f64 and against candle's Q8_0
//! blocks, on every instruction-set tier this CPU runs and on the portable scalar path,
//! including shapes whose rows and columns need padding (SigLIP's fc2 reads 4304 inputs).

mod common;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Module, Tensor};
use impchat_engine::kernels::{KernelError, Q8_0Matrix, Tier};
use impchat_engine::linear::{Linear, Weight};

/// `(rows, cols)`: whole groups and blocks, ragged rows, ragged columns, both ragged
/// (the tiny fixture tower's 24 x 56), and fc2's 4304 inputs.
const SHAPES: [(usize, usize); 6] = [
    (32, 64),
    (37, 96),
    (48, 40),
    (24, 56),
    (20, 4304),
    (100, 1152),
];
const TOKENS: [usize; 5] = [1, 2, 7, 13, 61];

/// Deterministic N(0, 0.07)-like values.
fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    common::gaussian_like(len, seed, 0.12)
}

/// One tier on every shape and token count, against the matrix's own dequantized weights
/// times the int8-rounded activations: only f32 summation order differs.
fn check_tier(tier: Tier) {
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let weights = gaussian(n * k, seed as u64);
        let matrix = Q8_0Matrix::quantize(n, k, |r, row| {
            row.copy_from_slice(&weights[r * k..(r + 1) * k])
        })
        .unwrap();
        let dequantized = matrix.dequantize();
        for m in TOKENS {
            let x = common::activations(m, k);
            let got = matrix.matmul_with(tier, &x).unwrap();
            let label = format!("{tier:?} {n}x{k} m={m}");
            common::assert_matches_dequantized_product(
                &label,
                &got,
                &dequantized,
                (n, k),
                &x,
                1e-7,
            );
        }
    }
}

#[test]
fn scalar_tier_matches_the_dequantized_product() {
    check_tier(Tier::Scalar);
}

#[test]
fn avx2_tier_matches_the_dequantized_product() {
    if Tier::Avx2.is_available() {
        check_tier(Tier::Avx2);
    } else {
        eprintln!("skipped: this CPU has no AVX2");
    }
}

#[test]
fn avx_vnni_tier_matches_the_dequantized_product() {
    if Tier::AvxVnni.is_available() {
        check_tier(Tier::AvxVnni);
    } else {
        eprintln!("skipped: this CPU has no AVX-VNNI");
    }
}

#[test]
fn avx512_vnni_tier_matches_the_dequantized_product() {
    if Tier::Avx512Vnni.is_available() {
        check_tier(Tier::Avx512Vnni);
    } else {
        eprintln!("skipped: this CPU has no AVX512-VNNI");
    }
}

/// Our quantizer writes GGML's Q8_0 (candle's), and GGML blocks read back unchanged.
#[test]
fn quantized_and_stored_blocks_equal_ggml_q8_0() {
    let (n, k) = (37, 256);
    let weights = gaussian(n * k, 7);
    let device = Device::Cpu;
    let tensor = Tensor::from_vec(weights.clone(), (n, k), &device).unwrap();
    let ggml = QTensor::quantize(&tensor, GgmlDType::Q8_0).unwrap();
    let ggml_values: Vec<f32> = ggml
        .dequantize(&device)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();

    let ours = Q8_0Matrix::quantize(n, k, |r, row| {
        row.copy_from_slice(&weights[r * k..(r + 1) * k])
    })
    .unwrap();
    assert_eq!(ours.dequantize(), ggml_values);

    let read = Q8_0Matrix::from_blocks(&ggml.data().unwrap(), n, k).unwrap();
    assert_eq!(read.dequantize(), ggml_values);
    let x = common::activations(5, k);
    assert_eq!(
        read.matmul_with(Tier::Scalar, &x).unwrap(),
        ours.matmul_with(Tier::Scalar, &x).unwrap()
    );
}

/// The true f32 product stays within the int8 rounding of both operands: about 0.5% of
/// `Σ |w x|` at worst for these sizes, far less on average.
#[test]
fn product_stays_close_to_the_f32_product() {
    let (n, k, m) = (64, 4304, 9);
    let weights = gaussian(n * k, 3);
    let matrix = Q8_0Matrix::quantize(n, k, |r, row| {
        row.copy_from_slice(&weights[r * k..(r + 1) * k])
    })
    .unwrap();
    let x = common::activations(m, k);
    let got = matrix.matmul(&x).unwrap();
    let (truth, magnitude) = common::reference(&weights, n, k, &x);
    let mut err2 = 0f64;
    let mut norm2 = 0f64;
    for ((&got, &truth), &magnitude) in got.iter().zip(&truth).zip(&magnitude) {
        let diff = (got as f64 - truth).abs();
        assert!(diff <= 5e-3 * magnitude, "{got} vs {truth}");
        err2 += diff * diff;
        norm2 += truth * truth;
    }
    let relative = (err2 / norm2).sqrt();
    assert!(relative < 1e-2, "relative L2 error {relative}");
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (n, k, m) = (200, 1152, 131);
    let weights = gaussian(n * k, 11);
    let matrix = Q8_0Matrix::quantize(n, k, |r, row| {
        row.copy_from_slice(&weights[r * k..(r + 1) * k])
    })
    .unwrap();
    let x = common::activations(m, k);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| matrix.matmul(&x).unwrap())
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn bad_shapes_are_refused_with_the_reason() {
    let bytes = vec![0u8; 2 * 34];
    assert_eq!(
        Q8_0Matrix::from_blocks(&bytes, 2, 40).unwrap_err(),
        KernelError::BadQ8_0Columns { cols: 40 }
    );
    let err = Q8_0Matrix::from_blocks(&bytes, 3, 32).unwrap_err();
    assert_eq!(
        err,
        KernelError::WrongQ8_0ByteCount {
            rows: 3,
            cols: 32,
            expected: 102,
            found: 68
        }
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(
        Q8_0Matrix::quantize(0, 32, |_, _| {}).unwrap_err(),
        KernelError::EmptyMatrix { rows: 0, cols: 32 }
    );
    let matrix = Q8_0Matrix::from_blocks(&bytes, 2, 32).unwrap();
    assert_eq!(
        matrix.matmul(&[0.0; 33]).unwrap_err(),
        KernelError::BadInput { len: 33, cols: 32 }
    );
}

/// The vision tower's layers: a (batch, tokens, in) input with a bias, through `Linear`.
#[test]
fn q8_0_linear_matches_the_dense_layer_on_its_dequantized_weights() {
    let (n, k) = (24, 56);
    let device = Device::Cpu;
    let weights = gaussian(n * k, 5);
    let matrix = Q8_0Matrix::quantize(n, k, |r, row| {
        row.copy_from_slice(&weights[r * k..(r + 1) * k])
    })
    .unwrap();
    let dense_w = Tensor::from_vec(matrix.dequantize(), (n, k), &device).unwrap();
    let bias = Tensor::from_vec(gaussian(n, 6), n, &device).unwrap();
    let ours = Linear::q8_0(matrix, Some(bias.clone()));
    assert!(matches!(ours.weight(), Weight::Q8_0(_)));
    let dense = Linear::dense(dense_w, Some(bias));

    let x = Tensor::from_vec(
        common::int8_rounded(&common::activations(2 * 9, k), k),
        (2, 9, k),
        &device,
    )
    .unwrap();
    let got = ours.forward(&x).unwrap();
    let want = dense.forward(&x).unwrap();
    assert_eq!(got.dims(), &[2, 9, n]);
    let diff: f32 = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-4, "differs by {diff}");
    // A strided view (here a transpose) is read like its contiguous copy.
    let strided = x.transpose(0, 1).unwrap();
    let from_view = ours.forward(&strided).unwrap();
    let from_copy = ours.forward(&strided.contiguous().unwrap()).unwrap();
    assert_eq!(
        from_view.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        from_copy.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    let wrong = Tensor::zeros((1, 3, k + 1), candle_core::DType::F32, &device).unwrap();
    let err = ours.forward(&wrong).unwrap_err().to_string();
    assert!(err.contains("expects 56 input features"), "{err}");
}

#[test]
fn a_bias_of_the_wrong_length_is_refused() {
    let matrix = Q8_0Matrix::quantize(3, 32, |_, row| row.fill(1.0)).unwrap();
    let x = vec![1.0; 32];
    assert_eq!(
        matrix
            .matmul_bias(Tier::Scalar, &x, Some(&[1.0; 4]))
            .unwrap_err(),
        KernelError::BadBias { len: 4, rows: 3 }
    );
    let with_bias = matrix
        .matmul_bias(Tier::best(), &x, Some(&[1.0, 2.0, 3.0]))
        .unwrap();
    // Σ 1·1 over 32 values is 32 up to the f16 weight scale's rounding (1/127 in f16).
    for (got, want) in with_bias.iter().zip([33.0f32, 34.0, 35.0]) {
        assert!((got - want).abs() < 0.01, "{with_bias:?}");
    }
}
