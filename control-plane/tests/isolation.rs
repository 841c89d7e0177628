//! The tenant-isolation matrix over every route of the API, read from the
//! served `/openapi.json` so that a new route cannot be left out.
//!
//! Callers: a platform admin, the admins of tenants A and B, a subject of A
//! and one of B, no token, a revoked token. Every operation is sent by each
//! of them against tenant A (A's object in the path, A's ids in the query
//! and the body), and answers:
//!
//! - no token: 401 `unauthorized`; a revoked token, and a token of the
//!   wrong kind for the route (an admin token on `/me`, a subject token on
//!   an admin route): 401 `invalid_token`;
//! - the platform admin and A's admin: success on a fresh object of A (a
//!   hold, a job); the audit verification is platform admins' only (403);
//! - B's admin: 404 for anything of A (an object, a target, a hold or job
//!   for A), 200 for lists, with no row of A in them, whatever the filters
//!   or the format (the audit CSV included);
//! - subjects: their own data only (no row of the other tenant);
//! - routes without a token (health, version): 200 for everyone.
//!
//! A route with a path id this test does not know the object of is sent a
//! random id: 404 for every caller of the right kind. Every refused request
//! leaves the extension's tables as they were; every answer is checked
//! against the document. Last, B's view of every list and count is the
//! same before and after A's activity: nothing of A is counted for B.

mod common;
mod tenants;
mod worker_support;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use common::openapi::OpenApiDoc;
use common::{call, request, RequestBuilder, TestResponse};
use serde_json::{json, Map, Value};
use tenants::{Tenant, Tenants};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Platform,
    AdminA,
    AdminB,
    SubjectA,
    SubjectB,
    NoToken,
    Revoked,
}

const CALLERS: [Caller; 7] = [
    // Refused callers first: they must find A's objects untouched.
    Caller::NoToken,
    Caller::Revoked,
    Caller::AdminB,
    Caller::SubjectB,
    Caller::SubjectA,
    Caller::AdminA,
    Caller::Platform,
];

impl Caller {
    fn token(self, t: &Tenants) -> Option<&str> {
        match self {
            Caller::Platform => Some(&t.platform),
            Caller::AdminA => Some(&t.a.admin),
            Caller::AdminB => Some(&t.b.admin),
            Caller::SubjectA => Some(&t.a.subject),
            Caller::SubjectB => Some(&t.b.subject),
            Caller::NoToken => None,
            Caller::Revoked => Some(&t.revoked),
        }
    }

    fn is_admin(self) -> bool {
        matches!(self, Caller::Platform | Caller::AdminA | Caller::AdminB)
    }

    fn is_subject(self) -> bool {
        matches!(self, Caller::SubjectA | Caller::SubjectB)
    }
}

/// One operation of the document.
struct Op {
    method: Method,
    template: String,
    spec: Value,
}

impl Op {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn schemes(&self) -> Vec<String> {
        self.spec["security"]
            .as_array()
            .map(|alternatives| {
                alternatives
                    .iter()
                    .flat_map(|a| a.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn admits(&self, caller: Caller) -> bool {
        let schemes = self.schemes();
        (caller.is_admin() && schemes.iter().any(|s| s == "admin_token"))
            || (caller.is_subject() && schemes.iter().any(|s| s == "subject_token"))
    }

    fn public(&self) -> bool {
        self.schemes().is_empty()
    }

    fn has_id(&self) -> bool {
        self.template.contains("{id}")
    }

    /// Query parameters: (name, required, enum values).
    fn query_params(&self) -> Vec<(String, bool, Vec<String>)> {
        self.spec["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                let values = p["schema"]["enum"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["required"] == true,
                    values,
                )
            })
            .collect()
    }

    /// Whether a call of this operation is about tenant A in particular
    /// (an object, a target, something to create), rather than a list.
    fn targets_a(&self) -> bool {
        self.has_id()
            || self.method != Method::GET
            || self.query_params().iter().any(|(_, required, _)| *required)
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                ops.push(Op {
                    method,
                    template: path.clone(),
                    spec: spec.clone(),
                });
            }
        }
    }
    ops
}

/// The object kinds this test can make for a path with an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hold,
    Job,
}

