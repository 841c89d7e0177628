//! Legal holds: list, read, place, release (admin tokens).
//!
//! Every rule of a hold (what a scope type is, which ids are valid, that an
//! expiry lies ahead, that a released hold stays released) is the
//! extension's: the handlers call `lifecycle.place_hold` and
//! `lifecycle.release_hold` and report their answer. What is decided here is
//! who may see and touch which hold: a tenant admin only the holds of their
//! tenant (another tenant's hold, and a hold over every tenant, answer 404),
//! and the actor the extension records, which is the token's name.

use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use super::fanout::{self, bound_params, Position, Positioned};
use super::jobs::scope;
use super::{Page, PageQuery, RequestContext, API_PREFIX};
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Machine code of the 404 for a hold that does not exist or that the
/// caller may not see (the extension's name for an unknown hold).
pub const CODE_HOLD_NOT_FOUND: &str = "hold_not_found";

/// Columns of a hold as [`Hold::from_row`] reads them.
const HOLD_COLUMNS: &str = "\
    id, scope_type, scope_id, tenant_id, reason, created_by, created_at, expires_at, active, \
    active AND (expires_at IS NULL OR expires_at > pg_catalog.now()) AS in_force, \
    released_at, released_by, release_reason";

/// A legal hold, as `lifecycle.legal_holds` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0b7a4c1e-5f27-4d0e-9a57-1f6f3c1d2e90", "database": "default",
    "scope_type": "user", "scope_id": "42", "tenant_id": "acme",
    "reason": "Litigation 2026-17: preserve the account", "created_by": "legal@corp",
    "created_at": "2026-11-02T09:30:00Z", "expires_at": null,
    "active": true, "in_force": true,
    "released_at": null, "released_by": null, "release_reason": null
}))]
pub struct Hold {
    pub id: Uuid,
    /// The configured name of the database the hold is in.
    pub database: String,
    /// `tenant`, a registered subject type, or a scope a registered table maps.
    pub scope_type: String,
    pub scope_id: String,
    /// The tenant the hold is confined to; `null`: every tenant.
    pub tenant_id: Option<String>,
    pub reason: String,
    /// The admin token's name that placed it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Not released (it may have expired: see `in_force`).
    pub active: bool,
    /// Active and not expired: the hold binds now.
    pub in_force: bool,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

impl Hold {
    fn from_row(database: &str, row: &Row) -> ApiResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            database: database.to_owned(),
            scope_type: row.try_get("scope_type")?,
            scope_id: row.try_get("scope_id")?,
            tenant_id: row.try_get("tenant_id")?,
            reason: row.try_get("reason")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            active: row.try_get("active")?,
            in_force: row.try_get("in_force")?,
            released_at: row.try_get("released_at")?,
            released_by: row.try_get("released_by")?,
            release_reason: row.try_get("release_reason")?,
        })
    }
}

impl Positioned for Hold {
    type Id = Uuid;

    fn position(&self) -> Position<Uuid> {
        Position {
            at: self.created_at,
            database: self.database.clone(),
            id: self.id,
        }
    }
}

/// Filters of `GET /api/v1/holds`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoldFilter {
    /// `true`: holds not released; `false`: released holds.
    pub active: Option<bool>,
    /// `true`: holds that bind now (active and not expired); `false`: the others.
    pub in_force: Option<bool>,
    /// Holds of this tenant only (a tenant admin sees only their own anyway).
    pub tenant_id: Option<String>,
    pub scope_type: Option<String>,
    pub scope_id: Option<String>,
}

/// Body of `POST /api/v1/holds`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "scope_type": "user", "scope_id": "42", "tenant_id": "acme",
    "reason": "Litigation 2026-17: preserve the account", "expires_at": "2027-06-30T00:00:00Z"
}))]
pub struct NewHold {
    /// `tenant`, a registered subject type, or a scope a registered table maps.
    pub scope_type: String,
    pub scope_id: String,
    /// The tenant to confine the hold to; absent: every tenant (platform
    /// admins only; a tenant admin's hold is always confined to their tenant).
    pub tenant_id: Option<String>,
    pub reason: String,
    /// When the hold stops binding by itself; absent: until released.
    pub expires_at: Option<DateTime<Utc>>,
    /// The database to place it in; required when several are configured.
    pub database: Option<String>,
}

/// Body of `POST /api/v1/holds/{id}/release`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Litigation 2026-17 settled"}))]
pub struct ReleaseHold {
    /// Why the hold ends (required, not blank).
    pub reason: String,
}

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_holds, place_hold))
        .routes(routes!(get_hold))
        .routes(routes!(release_hold))
}

