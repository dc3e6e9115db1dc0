//! Untrusted image files: formats, limits and decompression bombs. This test binary
//! counts allocations, so that "refused without allocating" is checked, not assumed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use impchat_input::image::{decode, DecodeLimits, ImageError, ImageFormatName};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// A PNG header claiming `width` x `height` RGB pixels, with a tiny (empty) IDAT.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream holding one empty stored block.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn encode(img: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.into().write_to(&mut out, format).unwrap();
    out.into_inner()
}

// One test, so that no other test's allocations share the counter.
#[test]
fn bombs_are_refused_without_allocating_and_formats_decode() {
    let limits = DecodeLimits::default();

    // 30000 x 30000: over the dimension limit, 2.7 GB if decoded.
    let huge = png_header(30000, 30000);
    assert!(huge.len() < 100);
    LARGEST.store(0, Ordering::Relaxed);
    let err = decode(&huge, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                dimensions: Some((30000, 30000)),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        LARGEST.load(Ordering::Relaxed) < 8 << 20,
        "allocated {} bytes",
        LARGEST.load(Ordering::Relaxed)
    );

    // 16000 x 12000 is within the side limits but needs 576 MB > 512 MiB.
    LARGEST.store(0, Ordering::Relaxed);
    let err = decode(&png_header(16000, 12000), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                dimensions: Some((16000, 12000)),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        LARGEST.load(Ordering::Relaxed) < 8 << 20,
        "allocated {} bytes",
        LARGEST.load(Ordering::Relaxed)
    );

    // A real, decodable bomb: 2000 x 2000 black pixels compress to a few KB.
    let bomb = encode(RgbImage::new(2000, 2000), ImageFormat::Png);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let small = DecodeLimits {
        max_alloc_bytes: 4 << 20,
        ..limits
    };
    LARGEST.store(0, Ordering::Relaxed);
    let err = decode(&bomb, &small).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
    assert!(
        LARGEST.load(Ordering::Relaxed) < 4 << 20,
        "allocated {} bytes",
        LARGEST.load(Ordering::Relaxed)
    );
    // ... and the same file within limits decodes.
    assert_eq!(
        decode(&bomb, &limits).unwrap().rgb.dimensions(),
        (2000, 2000)
    );

    // Narrow side limits apply to each side.
    let narrow = DecodeLimits {
        max_width: 100,
        max_height: 100,
        ..limits
    };
    let wide = encode(RgbImage::new(101, 10), ImageFormat::Png);
    assert!(matches!(
        decode(&wide, &narrow),
        Err(ImageError::TooLarge {
            dimensions: Some((101, 10)),
            ..
        })
    ));

    formats_decode_to_rgb();
    damaged_files_say_so();
}

fn formats_decode_to_rgb() {
    let limits = DecodeLimits::default();
    let mut img = RgbImage::from_pixel(8, 6, Rgb([200, 100, 50]));
    img.put_pixel(0, 0, Rgb([1, 2, 3]));
    for (format, name, mime) in [
        (ImageFormat::Png, ImageFormatName::Png, "image/png"),
        (ImageFormat::Bmp, ImageFormatName::Bmp, "image/bmp"),
        (ImageFormat::Tiff, ImageFormatName::Tiff, "image/tiff"),
        (ImageFormat::WebP, ImageFormatName::Webp, "image/webp"),
    ] {
        let decoded = decode(&encode(img.clone(), format), &limits).unwrap();
        assert_eq!(decoded.format, name);
        assert_eq!(decoded.mime, mime);
        assert_eq!(decoded.rgb, img, "{name} is lossless");
        assert_eq!((decoded.original_width, decoded.original_height), (8, 6));
    }
    let jpeg = decode(&encode(img.clone(), ImageFormat::Jpeg), &limits).unwrap();
    assert_eq!(
        (jpeg.format, jpeg.rgb.dimensions()),
        (ImageFormatName::Jpeg, (8, 6))
    );

    // Grey+alpha and RGBA keep their colour channels; alpha is dropped, not composited.
    let rgba = RgbaImage::from_pixel(4, 4, Rgba([10, 20, 30, 0]));
    let decoded = decode(&encode(rgba, ImageFormat::Png), &limits).unwrap();
    assert_eq!(decoded.rgb.get_pixel(3, 3).0, [10, 20, 30]);
    let gray = image::GrayAlphaImage::from_pixel(3, 3, image::LumaA([77, 5]));
    assert_eq!(
        decode(&encode(gray, ImageFormat::Png), &limits)
            .unwrap()
            .rgb
            .get_pixel(1, 1)
            .0,
        [77, 77, 77]
    );

    // GIF: the first frame.
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let red = image::Frame::new(RgbaImage::from_pixel(5, 5, Rgba([255, 0, 0, 255])));
        let blue = image::Frame::new(RgbaImage::from_pixel(5, 5, Rgba([0, 0, 255, 255])));
        enc.encode_frames([red, blue]).unwrap();
    }
    let decoded = decode(&gif, &limits).unwrap();
    assert_eq!(decoded.format, ImageFormatName::Gif);
    assert_eq!(decoded.rgb.get_pixel(2, 2).0, [255, 0, 0]);
}

fn damaged_files_say_so() {
    let limits = DecodeLimits::default();
    let png = encode(
        RgbImage::from_pixel(64, 64, Rgb([9, 99, 199])),
        ImageFormat::Png,
    );
    let truncated = &png[..png.len() / 2];
    let err = decode(truncated, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Corrupt {
                format: ImageFormatName::Png,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PNG image is damaged"), "{err}");

    // A valid header whose IDAT holds no pixels.
    let err = decode(&png_header(4, 4), &limits).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err:?}");

    let jpeg = encode(
        RgbImage::from_pixel(32, 32, Rgb([9, 99, 199])),
        ImageFormat::Jpeg,
    );
    let err = decode(&jpeg[..20], &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Corrupt {
                format: ImageFormatName::Jpeg,
                ..
            }
        ),
        "{err:?}"
    );
}
