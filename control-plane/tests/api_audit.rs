//! `/api/v1/audit` and `/api/v1/audit/verify`: JSON pages with filters and
//! a keyset cursor, the streamed CSV (its content, several databases, and a
//! 200,000-event log through the real binary in bounded memory), the
//! verification of the hash chains, and what tenant admins see. Every
//! answer is checked against the OpenAPI document.

mod common;
mod tenants;
mod worker_support;

use axum::http::{header, Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, Binary, TestResponse, TestService};
use lifecycled::config::DatabaseSpec;
use lifecycled::{build_router, AppState};
use serde_json::{json, Value};
use tenants::Tenants;

const AUDIT: &str = "/api/v1/audit";
const VERIFY: &str = "/api/v1/audit/verify";

/// Record an event as the application would; returns its id.
async fn record(
    c: &tokio_postgres::Client,
    event_type: &str,
    subject_id: Option<&str>,
    tenant: Option<&str>,
    reason: &str,
) -> i64 {
    c.query_one(
        "SELECT lifecycle.record_event($1, 'app', CASE WHEN $2::text IS NULL THEN NULL ELSE 'user' END, \
                $2, $3, '{\"k\": 1}', NULL, NULL, $4)",
        &[&event_type, &subject_id, &tenant, &reason],
    )
    .await
    .expect("record_event")
    .get(0)
}

