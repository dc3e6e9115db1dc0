//! GELU with the tanh approximation (Phi-2's `gelu_new`, SigLIP's `gelu_pytorch_tanh`),
//! vectorised and spread over the thread pool. Candle 0.11.1 runs it as a scalar,
//! single-threaded `f32::tanh` per value, which costs seconds per prefill at Imp sizes.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Values per parallel task: large enough to amortise scheduling.
const TASK_VALUES: usize = 16 * 1024;

/// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, elementwise, same shape and dtype.
pub fn gelu_tanh(xs: &Tensor) -> Result<Tensor> {
    let mut values = xs.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    values.par_chunks_mut(TASK_VALUES).for_each(gelu_in_place);
    Tensor::from_vec(values, xs.shape(), xs.device())?.to_dtype(xs.dtype())
}

fn gelu_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        unsafe { gelu_avx2(xs) };
        return;
    }
    gelu_portable(xs);
}

/// The portable loop compiled with AVX2 + FMA enabled, so LLVM vectorises it 8 wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(xs: &mut [f32]) {
    gelu_portable(xs);
}

#[inline(always)]
fn gelu_portable(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

/// `x · sigmoid(2z)` equals `0.5 x (1 + tanh z)`; branch-free so it vectorises.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let z = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * z))
}

/// `e^x` to about 2 ulp: `2^n · p(r)` with `x = n ln2 + r`, `|r| ≤ ln2 / 2`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Past these bounds e^x is 0 or overflows; clamping keeps 2^n a normal f32.
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candles_tanh_gelu() {
        // More values than one parallel task holds, from -20 to 20.
        let values: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 / 1000.0).collect();
        let xs = Tensor::from_vec(values.clone(), (values.len(),), &Device::Cpu).unwrap();
        let expected: Vec<f32> = xs.gelu().unwrap().to_vec1().unwrap();
        let got: Vec<f32> = gelu_tanh(&xs).unwrap().to_vec1().unwrap();
        for ((x, e), g) in values.iter().zip(&expected).zip(&got) {
            assert!(
                (e - g).abs() <= 2e-6 * (1.0 + e.abs()),
                "gelu({x}) = {g}, candle says {e}"
            );
        }
    }

    #[test]
    fn saturates_without_overflow() {
        let xs = Tensor::new(&[[-1e4f32, -100.0], [0.0, 1e4]], &Device::Cpu).unwrap();
        let got = gelu_tanh(&xs).unwrap();
        assert_eq!(got.dims(), &[2, 2]);
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        assert!(got[0].abs() < 1e-30 && got[1].abs() < 1e-30, "{got:?}");
        assert_eq!(&got[2..], &[0.0, 1e4]);
    }
}
