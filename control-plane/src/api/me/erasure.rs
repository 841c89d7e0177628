//! `POST /api/v1/me/erasure` and `POST /api/v1/me/erasure/cancel`: the
//! subject asks for their own erasure, and takes it back during the
//! cooling-off.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use lifecycle_core::Code;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json as PgJson;
use utoipa::ToSchema;

use super::caller::Me;
use super::state::{self, latest_erasure, MeState};
use crate::api::extract::Json;
use crate::api::jobs::WorkspaceDecision;
use crate::api::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What the subject types to confirm the deletion of their account.
pub const CONFIRMATION: &str = "delete my account";
/// Code of a request without the typed confirmation.
pub const CODE_CONFIRMATION_REQUIRED: &str = "confirmation_required";
/// Code of a cancellation without any erasure request.
pub const CODE_NO_ERASURE_REQUEST: &str = "no_erasure_request";

const REQUEST_ERASURE: &str = "\
    SELECT lifecycle.request_erasure($1, $2, tenant_id => $3, requested_by => $4, reason => $5, \
                                     cooling_off => make_interval(days => $6), \
                                     workspaces => $7::jsonb)";

const CANCEL: &str = "SELECT lifecycle.cancel($1, $2)";

/// Body of `POST /api/v1/me/erasure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "confirm": "delete my account", "reason": "I no longer use the service",
    "workspaces": {"77c54ed7-6815-20ab-0ab5-1fc28a676d41": {"transfer_to": "3"}}
}))]
pub struct ErasureConfirmation {
    /// The typed confirmation: `delete my account` (letter case and
    /// surrounding spaces aside; the pattern says the same, a unit test
    /// keeps them equal).
    #[schema(
        pattern = r"^\s*[Dd][Ee][Ll][Ee][Tt][Ee] [Mm][Yy] [Aa][Cc][Cc][Oo][Uu][Nn][Tt]\s*$",
        example = "delete my account"
    )]
    pub confirm: String,
    /// Why, in the subject's words (optional).
    #[serde(default)]
    pub reason: Option<String>,
    /// A decision for each workspace the subject is the last admin of (as
    /// the erasure preview lists them), by workspace id. The extension
    /// refuses the request (409 `last_admin`) while one is missing.
    #[serde(default)]
    pub workspaces: Option<BTreeMap<String, WorkspaceDecision>>,
}

impl ErasureConfirmation {
    /// 422 unless `confirm` says the confirmation.
    fn check(&self) -> ApiResult<()> {
        if self.confirm.trim().eq_ignore_ascii_case(CONFIRMATION) {
            return Ok(());
        }
        Err(ApiError::unprocessable(format!(
            "to delete your account, type \"{CONFIRMATION}\" as confirm"
        ))
        .with_code(CODE_CONFIRMATION_REQUIRED)
        .with_hint(format!("send {{\"confirm\": \"{CONFIRMATION}\"}}")))
    }

    fn reason(&self) -> Option<&str> {
        super::reason(self.reason.as_deref())
    }

    /// The decisions as the extension's `workspaces` parameter (jsonb).
    fn workspaces_param(&self) -> Option<PgJson<&BTreeMap<String, WorkspaceDecision>>> {
        self.workspaces.as_ref().map(PgJson)
    }
}

