//! Prometheus metrics: the process-wide registry, the HTTP middleware that
//! counts requests by route template and status, and `GET /metrics`.
//!
//! Other modules (the worker) record through the `metrics` crate's macros
//! with the names below; whatever they record appears in `/metrics`. Every
//! name and its labels are listed in `docs/control-plane.md`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Requests answered, by `method`, `route` (the template, such as
/// `/api/v1/jobs/{id}`; `unmatched` for unknown paths) and `status`.
pub const HTTP_REQUESTS: &str = "lifecycled_http_requests_total";
/// Time to answer, in seconds, by `method` and `route`.
pub const HTTP_REQUEST_DURATION: &str = "lifecycled_http_request_duration_seconds";
/// Jobs the worker ran (or handed back), by `database`, `job_type` and
/// `outcome`.
pub const WORKER_RUNS: &str = "lifecycled_worker_runs_total";
/// Failed calls of the worker to a database, by `database` and `part`
/// (`queue`, `notifications`, `run`, `lease`).
pub const WORKER_FAILURES: &str = "lifecycled_worker_failures_total";
/// Jobs claimed after another worker's lease expired, by `database` and
/// `job_type`.
pub const LEASE_TAKEOVERS: &str = "lifecycled_lease_takeovers_total";
/// Jobs, by `database`, `status` and `job_type`: read at each scrape from
/// the counts the extension keeps (`lifecycle.job_stats()`, no scan).
pub const JOBS: &str = "lifecycled_jobs";
/// How long the oldest due job has waited, in seconds, by `database` and
/// `job_type` (0 when none is due): read at each scrape.
pub const OLDEST_DUE_JOB_AGE: &str = "lifecycled_oldest_due_job_age_seconds";
/// Whether a database answered the last scrape (1) or not (0), by `database`.
pub const DATABASE_UP: &str = "lifecycled_database_up";

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
        "Jobs the worker ran or handed back, by database, job type and outcome"
    );
    metrics::describe_counter!(
        WORKER_FAILURES,
        "Failed calls of the worker to a database, by database and part"
    );
    metrics::describe_counter!(
        LEASE_TAKEOVERS,
        "Jobs claimed after another worker's lease expired, by database and job type"
    );
    metrics::describe_gauge!(JOBS, "Jobs by database, status and type");
    metrics::describe_gauge!(
        DATABASE_UP,
        "Whether the database answered the last scrape (1) or not (0)"
    );
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

/// Read the job gauges of every database (each within the database
/// timeout; one that does not answer is `lifecycled_database_up 0` and keeps
/// its last figures).
async fn collect_job_gauges(state: &AppState) {
    let answers = state.dbs.fan_out(|_, client| async move {
        let stats = client
            .query(
                "SELECT status, job_type, jobs FROM lifecycle.job_stats()",
                &[],
            )
            .await?;
        let oldest = client
            .query(
                "SELECT job_type, coalesce(age_seconds, 0) FROM lifecycle.oldest_due_jobs()",
                &[],
            )
            .await?;
        Ok((stats, oldest))
    });
    let answers = match tokio::time::timeout(state.config.db_timeout(), answers).await {
        Ok(answers) => answers,
        Err(_) => {
            tracing::warn!("job metrics timed out");
            return;
        }
    };
    for answer in answers {
        let database = answer.database.to_string();
        let Ok((stats, oldest)) = answer.result.inspect_err(|err| {
            tracing::debug!(database, error = %err, "no job metrics from this database");
        }) else {
            metrics::gauge!(DATABASE_UP, "database" => database).set(0.0);
            continue;
        };
        metrics::gauge!(DATABASE_UP, "database" => database.clone()).set(1.0);
        for row in stats {
            let (status, job_type, jobs): (String, String, i64) =
                (row.get(0), row.get(1), row.get(2));
            metrics::gauge!(JOBS, "database" => database.clone(), "status" => status, "job_type" => job_type)
                .set(jobs as f64);
        }
        for row in oldest {
            let (job_type, age): (String, f64) = (row.get(0), row.get(1));
            metrics::gauge!(OLDEST_DUE_JOB_AGE, "database" => database.clone(), "job_type" => job_type)
                .set(age);
        }
    }
}

/// `GET /metrics`: the registry in Prometheus text format, with the job
/// gauges read from every database first. No token: serve it on an
/// internal address.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    collect_job_gauges(&state).await;
    let mut response = handle().render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
    );
    response
}
