//! Reads the image files named on the command line and checks that they decode, before the
//! model is loaded, with errors that name the file.

use std::path::Path;
use std::time::Duration;

use impchat_engine::ImageBytes;
use impchat_input::image::{decode, DecodeLimits};
use impchat_input::source::{read_user_file, SourceError};

use crate::exit::Failure;

/// How long an image arriving through a pipe, FIFO or stdin may take, by default.
const DEFAULT_READ_TIMEOUT_S: f64 = 30.0;

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ImageReadArgs {
    /// Seconds an image from a pipe, FIFO or stdin (--image -) may take to arrive in full.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READ_TIMEOUT_S, allow_negative_numbers = true,
          value_parser = parse_seconds)]
    pub read_timeout: f64,
}

impl ImageReadArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.read_timeout)
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(seconds),
        _ => Err("expected a number of seconds above 0 (at most 86400)".into()),
    }
}

/// An image file that decodes, with what the user should see about it.
#[derive(Debug)]
pub struct ImageFile {
    pub bytes: ImageBytes,
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Reads and decodes the image at `path` ("-" is stdin); pipes get `timeout` to finish.
pub fn read_image(path: &Path, timeout: Duration) -> Result<ImageFile, Failure> {
    let refuse = |reason: String| {
        Failure::bad_input(format!("cannot read image '{}': {reason}", path.display()))
    };
    let limits = DecodeLimits::default();
    let bytes = read_user_file(path, limits.max_file_bytes, timeout)
        .map_err(|err| refuse(source_reason(&err)))?;
    let decoded = decode(&bytes, &limits).map_err(|err| refuse(err.to_string()))?;
    Ok(ImageFile {
        format: decoded.format.as_str(),
        width: decoded.rgb.width(),
        height: decoded.rgb.height(),
        bytes: ImageBytes::new(bytes),
    })
}

/// The reason, and what the user can do about it.
fn source_reason(err: &SourceError) -> String {
    match err {
        SourceError::Directory => "this is a folder; name an image file".into(),
        SourceError::NotAFile { .. } => {
            format!("{err}; save the image to a file and pass its path")
        }
        SourceError::StdinIsTerminal => {
            format!("{err}; pipe the image in (--image - < photo.png) or pass its path")
        }
        SourceError::TooLarge { .. } => format!("{err}; shrink or re-compress the image"),
        SourceError::TimedOut { .. } => format!(
            "{err}; check the program writing it, or allow longer with --read-timeout SECONDS"
        ),
        SourceError::NotFound | SourceError::PermissionDenied | SourceError::Io(_) => {
            err.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn fixture_images_decode() {
        let shapes =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/images/shapes.png");
        let image = read_image(&shapes, T).expect("decodes");
        assert_eq!((image.format, image.width, image.height), ("png", 160, 120));
    }

    #[test]
    fn unreadable_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.png");
        let err = read_image(&missing, T).expect_err("missing file");
        assert!(
            err.message().contains("nope.png': no such file"),
            "{}",
            err.message()
        );

        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").expect("write");
        let err = read_image(&empty, T).expect_err("empty file");
        assert!(
            err.message().contains("empty.png': The file is empty"),
            "{}",
            err.message()
        );

        let pdf = dir.path().join("scan.pdf");
        std::fs::write(&pdf, b"%PDF-1.7\n%%EOF\n").expect("write");
        let err = read_image(&pdf, T).expect_err("a PDF");
        assert!(
            err.message().contains("scan.pdf': This is a PDF document"),
            "{}",
            err.message()
        );

        let err = read_image(dir.path(), T).expect_err("folder");
        assert!(
            err.message().contains("this is a folder"),
            "{}",
            err.message()
        );
    }
}
