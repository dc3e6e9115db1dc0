//! Projected image features kept by a loaded model for all of its sessions, so the same
//! picture is run through the vision tower once: a regenerated answer, a second session
//! on the same conversation or a reopened chat find its features here.
//!
//! Bounded by bytes and least-recently-used first out; one image's features are
//! `visual_tokens × hidden` f32 values (7.5 MB for Imp-3B), so the 64 MiB default holds
//! the last eight or so pictures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::Tensor;
use impchat_input::image::ImageAspect;

use crate::session::ImageDigest;

/// The cache size a model starts with.
pub const DEFAULT_FEATURE_CACHE_BYTES: usize = 64 << 20;

/// What a set of features depends on: the picture, the model that encoded it and the
/// square it was resized to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FeatureKey {
    /// SHA-256 of the image file's bytes as the user supplied them.
    pub image: ImageDigest,
    pub model: Arc<str>,
    pub image_size: u32,
    pub aspect: ImageAspect,
}

struct Entry {
    features: Tensor,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<FeatureKey, Entry>,
    capacity: usize,
    used: usize,
    clock: u64,
}

impl State {
    fn evict_down_to(&mut self, budget: usize) {
        while self.used > budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.used -= entry.bytes;
            }
        }
    }
}

pub(crate) struct FeatureCache {
    state: Mutex<State>,
}

impl FeatureCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                capacity,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole before anything can panic; a poisoned lock
        // still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The features stored under `key`, now the most recently used.
    pub fn get(&self, key: &FeatureKey) -> Option<Tensor> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.features.clone())
    }

    /// Stores `features`, dropping the least recently used entries to make room. Features
    /// larger than the whole cache are not kept.
    pub fn insert(&self, key: FeatureKey, features: Tensor) {
        let bytes = features.elem_count() * features.dtype().size_in_bytes();
        let mut state = self.lock();
        if bytes > state.capacity {
            return;
        }
        if let Some(old) = state.entries.remove(&key) {
            state.used -= old.bytes;
        }
        let budget = state.capacity - bytes;
        state.evict_down_to(budget);
        state.clock += 1;
        let last_used = state.clock;
        state.used += bytes;
        state.entries.insert(
            key,
            Entry {
                features,
                bytes,
                last_used,
            },
        );
    }

    /// Changes the bound, evicting what no longer fits (0 turns the cache off).
    pub fn set_capacity(&self, bytes: usize) {
        let mut state = self.lock();
        state.capacity = bytes;
        state.evict_down_to(bytes);
    }

    /// Bytes of features held now.
    pub fn used_bytes(&self) -> usize {
        self.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn key(n: u8) -> FeatureKey {
        FeatureKey {
            image: [n; 32],
            model: Arc::from("m"),
            image_size: 384,
            aspect: ImageAspect::Square,
        }
    }

    /// 1 KiB of f32 values.
    fn features() -> Tensor {
        Tensor::zeros((1, 16, 16), candle_core::DType::F32, &Device::Cpu).expect("zeros")
    }

    #[test]
    fn least_recently_used_goes_first_when_full() {
        let cache = FeatureCache::new(2048);
        cache.insert(key(1), features());
        cache.insert(key(2), features());
        assert!(cache.get(&key(1)).is_some());
        cache.insert(key(3), features());
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(3)).is_some());
        assert_eq!(cache.used_bytes(), 2048);
    }

    #[test]
    fn resolution_and_model_are_part_of_the_key() {
        let cache = FeatureCache::new(4096);
        cache.insert(key(1), features());
        let other_size = FeatureKey {
            image_size: 196,
            ..key(1)
        };
        let other_model = FeatureKey {
            model: Arc::from("other"),
            ..key(1)
        };
        assert!(cache.get(&other_size).is_none());
        assert!(cache.get(&other_model).is_none());
    }

    #[test]
    fn shrinking_evicts_and_oversized_features_are_not_kept() {
        let cache = FeatureCache::new(4096);
        cache.insert(key(1), features());
        cache.insert(key(2), features());
        cache.set_capacity(1024);
        assert_eq!(cache.used_bytes(), 1024);
        assert!(cache.get(&key(2)).is_some());
        cache.set_capacity(512);
        cache.insert(key(3), features());
        assert!(cache.get(&key(3)).is_none());
        assert_eq!(cache.used_bytes(), 0);
    }
}
