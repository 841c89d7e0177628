//! The limits every route shares, through the real router and database:
//! body size and content type, page size and cursors, unknown databases, a
//! database that goes away and comes back, one that hangs, a request that
//! takes too long. Routes are found in the OpenAPI document, so each check
//! covers every route it applies to, including routes added later.

mod common;

use axum::http::{header, Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::proxy::Proxy;
use common::{call, get_as, request, TestService};
use serde_json::{json, Value};

const WHOAMI: &str = "/api/v1/whoami";

/// `(method, path template)` of every operation with `pred`.
fn operations(
    doc: &OpenApiDoc,
    pred: impl Fn(&Method, &str, &Value) -> bool,
) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    for (path, item) in doc.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if pred(&method, path, op) {
                found.push((method, path.clone()));
            }
        }
    }
    found
}

/// The path with every `{param}` replaced by a syntactically valid value
/// that names nothing (a uuid fits every id of this API).
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str("00000000-0000-4000-8000-000000000000");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The token an operation takes: a subject's for `/me` routes (security
/// `subject_token`), the platform admin's for the others.
fn token_for<'a>(op: &Value, admin: &'a str, subject: &'a str) -> &'a str {
    let wants_subject = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("subject_token").is_some()));
    if wants_subject {
        subject
    } else {
        admin
    }
}

/// A registered subject `user` 42 (routes of subjects look them up) and
/// its token.
async fn subject_of(service: &TestService) -> String {
    service
        .superuser()
        .await
        .batch_execute(
            "CREATE TABLE people (id bigint PRIMARY KEY);
             SELECT lifecycle.register_subject('people', 'id', 'user');
             INSERT INTO people VALUES (42);",
        )
        .await
        .unwrap();
    common::user_token("42", None)
}

fn has_query_param(op: &Value, name: &str) -> bool {
    op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query" && p["name"] == name))
}

#[tokio::test]
async fn json_bodies_are_limited_in_size_and_content_type() {
    let service = TestService::start("cp_limits_body").await;
    let doc = OpenApiDoc::load().await;
    let token = service.create_token("platform-admin", None).await;
    let mut config = service.config();
    config.max_body_bytes = 1024;
    let router = lifecycled::build_router(lifecycled::AppState::new(config).unwrap());

    let subject = subject_of(&service).await;
    let with_body = operations(&doc, |_, _, op| {
        op["requestBody"]["content"]["application/json"].is_object()
    });
    assert!(!with_body.is_empty(), "no operation takes a JSON body");
    for (method, template) in with_body {
        let path = concrete(&template);
        let token = token_for(doc.operation(&method, &template), &token, &subject).to_owned();
        let before = table_sizes(&service).await;

        let big = json!({"reason": "x".repeat(4096)});
        let response = call(
            router.clone(),
            request(method.clone(), &path).bearer(&token).json(&big),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {template}: {}",
            response.text()
        );
        assert_eq!(response.code(), "payload_too_large");
        doc.check(&method, &template, &response);

        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut req = request(method.clone(), &path).bearer(&token).raw_body("{}");
            if let Some(content_type) = content_type {
                req = req.header("content-type", content_type);
            }
            let response = call(router.clone(), req).await;
            assert_eq!(
                response.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {template} with {content_type:?}: {}",
                response.text()
            );
            assert_eq!(response.code(), "unsupported_media_type");
            doc.check(&method, &template, &response);
        }

        let response = call(
            router.clone(),
            request(method.clone(), &path)
                .bearer(&token)
                .header("content-type", "application/json")
                .raw_body("{not json"),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{method} {template}"
        );
        assert_eq!(response.code(), "invalid_request_body");
        doc.check(&method, &template, &response);

        // Text PostgreSQL cannot store is refused before it gets there.
        let response = call(
            router.clone(),
            request(method.clone(), &path)
                .bearer(&token)
                .json(&json!({"reason": "a\u{0}b", "scope_id": "\u{0}"})),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{method} {template}: {}",
            response.text()
        );
        assert_eq!(response.code(), "invalid_request_body");
        doc.check(&method, &template, &response);

        assert_eq!(
            table_sizes(&service).await,
            before,
            "{method} {template} changed a table"
        );
    }
}

