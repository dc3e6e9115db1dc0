//! `impchat serve`: an OpenAI-compatible HTTP API over the loaded model, for local clients.

mod api;
mod auth;
mod body;
mod convert;
mod error;
mod guard;
mod handlers;
mod listen;
mod queue;
mod stream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::CorsLayer;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::model_args::ModelArgs;
use body::BodyLimits;
use guard::RequestPolicy;
use handlers::{AppState, SharedState};
use listen::ConnectionLimits;
use queue::ModelQueue;

const API_KEY_VARIABLE: &str = "IMPCHAT_API_KEY";

/// Largest request body accepted; a few full-size photos as base64 fit.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

const BODY_LIMITS: BodyLimits = BodyLimits {
    max_bytes: MAX_BODY_BYTES,
    grace: Duration::from_secs(5),
    min_bytes_per_second: 256 * 1024,
};

/// Connections beyond the queue's: the one being answered and a few quick GETs.
const SPARE_CONNECTIONS: usize = 32;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Endpoints: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions (stream or not;
images as data URLs). Requests that set no temperature are answered greedily (temperature 0);
requests that set no max_tokens stop after 1024 tokens. One request is answered at a time, the
others wait in a queue of --max-queue; when it is full the server answers 429. Web pages are kept
out: POST bodies must be sent as application/json (415 otherwise), a request with an Origin
header needs --cors-origin (403), and one for a host name other than localhost, 127.0.0.1,
[::1], --host or an --allow-host is refused (403). Headers must arrive within 5 s, bodies at
256 KiB/s or more.")]
pub struct ServeArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,

    /// Address to listen on; keep the default unless other machines must reach the server.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,

    /// Require 'Authorization: Bearer KEY' on every request. The environment variable
    /// IMPCHAT_API_KEY does the same and keeps the key out of the process list.
    #[arg(long, value_name = "KEY", value_parser = parse_api_key)]
    api_key: Option<String>,

    /// Also answer requests addressed to this host name (repeatable), e.g. the machine's
    /// name when clients use it with --host 0.0.0.0. Requests for localhost, 127.0.0.1,
    /// [::1] and --host are always answered; others are refused, so that a web page cannot
    /// reach the server by pointing its own name at this machine (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,

    /// Requests that may wait while one is answered; more get 429.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_queue: u16,

    /// Allow browser pages from this origin (e.g. http://localhost:3000) to call the API.
    #[arg(long, value_name = "ORIGIN", value_parser = parse_origin)]
    cors_origin: Option<HeaderValue>,

    /// Largest image accepted, in MiB after base64 decoding.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=32))]
    max_image_mib: u32,
}

fn parse_api_key(text: &str) -> Result<String, String> {
    match auth::key_problem(text) {
        Some(problem) => Err(format!(
            "{problem}; give a key of visible characters, or leave out --api-key to serve \
             without one"
        )),
        None => Ok(text.to_owned()),
    }
}

/// `IMPCHAT_API_KEY`, refused like a bad `--api-key`: an empty variable (a script's unset
/// `$KEY`, say) must not quietly serve without a key.
fn key_from_environment() -> Result<Option<String>, Failure> {
    let Some(key) = std::env::var_os(API_KEY_VARIABLE) else {
        return Ok(None);
    };
    let Ok(key) = key.into_string() else {
        return Err(Failure::usage(format!(
            "{API_KEY_VARIABLE} is set, but not to valid UTF-8 text; set it to the key clients \
             will send, or unset it to serve without a key"
        )));
    };
    match auth::key_problem(&key) {
        Some(problem) => Err(Failure::usage(format!(
            "{API_KEY_VARIABLE} is set, but {problem}; set it to the key clients will send, \
             or unset it to serve without a key"
        ))),
        None => Ok(Some(key)),
    }
}

fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let valid = text == "*" || text.starts_with("http://") || text.starts_with("https://");
    match HeaderValue::from_str(text.trim_end_matches('/')) {
        Ok(value) if valid => Ok(value),
        _ => Err("expected an origin such as http://localhost:3000 (or *)".into()),
    }
}

pub fn run(args: ServeArgs) -> Outcome {
    // Before the model loads, so that a bad key is reported at once.
    let api_key = match args.api_key.clone() {
        Some(key) => Some(key),
        None => key_from_environment()?,
    };
    let model = args.model.load()?;
    let info = model.info();
    let model_id = info.id.clone();
    let model_name = info.name.clone();
    let queue = ModelQueue::start(model, usize::from(args.max_queue)).or_exit(ExitKind::Failure)?;
    let state = Arc::new(AppState {
        model_id,
        model_name,
        started: handlers::unix_seconds(),
        queue: queue.clone(),
        body_limits: BODY_LIMITS,
        limits: convert::Limits {
            max_image_bytes: args.max_image_mib as usize * 1024 * 1024,
        },
    });
    let policy = RequestPolicy::new(&args.host, &args.allow_host, args.cors_origin.as_ref());
    let router = router(state, api_key.as_deref(), args.cors_origin.as_ref(), policy);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .or_exit(ExitKind::Failure)?;
    runtime.block_on(bind_and_serve(router, &args, api_key.is_some(), queue))
}

/// The endpoints behind, from the outside in: the host and origin checks, CORS (which
/// answers preflights), the API key, and the JSON content-type check.
fn router(
    state: SharedState,
    api_key: Option<&str>,
    cors_origin: Option<&HeaderValue>,
    policy: RequestPolicy,
) -> Router {
    let chat =
        post(handlers::chat_completions).layer(axum::middleware::from_fn(guard::require_json));
    let mut router = Router::new()
        .route("/v1/models", get(handlers::list_models))
        .route("/v1/models/{id}", get(handlers::get_model))
        .route("/v1/chat/completions", chat)
        .fallback(handlers::route_not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state);
    if let Some(key) = api_key {
        let key: Arc<str> = Arc::from(key);
        router = router.layer(axum::middleware::from_fn_with_state(
            key,
            auth::require_api_key,
        ));
    }
    if let Some(origin) = cors_origin {
        let cors = CorsLayer::new()
            .allow_origin(origin.clone())
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
        router = router.layer(cors);
    }
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(policy),
        guard::check_host_and_origin,
    ))
}

async fn bind_and_serve(
    router: Router,
    args: &ServeArgs,
    has_key: bool,
    queue: ModelQueue,
) -> Outcome {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|err| {
            Failure::new(
                ExitKind::Failure,
                anyhow!(
                    "cannot listen on {}:{}: {err}; pick another --port or stop the program \
                     using it",
                    args.host,
                    args.port
                ),
            )
        })?;
    let address: SocketAddr = listener.local_addr().or_exit(ExitKind::Failure)?;
    if !address.ip().is_loopback() && !has_key {
        eprintln!(
            "impchat: warning: listening on {} without --api-key; anyone who can reach this \
             machine can use the model",
            address.ip()
        );
    }
    eprintln!("impchat: serving on http://{address}/v1 (OpenAI-compatible); Ctrl+C stops");
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: usize::from(args.max_queue) + SPARE_CONNECTIONS,
        shutdown_grace: Duration::from_secs(10),
    };
    listen::serve(listener, router, limits, shutdown_signal(queue)).await;
    eprintln!("impchat: server stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl+C or SIGTERM: stop the answer in progress (its client gets an error, not a
/// truncated answer passed off as whole), refuse queued requests, and let the open streams
/// finish.
async fn shutdown_signal(queue: ModelQueue) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    eprintln!("impchat: shutting down");
    queue.close();
}