/// The database's clock, between two events.
async fn now(c: &tokio_postgres::Client) -> String {
    c.query_one(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Ids of every event matching `condition`, newest first.
async fn ids_where(c: &tokio_postgres::Client, condition: &str) -> Vec<i64> {
    c.query(
        &format!(
            "SELECT id FROM lifecycle.audit_log WHERE {condition} ORDER BY occurred_at DESC, id DESC"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn item_ids(response: &TestResponse) -> Vec<i64> {
    response.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {}", response.text()))
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

/// Follow every page of `query` as `token`; the ids in order.
async fn all_pages(t: &Tenants, doc: &OpenApiDoc, query: &str, token: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut path = format!("{AUDIT}?{query}");
    loop {
        let page = t.get(&path, token).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text());
        doc.check(&Method::GET, AUDIT, &page);
        ids.extend(item_ids(&page));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{AUDIT}?{query}&cursor={cursor}"),
            None => return ids,
        }
    }
}

/// The records of a CSV body, header first.
fn csv_records(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn events_are_listed_newest_first_with_filters_and_pages() {
    let t = Tenants::start("cp_audit_list").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    let a_user = t.a.user.to_string();
    let b_user = t.b.user.to_string();
    record(&c, "test.a", Some(&a_user), Some(&t.a.id), "first").await;
    let from = now(&c).await;
    record(&c, "test.a", Some(&a_user), Some(&t.a.id), "second").await;
    record(&c, "test.b", Some(&b_user), Some(&t.b.id), "b").await;
    let to = now(&c).await;
    record(&c, "test.none", None, None, "platform").await;
    // An action through the API, with the caller's context.
    let placed = call(
        t.router(),
        request(Method::POST, "/api/v1/holds")
            .bearer(&t.a.admin)
            .header("user-agent", "audit-test")
            .json(&json!({"scope_type": "user", "scope_id": a_user, "reason": "keep"})),
    )
    .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());

    // The platform admin pages through everything, in the database's order.
    let everything = ids_where(&c, "true").await;
    assert!(everything.len() > 5);
    assert_eq!(
        all_pages(&t, &doc, "limit=3", &t.platform).await,
        everything
    );

    let first = t.get(AUDIT, &t.platform).await;
    let newest = &first.body["items"][0];
    assert_eq!(newest["event_type"], "legal_hold.placed");
    assert_eq!(newest["actor"], t.a.admin_name);
    assert_eq!(newest["user_agent"], "audit-test");
    assert_eq!(newest["tenant_id"], t.a.id.as_str());
    assert_eq!(newest["database"], "default");

    for (query, condition) in [
        (
            "event_type=test.a".to_owned(),
            "event_type = 'test.a'".to_owned(),
        ),
        (
            format!("subject_type=user&subject_id={a_user}"),
            format!("subject_type = 'user' AND subject_id = '{a_user}'"),
        ),
        (
            format!("tenant_id={}", t.b.id),
            format!("tenant_id = '{}'", t.b.id),
        ),
        (
            format!("from={from}&to={to}"),
            format!("occurred_at >= '{from}' AND occurred_at < '{to}'"),
        ),
    ] {
        let expected = ids_where(&c, &condition).await;
        assert!(!expected.is_empty(), "{condition}");
        assert_eq!(
            all_pages(&t, &doc, &format!("{query}&limit=1"), &t.platform).await,
            expected,
            "{query}"
        );
    }
    let window = all_pages(&t, &doc, &format!("from={from}&to={to}"), &t.platform).await;
    assert_eq!(window.len(), 2, "second and b");

    // A tenant admin sees the events of their tenant, whatever they ask.
    let own = format!("tenant_id = '{}'", t.a.id);
    assert_eq!(
        all_pages(&t, &doc, "limit=2", &t.a.admin).await,
        ids_where(&c, &own).await
    );
    assert!(
        all_pages(&t, &doc, &format!("tenant_id={}", t.b.id), &t.a.admin)
            .await
            .is_empty()
    );
    assert!(all_pages(&t, &doc, "event_type=test.b", &t.a.admin)
        .await
        .is_empty());
    assert!(all_pages(&t, &doc, "event_type=test.none", &t.a.admin)
        .await
        .is_empty());

    // Injection strings are values like any other.
    let injected = t
        .get(
            &format!("{AUDIT}?subject_id=%27%20OR%201%3D1%20--&event_type=x%27%3B%20DROP%20TABLE%20lifecycle.audit_log%3B"),
            &t.platform,
        )
        .await;
    assert_eq!(injected.status, StatusCode::OK, "{}", injected.text());
    assert!(item_ids(&injected).is_empty());

    let before = t.snapshot().await;
    for (query, code) in [
        ("format=xml", "invalid_parameter"),
        ("format=CSV", "invalid_parameter"),
        ("from=yesterday", "invalid_parameter"),
        ("to=2026-13-45T00:00:00Z", "invalid_parameter"),
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=-1", "invalid_parameter"),
        ("cursor=e30", "invalid_cursor"),
        ("format=csv&limit=10", "invalid_parameter"),
        ("format=csv&cursor=e30", "invalid_parameter"),
    ] {
        let response = t.get(&format!("{AUDIT}?{query}"), &t.platform).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            response.text()
        );
        assert_eq!(response.code(), code, "{query}");
        doc.check(&Method::GET, AUDIT, &response);
    }
    assert_eq!(t.snapshot().await, before, "reading changes nothing");
}

#[tokio::test]
async fn the_csv_holds_every_matching_event_with_a_header() {
    let t = Tenants::start("cp_audit_csv").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    for i in 0..3 {
        record(
            &c,
            "test.csv",
            Some(&t.a.user.to_string()),
            Some(&t.a.id),
            &format!("a{i}"),
        )
        .await;
    }
    let formula = record(
        &c,
        "test.csv",
        None,
        Some(&t.b.id),
        "=HYPERLINK(\"http://x\")",
    )
    .await;
    record(
        &c,
        "test.csv",
        None,
        Some(&t.b.id),
        "line one\nline \"two\", three",
    )
    .await;

    let response = t.get(&format!("{AUDIT}?format=csv"), &t.platform).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    doc.check(&Method::GET, AUDIT, &response);
    assert_eq!(
        response.headers[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    assert!(response.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("audit-log.csv"));
    let records = csv_records(&response.bytes);
    assert_eq!(
        records[0],
        [
            "database",
            "id",
            "occurred_at",
            "event_type",
            "actor",
            "subject_type",
            "subject_id",
            "tenant_id",
            "ip",
            "user_agent",
            "reason",
            "details",
            "redacted_at"
        ]
    );
    let expected = ids_where(&c, "true").await;
    let got: Vec<i64> = records[1..].iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(got, expected, "every event, newest first");
    // The JSON list says the same, field for field.
    let page = t.get(&format!("{AUDIT}?limit=500"), &t.platform).await;
    for (record, item) in records[1..]
        .iter()
        .zip(page.body["items"].as_array().unwrap())
    {
        assert_eq!(record[0], item["database"].as_str().unwrap());
        assert_eq!(record[1], item["id"].to_string());
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(&record[2]).unwrap(),
            chrono::DateTime::parse_from_rfc3339(item["occurred_at"].as_str().unwrap()).unwrap()
        );
        assert_eq!(record[3], item["event_type"].as_str().unwrap());
        let reason = item["reason"].as_str().unwrap_or("");
        if item["id"] == formula {
            assert_eq!(
                record[10],
                format!("'{reason}"),
                "a formula is not run by a spreadsheet"
            );
        } else {
            assert_eq!(record[10], reason);
        }
        let details = &record[11];
        if item["details"].is_null() {
            assert_eq!(details, "");
        } else {
            assert_eq!(
                serde_json::from_str::<Value>(details).unwrap(),
                item["details"]
            );
        }
    }

    // Compressed for a client that asks, to its end.
    let gzipped = call(
        t.router(),
        request(Method::GET, &format!("{AUDIT}?format=csv"))
            .bearer(&t.platform)
            .header("accept-encoding", "gzip"),
    )
    .await;
    assert_eq!(gzipped.status, StatusCode::OK);
    assert_eq!(gzipped.headers[header::CONTENT_ENCODING], "gzip");
    assert!(!gzipped.bytes.is_empty());

    // A tenant admin's CSV holds their tenant's events only.
    let response = t.get(&format!("{AUDIT}?format=csv"), &t.a.admin).await;
    assert_eq!(response.status, StatusCode::OK);
    let records = csv_records(&response.bytes);
    let got: Vec<i64> = records[1..].iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(
        got,
        ids_where(&c, &format!("tenant_id = '{}'", t.a.id)).await
    );
    assert!(records[1..].iter().all(|r| r[7] == t.a.id));
    // Filters apply; a filter on another tenant gives the header alone.
    let response = t
        .get(
            &format!("{AUDIT}?format=csv&tenant_id={}", t.b.id),
            &t.a.admin,
        )
        .await;
    assert_eq!(csv_records(&response.bytes).len(), 1);
    let response = t
        .get(
            &format!(
                "{AUDIT}?format=csv&event_type=test.csv&tenant_id={}",
                t.b.id
            ),
            &t.platform,
        )
        .await;
    assert_eq!(csv_records(&response.bytes).len(), 3);
}

#[tokio::test]
async fn several_databases_are_one_log() {
    let t = Tenants::start("cp_audit_multi").await;
    let doc = OpenApiDoc::load().await;
    let second = TestService::start("cp_audit_multi2").await;
    common::setup(&second.db, &t.service.service, false).await;
    let (c1, c2) = (t.superuser().await, second.superuser().await);
    // Alternate, so that the merged order interleaves the two databases.
    for i in 0..4 {
        let c = if i % 2 == 0 { &c1 } else { &c2 };
        record(c, "test.multi", None, Some("t"), &format!("{i}")).await;
    }
    let spec = |name: &str, url: String| DatabaseSpec {
        name: name.into(),
        url,
    };
    let mut config = t.service.config();
    config.db.databases = vec![
        spec("eu", t.service.service_url()),
        spec("us", second.db.url_for(&t.service.service)),
    ];
    let router = build_router(AppState::new(config.clone()).unwrap());
    let get = |path: String| {
        call(
            router.clone(),
            request(Method::GET, &path).bearer(&t.platform),
        )
    };

    let expected = ["3", "2", "1", "0"];
    let mut reasons = Vec::new();
    let mut path = format!("{AUDIT}?event_type=test.multi&limit=1");
    loop {
        let page = get(path.clone()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        doc.check(&Method::GET, AUDIT, &page);
        for item in page.body["items"].as_array().unwrap() {
            reasons.push((
                item["reason"].as_str().unwrap().to_owned(),
                item["database"].clone(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("{AUDIT}?event_type=test.multi&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        reasons,
        expected
            .iter()
            .map(|r| {
                let db = if r.parse::<i32>().unwrap() % 2 == 0 {
                    "eu"
                } else {
                    "us"
                };
                ((*r).to_owned(), json!(db))
            })
            .collect::<Vec<_>>()
    );
    let csv = get(format!("{AUDIT}?event_type=test.multi&format=csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    let records = csv_records(&csv.bytes);
    let got: Vec<(&str, &str)> = records[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[10].as_str()))
        .collect();
    assert_eq!(got, [("us", "3"), ("eu", "2"), ("us", "1"), ("eu", "0")]);

    let verified = get(VERIFY.to_owned()).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    doc.check(&Method::GET, VERIFY, &verified);
    assert_eq!(verified.body["ok"], true);
    assert_eq!(verified.body["databases"].as_array().unwrap().len(), 2);

    // A database that is down: the list says so, the CSV is refused (an
    // export is complete or not given), verification is not ok.
    config
        .db
        .databases
        .push(spec("down", "postgres://nobody@127.0.0.1:1/none".into()));
    config.db.db_timeout_secs = 1;
    let router = build_router(AppState::new(config).unwrap());
    let get = |path: &str| {
        call(
            router.clone(),
            request(Method::GET, path).bearer(&t.platform),
        )
    };
    let page = get(&format!("{AUDIT}?event_type=test.multi")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(item_ids(&page).len(), 4);
    assert_eq!(page.body["unavailable"][0]["database"], "down");
    doc.check(&Method::GET, AUDIT, &page);
    let csv = get(&format!("{AUDIT}?format=csv")).await;
    assert_eq!(
        csv.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        csv.text()
    );
    assert!(csv.headers.contains_key(header::RETRY_AFTER));
    doc.check(&Method::GET, AUDIT, &csv);
    let verified = get(VERIFY).await;
    assert_eq!(verified.status, StatusCode::OK);
    assert_eq!(verified.body["ok"], false);
    assert_eq!(verified.body["unavailable"][0]["database"], "down");
    doc.check(&Method::GET, VERIFY, &verified);
    second.db.cleanup().await.unwrap();
}

#[tokio::test]
async fn verification_finds_tampering_and_is_for_platform_admins() {
    let t = Tenants::start("cp_audit_verify").await;
    let doc = OpenApiDoc::load().await;
    let c = t.superuser().await;
    let victim = record(&c, "test.verify", None, Some(&t.a.id), "original").await;
    let count: i64 = c
        .query_one("SELECT count(*) FROM lifecycle.audit_log", &[])
        .await
        .unwrap()
        .get(0);

    let verified = t.get(VERIFY, &t.platform).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    doc.check(&Method::GET, VERIFY, &verified);
    assert_eq!(
        verified.body,
        json!({"ok": true, "checked": count, "databases": [
            {"database": "default", "ok": true, "checked": count, "first_bad_id": null,
             "anchors": {"anchors": 0, "latest_at": null, "mismatches": []}}
        ]})
    );

    for admin in [&t.a.admin, &t.b.admin] {
        let refused = t.get(VERIFY, admin).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
        assert_eq!(refused.code(), "forbidden");
        doc.check(&Method::GET, VERIFY, &refused);
    }

    // A superuser rewrites history behind the guard's back.
    c.batch_execute(&format!(
        "ALTER TABLE lifecycle.audit_log DISABLE TRIGGER audit_log_append_only; \
         UPDATE lifecycle.audit_log SET reason = 'rewritten' WHERE id = {victim}; \
         ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;"
    ))
    .await
    .unwrap();
    let verified = t.get(VERIFY, &t.platform).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    doc.check(&Method::GET, VERIFY, &verified);
    assert_eq!(verified.body["ok"], false);
    assert_eq!(verified.body["databases"][0]["ok"], false);
    assert_eq!(verified.body["databases"][0]["first_bad_id"], victim);
}

/// Resident memory of process `pid` now and at its peak, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A 200,000-event log (about 115 MiB of CSV) streams through the real
/// binary while its resident memory stays within a few megabytes of where
/// it started: the CSV is never held in memory.
#[tokio::test]
async fn a_large_log_streams_as_csv_in_bounded_memory() {
    const EVENTS: i64 = 200_000;
    const BATCH: i64 = 2_000;
    /// Allowed growth of the peak resident memory while streaming.
    const BOUND_KIB: u64 = 32 * 1024;

    let service = TestService::start("cp_audit_large").await;
    let admin = service.create_token("platform-admin", None).await;
    let c = service.superuser().await;
    // In batches: one transaction appending to the same chain heads
    // hundreds of thousands of times slows down with its own dead versions.
    for start in (0..EVENTS).step_by(BATCH as usize) {
        c.execute(
            "SELECT count(lifecycle.record_event('test.large', 'app', 'user', (i % 1000)::text, \
                    't' || (i % 10), jsonb_build_object('n', i, 'pad', repeat('x', 500)))) \
               FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) i",
            &[&start, &BATCH],
        )
        .await
        .expect("generate events");
    }

    let binary = Binary::serve(
        &["--database-url", &service.service_url(), "--no-worker"],
        &[],
    )
    .await;
    let pid = binary.child.id().expect("running");
    let client = reqwest::Client::new();
    // Warm up (pools, first query) before the baseline is taken.
    let warm = client
        .get(binary.url(&format!("{AUDIT}?limit=500")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::OK);
    warm.bytes().await.unwrap();
    let (baseline, peak_before) = memory_kib(pid);

    let mut response = client
        .get(binary.url(&format!("{AUDIT}?format=csv&event_type=test.large")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (mut bytes, mut lines, mut largest_rss) = (0u64, 0i64, baseline);
    let mut next_sample = 0u64;
    while let Some(chunk) = response.chunk().await.expect("the body streams to its end") {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as i64;
        if bytes >= next_sample {
            largest_rss = largest_rss.max(memory_kib(pid).0);
            next_sample += 1 << 20;
        }
    }
    let (after, peak) = memory_kib(pid);
    eprintln!(
        "audit CSV: {EVENTS} events, {} MiB streamed; service RSS {} MiB before, largest sampled {} MiB, \
         peak {} MiB (peak before {} MiB), {} MiB after",
        bytes >> 20,
        baseline >> 10,
        largest_rss >> 10,
        peak >> 10,
        peak_before >> 10,
        after >> 10
    );
    assert_eq!(lines, EVENTS + 1, "the header and every event");
    assert!(bytes > 100 << 20, "the CSV is large ({bytes} bytes)");
    assert!(
        peak.saturating_sub(baseline.max(peak_before)) < BOUND_KIB,
        "peak resident memory grew by {} KiB while streaming {} MiB",
        peak.saturating_sub(baseline.max(peak_before)),
        bytes >> 20
    );
    let (status, _) = binary.terminate().await;
    assert!(status.success());
}
