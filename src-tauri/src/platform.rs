//! What differs between a desktop and a phone build, in one place.

use impchat_models::{CatalogEntry, Quant};

/// Phones keep the KV cache small: it is the part of a loaded model that grows with context.
pub const PHONE_CONTEXT_TOKENS: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Desktop,
    // Built only for Android and iOS; the tests check its choices on every platform.
    #[cfg_attr(not(mobile), allow(dead_code))]
    Phone,
}

impl Device {
    #[cfg(mobile)]
    pub const CURRENT: Device = Device::Phone;
    #[cfg(not(mobile))]
    pub const CURRENT: Device = Device::Desktop;

    /// Context the memory estimate (and the set-up screen) assumes for a catalog context.
    pub fn context_tokens(self, catalog_tokens: u32) -> u32 {
        match self {
            Device::Desktop => catalog_tokens,
            Device::Phone => catalog_tokens.min(PHONE_CONTEXT_TOKENS),
        }
    }

    /// The format offered first: 4-bit on phones, the catalog's pick on desktops.
    pub fn default_quant(self, entry: &CatalogEntry) -> Quant {
        let offered = |quant: Quant| entry.quantizations.iter().any(|q| q.quant == quant);
        let recommended = entry.recommended_quant().map_or(Quant::F16, |q| q.quant);
        match self {
            Device::Phone => [Quant::Q4_0, Quant::Q4KM]
                .into_iter()
                .find(|quant| offered(*quant))
                .unwrap_or(recommended),
            Device::Desktop => recommended,
        }
    }

    /// Phones are pointed at the 196 px checkpoint: 196 visual tokens instead of 729 make
    /// image encoding and prefill several times cheaper.
    pub fn suggests(self, entry: &CatalogEntry) -> bool {
        match self {
            Device::Phone => entry.image_size == 196,
            Device::Desktop => false,
        }
    }
}

pub fn context_tokens(catalog_tokens: u32) -> u32 {
    Device::CURRENT.context_tokens(catalog_tokens)
}

pub fn default_quant(entry: &CatalogEntry) -> Quant {
    Device::CURRENT.default_quant(entry)
}

pub fn suggested(entry: &CatalogEntry) -> bool {
    Device::CURRENT.suggests(entry)
}

#[cfg(test)]
mod tests {
    use impchat_models::Catalog;

    use super::*;

    #[test]
    fn phones_get_the_196_px_checkpoint_at_4_bits_and_a_short_context() {
        let catalog = Catalog::builtin().expect("catalog");
        let suggested: Vec<&str> = catalog
            .models
            .iter()
            .filter(|entry| Device::Phone.suggests(entry))
            .map(|entry| entry.id.as_str())
            .collect();
        assert_eq!(suggested, ["imp-v1.5-3b-196"]);
        let entry = catalog.get("imp-v1.5-3b-196").expect("196 px entry");
        let quant = Device::Phone.default_quant(entry);
        assert!(quant.bits_per_weight() < 6.0, "{quant}");
        assert_eq!(Device::Phone.context_tokens(3072), PHONE_CONTEXT_TOKENS);
        assert_eq!(Device::Desktop.context_tokens(3072), 3072);
        assert!(catalog.models.iter().all(|e| !Device::Desktop.suggests(e)));
    }
}
