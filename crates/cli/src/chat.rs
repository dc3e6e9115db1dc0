//! `impchat chat`: an interactive terminal chat that keeps the model's session (and so its
//! cache) across turns.

use std::path::PathBuf;
use std::process::ExitCode;

use impchat_engine::{
    ChatMessage, EngineError, GenerateRequest, GenerationEvent, GenerationStats, ImageBytes, Model,
    Session, StopReason,
};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::images::{read_image, ImageReadArgs};
use crate::interrupt::Interrupt;
use crate::model_args::{ModelArgs, SamplingArgs};
use crate::output;
use crate::save::{app_data_dir, Recorder, SaveStore};
use crate::stop_note::cut_off_note;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,

    /// System prompt [default: the model family's own].
    #[arg(long, value_name = "S")]
    system: Option<String>,

    #[command(flatten)]
    sampling: SamplingArgs,

    #[command(flatten)]
    image_read: ImageReadArgs,

    /// Save the conversation where the ImpChat app keeps its chats, so it shows up there.
    #[arg(long)]
    save: bool,

    /// Conversation store for --save [default: the app's data folder, e.g.
    /// ~/.local/share/app.impchat.desktop].
    #[arg(long, value_name = "DIR", requires = "save")]
    data_dir: Option<PathBuf>,
}

const HELP: &str = "\
Type a question and press Enter. Commands:
  /image PATH   attach an image to your next question (repeat for several)
  /reset        start a new conversation (forgets messages and attached images)
  /help         show this help
  /quit         leave (Ctrl+D does too)
Ctrl+C while an answer is streaming stops that answer; at the prompt it quits.";

