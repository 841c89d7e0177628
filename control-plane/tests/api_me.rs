//! The subject's own endpoints (`/api/v1/me/...`) against real databases
//! with the demo schema, as the service role, with subject tokens signed as
//! a host application signs them: state, erasure preview, the typed
//! confirmation, workspace decisions of a last admin, cancellation,
//! activity, exports, several databases; every refusal leaves the tables as
//! they were, and every answer is what the OpenAPI document says.
//!
//! The demo data (`app.generate_demo_data(10)`): Alice (1) owns Acme Corp,
//! Bob (2) is its admin, Carol (3) and David (4) are members; Globex is
//! Farid's (6), Grace (7) its admin, Jonas (10) a member.

mod common;
mod worker_support;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use common::openapi::OpenApiDoc;
use common::{
    call, expect, now, request, sign_claims, subject_token, user_token, Server, TestResponse,
};
use common::{TestService, SUBJECT_SECRET};
use jsonwebtoken::Algorithm;
use lifecycled::config::DatabaseSpec;
use lifecycled::{build_router, AppState, Config};
use serde_json::{json, Value};
use tokio_postgres::Client;
use worker_support::load_demo;

/// People of the demo data (see above).
const DEMO_USERS: i32 = 10;

const ALICE: &str = "1";
const BOB: &str = "2";
const CAROL: &str = "3";
const DAVID: &str = "4";
const JONAS: &str = "10";

const CONFIRM: &str = "delete my account";
const USER_AGENT: &str = "privacy-center-test/1.0";

/// A test database with the demo schema and data, and a superuser session.
struct Demo {
    service: TestService,
    su: Client,
    acme: String,
    globex: String,
}

impl Demo {
    async fn start(prefix: &str) -> Self {
        let service = TestService::start(prefix).await;
        let su = service.superuser().await;
        load_demo(&su, DEMO_USERS).await;
        let acme = workspace(&su, "Acme Corp").await;
        let globex = workspace(&su, "Globex").await;
        Self {
            service,
            su,
            acme,
            globex,
        }
    }

    /// The service's router with `configure` applied to its configuration.
    fn router_with(&self, configure: impl FnOnce(&mut Config)) -> Router {
        let mut config = self.service.config();
        configure(&mut config);
        build_router(AppState::new(config).expect("state"))
    }

    fn router(&self) -> Router {
        self.service.router()
    }

