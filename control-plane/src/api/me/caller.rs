//! [`Me`]: the bearer of a subject token, placed in the database that holds
//! them, and the check that the token names a registered subject.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use deadpool_postgres::{Object, Transaction};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::api::jobs::scope::{choose_database, CODE_DATABASE_REQUIRED};
use crate::api::RequestContext;
use crate::auth::{invalid_token, Subject};
use crate::db::Database;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The 401 of every `/me` route, as the OpenAPI document says it.
pub(super) const UNAUTHORIZED: &str = "Missing, invalid or expired subject token, an admin token, or a subject type the data map does not register";

/// The subject's state in the extension (`lifecycle.subject_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectState {
    /// Nothing is pending.
    Active,
    /// An erasure is requested and has not run yet (it can be cancelled
    /// while it waits).
    PendingDeletion,
    /// An erasure ran.
    Erased,
}

impl SubjectState {
    fn parse(text: &str) -> ApiResult<Self> {
        match text {
            "active" => Ok(Self::Active),
            "pending_deletion" => Ok(Self::PendingDeletion),
            "erased" => Ok(Self::Erased),
            other => Err(ApiError::internal(format!(
                "lifecycle.subject_state() answered {other:?}"
            ))),
        }
    }
}

/// `NULL` when the data map registers no subject table of the type (a
/// tenant is not a subject either), else the subject's state.
const CHECK_SUBJECT: &str = "\
    SELECT CASE WHEN EXISTS (SELECT 1 FROM lifecycle.data_map \
                              WHERE kind = 'subject' AND subject_type = $1) \
                THEN lifecycle.subject_state($1, $2) END";

/// What the host application does about a subject token that places the
/// person in no database, or in several.
const TENANT_HINT: &str = "the host application names in the token's tenant claim the workspace the person is signed in to, which exactly one configured database holds";

/// A data subject acting on their own data, in their own database.
///
/// With one database configured, that one. With several, the one whose
/// tenant table holds the token's `tenant` (the workspace the person is
/// signed in to), as for a new job: a token without `tenant` is refused
/// there (401), a workspace no database or several hold is 422
/// `database_required`, and one found nowhere while a database did not
/// answer is 503.
#[derive(Clone)]
pub struct Me {
    pub subject: Subject,
    pub database: Database,
}

impl Me {
    /// The actor the extension records for the subject's own requests.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.subject.subject_type, self.subject.subject_id)
    }

    pub fn subject_type(&self) -> &str {
        &self.subject.subject_type
    }

    pub fn subject_id(&self) -> &str {
        &self.subject.subject_id
    }

    /// The workspace the token names.
    pub fn tenant(&self) -> Option<&str> {
        self.subject.tenant.as_deref()
    }

    /// The configured name of the subject's database.
    pub fn database_name(&self) -> String {
        self.database.name.to_string()
    }

    /// A pooled connection to the subject's database.
    pub async fn client(&self) -> ApiResult<Object> {
        self.database.client().await
    }

    /// A transaction in the subject's database with the request's context
    /// applied (the audit events it causes carry the caller's IP and user
    /// agent), after checking that the token names a registered subject
    /// type; answers the subject's state.
    pub async fn begin<'c>(
        &self,
        client: &'c mut Object,
        ctx: &RequestContext,
    ) -> ApiResult<(Transaction<'c>, SubjectState)> {
        let tx = client.transaction().await?;
        ctx.apply(&*tx).await?;
        let state = self.state(&*tx).await?;
        Ok((tx, state))
    }

    /// 401 unless the data map registers the token's subject type; the
    /// subject's state otherwise (read again after an action).
    pub async fn state(&self, client: &impl GenericClient) -> ApiResult<SubjectState> {
        let row = client
            .query_one(CHECK_SUBJECT, &[&self.subject_type(), &self.subject_id()])
            .await?;
        match row.get::<_, Option<String>>(0) {
            Some(state) => SubjectState::parse(&state),
            None => Err(invalid_token(format!(
                "the subject token's subject_type \"{}\" is not a registered subject type",
                self.subject_type()
            ))
            .with_hint("the host application signs subject tokens with a subject_type registered with lifecycle.register_subject()")),
        }
    }
}

impl FromRequestParts<AppState> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let subject = Subject::from_request_parts(parts, state).await?;
        let database = locate(state, &subject).await?;
        Ok(Self { subject, database })
    }
}

/// The database that holds the subject (see [`Me`]): as a new job's, by
/// the workspace, with what a subject can do about it in the hints.
async fn locate(state: &AppState, subject: &Subject) -> ApiResult<Database> {
    let dbs = &state.dbs;
    let tenant = subject.tenant.as_deref();
    if tenant.is_none() && dbs.iter().nth(1).is_some() {
        return Err(invalid_token(
            "the subject token names no tenant, and this server serves several databases",
        )
        .with_hint(TENANT_HINT));
    }
    let name = choose_database(dbs, None, tenant).await.map_err(|err| {
        if err.code() == CODE_DATABASE_REQUIRED {
            err.with_hint(TENANT_HINT)
        } else {
            err
        }
    })?;
    dbs.get_or_404(&name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_the_extensions() {
        for (text, state) in [
            ("active", SubjectState::Active),
            ("pending_deletion", SubjectState::PendingDeletion),
            ("erased", SubjectState::Erased),
        ] {
            assert_eq!(SubjectState::parse(text).unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), text);
        }
        assert!(SubjectState::parse("gone").is_err());
    }
}
