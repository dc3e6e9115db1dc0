//! Weight matrices of 32-value blocks stored for int8 dot products, 16 rows side by side,
//! and their matmul: f32 activations in, f32 outputs out. Q4_0 ([`Q4_0Matrix`]), Q8_0
//! ([`Q8_0Matrix`]), Q4_K ([`super::Q4KInterleaved`]) and Q6_K ([`super::Q6KInterleaved`])
//! share the layout, the kernels and this driver.
//!
//! Per block of 32 values and group of 16 rows there are `BITS` chunks of 64 bytes, each
//! holding 4 bytes of every row, so one 512-bit `vpdpbusd` with 4 broadcast activation
//! bytes advances 16 output rows at once and the result needs no horizontal sum.
//! - Q8_0: chunk `c` holds values `4c..4c + 4` of each row, stored `q + 128`.
//! - Q4_0: chunk `c` holds bytes `4c..4c + 4` of each row's GGML nibbles: values
//!   `4c..4c + 4` in the low nibbles and `16 + 4c..16 + 4c + 4` in the high ones, stored
//!   `q + 8` as GGML keeps them. The repacked matrix takes exactly the file's bytes.
//! - Q4_K (`MINS`): nibbles as Q4_0 but stored `q` (0..15); each 32-value sub-block keeps
//!   its 6-bit scale and min, each 256-value super-block its f16 `d` and `dmin`, so
//!   `w = d * scale * q - dmin * min` exactly as GGML defines it, in 18.5 bytes per 32
//!   weights (the file: 18).
//! - Q6_K: `q + 32` (0..63). In each half block (16 values, words `4h..4h + 4`) chunk
//!   `3h + i` holds word `4h + i` in its bytes' low 6 bits (`i < 3`) and, in their top 2
//!   bits, bit pair `i` of word `4h + 3`. Each half keeps its signed 8-bit scale and each
//!   super-block its f16 `d`: `w = d * scale * q`, in exactly the file's 210 bytes per
//!   256 weights.
//!
//! Stored values are unsigned, the operand `vpdpbusd` multiplies by signed activations;
//! the kernels start each block's sums at `-offset * Σ a` to undo the offset. Rows are
//! padded to a multiple of 16 and columns to whole blocks (SigLIP's `fc2` reads 4304).

use half::f16;
use rayon::prelude::*;

use super::activations::Q8Activations;
use super::tier::Tier;
use super::KernelError;

/// Values per block, for both formats.
pub(crate) const BLOCK_VALUES: usize = 32;
/// Rows interleaved together: the 16 i32 lanes of a 512-bit register.
pub(crate) const GROUP_ROWS: usize = 16;
/// K-quant blocks that share one super-block's `d` (and Q4_K's `dmin`).
pub(crate) const SUPER_BLOCKS: usize = 8;
/// Consecutive values of one row that one `vpdpbusd` lane sums: an activation "word".
pub(crate) const LANE_VALUES: usize = 4;
/// Activation words per block.
pub(crate) const BLOCK_WORDS: usize = BLOCK_VALUES / LANE_VALUES;
/// Values per Q6_K half block (one scale each), and the chunks that hold them.
pub(crate) const Q6K_HALF: usize = BLOCK_VALUES / 2;
pub(crate) const Q6K_HALF_CHUNKS: usize = 3;

/// Row groups per parallel task, and activation rows per task: a task's weights
/// (`TASK_GROUPS * 16` rows) and activations stay in L2 while its tiles pass over them.
const TASK_GROUPS: usize = 4;
const TASK_TOKENS: usize = 96;

/// 16 rows × 4 bytes, aligned so a 512-bit load never splits a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Chunk(pub [u8; GROUP_ROWS * LANE_VALUES]);

/// An `rows x cols` weight matrix (`out x in`) of `BITS`-bit blocks, interleaved; with
/// `MINS`, each block also subtracts a min.
pub struct Interleaved<const BITS: usize, const MINS: bool = false> {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to whole blocks.
    padded_cols: usize,
    /// `groups × blocks × BITS` chunks.
    chunks: Vec<Chunk>,
    /// Per group: per block 16 entries (one per row): an f16 scale, or Q4_K's `scale | min
    /// << 8`, or Q6_K's two i8 scales `low | high << 8`; then per super-block 16 f16 `d`
    /// (and with `MINS` 16 f16 `dmin`).
    scales: Vec<u16>,
}

