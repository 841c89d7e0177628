//! The [`Admin`] extractor: a platform admin (every tenant) or a tenant
//! admin (one tenant), authenticated by an admin token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use uuid::Uuid;

use super::{bearer, invalid_token, record_principal, token, RateKey};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Code of the 503 when the control plane's own tables are missing.
pub const CODE_SETUP_REQUIRED: &str = "setup_required";

/// What an admin token may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRole {
    /// `platform-admin`: every tenant.
    Platform,
    /// `tenant-admin`: one tenant only; other tenants' objects answer 404.
    Tenant(String),
}

impl AdminRole {
    /// Stored and printed name of the role.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminRole::Platform => "platform-admin",
            AdminRole::Tenant(_) => "tenant-admin",
        }
    }

    /// The tenant of a tenant admin.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            AdminRole::Platform => None,
            AdminRole::Tenant(tenant) => Some(tenant),
        }
    }

    /// The role from its stored name and tenant; `None` for a combination
    /// that means nothing (a tenant admin without tenant, a platform admin
    /// with one).
    pub fn from_parts(role: &str, tenant: Option<String>) -> Option<Self> {
        match (role, tenant) {
            ("platform-admin", None) => Some(AdminRole::Platform),
            ("tenant-admin", Some(tenant)) if !tenant.trim().is_empty() => {
                Some(AdminRole::Tenant(tenant))
            }
            _ => None,
        }
    }
}

/// An authenticated admin. The token's `name` is the actor handlers pass to
/// the extension (`requested_by`, `approved_by`, ...): a request body never
/// overrides it, so two tokens are two people for the four-eyes rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub token_id: Uuid,
    pub name: String,
    pub role: AdminRole,
}

impl Admin {
    /// The tenant this admin is confined to; `None` means every tenant.
    pub fn tenant_scope(&self) -> Option<&str> {
        self.role.tenant()
    }

    /// Whether an object of `tenant` (`None`: an object of no tenant) is
    /// visible to this admin. A tenant admin sees only their own tenant's
    /// objects; handlers answer 404 for the others.
    pub fn sees_tenant(&self, tenant: Option<&str>) -> bool {
        match self.tenant_scope() {
            None => true,
            Some(own) => tenant == Some(own),
        }
    }

    /// 404 unless this admin sees `tenant`: the answer for another tenant's
    /// object is the same as for a missing one.
    pub fn require_tenant(&self, tenant: Option<&str>, what: &str) -> ApiResult<()> {
        if self.sees_tenant(tenant) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("{what} not found")))
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let presented = bearer(parts)?;
        let admin = authenticate(state, presented).await?;
        record_principal(&format!("admin:{}", admin.token_id));
        state.auth.limiter.check(&RateKey::Admin(admin.token_id))?;
        Ok(admin)
    }
}

/// Look the token up in the primary database and check it.
async fn authenticate(state: &AppState, presented: &str) -> ApiResult<Admin> {
    let lookup =
        token::lookup_of(presented).ok_or_else(|| invalid_token("an admin token is required"))?;
    let client = state.dbs.primary_client().await?;
    let stored = token::find(&client, lookup)
        .await
        .map_err(setup_hint)?
        .filter(|stored| token::matches(presented, &stored.hash))
        .ok_or_else(|| invalid_token("unknown admin token"))?;
    if stored.revoked {
        return Err(invalid_token("this admin token has been revoked"));
    }
    if stored.stale {
        if let Err(err) = token::touch(&**client, stored.id).await {
            // Not worth failing the request: only the "last used" time is late.
            tracing::warn!(error = %ApiError::from(err), "could not record the token's last use");
        }
    }
    Ok(Admin {
        token_id: stored.id,
        name: stored.name,
        role: stored.role,
    })
}

/// A missing `lifecycled` schema means `lifecycled setup` was not run: say
/// so instead of answering 404 `undefined_table` to every request.
fn setup_hint(err: ApiError) -> ApiError {
    match err.sqlstate() {
        Some("42P01" | "3F000") => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            CODE_SETUP_REQUIRED,
            "the control plane's tables are missing in the primary database",
        )
        .with_hint("run `lifecycled setup`")
        .with_internal(err.to_string()),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(role: AdminRole) -> Admin {
        Admin {
            token_id: Uuid::nil(),
            name: "a".into(),
            role,
        }
    }

    #[test]
    fn tenant_admins_see_their_tenant_only() {
        let platform = admin(AdminRole::Platform);
        assert_eq!(platform.tenant_scope(), None);
        assert!(platform.sees_tenant(Some("acme")));
        assert!(platform.sees_tenant(None));

        let acme = admin(AdminRole::Tenant("acme".into()));
        assert_eq!(acme.tenant_scope(), Some("acme"));
        assert!(acme.sees_tenant(Some("acme")));
        assert!(!acme.sees_tenant(Some("globex")));
        assert!(!acme.sees_tenant(None));
        let err = acme.require_tenant(Some("globex"), "job").unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn roles_round_trip_through_their_stored_form() {
        assert_eq!(
            AdminRole::from_parts("platform-admin", None),
            Some(AdminRole::Platform)
        );
        assert_eq!(
            AdminRole::from_parts("tenant-admin", Some("acme".into())),
            Some(AdminRole::Tenant("acme".into()))
        );
        assert_eq!(AdminRole::from_parts("tenant-admin", None), None);
        assert_eq!(
            AdminRole::from_parts("tenant-admin", Some(" ".into())),
            None
        );
        assert_eq!(
            AdminRole::from_parts("platform-admin", Some("acme".into())),
            None
        );
        assert_eq!(AdminRole::from_parts("root", None), None);
        let role = AdminRole::Tenant("acme".into());
        assert_eq!(
            AdminRole::from_parts(role.as_str(), role.tenant().map(str::to_owned)),
            Some(role)
        );
    }
}
