//! `lifecycled`: the control plane of the `lifecycle` PostgreSQL extension.
//!
//! The binary (`src/main.rs`) only parses the configuration, installs
//! logging and calls [`run`]. Everything else lives here so that tests can
//! build the exact same router with [`build_router`].

use std::any::Any;
use std::future::Future;

use anyhow::Context;
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod config;
pub mod db;
pub mod error;
pub mod routes;
pub mod state;
pub mod telemetry;

pub use config::{Config, LogFormat};
pub use error::{ApiError, ApiResult};
pub use state::AppState;

/// Header carrying the request id. Generated (UUID v4) when the client does
/// not send one, and echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The complete HTTP application: routes plus middleware (request ids,
/// request tracing, panic-to-500 conversion).
pub fn build_router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::RequestSpan)
                .on_request(())
                .on_response(telemetry::LogResponse)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(CatchPanicLayer::custom(panic_response));

    routes::router().layer(middleware).with_state(state)
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// Serve `router` on `listener` until `shutdown` completes, then finish the
/// in-flight requests and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Run the server described by `config` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        ?config,
        version = env!("CARGO_PKG_VERSION"),
        "starting lifecycled"
    );
    let state = AppState::new(config)?;

    match state.pool.get().await {
        Ok(_) => {
            tracing::info!(database = %state.config.redacted_database_url(), "database reachable")
        }
        Err(err) => tracing::warn!(
            database = %state.config.redacted_database_url(),
            error = %ApiError::from(err),
            "database not reachable at startup; /readyz will report 503 until it is"
        ),
    }

    let listener = TcpListener::bind(state.config.listen)
        .await
        .with_context(|| format!("could not listen on {}", state.config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    serve(listener, build_router(state.clone()), shutdown_signal())
        .await
        .context("HTTP server failed")?;

    state.pool.close();
    tracing::info!("shut down");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "could not listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn panics_become_internal_errors() {
        let response = panic_response(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = panic_response(Box::new(String::from("boom")));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
