//! Content-addressed image files: `images/<sha[0..2]>/<sha>.<ext>` plus a
//! `<sha>.thumb.jpg` thumbnail. The database holds only metadata and links.

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader, Rgb, RgbImage};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::store::{write_tx, Store};
use crate::time::now_ms;
use crate::types::{GcReport, ImageRef};

/// Longest side of a thumbnail.
pub const THUMBNAIL_SIZE: u32 = 256;
const THUMBNAIL_QUALITY: u8 = 82;
/// Images added this recently are kept by [`Store::gc_images`] even when no
/// message refers to them yet: they are staged for a message being written.
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

struct Decoded {
    mime: &'static str,
    ext: &'static str,
    width: u32,
    height: u32,
    thumbnail: Vec<u8>,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode(bytes: &[u8]) -> Result<Decoded> {
    let bad = |e: &dyn std::fmt::Display| StoreError::ImageDecode(e.to_string());
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(&e))?;
    let format = reader
        .format()
        .ok_or_else(|| StoreError::ImageDecode("the file type was not recognised".into()))?;
    let ext = format.extensions_str().first().copied().unwrap_or("img");
    let mut decoder = reader.into_decoder().map_err(|e| bad(&e))?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(&e))?;
    image.apply_orientation(orientation);
    let (width, height) = image.dimensions();
    let thumbnail = thumbnail_jpeg(&image).map_err(|e| bad(&e))?;
    Ok(Decoded {
        mime: format.to_mime_type(),
        ext,
        width,
        height,
        thumbnail,
    })
}

/// A small JPEG; transparent areas are shown on white.
fn thumbnail_jpeg(image: &DynamicImage) -> image::ImageResult<Vec<u8>> {
    let small = image.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE).to_rgba8();
    let flat = RgbImage::from_fn(small.width(), small.height(), |x, y| {
        let [r, g, b, a] = small.get_pixel(x, y).0;
        let over_white =
            |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        Rgb([over_white(r), over_white(g), over_white(b)])
    });
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY).encode_image(&flat)?;
    Ok(out)
}

/// temp file in the same folder + fsync + rename: a crash leaves either no file
/// or the whole file, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create the folder", dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    let written = File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(StoreError::io("write", path, e));
    }
    // Makes the rename itself durable where the platform allows syncing a folder.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

impl Store {
    /// Stores an image once by the SHA-256 of its bytes (adding the same bytes
    /// again is free) and returns its metadata. Fails with a clear error for
    /// anything that is not a readable PNG, JPEG, WebP, GIF, BMP or TIFF.
    pub fn put_image(&self, bytes: &[u8]) -> Result<ImageRef> {
        let sha = sha256_hex(bytes);
        if let Some((image, ext)) = self.image_row(&sha)? {
            if self.image_file(&sha, &ext).is_file() && self.thumbnail_file(&sha).is_file() {
                self.conn.execute(
                    "UPDATE images SET touched_at = ?2 WHERE sha256 = ?1",
                    params![sha, now_ms()],
                )?;
                return Ok(image);
            }
        }
        let decoded = decode(bytes)?;
        write_atomic(&self.image_file(&sha, decoded.ext), bytes)?;
        write_atomic(&self.thumbnail_file(&sha), &decoded.thumbnail)?;
        let image = ImageRef {
            sha256: sha,
            mime: decoded.mime.to_string(),
            width: decoded.width,
            height: decoded.height,
            bytes: bytes.len() as u64,
        };
        write_tx(&self.conn, |conn| {
            conn.execute(
                "INSERT INTO images (sha256, mime, ext, width, height, bytes, touched_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (sha256) DO UPDATE SET mime = ?2, ext = ?3, width = ?4, height = ?5,
                     bytes = ?6, touched_at = ?7",
                params![
                    image.sha256,
                    image.mime,
                    decoded.ext,
                    image.width,
                    image.height,
                    image.bytes as i64,
                    now_ms()
                ],
            )?;
            Ok(())
        })?;
        Ok(image)
    }

    pub fn image(&self, sha256: &str) -> Result<ImageRef> {
        Ok(self.known_image(sha256)?.0)
    }

    /// Where the original (or its thumbnail) lies on disk.
    pub fn image_path(&self, sha256: &str, thumbnail: bool) -> Result<PathBuf> {
        let (_, ext) = self.known_image(sha256)?;
        Ok(if thumbnail {
            self.thumbnail_file(sha256)
        } else {
            self.image_file(sha256, &ext)
        })
    }

    /// The original bytes (or the thumbnail JPEG).
    pub fn read_image(&self, sha256: &str, thumbnail: bool) -> Result<Vec<u8>> {
        let path = self.image_path(sha256, thumbnail)?;
        fs::read(&path).map_err(|e| StoreError::io("read the image", path, e))
    }

    /// Removes image files and rows no message refers to, except those added in
    /// the last [`GC_GRACE`] (staged for a message not yet saved).
    pub fn gc_images(&self) -> Result<GcReport> {
        self.gc_images_older_than(GC_GRACE)
    }

    pub fn gc_images_older_than(&self, grace: Duration) -> Result<GcReport> {
        let cutoff = now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
        let orphans: Vec<(String, String, u64)> = write_tx(&self.conn, |conn| {
            let mut stmt = conn.prepare(
                "SELECT sha256, ext, bytes FROM images i
                 WHERE touched_at <= ?1 AND NOT EXISTS (SELECT 1 FROM message_images mi WHERE mi.sha256 = i.sha256)",
            )?;
            let orphans = stmt
                .query_map([cutoff], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get::<_, i64>(2)?.unsigned_abs(),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut delete = conn.prepare("DELETE FROM images WHERE sha256 = ?1")?;
            for (sha, _, _) in &orphans {
                delete.execute([sha])?;
            }
            Ok(orphans)
        })?;
        let mut report = GcReport::default();
        for (sha, ext, bytes) in orphans {
            for path in [self.image_file(&sha, &ext), self.thumbnail_file(&sha)] {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove the unused image", path, e)),
                }
            }
            report.images_removed += 1;
            report.bytes_freed += bytes;
        }
        Ok(report)
    }

    fn known_image(&self, sha256: &str) -> Result<(ImageRef, String)> {
        self.image_row(sha256)?
            .ok_or_else(|| StoreError::ImageMissing(sha256.to_string()))
    }

    fn image_row(&self, sha256: &str) -> Result<Option<(ImageRef, String)>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        Ok(self
            .conn
            .prepare_cached(
                "SELECT sha256, mime, width, height, bytes, ext FROM images WHERE sha256 = ?1",
            )?
            .query_row([sha256], |row| {
                Ok((
                    ImageRef {
                        sha256: row.get(0)?,
                        mime: row.get(1)?,
                        width: row.get(2)?,
                        height: row.get(3)?,
                        bytes: row.get::<_, i64>(4)?.unsigned_abs(),
                    },
                    row.get(5)?,
                ))
            })
            .optional()?)
    }

    fn image_folder(&self, sha256: &str) -> PathBuf {
        self.images_dir().join(&sha256[..2])
    }

    pub(crate) fn image_file(&self, sha256: &str, ext: &str) -> PathBuf {
        self.image_folder(sha256).join(format!("{sha256}.{ext}"))
    }

    fn thumbnail_file(&self, sha256: &str) -> PathBuf {
        self.image_folder(sha256)
            .join(format!("{sha256}.thumb.jpg"))
    }

    /// File extension of a stored image.
    pub(crate) fn image_ext(&self, sha256: &str) -> Result<String> {
        Ok(self.known_image(sha256)?.1)
    }
}
