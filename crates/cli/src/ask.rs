//! `impchat ask`: one question, the answer streamed to stdout (or one JSON object).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use impchat_engine::{
    ChatMessage, GenerateRequest, GenerationEvent, GenerationStats, ModelInfo, SamplingParams,
};
use serde::Serialize;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::images::read_image;
use crate::interrupt::Interrupt;
use crate::model_args::{ModelArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct AskArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,

    /// Image to ask about; repeat the flag for several images (they are shown in order).
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,

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
    let question = read_question(&args.question)?;
    if question.trim().is_empty() && args.images.is_empty() {
        return Err(Failure::usage(
            "the question is empty; type a question, or attach an image with --image FILE",
        ));
    }
    let mut message = ChatMessage::user(question);
    for path in &args.images {
        message = message.with_image(read_image(path)?.bytes);
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
            if printer.push(&text).is_err() {
                // stdout was closed (e.g. piped into `head`): nobody reads the rest.
                cancel.cancel();
            }
        }
    });
    let interrupted = interrupt.end_answer();
    let stats = result.map_err(|err| Failure::generation(err, &args.images))?;

    if printer.stdout_closed {
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        let report = AskReport {
            answer: &printer.answer,
            stats: &stats,
            provenance: Provenance::new(model.info(), &request, &args.images),
        };
        let json = serde_json::to_string(&report).or_exit(ExitKind::Failure)?;
        println!("{json}");
    } else {
        printer.finish_line().or_exit(ExitKind::Failure)?;
    }
    if interrupted {
        return Ok(ExitKind::Interrupted.code());
    }
    Ok(ExitCode::SUCCESS)
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
    stdout_closed: bool,
}

impl AnswerPrinter {
    fn new(stream: bool) -> Self {
        Self {
            stream,
            answer: String::new(),
            stdout_closed: false,
        }
    }

    fn push(&mut self, delta: &str) -> std::io::Result<()> {
        self.answer.push_str(delta);
        if !self.stream || self.stdout_closed {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let written = out.write_all(delta.as_bytes()).and_then(|()| out.flush());
        self.stdout_closed = written.is_err();
        written
    }

    /// Ends the streamed answer with a newline so the shell prompt starts on its own line.
    fn finish_line(&self) -> std::io::Result<()> {
        if self.answer.ends_with('\n') {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(b"\n")?;
        out.flush()
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
