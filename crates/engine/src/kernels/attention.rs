//! Scaled dot-product attention, flash-attention style: each query row walks its
//! visible keys in blocks with an online softmax, so no `(L × T)` score matrix or mask is
//! ever built and keys a causal mask would hide are never computed. Queries are f32; keys
//! and values are f32 (an image encoder) or f16 (a language model's KV cache, half the
//! bytes each decoded token reads), widened to f32 as they are loaded. Rows of one head
//! run in parallel chunks, 16 lanes wide under AVX-512 (8 under AVX2), which the run-time
//! dispatch below picks.

use half::f16;
use rayon::prelude::*;

/// Keys scored per step of the online softmax.
const KEY_BLOCK: usize = 64;
/// Query rows per parallel task.
const ROWS_PER_TASK: usize = 16;
/// Lanes of the partial sums in [`dot`]: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// Which keys a query row sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Every key (an image encoder).
    All,
    /// Query row `i` sits at position `past + i` and sees keys `j <= past + i`, and with
    /// a sliding `window`, only those with `past + i - j <= window`.
    Causal { past: usize, window: Option<usize> },
}

/// A key or value element the kernel reads: f32 or f16.
pub trait KvValue: Copy + Send + Sync + std::fmt::Debug + 'static {
    fn to_f32(self) -> f32;

    /// The 16 values at `ptr` as f32, reading only the lanes set in `mask` (the others
    /// are 0).
    ///
    /// # Safety
    /// AVX-512F/BW/VL and F16C; the masked lanes must be readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(ptr: *const Self, mask: u16) -> std::arch::x86_64::__m512;

    /// The 8 values at `ptr` as f32.
    ///
    /// # Safety
    /// AVX2 and F16C; 8 values must be readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256;
}

impl KvValue for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(ptr: *const Self, mask: u16) -> std::arch::x86_64::__m512 {
        // SAFETY: per the caller.
        unsafe { std::arch::x86_64::_mm512_maskz_loadu_ps(mask, ptr) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: per the caller.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(ptr) }
    }
}

impl KvValue for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(ptr: *const Self, mask: u16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: per the caller; f16 is 16 bits, as the lanes read.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, ptr.cast())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(ptr: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: per the caller.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(ptr.cast())) }
    }
}

/// Borrowed attention inputs. `q` is `[heads][len][head_dim]`; `k` and `v` are
/// `[kv_heads][…][head_dim]` with `kv_head_stride` values between heads and `keys` rows
/// used per head (a KV cache may have room for more).
#[derive(Debug, Clone, Copy)]
pub struct AttentionInput<'a, E: KvValue = f32> {
    pub q: &'a [f32],
    pub k: &'a [E],
    pub v: &'a [E],
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub len: usize,
    pub keys: usize,
    pub kv_head_stride: usize,
    pub scale: f32,
    pub visibility: Visibility,
}

/// Why the inputs cannot be attended over.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttentionError {
    #[error(
        "attention shapes do not fit: {heads} query heads over {kv_heads} key/value heads of \
         {head_dim} values"
    )]
    BadHeads {
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    },
    #[error("attention {what} holds {found} values, needs at least {needed}")]
    TooShort {
        what: &'static str,
        found: usize,
        needed: usize,
    },
    #[error("{len} query rows after {past} cached ones need {needed} keys, got {keys}")]
    MissingKeys {
        len: usize,
        past: usize,
        keys: usize,
        needed: usize,
    },
}

impl<E: KvValue> AttentionInput<'_, E> {
    fn check(&self) -> Result<(), AttentionError> {
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        if h == 0 || kvh == 0 || d == 0 || !h.is_multiple_of(kvh) {
            return Err(AttentionError::BadHeads {
                heads: h,
                kv_heads: kvh,
                head_dim: d,
            });
        }
        let short = |what, found: usize, needed: usize| {
            if found < needed {
                Err(AttentionError::TooShort {
                    what,
                    found,
                    needed,
                })
            } else {
                Ok(())
            }
        };
        short("query", self.q.len(), h * self.len * d)?;
        if self.keys > 0 {
            let kv_needed = (kvh - 1) * self.kv_head_stride + self.keys * d;
            short("key cache", self.k.len(), kv_needed)?;
            short("value cache", self.v.len(), kv_needed)?;
        }
        let (past, needed) = match self.visibility {
            Visibility::All => (0, 1),
            Visibility::Causal { past, .. } => (past, past + self.len),
        };
        if self.keys < needed {
            return Err(AttentionError::MissingKeys {
                len: self.len,
                past,
                keys: self.keys,
                needed,
            });
        }
        Ok(())
    }

    /// The keys query row `i` sees.
    fn visible(&self, i: usize) -> std::ops::Range<usize> {
        match self.visibility {
            Visibility::All => 0..self.keys,
            Visibility::Causal { past, window } => {
                let at = past + i;
                let first = window.map_or(0, |w| at.saturating_sub(w));
                first..at + 1
            }
        }
    }
}

