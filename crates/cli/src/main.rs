//! `impchat`: ask an Imp model about images from a script, chat with it in the terminal,
//! or serve it through an OpenAI-compatible HTTP API. Everything runs offline.

mod ask;
mod bench;
mod chat;
mod convert_cmd;
mod exit;
mod images;
mod interrupt;
mod model_args;
mod models_cmd;
mod output;
mod progress_line;
mod save;
mod serve;
mod stop_note;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    unexpected failure (the model computation failed, the port is taken, ...)
  2    usage error (unknown flag, missing or empty question, ...)
  3    the model could not be loaded
  4    bad input (unreadable image, prompt too long, not a model folder, unknown or
       damaged model, ...)
  130  interrupted with Ctrl+C";

#[derive(Parser)]
#[command(
    name = "impchat",
    version,
    about = "Offline multimodal chat with Imp models: ask about images, chat, or serve an \
             OpenAI-compatible API.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask one question (optionally about images) and stream the answer to stdout.
    #[command(after_help = EXIT_CODES)]
    Ask(ask::AskArgs),
    /// Chat in the terminal; /image PATH attaches an image, /help lists commands.
    #[command(after_help = EXIT_CODES)]
    Chat(chat::ChatArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions).
    #[command(after_help = EXIT_CODES)]
    Serve(serve::ServeArgs),
    /// Manage models: list the catalog, pull, import, remove, verify.
    #[command(after_help = EXIT_CODES)]
    Models(models_cmd::ModelsArgs),
    /// Convert a checkpoint folder into a language-model GGUF and its mmproj GGUF.
    #[command(after_help = EXIT_CODES)]
    Convert(convert_cmd::ConvertArgs),
    /// Measure speed on a random-weight model with an Imp checkpoint's exact shapes
    /// (the Imp paper's protocol: one image + 41 prompt tokens, 64 generated).
    #[command(after_help = EXIT_CODES)]
    Bench(bench::BenchArgs),
}

impl Command {
    /// The `--threads` asked for, when this command runs a model.
    fn threads(&self) -> Option<u16> {
        match self {
            Command::Ask(args) => args.model.threads,
            Command::Chat(args) => args.model.threads,
            Command::Serve(args) => args.model.threads,
            Command::Bench(args) => args.threads,
            Command::Models(_) | Command::Convert(_) => None,
        }
    }
}

/// candle's quantized kernels run on a process-wide pool sized once from `CANDLE_NUM_THREADS`
/// (else the core count), apart from the engine's own pool; without this, `--threads 1`
/// would still keep every core busy in the K-quant matmuls.
fn size_candle_pool(threads: Option<u16>) {
    if let Some(n) = threads {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            // Still single-threaded here, so changing the environment races with nothing.
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::report_usage(err),
    };
    size_candle_pool(cli.command.threads());
    let outcome = match cli.command {
        Command::Ask(args) => ask::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Models(args) => models_cmd::run(args),
        Command::Convert(args) => convert_cmd::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