/// Rows of the tables a refused request must not touch.
async fn table_sizes(service: &TestService) -> Vec<i64> {
    let client = service.superuser().await;
    let mut sizes = Vec::new();
    for table in [
        "lifecycle.jobs",
        "lifecycle.legal_holds",
        "lifecycle.audit_log",
    ] {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        sizes.push(row.get(0));
    }
    sizes
}

#[tokio::test]
async fn lists_refuse_bad_limits_and_cursors() {
    let service = TestService::start("cp_limits_page").await;
    let doc = OpenApiDoc::load().await;
    let token = service.create_token("platform-admin", None).await;
    let lists = operations(&doc, |method, _, op| {
        *method == Method::GET && has_query_param(op, "cursor") && has_query_param(op, "limit")
    });
    assert!(!lists.is_empty(), "no list takes limit and cursor");
    let subject = subject_of(&service).await;
    let forged = lifecycled::api::pagination::encode_cursor(&json!({"not": "a position"}));
    for (method, template) in lists {
        let path = concrete(&template);
        let token = token_for(doc.operation(&method, &template), &token, &subject);
        for query in [
            "limit=0".to_owned(),
            "limit=501".to_owned(),
            "limit=-1".to_owned(),
            "limit=ten".to_owned(),
            "limit=99999999999999999999".to_owned(),
            "cursor=%21%21%21".to_owned(),
            "cursor=e30".to_owned(),
            format!("cursor={forged}"),
            format!("cursor={}", "A".repeat(2000)),
        ] {
            let response = get_as(service.router(), &format!("{path}?{query}"), token).await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{template}?{query}: {}",
                response.text()
            );
            doc.check(&method, &template, &response);
        }
        for limit in [1, 500] {
            let response = get_as(service.router(), &format!("{path}?limit={limit}"), token).await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{template}?limit={limit}: {}",
                response.text()
            );
            doc.check(&method, &template, &response);
        }
    }
}

/// A NUL character in any parameter is a 400, never a database error.
#[tokio::test]
async fn nul_characters_in_parameters_are_400() {
    let service = TestService::start("cp_limits_nul").await;
    let doc = OpenApiDoc::load().await;
    let admin = service.create_token("platform-admin", None).await;
    let subject = subject_of(&service).await;
    let with_params = operations(&doc, |_, _, op| {
        op["parameters"].as_array().is_some_and(|ps| !ps.is_empty())
    });
    assert!(!with_params.is_empty());
    for (method, template) in with_params {
        let op = doc.operation(&method, &template).clone();
        let token = token_for(&op, &admin, &subject);
        for param in op["parameters"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap();
            let target = match param["in"].as_str().unwrap() {
                "query" => format!("{}?{name}=a%00b", concrete(&template)),
                "path" => concrete(&template.replace(&format!("{{{name}}}"), "a%00b")),
                _ => continue,
            };
            let mut req = request(method.clone(), &target).bearer(token);
            if op["requestBody"].is_object() {
                req = req.json(&json!({}));
            }
            let response = call(service.router(), req).await;
            assert_eq!(
                response.status,
                StatusCode::BAD_REQUEST,
                "{method} {target}: {}",
                response.text()
            );
            doc.check(&method, &template, &response);
        }
    }
}

/// A new object goes to the database its body names: one that is not
/// configured is a 404, and nothing is written anywhere.
#[tokio::test]
async fn an_unknown_database_is_404() {
    let service = TestService::start("cp_limits_db").await;
    let doc = OpenApiDoc::load().await;
    let token = service.create_token("platform-admin", None).await;
    let before = table_sizes(&service).await;
    let body = json!({
        "scope_type": "tenant", "scope_id": "acme", "tenant_id": "acme",
        "reason": "litigation", "database": "atlantis"
    });
    let response = call(
        service.router(),
        request(Method::POST, "/api/v1/holds")
            .bearer(&token)
            .json(&body),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "{}",
        response.text()
    );
    assert_eq!(response.code(), "unknown_database");
    doc.check(&Method::POST, "/api/v1/holds", &response);
    assert_eq!(table_sizes(&service).await, before);
}

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
