//! Two tenants of the demo schema and a token for every kind of caller:
//! the fixture of the hold, audit and isolation tests.
//!
//! Tenant A and tenant B are the demo's first two workspaces; each has a
//! member who belongs to no other workspace (their subject), and an admin
//! token. A platform admin token and a revoked token come with them.
//!
//! Test files that use it declare `mod common; mod tenants; mod worker_support;`.

#![allow(dead_code)]

use axum::http::{Method, StatusCode};
use axum::Router;
use lifecycled::auth::token;
use lifecycled::AppState;

use crate::common::{call, request, user_token, TestResponse, TestService};
use crate::worker_support::load_demo;

/// Users the demo generates (and workspaces: one per five users).
pub const DEMO_USERS: i32 = 15;

/// One tenant and the callers that belong to it.
pub struct Tenant {
    /// The workspace's id (the tenant id of the data map).
    pub id: String,
    /// A member of this workspace only, not one of its admins.
    pub user: i64,
    /// Every member of the workspace, [`Self::user`] included.
    pub members: Vec<i64>,
    /// A tenant-admin token of this tenant, and its name.
    pub admin: String,
    pub admin_name: String,
    /// A subject token of [`Self::user`], signed in to this tenant.
    pub subject: String,
}

/// The fixture: a prepared database with the demo data, two tenants, a
/// platform admin and a revoked token.
pub struct Tenants {
    pub service: TestService,
    /// The service's router (one state, so one pool, for every request;
    /// no rate limit: the tests send many requests per token).
    router: Router,
    pub a: Tenant,
    pub b: Tenant,
    pub platform: String,
    pub platform_name: String,
    /// A platform-admin token that has been revoked.
    pub revoked: String,
}

impl Tenants {
    pub async fn start(prefix: &str) -> Self {
        let service = TestService::start(prefix).await;
        let c = service.superuser().await;
        load_demo(&c, DEMO_USERS).await;
        let rows = c
            .query(
                "SELECT w.id::text, \
                        (SELECT m.user_id FROM app.memberships m \
                          WHERE m.workspace_id = w.id \
                            AND m.role NOT IN ('owner', 'admin') \
                            AND NOT EXISTS (SELECT 1 FROM app.memberships o \
                                             WHERE o.user_id = m.user_id AND o.workspace_id <> w.id) \
                          ORDER BY m.user_id LIMIT 1), \
                        ARRAY(SELECT m.user_id FROM app.memberships m \
                               WHERE m.workspace_id = w.id ORDER BY m.user_id) \
                   FROM app.workspaces w ORDER BY w.created_at, w.id LIMIT 2",
                &[],
            )
            .await
            .expect("workspaces");
        assert_eq!(rows.len(), 2, "the demo has two workspaces");
        let mut tenants = Vec::new();
        for row in &rows {
            let id: String = row.get(0);
            let user: i64 = row
                .get::<_, Option<i64>>(1)
                .expect("a member of one workspace only");
            let members: Vec<i64> = row.get(2);
            let admin_name = format!("admin-{}", &id[..8]);
            let (_, admin) = service
                .create_named_token(&admin_name, "tenant-admin", Some(&id))
                .await;
            let subject = user_token(&user.to_string(), Some(&id));
            tenants.push(Tenant {
                id,
                user,
                members,
                admin,
                admin_name,
                subject,
            });
        }
        let b = tenants.pop().expect("tenant b");
        let a = tenants.pop().expect("tenant a");
        let platform_name = "platform-admin".to_owned();
        let (_, platform) = service
            .create_named_token(&platform_name, "platform-admin", None)
            .await;
        let (_, revoked) = service
            .create_named_token("revoked-admin", "platform-admin", None)
            .await;
        token::revoke(&c, "revoked-admin")
            .await
            .expect("revoke")
            .expect("the token exists");
        let mut config = service.config();
        config.rate_limit_per_second = 0;
        let router = lifecycled::build_router(AppState::new(config).expect("valid config"));
        Self {
            service,
            router,
            a,
            b,
            platform,
            platform_name,
            revoked,
        }
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// A superuser session in the database.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        self.service.superuser().await
    }

    /// `GET path` as the bearer of `token`.
    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        call(self.router(), request(Method::GET, path).bearer(token)).await
    }

    /// `POST path` with a JSON body as the bearer of `token`.
    pub async fn post(&self, path: &str, token: &str, body: &serde_json::Value) -> TestResponse {
        call(
            self.router(),
            request(Method::POST, path).bearer(token).json(body),
        )
        .await
    }

    /// Place a hold through the extension as a superuser (not through the
    /// API under test); returns its id.
    pub async fn hold_in_sql(
        &self,
        scope_type: &str,
        scope_id: &str,
        tenant: Option<&str>,
    ) -> String {
        self.superuser()
            .await
            .query_one(
                "SELECT lifecycle.place_hold($1, $2, $3, 'fixture hold', 'fixture')::text",
                &[&scope_type, &scope_id, &tenant],
            )
            .await
            .expect("place_hold")
            .get(0)
    }

    /// Every row of the extension's tables a refused request must leave
    /// alone (holds, jobs, audit log, chain heads), as text, in a stable
    /// order: compare before and after.
    pub async fn snapshot(&self) -> Vec<String> {
        snapshot(&self.superuser().await).await
    }
}

/// [`Tenants::snapshot`] of any database.
pub async fn snapshot(c: &tokio_postgres::Client) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "lifecycle.legal_holds",
        "lifecycle.jobs",
        "lifecycle.audit_log",
        "lifecycle.audit_chains",
    ] {
        for row in c
            .query(
                &format!("SELECT t::text FROM {table} t ORDER BY t::text"),
                &[],
            )
            .await
            .expect("snapshot")
        {
            rows.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    rows
}

/// A kind of caller and what it may reach of each tenant: the access
/// matrix every tenant-scoped admin route answers the same way.
pub struct Caller<'t> {
    pub who: &'static str,
    /// The bearer token; `None` for a request without one.
    pub token: Option<&'t str>,
    /// The status of a request for something of tenant A, of tenant B.
    pub sees_a: StatusCode,
    pub sees_b: StatusCode,
}

impl Tenants {
    /// Every kind of caller of an admin route about one tenant's data: the
    /// platform admin sees both tenants, a tenant admin theirs only (the
    /// other's is 404, as if it did not exist), subject tokens, a revoked
    /// token and no token none (401).
    pub fn callers(&self) -> [Caller<'_>; 7] {
        let caller = |who, token, sees_a, sees_b| Caller {
            who,
            token,
            sees_a,
            sees_b,
        };
        let (ok, hidden, refused) = (
            StatusCode::OK,
            StatusCode::NOT_FOUND,
            StatusCode::UNAUTHORIZED,
        );
        [
            caller("platform", Some(self.platform.as_str()), ok, ok),
            caller("admin A", Some(self.a.admin.as_str()), ok, hidden),
            caller("admin B", Some(self.b.admin.as_str()), hidden, ok),
            caller("subject A", Some(self.a.subject.as_str()), refused, refused),
            caller("subject B", Some(self.b.subject.as_str()), refused, refused),
            caller("revoked", Some(self.revoked.as_str()), refused, refused),
            caller("no token", None, refused, refused),
        ]
    }

    /// `GET path` as the bearer of `token`, or without a token.
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> TestResponse {
        let req = request(Method::GET, path);
        let req = match token {
            Some(token) => req.bearer(token),
            None => req,
        };
        call(self.router(), req).await
    }
}
