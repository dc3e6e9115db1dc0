//! `impchat serve`: an OpenAI-compatible HTTP API over the loaded model, for local clients.

mod api;
mod auth;
mod convert;
mod error;
mod handlers;
mod queue;
mod stream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::CorsLayer;

use crate::exit::{ExitKind, Failure, OrExit, Outcome};
use crate::model_args::ModelArgs;
use handlers::{AppState, SharedState};
use queue::ModelQueue;

const API_KEY_VARIABLE: &str = "IMPCHAT_API_KEY";

/// Largest request body accepted; a few full-size photos as base64 fit.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Endpoints: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions (stream or not;
images as data URLs). Requests that set no temperature are answered greedily (temperature 0);
requests that set no max_tokens stop after 1024 tokens. One request is answered at a time, the
others wait in a queue of --max-queue; when it is full the server answers 429.")]
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
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,

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

fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let valid = text == "*" || text.starts_with("http://") || text.starts_with("https://");
    match HeaderValue::from_str(text.trim_end_matches('/')) {
        Ok(value) if valid => Ok(value),
        _ => Err("expected an origin such as http://localhost:3000 (or *)".into()),
    }
}

pub fn run(args: ServeArgs) -> Outcome {
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
        limits: convert::Limits {
            max_image_bytes: args.max_image_mib as usize * 1024 * 1024,
        },
    });
    let api_key = args.api_key.clone().or_else(|| {
        std::env::var(API_KEY_VARIABLE)
            .ok()
            .filter(|key| !key.is_empty())
    });
    let router = router(state, api_key.as_deref(), args.cors_origin.as_ref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .or_exit(ExitKind::Failure)?;
    runtime.block_on(listen(router, &args, api_key.is_some(), queue))
}

fn router(state: SharedState, api_key: Option<&str>, cors_origin: Option<&HeaderValue>) -> Router {
    let mut router = Router::new()
        .route("/v1/models", get(handlers::list_models))
        .route("/v1/models/{id}", get(handlers::get_model))
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .fallback(handlers::route_not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
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
    router
}

async fn listen(router: Router, args: &ServeArgs, has_key: bool, queue: ModelQueue) -> Outcome {
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal(queue))
        .await
        .or_exit(ExitKind::Failure)?;
    eprintln!("impchat: server stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl+C or SIGTERM: stop the answer in progress, refuse queued requests, and let the
/// open streams finish.
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
