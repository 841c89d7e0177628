//! `lifecycled`: the control plane of the `lifecycle` PostgreSQL extension.
//!
//! The binary (`src/main.rs`) only parses the command line, installs
//! logging and calls [`run`] or a CLI command. Everything else lives here so
//! that tests build the exact same router with [`build_router`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod export;
pub mod links;
pub mod metrics;
pub mod middleware;
pub mod setup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod worker;

pub use config::{Config, LogFormat};
pub use error::{ApiError, ApiResult};
pub use state::AppState;

/// Header carrying the request id. Generated (UUID v4) when the client does
/// not send one, and echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How often the metrics registry is tidied between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The complete HTTP application: routes, `/openapi.json`, and the
/// middleware (outermost first): request ids, request tracing,
/// `nosniff`, metrics, `no-store` on API answers, compression, streamed
/// bodies fused, JSON error bodies, panic-to-500, request timeout, body
/// size limit.
pub fn build_router(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::RequestSpan)
                .on_request(())
                .on_response(telemetry::LogResponse)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));

    // Make sure the registry exists before the first request is counted.
    metrics::handle();
    // Each `layer` wraps the ones before it: the last is the outermost.
    api::router_with_document()
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_timeout,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::map_response(middleware::fuse_streams))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::map_response(middleware::no_store))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(outer)
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` completes, then finish the
/// in-flight requests and return. Handlers see the peer address through
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Refuse to serve as a superuser: the extension's grants would protect
/// nothing, and one leaked admin token could do anything a DBA can. Checked
/// in every database that answers at startup (one that is down is checked
/// by `/readyz` once it is up).
async fn check_roles(state: &AppState) -> anyhow::Result<()> {
    for db in state.dbs.iter() {
        let client = match db.client().await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(database = %db.name, error = %err, "database not reachable at startup; /readyz reports 503 until it is");
                continue;
            }
        };
        let row = client
            .query_one(
                "SELECT current_user::text, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?;
        let (user, superuser): (String, bool) = (row.get(0), row.get(1));
        if superuser && !state.config.allow_superuser {
            anyhow::bail!(
                "database {:?}: connected as the superuser {user:?}; connect as the service role that `lifecycled setup` creates (or pass --allow-superuser for a local experiment)",
                db.name
            );
        }
        if superuser {
            tracing::warn!(database = %db.name, user, "SERVING AS A SUPERUSER (--allow-superuser): the extension's grants protect nothing");
        }
        tracing::info!(database = %db.name, user, "database reachable");
    }
    Ok(())
}

/// Run the server described by `config` (and, unless `--no-worker`, the
/// worker on every database) until SIGINT or SIGTERM: then stop accepting,
/// answer the requests in flight, shut the worker down, close the pools.
pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        ?config,
        version = env!("CARGO_PKG_VERSION"),
        "starting lifecycled"
    );
    let state = AppState::new(config)?;
    check_roles(&state).await?;
    if state.config.subject_token_secret.is_none() {
        tracing::warn!("no --subject-token-secret: every subject token is refused");
    }
    tokio::spawn(metrics::upkeep(METRICS_UPKEEP));

    let listener = TcpListener::bind(state.config.listen)
        .await
        .with_context(|| format!("could not listen on {}", state.config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let worker = if state.config.no_worker {
        None
    } else {
        // The worker builds exports into the same store the API serves
        // them from, and copies stored files from the application's store.
        let exports = worker::Exports::from_args(&state.config.storage)?;
        Some(worker::spawn_with_exports(
            state.dbs.clone(),
            state.config.worker.clone(),
            exports,
        ))
    };

    let served = serve(listener, build_router(state.clone()), shutdown_signal())
        .await
        .context("HTTP server failed");
    // The requests in flight are answered; now the worker finishes or hands
    // back its jobs, whether the server stopped on a signal or failed.
    if let Some(worker) = worker {
        worker.shutdown().await;
    }
    served?;

    state.dbs.close();
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
