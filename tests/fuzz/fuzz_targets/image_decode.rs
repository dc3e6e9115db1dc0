//! An image file as the user drops it: sniffed and decoded within the product's limits,
//! then padded or squashed and resized for the vision tower, as `Model::preprocess` does.
#![no_main]

use impchat_input::image::{decode, preprocess, to_pixel_values, DecodeLimits, ImageAspect};
use libfuzzer_sys::fuzz_target;

/// The vision-tower resolutions of the Imp checkpoints (`-196` and the 384 ones).
const SIZES: [u32; 2] = [196, 384];

fuzz_target!(|data: &[u8]| {
    // The last byte picks the resolution and aspect mode, so every file decodes unchanged.
    let choice = data.last().copied().unwrap_or(0);
    let size = SIZES[usize::from(choice & 1)];
    let aspect = if choice & 2 == 0 {
        ImageAspect::Pad
    } else {
        ImageAspect::Square
    };
    let Ok(decoded) = decode(data, &DecodeLimits::default()) else {
        return;
    };
    assert!(decoded.rgb.width() > 0 && decoded.rgb.height() > 0);
    let square = preprocess(&decoded.rgb, size, aspect);
    assert_eq!(square.dimensions(), (size, size));
    let pixels = to_pixel_values(&square);
    assert_eq!(pixels.len(), 3 * size as usize * size as usize);
    assert!(pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
});
