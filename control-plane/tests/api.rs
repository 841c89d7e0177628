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
    assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let response = get(build_router(offline_state()), "/healthz").await;
    assert!(!response.headers.contains_key(header::CACHE_CONTROL));
    assert_eq!(response.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
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

#[tokio::test]
async fn readyz_fails_when_a_guard_is_not_enabled_always() {
    let service = TestService::start("cp_ready_guard").await;
    assert_eq!(
        get(service.router(), "/readyz").await.status,
        StatusCode::OK
    );
    // A superuser turns the job state machine's trigger into an ordinary
    // one (it no longer fires under session_replication_role = replica).
    service
        .superuser()
        .await
        .batch_execute("ALTER TABLE lifecycle.jobs ENABLE TRIGGER jobs_state_machine")
        .await
        .unwrap();
    let response = get(service.router(), "/readyz").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.code(), "not_ready");
    let problems = response.body["databases"][0]["problems"].to_string();
    assert!(
        problems.contains("jobs_state_machine") && problems.contains("not enable always"),
        "{problems}"
    );
    let message = response.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("database \"default\""), "{message}");
}

#[tokio::test]
async fn readyz_fails_before_setup_and_names_it() {
    let mut db = TestDb::create("cp_ready_nosetup").await.unwrap();
    let service = db.create_role("svc").await.unwrap();
    // The role exists but `lifecycled setup` never ran here.
    let mut config = Config::with_database_url(db.url_for(&Role::Superuser));
    config.allow_superuser = true;
    let response = get(build_router(AppState::new(config).unwrap()), "/readyz").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let problems = response.body["databases"][0]["problems"].to_string();
    assert!(problems.contains("lifecycled setup"), "{problems}");

    common::setup(&db, &service, true).await;
    let response = get(
        build_router(AppState::new(Config::with_database_url(db.url_for(&service))).unwrap()),
        "/readyz",
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

#[tokio::test]
async fn request_context_lasts_as_long_as_the_transaction() {
    let service = TestService::start("cp_context").await;
    let state = service.state();
    let mut client = state.dbs.primary_client().await.unwrap();
    let context = lifecycled::api::RequestContext {
        request_id: "r-1".into(),
        ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("Mozilla/5.0 (test)".into()),
    };
    let read = "SELECT current_setting('lifecycle.request_ip', true), \
                       current_setting('lifecycle.request_user_agent', true)";
    let tx = client.transaction().await.unwrap();
    context.apply(&*tx).await.unwrap();
    let row = tx.query_one(read, &[]).await.unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("Mozilla/5.0 (test)")
    );
    tx.commit().await.unwrap();
    // The pooled connection carries nothing into the next request.
    let row = client.query_one(read, &[]).await.unwrap();
    assert_ne!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("203.0.113.9")
    );
    assert_ne!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("Mozilla/5.0 (test)")
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    // Gauges are process-wide: this test's database has a name of its own.
    let mut config = Config::default();
    config.db.databases = vec![format!("offline={CLOSED_PORT_URL}").parse().unwrap()];
    config.db.db_timeout_secs = 1;
    let router = build_router(AppState::new(config).unwrap());
    for _ in 0..3 {
        get(router.clone(), "/api/v1/version").await;
    }
    get(router.clone(), "/no/such/path").await;
    let response = call(router.clone(), request(Method::GET, "/metrics")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("lifecycled_http_requests_total{")
                && l.contains("route=\"/api/v1/version\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter for /api/v1/version:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(
        text.contains("route=\"unmatched\""),
        "unknown paths are counted under one label:\n{text}"
    );
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
    assert!(
        text.contains("lifecycled_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // The database of this state is down: its gauge says so.
    assert!(
        text.contains("lifecycled_database_up{database=\"offline\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn several_databases_answer_apart_and_one_down_stops_nobody() {
    let eu = TestService::start("cp_multi_eu").await;
    let us_db = TestDb::create("cp_multi_us").await.unwrap();
    // One service role for both (roles are cluster-wide): setup in the
    // second database as a secondary (no control-plane tables there).
    common::setup(&us_db, &eu.service, false).await;

    let mut config = eu.config();
    config.db.databases = vec![
        format!("eu={}", eu.service_url()).parse().unwrap(),
        format!("us={}", us_db.url_for(&eu.service))
            .parse()
            .unwrap(),
        "asia=postgres://nobody:x@127.0.0.1:1/none".parse().unwrap(),
    ];
    config.db.db_timeout_secs = 1;
    let state = AppState::new(config).unwrap();
    assert_eq!(state.dbs.names().collect::<Vec<_>>(), ["eu", "us", "asia"]);
    assert_eq!(&*state.dbs.primary().name, "eu");

    // The fan-out asks all three at once and keeps their order.
    let answers = state
        .dbs
        .fan_out(|name, client| async move {
            let row = client
                .query_one("SELECT current_database()::text", &[])
                .await?;
            Ok((name.to_string(), row.get::<_, String>(0)))
        })
        .await;
    let (values, failed) = lifecycled::db::partition(answers);
    let values: Vec<(String, String)> = values.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [
            ("eu".to_owned(), eu.db.name.clone()),
            ("us".to_owned(), us_db.name.clone())
        ]
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].database, "asia");
    assert_eq!(failed[0].error.code, "database_unavailable");

    let err = state.dbs.client("atlantis").await.err().unwrap();
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.code(), "unknown_database");

    // Readiness names the one that is down and says the others are fine.
    let response = get(build_router(state), "/readyz").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let databases = response.body["databases"].as_array().unwrap();
    let ready: Vec<(&str, bool)> = databases
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["ready"].as_bool().unwrap()))
        .collect();
    assert_eq!(ready, [("eu", true), ("us", true), ("asia", false)]);
    let message = response.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"asia\"") && !message.contains("\"eu\""),
        "{message}"
    );
}

#[tokio::test]
async fn metrics_read_the_job_counts_of_every_database() {
    let service = TestService::start("cp_metrics_jobs").await;
    let admin = service.superuser().await;
    admin
        .batch_execute(
            "CREATE TABLE people (id bigint PRIMARY KEY);
             SELECT lifecycle.register_subject('people', 'id');
             INSERT INTO people VALUES (1), (2);
             SELECT lifecycle.request_export('user', '1', NULL, 'dpo', requires_approval => false);
             SELECT lifecycle.request_export('user', '2', NULL, 'dpo', requires_approval => false);",
        )
        .await
        .unwrap();
    // Gauges are process-wide: this test's database has a name of its own.
    let mut config = service.config();
    config.db.databases = vec![format!("jobs={}", service.service_url()).parse().unwrap()];
    let response = get(build_router(AppState::new(config).unwrap()), "/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    let text = response.text();
    assert!(
        text.contains("lifecycled_database_up{database=\"jobs\"} 1"),
        "{text}"
    );
    // Every count the extension keeps is in the scrape, as it is.
    let counts = admin
        .query(
            "SELECT status, job_type, jobs FROM lifecycle.job_stats()",
            &[],
        )
        .await
        .unwrap();
    let mut total = 0;
    for row in counts {
        let (status, job_type, jobs): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let line = format!(
            "lifecycled_jobs{{database=\"jobs\",status=\"{status}\",job_type=\"{job_type}\"}} {jobs}"
        );
        assert!(text.contains(&line), "{line} missing:\n{text}");
        total += jobs;
    }
    assert_eq!(total, 2);
    assert!(
        text.contains("lifecycled_oldest_due_job_age_seconds{"),
        "{text}"
    );
}