    /// What a refused request must leave as it was: the jobs, the audit
    /// log, the holds.
    async fn snapshot(&self) -> Value {
        self.su
            .query_one(
                "SELECT jsonb_build_array(
                    (SELECT coalesce(md5(string_agg(j::text, ',' ORDER BY j.id)), '') FROM lifecycle.jobs j),
                    (SELECT count(*) FROM lifecycle.audit_log),
                    (SELECT coalesce(md5(string_agg(h::text, ',' ORDER BY h.id)), '') FROM lifecycle.legal_holds h),
                    (SELECT md5(string_agg(m::text, ',' ORDER BY m.workspace_id, m.user_id)) FROM app.memberships m))",
                &[],
            )
            .await
            .expect("snapshot")
            .get(0)
    }

    /// The job rows of `user` (`job_type`), oldest first.
    async fn jobs(&self, user: &str, job_type: &str) -> Vec<Value> {
        self.su
            .query(
                "SELECT to_jsonb(j) FROM lifecycle.jobs j \
                  WHERE target_type = 'user' AND target_id = $1 AND job_type = $2 \
                  ORDER BY requested_at, id",
                &[&user, &job_type],
            )
            .await
            .expect("jobs")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// The audit events of `user` of `event_type`, oldest first.
    async fn events(&self, user: &str, event_type: &str) -> Vec<Value> {
        self.su
            .query(
                "SELECT jsonb_build_object('actor', actor, 'ip', host(ip), 'user_agent', user_agent, \
                                           'tenant_id', tenant_id, 'reason', reason, 'details', details) \
                   FROM lifecycle.audit_log \
                  WHERE subject_type = 'user' AND subject_id = $1 AND event_type = $2 ORDER BY id",
                &[&user, &event_type],
            )
            .await
            .expect("events")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

async fn workspace(su: &Client, name: &str) -> String {
    su.query_one(
        "SELECT id::text FROM app.workspaces WHERE name = $1",
        &[&name],
    )
    .await
    .expect("workspace")
    .get(0)
}

/// Sends requests and checks every answer against the OpenAPI document.
struct Api {
    doc: OpenApiDoc,
}

impl Api {
    async fn new() -> Self {
        Self {
            doc: OpenApiDoc::load().await,
        }
    }

    /// `method path` through `router` with `token` and a JSON `body`.
    async fn send(
        &self,
        router: &Router,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut req = request(method.clone(), path);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        if let Some(body) = &body {
            req = req.json(body);
        }
        let response = call(router.clone(), req).await;
        self.check(&method, path, &response);
        response
    }

    async fn get(&self, router: &Router, path: &str, token: &str) -> TestResponse {
        self.send(router, Method::GET, path, Some(token), None)
            .await
    }

    async fn post(&self, router: &Router, path: &str, token: &str, body: Value) -> TestResponse {
        self.send(router, Method::POST, path, Some(token), Some(body))
            .await
    }

    /// `POST path` without a body.
    async fn post_empty(&self, router: &Router, path: &str, token: &str) -> TestResponse {
        self.send(router, Method::POST, path, Some(token), None)
            .await
    }

    /// The same over real HTTP, with the test's user agent.
    async fn http(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut req = reqwest::Client::new()
            .request(method.clone(), server.url(path))
            .bearer_auth(token)
            .header("user-agent", USER_AGENT);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body").to_vec();
        let response = TestResponse {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
        };
        self.check(&method, path, &response);
        response
    }

    fn check(&self, method: &Method, path: &str, response: &TestResponse) {
        let template = path.split('?').next().expect("path");
        self.doc.check(method, template, response);
    }
}

fn timestamp(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .parse()
        .expect("RFC 3339")
}

fn confirmed(workspaces: Option<Value>) -> Value {
    let mut body = json!({"confirm": CONFIRM});
    if let Some(w) = workspaces {
        body["workspaces"] = w;
    }
    body
}

/// Every route of the subject, with a body each accepts.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/me", None),
        (Method::GET, "/api/v1/me/erasure-preview", None),
        (Method::POST, "/api/v1/me/erasure", Some(confirmed(None))),
        (Method::POST, "/api/v1/me/erasure/cancel", None),
        (Method::GET, "/api/v1/me/activity", None),
        (Method::GET, "/api/v1/me/exports", None),
        (Method::POST, "/api/v1/me/exports", Some(json!({}))),
    ]
}

