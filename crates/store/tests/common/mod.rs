//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbImage, RgbaImage};
use impchat_store::Store;

/// Opens a store that must not have needed any repair.
pub fn open(dir: &Path) -> Store {
    let (store, notice) = Store::open(dir).expect("store opens");
    assert_eq!(notice, None, "a healthy store must open without a notice");
    store
}

/// A PNG whose pixels depend on `seed`, so different seeds give different files.
pub fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(31)])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// A transparent PNG carrying an EXIF orientation tag.
pub fn png_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, _| image::Rgba([x as u8, 0, 0, 128]));
    // Big-endian TIFF header, one IFD with one SHORT entry: 0x0112 Orientation.
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    encoder.set_exif_metadata(exif).expect("png takes exif");
    encoder
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgba8,
        )
        .expect("encode png");
    out
}

/// Cuts text into chunks of 1 to 7 characters, like detokenised output.
pub fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let end = (start + 1 + (start * 13 % 7)).min(chars.len());
        out.push(chars[start..end].iter().collect());
        start = end;
    }
    out
}
