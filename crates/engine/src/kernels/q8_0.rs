//! A Q8_0 weight matrix repacked for int8 dot products, and its matmul: f32 activations
//! in, f32 outputs out.
//!
//! GGML's Q8_0 stores each row as blocks of 32 `i8` with an f16 scale. Here 16 rows are
//! interleaved: for every block, 8 chunks of 64 bytes, chunk `c` holding values
//! `4c..4c + 4` of each of the 16 rows, so one 512-bit `vpdpbusd` with 4 broadcast
//! activation bytes advances 16 output rows at once and the result needs no horizontal
//! sum. Values are stored offset by +128 (`q ^ 0x80`, unsigned), the operand type
//! `vpdpbusd` multiplies by signed activations; the kernels undo the offset. Rows are
//! padded with zeros to a multiple of 16 and columns to a multiple of 32 (SigLIP's `fc2`
//! reads 4304 inputs).

use half::f16;
use rayon::prelude::*;

use super::q8_0_acts::Q8Activations;
use super::tier::Tier;
use super::KernelError;

/// Weights per Q8_0 block.
pub const Q8_0_BLOCK_VALUES: usize = 32;
/// Bytes per GGML Q8_0 block: an f16 scale `d`, then 32 `i8` values `q`; `w = d * q`.
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// Rows interleaved together: the 16 i32 lanes of a 512-bit register.
pub(crate) const GROUP_ROWS: usize = 16;
/// Consecutive values of one row inside a chunk: the 4 bytes one `vpdpbusd` lane sums.
pub(crate) const LANE_VALUES: usize = 4;
/// Chunks per block and row group.
pub(crate) const BLOCK_CHUNKS: usize = Q8_0_BLOCK_VALUES / LANE_VALUES;

/// Row groups per parallel task, and activation rows per task: a task's weights
/// (`TASK_GROUPS * 16` rows) and activations stay in L2 while its tiles pass over them.
const TASK_GROUPS: usize = 4;
const TASK_TOKENS: usize = 96;

/// 16 rows × 4 values, each `q + 128`, aligned so a 512-bit load never splits a cache
/// line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Chunk(pub [u8; GROUP_ROWS * LANE_VALUES]);

/// Stored value of a weight `q`.
#[inline]
pub(crate) fn biased(q: i8) -> u8 {
    (q as u8) ^ 0x80
}

/// The weight `q` of a stored value.
#[inline]
pub(crate) fn unbiased(stored: u8) -> i8 {
    (stored ^ 0x80) as i8
}

const ZERO_CHUNK: Chunk = Chunk([0x80; GROUP_ROWS * LANE_VALUES]);

/// An `rows x cols` weight matrix (`out x in`) of Q8_0 blocks, repacked.
pub struct Q8_0Matrix {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to whole blocks.
    padded_cols: usize,
    /// `groups × blocks × 8` chunks.
    chunks: Vec<Chunk>,
    /// `groups × blocks × 16` f16 scale bits, one per row and block.
    scales: Vec<u16>,
}

impl std::fmt::Debug for Q8_0Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Q8_0Matrix({}x{})", self.rows, self.cols)
    }
}

