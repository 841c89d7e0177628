//! Logging setup and per-request tracing.

use std::io::IsTerminal;
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Install the global tracing subscriber. The level is read from `RUST_LOG`
/// (default `info`).
pub fn init_tracing(format: LogFormat) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("could not initialise logging: {err}"))
}

/// Creates the `http_request` span of each request, carrying the method,
/// path, matched route and request id: every log line of the request,
/// including errors logged by `ApiError`, carries them.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let request_id = request
            .headers()
            .get(crate::REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok());
        // `principal` is filled in by the auth extractors: the admin token's
        // id, or only "subject" (a subject id is personal data). No header
        // is logged, `Authorization` least of all.
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = %request.uri().path(),
            route,
            request_id,
            principal = tracing::field::Empty,
        )
    }
}

/// Logs one event per completed request with its status and latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        // Millisecond precision with microsecond resolution.
        let latency_ms = latency.as_micros() as f64 / 1000.0;
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request completed");
        } else {
            tracing::info!(status, latency_ms, "request completed");
        }
    }
}
