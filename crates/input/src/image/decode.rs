//! Decoding untrusted image bytes into RGB, within memory and size limits.

use std::io::Cursor;

use ::image::error::ImageError as CodecError;
use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// How big an image [`decode`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_file_bytes: u64,
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes the decoded pixels may take.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 * MIB,
            max_width: 16384,
            max_height: 16384,
            max_alloc_bytes: 512 * MIB,
        }
    }
}

/// The file formats [`decode`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormatName {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
}

impl ImageFormatName {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
            Self::Tiff => "tiff",
        }
    }

    pub fn mime(&self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
            Self::Tiff => "image/tiff",
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::Webp => "WebP",
            Self::Gif => "GIF",
            Self::Bmp => "BMP",
            Self::Tiff => "TIFF",
        }
    }

    fn from_codec(format: ImageFormat) -> Option<Self> {
        Some(match format {
            ImageFormat::Png => Self::Png,
            ImageFormat::Jpeg => Self::Jpeg,
            ImageFormat::WebP => Self::Webp,
            ImageFormat::Gif => Self::Gif,
            ImageFormat::Bmp => Self::Bmp,
            ImageFormat::Tiff => Self::Tiff,
            _ => return None,
        })
    }

    fn codec(&self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Webp => ImageFormat::WebP,
            Self::Gif => ImageFormat::Gif,
            Self::Bmp => ImageFormat::Bmp,
            Self::Tiff => ImageFormat::Tiff,
        }
    }
}

impl std::fmt::Display for ImageFormatName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// An image upright and in RGB, with what it was.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    pub format: ImageFormatName,
    pub mime: &'static str,
    /// Size as stored in the file, before EXIF orientation.
    pub original_width: u32,
    pub original_height: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("The file is empty (0 bytes). Pick the image again; if it was downloading, wait for it to finish.")]
    Empty,
    #[error("This looks like a HEIC photo, which ImpChat can't read yet. Export it as JPEG or PNG and try again.")]
    Heic,
    #[error("This looks like an AVIF image, which ImpChat can't read yet. Export it as JPEG or PNG and try again.")]
    Avif,
    #[error("This is a PDF document, not an image. Take a screenshot of the page or export it as PNG, and try again.")]
    Pdf,
    #[error("This is {kind}, which ImpChat can't read. Export it as JPEG or PNG and try again.")]
    Unsupported { kind: &'static str },
    #[error(
        "This file is not an image ImpChat recognises (it reads JPEG, PNG, WebP, GIF, BMP and TIFF). \
         Pick an image file and try again."
    )]
    NotAnImage,
    #[error(
        "The file is {} MiB; ImpChat accepts images up to {} MiB. Shrink or re-compress it and try again.",
        bytes.div_ceil(MIB), max_bytes / MIB
    )]
    FileTooLarge { bytes: u64, max_bytes: u64 },
    #[error("{}", too_large_message(*dimensions, limits))]
    TooLarge {
        dimensions: Option<(u32, u32)>,
        limits: DecodeLimits,
    },
    #[error("This {format} image is damaged or incomplete ({detail}). Re-save or re-download it and try again.")]
    Corrupt {
        format: ImageFormatName,
        detail: String,
    },
    #[error("This {format} image uses a feature ImpChat can't read ({detail}). Re-save it as a plain PNG or JPEG and try again.")]
    UnsupportedVariant {
        format: ImageFormatName,
        detail: String,
    },
}

fn too_large_message(dimensions: Option<(u32, u32)>, limits: &DecodeLimits) -> String {
    let accepted = format!(
        "ImpChat accepts up to {}x{} pixels and {} MiB of decoded pixels",
        limits.max_width,
        limits.max_height,
        limits.max_alloc_bytes / MIB
    );
    match dimensions {
        Some((w, h)) => format!("This image is {w}x{h} pixels; {accepted}. Scale it down and try again."),
        None => format!("This image needs more memory to decode than allowed; {accepted}. Scale it down and try again."),
    }
}

/// Decodes an image file: sniffs the format from the bytes, rejects oversized images
/// before allocating their pixels, applies the EXIF orientation, and converts to RGB
/// dropping any alpha (as PIL's `convert("RGB")`). GIFs give their first frame.
///
/// Imp's Python (`Image.open(..).convert("RGB")`) ignores EXIF orientation; it is applied
/// here so that the model sees a phone photo the way the user does.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let len = bytes.len() as u64;
    if len > limits.max_file_bytes {
        return Err(ImageError::FileTooLarge {
            bytes: len,
            max_bytes: limits.max_file_bytes,
        });
    }
    let format = sniff(bytes)?;
    let too_large = |dimensions| ImageError::TooLarge {
        dimensions,
        limits: *limits,
    };
    let codec_error = |e: CodecError, dimensions| match e {
        CodecError::Limits(_) => too_large(dimensions),
        CodecError::Unsupported(e) => ImageError::UnsupportedVariant {
            format,
            detail: e.to_string(),
        },
        other => ImageError::Corrupt {
            format,
            detail: other.to_string(),
        },
    };

    // Headers are read under the memory limit alone, so that an oversized image is
    // reported with its size; the side limits are checked before any pixel is decoded.
    let mut codec_limits = Limits::default();
    codec_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    reader.limits(codec_limits.clone());
    let mut decoder = reader.into_decoder().map_err(|e| codec_error(e, None))?;

    let (width, height) = decoder.dimensions();
    let dims = Some((width, height));
    if width > limits.max_width
        || height > limits.max_height
        || decoder.total_bytes() > limits.max_alloc_bytes
    {
        return Err(too_large(dims));
    }
    codec_limits.max_image_width = Some(limits.max_width);
    codec_limits.max_image_height = Some(limits.max_height);
    decoder
        .set_limits(codec_limits)
        .map_err(|e| codec_error(e, dims))?;
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt {
            format,
            detail: format!("it claims to be {width}x{height} pixels"),
        });
    }
    // A broken EXIF block should not cost the user the picture: keep it as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(::image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| codec_error(e, dims))?;
    image.apply_orientation(orientation);
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(DecodedImage {
        rgb,
        format,
        mime: format.mime(),
        original_width: width,
        original_height: height,
    })
}