impl Q8_0Matrix {
    /// Quantizes an `rows x cols` matrix row by row, as GGML's Q8_0 does
    /// (`d = max|w| / 127`, `q = round(w / d)`): `fill_row(r, row)` writes row `r` (of
    /// `cols` values). Runs on the current rayon pool and holds only 16 rows in f32 per
    /// thread, so a large f16 tensor never needs a full f32 copy.
    pub fn quantize<F>(rows: usize, cols: usize, fill_row: F) -> Result<Self, KernelError>
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let mut matrix = Self::zeroed(rows, cols)?;
        let blocks = matrix.blocks();
        matrix
            .chunks
            .par_chunks_mut(blocks * BLOCK_CHUNKS)
            .zip(matrix.scales.par_chunks_mut(blocks * GROUP_ROWS))
            .enumerate()
            .for_each(|(g, (chunks, scales))| {
                let mut row = vec![0f32; blocks * Q8_0_BLOCK_VALUES];
                let mut qs = [0i8; Q8_0_BLOCK_VALUES];
                for lane in 0..GROUP_ROWS.min(rows - g * GROUP_ROWS) {
                    fill_row(g * GROUP_ROWS + lane, &mut row[..cols]);
                    for (b, block) in row.chunks_exact(Q8_0_BLOCK_VALUES).enumerate() {
                        let d = quantize_block(block, &mut qs);
                        scales[b * GROUP_ROWS + lane] = d.to_bits();
                        place(&mut chunks[b * BLOCK_CHUNKS..], lane, &qs);
                    }
                }
            });
        Ok(matrix)
    }

    /// Repacks GGML Q8_0 blocks as stored in a GGUF tensor of shape `[cols, rows]`
    /// (`rows` rows of `cols / 32` blocks, row after row), without requantizing them.
    pub fn from_blocks(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        if cols == 0 || !cols.is_multiple_of(Q8_0_BLOCK_VALUES) {
            return Err(KernelError::BadQ8_0Columns { cols });
        }
        let row_bytes = cols / Q8_0_BLOCK_VALUES * Q8_0_BLOCK_BYTES;
        let expected = rows * row_bytes;
        if bytes.len() != expected {
            return Err(KernelError::WrongQ8_0ByteCount {
                rows,
                cols,
                expected,
                found: bytes.len(),
            });
        }
        let mut matrix = Self::zeroed(rows, cols)?;
        let blocks = matrix.blocks();
        matrix
            .chunks
            .par_chunks_mut(blocks * BLOCK_CHUNKS)
            .zip(matrix.scales.par_chunks_mut(blocks * GROUP_ROWS))
            .zip(bytes.par_chunks(GROUP_ROWS * row_bytes))
            .for_each(|((chunks, scales), group)| {
                for (lane, row) in group.chunks_exact(row_bytes).enumerate() {
                    for (b, block) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
                        scales[b * GROUP_ROWS + lane] = u16::from_le_bytes([block[0], block[1]]);
                        let qs: [i8; Q8_0_BLOCK_VALUES] =
                            std::array::from_fn(|i| block[2 + i] as i8);
                        place(&mut chunks[b * BLOCK_CHUNKS..], lane, &qs);
                    }
                }
            });
        Ok(matrix)
    }

    fn zeroed(rows: usize, cols: usize) -> Result<Self, KernelError> {
        if rows == 0 || cols == 0 {
            return Err(KernelError::EmptyMatrix { rows, cols });
        }
        let padded_cols = cols.next_multiple_of(Q8_0_BLOCK_VALUES);
        let groups = rows.div_ceil(GROUP_ROWS);
        let blocks = padded_cols / Q8_0_BLOCK_VALUES;
        Ok(Self {
            rows,
            cols,
            padded_cols,
            chunks: vec![ZERO_CHUNK; groups * blocks * BLOCK_CHUNKS],
            scales: vec![0; groups * blocks * GROUP_ROWS],
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of weights held in memory (quantized values and scales, padding included).
    pub fn resident_bytes(&self) -> usize {
        std::mem::size_of_val(self.chunks.as_slice())
            + std::mem::size_of_val(self.scales.as_slice())
    }

    fn blocks(&self) -> usize {
        self.padded_cols / Q8_0_BLOCK_VALUES
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP_ROWS)
    }

    /// The weights as f32 (`d * q`), row-major `rows x cols`: what the matmul multiplies.
    pub fn dequantize(&self) -> Vec<f32> {
        let blocks = self.blocks();
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
            for (c, w) in row.iter_mut().enumerate() {
                let b = c / Q8_0_BLOCK_VALUES;
                let at = (g * blocks + b) * BLOCK_CHUNKS + c % Q8_0_BLOCK_VALUES / LANE_VALUES;
                let q = unbiased(self.chunks[at].0[lane * LANE_VALUES + c % LANE_VALUES]);
                let d = f16::from_bits(self.scales[(g * blocks + b) * GROUP_ROWS + lane]);
                *w = d.to_f32() * f32::from(q);
            }
        }
        out
    }

    /// `x · Wᵀ` for the row-major `m x cols` activations `x`: an `m x rows` result, with
    /// the best instruction set this CPU has, on the current rayon pool.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matmul_with(Tier::best(), x)
    }

    /// [`Q8_0Matrix::matmul`] on a chosen tier (for tests and benchmarks).
    pub fn matmul_with(&self, tier: Tier, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matmul_bias(tier, x, None)
    }

    /// `x · Wᵀ + bias` (`bias` has one value per row), the bias added as each tile is
    /// stored rather than in another pass over the output.
    pub fn matmul_bias(
        &self,
        tier: Tier,
        x: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>, KernelError> {
        if let Some(bias) = bias.filter(|b| b.len() != self.rows) {
            return Err(KernelError::BadBias {
                len: bias.len(),
                rows: self.rows,
            });
        }
        if !x.len().is_multiple_of(self.cols) {
            return Err(KernelError::BadInput {
                len: x.len(),
                cols: self.cols,
            });
        }
        if !tier.is_available() {
            return Err(KernelError::TierUnavailable { tier });
        }
        let acts = Q8Activations::quantize(x, self.cols, self.padded_cols);
        let (m, n) = (acts.rows(), self.rows);
        let mut out = vec![0f32; m * n];
        if m == 0 {
            return Ok(out);
        }
        let out_ptr = SharedOut(out.as_mut_ptr());
        let panels = self.groups().div_ceil(TASK_GROUPS);
        let token_tasks = m.div_ceil(TASK_TOKENS);
        (0..panels * token_tasks).into_par_iter().for_each(|task| {
            let (panel, tokens) = (task / token_tasks, task % token_tasks);
            let groups = panel * TASK_GROUPS..((panel + 1) * TASK_GROUPS).min(self.groups());
            let tokens = tokens * TASK_TOKENS..((tokens + 1) * TASK_TOKENS).min(m);
            let out = out_ptr;
            self.task(tier, &acts, groups, tokens, &mut |t, r0, values| {
                let len = values.len().min(n - r0);
                // SAFETY: `out` has `m * n` elements and outlives the parallel loop; each
                // task writes only rows `tokens` × columns of its own row groups, so no
                // two tasks touch the same element.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(t * n + r0), len) };
                match bias {
                    Some(bias) => {
                        for ((d, v), b) in dst.iter_mut().zip(values).zip(&bias[r0..r0 + len]) {
                            *d = v + b;
                        }
                    }
                    None => dst.copy_from_slice(&values[..len]),
                }
            });
        });
        Ok(out)
    }

    /// Every tile of row groups `groups` × activation rows `tokens`; `emit(t, r0, values)`
    /// receives the outputs of activation row `t` for weight rows `r0..r0 + 16`.
    fn task(
        &self,
        tier: Tier,
        acts: &Q8Activations,
        groups: std::ops::Range<usize>,
        tokens: std::ops::Range<usize>,
        emit: &mut dyn FnMut(usize, usize, &[f32]),
    ) {
        let group_len = self.blocks() * BLOCK_CHUNKS;
        let scale_len = self.blocks() * GROUP_ROWS;
        if tier == Tier::Scalar {
            let mut values = [0f32; GROUP_ROWS];
            for g in groups {
                let chunks = &self.chunks[g * group_len..(g + 1) * group_len];
                let scales = &self.scales[g * scale_len..(g + 1) * scale_len];
                for t in tokens.clone() {
                    group_dot(chunks, scales, acts, t, &mut values);
                    emit(t, g * GROUP_ROWS, &values);
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        super::q8_0_x86::tiles(
            tier,
            &self.chunks[groups.start * group_len..groups.end * group_len],
            &self.scales[groups.start * scale_len..groups.end * scale_len],
            acts,
            tokens,
            &mut |t, g, values| emit(t, (groups.start + g) * GROUP_ROWS, values),
        );
    }
}

/// A pointer the parallel tasks share; each writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used for disjoint writes while the owning `Vec` is borrowed by `matmul`.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// Writes one row's block values into lane `lane` of the block's 8 chunks.
fn place(chunks: &mut [Chunk], lane: usize, qs: &[i8; Q8_0_BLOCK_VALUES]) {
    for (chunk, values) in chunks.iter_mut().zip(qs.chunks_exact(LANE_VALUES)) {
        for (stored, &q) in chunk.0[lane * LANE_VALUES..].iter_mut().zip(values) {
            *stored = biased(q);
        }
    }
}

/// GGML's `quantize_row_q8_0`: `d = max|w| / 127` (stored as f16), `q = round(w / d)`,
/// rounding half away from zero. Returns `d` as stored.
fn quantize_block(w: &[f32], qs: &mut [i8; Q8_0_BLOCK_VALUES]) -> f16 {
    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, v) in qs.iter_mut().zip(w) {
        let y = v * inv;
        // Truncating `y ± 0.5` rounds half away from zero like `roundf`, and vectorises;
        // `as` saturates and maps NaN to 0.
        *q = (y + 0.5f32.copysign(y)) as i8;
    }
    f16::from_f32(d)
}

/// The portable path: 16 outputs of one row group for activation row `t`.
fn group_dot(
    chunks: &[Chunk],
    scales: &[u16],
    acts: &Q8Activations,
    t: usize,
    out: &mut [f32; GROUP_ROWS],
) {
    let k = acts.k;
    let blocks = k / Q8_0_BLOCK_VALUES;
    let qs = &acts.qs[t * k..(t + 1) * k];
    *out = [0f32; GROUP_ROWS];
    for b in 0..blocks {
        let mut dots = [0i32; GROUP_ROWS];
        for (c, chunk) in chunks[b * BLOCK_CHUNKS..(b + 1) * BLOCK_CHUNKS]
            .iter()
            .enumerate()
        {
            let a = &qs[b * Q8_0_BLOCK_VALUES + c * LANE_VALUES..][..LANE_VALUES];
            for (dot, w) in dots.iter_mut().zip(chunk.0.chunks_exact(LANE_VALUES)) {
                *dot += w
                    .iter()
                    .zip(a)
                    .map(|(&w, &a)| i32::from(unbiased(w)) * i32::from(a))
                    .sum::<i32>();
            }
        }
        let da = acts.scales[t * blocks + b];
        for ((o, dot), &bits) in out
            .iter_mut()
            .zip(dots)
            .zip(&scales[b * GROUP_ROWS..(b + 1) * GROUP_ROWS])
        {
            *o += f16::from_bits(bits).to_f32() * da * dot as f32;
        }
    }
}