fn kind_of(template: &str) -> Option<Kind> {
    if template.starts_with("/api/v1/holds/{id}") {
        Some(Kind::Hold)
    } else if template.starts_with("/api/v1/jobs/{id}") {
        Some(Kind::Job)
    } else {
        None
    }
}

/// Everything the matrix makes for tenant A, and the users it has left for
/// new export jobs (one export per subject a day).
struct Fixture {
    t: Tenants,
    doc: OpenApiDoc,
    /// Demo users no request has named yet.
    free_users: Vec<i64>,
    /// Members of A for jobs created through the API.
    free_members: Vec<i64>,
    /// Ids of everything made for A: none may appear in B's answers.
    a_markers: Vec<String>,
}

impl Fixture {
    async fn start() -> Self {
        let t = Tenants::start("cp_isolation").await;
        let doc = OpenApiDoc::load().await;
        let taken = [t.a.user, t.b.user];
        let free_members: Vec<i64> =
            t.a.members
                .iter()
                .copied()
                .filter(|u| !taken.contains(u))
                .take(2)
                .collect();
        let free_users = (1..=i64::from(tenants::DEMO_USERS))
            .filter(|u| !taken.contains(u) && !free_members.contains(u))
            .collect();
        let a_markers = vec![t.a.id.clone()];
        Self {
            t,
            doc,
            free_users,
            free_members,
            a_markers,
        }
    }

    /// A new object of A of this kind; its id.
    async fn make(&mut self, kind: Kind) -> String {
        let a = &self.t.a;
        let id = match kind {
            Kind::Hold => {
                self.t
                    .hold_in_sql("user", &a.user.to_string(), Some(&a.id))
                    .await
            }
            Kind::Job => {
                let user = self.free_users.pop().expect("a demo user left for a job");
                self.t
                    .superuser()
                    .await
                    .query_one(
                        "SELECT lifecycle.request_export('user', $1, $2, 'fixture', 'isolation', true)::text",
                        &[&user.to_string(), &a.id],
                    )
                    .await
                    .expect("request_export")
                    .get(0)
            }
        };
        self.a_markers.push(id.clone());
        id
    }

    /// The value of a query parameter or body property about tenant A.
    fn value(&mut self, name: &str, creating: bool) -> Option<Value> {
        let a: &Tenant = &self.t.a;
        Some(match name {
            "tenant_id" | "tenant" => json!(a.id),
            "target_type" | "subject_type" | "scope_type" => json!("user"),
            "target_id" if creating => {
                json!(self
                    .free_members
                    .pop()
                    .expect("a member of A left")
                    .to_string())
            }
            "target_id" | "subject_id" | "scope_id" => json!(a.user.to_string()),
            "type" => json!("export"),
            "reason" => json!("isolation matrix"),
            "confirm" => json!("delete my account"),
            _ => return None,
        })
    }

    /// The request body of `op` about tenant A, from its schema: every
    /// required property, and the optional ones this test has a value for.
    fn body(&mut self, op: &Op, creating: bool) -> Option<Value> {
        let schema = op.spec["requestBody"]["content"]["application/json"]["schema"].clone();
        if schema.is_null() {
            return None;
        }
        let schema = match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                self.doc.doc["components"]["schemas"][name].clone()
            }
            None => schema,
        };
        let required: Vec<String> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let mut body = Map::new();
        for name in schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            match self.value(&name, creating) {
                Some(value) => {
                    body.insert(name, value);
                }
                None => assert!(
                    !required.contains(&name),
                    "{}: no value for the required property {name}: teach the isolation test",
                    op.name()
                ),
            }
        }
        Some(Value::Object(body))
    }

    /// The request of `op` about tenant A: the object `id` in the path,
    /// A's ids in the query (when `filtered`) and in the body.
    fn request(
        &mut self,
        op: &Op,
        id: Option<&str>,
        filtered: bool,
        extra: &[(String, String)],
        creating: bool,
    ) -> RequestBuilder {
        let mut path = op.template.replace("{id}", id.unwrap_or_default());
        let mut query: Vec<(String, String)> = Vec::new();
        for (name, required, _) in op.query_params() {
            if extra.iter().any(|(given, _)| *given == name) {
                continue;
            }
            if required || filtered {
                match self.value(&name, false) {
                    Some(value) => query.push((name, value.as_str().unwrap().to_owned())),
                    None => assert!(
                        !required,
                        "{}: no value for the required parameter {name}: teach the isolation test",
                        op.name()
                    ),
                }
            }
        }
        query.extend(extra.iter().cloned());
        if !query.is_empty() {
            let encoded: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            path = format!("{path}?{}", encoded.join("&"));
        }
        let builder = request(op.method.clone(), &path);
        match self.body(op, creating) {
            Some(body) => builder.json(&body),
            None => builder,
        }
    }

    async fn send(&self, caller: Caller, builder: RequestBuilder) -> TestResponse {
        let builder = match caller.token(&self.t) {
            Some(token) => builder.bearer(token),
            None => builder,
        };
        call(self.t.router(), builder).await
    }

    /// Panics if a successful answer to a caller of tenant B holds
    /// anything of tenant A.
    fn assert_nothing_of_a(&self, what: &str, response: &TestResponse) {
        if !response.status.is_success() {
            return;
        }
        let text = response.text();
        for marker in &self.a_markers {
            assert!(
                !text.contains(marker.as_str()),
                "{what}: {marker} of tenant A in {text}"
            );
        }
    }
}

