//! The jobs API against a real database with the demo schema: create,
//! approve, reject, cancel through the extension's rules (four eyes, the
//! state machine, duplicates), the job's page, the list and the counts,
//! tenant isolation for every jobs route, bad input that changes nothing,
//! and several databases (one list, one cursor, one down). Every answer is
//! checked against `/openapi.json`.

mod common;
mod tenants;
mod worker_support;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, TestResponse, TestService};
use lifecycled::config::DatabaseSpec;
use lifecycled::{build_router, AppState};
use serde_json::{json, Value};
use tenants::Tenants;

const JOBS: &str = "/api/v1/jobs";
const JOB: &str = "/api/v1/jobs/{id}";
const STATS: &str = "/api/v1/jobs/stats";
const APPROVE: &str = "/api/v1/jobs/{id}/approve";
const REJECT: &str = "/api/v1/jobs/{id}/reject";
const CANCEL: &str = "/api/v1/jobs/{id}/cancel";

fn path(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

fn erase(user: i64, tenant: &str) -> Value {
    json!({"type": "erase", "target_type": "user", "target_id": user.to_string(),
           "tenant_id": tenant, "reason": "GDPR Art. 17, ticket 991"})
}

fn export(user: i64, tenant: &str) -> Value {
    json!({"type": "export", "target_type": "user", "target_id": user.to_string(),
           "tenant_id": tenant})
}

/// The ids of the jobs of a list answer.
fn ids(response: &TestResponse) -> BTreeSet<String> {
    response.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", response.text()))
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Post `body` to `/api/v1/jobs` as `token`, expecting 201; the job.
async fn create(t: &Tenants, doc: &OpenApiDoc, token: &str, body: Value) -> Value {
    let response = t.post(JOBS, token, &body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    doc.check(&Method::POST, JOBS, &response);
    response.body
}

#[tokio::test]
async fn jobs_go_through_the_extensions_state_machine_and_four_eyes() {
    let t = Tenants::start("cp_jobs_flow").await;
    let doc = OpenApiDoc::load().await;
    let (_, approver) = t
        .service
        .create_named_token("second-admin", "platform-admin", None)
        .await;

    // Created by the platform admin: pending, requested by the token's name.
    let job = create(&t, &doc, &t.platform, {
        let mut body = erase(t.a.user, &t.a.id);
        body["cooling_off"] = json!("P30D");
        body["jurisdiction"] = json!("ccpa");
        body
    })
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["status"], "pending");
    assert_eq!(job["type"], "erase");
    assert_eq!(job["requested_by"], t.platform_name);
    assert_eq!(job["database"], "default");
    assert_eq!(job["tenant_id"], t.a.id);
    assert_eq!(job["jurisdiction"], "ccpa");
    let at =
        |field: &str| chrono::DateTime::parse_from_rfc3339(job[field].as_str().unwrap()).unwrap();
    assert_eq!((at("scheduled_for") - at("requested_at")).num_days(), 30);
    assert_eq!((at("due_at") - at("requested_at")).num_days(), 45);

    // A second open erasure of the same person: the database refuses it.
    let duplicate = t.post(JOBS, &t.platform, &erase(t.a.user, &t.a.id)).await;
    assert_eq!(
        duplicate.status,
        StatusCode::CONFLICT,
        "{}",
        duplicate.text()
    );
    assert_eq!(duplicate.code(), "duplicate_request");
    doc.check(&Method::POST, JOBS, &duplicate);

    // The requester cannot approve their own job (four eyes), and nothing changes.
    let before = t.snapshot().await;
    let own = t.post(&path(APPROVE, &id), &t.platform, &json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text());
    assert_eq!(own.code(), "approver_is_requester");
    doc.check(&Method::POST, APPROVE, &own);
    assert_eq!(t.snapshot().await, before);

    let approved = call(
        t.router(),
        request(Method::POST, &path(APPROVE, &id)).bearer(&approver),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    doc.check(&Method::POST, APPROVE, &approved);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["approved_by"], "second-admin");

    // Wrong states are 409, and change nothing.
    let before = t.snapshot().await;
    for (template, body) in [(APPROVE, None), (REJECT, Some(json!({"reason": "no"})))] {
        let mut req = request(Method::POST, &path(template, &id)).bearer(&approver);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let response = call(t.router(), req).await;
        assert_eq!(
            response.status,
            StatusCode::CONFLICT,
            "{template}: {}",
            response.text()
        );
        assert_eq!(response.code(), "invalid_job_transition");
        doc.check(&Method::POST, template, &response);
    }
    assert_eq!(t.snapshot().await, before);

    let cancelled = call(
        t.router(),
        request(Method::POST, &path(CANCEL, &id)).bearer(&t.platform),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text());
    doc.check(&Method::POST, CANCEL, &cancelled);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["cancelled_by"], t.platform_name);
    let again = call(
        t.router(),
        request(Method::POST, &path(CANCEL, &id)).bearer(&t.platform),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    // Reject: a reason is required and must not be blank.
    let job = create(&t, &doc, &t.platform, erase(t.b.user, &t.b.id)).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let before = t.snapshot().await;
    for (body, status) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"reason": "   "}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"reason": 5}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"reason": "x", "rejected_by": "someone"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = t.post(&path(REJECT, &id), &approver, &body).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        doc.check(&Method::POST, REJECT, &response);
    }
    let no_body = call(
        t.router(),
        request(Method::POST, &path(REJECT, &id)).bearer(&approver),
    )
    .await;
    assert_eq!(
        no_body.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        no_body.text()
    );
    assert_eq!(
        t.snapshot().await,
        before,
        "refused rejections changed nothing"
    );
    let rejected = t
        .post(
            &path(REJECT, &id),
            &approver,
            &json!({"reason": "identity not verified"}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.text());
    doc.check(&Method::POST, REJECT, &rejected);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["rejected_by"], "second-admin");
    assert_eq!(rejected.body["rejection_reason"], "identity not verified");

    // An export needs no approval; a purge of someone never erased is refused.
    let exported = create(&t, &doc, &t.platform, export(t.a.user, &t.a.id)).await;
    assert_eq!(exported["status"], "approved");
    let purge = t
        .post(
            JOBS,
            &t.platform,
            &json!({"type": "purge", "target_type": "user",
               "target_id": t.a.user.to_string(), "tenant_id": t.a.id}),
        )
        .await;
    assert_eq!(purge.status, StatusCode::CONFLICT, "{}", purge.text());
    assert_eq!(purge.code(), "target_not_erased");
    doc.check(&Method::POST, JOBS, &purge);
    let missing = t.post(JOBS, &t.platform, &erase(999_999, &t.a.id)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert_eq!(missing.code(), "target_not_found");
    doc.check(&Method::POST, JOBS, &missing);
}