/// `softmax(q kᵀ · scale) v` for every head: `[len][heads * head_dim]`, on the current
/// rayon pool.
pub fn attention<E: KvValue>(input: &AttentionInput<E>) -> Result<Vec<f32>, AttentionError> {
    attention_on(Simd::detect(), input)
}

fn attention_on<E: KvValue>(
    simd: Simd,
    input: &AttentionInput<E>,
) -> Result<Vec<f32>, AttentionError> {
    input.check()?;
    let (len, d) = (input.len, input.head_dim);
    let mut per_head = vec![0f32; input.heads * len * d];
    if len == 0 {
        return Ok(per_head);
    }
    per_head
        .par_chunks_mut(len * d)
        .enumerate()
        .for_each(|(head, out)| {
            out.par_chunks_mut(ROWS_PER_TASK * d)
                .enumerate()
                .for_each(|(chunk, out)| {
                    simd.rows(input, head, chunk * ROWS_PER_TASK, out);
                });
        });
    if input.heads == 1 {
        return Ok(per_head);
    }
    let mut out = vec![0f32; len * input.heads * d];
    out.par_chunks_mut(input.heads * d)
        .enumerate()
        .for_each(|(i, row)| {
            for (head, dst) in row.chunks_exact_mut(d).enumerate() {
                dst.copy_from_slice(&per_head[(head * len + i) * d..][..d]);
            }
        });
    Ok(out)
}

/// The instruction set the row loops are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Simd {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let f16c =
                std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("fma");
            let avx512 = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl");
            if avx512 && f16c {
                return Simd::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && f16c {
                return Simd::Avx2;
            }
        }
        Simd::Portable
    }

    fn rows<E: KvValue>(
        self,
        input: &AttentionInput<E>,
        head: usize,
        first: usize,
        out: &mut [f32],
    ) {
        match self {
            // SAFETY: the CPU has the features, detected in `Simd::detect`.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { x86::rows_avx512(input, head, first, out) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { x86::rows_avx2(input, head, first, out) },
            Simd::Portable => rows::<Portable, E>(input, head, first, out),
        }
    }
}

/// The two inner loops, per instruction set.
trait Vector {
    /// `a · b`.
    fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32;
    /// `s = e^(s - max)` for every score.
    fn exp_shifted(scores: &mut [f32], max: f32);
    /// `out += Σ_j p[j] · values[j]` over the rows `values[j * d..][..d]`, `d = out.len()`.
    fn accumulate<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]);
}

/// Plain loops for any CPU (vectorised as far as LLVM manages).
struct Portable;

impl Vector for Portable {
    #[inline(always)]
    fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
        dot(a, b)
    }

    #[inline(always)]
    fn exp_shifted(scores: &mut [f32], max: f32) {
        for s in scores {
            *s = exp(*s - max);
        }
    }

    #[inline(always)]
    fn accumulate<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
        accumulate(out, probs, values);
    }
}

#[inline(always)]
fn accumulate<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
    let d = out.len();
    for (&p, v) in probs.iter().zip(values.chunks_exact(d)) {
        out.iter_mut()
            .zip(v)
            .for_each(|(o, &v)| *o += p * v.to_f32());
    }
}

