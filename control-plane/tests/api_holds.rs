//! `/api/v1/holds`: placing, listing, reading and releasing legal holds
//! through the router, against a real database with the demo schema, as
//! platform and tenant admins; refusals that change nothing; several
//! databases. Every answer is checked against the OpenAPI document.

mod common;
mod tenants;
mod worker_support;

use std::collections::HashSet;

use axum::http::{header, Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, Server, TestResponse, TestService};
use lifecycle_core::events;
use lifecycled::config::DatabaseSpec;
use lifecycled::{build_router, AppState};
use serde_json::{json, Value};
use tenants::{snapshot, Tenants};

const HOLDS: &str = "/api/v1/holds";
const HOLD: &str = "/api/v1/holds/{id}";
const RELEASE: &str = "/api/v1/holds/{id}/release";

fn hold_path(id: &str) -> String {
    format!("{HOLDS}/{id}")
}

fn release_path(id: &str) -> String {
    format!("{HOLDS}/{id}/release")
}

/// A hold over tenant `t`'s user `user`.
fn user_hold(user: i64, tenant: Option<&str>) -> Value {
    json!({"scope_type": "user", "scope_id": user.to_string(), "tenant_id": tenant,
           "reason": "Litigation 2026-17"})
}

/// The audit events of `event_type` about hold `id`: (actor, user agent, ip, reason).
async fn hold_events(
    c: &tokio_postgres::Client,
    event_type: &str,
    id: &str,
) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
    c.query(
        "SELECT actor, user_agent, host(ip), reason FROM lifecycle.audit_log \
          WHERE event_type = $1 AND details->>'hold_id' = $2 ORDER BY id",
        &[&event_type, &id],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn ids(response: &TestResponse) -> Vec<String> {
    response.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {}", response.text()))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_platform_admin_places_reads_lists_and_releases_a_hold() {
    let t = Tenants::start("cp_holds_cycle").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let mut body = user_hold(t.a.user, Some(&t.a.id));
    body["expires_at"] = json!(expires);
    body["database"] = json!("default");
    let placed = call(
        t.router(),
        request(Method::POST, HOLDS)
            .bearer(&t.platform)
            .header("user-agent", "holds-test/1")
            .json(&body),
    )
    .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    doc.check(&Method::POST, HOLDS, &placed);
    let hold = &placed.body;
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(placed.headers[header::LOCATION], hold_path(&id));
    assert_eq!(hold["database"], "default");
    assert_eq!(hold["scope_type"], "user");
    assert_eq!(hold["scope_id"], t.a.user.to_string());
    assert_eq!(hold["tenant_id"], t.a.id.as_str());
    assert_eq!(
        hold["created_by"], t.platform_name,
        "the token's name is the actor"
    );
    assert_eq!(
        (hold["active"].clone(), hold["in_force"].clone()),
        (json!(true), json!(true))
    );
    assert!(hold["released_at"].is_null());
    assert_eq!(
        hold_events(&c, events::LEGAL_HOLD_PLACED, &id).await,
        [(
            t.platform_name.clone(),
            Some("holds-test/1".to_owned()),
            None,
            Some("Litigation 2026-17".to_owned())
        )]
    );
    // The hold binds: the extension refuses to change the user's row.
    let err = c
        .execute(
            "UPDATE app.users SET name = 'x' WHERE id = $1",
            &[&t.a.user],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "LC001", "{err}");

    let read = t.get(&hold_path(&id), &t.platform).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    doc.check(&Method::GET, HOLD, &read);
    assert_eq!(&read.body, hold);

    let list = t.get(HOLDS, &t.platform).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    doc.check(&Method::GET, HOLDS, &list);
    assert_eq!(ids(&list), std::slice::from_ref(&id));
    assert!(list.body["next_cursor"].is_null());
    assert!(list.body.get("unavailable").is_none());

    let released = call(
        t.router(),
        request(Method::POST, &release_path(&id))
            .bearer(&t.platform)
            .header("user-agent", "holds-test/2")
            .json(&json!({"reason": "settled"})),
    )
    .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.text());
    doc.check(&Method::POST, RELEASE, &released);
    assert_eq!(released.body["active"], false);
    assert_eq!(released.body["in_force"], false);
    assert_eq!(released.body["released_by"], t.platform_name);
    assert_eq!(released.body["release_reason"], "settled");
    assert!(released.body["released_at"].is_string());
    assert_eq!(
        hold_events(&c, events::LEGAL_HOLD_RELEASED, &id).await,
        [(
            t.platform_name.clone(),
            Some("holds-test/2".to_owned()),
            None,
            Some("settled".to_owned())
        )]
    );

    let before = t.snapshot().await;
    let again = t
        .post(&release_path(&id), &t.platform, &json!({"reason": "again"}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(again.code(), "hold_already_released");
    assert!(again.body["error"]["detail"]
        .as_str()
        .unwrap()
        .contains(&t.platform_name));
    doc.check(&Method::POST, RELEASE, &again);
    assert_eq!(t.snapshot().await, before);
}

#[tokio::test]
async fn the_audit_event_of_a_placement_carries_the_clients_address() {
    let t = Tenants::start("cp_holds_ip").await;
    let server = Server::start(t.router()).await;
    let response = reqwest::Client::new()
        .post(server.url(HOLDS))
        .bearer_auth(&t.platform)
        .header("user-agent", "holds-over-tcp")
        .json(&user_hold(t.a.user, Some(&t.a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let hold: Value = response.json().await.unwrap();
    let c = t.superuser().await;
    let found = hold_events(&c, events::LEGAL_HOLD_PLACED, hold["id"].as_str().unwrap()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.as_deref(), Some("holds-over-tcp"));
    assert_eq!(found[0].2.as_deref(), Some("127.0.0.1"));
    server.stop().await;
}

#[tokio::test]
async fn tenant_admins_reach_the_holds_of_their_tenant_only() {
    let t = Tenants::start("cp_holds_tenant").await;
    let doc = OpenApiDoc::load().await;

    // Without tenant_id, a tenant admin's hold is confined to their tenant.
    let placed = t.post(HOLDS, &t.a.admin, &user_hold(t.a.user, None)).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    doc.check(&Method::POST, HOLDS, &placed);
    assert_eq!(placed.body["tenant_id"], t.a.id.as_str());
    assert_eq!(placed.body["created_by"], t.a.admin_name);
    let a_hold = placed.body["id"].as_str().unwrap().to_owned();

    let b_hold = t
        .hold_in_sql("user", &t.b.user.to_string(), Some(&t.b.id))
        .await;
    let global = t.hold_in_sql("user", &t.a.user.to_string(), None).await;

    let before = t.snapshot().await;
    // Another tenant's id in the body: 404, as for a tenant that does not exist.
    let other = t
        .post(HOLDS, &t.a.admin, &user_hold(t.b.user, Some(&t.b.id)))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text());
    doc.check(&Method::POST, HOLDS, &other);
    // A hold over another tenant as a whole: the extension refuses it.
    let whole = t
        .post(
            HOLDS,
            &t.a.admin,
            &json!({"scope_type": "tenant", "scope_id": t.b.id, "reason": "x"}),
        )
        .await;
    assert_eq!(
        whole.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        whole.text()
    );
    doc.check(&Method::POST, HOLDS, &whole);
    // Reading or releasing B's hold, or the hold over every tenant, as A's admin: 404.
    for id in [&b_hold, &global] {
        let read = t.get(&hold_path(id), &t.a.admin).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.text());
        doc.check(&Method::GET, HOLD, &read);
        let release = t
            .post(
                &release_path(id),
                &t.a.admin,
                &json!({"reason": "mine now"}),
            )
            .await;
        assert_eq!(release.status, StatusCode::NOT_FOUND, "{}", release.text());
        doc.check(&Method::POST, RELEASE, &release);
        assert_eq!(
            release.body, read.body,
            "the same answer as for any unknown hold"
        );
    }
    let unknown = t
        .get(
            &hold_path("6f1c0b9e-8d7a-4c3b-9a2f-0e1d2c3b4a59"),
            &t.a.admin,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(t.snapshot().await, before, "refusals change nothing");

    // Lists: each tenant admin sees their own; a filter on another tenant
    // finds nothing; the platform admin sees all three.
    let list = t.get(HOLDS, &t.a.admin).await;
    doc.check(&Method::GET, HOLDS, &list);
    assert_eq!(ids(&list), std::slice::from_ref(&a_hold));
    let list = t.get(HOLDS, &t.b.admin).await;
    assert_eq!(ids(&list), std::slice::from_ref(&b_hold));
    let list = t
        .get(&format!("{HOLDS}?tenant_id={}", t.b.id), &t.a.admin)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(ids(&list).is_empty());
    let all: HashSet<String> = ids(&t.get(HOLDS, &t.platform).await).into_iter().collect();
    assert_eq!(
        all,
        HashSet::from([a_hold.clone(), b_hold.clone(), global.clone()])
    );

    let released = t
        .post(
            &release_path(&a_hold),
            &t.a.admin,
            &json!({"reason": "done"}),
        )
        .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.text());
    assert_eq!(released.body["released_by"], t.a.admin_name);
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    let t = Tenants::start("cp_holds_pages").await;
    let doc = OpenApiDoc::load().await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(
            t.hold_in_sql("user", &t.a.user.to_string(), Some(&t.a.id))
                .await,
        );
    }
    let c = t.superuser().await;
    c.execute(
        "SELECT lifecycle.release_hold($1::text::uuid, 'legal', 'done')",
        &[&placed[1]],
    )
    .await
    .unwrap();
    let expiring: String = c
        .query_one(
            "SELECT lifecycle.place_hold('user', $1, $2, 'short', 'legal', now() + interval '1 second')::text",
            &[&t.a.user.to_string(), &t.a.id],
        )
        .await
        .unwrap()
        .get(0);
    placed.push(expiring.clone());
    // Let the short hold expire (its state is asserted, not the time it took).
    while c
        .query_one(
            "SELECT in_force FROM (SELECT expires_at > now() AS in_force FROM lifecycle.legal_holds WHERE id = $1::text::uuid) h",
            &[&expiring],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    placed.reverse(); // newest first

    let mut seen = Vec::new();
    let mut path = format!("{HOLDS}?limit=2");
    loop {
        let page = t.get(&path, &t.platform).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        doc.check(&Method::GET, HOLDS, &page);
        let items = ids(&page);
        assert!(items.len() <= 2);
        seen.extend(items);
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{HOLDS}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, placed, "every hold once, newest first");

    let active = ids(&t.get(&format!("{HOLDS}?active=false"), &t.platform).await);
    assert_eq!(active, [placed[4].clone()]);
    let in_force = ids(&t.get(&format!("{HOLDS}?in_force=false"), &t.platform).await);
    assert_eq!(in_force, [expiring.clone(), placed[4].clone()]);
    let both = ids(&t
        .get(&format!("{HOLDS}?active=true&in_force=true"), &t.platform)
        .await);
    assert_eq!(both.len(), 4);
    let by_scope = t
        .get(
            &format!("{HOLDS}?scope_type=user&scope_id={}", t.a.user),
            &t.platform,
        )
        .await;
    assert_eq!(ids(&by_scope).len(), 6);

    for (query, code) in [
        ("active=yes", "invalid_parameter"),
        ("in_force=1x", "invalid_parameter"),
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=99999999999", "invalid_parameter"),
        ("cursor=bm90LWEtY3Vyc29y", "invalid_cursor"),
    ] {
        let response = t.get(&format!("{HOLDS}?{query}"), &t.platform).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            response.text()
        );
        assert_eq!(response.code(), code, "{query}");
        doc.check(&Method::GET, HOLDS, &response);
    }
    // Injection strings are values like any other.
    let injected = t
        .get(
            &format!(
                "{HOLDS}?scope_id=%27%20OR%201%3D1%20--&tenant_id=%27%3B%20DROP%20TABLE%20x%3B"
            ),
            &t.platform,
        )
        .await;
    assert_eq!(injected.status, StatusCode::OK, "{}", injected.text());
    assert!(ids(&injected).is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let t = Tenants::start("cp_holds_bad").await;
    let doc = OpenApiDoc::load().await;
    let hold = t
        .hold_in_sql("user", &t.a.user.to_string(), Some(&t.a.id))
        .await;
    let user = t.a.user.to_string();
    let before = t.snapshot().await;

    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"scope_type": "user", "scope_id": user, "reason": "x", "created_by": "someone else"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_body",
        ),
        (
            json!({"scope_type": "user", "scope_id": user}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_body",
        ),
        (
            json!({"scope_type": "planet", "scope_id": "earth", "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_scope_type",
        ),
        (
            json!({"scope_type": "user", "scope_id": "abc", "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text_representation",
        ),
        (
            json!({"scope_type": "user", "scope_id": user, "reason": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter_value",
        ),
        (
            json!({"scope_type": "user", "scope_id": user, "reason": "x", "expires_at": past}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter_value",
        ),
        (
            json!({"scope_type": "user", "scope_id": user, "reason": "x", "expires_at": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_body",
        ),
        (
            json!({"scope_type": "user", "scope_id": user, "reason": "x", "database": "nowhere"}),
            StatusCode::NOT_FOUND,
            "unknown_database",
        ),
        (
            json!(["not", "an", "object"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_body",
        ),
    ];
    for (body, status, code) in cases {
        let response = t.post(HOLDS, &t.platform, &body).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        assert_eq!(response.code(), code, "{body}");
        doc.check(&Method::POST, HOLDS, &response);
    }
    let not_json = call(
        t.router(),
        request(Method::POST, HOLDS)
            .bearer(&t.platform)
            .header("content-type", "text/plain")
            .raw_body("scope_type=user"),
    )
    .await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    doc.check(&Method::POST, HOLDS, &not_json);
    let broken = call(
        t.router(),
        request(Method::POST, HOLDS)
            .bearer(&t.platform)
            .header("content-type", "application/json")
            .raw_body("{\"scope_type\": "),
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    doc.check(&Method::POST, HOLDS, &broken);

    for (path, body, status) in [
        (
            release_path("not-a-uuid"),
            json!({"reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            release_path(&hold),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            release_path(&hold),
            json!({"reason": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            release_path(&hold),
            json!({"reason": "  \t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            release_path(&hold),
            json!({"reason": "x", "released_by": "me"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            release_path("00000000-0000-4000-8000-000000000000"),
            json!({"reason": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = t.post(&path, &t.platform, &body).await;
        assert_eq!(
            response.status,
            status,
            "{path} {body}: {}",
            response.text()
        );
        doc.check(&Method::POST, RELEASE, &response);
    }
    for path in [
        hold_path("not-a-uuid"),
        hold_path("1"),
        hold_path(&"f".repeat(5000)),
    ] {
        let response = t.get(&path, &t.platform).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{}",
            response.text()
        );
        assert_eq!(response.code(), "invalid_parameter");
        doc.check(&Method::GET, HOLD, &response);
    }
    assert_eq!(
        t.snapshot().await,
        before,
        "no refused request changed a table"
    );
}

#[tokio::test]
async fn holds_live_in_several_databases() {
    let t = Tenants::start("cp_holds_multi").await;
    let doc = OpenApiDoc::load().await;
    let second = TestService::start("cp_holds_multi2").await;
    worker_support::load_demo(&second.superuser().await, tenants::DEMO_USERS).await;
    common::setup(&second.db, &t.service.service, false).await;

    let mut config = t.service.config();
    config.db.databases = vec![
        DatabaseSpec {
            name: "eu".into(),
            url: t.service.service_url(),
        },
        DatabaseSpec {
            name: "us".into(),
            url: second.db.url_for(&t.service.service),
        },
        DatabaseSpec {
            name: "down".into(),
            url: "postgres://nobody@127.0.0.1:1/none".into(),
        },
    ];
    config.db.db_timeout_secs = 1;
    let router = build_router(AppState::new(config).unwrap());
    let post = |body: Value| {
        call(
            router.clone(),
            request(Method::POST, HOLDS).bearer(&t.platform).json(&body),
        )
    };

    let before = (
        t.snapshot().await,
        snapshot(&second.superuser().await).await,
    );
    let undecided = post(user_hold(t.a.user, None)).await;
    assert_eq!(
        undecided.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        undecided.text()
    );
    assert_eq!(undecided.code(), "database_required");
    assert!(undecided.body["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("eu, us, down"));
    doc.check(&Method::POST, HOLDS, &undecided);
    let down =
        post(json!({"scope_type": "user", "scope_id": "1", "reason": "x", "database": "down"}))
            .await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text()
    );
    doc.check(&Method::POST, HOLDS, &down);
    assert_eq!(
        (
            t.snapshot().await,
            snapshot(&second.superuser().await).await
        ),
        before
    );

    let mut placed = Vec::new();
    for database in ["eu", "us", "eu", "us"] {
        let mut body = user_hold(1, None);
        body["database"] = json!(database);
        let response = post(body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
        assert_eq!(response.body["database"], database);
        placed.push((database, response.body["id"].as_str().unwrap().to_owned()));
    }
    placed.reverse();

    // One list over both, newest first, in pages that cross databases; the
    // database that is down is named on every page.
    let mut seen = Vec::new();
    let mut path = format!("{HOLDS}?limit=1");
    loop {
        let page = call(
            router.clone(),
            request(Method::GET, &path).bearer(&t.platform),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        doc.check(&Method::GET, HOLDS, &page);
        assert_eq!(page.body["unavailable"][0]["database"], "down");
        assert_eq!(
            page.body["unavailable"][0]["error"]["code"],
            "database_unavailable"
        );
        for item in page.body["items"].as_array().unwrap() {
            seen.push((
                item["database"].as_str().unwrap().to_owned(),
                item["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{HOLDS}?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<(String, String)> = placed
        .iter()
        .map(|(db, id)| ((*db).to_owned(), id.clone()))
        .collect();
    assert_eq!(seen, expected);

    // A hold is found in whichever database has it; an id no answering
    // database has may be in the one that is down: 503, not 404.
    let (db, id) = &placed[0];
    assert_eq!(*db, "us");
    let read = call(
        router.clone(),
        request(Method::GET, &hold_path(id)).bearer(&t.platform),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    assert_eq!(read.body["database"], "us");
    let released = call(
        router.clone(),
        request(Method::POST, &release_path(id))
            .bearer(&t.platform)
            .json(&json!({"reason": "done"})),
    )
    .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.text());
    assert_eq!(released.body["database"], "us");
    let released_in_us: i64 = second
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM lifecycle.legal_holds WHERE id = $1::text::uuid AND NOT active",
            &[id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(released_in_us, 1);
    let unknown = call(
        router.clone(),
        request(
            Method::GET,
            &hold_path("00000000-0000-4000-8000-000000000000"),
        )
        .bearer(&t.platform),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        unknown.text()
    );
    doc.check(&Method::GET, HOLD, &unknown);
    second.db.cleanup().await.unwrap();
}