#[tokio::test]
async fn audit_events_of_api_actions_carry_the_callers_address_and_agent() {
    let t = Tenants::start("cp_jobs_context").await;
    let mut config = t.service.config();
    config.trust_forwarded_for = true;
    let router = build_router(AppState::new(config).unwrap());
    let response = call(
        router.clone(),
        request(Method::POST, JOBS)
            .bearer(&t.a.admin)
            .header("x-forwarded-for", "203.0.113.7")
            .header("user-agent", "console/1.0")
            .json(&erase(t.a.user, &t.a.id)),
    )
    .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let id = response.body["id"].as_str().unwrap().to_owned();
    let approved = call(
        router,
        request(Method::POST, &path(APPROVE, &id))
            .bearer(&t.platform)
            .header("x-forwarded-for", "198.51.100.9")
            .header("user-agent", "approver-cli/2"),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    let rows = t
        .superuser()
        .await
        .query(
            "SELECT event_type, actor, host(ip), user_agent FROM lifecycle.audit_log \
              WHERE details->>'job_id' = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap();
    let events: Vec<(String, String, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].1, t.a.admin_name);
    assert_eq!(events[0].2.as_deref(), Some("203.0.113.7"));
    assert_eq!(events[0].3.as_deref(), Some("console/1.0"));
    assert_eq!(events[1].0, "job.approved");
    assert_eq!(events[1].1, t.platform_name);
    assert_eq!(events[1].2.as_deref(), Some("198.51.100.9"));
    assert_eq!(events[1].3.as_deref(), Some("approver-cli/2"));
}

#[tokio::test]
async fn tenant_admins_see_and_touch_only_their_tenants_jobs() {
    let t = Tenants::start("cp_jobs_isolation").await;
    let doc = OpenApiDoc::load().await;
    let job_a = create(&t, &doc, &t.platform, erase(t.a.user, &t.a.id)).await;
    let job_b = create(&t, &doc, &t.platform, erase(t.b.user, &t.b.id)).await;
    create(&t, &doc, &t.platform, export(t.b.user, &t.b.id)).await;
    let a_id = job_a["id"].as_str().unwrap().to_owned();
    let b_id = job_b["id"].as_str().unwrap().to_owned();

    // A tenant admin reaches only members of their workspace: admin B cannot
    // have A's person erased (an erasure covers the person everywhere), and
    // the refusal creates nothing.
    let before = t.snapshot().await;
    for body in [erase(t.a.user, &t.b.id), {
        let mut b = erase(t.a.user, &t.b.id);
        b.as_object_mut().unwrap().remove("tenant_id");
        b
    }] {
        let response = t.post(JOBS, &t.b.admin, &body).await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{}",
            response.text()
        );
        doc.check(&Method::POST, JOBS, &response);
    }
    assert_eq!(
        t.snapshot().await,
        before,
        "a refused request changes nothing"
    );

    // Who sees which job: a tenant admin theirs only, subjects and nobody none.
    for caller in t.callers() {
        let (who, sees_a, sees_b) = (caller.who, caller.sees_a, caller.sees_b);
        for (id, expected) in [(&a_id, sees_a), (&b_id, sees_b)] {
            let response = t.get_as(&path(JOB, id), caller.token).await;
            assert_eq!(
                response.status,
                expected,
                "{who} GET {id}: {}",
                response.text()
            );
            doc.check(&Method::GET, JOB, &response);
            if expected == StatusCode::NOT_FOUND {
                assert_eq!(
                    response.code(),
                    "job_not_found",
                    "the same answer as a missing job"
                );
            }
        }
        let list = t.get_as(JOBS, caller.token).await;
        doc.check(&Method::GET, JOBS, &list);
        let stats = t.get_as(STATS, caller.token).await;
        doc.check(&Method::GET, STATS, &stats);
        match (sees_a, sees_b) {
            (StatusCode::OK, StatusCode::OK) => {
                assert_eq!(ids(&list).len(), 3, "{who}");
                assert_eq!(stats.body["total"], 3, "{who}");
            }
            (StatusCode::OK, _) | (_, StatusCode::OK) => {
                let own = if sees_a == StatusCode::OK {
                    &t.a.id
                } else {
                    &t.b.id
                };
                assert!(
                    list.body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|j| j["tenant_id"] == *own),
                    "{who}: {}",
                    list.text()
                );
                let expected = if own == &t.a.id { 1 } else { 2 };
                assert_eq!(ids(&list).len(), expected, "{who}");
                assert_eq!(stats.body["total"], expected, "{who}");
                assert_eq!(stats.body["by_status"]["pending"], 1, "{who}");
            }
            _ => {
                assert_eq!(list.status, StatusCode::UNAUTHORIZED, "{who}");
                assert_eq!(stats.status, StatusCode::UNAUTHORIZED, "{who}");
            }
        }
    }

    // A tenant filter naming another tenant gives nothing; searching for the
    // other tenant's job or target finds nothing.
    let other = t
        .get(&format!("{JOBS}?tenant={}", t.b.id), &t.a.admin)
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(ids(&other).is_empty(), "{}", other.text());
    let zeros = t
        .get(&format!("{STATS}?tenant={}", t.b.id), &t.a.admin)
        .await;
    assert_eq!(zeros.body["total"], 0, "{}", zeros.text());
    doc.check(&Method::GET, STATS, &zeros);
    for q in [b_id.clone(), t.b.user.to_string()] {
        let found = t.get(&format!("{JOBS}?q={q}"), &t.a.admin).await;
        assert!(ids(&found).is_empty(), "{q}: {}", found.text());
        let found = t.get(&format!("{JOBS}?q={q}"), &t.platform).await;
        assert!(ids(&found).contains(&b_id), "{q}: {}", found.text());
    }

    // Admin A cannot act on B's job (404, nothing changes), nor create in B.
    let before = t.snapshot().await;
    for (template, body) in [
        (APPROVE, None),
        (CANCEL, None),
        (REJECT, Some(json!({"reason": "not yours"}))),
    ] {
        let mut req = request(Method::POST, &path(template, &b_id)).bearer(&t.a.admin);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let response = call(t.router(), req).await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{template}: {}",
            response.text()
        );
        doc.check(&Method::POST, template, &response);
    }
    let elsewhere = t.post(JOBS, &t.a.admin, &export(t.b.user, &t.b.id)).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        elsewhere.text()
    );
    doc.check(&Method::POST, JOBS, &elsewhere);
    let workspace = t
        .post(
            JOBS,
            &t.a.admin,
            &json!({"type": "erase", "target_type": "tenant", "target_id": t.b.id}),
        )
        .await;
    assert_eq!(
        workspace.status,
        StatusCode::NOT_FOUND,
        "{}",
        workspace.text()
    );
    for token in [&t.a.subject, &t.revoked] {
        let response = t.post(JOBS, token, &export(t.a.user, &t.a.id)).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text()
        );
        doc.check(&Method::POST, JOBS, &response);
    }
    assert_eq!(
        t.snapshot().await,
        before,
        "refused requests changed nothing"
    );

    // Without a tenant, a tenant admin's job is in their own tenant; they
    // may approve a job someone else requested there.
    let own = create(
        &t,
        &doc,
        &t.a.admin,
        json!({"type": "export", "target_type": "user",
                     "target_id": t.a.user.to_string(), "requires_approval": true}),
    )
    .await;
    assert_eq!(own["tenant_id"], t.a.id);
    assert_eq!(own["requested_by"], t.a.admin_name);
    let approved = t.post(&path(APPROVE, &a_id), &t.a.admin, &json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    assert_eq!(approved.body["approved_by"], t.a.admin_name);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let t = Tenants::start("cp_jobs_input").await;
    let doc = OpenApiDoc::load().await;
    let job = create(&t, &doc, &t.platform, erase(t.a.user, &t.a.id)).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let before = t.snapshot().await;

    let gets = [
        (
            JOB,
            "/api/v1/jobs/not-a-uuid".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOB,
            "/api/v1/jobs/00000000-0000-0000-0000-00000000000".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOB,
            format!("/api/v1/jobs/{}", uuid::Uuid::new_v4()),
            StatusCode::NOT_FOUND,
            "job_not_found",
        ),
        (
            JOBS,
            format!("{JOBS}?status=exploded"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?status=PENDING"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?type=delete"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?limit=501"),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            JOBS,
            format!("{JOBS}?limit=0"),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            JOBS,
            format!("{JOBS}?limit=99999999999"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?limit=-1"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?cursor=bm90IGEgY3Vyc29y"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            JOBS,
            format!("{JOBS}?cursor=%27%3B%20DROP"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            JOBS,
            format!("{JOBS}?q=a%00b"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            JOBS,
            format!("{JOBS}?q={}", "x".repeat(201)),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
    ];
    for (template, uri, status, code) in gets {
        let response = t.get(&uri, &t.platform).await;
        assert_eq!(response.status, status, "{uri}: {}", response.text());
        assert_eq!(response.code(), code, "{uri}");
        doc.check(&Method::GET, template, &response);
    }
    let unknown = t.get(&format!("{JOBS}?status=exploded"), &t.platform).await;
    let message = unknown.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("pending, approved, processing"),
        "{message}"
    );

    // Injection strings in the search are text to look for, nothing else.
    for q in [
        "'; DROP TABLE lifecycle.jobs; --",
        "%' OR '1'='1",
        "\\",
        "_%",
        "Robert'); --",
    ] {
        let uri = format!("{JOBS}?q={}", urlencode(q));
        let response = t.get(&uri, &t.platform).await;
        assert_eq!(response.status, StatusCode::OK, "{q}: {}", response.text());
        assert!(ids(&response).is_empty(), "{q}: {}", response.text());
        doc.check(&Method::GET, JOBS, &response);
    }

    let bodies = [
        (
            json!({"type": "delete", "target_type": "user", "target_id": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "requested_by": "mallory"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "cooling_off": "30 days"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "cooling_off": "P9999999D"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "jurisdiction": "eu"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "workspaces": {"w": "keep"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "export", "target_type": "user", "target_id": "1", "cooling_off": "P1D"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "robot", "target_id": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // A NUL character is text PostgreSQL cannot store: a 400, not a 500.
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "reason": "a\u{0}b"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "erase", "target_type": "user\u{0}", "target_id": "1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "1", "database": "nowhere"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"type": "erase", "target_type": "user", "target_id": "'; DELETE FROM lifecycle.jobs; --"}),
            StatusCode::NOT_FOUND,
        ),
        (json!(["erase"]), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in bodies {
        let response = t.post(JOBS, &t.platform, &body).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        doc.check(&Method::POST, JOBS, &response);
    }
    let not_json = call(
        t.router(),
        request(Method::POST, JOBS)
            .bearer(&t.platform)
            .header("content-type", "text/plain")
            .raw_body("type=erase"),
    )
    .await;
    assert_eq!(
        not_json.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        not_json.text()
    );
    doc.check(&Method::POST, JOBS, &not_json);
    let broken = call(
        t.router(),
        request(Method::POST, JOBS)
            .bearer(&t.platform)
            .header("content-type", "application/json")
            .raw_body("{\"type\": "),
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST, "{}", broken.text());
    for template in [APPROVE, CANCEL] {
        let response = call(
            t.router(),
            request(Method::POST, &path(template, "42")).bearer(&t.platform),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{}",
            response.text()
        );
        doc.check(&Method::POST, template, &response);
    }
    assert_eq!(
        t.snapshot().await,
        before,
        "no refused request changed a table"
    );
    let still = t.get(&path(JOB, &id), &t.platform).await;
    assert_eq!(still.body["status"], "pending");
}

/// Percent-encode a query value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_jobs_page_has_its_receipt_steps_context_and_blocking_hold() {
    let t = Tenants::start("cp_jobs_detail").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    let (_, approver) = t
        .service
        .create_named_token("second-admin", "platform-admin", None)
        .await;
    let mut body = erase(t.a.user, &t.a.id);
    body["cooling_off"] = json!("PT0S");
    let job = create(&t, &doc, &t.platform, body).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let page = t.get(&path(JOB, &id), &t.platform).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    doc.check(&Method::GET, JOB, &page);
    assert_eq!(page.body["context"]["subject_state"], "pending_deletion");
    assert_eq!(page.body["result"], Value::Null);
    assert_eq!(page.body["blocking_hold"], Value::Null);
    assert_eq!(page.body["external_steps"]["total"], 0);
    assert_eq!(page.body["options"]["workspaces"], json!({}));

    // A hold of another tenant on the person blocks the job: the platform
    // admin sees it whole, tenant A's admin only that it exists.
    let hold = t
        .hold_in_sql("user", &t.a.user.to_string(), Some(&t.b.id))
        .await;
    let approved = t.post(&path(APPROVE, &id), &approver, &json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    c.execute("SELECT lifecycle.run_due_jobs()", &[])
        .await
        .unwrap();
    let page = t.get(&path(JOB, &id), &t.platform).await;
    doc.check(&Method::GET, JOB, &page);
    assert_eq!(page.body["blocked_by_hold"], true, "{}", page.text());
    let blocking = &page.body["blocking_hold"];
    assert_eq!(blocking["id"], hold);
    assert_eq!(blocking["in_force"], true);
    assert_eq!(blocking["reason"], "fixture hold");
    assert_eq!(blocking["placed_by"], "fixture");
    assert_eq!(blocking["tenant_id"], t.b.id);
    let seen_by_a = t.get(&path(JOB, &id), &t.a.admin).await;
    doc.check(&Method::GET, JOB, &seen_by_a);
    assert_eq!(seen_by_a.body["blocking_hold"]["id"], hold);
    assert_eq!(seen_by_a.body["blocking_hold"]["reason"], Value::Null);
    assert_eq!(seen_by_a.body["blocking_hold"]["scope_id"], Value::Null);

    // Released, the job runs: its receipt, its steps outside the database
    // (the person's stored files) and the person's state.
    c.execute(
        "SELECT lifecycle.release_hold($1::text::uuid, 'fixture', 'case closed')",
        &[&hold],
    )
    .await
    .unwrap();
    c.execute("SELECT lifecycle.run_due_jobs()", &[])
        .await
        .unwrap();
    let page = t.get(&path(JOB, &id), &t.platform).await;
    doc.check(&Method::GET, JOB, &page);
    assert!(page.body["result"].is_object(), "{}", page.text());
    assert!(page.body["result_digest"].is_string(), "{}", page.text());
    assert_eq!(page.body["context"]["subject_state"], "erased");
    let steps: i64 = c
        .query_one(
            "SELECT count(*) FROM lifecycle.external_steps WHERE job_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(page.body["external_steps"]["total"], steps);
    assert_eq!(
        page.body["external_steps"]["items"]
            .as_array()
            .unwrap()
            .len() as i64,
        steps
    );
    if steps > 0 {
        assert_eq!(page.body["external_steps"]["pending"], steps);
        assert_eq!(page.body["status"], "processing");
    }

    // The counts follow.
    let stats = t.get(STATS, &t.platform).await;
    doc.check(&Method::GET, STATS, &stats);
    assert_eq!(stats.body["total"], 1);
    let by_status = stats.body["by_status"].as_object().unwrap();
    assert_eq!(by_status.len(), 7, "every status, zeros included");
    assert_eq!(
        by_status.values().map(|v| v.as_i64().unwrap()).sum::<i64>(),
        1
    );
    assert_eq!(stats.body["by_type"]["erase"], 1);
    assert_eq!(stats.body["by_type"]["purge"], 0);
}

#[tokio::test]
async fn one_list_and_one_cursor_over_several_databases() {
    let eu = TestService::start("cp_jobs_multi_eu").await;
    let us = TestService::start("cp_jobs_multi_us").await;
    common::setup(&us.db, &eu.service, false).await;
    let doc = OpenApiDoc::load().await;
    let admin = eu.create_token("platform-admin", None).await;
    // Jobs written directly (as a restore would): 520 in eu, so a page of
    // 500 needs more than one call of the function there, and 40 in us,
    // with equal timestamps inside each database.
    for (service, n, tenant) in [(&eu, 520, "t-eu"), (&us, 40, "t-us")] {
        service
            .superuser()
            .await
            .execute(
                "INSERT INTO lifecycle.jobs (job_type, target_type, target_id, tenant_id, \
                         requested_by, status, requires_approval, approved_at, due_at, requested_at) \
                 SELECT 'export', 'user', i::text, $2, 'seed', 'approved', false, now(), \
                        now() + interval '30 days', \
                        timestamptz '2026-11-01 00:00:00+00' - (i / 10) * interval '1 second' \
                   FROM generate_series(1, $1::int) i",
                &[&n, &tenant],
            )
            .await
            .unwrap();
    }
    let databases = |down: bool| {
        let mut config = eu.config();
        config.db.databases = vec![
            DatabaseSpec {
                name: "eu".into(),
                url: eu.service_url(),
            },
            DatabaseSpec {
                name: "us".into(),
                url: us.db.url_for(&eu.service),
            },
        ];
        if down {
            config.db.databases.push(DatabaseSpec {
                name: "down".into(),
                url: "postgres://nobody@127.0.0.1:1/none".into(),
            });
        }
        config.db.db_timeout_secs = 1;
        build_router(AppState::new(config).unwrap())
    };
    let router = databases(false);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("{JOBS}?limit=7&cursor={c}"),
            None => format!("{JOBS}?limit=7"),
        };
        let page = call(router.clone(), request(Method::GET, &uri).bearer(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        doc.check(&Method::GET, JOBS, &page);
        for job in page.body["items"].as_array().unwrap() {
            seen.push((
                job["requested_at"].as_str().unwrap().to_owned(),
                job["database"].as_str().unwrap().to_owned(),
                job["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 560, "the cursor does not end");
    }
    assert_eq!(seen.len(), 560);
    assert_eq!(
        seen.iter().map(|s| &s.2).collect::<BTreeSet<_>>().len(),
        560,
        "no job twice"
    );
    assert_eq!(seen.iter().filter(|s| s.1 == "us").count(), 40);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        at(&b.0)
            .cmp(&at(&a.0))
            .then(a.1.cmp(&b.1))
            .then(b.2.cmp(&a.2))
    });
    assert_eq!(seen, sorted, "newest first, then database, then id");

    // The largest page: 500 of 560, and a cursor to the other 60.
    let big = call(
        router.clone(),
        request(Method::GET, &format!("{JOBS}?limit=500")).bearer(&admin),
    )
    .await;
    assert_eq!(
        big.body["items"].as_array().unwrap().len(),
        500,
        "{}",
        big.text()
    );
    let rest = call(
        router.clone(),
        request(
            Method::GET,
            &format!(
                "{JOBS}?limit=500&cursor={}",
                big.body["next_cursor"].as_str().unwrap()
            ),
        )
        .bearer(&admin),
    )
    .await;
    assert_eq!(
        rest.body["items"].as_array().unwrap().len(),
        60,
        "{}",
        rest.text()
    );
    assert_eq!(rest.body["next_cursor"], Value::Null);

    // A lookup by id finds a job in the second database; counts add up.
    let us_job = seen.iter().find(|s| s.1 == "us").unwrap();
    let found = call(
        router.clone(),
        request(Method::GET, &path(JOB, &us_job.2)).bearer(&admin),
    )
    .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text());
    assert_eq!(found.body["database"], "us");
    let stats = call(router.clone(), request(Method::GET, STATS).bearer(&admin)).await;
    assert_eq!(stats.body["total"], 560, "{}", stats.text());
    assert_eq!(stats.body["by_status"]["approved"], 560);

    // One database down: the others answer, and the answer says which did not.
    let router = databases(true);
    let list = call(router.clone(), request(Method::GET, JOBS).bearer(&admin)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    doc.check(&Method::GET, JOBS, &list);
    assert_eq!(list.body["unavailable"][0]["database"], "down");
    assert_eq!(
        list.body["unavailable"][0]["error"]["code"],
        "database_unavailable"
    );
    let stats = call(router.clone(), request(Method::GET, STATS).bearer(&admin)).await;
    doc.check(&Method::GET, STATS, &stats);
    assert_eq!(stats.body["total"], 560);
    assert_eq!(stats.body["unavailable"][0]["database"], "down");
    let missing = call(
        router.clone(),
        request(Method::GET, &path(JOB, &uuid::Uuid::new_v4().to_string())).bearer(&admin),
    )
    .await;
    assert_eq!(
        missing.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "it may be in the database that is down"
    );
    doc.check(&Method::GET, JOB, &missing);
    let found = call(
        router.clone(),
        request(Method::GET, &path(JOB, &us_job.2)).bearer(&admin),
    )
    .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text());

    // Creation with several databases: the tenant decides, or the body must.
    let undecided = call(
        router.clone(),
        request(Method::POST, JOBS)
            .bearer(&admin)
            .json(&json!({"type": "export", "target_type": "user", "target_id": "1"})),
    )
    .await;
    assert_eq!(
        undecided.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        undecided.text()
    );
    assert_eq!(undecided.code(), "database_required");
    doc.check(&Method::POST, JOBS, &undecided);
}
