//! Images in, model pixels out, exactly as Imp's Python preprocessing does
//! (`mm_utils.process_images` + `ImpImageProcessor`).

mod decode;
mod resize;

use ::image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

pub use decode::{decode, DecodeLimits, DecodedImage, ImageError, ImageFormatName};

/// LLaVA's `expand2square` fill: `tuple(int(x * 255) for x in image_mean)` with mean 0.5.
pub const PAD_FILL: [u8; 3] = [127, 127, 127];

/// How a non-square image becomes square: a checkpoint's `image_aspect_ratio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageAspect {
    /// Squash to a square, ignoring the aspect ratio.
    Square,
    /// Centre on a grey square first (`expand2square`), then resize.
    Pad,
}

/// Pads (for [`ImageAspect::Pad`]) and resizes to `size` x `size` with PIL's BICUBIC.
pub fn preprocess(img: &RgbImage, size: u32, aspect: ImageAspect) -> RgbImage {
    match aspect {
        ImageAspect::Square => resize::resize_bicubic(img, size, size),
        ImageAspect::Pad => resize::resize_bicubic(&expand_to_square(img), size, size),
    }
}

/// LLaVA's `expand2square`: the image centred on a [`PAD_FILL`] square whose side is its
/// longer side, offset `(long - short) // 2`.
pub fn expand_to_square(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut canvas = RgbImage::from_pixel(side, side, Rgb(PAD_FILL));
    let (x, y) = if w > h {
        (0, (w - h) / 2)
    } else {
        ((h - w) / 2, 0)
    };
    ::image::imageops::replace(&mut canvas, img, i64::from(x), i64::from(y));
    canvas
}

/// Channel-first (`[3, h, w]`) floats: `x / 255`, then normalised with mean and std 0.5,
/// computed as transformers does (rescale in f64, normalise in f32).
pub fn to_pixel_values(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0.0f32; plane * 3];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            let rescaled = (f64::from(px[c]) * (1.0 / 255.0)) as f32;
            out[c * plane + i] = (rescaled - 0.5) / 0.5;
        }
    }
    out
}

/// Visual tokens one image becomes: one per `patch` x `patch` patch (384/14 -> 729).
pub fn visual_tokens(size: u32, patch: u32) -> usize {
    if patch == 0 {
        return 0;
    }
    let side = (size / patch) as usize;
    side * side
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visual_token_counts_match_imp() {
        assert_eq!(visual_tokens(384, 14), 729);
        assert_eq!(visual_tokens(196, 14), 196);
    }

    #[test]
    fn pixel_values_are_chw_in_minus_one_to_one() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, Rgb([0, 255, 128]));
        img.put_pixel(1, 0, Rgb([255, 0, 64]));
        let v = to_pixel_values(&img);
        let expect = [
            -1.0,
            1.0,
            1.0,
            -1.0,
            (128.0f32 / 255.0 - 0.5) / 0.5,
            (64.0f32 / 255.0 - 0.5) / 0.5,
        ];
        assert_eq!(v.len(), 6);
        for (a, b) in v.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn expand_to_square_centres_with_floor_offset() {
        // 4 wide, 1 tall: pad rows above = (4 - 1) // 2 = 1.
        let img = RgbImage::from_pixel(4, 1, Rgb([9, 9, 9]));
        let sq = expand_to_square(&img);
        assert_eq!(sq.dimensions(), (4, 4));
        for y in 0..4 {
            let expect = if y == 1 { [9, 9, 9] } else { PAD_FILL };
            assert_eq!(sq.get_pixel(0, y).0, expect, "row {y}");
        }
        // 1 wide, 2 tall: pad columns left = (2 - 1) // 2 = 0.
        let tall = RgbImage::from_pixel(1, 2, Rgb([1, 2, 3]));
        let sq = expand_to_square(&tall);
        assert_eq!(sq.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(sq.get_pixel(1, 0).0, PAD_FILL);
    }

    #[test]
    fn aspect_serde_names() {
        assert_eq!(serde_json::to_string(&ImageAspect::Pad).unwrap(), "\"pad\"");
        assert_eq!(
            serde_json::from_str::<ImageAspect>("\"square\"").unwrap(),
            ImageAspect::Square
        );
    }
}