/// Request the erasure of the bearer's account, everywhere in their
/// database, after the configured cooling-off (during which they can
/// cancel). The body must carry the typed confirmation `delete my account`;
/// a decision is needed for each workspace the bearer is the last admin of
/// (see the erasure preview). Answers the new state.
#[utoipa::path(
    post,
    path = "/me/erasure",
    tag = "me",
    security(("subject_token" = [])),
    request_body = ErasureConfirmation,
    responses(
        (status = 200, description = "The erasure is requested: the state is pending_deletion until it runs", body = MeState),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse),
        (status = 404, description = "The subject does not exist (target_not_found)", body = crate::error::ErrorResponse),
        (status = 409, description = "An erasure is already pending (duplicate_request; the detail gives its date), the account is already erased, or the bearer is the last admin of a workspace without a decision for it (last_admin, naming the workspaces)", body = crate::error::ErrorResponse),
        (status = 422, description = "Without the typed confirmation (confirmation_required), or a workspace decision the extension refuses", body = crate::error::ErrorResponse)
    )
)]
pub async fn request_erasure(
    State(app): State<AppState>,
    me: Me,
    ctx: RequestContext,
    Json(body): Json<ErasureConfirmation>,
) -> ApiResult<Json<MeState>> {
    let mut client = me.client().await?;
    let (tx, _) = me.begin(&mut client, &ctx).await?;
    body.check()?;
    let workspaces = body.workspaces_param();
    let cooling_off_days = i32::try_from(app.config.me.subject_erasure_cooling_off_days)
        .map_err(ApiError::internal)?;
    let requested = tx
        .query_one(
            REQUEST_ERASURE,
            &[
                &me.subject_type(),
                &me.subject_id(),
                &me.tenant(),
                &me.actor(),
                &body.reason(),
                &cooling_off_days,
                &workspaces,
            ],
        )
        .await;
    if let Err(err) = requested {
        let err = ApiError::from(err);
        if err.code() != Code::DuplicateRequest.name() {
            return Err(err);
        }
        tx.rollback().await?;
        return Err(already_requested(err, &client, &me).await?);
    }
    let state = me.state(&*tx).await?;
    let body = state::read(&*tx, &me, state).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// The database's refusal of a second request, with the pending one's
/// schedule in the subject's words.
async fn already_requested(
    err: ApiError,
    client: &deadpool_postgres::Object,
    me: &Me,
) -> ApiResult<ApiError> {
    let client: &tokio_postgres::Client = client;
    let Some(pending) = latest_erasure(client, me).await? else {
        return Ok(err);
    };
    Ok(err
        .with_detail(format!(
            "Your account is scheduled for deletion on {} (request {}).",
            pending.scheduled_for.to_rfc3339(),
            pending.job_id,
        ))
        .with_hint("To keep your account, cancel it with POST /api/v1/me/erasure/cancel."))
}

/// Cancel the bearer's pending erasure during its cooling-off. Answers the
/// new state. Without any erasure request: 409 `no_erasure_request`; a
/// request that already ran, is running or ended: 409 from the extension
/// (`invalid_job_transition`).
#[utoipa::path(
    post,
    path = "/me/erasure/cancel",
    tag = "me",
    security(("subject_token" = [])),
    responses(
        (status = 200, description = "The erasure is cancelled: the state is active again", body = MeState),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse),
        (status = 409, description = "Nothing to cancel: no erasure request (no_erasure_request), or one that is running or over (invalid_job_transition)", body = crate::error::ErrorResponse)
    )
)]
pub async fn cancel_erasure(me: Me, ctx: RequestContext) -> ApiResult<Json<MeState>> {
    let mut client = me.client().await?;
    let (tx, _) = me.begin(&mut client, &ctx).await?;
    let Some(latest) = latest_erasure(&*tx, &me).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            CODE_NO_ERASURE_REQUEST,
            "there is no deletion of your account to cancel",
        ));
    };
    tx.execute(CANCEL, &[&latest.job_id, &me.actor()]).await?;
    let state = me.state(&*tx).await?;
    let body = state::read(&*tx, &me, state).await?;
    tx.commit().await?;
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: serde_json::Value) -> Result<ErasureConfirmation, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn the_confirmation_must_be_typed() {
        for ok in [
            "delete my account",
            "  Delete My Account ",
            "DELETE MY ACCOUNT",
        ] {
            assert!(
                body(json!({"confirm": ok})).unwrap().check().is_ok(),
                "{ok}"
            );
        }
        for bad in ["", "yes", "delete my acount", "delete  my account", "true"] {
            let err = body(json!({"confirm": bad})).unwrap().check().unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(err.code(), CODE_CONFIRMATION_REQUIRED);
            assert!(err.message().contains(CONFIRMATION), "{}", err.message());
        }
    }

    #[test]
    fn the_documents_pattern_accepts_what_the_check_accepts() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(ErasureConfirmation::schema()).unwrap();
        let confirm = &schema["properties"]["confirm"];
        assert!(confirm["pattern"].is_string(), "{schema}");
        let validator = jsonschema::validator_for(confirm).unwrap();
        for typed in [
            CONFIRMATION,
            "  Delete My Account ",
            "DELETE MY ACCOUNT",
            "delete my acount",
            "delete  my account",
            "yes",
            "",
            "delete my account please",
        ] {
            let checked = body(json!({"confirm": typed})).unwrap().check().is_ok();
            assert_eq!(validator.is_valid(&json!(typed)), checked, "{typed:?}");
        }
    }

    #[test]
    fn decisions_are_typed_and_unknown_fields_refused() {
        let parsed = body(json!({
            "confirm": "delete my account",
            "workspaces": {"a": "erase", "b": {"transfer_to": "7"}}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(parsed.workspaces_param().unwrap().0).unwrap(),
            json!({"a": "erase", "b": {"transfer_to": "7"}})
        );
        for bad in [
            json!({"confirm": "delete my account", "extra": 1}),
            json!({"confirm": "delete my account", "workspaces": {"a": "keep"}}),
            json!({"confirm": "delete my account", "workspaces": {"a": {"transfer_to": "7", "x": 1}}}),
            json!({"confirm": "delete my account", "workspaces": ["a"]}),
            json!({"reason": "no confirm"}),
        ] {
            assert!(body(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn blank_reasons_are_none() {
        let parsed = body(json!({"confirm": CONFIRMATION, "reason": "  "})).unwrap();
        assert_eq!(parsed.reason(), None);
        let parsed = body(json!({"confirm": CONFIRMATION, "reason": " moving on "})).unwrap();
        assert_eq!(parsed.reason(), Some("moving on"));
    }
}
