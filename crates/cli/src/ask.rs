//! `impchat ask`: one question, the answer streamed to stdout (or one JSON object).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use impchat_engine::{
    ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ModelInfo, SamplingParams,
};
use serde::Serialize;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::images::{read_image, ImageReadArgs};
use crate::interrupt::Interrupt;
use crate::model_args::{ModelArgs, SamplingArgs};
use crate::output;
use crate::stop_note::cut_off_note;

#[derive(clap::Args, Debug)]
pub struct AskArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,

    /// Image to ask about; repeat the flag for several images (they are shown in order);
    /// "-" reads one from stdin.
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,

    #[command(flatten)]
    image_read: ImageReadArgs,

    /// System prompt [default: the model family's own].
    #[arg(long, value_name = "S")]
    system: Option<String>,

    #[command(flatten)]
    sampling: SamplingArgs,

    /// Print one JSON object (answer, stats, provenance) when done instead of streaming text.
    #[arg(long)]
    json: bool,

    /// The question; "-" reads it from stdin.
    #[arg(value_name = "QUESTION")]
    question: String,
}

pub fn run(args: AskArgs) -> Outcome {
    check_stdin_use(&args)?;
    let question = read_question(&args.question)?;
    if question.trim().is_empty() && args.images.is_empty() {
        return Err(Failure::usage(
            "the question is empty; type a question, or attach an image with --image FILE",
        ));
    }
    let mut message = ChatMessage::user(question);
    for path in &args.images {
        message = message.with_image(read_image(path, args.image_read.timeout())?.bytes);
    }
    let interrupt = Interrupt::install()?;
    let model = args.model.load()?;

    let request = GenerateRequest {
        system: args.system.clone(),
        messages: vec![message],
        sampling: args.sampling.sampling(),
        max_new_tokens: args.sampling.max_tokens as usize,
        stop: args.sampling.stop.clone(),
    };
    let mut session = model.new_session();
    let mut printer = AnswerPrinter::new(!args.json);
    let cancel = interrupt.begin_answer();
    let result = session.generate(&request, &cancel, &mut |event| {
        if let GenerationEvent::Token { text } = event {
            if !printer.push(&text) {
                // Nobody can read the rest: stdout was closed (`| head`) or failed.
                cancel.cancel();
            }
        }
    });
    let interrupted = interrupt.end_answer();
    let stats = result.map_err(|err| Failure::generation(err, &args.images))?;
    if let Some(err) = printer.write_error.take() {
        return Err(output::stdout_failure(err));
    }
    if args.json {
        let report = AskReport {
            answer: &printer.answer,
            stats: &stats,
            provenance: Provenance::new(model.info(), &request, &args.images),
        };
        let json = serde_json::to_string(&report).or_exit(ExitKind::Failure)?;
        output::print_line(&json)?;
    } else {
        printer.finish_line().map_err(output::stdout_failure)?;
        if let Some(note) = cut_off_note(&stats, model.info().context_length) {
            eprintln!("impchat: {note}; shorten the question or attach fewer images");
        }
    }
    if interrupted {
        return Ok(ExitKind::Interrupted.code());
    }
    Ok(ExitCode::SUCCESS)
}

/// stdin can feed one thing: the question or one image.
fn check_stdin_use(args: &AskArgs) -> Result<(), Failure> {
    let stdin_images = args.images.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_images > 1 {
        return Err(Failure::usage(
            "--image - is given more than once; stdin holds one image, pass the others by path",
        ));
    }
    if stdin_images == 1 && args.question == "-" {
        return Err(Failure::usage(
            "the question and --image - both read stdin; type the question as an argument",
        ));
    }
    Ok(())
}

fn read_question(arg: &str) -> Result<String, Failure> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| Failure::bad_input(format!("cannot read the question from stdin: {err}")))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Streams answer text to stdout as it arrives (one flush per delta) and keeps a copy.
struct AnswerPrinter {
    stream: bool,
    answer: String,
    /// Why stdout stopped taking the answer; nothing more is written after it.
    write_error: Option<std::io::Error>,
}

impl AnswerPrinter {
    fn new(stream: bool) -> Self {
        Self {
            stream,
            answer: String::new(),
            write_error: None,
        }
    }

    /// Keeps `delta` and streams it; false once stdout no longer takes the answer.
    fn push(&mut self, delta: &str) -> bool {
        self.answer.push_str(delta);
        if !self.stream {
            return true;
        }
        if self.write_error.is_some() {
            return false;
        }
        match output::write_flushed(delta.as_bytes()) {
            Ok(()) => true,
            Err(err) => {
                self.write_error = Some(err);
                false
            }
        }
    }

    /// Ends the streamed answer with a newline so the shell prompt starts on its own line.
    fn finish_line(&self) -> std::io::Result<()> {
        if self.answer.ends_with('\n') {
            return Ok(());
        }
        output::write_flushed(b"\n")
    }
}

#[derive(Serialize)]
struct AskReport<'a> {
    answer: &'a str,
    stats: &'a GenerationStats,
    provenance: Provenance<'a>,
}

/// What produced the answer, so a script can record or reproduce it.
#[derive(Serialize)]
struct Provenance<'a> {
    model_id: &'a str,
    model_path: &'a Path,
    quantization: &'a str,
    image_size: u32,
    images: &'a [PathBuf],
    system: Option<&'a str>,
    sampling: &'a SamplingParams,
    seed: u64,
    max_tokens: usize,
    stop: &'a [String],
}

impl<'a> Provenance<'a> {
    fn new(info: &'a ModelInfo, request: &'a GenerateRequest, images: &'a [PathBuf]) -> Self {
        Self {
            model_id: &info.id,
            model_path: &info.path,
            quantization: &info.quantization,
            image_size: info.image_size,
            images,
            system: request.system.as_deref(),
            sampling: &request.sampling,
            seed: request.sampling.seed,
            max_tokens: request.max_new_tokens,
            stop: &request.stop,
        }
    }
}
