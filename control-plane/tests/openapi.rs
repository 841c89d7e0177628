//! The OpenAPI document: what it declares, that every route in it is
//! served, and that real answers of every route conform to it.

mod common;

use axum::http::{header, Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, TestService};
use serde_json::{json, Value};

/// Every `(method, path template, operation)` of the document.
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                found.push((method, path.clone(), op.clone()));
            }
        }
    }
    found
}

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

fn secured(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|s| !s.is_empty())
}

#[tokio::test]
async fn the_document_declares_the_contract() {
    let doc = OpenApiDoc::load().await;
    let d = &doc.doc;
    assert!(
        d["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        d["openapi"]
    );
    assert_eq!(d["info"]["title"], "lifecycled");
    let schemes = &d["components"]["securitySchemes"];
    assert_eq!(schemes["admin_token"]["type"], "http");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(schemes["subject_token"]["scheme"], "bearer");
    assert_eq!(schemes["subject_token"]["bearerFormat"], "JWT");
    assert!(d["components"]["schemas"]["ErrorResponse"].is_object());

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/version",
        "/api/v1/whoami",
    ] {
        assert!(d["paths"][path]["get"].is_object(), "{path} is missing");
    }
    for (method, path, op) in operations(d) {
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("500"), "{method} {path}: no 500");
        assert!(responses.contains_key("503"), "{method} {path}: no 503");
        if path.starts_with("/api/") {
            assert!(
                secured(&op) || path == "/api/v1/version",
                "{method} {path} needs no token"
            );
        }
        if secured(&op) {
            for status in ["401", "429"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            let retry = &responses["429"]["headers"]["Retry-After"];
            assert!(
                retry.is_object(),
                "{method} {path}: 429 without Retry-After"
            );
        }
        if op["requestBody"].is_object() {
            for status in ["413", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_checker_catches_a_body_that_breaks_the_document() {
    let doc = OpenApiDoc::load().await;
    let schema = json!({"$ref": "#/components/schemas/ErrorResponse"});
    doc.validate(&schema, &json!({"error": {"code": "x", "message": "y"}}))
        .unwrap();
    for bad in [
        json!({"error": {"code": "x"}}),
        json!({"error": {"code": 1, "message": "y"}}),
        json!({"message": "y"}),
    ] {
        assert!(doc.validate(&schema, &bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn openapi_json_is_served_as_json() {
    let service = TestService::start("cp_openapi_served").await;
    let response = common::get(service.router(), "/openapi.json").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        response.body,
        serde_json::to_value(lifecycled::api::openapi()).unwrap()
    );
}

/// Every operation answers, with and without a token, something the
/// document lists and in the documented shape; none answers "no route".
#[tokio::test]
async fn every_route_answers_as_documented() {
    let service = TestService::start("cp_openapi_routes").await;
    let doc = OpenApiDoc::load().await;
    let admin = service.create_token("platform-admin", None).await;
    let subject = common::user_token("42", Some("acme"));
    let router = service.router();
    let mut checked = 0;
    for (method, template, op) in operations(&doc.doc) {
        let path = concrete(&template);
        let mut attempts = vec![request(method.clone(), &path)];
        if secured(&op) {
            attempts.push(request(method.clone(), &path).bearer(&admin));
            attempts.push(request(method.clone(), &path).bearer(&subject));
        }
        for attempt in attempts {
            let attempt = if op["requestBody"].is_object() {
                attempt.json(&json!({}))
            } else {
                attempt
            };
            let response = call(router.clone(), attempt).await;
            assert!(
                !(response.status == StatusCode::NOT_FOUND
                    && response.body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no route"))),
                "{method} {template} is documented but not routed"
            );
            assert_ne!(
                response.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template}"
            );
            assert!(
                !response.status.is_server_error() || template == "/readyz",
                "{method} {template}: {}",
                response.text()
            );
            doc.check(&method, &template, &response);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} answers checked");
}
