//! Images the user attached but has not sent yet: validated, stored, and held by token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use impchat_input::image::{decode, DecodeLimits};
use impchat_store::{ImageRef, Store};
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::state::lock;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedImage {
    pub token: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub thumbnail_data_url: String,
}

/// Staged images by token, until a message takes them.
#[derive(Default)]
pub struct Staging {
    next: AtomicU64,
    images: Mutex<HashMap<String, ImageRef>>,
}

pub fn decode_limits() -> DecodeLimits {
    DecodeLimits::default()
}

impl Staging {
    /// Validates `bytes` as an image the model can read, stores it, and stages it.
    /// `name` is only used to word errors.
    pub fn stage(&self, store: &Store, bytes: &[u8], name: &str) -> AppResult<StagedImage> {
        decode(bytes, &decode_limits())
            .map_err(|err| AppError::invalid(format!("{name}: {err}")))?;
        let image = store.put_image(bytes)?;
        let thumbnail = store.read_image(&image.sha256, true)?;
        let token = format!(
            "{}-{}",
            &image.sha256[..16],
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let staged = StagedImage {
            token: token.clone(),
            sha256: image.sha256.clone(),
            mime: image.mime.clone(),
            width: image.width,
            height: image.height,
            bytes: image.bytes,
            thumbnail_data_url: format!(
                "data:image/jpeg;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(thumbnail)
            ),
        };
        lock(&self.images).insert(token, image);
        Ok(staged)
    }

    /// The staged image behind `token`, left staged.
    pub fn get(&self, token: &str) -> AppResult<ImageRef> {
        lock(&self.images)
            .get(token)
            .cloned()
            .ok_or_else(|| unknown_token(token))
    }

    /// Every image behind `tokens`, in order; nothing is taken unless all are known.
    pub fn resolve(&self, tokens: &[String]) -> AppResult<Vec<ImageRef>> {
        let images = lock(&self.images);
        tokens
            .iter()
            .map(|token| {
                images
                    .get(token)
                    .cloned()
                    .ok_or_else(|| unknown_token(token))
            })
            .collect()
    }

    /// Forgets tokens once their message is saved.
    pub fn release(&self, tokens: &[String]) {
        let mut images = lock(&self.images);
        for token in tokens {
            images.remove(token);
        }
    }
}

fn unknown_token(token: &str) -> AppError {
    AppError::not_found(format!(
        "attached image {token} is no longer waiting to be sent; remove it and attach it again"
    ))
}
