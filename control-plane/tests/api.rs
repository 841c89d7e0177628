//! The router, called in-process with `tower::ServiceExt::oneshot`, against
//! a real PostgreSQL cluster.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{get, url_with_database, TestDatabase};
use lifecycled::{build_router, AppState, Config};
use serde_json::json;

/// State for routes that never touch the database (the pool is lazy).
fn offline_state() -> AppState {
    AppState::new(Config::with_database_url(common::admin_url())).unwrap()
}

#[tokio::test]
async fn healthz_is_ok_without_database() {
    // Points at a closed port: liveness must not depend on the database.
    let state = AppState::new(Config::with_database_url(
        "postgres://lifecycle_admin:lifecycle@127.0.0.1:1/none",
    ))
    .unwrap();
    let response = get(build_router(state), "/healthz").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, json!({"status": "ok"}));
    assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
    assert!(
        response.headers.contains_key(lifecycled::REQUEST_ID_HEADER),
        "a request id is generated"
    );
}

#[tokio::test]
async fn version_reports_crate_version() {
    let response = get(build_router(offline_state()), "/api/v1/version").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.body,
        json!({"name": "lifecycled", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let response = get(build_router(offline_state()), "/api/v1/nope").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(
        response.body,
        json!({"error": {"code": "not_found", "message": "no route for /api/v1/nope"}})
    );
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let response = common::call(
        build_router(offline_state()),
        Request::builder()
            .method(Method::POST)
            .uri("/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn request_id_from_client_is_echoed() {
    let response = common::call(
        build_router(offline_state()),
        Request::builder()
            .uri("/healthz")
            .header(lifecycled::REQUEST_ID_HEADER, "req-123")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.headers[lifecycled::REQUEST_ID_HEADER], "req-123");
}

#[tokio::test]
async fn readyz_is_200_with_the_extension_installed() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute("CREATE EXTENSION lifecycle")
        .await
        .expect("CREATE EXTENSION lifecycle (run scripts/setup.sh first)");
    let response = get(build_router(db.state()), "/readyz").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["status"], "ready");
    assert_eq!(response.body["database"], db.name.as_str());
    assert_eq!(response.body["extension_version"], "0.1.0");
    assert!(response.body["server_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("15")));
}

#[tokio::test]
async fn readyz_is_503_when_extension_is_not_installed() {
    let db = TestDatabase::create().await;
    let response = get(build_router(db.state()), "/readyz").await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    let error = &response.body["error"];
    assert_eq!(error["code"], "extension_not_installed");
    assert_eq!(
        error["message"],
        format!(
            "extension \"lifecycle\" is not installed in database \"{}\"",
            db.name
        )
    );
    assert!(error["hint"]
        .as_str()
        .unwrap()
        .contains("CREATE EXTENSION lifecycle"));
    assert!(error.get("sqlstate").is_none(), "{error}");
}

#[tokio::test]
async fn readyz_is_503_when_database_does_not_exist() {
    let missing = common::unique_database_name("lc_cp_missing");
    let url = url_with_database(&common::admin_url(), &missing);
    let state = AppState::new(Config::with_database_url(url)).unwrap();

    let response = get(build_router(state), "/readyz").await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = &response.body["error"];
    assert_eq!(error["code"], "database_unavailable");
    assert_eq!(error["message"], "could not connect to the database");
    assert_eq!(error["sqlstate"], "3D000");
    assert_eq!(
        error["detail"],
        format!("database \"{missing}\" does not exist")
    );
}

#[tokio::test]
async fn readyz_is_503_when_server_is_unreachable() {
    let state = AppState::new(Config::with_database_url(
        "postgres://lifecycle_admin:lifecycle@127.0.0.1:1/lifecycle_demo",
    ))
    .unwrap();

    let response = get(build_router(state), "/readyz").await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = &response.body["error"];
    assert_eq!(error["code"], "database_unavailable");
    assert!(error.get("sqlstate").is_none(), "{error}");
}
