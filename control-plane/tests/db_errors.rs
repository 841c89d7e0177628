//! `ApiError` built from errors raised by a real PostgreSQL server.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use lifecycle_tests::{Role, TestDb};
use lifecycled::ApiError;
use serde_json::json;

fn state_of(db: &TestDb) -> lifecycled::AppState {
    lifecycled::AppState::new(lifecycled::Config::with_database_url(
        db.url_for(&Role::Superuser),
    ))
    .unwrap()
}

/// Run `sql` (expected to fail) and convert the error.
async fn api_error_for(client: &tokio_postgres::Client, sql: &str) -> ApiError {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("statement should fail");
    ApiError::from(err)
}

/// Render the error as the HTTP response a handler would return.
async fn render(err: ApiError) -> (StatusCode, serde_json::Value) {
    let response = err.into_response();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn unmapped_sqlstate_is_a_500_with_hidden_message() {
    let db = TestDb::create_empty("cp_errors").await.unwrap();
    let state = state_of(&db);
    let client = state.dbs.primary_client().await.expect("pooled connection");

    let err = api_error_for(&client, "SELECT 1/0").await;
    assert_eq!(err.sqlstate(), Some("22012"));

    let (status, body) = render(err).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": {
            "code": "database_error",
            "message": "internal error",
            "sqlstate": "22012"
        }})
    );
}

#[tokio::test]
async fn extension_sqlstate_keeps_message_detail_and_hint() {
    let db = TestDb::create_empty("cp_errors").await.unwrap();
    let state = state_of(&db);
    let client = state.dbs.primary_client().await.expect("pooled connection");

    let err = api_error_for(
        &client,
        "DO $$BEGIN RAISE EXCEPTION 'held' USING ERRCODE = 'LC001', DETAIL = 'd', HINT = 'h'; END$$",
    )
    .await;
    assert_eq!(err.status(), StatusCode::CONFLICT);

    let (status, body) = render(err).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": {
            "code": "held_row_modification",
            "message": "held",
            "detail": "d",
            "hint": "h",
            "sqlstate": "LC001"
        }})
    );
}

#[tokio::test]
async fn every_extension_sqlstate_round_trips_through_the_server() {
    let db = TestDb::create_empty("cp_errors").await.unwrap();
    let client = db.connect_superuser().await.unwrap();

    for row in lifecycled::error::sqlstate_table() {
        let err = api_error_for(
            &client,
            &format!(
                "DO $$BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{}'; END$$",
                row.sqlstate
            ),
        )
        .await;
        assert_eq!(err.status(), row.status, "{}", row.sqlstate);
        assert_eq!(err.code(), row.code, "{}", row.sqlstate);
        assert_eq!(err.sqlstate(), Some(row.sqlstate));
        assert_eq!(err.message(), "boom");
        assert_eq!(err.detail(), None);
    }
}

#[tokio::test]
async fn standard_errors_raised_by_real_statements() {
    let db = TestDb::create_empty("cp_errors").await.unwrap();
    let client = db.connect_superuser().await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await
        .unwrap();

    let err = api_error_for(&client, "INSERT INTO t VALUES (1)").await;
    assert_eq!(err.status(), StatusCode::CONFLICT);
    assert_eq!(err.code(), "unique_violation");
    assert_eq!(err.detail(), Some("Key (id)=(1) already exists."));

    let err = api_error_for(&client, "SELECT * FROM missing_table").await;
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.code(), "undefined_table");

    let err = api_error_for(&client, "SELECT missing_column FROM t").await;
    assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err.code(), "undefined_column");

    let err = api_error_for(&client, "SELECT 'abc'::int").await;
    assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err.code(), "invalid_text_representation");

    let err = api_error_for(
        &client,
        "SET statement_timeout = '20ms'; SELECT pg_sleep(2)",
    )
    .await;
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.code(), "query_canceled");
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
}

#[tokio::test]
async fn terminated_connection_is_a_503() {
    let db = TestDb::create_empty("cp_errors").await.unwrap();
    let client = db.connect_superuser().await.unwrap();

    // The server terminates its own backend: 57P01 on this statement, and
    // the connection is closed afterwards.
    let err = api_error_for(&client, "SELECT pg_terminate_backend(pg_backend_pid())").await;
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(err.sqlstate(), Some("57P01"));

    let err = client.simple_query("SELECT 1").await.expect_err("closed");
    let err = ApiError::from(err);
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.code(), "database_unavailable");
}