#[tokio::test]
async fn only_a_valid_token_of_a_registered_subject_reaches_the_me_routes() {
    let demo = Demo::start("api_me_tokens").await;
    let api = Api::new().await;
    let router = demo.router();
    let platform = demo.service.create_token("platform-admin", None).await;
    let tenant_admin = demo
        .service
        .create_token("tenant-admin", Some(&demo.acme))
        .await;
    let claims = |sub: &str, subject_type: &str, exp: i64, aud: &str| json!({"sub": sub, "subject_type": subject_type, "tenant": demo.acme, "exp": exp, "aud": aud});
    let hs256 = Some(Algorithm::HS256);
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "unauthorized"),
        ("platform admin", Some(platform), "invalid_token"),
        ("tenant admin", Some(tenant_admin), "invalid_token"),
        (
            "expired",
            Some(sign_claims(
                &claims(DAVID, "user", now() - 600, "lifecycle"),
                hs256,
                SUBJECT_SECRET,
            )),
            "invalid_token",
        ),
        (
            "forged",
            Some(sign_claims(
                &claims(DAVID, "user", now() + 300, "lifecycle"),
                hs256,
                &"k".repeat(48),
            )),
            "invalid_token",
        ),
        (
            "alg none",
            Some(sign_claims(
                &claims(DAVID, "user", now() + 300, "lifecycle"),
                None,
                "",
            )),
            "invalid_token",
        ),
        (
            "other audience",
            Some(sign_claims(
                &claims(DAVID, "user", now() + 300, "billing"),
                hs256,
                SUBJECT_SECRET,
            )),
            "invalid_token",
        ),
        (
            "unregistered subject type",
            Some(sign_claims(
                &claims(DAVID, "customer", now() + 300, "lifecycle"),
                hs256,
                SUBJECT_SECRET,
            )),
            "invalid_token",
        ),
        (
            "a workspace is no subject",
            Some(sign_claims(
                &claims(&demo.acme, "tenant", now() + 300, "lifecycle"),
                hs256,
                SUBJECT_SECRET,
            )),
            "invalid_token",
        ),
    ];
    let before = demo.snapshot().await;
    for (what, token, code) in &refused {
        for (method, path, body) in routes() {
            let response = api
                .send(&router, method.clone(), path, token.as_deref(), body)
                .await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {path}: {}",
                response.text()
            );
            assert_eq!(response.code(), *code, "{what}: {method} {path}");
            assert!(response.headers.contains_key("www-authenticate"), "{what}");
        }
    }
    assert_eq!(
        demo.snapshot().await,
        before,
        "a refused token changed nothing"
    );

    // The unregistered type is named, for the host application's developer.
    let customer = subject_token(
        DAVID,
        "customer",
        None,
        now() + 300,
        "lifecycle",
        hs256,
        SUBJECT_SECRET,
    );
    let response = api.get(&router, "/api/v1/me", &customer).await;
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"customer\""),
        "{}",
        response.text()
    );

    // A subject of Acme and one of Globex each see themselves.
    for (sub, tenant) in [(DAVID, &demo.acme), (JONAS, &demo.globex)] {
        let response = api
            .get(&router, "/api/v1/me", &user_token(sub, Some(tenant)))
            .await;
        expect(&response, StatusCode::OK, "");
        assert_eq!(
            response.body,
            json!({
                "database": "default", "subject_type": "user", "subject_id": sub,
                "tenant": tenant, "state": "active", "scheduled_for": null, "erasure": null
            })
        );
    }
}

