//! `GET /api/v1/erasure-preview` against the demo schema: the typed answer
//! is the extension's preview field for field, last-admin workspaces and
//! holds show up before anything is requested, nothing changes, tenant
//! admins preview only within their tenant, and bad input is a clear 4xx.

mod common;
mod tenants;
mod worker_support;

use axum::http::{Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, TestService};
use lifecycled::config::DatabaseSpec;
use lifecycled::{build_router, AppState};
use serde_json::{json, Value};
use tenants::Tenants;

const PREVIEW: &str = "/api/v1/erasure-preview";

fn preview_of(target_type: &str, target_id: &str) -> String {
    format!("{PREVIEW}?target_type={target_type}&target_id={target_id}")
}

/// What the extension itself answers.
async fn raw_preview(t: &Tenants, target_type: &str, target_id: &str) -> Value {
    t.superuser()
        .await
        .query_one(
            "SELECT lifecycle.preview_erasure($1, $2)",
            &[&target_type, &target_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// The API's answer without the database, as the extension would write it.
fn without_database(mut preview: Value) -> Value {
    preview.as_object_mut().unwrap().remove("database");
    preview
}

#[tokio::test]
async fn the_preview_is_the_extensions_own_typed_and_changes_nothing() {
    let t = Tenants::start("cp_preview").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    // The person B is the last admin of B's workspace, under a hold.
    c.execute(
        "UPDATE app.memberships SET role = 'member' \
          WHERE workspace_id = $1::text::uuid AND user_id <> $2 AND role IN ('owner', 'admin')",
        &[&t.b.id, &t.b.user],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE app.memberships SET role = 'owner' WHERE workspace_id = $1::text::uuid AND user_id = $2",
        &[&t.b.id, &t.b.user],
    )
    .await
    .unwrap();
    let hold = t
        .hold_in_sql("user", &t.b.user.to_string(), Some(&t.b.id))
        .await;
    let before = t.snapshot().await;

    for (target_type, target_id) in [
        ("user", t.a.user.to_string()),
        ("user", t.b.user.to_string()),
        ("tenant", t.a.id.clone()),
        ("user", "999999".to_owned()),
    ] {
        let response = t
            .get(&preview_of(target_type, &target_id), &t.platform)
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{target_id}: {}",
            response.text()
        );
        doc.check(&Method::GET, PREVIEW, &response);
        assert_eq!(response.body["database"], "default");
        assert_eq!(
            without_database(response.body.clone()),
            raw_preview(&t, target_type, &target_id).await,
            "the typed preview drops or changes nothing"
        );
    }
    let a = t
        .get(&preview_of("user", &t.a.user.to_string()), &t.platform)
        .await;
    assert_eq!(a.body["would_run"], true, "{}", a.text());
    assert!(!a.body["steps"].as_array().unwrap().is_empty());
    let b = t
        .get(&preview_of("user", &t.b.user.to_string()), &t.platform)
        .await;
    assert_eq!(b.body["would_run"], false);
    assert_eq!(b.body["last_admin_workspaces"], json!([t.b.id]));
    assert_eq!(b.body["holds"][0]["hold_id"], hold);
    assert_eq!(b.body["holds"][0]["reason"], "fixture hold");
    let nobody = t.get(&preview_of("user", "999999"), &t.platform).await;
    assert_eq!(nobody.body["target"]["exists"], false);
    assert_eq!(nobody.body["would_run"], false);

    // What the preview says stops the request stops it: the last admin.
    let refused = t
        .post(
            "/api/v1/jobs",
            &t.platform,
            &json!({"type": "erase", "target_type": "user", "target_id": t.b.user.to_string(), "tenant_id": t.b.id}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    assert_eq!(refused.code(), "last_admin");
    assert!(
        refused.body["error"]["detail"]
            .as_str()
            .unwrap()
            .contains(&t.b.id),
        "{}",
        refused.text()
    );
    assert_eq!(
        t.snapshot().await,
        before,
        "previews and the refusal changed nothing"
    );

    // With a decision for the workspace, the request goes through.
    let decided = t
        .post(
            "/api/v1/jobs",
            &t.platform,
            &json!({"type": "erase", "target_type": "user", "target_id": t.b.user.to_string(),
                    "tenant_id": t.b.id, "workspaces": {(t.b.id.clone()): "erase"}}),
        )
        .await;
    assert_eq!(decided.status, StatusCode::CREATED, "{}", decided.text());
}

#[tokio::test]
async fn tenant_admins_preview_within_their_tenant_only() {
    let t = Tenants::start("cp_preview_isolation").await;
    let doc = OpenApiDoc::load().await;
    let a_user = t.a.user.to_string();
    for caller in t.callers() {
        let who = caller.who;
        for (tenant, expected) in [(&t.a.id, caller.sees_a), (&t.b.id, caller.sees_b)] {
            // The workspace itself, and a person in the workspace's name.
            for (uri, expected) in [
                (preview_of("tenant", tenant), expected),
                (
                    format!("{}&tenant_id={tenant}", preview_of("user", &a_user)),
                    // A tenant admin reaches only members of their
                    // workspace: the person of A is no one to admin B.
                    if who == "admin B" {
                        StatusCode::NOT_FOUND
                    } else {
                        expected
                    },
                ),
            ] {
                let response = t.get_as(&uri, caller.token).await;
                assert_eq!(
                    response.status,
                    expected,
                    "{who} {uri}: {}",
                    response.text()
                );
                doc.check(&Method::GET, PREVIEW, &response);
            }
        }
    }
    // Without a tenant, a tenant admin previews in their own.
    let own = t.get(&preview_of("user", &a_user), &t.a.admin).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert_eq!(own.body["tenant_id"], t.a.id);
}

#[tokio::test]
async fn bad_preview_input_is_a_clear_4xx() {
    let t = Tenants::start("cp_preview_input").await;
    let doc = OpenApiDoc::load().await;
    let before = t.snapshot().await;
    for (uri, status, code) in [
        (
            PREVIEW.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            format!("{PREVIEW}?target_type=user"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            preview_of("robot", "1"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_target_type",
        ),
        // Not a value of the key's type: the database says so.
        (
            preview_of("user", "%27%3B%20DROP%20TABLE%20app.users%3B%20--"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text_representation",
        ),
        (
            format!("{}&database=nowhere", preview_of("user", "1")),
            StatusCode::NOT_FOUND,
            "unknown_database",
        ),
    ] {
        let response = t.get(&uri, &t.platform).await;
        assert_eq!(response.status, status, "{uri}: {}", response.text());
        assert_eq!(response.code(), code, "{uri}");
        doc.check(&Method::GET, PREVIEW, &response);
    }
    assert_eq!(t.snapshot().await, before);
}

#[tokio::test]
async fn with_several_databases_the_tenant_or_the_caller_picks_one() {
    let t = Tenants::start("cp_preview_multi").await;
    let doc = OpenApiDoc::load().await;
    let other = TestService::start("cp_preview_multi2").await;
    common::setup(&other.db, &t.service.service, false).await;
    let mut config = t.service.config();
    config.db.databases = vec![
        DatabaseSpec {
            name: "eu".into(),
            url: t.service.service_url(),
        },
        DatabaseSpec {
            name: "us".into(),
            url: other.db.url_for(&t.service.service),
        },
    ];
    let router = build_router(AppState::new(config).unwrap());
    let get = |uri: String| {
        call(
            router.clone(),
            request(Method::GET, &uri).bearer(&t.platform),
        )
    };

    let by_tenant = get(format!(
        "{}&tenant_id={}",
        preview_of("user", &t.a.user.to_string()),
        t.a.id
    ))
    .await;
    assert_eq!(by_tenant.status, StatusCode::OK, "{}", by_tenant.text());
    assert_eq!(by_tenant.body["database"], "eu");
    doc.check(&Method::GET, PREVIEW, &by_tenant);
    let named = get(format!(
        "{}&database=eu",
        preview_of("user", &t.a.user.to_string())
    ))
    .await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.text());
    let undecided = get(preview_of("user", &t.a.user.to_string())).await;
    assert_eq!(
        undecided.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        undecided.text()
    );
    assert_eq!(undecided.code(), "database_required");
    doc.check(&Method::GET, PREVIEW, &undecided);
    // The second database has no data map: the extension says so.
    let empty = get(format!("{}&database=us", preview_of("user", "1"))).await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text()
    );
    doc.check(&Method::GET, PREVIEW, &empty);
}