/// Query rows `first..` of `head` into `out` (`rows x head_dim`).
#[inline(always)]
fn rows<V: Vector, E: KvValue>(
    input: &AttentionInput<E>,
    head: usize,
    first: usize,
    out: &mut [f32],
) {
    let d = input.head_dim;
    let kv_head = head / (input.heads / input.kv_heads);
    let keys = &input.k[kv_head * input.kv_head_stride..];
    let values = &input.v[kv_head * input.kv_head_stride..];
    let mut scores = [0f32; KEY_BLOCK];
    for (r, out) in out.chunks_exact_mut(d).enumerate() {
        let i = first + r;
        let q = &input.q[(head * input.len + i) * d..][..d];
        out.fill(0.0);
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        let visible = input.visible(i);
        for start in visible.clone().step_by(KEY_BLOCK) {
            let n = KEY_BLOCK.min(visible.end - start);
            let scores = &mut scores[..n];
            for (j, s) in scores.iter_mut().enumerate() {
                *s = V::dot(q, &keys[(start + j) * d..][..d]) * input.scale;
            }
            let block_max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let new_max = max.max(block_max);
            if new_max > max {
                let correction = exp(max - new_max);
                sum *= correction;
                out.iter_mut().for_each(|o| *o *= correction);
                max = new_max;
            }
            V::exp_shifted(scores, max);
            sum += scores.iter().sum::<f32>();
            V::accumulate(out, scores, &values[start * d..][..n * d]);
        }
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
    }
}

/// `a · b` with [`LANES`] independent partial sums, so the loop vectorises (a single
/// running sum would force a sequential order on the additions).
#[inline(always)]
fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y.to_f32();
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y.to_f32()).sum();
    // Halving adds (8 + 4 + 2 + 1 lanes) become a few vector ops; `iter().sum()` would
    // be 16 dependent scalar adds.
    let mut width = LANES / 2;
    while width > 0 {
        let (low, high) = lanes.split_at_mut(width);
        for (l, h) in low.iter_mut().zip(&high[..width]) {
            *l += h;
        }
        width /= 2;
    }
    lanes[0] + tail
}

/// `ln 2` split so that `n * LN2_HI` is exact for the `n` [`exp`] meets.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x` to about 2e-7 relative, in plain arithmetic that vectorises (libm's `expf`
/// does not): `x = n ln2 + r` with `|r| <= ln2 / 2`, a degree-6 Taylor polynomial for
/// `e^r`, and `2^n` built in the exponent bits. Inputs below -87 give about 1e-38.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (see activations.rs).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    f32::from_bits(((n as i32 + 127) as u32) << 23) * p
}