/// What a caller must get.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Success,
    /// This status and error code.
    Refused(StatusCode, &'static str),
    /// 404, with the code of an object or target that does not exist.
    Hidden,
}

/// An id no object has.
const UNKNOWN_ID: &str = "6f1c0b9e-8d7a-4c3b-9a2f-0e1d2c3b4a59";

fn expected(op: &Op, caller: Caller, known_object: bool) -> Expect {
    let invalid = Expect::Refused(StatusCode::UNAUTHORIZED, "invalid_token");
    if op.public() {
        return Expect::Success;
    }
    match caller {
        Caller::NoToken => return Expect::Refused(StatusCode::UNAUTHORIZED, "unauthorized"),
        Caller::Revoked => return invalid,
        _ if !op.admits(caller) => return invalid,
        _ => {}
    }
    if op.has_id() && !known_object {
        return Expect::Hidden;
    }
    if caller.is_subject() {
        return Expect::Success;
    }
    if op.template == "/api/v1/audit/verify" && caller != Caller::Platform {
        return Expect::Refused(StatusCode::FORBIDDEN, "forbidden");
    }
    if caller == Caller::AdminB && op.targets_a() {
        return Expect::Hidden;
    }
    // The job made for A is the erasure of a person: an administrator
    // downloads only the bundles of workspace exports.
    if op.template == "/api/v1/jobs/{id}/download" {
        return Expect::Refused(StatusCode::FORBIDDEN, "forbidden");
    }
    Expect::Success
}

