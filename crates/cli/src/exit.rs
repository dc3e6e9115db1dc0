//! Exit codes scripts can rely on, and the one-line error report a user reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use impchat_engine::EngineError;

/// Why `impchat` stopped without success; the numeric value is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Failure = 1,
    Usage = 2,
    ModelLoad = 3,
    BadInput = 4,
    Interrupted = 130,
}

impl ExitKind {
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// An error on its way to stderr, with the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    kind: ExitKind,
    error: anyhow::Error,
}

pub type Outcome = Result<ExitCode, Failure>;

impl Failure {
    pub fn new(kind: ExitKind, error: impl Into<anyhow::Error>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }

    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self::new(ExitKind::Usage, anyhow!("{message}"))
    }

    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        Self::new(ExitKind::BadInput, anyhow!("{message}"))
    }

    #[cfg(test)]
    pub fn kind(&self) -> ExitKind {
        self.kind
    }

    /// The message on one line, context first ("cannot read image 'x': reason").
    pub fn message(&self) -> String {
        one_line(&chain_text(&self.error))
    }

    pub fn report(self) -> ExitCode {
        if self.error.is::<crate::output::StdoutClosed>() {
            // `impchat ... | head`: the reader has what it wanted.
            return ExitCode::SUCCESS;
        }
        eprintln!("impchat: {}", self.message());
        self.kind.code()
    }

    pub fn model_load(path: &Path, err: EngineError) -> Self {
        Self::new(
            ExitKind::ModelLoad,
            anyhow!(
                "cannot load the model at '{}': {}",
                path.display(),
                with_cli_flags(&err)
            ),
        )
    }

    /// Maps an engine error from answering to an exit code; `images` are the files the
    /// request's images came from, in order, so the message can name the bad one.
    pub fn generation(err: EngineError, images: &[PathBuf]) -> Self {
        match err {
            EngineError::Image { index, reason } => {
                let name = images
                    .get(index)
                    .map(|path| format!("'{}'", path.display()))
                    .unwrap_or_else(|| format!("number {}", index + 1));
                Self::bad_input(format!("cannot read image {name}: {reason}"))
            }
            EngineError::EmptyPrompt
            | EngineError::ContextOverflow { .. }
            | EngineError::InvalidRequest(_) => Self::bad_input(err),
            EngineError::NoVisionTower => Self::bad_input(
                "this model was loaded without its vision file (mmproj-*.gguf), so it cannot \
                 look at images; pass that file with --mmproj PATH, or ask without --image",
            ),
            other => Self::new(
                ExitKind::Failure,
                anyhow!("the model failed while answering: {other}"),
            ),
        }
    }
}

/// Lets `?` turn any error into a [`Failure`] with a chosen exit code.
pub trait OrExit<T> {
    fn or_exit(self, kind: ExitKind) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, kind: ExitKind) -> Result<T, Failure> {
        self.map_err(|err| Failure::new(kind, err))
    }
}

/// Prints clap's help/version as usual, and turns a usage error into one line and exit 2.
pub fn report_usage(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Nothing sensible is left to do if stdout is gone.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitKind::Usage.code()
        }
        _ => {
            let rendered = err.render().to_string();
            let first_paragraph: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty())
                .collect();
            let summary = first_paragraph.join(" ");
            let summary = summary.strip_prefix("error: ").unwrap_or(&summary);
            eprintln!("impchat: {summary}; see 'impchat --help'");
            ExitKind::Usage.code()
        }
    }
}

/// The error and its causes, "context: cause", leaving out a cause whose text the message
/// already holds (errors that print their source and also return it from `source()`).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// The engine cannot know the front end's flags; the terminal user gets the one to use.
fn with_cli_flags(err: &EngineError) -> String {
    match err {
        EngineError::SeveralVisionFiles { .. } => format!("{err} with --mmproj PATH"),
        other => other.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_errors_are_reported_on_one_line() {
        let failure = Failure::bad_input("first\n\n  second\nthird");
        assert_eq!(failure.message(), "first; second; third");
    }

    #[test]
    fn image_errors_name_the_file_they_came_from() {
        let images = [PathBuf::from("a.png"), PathBuf::from("scan.pdf")];
        let err = EngineError::Image {
            index: 1,
            reason: "this is a PDF".into(),
        };
        let failure = Failure::generation(err, &images);
        assert_eq!(failure.kind(), ExitKind::BadInput);
        assert_eq!(
            failure.message(),
            "cannot read image 'scan.pdf': this is a PDF"
        );
    }

    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        let io = std::io::Error::other("File exists (os error 17)");
        let err = impchat_convert::ConvertError::Write {
            path: PathBuf::from("out.gguf"),
            source: io,
        };
        let message = Failure::new(ExitKind::Failure, err).message();
        assert_eq!(message.matches("File exists").count(), 1, "{message}");
    }

    #[test]
    fn engine_advice_names_the_flag_not_the_api() {
        let err = EngineError::SeveralVisionFiles {
            model: PathBuf::from("m.gguf"),
            count: 2,
            pattern: "mmproj-m-*.gguf".into(),
        };
        let message = Failure::model_load(Path::new("m.gguf"), err).message();
        assert!(
            message.ends_with("name the one to use with --mmproj PATH"),
            "{message}"
        );
    }

    #[test]
    fn context_overflow_is_bad_input() {
        let err = EngineError::ContextOverflow {
            needed: 3000,
            per_image: 729,
            limit: 2048,
            images: 1,
            earlier_turns: 0,
        };
        assert_eq!(Failure::generation(err, &[]).kind(), ExitKind::BadInput);
    }
}