pub fn run(args: ChatArgs) -> Outcome {
    let interrupt = Interrupt::install()?;
    // Before the model: a store problem must not wait for a load of gigabytes.
    let save_store = if args.save {
        Some(open_save_store(&args)?)
    } else {
        None
    };
    eprintln!("Loading {} ...", args.model.model.display());
    let model = args.model.load()?;
    let info = model.info();
    eprintln!(
        "{} is ready ({} tokens of context, {} per image). Type /help for commands.",
        info.name, info.context_length, info.visual_tokens
    );
    let recorder = save_store.map(|store| store.recorder(info, args.sampling.seed));
    let mut editor = DefaultEditor::new().or_exit(ExitKind::Failure)?;
    let mut chat = Chat::new(&model, &args, recorder);
    loop {
        let line = match editor.readline(&chat.prompt()) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
            Err(err) => return Err(Failure::new(ExitKind::Failure, err)),
        };
        if !line.trim().is_empty() {
            // History is a convenience; a full history is no reason to stop chatting.
            let _ = editor.add_history_entry(line.as_str());
        }
        match Input::parse(&line) {
            Input::Nothing => {}
            Input::Question(text) => chat.answer(text, &interrupt)?,
            Input::AttachImage(path) => chat.attach(path),
            Input::MissingImagePath => eprintln!("usage: /image PATH"),
            Input::Reset => chat.reset(),
            Input::Help => eprintln!("{HELP}"),
            Input::Quit => break,
            Input::Unknown(command) => {
                eprintln!("unknown command {command}; type /help for the list")
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_save_store(args: &ChatArgs) -> Result<SaveStore, Failure> {
    let Some(dir) = args.data_dir.clone().or_else(app_data_dir) else {
        return Err(Failure::usage(
            "this system has no data folder for --save; name one with --data-dir DIR",
        ));
    };
    let store = SaveStore::open(&dir)?;
    eprintln!("Saving this chat in {}", dir.display());
    Ok(store)
}

/// One line typed at the prompt.
#[derive(Debug, PartialEq)]
enum Input {
    Nothing,
    Question(String),
    AttachImage(PathBuf),
    MissingImagePath,
    Reset,
    Help,
    Quit,
    Unknown(String),
}

impl Input {
    fn parse(line: &str) -> Self {
        let line = line.trim();
        if line.is_empty() {
            return Input::Nothing;
        }
        if !line.starts_with('/') {
            return Input::Question(line.to_owned());
        }
        let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match command {
            "/image" | "/img" => match unquote(rest.trim()) {
                "" => Input::MissingImagePath,
                path => Input::AttachImage(expand_home(path)),
            },
            "/reset" | "/new" => Input::Reset,
            "/help" | "/?" => Input::Help,
            "/quit" | "/exit" | "/q" => Input::Quit,
            other => Input::Unknown(other.to_owned()),
        }
    }
}

/// Terminals quote dropped file paths that contain spaces.
fn unquote(text: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            return inner;
        }
    }
    text
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

struct Chat<'a> {
    session: Session,
    system: Option<String>,
    sampling: &'a SamplingArgs,
    messages: Vec<ChatMessage>,
    staged: Vec<(PathBuf, ImageBytes)>,
    recorder: Option<Recorder>,
    image_read: ImageReadArgs,
    context_length: usize,
}

impl<'a> Chat<'a> {
    fn new(model: &Model, args: &'a ChatArgs, recorder: Option<Recorder>) -> Self {
        Self {
            session: model.new_session(),
            system: args.system.clone(),
            sampling: &args.sampling,
            messages: Vec::new(),
            staged: Vec::new(),
            recorder,
            image_read: args.image_read,
            context_length: model.info().context_length,
        }
    }

    fn prompt(&self) -> String {
        match self.staged.len() {
            0 => "you> ".into(),
            1 => "you [1 image]> ".into(),
            n => format!("you [{n} images]> "),
        }
    }

    fn attach(&mut self, path: PathBuf) {
        if path.as_os_str() == impchat_input::source::STDIN {
            eprintln!("stdin is where the chat reads your questions; /image takes a file's path");
            return;
        }
        match read_image(&path, self.image_read.timeout()) {
            Ok(image) => {
                eprintln!(
                    "attached {} ({}, {}x{}); it goes with your next question",
                    path.display(),
                    image.format,
                    image.width,
                    image.height
                );
                self.staged.push((path, image.bytes));
            }
            Err(failure) => eprintln!("{}", failure.message()),
        }
    }

    fn reset(&mut self) {
        self.session.reset();
        self.messages.clear();
        self.staged.clear();
        if let Some(recorder) = &mut self.recorder {
            recorder.new_conversation();
        }
        eprintln!("new conversation");
    }

    /// Answers `question`; fails only when stdout no longer takes the answer.
    fn answer(&mut self, question: String, interrupt: &Interrupt) -> Result<(), Failure> {
        let (paths, images): (Vec<PathBuf>, Vec<ImageBytes>) = self.staged.drain(..).unzip();
        let mut message = ChatMessage::user(question);
        message.images = images;
        self.messages.push(message);
        let request = GenerateRequest {
            system: self.system.clone(),
            messages: self.messages.clone(),
            sampling: self.sampling.sampling(),
            max_new_tokens: self.sampling.max_tokens as usize,
            stop: self.sampling.stop.clone(),
        };

        let mut record = self.recorder.as_mut().and_then(|r| r.begin_turn(&request));
        let mut answer = String::new();
        let cancel = interrupt.begin_answer();
        let recorder = &mut self.recorder;
        let mut write_error = None;
        let result = self.session.generate(&request, &cancel, &mut |event| {
            if let GenerationEvent::Token { text } = event {
                if let (Some(recorder), Some(record)) = (recorder.as_mut(), record.as_mut()) {
                    recorder.append(record, &text);
                }
                answer.push_str(&text);
                if write_error.is_none() {
                    if let Err(err) = output::write_flushed(text.as_bytes()) {
                        // Nobody sees the rest of this answer, nor any later one.
                        write_error = Some(err);
                        cancel.cancel();
                    }
                }
            }
        });
        interrupt.end_answer();
        if write_error.is_none() && !answer.ends_with('\n') {
            write_error = output::write_flushed(b"\n").err();
        }

        match result {
            Ok(stats) => {
                if let (Some(recorder), Some(record)) = (self.recorder.as_mut(), record) {
                    recorder.finish(record, &request, Ok(&stats));
                }
                eprintln!("{}", stats_line(&stats));
                if let Some(note) = cut_off_note(&stats, self.context_length) {
                    eprintln!("{note}; type /reset to start a new conversation");
                }
                self.messages.push(ChatMessage::assistant(answer));
            }
            Err(err) => {
                let bad_image = matches!(err, EngineError::Image { .. });
                let overflow = matches!(err, EngineError::ContextOverflow { .. });
                let failure = Failure::generation(err, &paths);
                if let (Some(recorder), Some(record)) = (self.recorder.as_mut(), record) {
                    recorder.finish(record, &request, Err(failure.message()));
                }
                eprintln!("{}", failure.message());
                self.take_back_question(paths, bad_image);
                if overflow {
                    eprintln!("type /reset to start a new conversation");
                }
            }
        }
        match write_error {
            Some(err) => Err(output::stdout_failure(err)),
            None => Ok(()),
        }
    }

    /// Takes the failed question back out of the conversation so the next one starts clean;
    /// its images stay attached unless one of them was the problem.
    fn take_back_question(&mut self, paths: Vec<PathBuf>, bad_image: bool) {
        let Some(question) = self.messages.pop() else {
            return;
        };
        if bad_image {
            eprintln!("the images were detached; attach the ones you want again with /image");
        } else {
            self.staged = paths.into_iter().zip(question.images).collect();
        }
    }
}

fn stats_line(stats: &GenerationStats) -> String {
    let stopped = match stats.stop_reason {
        Some(StopReason::Cancelled) => "stopped; ",
        Some(StopReason::MaxTokens) => "cut at --max-tokens; ",
        Some(StopReason::ContextFull) => "cut off, the context is full; ",
        _ => "",
    };
    let cached = stats
        .prompt_tokens
        .saturating_sub(stats.prompt_tokens_computed);
    let cache = if cached > 0 {
        format!(
            ", {cached} of {} prompt tokens from cache",
            stats.prompt_tokens
        )
    } else {
        String::new()
    };
    format!(
        "[{stopped}{} tokens, {:.1} tokens/s, first token after {:.2} s{cache}]",
        stats.generated_tokens,
        stats.decode_tokens_per_s,
        stats.time_to_first_token_ms / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lines_become_questions_or_commands() {
        assert_eq!(Input::parse("  "), Input::Nothing);
        assert_eq!(
            Input::parse(" what is this? "),
            Input::Question("what is this?".into())
        );
        assert_eq!(Input::parse("/image"), Input::MissingImagePath);
        assert_eq!(
            Input::parse("/image '/tmp/my photo.png'"),
            Input::AttachImage(PathBuf::from("/tmp/my photo.png"))
        );
        assert_eq!(Input::parse("/reset"), Input::Reset);
        assert_eq!(Input::parse("/quit"), Input::Quit);
        assert_eq!(
            Input::parse("/frobnicate now"),
            Input::Unknown("/frobnicate".into())
        );
    }
}
