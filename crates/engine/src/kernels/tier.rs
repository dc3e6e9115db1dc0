//! Which instruction set the kernels use, detected once at run time.

use std::sync::OnceLock;

/// An instruction-set tier for the int8 dot products, best first in [`Tier::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// AVX512-VNNI `vpdpbusd` on 256-bit registers (32 of them, so larger tiles).
    Avx512Vnni,
    /// AVX-VNNI `vpdpbusd` (VEX encoded, 16 registers).
    AvxVnni,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// Portable Rust, for every other CPU.
    Scalar,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Avx512Vnni, Tier::AvxVnni, Tier::Avx2, Tier::Scalar];

    /// Whether this CPU can run the tier.
    pub fn is_available(self) -> bool {
        match self {
            Tier::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Tier::AvxVnni => Tier::Avx2.is_available() && std::is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vnni => {
                Tier::Avx2.is_available()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best tier this CPU runs, detected once.
    pub fn best() -> Tier {
        static BEST: OnceLock<Tier> = OnceLock::new();
        *BEST.get_or_init(|| {
            Tier::ALL
                .into_iter()
                .find(|t| t.is_available())
                .unwrap_or(Tier::Scalar)
        })
    }
}
