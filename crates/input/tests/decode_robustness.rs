//! Damaged files of every supported format give an error, never a panic or a hang.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use impchat_input::image::{decode, DecodeLimits, ImageError};

fn sample(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(23, 17, |x, y| {
        Rgb([(x * 11) as u8, (y * 15) as u8, ((x + y) * 5) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let limits = DecodeLimits::default();
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        let bytes = sample(format);
        assert_eq!(
            decode(&bytes, &limits).unwrap().rgb.dimensions(),
            (23, 17),
            "{format:?}"
        );
        // Every prefix: either a clean error, or (for formats that tolerate a missing
        // tail) an image of the right size.
        for len in 1..bytes.len() {
            match decode(&bytes[..len], &limits) {
                Ok(img) => assert_eq!(img.rgb.dimensions(), (23, 17), "{format:?} cut at {len}"),
                Err(err) => assert!(!err.to_string().is_empty()),
            }
        }
        // Flipped bytes after the signature.
        for at in (8..bytes.len()).step_by(7) {
            let mut broken = bytes.clone();
            broken[at] ^= 0x5A;
            if let Err(err) = decode(&broken, &limits) {
                assert!(
                    !matches!(err, ImageError::Empty | ImageError::FileTooLarge { .. }),
                    "{format:?} flipped at {at}: {err:?}"
                );
            }
        }
    }
}