/// Legal holds, newest first, across every database.
#[utoipa::path(
    get,
    path = "/holds",
    tag = "holds",
    security(("admin_token" = [])),
    params(HoldFilter, PageQuery),
    responses((status = 200, description = "One page of holds; `unavailable` names the databases that did not answer", body = Page<Hold>))
)]
pub async fn list_holds(
    admin: Admin,
    axum::extract::State(state): axum::extract::State<AppState>,
    Query(filter): Query<HoldFilter>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Hold>>> {
    let scope = admin.tenant_scope();
    let page = fanout::list(&state.dbs, &page, |name, client, bound, limit| {
        let filter = &filter;
        async move {
            let (after_at, after_id) = bound_params(bound);
            let sql = format!(
                "SELECT {HOLD_COLUMNS} FROM lifecycle.legal_holds \
                  WHERE ($1::text IS NULL OR tenant_id = $1) \
                    AND ($2::text IS NULL OR tenant_id = $2) \
                    AND ($3::bool IS NULL OR active = $3) \
                    AND ($4::bool IS NULL OR (active AND (expires_at IS NULL OR expires_at > pg_catalog.now())) = $4) \
                    AND ($5::text IS NULL OR scope_type = $5) \
                    AND ($6::text IS NULL OR scope_id = $6) \
                    AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::uuid)) \
                  ORDER BY created_at DESC, id DESC LIMIT $9"
            );
            let rows = client
                .query(
                    &sql,
                    &[
                        &scope,
                        &filter.tenant_id,
                        &filter.active,
                        &filter.in_force,
                        &filter.scope_type,
                        &filter.scope_id,
                        &after_at,
                        &after_id,
                        &limit,
                    ],
                )
                .await?;
            rows.iter().map(|row| Hold::from_row(&name, row)).collect()
        }
    })
    .await?;
    Ok(Json(page))
}

/// One legal hold.
#[utoipa::path(
    get,
    path = "/holds/{id}",
    tag = "holds",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The hold's id")),
    responses((status = 200, description = "The hold", body = Hold))
)]
pub async fn get_hold(
    admin: Admin,
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Hold>> {
    let (_, hold) = find(&state, &admin, id).await?;
    Ok(Json(hold))
}

/// Place a legal hold. The token's name is recorded as `created_by`; the
/// extension decides whether the scope and ids are valid (422) and records
/// the event (with the caller's IP and user agent) in the audit log. With
/// several databases, the one named, else the one whose tenant table has
/// the tenant.
#[utoipa::path(
    post,
    path = "/holds",
    tag = "holds",
    security(("admin_token" = [])),
    request_body = NewHold,
    responses((status = 201, description = "The hold placed", body = Hold,
               headers(("Location" = String, description = "The hold's URL"))))
)]
pub async fn place_hold(
    admin: Admin,
    ctx: RequestContext,
    axum::extract::State(state): axum::extract::State<AppState>,
    Json(new): Json<NewHold>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Hold>)> {
    let tenant_id = scope::tenant_for(&admin, new.tenant_id)?;
    let database =
        scope::choose_database(&state.dbs, new.database.as_deref(), tenant_id.as_deref()).await?;
    let mut client = state.dbs.client(&database).await?;
    let tx = client.transaction().await?;
    ctx.apply(&*tx).await?;
    let id: Uuid = tx
        .query_one(
            "SELECT lifecycle.place_hold($1, $2, $3, $4, $5, $6)",
            &[
                &new.scope_type,
                &new.scope_id,
                &tenant_id,
                &new.reason,
                &admin.name,
                &new.expires_at,
            ],
        )
        .await?
        .try_get(0)?;
    let hold = read(&*tx, &database, id)
        .await?
        .ok_or_else(|| ApiError::internal("the hold just placed is not there"))?;
    tx.commit().await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("{API_PREFIX}/holds/{id}")) {
        headers.insert(LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(hold)))
}

/// Release a legal hold (a reason is required). The token's name is
/// recorded as `released_by`; jobs the hold blocked become runnable.
#[utoipa::path(
    post,
    path = "/holds/{id}/release",
    tag = "holds",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The hold's id")),
    request_body = ReleaseHold,
    responses(
        (status = 200, description = "The released hold", body = Hold),
        (status = 409, description = "The hold is already released (`hold_already_released`)", body = crate::error::ErrorResponse)
    )
)]
pub async fn release_hold(
    admin: Admin,
    ctx: RequestContext,
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(id): Path<Uuid>,
    Json(release): Json<ReleaseHold>,
) -> ApiResult<Json<Hold>> {
    if release.reason.trim().is_empty() {
        return Err(ApiError::unprocessable("a release needs a reason")
            .with_code(crate::error::CODE_INVALID_REQUEST_BODY)
            .with_hint("say why the hold ends, for the audit log"));
    }
    let (database, _) = find(&state, &admin, id).await?;
    let mut client = state.dbs.client(&database).await?;
    let tx = client.transaction().await?;
    ctx.apply(&*tx).await?;
    tx.execute(
        "SELECT lifecycle.release_hold($1, $2, $3)",
        &[&id, &admin.name, &release.reason],
    )
    .await?;
    let hold = read(&*tx, &database, id)
        .await?
        .ok_or_else(|| ApiError::internal("the hold just released is not there"))?;
    tx.commit().await?;
    Ok(Json(hold))
}

/// The hold `id` in whichever database has it, if `admin` may see it
/// (404 otherwise, the same answer as for a hold that does not exist).
async fn find(state: &AppState, admin: &Admin, id: Uuid) -> ApiResult<(String, Hold)> {
    let found = fanout::locate(&state.dbs, |client: Object| async move {
        // The database's name is filled in below, once it is known.
        read(&**client, "", id).await
    })
    .await?;
    let not_found = || ApiError::not_found("legal hold not found").with_code(CODE_HOLD_NOT_FOUND);
    let (database, mut hold) = found.ok_or_else(not_found)?;
    admin
        .require_tenant(hold.tenant_id.as_deref(), "legal hold")
        .map_err(|_| not_found())?;
    hold.database = database.to_string();
    Ok((database.to_string(), hold))
}

/// The hold `id` of this database, if there is one.
async fn read(client: &impl GenericClient, database: &str, id: Uuid) -> ApiResult<Option<Hold>> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM lifecycle.legal_holds WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| Hold::from_row(database, &row))
        .transpose()
}
