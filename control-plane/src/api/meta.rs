//! Service metadata: the version, and who the caller is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Json;
use crate::auth::Principal;
use crate::state::AppState;

/// Body of `GET /api/v1/version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
}

/// Who the bearer of the request's token is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhoAmI {
    /// An admin token: its name (the actor the audit log records), its
    /// role (`platform-admin` or `tenant-admin`) and a tenant admin's tenant.
    Admin {
        name: String,
        role: String,
        tenant: Option<String>,
    },
    /// A subject token: the person and the workspace they are signed in to.
    Subject {
        subject_type: String,
        subject_id: String,
        tenant: Option<String>,
    },
}

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(whoami))
}

/// Name and version of the running control plane.
#[utoipa::path(
    get,
    path = "/version",
    tag = "operations",
    responses((status = 200, description = "Name and version", body = VersionInfo))
)]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        name: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// Who the token's bearer is: an admin (name, role, tenant) or a subject.
/// The pages use it to show who is signed in and what they may do.
#[utoipa::path(
    get,
    path = "/whoami",
    tag = "operations",
    security(("admin_token" = []), ("subject_token" = [])),
    responses((status = 200, description = "The caller", body = WhoAmI))
)]
pub async fn whoami(principal: Principal) -> Json<WhoAmI> {
    Json(match principal {
        Principal::Admin(admin) => WhoAmI::Admin {
            role: admin.role.as_str().to_owned(),
            tenant: admin.tenant_scope().map(str::to_owned),
            name: admin.name,
        },
        Principal::Subject(subject) => WhoAmI::Subject {
            subject_type: subject.subject_type,
            subject_id: subject.subject_id,
            tenant: subject.tenant,
        },
    })
}
