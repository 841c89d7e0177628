//! Prometheus metrics: the process-wide registry, the HTTP middleware that
//! counts requests by route template and status, and `GET /metrics`.
//!
//! Other modules record through the `metrics` crate's macros with the names
//! below (`metrics::counter!(metrics::WORKER_RUNS, "database" => db, ...)`);
//! whatever they record appears in `/metrics`. The names and their labels
//! are listed in `docs/control-plane.md`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, `route` (the template, such as
/// `/api/v1/jobs/{id}`; `unmatched` for unknown paths) and `status`.
pub const HTTP_REQUESTS: &str = "lifecycled_http_requests_total";
/// Time to answer, in seconds, by `method` and `route`.
pub const HTTP_REQUEST_DURATION: &str = "lifecycled_http_request_duration_seconds";
/// Jobs the worker ran, by `database`, `job_type` and `outcome`
/// (`completed`, `failed`, `blocked`, `released`).
pub const WORKER_RUNS: &str = "lifecycled_worker_runs_total";
/// Worker errors outside a job's own failure (claiming, renewing a lease,
/// losing a database), by `database`.
pub const WORKER_FAILURES: &str = "lifecycled_worker_failures_total";
/// Jobs claimed after another worker's lease expired, by `database`.
pub const LEASE_TAKEOVERS: &str = "lifecycled_lease_takeovers_total";
/// Jobs, by `database`, `status` and `job_type` (a gauge set at each scrape
/// or by the worker).
pub const JOBS: &str = "lifecycled_jobs";
/// Age in seconds of the oldest job that is due and not finished, by `database`.
pub const OLDEST_DUE_JOB_AGE: &str = "lifecycled_oldest_due_job_age_seconds";

/// Histogram buckets of request durations: 1 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide registry, installed as the `metrics` crate's global
/// recorder on first use (tests build many routers in one process; they
/// share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows nothing");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route template"
    );
    metrics::describe_counter!(
        WORKER_RUNS,
        "Jobs the worker ran, by database, job type and outcome"
    );
    metrics::describe_counter!(
        WORKER_FAILURES,
        "Worker errors outside a job's own failure, by database"
    );
    metrics::describe_counter!(
        LEASE_TAKEOVERS,
        "Jobs claimed after another worker's lease expired, by database"
    );
    metrics::describe_gauge!(JOBS, "Jobs by database, status and type");
    metrics::describe_gauge!(
        OLDEST_DUE_JOB_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest due job that is not finished, by database"
    );
}

/// Keep the registry's histograms bounded between scrapes (a task that
/// `run` starts; it ends with the process).
pub async fn upkeep(every: Duration) {
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        handle().run_upkeep();
    }
}

/// Middleware: count every request by route template and status, and time it.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// `GET /metrics`: the registry in Prometheus text format. No token: serve
/// it on an internal address.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn metrics_endpoint() -> Response {
    let mut response = handle().render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
    );
    response
}