#[tokio::test]
async fn every_route_keeps_tenants_apart() {
    let mut f = Fixture::start().await;
    let ops = operations(&f.doc.doc);
    assert!(
        ops.len() >= 20,
        "only {} operations in the document",
        ops.len()
    );
    // A's objects that refused callers aim at.
    let mut shared = BTreeMap::new();
    for kind in [Kind::Hold, Kind::Job] {
        shared.insert(format!("{kind:?}"), f.make(kind).await);
    }
    let mut checked = 0;

    for op in &ops {
        let kind = kind_of(&op.template);
        for caller in CALLERS {
            let expect = expected(op, caller, kind.is_some());
            let id = match (op.has_id(), kind, &expect) {
                (false, _, _) => None,
                (true, None, _) => Some(UNKNOWN_ID.to_owned()),
                // Success changes the object: a fresh one for each caller.
                (true, Some(kind), Expect::Success) => Some(f.make(kind).await),
                (true, Some(kind), _) => Some(shared[&format!("{kind:?}")].clone()),
            };
            let creating = expect == Expect::Success && op.method == Method::POST;
            let builder = f.request(op, id.as_deref(), true, &[], creating);
            let before = f.t.snapshot().await;
            let response = f.send(caller, builder).await;
            let what = format!("{} as {caller:?}", op.name());
            f.doc.check(&op.method, &op.template, &response);
            match expect {
                Expect::Success => assert!(
                    response.status.is_success(),
                    "{what}: expected success, got {}: {}",
                    response.status,
                    response.text()
                ),
                Expect::Refused(status, code) => {
                    assert_eq!(response.status, status, "{what}: {}", response.text());
                    assert_eq!(response.code(), code, "{what}");
                    assert_eq!(f.t.snapshot().await, before, "{what} changed a table");
                }
                Expect::Hidden => {
                    assert_eq!(
                        response.status,
                        StatusCode::NOT_FOUND,
                        "{what}: {}",
                        response.text()
                    );
                    assert_eq!(f.t.snapshot().await, before, "{what} changed a table");
                    if op.has_id() {
                        // The same answer as for an object that does not exist.
                        let builder = f.request(op, Some(UNKNOWN_ID), true, &[], false);
                        let unknown = f.send(caller, builder).await;
                        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{what}");
                        assert_eq!(response.code(), unknown.code(), "{what}");
                        assert_eq!(
                            response.body["error"]["message"], unknown.body["error"]["message"],
                            "{what}"
                        );
                    }
                }
            }
            if matches!(caller, Caller::AdminB | Caller::SubjectB) {
                f.assert_nothing_of_a(&what, &response);
            }
            // Whatever a successful request created for A marks A.
            if response.status.is_success() && !matches!(caller, Caller::SubjectB) {
                if let Some(created) = response.body["id"].as_str() {
                    f.a_markers.push(created.to_owned());
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ops.len() * CALLERS.len());

    // B's view of every list and count is the same after more activity in
    // A: nothing of A is listed or counted for B.
    let before = b_views(&mut f, &ops).await;
    a_activity(&mut f).await;
    let after = b_views(&mut f, &ops).await;
    assert_eq!(before.len(), after.len());
    for ((what, before), (_, after)) in before.iter().zip(&after) {
        assert_eq!(before, after, "{what}: B's view changed with A's activity");
    }
}

/// Holds, jobs and events in tenant A, through the extension and the API.
async fn a_activity(f: &mut Fixture) {
    let hold = f.make(Kind::Hold).await;
    let job = f.make(Kind::Job).await;
    let c = f.t.superuser().await;
    c.execute(
        "SELECT lifecycle.record_event('isolation.a', 'app', 'user', $1, $2)",
        &[&f.t.a.user.to_string(), &f.t.a.id],
    )
    .await
    .unwrap();
    let release =
        f.t.post(
            &format!("/api/v1/holds/{hold}/release"),
            &f.t.a.admin,
            &json!({"reason": "done"}),
        )
        .await;
    assert_eq!(release.status, StatusCode::OK, "{}", release.text());
    let approve =
        f.t.post(
            &format!("/api/v1/jobs/{job}/approve"),
            &f.t.a.admin,
            &json!({}),
        )
        .await;
    assert_eq!(approve.status, StatusCode::OK, "{}", approve.text());
}

/// Every list and count as B's admin and B's subject see them, in every
/// variant of their enumerated parameters (the audit CSV among them),
/// unfiltered and filtered on tenant A: (request, status and body).
async fn b_views(f: &mut Fixture, ops: &[Op]) -> Vec<(String, String)> {
    let mut views = Vec::new();
    for op in ops {
        if op.method != Method::GET || op.targets_a() || op.public() {
            continue;
        }
        for caller in [Caller::AdminB, Caller::SubjectB] {
            if !op.admits(caller) {
                continue;
            }
            let mut variants: Vec<(bool, Vec<(String, String)>)> =
                vec![(false, Vec::new()), (true, Vec::new())];
            for (name, _, values) in op.query_params() {
                for value in values {
                    variants.push((false, vec![(name.clone(), value.clone())]));
                    variants.push((true, vec![(name.clone(), value)]));
                }
            }
            for (filtered, extra) in variants {
                let builder = f.request(op, None, filtered, &extra, false);
                let response = f.send(caller, builder).await;
                let what = format!(
                    "{} as {caller:?} (filtered: {filtered}, {extra:?})",
                    op.name()
                );
                assert!(
                    response.status.is_success() || response.status == StatusCode::FORBIDDEN,
                    "{what}: {}",
                    response.text()
                );
                f.doc.check(&op.method, &op.template, &response);
                f.assert_nothing_of_a(&what, &response);
                views.push((what, format!("{} {}", response.status, response.text())));
            }
        }
    }
    assert!(!views.is_empty());
    views
}