/// AVX-512 and AVX2 versions of the inner loops: explicit intrinsics, since LLVM splits
/// the portable dot product into 2-wide pieces.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{exp, rows, AttentionInput, KvValue, Vector};

    struct Avx512;
    struct Avx2;

    /// # Safety
    /// The CPU must have AVX-512F/BW/VL, AVX2, FMA and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx512<E: KvValue>(
        input: &AttentionInput<E>,
        head: usize,
        first: usize,
        out: &mut [f32],
    ) {
        rows::<Avx512, E>(input, head, first, out);
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx2<E: KvValue>(
        input: &AttentionInput<E>,
        head: usize,
        first: usize,
        out: &mut [f32],
    ) {
        rows::<Avx2, E>(input, head, first, out);
    }

    impl Vector for Avx512 {
        #[inline(always)]
        fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
            // SAFETY: only reached through `rows_avx512`, whose caller checked the CPU.
            unsafe { dot_avx512(a, b) }
        }

        #[inline(always)]
        fn exp_shifted(scores: &mut [f32], max: f32) {
            // SAFETY: as above.
            unsafe { exp_shifted_avx512(scores, max) }
        }

        #[inline(always)]
        fn accumulate<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
            // SAFETY: as above.
            unsafe { accumulate_avx512(out, probs, values) }
        }
    }

    /// `out` stays in registers (up to 8 × 16 values; wider heads go 8 chunks at a
    /// time) while every value row of the block adds into it, with one independent
    /// accumulator per chunk so the adds do not wait on each other.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate_avx512<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
        let d = out.len();
        let rows = probs.len().min(values.len() / d);
        let mut c0 = 0;
        while c0 < d {
            let chunks = (d - c0).div_ceil(16).min(8);
            // SAFETY: every access stays in columns `c0..d` of rows below `rows`.
            unsafe {
                match chunks {
                    1 => accumulate_chunks::<1, E>(out, &probs[..rows], values, c0),
                    2 => accumulate_chunks::<2, E>(out, &probs[..rows], values, c0),
                    3 => accumulate_chunks::<3, E>(out, &probs[..rows], values, c0),
                    4 => accumulate_chunks::<4, E>(out, &probs[..rows], values, c0),
                    5 => accumulate_chunks::<5, E>(out, &probs[..rows], values, c0),
                    6 => accumulate_chunks::<6, E>(out, &probs[..rows], values, c0),
                    7 => accumulate_chunks::<7, E>(out, &probs[..rows], values, c0),
                    _ => accumulate_chunks::<8, E>(out, &probs[..rows], values, c0),
                }
            }
            c0 += 16 * chunks;
        }
    }

    /// Columns `c0..c0 + 16 N` (masked at `d`) of [`accumulate_avx512`].
    ///
    /// # Safety
    /// As for [`rows_avx512`]; `values` holds `probs.len()` rows of `out.len()` values.
    // Index loops over the const-size register arrays read like the math they do.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate_chunks<const N: usize, E: KvValue>(
        out: &mut [f32],
        probs: &[f32],
        values: &[E],
        c0: usize,
    ) {
        let d = out.len();
        let masks: [__mmask16; N] = std::array::from_fn(|c| {
            let left = d.saturating_sub(c0 + 16 * c).min(16);
            ((1u32 << left) - 1) as u16
        });
        let mut acc = [_mm512_setzero_ps(); N];
        // SAFETY: the masks limit every load and store to columns below `d`.
        unsafe {
            for c in 0..N {
                acc[c] = _mm512_maskz_loadu_ps(masks[c], out.as_ptr().add(c0 + 16 * c));
            }
            for (j, &p) in probs.iter().enumerate() {
                let p = _mm512_set1_ps(p);
                let row = values.as_ptr().add(j * d + c0);
                for c in 0..N {
                    let v = E::load16(row.add(16 * c), masks[c]);
                    acc[c] = _mm512_fmadd_ps(p, v, acc[c]);
                }
            }
            for c in 0..N {
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(c0 + 16 * c), masks[c], acc[c]);
            }
        }
    }

    impl Vector for Avx2 {
        #[inline(always)]
        fn dot<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
            // SAFETY: only reached through `rows_avx2`, whose caller checked the CPU.
            unsafe { dot_avx2(a, b) }
        }

        #[inline(always)]
        fn exp_shifted(scores: &mut [f32], max: f32) {
            for s in scores {
                *s = exp(*s - max);
            }
        }

        #[inline(always)]
        fn accumulate<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
            // SAFETY: only reached through `rows_avx2`, whose caller checked the CPU.
            unsafe { accumulate_avx2(out, probs, values) }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    #[inline]
    unsafe fn dot_avx512<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): `i + 16 <= n`, or a mask that reads only lanes below `n`.
        while i + 16 <= n {
            acc =
                unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), E::load16(b.add(i), !0), acc) };
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u16 << (n - i)) - 1;
            acc = unsafe {
                _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, a.add(i)),
                    E::load16(b.add(i), mask),
                    acc,
                )
            };
        }
        _mm512_reduce_add_ps(acc)
    }

    /// [`super::accumulate`] 8 columns at a time, widening f16 values with F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate_avx2<E: KvValue>(out: &mut [f32], probs: &[f32], values: &[E]) {
        let d = out.len();
        let body = d / 8 * 8;
        for (&p, row) in probs.iter().zip(values.chunks_exact(d)) {
            let pv = _mm256_set1_ps(p);
            for c in (0..body).step_by(8) {
                // SAFETY: `c + 8 <= d`, inside both `out` and the row.
                unsafe {
                    let o = out.as_mut_ptr().add(c);
                    let v = E::load8(row.as_ptr().add(c));
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(pv, v, _mm256_loadu_ps(o)));
                }
            }
            for (o, v) in out[body..].iter_mut().zip(&row[body..]) {
                *o += p * v.to_f32();
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dot_avx2<E: KvValue>(a: &[f32], b: &[E]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`.
            acc = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), E::load8(pb.add(i)), acc) };
            i += 8;
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        s + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y.to_f32())
            .sum::<f32>()
    }

    /// [`exp`] 16 lanes at a time.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn exp_shifted_avx512(scores: &mut [f32], max: f32) {
        let max = _mm512_set1_ps(max);
        let mut chunks = scores.chunks_exact_mut(16);
        for chunk in &mut chunks {
            // SAFETY: the chunk holds exactly 16 values.
            unsafe {
                let x = _mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), max);
                _mm512_storeu_ps(chunk.as_mut_ptr(), exp16(x));
            }
        }
        let rest = chunks.into_remainder();
        let n = rest.len();
        if n > 0 {
            let mask: __mmask16 = (1u16 << n) - 1;
            // SAFETY: the mask reads and writes only the `n` remaining values.
            unsafe {
                let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, rest.as_ptr()), max);
                _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, exp16(x));
            }
        }
    }

    /// [`exp`]'s arithmetic on 16 lanes.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(super::LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(super::LN2_LO), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvtps_epi32(n),
            _mm512_set1_epi32(127),
        ));
        _mm512_mul_ps(p, _mm512_castsi512_ps(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 500.0 - 2.0)
            .collect()
    }

    /// Every instruction set this CPU has gives the portable loops' result, for head
    /// sizes with and without a partial 16-value chunk and wider than 8 chunks.
    #[test]
    fn every_instruction_set_agrees_with_the_portable_loops() {
        let mut sets = vec![Simd::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                sets.push(Simd::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                sets.push(Simd::Avx512);
            }
        }
        for (d, len, past, visibility) in [
            (72, 20, 0, Visibility::All),
            (
                80,
                9,
                70,
                Visibility::Causal {
                    past: 70,
                    window: None,
                },
            ),
            (
                136,
                3,
                5,
                Visibility::Causal {
                    past: 5,
                    window: Some(4),
                },
            ),
        ] {
            let (heads, kv_heads, keys) = (4, 2, past + len);
            let (q, k, v) = (
                values(heads * len * d, 1),
                values(kv_heads * keys * d, 2),
                values(kv_heads * keys * d, 3),
            );
            let input = AttentionInput {
                q: &q,
                k: &k,
                v: &v,
                heads,
                kv_heads,
                head_dim: d,
                len,
                keys,
                kv_head_stride: keys * d,
                scale: 1.0 / (d as f32).sqrt(),
                visibility,
            };
            let expected = attention_on(Simd::Portable, &input).expect("portable");
            // A KV cache's f16 keys and values: the same result as f32 ones holding the
            // same (rounded) numbers.
            let half = |x: &[f32]| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
            let (k16, v16) = (half(&k), half(&v));
            let widen = |x: &[f16]| x.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
            let (k_rounded, v_rounded) = (widen(&k16), widen(&v16));
            let rounded = AttentionInput {
                k: &k_rounded,
                v: &v_rounded,
                ..input
            };
            let expected_f16 = attention_on(Simd::Portable, &rounded).expect("portable");
            let input_f16 = AttentionInput {
                q: &q,
                k: &k16,
                v: &v16,
                heads,
                kv_heads,
                head_dim: d,
                len,
                keys,
                kv_head_stride: keys * d,
                scale: 1.0 / (d as f32).sqrt(),
                visibility,
            };
            let max_diff =
                |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            for &simd in &sets {
                let got = attention_on(simd, &input).expect("simd");
                let diff = max_diff(&got, &expected);
                assert!(diff < 1e-5, "{simd:?}, d {d}: max diff {diff}");
                let got = attention_on(simd, &input_f16).expect("simd f16");
                let diff = max_diff(&got, &expected_f16);
                assert!(diff < 1e-5, "{simd:?} on f16, d {d}: max diff {diff}");
            }
        }
    }

    #[test]
    fn missing_keys_are_refused() {
        let q = vec![0f32; 8];
        let input = AttentionInput {
            q: &q,
            k: &q,
            v: &q,
            heads: 1,
            kv_heads: 1,
            head_dim: 8,
            len: 1,
            keys: 1,
            kv_head_stride: 8,
            scale: 1.0,
            visibility: Visibility::Causal {
                past: 3,
                window: None,
            },
        };
        assert_eq!(
            attention(&input).unwrap_err(),
            AttentionError::MissingKeys {
                len: 1,
                past: 3,
                keys: 1,
                needed: 4
            }
        );
    }

    #[test]
    fn exp_matches_libm_across_the_softmax_range() {
        for i in 0..=20_000 {
            let x = -80.0 + i as f32 * 0.004_4;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, libm {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }
}
