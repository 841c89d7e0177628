//! The router, called in-process with `tower::ServiceExt::oneshot`, against
//! a real PostgreSQL cluster: the routes every deployment has (health,
//! readiness, version, fallbacks) and the shape of their answers.

mod common;

use axum::http::{header, Method, StatusCode};
use common::{call, get, request, TestService};
use lifecycle_tests::{Role, TestDb};
use lifecycled::{build_router, AppState, Config};
use serde_json::json;

/// A database URL nobody listens on.
const CLOSED_PORT_URL: &str = "postgres://lifecycle_admin:lifecycle@127.0.0.1:1/none";

/// State for routes that never touch the database (the pools are lazy).
fn offline_state() -> AppState {
    let mut config = Config::with_database_url(CLOSED_PORT_URL);
    config.db.db_timeout_secs = 1;
    AppState::new(config).unwrap()
}

#[tokio::test]
async fn healthz_is_ok_without_database() {
    let response = get(build_router(offline_state()), "/healthz").await;
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
async fn wrong_method_is_a_json_405_with_allow() {
    let response = call(
        build_router(offline_state()),
        request(Method::POST, "/healthz"),
    )
    .await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.code(), "method_not_allowed");
    assert!(
        response.headers[header::ALLOW]
            .to_str()
            .unwrap()
            .contains("GET"),
        "{:?}",
        response.headers
    );
}

#[tokio::test]
async fn request_id_from_client_is_echoed() {
    let response = call(
        build_router(offline_state()),
        request(Method::GET, "/healthz").header(lifecycled::REQUEST_ID_HEADER, "req-123"),
    )
    .await;
    assert_eq!(response.headers[lifecycled::REQUEST_ID_HEADER], "req-123");
}

#[tokio::test]
async fn readyz_is_200_for_a_prepared_database_as_the_service_role() {
    let service = TestService::start("cp_ready").await;
    let response = get(service.router(), "/readyz").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["status"], "ready");
    let db = &response.body["databases"][0];
    assert_eq!(db["name"], "default");
    assert_eq!(db["ready"], true);
    assert_eq!(db["database"], service.db.name.as_str());
    assert_eq!(db["extension_version"], "0.1.0");
    assert!(db["server_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("15")));
    assert_eq!(db["problems"], json!([]));
}

#[tokio::test]
async fn readyz_fails_as_a_superuser_unless_allowed() {
    let service = TestService::start("cp_ready_su").await;
    let mut config = service.config();
    config.db.database_url = service.admin_url();
    let response = get(
        build_router(AppState::new(config.clone()).unwrap()),
        "/readyz",
    )
    .await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let problems = response.body["databases"][0]["problems"].to_string();
    assert!(problems.contains("superuser"), "{problems}");

    config.allow_superuser = true;
    let response = get(build_router(AppState::new(config).unwrap()), "/readyz").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

#[tokio::test]
async fn readyz_is_503_when_extension_is_not_installed() {
    let db = TestDb::create_empty("cp_ready_noext").await.unwrap();
    let mut config = Config::with_database_url(db.url_for(&Role::Superuser));
    config.allow_superuser = true;
    let response = get(build_router(AppState::new(config).unwrap()), "/readyz").await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    assert_eq!(response.code(), "not_ready");
    let message = response.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("database \"default\""), "{message}");
    assert!(message.contains("CREATE EXTENSION lifecycle"), "{message}");
    assert_eq!(response.body["databases"][0]["ready"], false);
}

#[tokio::test]
async fn readyz_is_503_when_database_does_not_exist() {
    let db = TestDb::create_empty("cp_ready_missing").await.unwrap();
    let url = db.url_for(&Role::Superuser);
    db.cleanup().await.unwrap();
    let response = get(
        build_router(AppState::new(Config::with_database_url(url)).unwrap()),
        "/readyz",
    )
    .await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.code(), "not_ready");
    assert_eq!(
        response.body["databases"][0]["problems"],
        json!(["could not connect to the database"])
    );
}

#[tokio::test]
async fn readyz_is_503_when_server_is_unreachable() {
    let response = get(build_router(offline_state()), "/readyz").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    assert_eq!(response.body["databases"][0]["ready"], false);
}
