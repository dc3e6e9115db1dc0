//! Rotary position embeddings, NeoX style (rotate-half), optionally on the first
//! `rotary_dim` channels of each head only (Phi-2 rotates 32 of 80).

use std::sync::RwLock;

use candle_core::{DType, Device, Result, Tensor, D};

/// Positions the tables cover at first; they grow (doubling) as sequences get longer.
const FIRST_TABLE_POSITIONS: usize = 1024;

/// The rotary tables: `(positions, rotary_dim / 2)` cosines and sines.
#[derive(Debug, Clone)]
struct Tables {
    cos: Tensor,
    sin: Tensor,
}

/// Rotary embeddings up to the model's position limit. The tables are built only as far
/// as sequences have reached: a config claiming 10¹² positions costs nothing until used.
#[derive(Debug)]
pub struct Rotary {
    rotary_dim: usize,
    inv_freq: Vec<f32>,
    max_positions: usize,
    device: Device,
    tables: RwLock<Tables>,
}

impl Clone for Rotary {
    fn clone(&self) -> Self {
        Self {
            rotary_dim: self.rotary_dim,
            inv_freq: self.inv_freq.clone(),
            max_positions: self.max_positions,
            device: self.device.clone(),
            tables: RwLock::new(self.current_tables()),
        }
    }
}

impl Rotary {
    /// Rotary embeddings for positions `0..max_positions` (tables built lazily).
    pub fn new(
        rotary_dim: usize,
        theta: f64,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
            candle_core::bail!("rotary dimension must be even and positive, got {rotary_dim}");
        }
        let inv_freq: Vec<f32> = (0..rotary_dim)
            .step_by(2)
            .map(|i| (1.0 / theta.powf(i as f64 / rotary_dim as f64)) as f32)
            .collect();
        let first = FIRST_TABLE_POSITIONS.min(max_positions);
        let tables = build_tables(&inv_freq, first, device)?;
        Ok(Self {
            rotary_dim,
            inv_freq,
            max_positions,
            device: device.clone(),
            tables: RwLock::new(tables),
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Positions the tables cover now.
    #[cfg(test)]
    pub fn table_positions(&self) -> usize {
        self.current_tables().cos.dims()[0]
    }

    fn current_tables(&self) -> Tables {
        // A poisoned lock only means another thread panicked while growing the tables;
        // the tables it holds are still whole (they are replaced, never edited).
        match self.tables.read() {
            Ok(tables) => tables.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Tables covering at least `end` positions, grown (doubling, up to the limit) if needed.
    fn tables_to(&self, end: usize) -> Result<Tables> {
        let current = self.current_tables();
        if current.cos.dims()[0] >= end {
            return Ok(current);
        }
        let mut tables = match self.tables.write() {
            Ok(tables) => tables,
            Err(poisoned) => poisoned.into_inner(),
        };
        let have = tables.cos.dims()[0];
        if have < end {
            let grown = end.max(have.saturating_mul(2)).min(self.max_positions);
            *tables = build_tables(&self.inv_freq, grown, &self.device)?;
        }
        Ok(tables.clone())
    }

    /// Rotates `xs` `(1, heads, L, head_dim)` whose first row sits at position `pos`.
    pub fn apply(&self, xs: &Tensor, pos: usize) -> Result<Tensor> {
        let (_, _, len, head_dim) = xs.dims4()?;
        if pos + len > self.max_positions() {
            candle_core::bail!(
                "position {} is past the model's limit of {}",
                pos + len,
                self.max_positions()
            );
        }
        let tables = self.tables_to(pos + len)?;
        let cos = tables.cos.narrow(0, pos, len)?;
        let sin = tables.sin.narrow(0, pos, len)?;
        if self.rotary_dim == head_dim {
            return candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos, &sin);
        }
        let rotated = xs.narrow(D::Minus1, 0, self.rotary_dim)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope(&rotated, &cos, &sin)?;
        let kept = xs.narrow(D::Minus1, self.rotary_dim, head_dim - self.rotary_dim)?;
        Tensor::cat(&[&rotated, &kept], D::Minus1)
    }
}

/// Cosines and sines for positions `0..positions`.
fn build_tables(inv_freq: &[f32], positions: usize, device: &Device) -> Result<Tables> {
    let half = inv_freq.len();
    let inv_freq = Tensor::from_vec(inv_freq.to_vec(), (1, half), device)?;
    let positions = Tensor::arange(0u32, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?;
    let freqs = positions.matmul(&inv_freq)?;
    Ok(Tables {
        cos: freqs.cos()?,
        sin: freqs.sin()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config claiming 10¹² positions allocates only the first table; rows computed
    /// after growing equal the ones a full table would hold.
    #[test]
    fn tables_grow_only_as_far_as_used() {
        let huge = Rotary::new(8, 10_000.0, 1_000_000_000_000, &Device::Cpu).expect("rotary");
        assert_eq!(huge.table_positions(), FIRST_TABLE_POSITIONS);
        let small = Rotary::new(8, 10_000.0, 4096, &Device::Cpu).expect("rotary");
        let xs = Tensor::ones((1, 2, 3, 8), DType::F32, &Device::Cpu).expect("xs");
        let far = huge.apply(&xs, 3000).expect("apply");
        assert_eq!(huge.table_positions(), 3003.max(2 * FIRST_TABLE_POSITIONS));
        let expected = small.apply(&xs, 3000).expect("apply");
        let diff = (far - expected)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert_eq!(diff, 0.0);
    }
}
