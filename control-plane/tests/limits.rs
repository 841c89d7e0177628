//! The limits every route shares, through the real router and database:
//! a database that goes away and comes back, one that hangs, a request
//! that takes too long.

mod common;

use axum::http::{header, Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::proxy::Proxy;
use common::{get_as, TestService};

const WHOAMI: &str = "/api/v1/whoami";

#[tokio::test]
async fn a_database_that_goes_away_is_503_with_retry_after_and_comes_back() {
    let service = TestService::start("cp_limits_down").await;
    let doc = OpenApiDoc::load().await;
    let token = service.create_token("platform-admin", None).await;
    let proxy = Proxy::in_front_of(&service.service_url()).await;
    let mut config = service.config();
    config.db.database_url = proxy.url(&service.service_url());
    config.db.db_timeout_secs = 2;
    let router = lifecycled::build_router(lifecycled::AppState::new(config).unwrap());

    let response = get_as(router.clone(), WHOAMI, &token).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());

    proxy.cut();
    for _ in 0..2 {
        let response = get_as(router.clone(), WHOAMI, &token).await;
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            response.text()
        );
        assert_eq!(response.code(), "database_unavailable");
        assert_eq!(response.headers[header::RETRY_AFTER], "1");
        // Nothing of the connection failure is shown.
        let text = response.text();
        assert!(
            !text.contains("127.0.0.1") && !text.contains(&service.db.name),
            "{text}"
        );
        doc.check(&Method::GET, WHOAMI, &response);
    }
    let response = common::get(router.clone(), "/readyz").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    doc.check(&Method::GET, "/readyz", &response);

    proxy.restore().await;
    // The pool may hold a connection that died with the cut: the first
    // request after the return may still see it, the next ones may not.
    let mut last = None;
    for _ in 0..3 {
        let response = get_as(router.clone(), WHOAMI, &token).await;
        last = Some(response.status);
        if response.status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        last,
        Some(StatusCode::OK),
        "the service recovers without a restart"
    );
    let response = common::get(router.clone(), "/readyz").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn a_database_that_hangs_fails_fast_and_a_slow_request_is_cut() {
    let service = TestService::start("cp_limits_stall").await;
    let doc = OpenApiDoc::load().await;
    let token = service.create_token("platform-admin", None).await;
    let proxy = Proxy::in_front_of(&service.service_url()).await;
    proxy.stall().await;

    // Connecting gives up after --db-timeout-secs: 503, not a hang.
    let mut config = service.config();
    config.db.database_url = proxy.url(&service.service_url());
    config.db.db_timeout_secs = 1;
    let router = lifecycled::build_router(lifecycled::AppState::new(config.clone()).unwrap());
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        get_as(router, WHOAMI, &token),
    )
    .await
    .expect("the request ends");
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.code(), "database_unavailable");
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    doc.check(&Method::GET, WHOAMI, &response);

    // With a database timeout longer than the request's, the request's
    // own timeout answers first.
    config.db.db_timeout_secs = 30;
    config.request_timeout_secs = 1;
    let router = lifecycled::build_router(lifecycled::AppState::new(config).unwrap());
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        get_as(router, WHOAMI, &token),
    )
    .await
    .expect("the request ends");
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.code(), "request_timeout");
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    doc.check(&Method::GET, WHOAMI, &response);
}