#[tokio::test]
async fn erasure_needs_the_typed_confirmation_and_is_cancelled_in_one_request() {
    let demo = Demo::start("api_me_erasure").await;
    let api = Api::new().await;
    let server = Server::start(demo.router()).await;
    let david = user_token(DAVID, Some(&demo.acme));
    let jonas = user_token(JONAS, Some(&demo.globex));
    let router = demo.router();

    // Refusals: no confirmation, the wrong words, unknown fields, unknown
    // decisions, not JSON. Nothing changes.
    let before = demo.snapshot().await;
    let missing = api
        .post(&router, "/api/v1/me/erasure", &david, json!({}))
        .await;
    expect(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request_body",
    );
    assert!(missing.text().contains("confirm"), "{}", missing.text());
    for words in ["yes", "delete my acount", "", "DELETE"] {
        let response = api
            .post(
                &router,
                "/api/v1/me/erasure",
                &david,
                json!({"confirm": words}),
            )
            .await;
        expect(
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
        );
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"delete my account\""), "{message}");
    }
    for body in [
        json!({"confirm": CONFIRM, "delete_everything": true}),
        json!({"confirm": CONFIRM, "workspaces": {demo.acme.clone(): "keep"}}),
        json!({"confirm": CONFIRM, "workspaces": {demo.acme.clone(): {"transfer_to": CAROL, "role": "owner"}}}),
        json!({"confirm": CONFIRM, "reason": 42}),
    ] {
        let response = api
            .post(&router, "/api/v1/me/erasure", &david, body.clone())
            .await;
        expect(
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_body",
        );
    }
    let not_json = call(
        router.clone(),
        request(Method::POST, "/api/v1/me/erasure")
            .bearer(&david)
            .header("content-type", "text/plain")
            .raw_body(CONFIRM),
    )
    .await;
    expect(
        &not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let nothing = api
        .post_empty(&router, "/api/v1/me/erasure/cancel", &jonas)
        .await;
    expect(&nothing, StatusCode::CONFLICT, "no_erasure_request");
    assert_eq!(demo.snapshot().await, before);

    // The request, over real HTTP: pending for the configured 14 days.
    let response = api
        .http(
            &server,
            Method::POST,
            "/api/v1/me/erasure",
            &david,
            Some(json!({"confirm": "  Delete my account ", "reason": " moving on "})),
        )
        .await;
    expect(&response, StatusCode::OK, "");
    let body = &response.body;
    assert_eq!(body["state"], "pending_deletion");
    assert_eq!(body["subject_id"], DAVID);
    assert_eq!(body["erasure"]["status"], "pending");
    assert_eq!(body["erasure"]["reason"], "moving on");
    assert_eq!(body["erasure"]["requires_approval"], true);
    let scheduled = timestamp(&body["scheduled_for"]);
    assert_eq!(scheduled, timestamp(&body["erasure"]["scheduled_for"]));
    // 14 days of calendar (an hour more or less across a change of
    // daylight saving time in the server's time zone).
    let cooling_off = scheduled - timestamp(&body["erasure"]["requested_at"]);
    assert!(
        (cooling_off - Duration::days(14)).num_minutes().abs() <= 60,
        "{cooling_off}"
    );
    let jobs = demo.jobs(DAVID, "erase").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["requested_by"], "user:4");
    assert_eq!(jobs[0]["tenant_id"], demo.acme.as_str());
    assert_eq!(jobs[0]["id"], body["erasure"]["job_id"]);
    let requested = demo.events(DAVID, "account.deletion_requested").await;
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0]["actor"], "user:4");
    assert_eq!(requested[0]["ip"], "127.0.0.1");
    assert_eq!(requested[0]["user_agent"], USER_AGENT);
    assert_eq!(requested[0]["reason"], "moving on");
    assert_eq!(requested[0]["details"]["self_service"], true);

    // A second request: 409 with the pending one's date; nothing changes.
    let after_request = demo.snapshot().await;
    let again = api
        .post(&router, "/api/v1/me/erasure", &david, confirmed(None))
        .await;
    expect(&again, StatusCode::CONFLICT, "duplicate_request");
    let detail = again.body["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&scheduled.to_rfc3339())
            && detail.contains(jobs[0]["id"].as_str().unwrap()),
        "{detail}"
    );
    assert!(again.body["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("/api/v1/me/erasure/cancel"));
    assert_eq!(demo.snapshot().await, after_request);

    // GET /me says so; the other subject is untouched and cannot cancel it.
    let state = api.get(&router, "/api/v1/me", &david).await;
    assert_eq!(state.body["state"], "pending_deletion");
    assert_eq!(timestamp(&state.body["scheduled_for"]), scheduled);
    let other = api.get(&router, "/api/v1/me", &jonas).await;
    assert_eq!(other.body["state"], "active");
    assert_eq!(other.body["erasure"], Value::Null);
    let nothing = api
        .post_empty(&router, "/api/v1/me/erasure/cancel", &jonas)
        .await;
    expect(&nothing, StatusCode::CONFLICT, "no_erasure_request");
    assert_eq!(demo.snapshot().await, after_request);

    // One request cancels it, audited with the caller's address.
    let cancelled = api
        .http(
            &server,
            Method::POST,
            "/api/v1/me/erasure/cancel",
            &david,
            None,
        )
        .await;
    expect(&cancelled, StatusCode::OK, "");
    assert_eq!(cancelled.body["state"], "active");
    assert_eq!(cancelled.body["scheduled_for"], Value::Null);
    assert_eq!(cancelled.body["erasure"]["status"], "cancelled");
    assert!(cancelled.body["erasure"]["cancelled_at"].is_string());
    let events = demo.events(DAVID, "account.deletion_cancelled").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["actor"], "user:4");
    assert_eq!(events[0]["ip"], "127.0.0.1");
    assert_eq!(events[0]["user_agent"], USER_AGENT);
    assert_eq!(demo.jobs(DAVID, "erase").await[0]["cancelled_by"], "user:4");

    // Nothing left to cancel: the extension refuses the transition.
    let after_cancel = demo.snapshot().await;
    let twice = api
        .post_empty(&router, "/api/v1/me/erasure/cancel", &david)
        .await;
    expect(&twice, StatusCode::CONFLICT, "invalid_job_transition");
    assert_eq!(demo.snapshot().await, after_cancel);

    // Both show in the activity, newest first, as the subject's own.
    let activity = api.get(&router, "/api/v1/me/activity", &david).await;
    expect(&activity, StatusCode::OK, "");
    let types: Vec<&str> = activity.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["account.deletion_cancelled", "account.deletion_requested"]
    );
    for event in activity.body["items"].as_array().unwrap() {
        assert_eq!(event["by"], "you");
        assert_eq!(event["ip"], "127.0.0.1");
        assert_eq!(event["user_agent"], USER_AGENT);
        assert_eq!(event["database"], "default");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_last_admin_decides_for_each_workspace() {
    let demo = Demo::start("api_me_last_admin").await;
    let api = Api::new().await;
    // No cooling-off here, so that the approved request runs at once.
    let router = demo.router_with(|c| c.me.subject_erasure_cooling_off_days = 0);
    // Bob steps down: Alice is the only admin of Acme.
    demo.su
        .execute(
            "UPDATE app.memberships SET role = 'member' WHERE user_id = $1::text::bigint AND workspace_id = $2::text::uuid",
            &[&BOB, &demo.acme],
        )
        .await
        .unwrap();
    let alice = user_token(ALICE, Some(&demo.acme));

    // The preview names the workspace and says what becomes of her data.
    let preview = api.get(&router, "/api/v1/me/erasure-preview", &alice).await;
    expect(&preview, StatusCode::OK, "");
    let p = &preview.body;
    assert_eq!(
        p["workspaces_needing_decision"],
        json!([{"workspace_id": demo.acme, "name": "Acme Corp"}])
    );
    assert_eq!(p["state"], "active");
    assert_eq!(p["cooling_off_days"], 0);
    let items = p["items"].as_array().unwrap();
    let item = |label: &str| {
        items
            .iter()
            .find(|i| i["label"] == label)
            .unwrap_or_else(|| panic!("no {label} in {p}"))
    };
    assert_eq!(item("Invoices")["outcome"], "retained");
    assert_eq!(item("Invoices")["retained_for"], "7 years");
    assert!(item("Invoices")["explanation"]
        .as_str()
        .unwrap()
        .contains("7 years"));
    assert_eq!(item("Login sessions")["outcome"], "deleted");
    assert_eq!(item("Posts")["outcome"], "kept");
    let account = item("Users");
    assert_eq!(account["outcome"], "anonymized");
    assert!(account["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("email")));
    assert!(
        items.iter().all(|i| i.get("table").is_none()),
        "no table names"
    );

    // Without a decision, with a member who is not one, or with a decision
    // for a workspace someone else administers too: refused, nothing changes.
    let before = demo.snapshot().await;
    let response = api
        .post(&router, "/api/v1/me/erasure", &alice, confirmed(None))
        .await;
    expect(&response, StatusCode::CONFLICT, "last_admin");
    assert!(response.body["error"]["detail"]
        .as_str()
        .unwrap()
        .contains(&demo.acme));
    let response = api
        .post(
            &router,
            "/api/v1/me/erasure",
            &alice,
            confirmed(Some(json!({demo.acme.clone(): {"transfer_to": JONAS}}))),
        )
        .await;
    expect(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_parameter_value",
    );
    assert!(
        response.text().contains("not a member"),
        "{}",
        response.text()
    );
    // Jonas is a plain member of Globex: his erasure cannot take Globex with it.
    let jonas = user_token(JONAS, Some(&demo.globex));
    let response = api
        .post(
            &router,
            "/api/v1/me/erasure",
            &jonas,
            confirmed(Some(json!({demo.globex.clone(): "erase"}))),
        )
        .await;
    expect(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_parameter_value",
    );
    assert_eq!(demo.snapshot().await, before);

    // Handing Acme to Carol: accepted, approved by someone else, run.
    let response = api
        .post(
            &router,
            "/api/v1/me/erasure",
            &alice,
            confirmed(Some(json!({demo.acme.clone(): {"transfer_to": CAROL}}))),
        )
        .await;
    expect(&response, StatusCode::OK, "");
    assert_eq!(response.body["state"], "pending_deletion");
    assert_eq!(
        response.body["erasure"]["workspaces"],
        json!({demo.acme.clone(): {"transfer_to": CAROL}})
    );
    let job = response.body["erasure"]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    demo.su
        .execute(
            "SELECT lifecycle.approve($1::text::uuid, 'dpo@example.com')",
            &[&job],
        )
        .await
        .unwrap();
    let ran: i32 = demo
        .su
        .query_one("SELECT lifecycle.run_due_jobs()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ran, 1);
    let carol_role: String = demo
        .su
        .query_one(
            "SELECT role FROM app.memberships WHERE user_id = 3 AND workspace_id = $1::text::uuid",
            &[&demo.acme],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(carol_role, "owner");

    let state = api.get(&router, "/api/v1/me", &alice).await;
    expect(&state, StatusCode::OK, "");
    assert_eq!(state.body["state"], "erased");
    assert_eq!(state.body["scheduled_for"], Value::Null);
    let response = api
        .post(
            &router,
            "/api/v1/me/erasure",
            &alice,
            confirmed(Some(json!({demo.acme.clone(): {"transfer_to": CAROL}}))),
        )
        .await;
    expect(&response, StatusCode::CONFLICT, "target_already_erased");

    // Her activity: the approval was someone else's, and shows no one's
    // address; what the erasure redacted stays redacted.
    let activity = api.get(&router, "/api/v1/me/activity", &alice).await;
    expect(&activity, StatusCode::OK, "");
    let events = activity.body["items"].as_array().unwrap();
    let approved = events
        .iter()
        .find(|e| e["event_type"] == "job.approved")
        .unwrap_or_else(|| panic!("{}", activity.body));
    assert_ne!(approved["by"], "you");
    assert_eq!(approved["ip"], Value::Null);
    assert!(events
        .iter()
        .any(|e| e["event_type"] == "account.permanently_deleted"));
}

#[tokio::test]
async fn exports_are_the_subjects_own_and_one_a_day() {
    let demo = Demo::start("api_me_exports").await;
    let api = Api::new().await;
    let router = demo.router();
    let david = user_token(DAVID, Some(&demo.acme));
    let jonas = user_token(JONAS, Some(&demo.globex));

    let before = demo.snapshot().await;
    let response = api
        .post(
            &router,
            "/api/v1/me/exports",
            &david,
            json!({"format": "zip"}),
        )
        .await;
    expect(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request_body",
    );
    assert_eq!(demo.snapshot().await, before);

    let created = api
        .post(
            &router,
            "/api/v1/me/exports",
            &david,
            json!({"reason": "GDPR Art. 15"}),
        )
        .await;
    expect(&created, StatusCode::CREATED, "");
    assert_eq!(created.body["status"], "pending");
    assert_eq!(created.body["database"], "default");
    assert_eq!(created.body["reason"], "GDPR Art. 15");
    let jobs = demo.jobs(DAVID, "export").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], created.body["id"]);
    assert_eq!(jobs[0]["requested_by"], "user:4");
    assert_eq!(demo.events(DAVID, "data.export_requested").await.len(), 1);

    let after = demo.snapshot().await;
    let again = api
        .post(&router, "/api/v1/me/exports", &david, json!({}))
        .await;
    expect(&again, StatusCode::TOO_MANY_REQUESTS, "export_rate_limited");
    // Retry-After: about a day, and the DETAIL names the time.
    let wait: u64 = again.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((86_000..=86_400).contains(&wait), "{wait}");
    assert!(again.body["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("the next export can be requested at"));
    assert_eq!(demo.snapshot().await, after);

    let mine = api.get(&router, "/api/v1/me/exports", &david).await;
    expect(&mine, StatusCode::OK, "");
    assert_eq!(mine.body["items"], json!([created.body]));
    assert_eq!(mine.body["next_cursor"], Value::Null);
    let theirs = api.get(&router, "/api/v1/me/exports", &jonas).await;
    expect(&theirs, StatusCode::OK, "");
    assert_eq!(theirs.body["items"], json!([]));
    // The same person with the id spelled another way ("04" for user 4):
    // the key column's type reads it as the same id, as the extension
    // stored it.
    let david_again = user_token(&format!("0{DAVID}"), Some(&demo.acme));
    let same = api.get(&router, "/api/v1/me/exports", &david_again).await;
    expect(&same, StatusCode::OK, "");
    assert_eq!(same.body["items"], json!([created.body]));
    let activity = api.get(&router, "/api/v1/me/activity", &david_again).await;
    expect(&activity, StatusCode::OK, "");
    assert!(
        activity.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_type"] == "data.export_requested"),
        "{}",
        activity.body
    );
    let again = api
        .post(&router, "/api/v1/me/exports", &david_again, json!({}))
        .await;
    expect(&again, StatusCode::TOO_MANY_REQUESTS, "export_rate_limited");

    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=ten", "invalid_parameter"),
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("cursor=e30", "invalid_cursor"),
    ] {
        for path in ["/api/v1/me/exports", "/api/v1/me/activity"] {
            let response = api.get(&router, &format!("{path}?{query}"), &david).await;
            expect(&response, StatusCode::BAD_REQUEST, code);
        }
    }
}

#[tokio::test]
async fn activity_is_the_bearers_own_events_without_holds_or_other_peoples_details() {
    let demo = Demo::start("api_me_activity").await;
    let api = Api::new().await;
    let router = demo.router();
    let acme = demo.acme.as_str();
    for (event, actor, subject_type, subject_id, ip, ua) in [
        (
            "account.login",
            "user:3",
            "user",
            CAROL,
            "203.0.113.7",
            "Firefox",
        ),
        (
            "account.login",
            "user:10",
            "user",
            JONAS,
            "203.0.113.8",
            "Safari",
        ),
        (
            "member.noted",
            "dpo@example.com",
            "member",
            CAROL,
            "198.51.100.2",
            "Admin",
        ),
        (
            "support.viewed",
            "agent@example.com",
            "user",
            CAROL,
            "198.51.100.1",
            "AgentBrowser",
        ),
    ] {
        demo.su
            .execute(
                "SELECT lifecycle.record_event($1, $2, $3, $4, $5, '{\"n\": 1}', $6::text::inet, $7)",
                &[&event, &actor, &subject_type, &subject_id, &acme, &ip, &ua],
            )
            .await
            .unwrap();
    }
    demo.su
        .execute(
            "SELECT lifecycle.place_hold('user', '3', $1, 'litigation: Doe v. Acme', 'counsel@example.com')",
            &[&acme],
        )
        .await
        .unwrap();

    let carol = user_token(CAROL, Some(acme));
    let first = api
        .get(&router, "/api/v1/me/activity?limit=1", &carol)
        .await;
    expect(&first, StatusCode::OK, "");
    let cursor = first.body["next_cursor"].as_str().expect("a second page");
    let second = api
        .get(
            &router,
            &format!("/api/v1/me/activity?limit=1&cursor={cursor}"),
            &carol,
        )
        .await;
    expect(&second, StatusCode::OK, "");
    assert_eq!(second.body["next_cursor"], Value::Null, "{}", second.body);
    let events: Vec<&Value> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["items"].as_array().unwrap())
        .collect();
    assert_eq!(events.len(), 2, "no hold, no other subject: {events:?}");
    let (viewed, login) = (events[0], events[1]);
    assert_eq!(viewed["event_type"], "support.viewed");
    assert_eq!(viewed["by"], "someone_else");
    assert_eq!(viewed["ip"], Value::Null);
    assert_eq!(viewed["user_agent"], Value::Null);
    assert_eq!(viewed["details"], json!({"n": 1}));
    assert_eq!(login["event_type"], "account.login");
    assert_eq!(login["by"], "you");
    assert_eq!(login["ip"], "203.0.113.7");
    assert_eq!(login["user_agent"], "Firefox");
    assert_eq!(login["tenant_id"], acme);
    assert_eq!(login["redacted"], false);
    assert!(viewed["id"].as_i64() > login["id"].as_i64());
    let text = format!("{}{}", first.text(), second.text());
    assert!(
        !text.contains("litigation") && !text.contains("counsel"),
        "{text}"
    );

    let jonas = api
        .get(
            &router,
            "/api/v1/me/activity",
            &user_token(JONAS, Some(&demo.globex)),
        )
        .await;
    let types: Vec<&Value> = jonas.body["items"].as_array().unwrap().iter().collect();
    assert_eq!(types.len(), 1, "{}", jonas.body);
    assert_eq!(types[0]["ip"], "203.0.113.8");

    // Ids are data, never SQL.
    for sub in ["3' OR '1'='1", "3; DROP TABLE app.users; --", "%", "3\\"] {
        let token = user_token(sub, Some(acme));
        let activity = api.get(&router, "/api/v1/me/activity", &token).await;
        expect(&activity, StatusCode::OK, "");
        assert_eq!(activity.body["items"], json!([]), "{sub}");
        let state = api.get(&router, "/api/v1/me", &token).await;
        expect(&state, StatusCode::OK, "");
        assert_eq!(state.body["subject_id"], sub);
        // Not a value of the key's type: the database says so.
        let preview = api.get(&router, "/api/v1/me/erasure-preview", &token).await;
        expect(
            &preview,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text_representation",
        );
    }
    // A NUL character PostgreSQL cannot store: a clear 422, never a 500.
    let nul = user_token("3\u{0}", Some(acme));
    for (method, path, body) in routes() {
        let response = api
            .send(&router, method.clone(), path, Some(&nul), body)
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}: {}",
            response.text()
        );
    }
    let users: i64 = demo
        .su
        .query_one("SELECT count(*) FROM app.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 10);
}

#[tokio::test]
async fn with_several_databases_the_workspace_places_the_subject() {
    let eu = Demo::start("api_me_eu").await;
    let us = Demo::start("api_me_us").await;
    let api = Api::new().await;
    // A workspace only the second database has, with David in it.
    let initech: String = us
        .su
        .query_one(
            "WITH w AS (INSERT INTO app.workspaces (slug, name, created_by) \
                        VALUES ('initech', 'Initech', 4) RETURNING id) \
             INSERT INTO app.memberships (workspace_id, user_id, role) \
             SELECT id, 4, 'owner' FROM w RETURNING workspace_id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let spec = |name: &str, url: String| DatabaseSpec {
        name: name.to_owned(),
        url,
    };
    let router = eu.router_with(|c| {
        c.db.databases = vec![
            spec("eu", eu.service.service_url()),
            spec("us", us.service.service_url()),
            spec("down", "postgres://nobody@127.0.0.1:1/none".to_owned()),
        ];
        c.db.db_timeout_secs = 1;
    });

    let token = user_token(DAVID, Some(&initech));
    let state = api.get(&router, "/api/v1/me", &token).await;
    expect(&state, StatusCode::OK, "");
    assert_eq!(state.body["database"], "us");
    let created = api
        .post(&router, "/api/v1/me/exports", &token, json!({}))
        .await;
    expect(&created, StatusCode::CREATED, "");
    assert_eq!(created.body["database"], "us");
    assert_eq!(us.jobs(DAVID, "export").await.len(), 1);
    assert_eq!(eu.jobs(DAVID, "export").await.len(), 0);

    let before = (eu.snapshot().await, us.snapshot().await);
    // Acme is in both demo databases: which David is meant is not known.
    let both = api
        .get(&router, "/api/v1/me", &user_token(DAVID, Some(&eu.acme)))
        .await;
    expect(&both, StatusCode::UNPROCESSABLE_ENTITY, "database_required");
    assert!(both.body["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("tenant claim"));
    // No workspace in the token: no way to choose.
    let none = api
        .get(&router, "/api/v1/me", &user_token(DAVID, None))
        .await;
    expect(&none, StatusCode::UNAUTHORIZED, "invalid_token");
    // A workspace that only the database that is down could hold.
    let unknown = api
        .post(
            &router,
            "/api/v1/me/exports",
            &user_token(DAVID, Some("00000000-0000-4000-8000-000000000000")),
            json!({}),
        )
        .await;
    expect(
        &unknown,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
    );
    assert!(unknown.headers.contains_key("retry-after"));
    assert_eq!((eu.snapshot().await, us.snapshot().await), before);

    // Without the database that is down, an unknown workspace places nobody.
    let router = eu.router_with(|c| {
        c.db.databases = vec![
            spec("eu", eu.service.service_url()),
            spec("us", us.service.service_url()),
        ];
    });
    let unknown = api
        .get(
            &router,
            "/api/v1/me",
            &user_token(DAVID, Some("00000000-0000-4000-8000-000000000000")),
        )
        .await;
    expect(
        &unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "database_required",
    );
}
