//! Where a request acts: which tenants an admin may name, and which
//! database a new job (or a preview) goes to. Shared by the jobs and the
//! erasure preview, and by any resource created in one database.

use std::sync::Arc;

use axum::http::StatusCode;

use crate::api::fanout;
use crate::auth::Admin;
use crate::db::{partition, Databases};
use crate::error::{ApiError, ApiResult};

/// Machine code of the 422 for a request that must name its database.
pub const CODE_DATABASE_REQUIRED: &str = "database_required";

/// Target types that name a tenant (a workspace) rather than a subject,
/// as `lifecycle.request_erasure` reads them.
pub const TENANT_TARGET_TYPES: [&str; 2] = ["tenant", "workspace"];

/// The tenant a request acts in: for a platform admin the one given (or
/// none), for a tenant admin their own (given or not). Another tenant is
/// 404, as for any object of another tenant.
pub fn tenant_for(admin: &Admin, requested: Option<String>) -> ApiResult<Option<String>> {
    match (admin.tenant_scope(), requested) {
        (None, requested) => Ok(requested),
        (Some(own), None) => Ok(Some(own.to_owned())),
        (Some(own), Some(requested)) if requested == own => Ok(Some(requested)),
        (Some(_), Some(_)) => Err(tenant_not_found()),
    }
}

/// 404 unless the admin sees the target: a workspace target is a tenant,
/// which a tenant admin may only name when it is theirs; a subject is a
/// person, whom a tenant admin may only name when they are a member of the
/// admin's workspace (`lifecycle.is_member` in the job's database). An
/// erasure covers the person everywhere, so a tenant admin must not reach
/// people of other workspaces through it.
pub async fn require_target(
    dbs: &Databases,
    database: &str,
    admin: &Admin,
    target_type: &str,
    target_id: &str,
) -> ApiResult<()> {
    let Some(own) = admin.tenant_scope() else {
        return Ok(());
    };
    if TENANT_TARGET_TYPES.contains(&target_type) {
        return if target_id == own {
            Ok(())
        } else {
            Err(tenant_not_found())
        };
    }
    let client = dbs.client(database).await?;
    let member: bool = client
        .query_one(
            "SELECT lifecycle.is_member($1, $2, $3)",
            &[&target_type, &target_id, &own],
        )
        .await?
        .get(0);
    if member {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no {target_type} with this id is a member of your workspace"
        )))
    }
}

fn tenant_not_found() -> ApiError {
    ApiError::not_found("tenant not found")
}

/// The database a new object goes to: as [`fanout::target`] decides (the
/// one named, or the only one configured), else the one database whose
/// tenant table has `tenant`. Otherwise 422 `database_required`; 503 when
/// the tenant was found nowhere and a database did not answer.
pub async fn choose_database(
    dbs: &Databases,
    named: Option<&str>,
    tenant: Option<&str>,
) -> ApiResult<Arc<str>> {
    let undecided = match fanout::target(dbs, named) {
        Ok(database) => return Ok(database.name.clone()),
        Err(err) if named.is_some() => return Err(err),
        Err(err) => err,
    };
    let Some(tenant) = tenant else {
        return Err(undecided);
    };
    let answers = dbs
        .fan_out(|_, client| async move {
            client
                .query_opt(
                    "SELECT 1 FROM lifecycle.tenant_names(ARRAY[$1::text])",
                    &[&tenant],
                )
                .await
                .map(|row| row.is_some())
                .map_err(ApiError::from)
        })
        .await;
    let (answered, unavailable) = partition(answers);
    let holding: Vec<Arc<str>> = answered
        .into_iter()
        .filter_map(|(name, has)| has.then_some(name))
        .collect();
    match (holding.as_slice(), unavailable.first()) {
        ([one], _) => Ok(one.clone()),
        ([], Some(down)) => Err(ApiError::database_unavailable(format!(
            "database \"{}\" did not answer, and no other has the tenant",
            down.database
        ))),
        ([], None) => Err(database_required(
            "no configured database has this tenant in its tenant table",
        )),
        (several, _) => Err(database_required(format!(
            "the tenant is in several databases: {}",
            several
                .iter()
                .map(|n| n.as_ref())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn database_required(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        CODE_DATABASE_REQUIRED,
        message,
    )
    .with_hint("name the database with \"database\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AdminRole;

    fn admin(role: AdminRole) -> Admin {
        Admin {
            token_id: uuid::Uuid::nil(),
            name: "a".into(),
            role,
        }
    }

    #[test]
    fn tenant_admins_act_in_their_tenant_only() {
        let platform = admin(AdminRole::Platform);
        assert_eq!(tenant_for(&platform, None).unwrap(), None);
        assert_eq!(
            tenant_for(&platform, Some("globex".into()))
                .unwrap()
                .as_deref(),
            Some("globex")
        );
        let acme = admin(AdminRole::Tenant("acme".into()));
        assert_eq!(tenant_for(&acme, None).unwrap().as_deref(), Some("acme"));
        assert_eq!(
            tenant_for(&acme, Some("acme".into())).unwrap().as_deref(),
            Some("acme")
        );
        let err = tenant_for(&acme, Some("globex".into())).unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }
}
