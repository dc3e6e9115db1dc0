//! Reads the image files named on the command line and checks that they decode, before the
//! model is loaded, with errors that name the file.

use std::path::Path;

use impchat_engine::ImageBytes;
use impchat_input::image::{decode, DecodeLimits};

use crate::exit::Failure;

/// An image file that decodes, with what the user should see about it.
#[derive(Debug)]
pub struct ImageFile {
    pub bytes: ImageBytes,
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
}

pub fn read_image(path: &Path) -> Result<ImageFile, Failure> {
    let refuse = |reason: String| {
        Failure::bad_input(format!("cannot read image '{}': {reason}", path.display()))
    };
    let metadata = std::fs::metadata(path).map_err(|err| refuse(io_reason(&err)))?;
    if metadata.is_dir() {
        return Err(refuse("this is a folder; name an image file".into()));
    }
    let limits = DecodeLimits::default();
    if metadata.len() > limits.max_file_bytes {
        const MIB: u64 = 1024 * 1024;
        return Err(refuse(format!(
            "the file is {} MiB; ImpChat accepts images up to {} MiB; shrink or re-compress it",
            metadata.len().div_ceil(MIB),
            limits.max_file_bytes / MIB
        )));
    }
    let bytes = std::fs::read(path).map_err(|err| refuse(io_reason(&err)))?;
    let decoded = decode(&bytes, &limits).map_err(|err| refuse(err.to_string()))?;
    Ok(ImageFile {
        format: decoded.format.as_str(),
        width: decoded.rgb.width(),
        height: decoded.rgb.height(),
        bytes: ImageBytes::new(bytes),
    })
}

fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_images_decode() {
        let shapes =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/shapes.png");
        let image = read_image(&shapes).expect("decodes");
        assert_eq!((image.format, image.width, image.height), ("png", 160, 120));
    }

    #[test]
    fn unreadable_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.png");
        let err = read_image(&missing).expect_err("missing file");
        assert!(
            err.message().contains("nope.png': no such file"),
            "{}",
            err.message()
        );

        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").expect("write");
        let err = read_image(&empty).expect_err("empty file");
        assert!(
            err.message().contains("empty.png': The file is empty"),
            "{}",
            err.message()
        );

        let pdf = dir.path().join("scan.pdf");
        std::fs::write(&pdf, b"%PDF-1.7\n%%EOF\n").expect("write");
        let err = read_image(&pdf).expect_err("a PDF");
        assert!(
            err.message().contains("scan.pdf': This is a PDF document"),
            "{}",
            err.message()
        );

        let err = read_image(dir.path()).expect_err("folder");
        assert!(
            err.message().contains("this is a folder"),
            "{}",
            err.message()
        );
    }
}