/// Names the format from the file's first bytes.
fn sniff(bytes: &[u8]) -> Result<ImageFormatName, ImageError> {
    if let Some(err) = recognise_unreadable(bytes) {
        return Err(err);
    }
    match ::image::guess_format(bytes) {
        Ok(format) => ImageFormatName::from_codec(format).ok_or(ImageError::Unsupported {
            kind: match format {
                ImageFormat::Ico => "an icon (ICO) file",
                ImageFormat::Avif => "an AVIF image",
                ImageFormat::Hdr | ImageFormat::OpenExr => "an HDR image",
                ImageFormat::Dds => "a DDS texture",
                ImageFormat::Tga => "a TGA image",
                ImageFormat::Qoi => "a QOI image",
                ImageFormat::Pnm => "a PNM image",
                _ => "an image format",
            },
        }),
        Err(_) => Err(ImageError::NotAnImage),
    }
}

/// Files people commonly pick by mistake, recognised so the error can say what they are.
fn recognise_unreadable(bytes: &[u8]) -> Option<ImageError> {
    if let Some(brands) = iso_bmff_brands(bytes) {
        let has = |names: &[&[u8]]| brands.iter().any(|b| names.contains(b));
        if has(&[b"avif", b"avis"]) {
            return Some(ImageError::Avif);
        }
        if has(&[
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
            b"msf1",
        ]) {
            return Some(ImageError::Heic);
        }
        return Some(ImageError::Unsupported {
            kind: "a video (MP4/MOV)",
        });
    }
    if bytes.starts_with(b"%PDF") {
        return Some(ImageError::Pdf);
    }
    let head = &bytes[..bytes.len().min(256)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("<svg") || (text.starts_with("<?xml") && text.contains("<svg")) {
        return Some(ImageError::Unsupported {
            kind: "an SVG drawing",
        });
    }
    if bytes.starts_with(b"8BPS") {
        return Some(ImageError::Unsupported {
            kind: "a Photoshop (PSD) file",
        });
    }
    None
}

/// The major and compatible brands of an ISO-BMFF (`ftyp`) file: HEIC, AVIF, MP4, MOV.
fn iso_bmff_brands(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = box_len.clamp(12, bytes.len());
    let mut brands = vec![&bytes[8..12]];
    // Skip the 4-byte minor version after the major brand.
    if end > 16 {
        brands.extend(bytes[16..end].chunks_exact(4));
    }
    Some(brands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_its_own_error() {
        assert!(matches!(
            decode(&[], &DecodeLimits::default()),
            Err(ImageError::Empty)
        ));
    }

    #[test]
    fn heic_avif_pdf_and_random_bytes_are_told_apart() {
        let limits = DecodeLimits::default();
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        let mif1_avif = b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf";
        let mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2";
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj";
        let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(matches!(decode(heic, &limits), Err(ImageError::Heic)));
        assert!(matches!(decode(avif, &limits), Err(ImageError::Avif)));
        assert!(matches!(decode(mif1_avif, &limits), Err(ImageError::Avif)));
        assert!(matches!(
            decode(mp4, &limits),
            Err(ImageError::Unsupported { .. })
        ));
        assert!(matches!(decode(pdf, &limits), Err(ImageError::Pdf)));
        assert!(matches!(
            decode(svg, &limits),
            Err(ImageError::Unsupported {
                kind: "an SVG drawing"
            })
        ));
        assert!(matches!(
            decode(&random, &limits),
            Err(ImageError::NotAnImage)
        ));
    }

    #[test]
    fn messages_say_what_the_file_is_and_what_to_do() {
        let heic = ImageError::Heic.to_string();
        assert!(
            heic.contains("HEIC") && heic.contains("Export it as JPEG or PNG"),
            "{heic}"
        );
        let pdf = ImageError::Pdf.to_string();
        assert!(pdf.contains("PDF") && pdf.contains("screenshot"), "{pdf}");
        let big = ImageError::TooLarge {
            dimensions: Some((30000, 30000)),
            limits: DecodeLimits::default(),
        };
        let big = big.to_string();
        assert!(
            big.contains("30000x30000")
                && big.contains("16384x16384")
                && big.contains("Scale it down"),
            "{big}"
        );
    }

    #[test]
    fn oversized_file_is_refused_before_sniffing() {
        let limits = DecodeLimits {
            max_file_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = decode(&[0u8; 11], &limits).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::FileTooLarge {
                    bytes: 11,
                    max_bytes: 10
                }
            ),
            "{err:?}"
        );
    }
}