/// GGML Q4_0 weights, repacked: see the module docs.
pub type Q4_0Matrix = Interleaved<4>;
/// GGML Q8_0 weights, repacked: see the module docs.
pub type Q8_0Matrix = Interleaved<8>;

impl<const BITS: usize, const MINS: bool> std::fmt::Debug for Interleaved<BITS, MINS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}Matrix({}x{})", Self::NAME, self.rows, self.cols)
    }
}

impl<const BITS: usize, const MINS: bool> Interleaved<BITS, MINS> {
    /// The format's GGML name.
    pub(crate) const NAME: &'static str = match (BITS, MINS) {
        (4, false) => "Q4_0",
        (4, true) => "Q4_K",
        (6, false) => "Q6_K",
        _ => "Q8_0",
    };
    /// Chunks per block and row group: 32 values × 16 rows × `BITS` bits in 64 bytes.
    pub(crate) const BLOCK_CHUNKS: usize = {
        assert!(
            matches!((BITS, MINS), (4, _) | (6, false) | (8, false)),
            "only Q4_0, Q4_K, Q6_K and Q8_0 blocks are interleaved"
        );
        BITS
    };
    /// Q4_0, Q4_K and Q8_0: values packed into each byte, the low bits first.
    pub(crate) const PER_BYTE: usize = if BITS == 8 { 1 } else { 2 };
    /// Bits of each value packed in a byte.
    const PART_BITS: usize = 8 / Self::PER_BYTE;
    /// How much a stored value exceeds its weight's `q`.
    pub(crate) const OFFSET: i32 = if MINS { 0 } else { 1 << (BITS - 1) };
    /// Whether each half of a block (values `0..16` and `16..32`) has its own scale.
    pub(crate) const SPLIT: bool = BITS == 6;
    /// f16 rows of 16 entries that each super-block shares: `d`, and Q4_K's `dmin`.
    const SHARED_ROWS: usize = if MINS {
        2
    } else if BITS == 6 {
        1
    } else {
        0
    };

    /// `scales` entries per group of `blocks` blocks (see the field).
    pub(crate) const fn group_scales(blocks: usize) -> usize {
        blocks * GROUP_ROWS + Self::shared_at(blocks)
    }

    /// Where the super-block scales of block `b` start in a group's `scales`, counted from
    /// the end of the per-block entries.
    #[inline(always)]
    pub(crate) const fn shared_at(b: usize) -> usize {
        b / SUPER_BLOCKS * Self::SHARED_ROWS * GROUP_ROWS
    }

    /// Scale and min (0 without `MINS`) of half `part` (only Q6_K scales the halves apart)
    /// of block `b` of row `lane`, from its group's `scales` entries.
    #[inline(always)]
    pub(crate) fn scale_min(
        scales: &[u16],
        blocks: usize,
        b: usize,
        lane: usize,
        part: usize,
    ) -> (f32, f32) {
        let entry = scales[b * GROUP_ROWS + lane];
        if Self::SHARED_ROWS == 0 {
            return (f16::from_bits(entry).to_f32(), 0.0);
        }
        let shared = &scales[blocks * GROUP_ROWS + Self::shared_at(b)..];
        let d = f16::from_bits(shared[lane]).to_f32();
        if Self::SPLIT {
            let scale = (entry >> (8 * part)) as u8 as i8;
            return (d * f32::from(scale), 0.0);
        }
        let dmin = f16::from_bits(shared[GROUP_ROWS + lane]).to_f32();
        (d * f32::from(entry as u8), dmin * f32::from(entry >> 8))
    }
    /// Bits of one value packed in a byte.
    const MASK: u8 = ((1u16 << Self::PART_BITS) - 1) as u8;
    /// The chunk of weights that are all zero (padding rows and columns; K-quants pad
    /// only rows, whose scales are zero).
    const ZERO_CHUNK: Chunk = Chunk([if BITS == 8 { 0x80 } else { 0x88 }; 64]);

    /// The activation word that value `part` of each byte of chunk `c` multiplies (part 0
    /// is the low bits): Q4_0's high nibbles hold the second half of the block.
    #[inline(always)]
    pub(crate) const fn word(c: usize, part: usize) -> usize {
        c + part * (BLOCK_WORDS / Self::PER_BYTE)
    }

    /// An all-zero matrix of `rows x cols` to fill in.
    pub(crate) fn zeroed(rows: usize, cols: usize) -> Result<Self, KernelError> {
        if rows == 0 || cols == 0 {
            return Err(KernelError::EmptyMatrix { rows, cols });
        }
        let padded_cols = cols.next_multiple_of(BLOCK_VALUES);
        let groups = rows.div_ceil(GROUP_ROWS);
        let blocks = padded_cols / BLOCK_VALUES;
        Ok(Self {
            rows,
            cols,
            padded_cols,
            chunks: vec![Self::ZERO_CHUNK; groups * blocks * Self::BLOCK_CHUNKS],
            scales: vec![0; groups * Self::group_scales(blocks)],
        })
    }

    /// Fills every row group in parallel: `fill(g, chunks, scales)` gets group `g`'s
    /// `blocks × BITS` chunks and its `scales` entries.
    pub(crate) fn fill_groups<F>(&mut self, fill: F)
    where
        F: Fn(usize, &mut [Chunk], &mut [u16]) + Sync,
    {
        let blocks = self.blocks();
        self.chunks
            .par_chunks_mut(blocks * Self::BLOCK_CHUNKS)
            .zip(self.scales.par_chunks_mut(Self::group_scales(blocks)))
            .enumerate()
            .for_each(|(g, (chunks, scales))| fill(g, chunks, scales));
    }

    /// Repacks GGML blocks of `block_bytes` each (an f16 scale `d`, then the values),
    /// `rows` rows of `cols / 32` blocks one after another: `place(values, lane, chunks)`
    /// stores one block's value bytes for row `lane` into that block's chunks. The caller
    /// has checked that `bytes` holds exactly the rows.
    pub(crate) fn repack<F>(
        rows: usize,
        cols: usize,
        bytes: &[u8],
        block_bytes: usize,
        place: F,
    ) -> Result<Self, KernelError>
    where
        F: Fn(&[u8], usize, &mut [Chunk]) + Sync,
    {
        let mut matrix = Self::zeroed(rows, cols)?;
        let row_bytes = matrix.blocks() * block_bytes;
        matrix.fill_groups(|g, chunks, scales| {
            let first = (g * GROUP_ROWS * row_bytes).min(bytes.len());
            let end = (first + GROUP_ROWS * row_bytes).min(bytes.len());
            for (lane, row) in bytes[first..end].chunks_exact(row_bytes).enumerate() {
                for (b, block) in row.chunks_exact(block_bytes).enumerate() {
                    scales[b * GROUP_ROWS + lane] = u16::from_le_bytes([block[0], block[1]]);
                    let chunks = &mut chunks[b * Self::BLOCK_CHUNKS..][..Self::BLOCK_CHUNKS];
                    place(&block[2..], lane, chunks);
                }
            }
        });
        Ok(matrix)
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of weights held in memory (stored values and scales, padding included).
    pub fn resident_bytes(&self) -> usize {
        std::mem::size_of_val(self.chunks.as_slice())
            + std::mem::size_of_val(self.scales.as_slice())
    }

    pub(crate) fn blocks(&self) -> usize {
        self.padded_cols / BLOCK_VALUES
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP_ROWS)
    }

    /// Weight `i` of a block for row `lane`, given the block's chunks.
    #[inline(always)]
    fn weight(chunks: &[Chunk], lane: usize, i: usize) -> i32 {
        let at = lane * LANE_VALUES + i % LANE_VALUES;
        if BITS == 6 {
            let (half, word) = (i / Q6K_HALF, i % Q6K_HALF / LANE_VALUES);
            let byte = |k: usize| chunks[Q6K_HALF_CHUNKS * half + k].0[at];
            let q = if word < Q6K_HALF_CHUNKS {
                byte(word) & 0x3F
            } else {
                (0..Q6K_HALF_CHUNKS).fold(0, |q, k| q | ((byte(k) >> 6) << (2 * k)))
            };
            return i32::from(q) - Self::OFFSET;
        }
        let words_per_part = BLOCK_WORDS / Self::PER_BYTE;
        let (word, part) = (i / LANE_VALUES, i / LANE_VALUES / words_per_part);
        let byte = chunks[word % words_per_part].0[at];
        i32::from((byte >> (part * Self::PART_BITS)) & Self::MASK) - Self::OFFSET
    }

    /// The weights as f32 (`d * q`, minus the min with `MINS`), row-major `rows x cols`:
    /// what the matmul multiplies.
    pub fn dequantize(&self) -> Vec<f32> {
        let blocks = self.blocks();
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
            for (c, w) in row.iter_mut().enumerate() {
                let slot = g * blocks + c / BLOCK_VALUES;
                let chunks = &self.chunks[slot * Self::BLOCK_CHUNKS..][..Self::BLOCK_CHUNKS];
                let q = Self::weight(chunks, lane, c % BLOCK_VALUES);
                let group_scales = Self::group_scales(blocks);
                let scales = &self.scales[g * group_scales..(g + 1) * group_scales];
                let half = c % BLOCK_VALUES / Q6K_HALF;
                let (d, min) = Self::scale_min(scales, blocks, c / BLOCK_VALUES, lane, half);
                *w = d * q as f32 - min;
            }
        }
        out
    }

    /// `x · Wᵀ` for the row-major `m x cols` activations `x`: an `m x rows` result, with
    /// the best instruction set this CPU has, on the current rayon pool.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, KernelError> {
        self.matmul_with(Tier::best(), x)
    }

    /// [`Interleaved::matmul`] on a chosen tier (for tests and benchmarks).
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
        let group_len = self.blocks() * Self::BLOCK_CHUNKS;
        let scale_len = Self::group_scales(self.blocks());
        if tier == Tier::Scalar {
            let mut values = [0f32; GROUP_ROWS];
            for g in groups {
                let chunks = &self.chunks[g * group_len..(g + 1) * group_len];
                let scales = &self.scales[g * scale_len..(g + 1) * scale_len];
                for t in tokens.clone() {
                    Self::group_dot(chunks, scales, acts, t, &mut values);
                    emit(t, g * GROUP_ROWS, &values);
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        super::interleaved_x86::tiles::<BITS, MINS>(
            tier,
            &self.chunks[groups.start * group_len..groups.end * group_len],
            &self.scales[groups.start * scale_len..groups.end * scale_len],
            acts,
            tokens,
            &mut |t, g, values| emit(t, (groups.start + g) * GROUP_ROWS, values),
        );
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
        let blocks = k / BLOCK_VALUES;
        let qs = &acts.qs[t * k..(t + 1) * k];
        *out = [0f32; GROUP_ROWS];
        for b in 0..blocks {
            // Per half block when the halves have their own scales, else all in the first.
            let mut dots = [[0i32; GROUP_ROWS]; 2];
            let block = &chunks[b * Self::BLOCK_CHUNKS..(b + 1) * Self::BLOCK_CHUNKS];
            let a = &qs[b * BLOCK_VALUES..(b + 1) * BLOCK_VALUES];
            if Self::SPLIT {
                for (lane, i) in
                    (0..GROUP_ROWS).flat_map(|l| (0..BLOCK_VALUES).map(move |i| (l, i)))
                {
                    dots[i / Q6K_HALF][lane] += Self::weight(block, lane, i) * i32::from(a[i]);
                }
            }
            for (c, chunk) in block
                .iter()
                .enumerate()
                .take(if Self::SPLIT { 0 } else { BITS })
            {
                for part in 0..Self::PER_BYTE {
                    let word = Self::word(c, part);
                    let a = &a[word * LANE_VALUES..][..LANE_VALUES];
                    for (dot, w) in dots[0].iter_mut().zip(chunk.0.chunks_exact(LANE_VALUES)) {
                        *dot += w
                            .iter()
                            .zip(a)
                            .map(|(&w, &a)| {
                                let q = i32::from((w >> (part * Self::PART_BITS)) & Self::MASK);
                                (q - Self::OFFSET) * i32::from(a)
                            })
                            .sum::<i32>();
                    }
                }
            }
            let da = acts.scales[t * blocks + b];
            let min_scale = da * acts.sums[t * blocks + b] as f32;
            for (lane, o) in out.iter_mut().enumerate() {
                let (scale, min) = Self::scale_min(scales, blocks, b, lane, 0);
                *o += scale * da * dots[0][lane] as f32 - min * min_scale;
                if Self::SPLIT {
                    let (scale, _) = Self::scale_min(scales, blocks, b, lane, 1);
                    *o += scale * da * dots[1][lane] as f32;
                }
            }
        }
    }
}

/// A pointer the parallel tasks share; each writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used for disjoint writes while the owning `Vec` is borrowed by `matmul`.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}
