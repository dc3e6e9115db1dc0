//! Our decode + preprocess against PIL's, on references made by
//! fixtures/make_resize_refs.py (Imp's pipeline: convert("RGB"), expand2square,
//! Image.resize(BICUBIC), horizontal pass first as Pillow <= 12 does; `tall_square_196`
//! is a case where Pillow 13 would go vertical first and differ).

use std::path::{Path, PathBuf};

use image::RgbImage;
use impchat_input::image::{decode, preprocess, DecodeLimits, ImageAspect, ImageFormatName};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resize")
        .join(name)
}

fn load(name: &str) -> RgbImage {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    decode(&bytes, &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .rgb
}

/// (identical values, largest difference) between two images of the same size.
fn compare(ours: &RgbImage, theirs: &RgbImage) -> (usize, u8) {
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let same = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .filter(|(a, b)| a == b)
        .count();
    let max = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    (same, max)
}

/// Every committed reference: `<source>_<aspect>_<size>.png`.
fn references() -> Vec<(String, ImageAspect, u32, String)> {
    let mut refs = Vec::new();
    for entry in std::fs::read_dir(fixture("")).expect("fixtures/resize exists") {
        let name = entry
            .expect("readable dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".png") else {
            continue;
        };
        let parts: Vec<&str> = stem.rsplitn(3, '_').collect();
        let [size, aspect, source] = parts[..] else {
            continue;
        };
        let Ok(size) = size.parse::<u32>() else {
            continue;
        };
        let aspect = match aspect {
            "square" => ImageAspect::Square,
            "pad" => ImageAspect::Pad,
            _ => continue,
        };
        refs.push((format!("{source}.png"), aspect, size, name.clone()));
    }
    refs.sort_by(|a, b| a.3.cmp(&b.3));
    refs
}

#[test]
fn resize_matches_pil_bicubic_bit_for_bit() {
    let refs = references();
    assert!(
        refs.len() >= 15,
        "expected the committed references, found {}",
        refs.len()
    );
    for size in [384, 196] {
        for aspect in [ImageAspect::Square, ImageAspect::Pad] {
            assert!(
                refs.iter().any(|r| r.1 == aspect && r.2 == size),
                "no {aspect:?} {size} reference"
            );
        }
    }
    for (source, aspect, size, reference) in refs {
        let ours = preprocess(&load(&source), size, aspect);
        let theirs = load(&reference);
        let (same, max) = compare(&ours, &theirs);
        let total = theirs.as_raw().len();
        assert_eq!(
            (same, max),
            (total, 0),
            "{reference}: {same}/{total} values identical, max diff {max}"
        );
    }
}

#[test]
fn rgba_png_drops_alpha_like_pil() {
    let decoded = decode(
        &std::fs::read(fixture("rgba.png")).unwrap(),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(decoded.format, ImageFormatName::Png);
    // Fully transparent pixels keep their stored colour (black), not a white background.
    assert_eq!(
        decoded.rgb.get_pixel(0, decoded.rgb.height() - 1).0,
        [0, 0, 0]
    );
}

#[test]
fn exif_orientation_6_is_applied() {
    let bytes = std::fs::read(fixture("exif6.jpg")).unwrap();
    let decoded = decode(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(decoded.format, ImageFormatName::Jpeg);
    assert_eq!(decoded.mime, "image/jpeg");
    assert_eq!(
        (decoded.original_width, decoded.original_height),
        (176, 128)
    );
    let pil = load("exif6_upright_pil.png");
    assert_eq!(decoded.rgb.dimensions(), (128, 176));
    // Different JPEG decoders (zune-jpeg vs libjpeg-turbo) round a little differently;
    // a wrong rotation would differ by far more.
    let total = pil.as_raw().len() as f64;
    let mean: f64 = decoded
        .rgb
        .as_raw()
        .iter()
        .zip(pil.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / total;
    let (_, max) = compare(&decoded.rgb, &pil);
    assert!(mean < 1.0 && max <= 8, "mean diff {mean:.3}, max {max}");
}
