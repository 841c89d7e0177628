//! Export downloads and the audit log's anchors through the API, against a
//! real database with the demo schema, a real bundle built from it into a
//! local object store, and the router as the service role: the export's
//! states as the subject sees them, the download (its checks, its audit
//! event, its bytes), signed links, 404 for another subject's export, 410
//! after the entitlement; `GET /audit/verify` against anchors in storage,
//! before and after a superuser rewrites the log.

mod common;
mod worker_support;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use chrono::{Duration, Utc};
use common::openapi::OpenApiDoc;
use common::{call, expect, request, user_token, TestService};
use lifecycled::export::{self, Target};
use lifecycled::links::LinkSigner;
use lifecycled::storage::{anchor_key, bundle_key, Storage};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use uuid::Uuid;
use worker_support::load_demo;

const DAVID: &str = "4";
const CAROL: &str = "3";
const DOWNLOAD: &str = "/api/v1/me/exports/{id}/download";
const EXPORTS: &str = "/api/v1/me/exports";
const USER_AGENT: &str = "privacy-center-test/1.0";

/// Build the bundle of `job` as the worker does: claimed, built from one
/// snapshot as the service role, published, completed.
async fn build_bundle(service: &TestService, storage: &Storage, job: Uuid) -> Value {
    let (mut client, conn) = tokio_postgres::connect(&service.service_url(), NoTls)
        .await
        .expect("service session");
    tokio::spawn(conn);
    let claimed: Option<Value> = client
        .query_one(
            "SELECT lifecycle.claim_job('test-worker', interval '1 minute', ARRAY['export'])",
            &[],
        )
        .await
        .expect("claim")
        .get(0);
    assert_eq!(claimed.expect("a job")["id"], job.to_string());
    let row = client
        .query_one(
            "SELECT target_type, target_id, tenant_id FROM lifecycle.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .expect("job");
    let target = Target {
        target_type: row.get(0),
        target_id: row.get(1),
        tenant_id: row.get(2),
    };
    let key = bundle_key("default", job);
    let built = export::build(&mut client, &target, storage, None, &key)
        .await
        .expect("bundle built");
    let bundle = built.publish().await.expect("published");
    let result = bundle.result(Utc::now() + Duration::days(7));
    client
        .execute(
            "SELECT lifecycle.complete_job($1, 'test-worker', $2)",
            &[&job, &result],
        )
        .await
        .expect("complete");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_downloads_their_own_bundle_until_it_expires() {
    let service = TestService::start("api_exports").await;
    let su = service.superuser().await;
    load_demo(&su, 10).await;
    let storage = Storage::open(&service.storage.url(), None).expect("storage");
    let router = service.router();
    let doc = OpenApiDoc::load().await;
    let david = user_token(DAVID, None);
    let carol = user_token(CAROL, None);

    // Requested: pending, nothing to download yet.
    let created = call(
        router.clone(),
        request(Method::POST, EXPORTS)
            .bearer(&david)
            .json(&json!({})),
    )
    .await;
    expect(&created, StatusCode::CREATED, "");
    doc.check(&Method::POST, EXPORTS, &created);
    assert_eq!(created.body["status"], "pending");
    assert_eq!(created.body["download_url"], Value::Null);
    let id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/me/exports/{id}/download");
    let early = call(router.clone(), request(Method::GET, &path).bearer(&david)).await;
    expect(&early, StatusCode::CONFLICT, "invalid_job_transition");
    doc.check(&Method::GET, DOWNLOAD, &early);

    // Built: ready, with its size, expiry and a signed link.
    let result = build_bundle(&service, &storage, id).await;
    let list = call(router.clone(), request(Method::GET, EXPORTS).bearer(&david)).await;
    expect(&list, StatusCode::OK, "");
    doc.check(&Method::GET, EXPORTS, &list);
    let item = &list.body["items"][0];
    assert_eq!(item["status"], "ready", "{item}");
    assert_eq!(item["size_bytes"], result["bundle"]["size"]);
    assert_eq!(item["downloads"], 0);
    let link = item["download_url"]
        .as_str()
        .expect("a signed link")
        .to_owned();
    assert!(link.starts_with(&path), "{link}");
    assert!(link.contains("signature="), "{link}");

    // Another subject, or no token: the link alone is not enough.
    let other = call(router.clone(), request(Method::GET, &link).bearer(&carol)).await;
    expect(&other, StatusCode::NOT_FOUND, "job_not_found");
    doc.check(&Method::GET, DOWNLOAD, &other);
    let anonymous = call(router.clone(), request(Method::GET, &link)).await;
    expect(&anonymous, StatusCode::UNAUTHORIZED, "");

    // The subject: the bundle, byte for byte, audited with the user agent.
    let got = call(
        router.clone(),
        request(Method::GET, &link)
            .bearer(&david)
            .header("user-agent", USER_AGENT),
    )
    .await;
    expect(&got, StatusCode::OK, "");
    doc.check(&Method::GET, DOWNLOAD, &got);
    assert_eq!(got.headers["content-type"], "application/zip");
    assert!(got.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"export-"));
    assert_eq!(got.headers["cache-control"], "no-store");
    let stored = std::fs::read(service.storage.dir.join(bundle_key("default", id))).unwrap();
    assert_eq!(got.bytes, stored);
    assert_eq!(
        hex(&Sha256::digest(&got.bytes)),
        result["bundle"]["sha256"].as_str().unwrap()
    );
    assert_eq!(&got.bytes[..2], b"PK");
    // Without the link, the token alone downloads too (the privacy center).
    let plain = call(router.clone(), request(Method::GET, &path).bearer(&david)).await;
    expect(&plain, StatusCode::OK, "");
    let events = su
        .query(
            "SELECT actor, user_agent, details FROM lifecycle.audit_log \
              WHERE event_type = 'data.export_downloaded' AND subject_id = $1 ORDER BY id",
            &[&DAVID],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].get::<_, String>(0), "user:4");
    assert_eq!(
        events[0].get::<_, Option<String>>(1).as_deref(),
        Some(USER_AGENT)
    );
    assert_eq!(events[0].get::<_, Value>(2)["job_id"], id.to_string());

    // A tampered link, or one whose time has passed.
    let tampered = link.replace("signature=", "signature=A");
    let bad = call(
        router.clone(),
        request(Method::GET, &tampered).bearer(&david),
    )
    .await;
    expect(&bad, StatusCode::FORBIDDEN, "invalid_link");
    doc.check(&Method::GET, DOWNLOAD, &bad);
    let signer = LinkSigner::new(common::SUBJECT_SECRET.as_bytes());
    let stale = format!(
        "{path}?{}",
        signer.query("default", id, Utc::now() - Duration::minutes(1))
    );
    let gone = call(router.clone(), request(Method::GET, &stale).bearer(&david)).await;
    expect(&gone, StatusCode::GONE, "export_expired");
    doc.check(&Method::GET, DOWNLOAD, &gone);
    // A link of another database's export of the same id is refused.
    let elsewhere = format!(
        "{path}?{}",
        signer.query("eu", id, Utc::now() + Duration::days(1))
    );
    let refused = call(
        router.clone(),
        request(Method::GET, &elsewhere).bearer(&david),
    )
    .await;
    expect(&refused, StatusCode::FORBIDDEN, "invalid_link");
    let downloads: i32 = su
        .query_one(
            "SELECT downloads FROM lifecycle.export_bundles WHERE job_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(downloads, 2, "refused downloads are not counted");

    // The entitlement ends: the bundle is deleted, the download is 410.
    storage.delete(&bundle_key("default", id)).await.unwrap();
    su.execute("SELECT lifecycle.expire_export($1, 'sweeper')", &[&id])
        .await
        .unwrap();
    let expired = call(router.clone(), request(Method::GET, &path).bearer(&david)).await;
    expect(&expired, StatusCode::GONE, "export_expired");
    doc.check(&Method::GET, DOWNLOAD, &expired);
    let list = call(router.clone(), request(Method::GET, EXPORTS).bearer(&david)).await;
    assert_eq!(list.body["items"][0]["status"], "expired");
    assert_eq!(list.body["items"][0]["download_url"], Value::Null);

    // A malformed id: the API's own JSON error, nothing internal.
    let malformed = call(
        router.clone(),
        request(Method::GET, "/api/v1/me/exports/not-a-uuid/download").bearer(&david),
    )
    .await;
    expect(&malformed, StatusCode::BAD_REQUEST, "invalid_parameter");
    // An id that is no export at all.
    let unknown = format!("/api/v1/me/exports/{}/download", Uuid::new_v4());
    let missing = call(
        router.clone(),
        request(Method::GET, &unknown).bearer(&david),
    )
    .await;
    expect(&missing, StatusCode::NOT_FOUND, "job_not_found");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An anchor as the worker writes it: the chain heads, write-once.
async fn anchor(storage: &Storage, su: &tokio_postgres::Client, at: chrono::DateTime<Utc>) {
    let heads: Vec<Value> = su
        .query(
            "SELECT jsonb_build_object('chain', chain, 'last_id', last_id, 'last_hash', last_hash, 'events', events) \
               FROM lifecycle.audit_chain_heads()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let body = json!({"database": "default", "written_at": at, "heads": heads});
    storage
        .put_new(&anchor_key("default", at), Bytes::from(body.to_string()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_compares_the_log_with_its_anchors() {
    let service = TestService::start("api_anchors").await;
    let su = service.superuser().await;
    load_demo(&su, 10).await;
    let storage = Storage::open(&service.storage.url(), None).expect("storage");
    let router = service.router();
    let doc = OpenApiDoc::load().await;
    let admin = service.create_token("platform-admin", None).await;
    let verify = || async {
        let r = call(
            router.clone(),
            request(Method::GET, "/api/v1/audit/verify").bearer(&admin),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        doc.check(&Method::GET, "/api/v1/audit/verify", &r);
        r.body
    };

    // No anchor yet: nothing to compare, the chains verify.
    let body = verify().await;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["databases"][0]["anchors"]["anchors"], 0);

    anchor(&storage, &su, Utc::now() - Duration::minutes(2)).await;
    su.execute(
        "SELECT lifecycle.record_event('account.login', 'user:1', 'user', '1', NULL)",
        &[],
    )
    .await
    .unwrap();
    anchor(&storage, &su, Utc::now()).await;
    let body = verify().await;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["databases"][0]["anchors"]["anchors"], 2);
    assert_eq!(body["databases"][0]["anchors"]["mismatches"], json!([]));

    // A superuser rewrites an anchored event and its chain, so that the
    // chain itself verifies again: only the anchors can tell.
    let (id, chain): (i64, i32) = {
        let r = su
            .query_one(
                "SELECT last_id, chain FROM lifecycle.audit_chains WHERE last_id IS NOT NULL ORDER BY last_id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    su.batch_execute(&format!(
        "ALTER TABLE lifecycle.audit_log DISABLE TRIGGER audit_log_append_only;
         DELETE FROM lifecycle.audit_log WHERE id = {id};
         UPDATE lifecycle.audit_chains c
            SET last_id = p.id, last_hash = p.hash, events = c.events - 1
           FROM (SELECT id, hash FROM lifecycle.audit_log WHERE chain = {chain} ORDER BY id DESC LIMIT 1) p
          WHERE c.chain = {chain};
         ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;"
    ))
    .await
    .unwrap();
    let chain_alone: bool = su
        .query_one("SELECT ok FROM lifecycle.verify_audit_log()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(chain_alone, "the rewritten chain verifies on its own");
    let body = verify().await;
    assert_eq!(body["ok"], false, "{body}");
    let found = body["databases"][0]["anchors"]["mismatches"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        found
            .iter()
            .any(|m| m["event_id"] == id && m["problem"] == "missing" && m["chain"] == chain),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m["chain"] == chain && m["problem"] == "rewound"),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_exports_are_for_that_workspaces_admins() {
    let service = TestService::start("api_ws_exports").await;
    let su = service.superuser().await;
    load_demo(&su, 10).await;
    let storage = Storage::open(&service.storage.url(), None).expect("storage");
    let router = service.router();
    let doc = OpenApiDoc::load().await;
    let workspace = |name: &'static str| {
        let su = &su;
        async move {
            su.query_one(
                "SELECT id::text FROM app.workspaces WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    let acme = workspace("Acme Corp").await;
    let globex = workspace("Globex").await;
    let acme_admin = service.create_token("tenant-admin", Some(&acme)).await;
    let globex_admin = service.create_token("tenant-admin", Some(&globex)).await;
    let platform = service.create_token("platform-admin", None).await;
    let new_export = |target_type: &str, target_id: &str| json!({"type": "export", "target_type": target_type, "target_id": target_id});

    // Another workspace's admin cannot even ask.
    let refused = call(
        router.clone(),
        request(Method::POST, "/api/v1/jobs")
            .bearer(&globex_admin)
            .json(&new_export("workspace", &acme)),
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text());

    let created = call(
        router.clone(),
        request(Method::POST, "/api/v1/jobs")
            .bearer(&acme_admin)
            .json(&new_export("workspace", &acme)),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    build_bundle(&service, &storage, id).await;
    let path = format!("/api/v1/jobs/{id}/download");
    let template = "/api/v1/jobs/{id}/download";

    let other = call(
        router.clone(),
        request(Method::GET, &path).bearer(&globex_admin),
    )
    .await;
    expect(&other, StatusCode::NOT_FOUND, "job_not_found");
    doc.check(&Method::GET, template, &other);
    let got = call(
        router.clone(),
        request(Method::GET, &path).bearer(&acme_admin),
    )
    .await;
    expect(&got, StatusCode::OK, "");
    doc.check(&Method::GET, template, &got);
    assert_eq!(&got.bytes[..2], b"PK");
    let by_platform = call(
        router.clone(),
        request(Method::GET, &path).bearer(&platform),
    )
    .await;
    expect(&by_platform, StatusCode::OK, "");
    let actors: Vec<String> = su
        .query(
            "SELECT actor FROM lifecycle.audit_log WHERE event_type = 'data.export_downloaded' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actors.len(), 2);
    assert!(
        actors
            .iter()
            .all(|a| a.starts_with("tenant-admin-") || a.starts_with("platform-admin-")),
        "{actors:?}"
    );

    // A person's export is theirs: an administrator is refused.
    let person = call(
        router.clone(),
        request(Method::POST, "/api/v1/me/exports")
            .bearer(&user_token(DAVID, None))
            .json(&json!({})),
    )
    .await;
    let person_id = person.body["id"].as_str().unwrap();
    let forbidden = call(
        router.clone(),
        request(Method::GET, &format!("/api/v1/jobs/{person_id}/download")).bearer(&platform),
    )
    .await;
    expect(&forbidden, StatusCode::FORBIDDEN, "forbidden");
    doc.check(&Method::GET, template, &forbidden);
}
