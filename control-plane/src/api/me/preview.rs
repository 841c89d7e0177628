//! `GET /api/v1/me/erasure-preview`: what an erasure of the bearer would
//! do, from `lifecycle.preview_erasure`, in words the privacy center can
//! show: per kind of data (the data map's labels), what becomes of it and
//! why, and the workspaces the bearer must decide about first.

use axum::extract::State;
use lifecycle_core::Code;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::caller::{Me, SubjectState};
use crate::api::extract::Json;
use crate::api::preview::{plan, PreviewAction, PreviewStep};
use crate::api::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const TENANT_NAMES: &str = "SELECT tenant_id, name FROM lifecycle.tenant_names($1::text[])";

/// The preview's `reason` of the subject's own row.
const SUBJECT_ROW: &str = "subject row, kept as a tombstone";

/// Body of `GET /api/v1/me/erasure-preview`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "database": "default", "subject_type": "user", "subject_id": "42", "state": "active",
    "cooling_off_days": 14,
    "items": [
        {"label": "Login sessions", "rows": 2, "outcome": "deleted", "explanation": "Deleted."},
        {"label": "Posts", "rows": 4, "outcome": "kept", "explanation": "Stays where it is, shown as written by a deleted user."},
        {"label": "Invoices", "rows": 12, "outcome": "retained", "retained_for": "7 years",
         "legal_basis": "Tax law: invoices must be kept 7 years",
         "explanation": "Kept for 7 years because the law requires it (Tax law: invoices must be kept 7 years), then deleted."}
    ],
    "stored_files": 1, "mentions_elsewhere": 0,
    "workspaces_needing_decision": [{"workspace_id": "77c54ed7-6815-20ab-0ab5-1fc28a676d41", "name": "Acme Corp"}]
}))]
pub struct ErasurePreview {
    pub database: String,
    pub subject_type: String,
    pub subject_id: String,
    /// The subject's state now.
    pub state: SubjectState,
    /// Days between the request and the earliest time it runs (the
    /// request can be cancelled until then).
    pub cooling_off_days: u32,
    /// What becomes of each kind of data, in the order the erasure goes.
    pub items: Vec<PreviewItem>,
    /// Uploaded files deleted from storage.
    pub stored_files: u64,
    /// Rows of other people's content that mention the subject (by name,
    /// e-mail address, ...): counted; where the data map says so, the
    /// mentions are redacted (an item with outcome `redacted`).
    pub mentions_elsewhere: u64,
    /// Workspaces the subject is the only admin of: the request needs a
    /// decision for each (`"erase"` or `{"transfer_to": "<member id>"}`).
    pub workspaces_needing_decision: Vec<WorkspaceNeedingDecision>,
}

/// One kind of data and what erasure does to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewItem {
    /// The data map's label of the table ("Posts", "Login sessions").
    pub label: String,
    /// How many rows.
    pub rows: u64,
    pub outcome: Outcome,
    /// The outcome in a sentence, for the subject.
    pub explanation: String,
    /// The fields changed, where the outcome changes some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// How long retained rows are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_for: Option<String>,
    /// Why retained rows are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// The workspace a decision concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// What erasure does to rows of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Removed.
    Deleted,
    /// Kept, with the fields that identify the subject replaced or cleared.
    Anonymized,
    /// Kept as is, attributed to the anonymized subject (content of a
    /// workspace).
    Kept,
    /// Kept unchanged for a legal period, then deleted.
    Retained,
    /// Kept, no longer linked to the subject.
    Detached,
    /// Kept, with the mentions of the subject replaced by `[redacted]`.
    Redacted,
    /// Handed over to another member.
    Transferred,
    /// Not handed over (the member chosen has no membership row there).
    NotTransferred,
}

/// A workspace the subject is the last admin of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceNeedingDecision {
    pub workspace_id: String,
    /// Its display name, when the data map names workspaces.
    pub name: Option<String>,
}

/// The step as the subject reads it; `None` for the deletion of stored
/// objects, which [`ErasurePreview::stored_files`] counts.
fn item(step: PreviewStep) -> Option<PreviewItem> {
    let (outcome, explanation) = match step.action {
        PreviewAction::ObjectsDeleted => return None,
        PreviewAction::Deleted => (Outcome::Deleted, "Deleted.".to_owned()),
        PreviewAction::Anonymized if step.reason.as_deref() == Some(SUBJECT_ROW) => (
            Outcome::Anonymized,
            "Your account stays as an anonymous placeholder: these fields are cleared or replaced."
                .to_owned(),
        ),
        PreviewAction::Anonymized => (
            Outcome::Anonymized,
            "Stays, with what identifies you cleared or replaced.".to_owned(),
        ),
        PreviewAction::Kept => (
            Outcome::Kept,
            "Stays where it is, shown as written by a deleted user.".to_owned(),
        ),
        PreviewAction::Retained => (
            Outcome::Retained,
            format!(
                "Kept for {} because the law requires it ({}), then deleted.",
                step.retain_for.as_deref().unwrap_or("a legal period"),
                step.legal_basis.as_deref().unwrap_or("legal obligation")
            ),
        ),
        PreviewAction::Detached => (
            Outcome::Detached,
            "Stays, no longer linked to you.".to_owned(),
        ),
        PreviewAction::Redacted => (
            Outcome::Redacted,
            "Stays, with the mentions of you replaced by [redacted].".to_owned(),
        ),
        PreviewAction::OwnershipTransferred => (
            Outcome::Transferred,
            "Handed over to the member you chose.".to_owned(),
        ),
        PreviewAction::NotTransferred => (
            Outcome::NotTransferred,
            "Not handed over: the member you chose has no membership there.".to_owned(),
        ),
    };
    Some(PreviewItem {
        label: step.label.unwrap_or_default(),
        rows: step.rows,
        outcome,
        explanation,
        fields: step.columns.unwrap_or_default(),
        retained_for: step.retain_for,
        legal_basis: step.legal_basis,
        workspace: step.workspace,
    })
}

/// What an erasure of the bearer would do, changing nothing: what is
/// deleted, what stays anonymized, what the law makes us keep and for how
/// long, and the workspaces the bearer must decide about before asking.
/// Legal holds are not shown to the subject.
#[utoipa::path(
    get,
    path = "/me/erasure-preview",
    tag = "me",
    security(("subject_token" = [])),
    responses(
        (status = 200, description = "What the erasure would do", body = ErasurePreview),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse),
        (status = 404, description = "The subject does not exist (target_not_found)", body = crate::error::ErrorResponse)
    )
)]
pub async fn erasure_preview(
    State(app): State<AppState>,
    me: Me,
    ctx: RequestContext,
) -> ApiResult<Json<ErasurePreview>> {
    let mut client = me.client().await?;
    let (tx, state) = me.begin(&mut client, &ctx).await?;
    let plan = plan(&*tx, me.subject_type(), me.subject_id(), me.tenant()).await?;
    if !plan.target.exists {
        return Err(ApiError::not_found(format!(
            "{} \"{}\" does not exist",
            me.subject_type(),
            me.subject_id()
        ))
        .with_code(Code::TargetNotFound.name()));
    }
    // Most subjects are nobody's last admin: no names to look up then.
    let names = if plan.last_admin_workspaces.is_empty() {
        Vec::new()
    } else {
        tx.query(TENANT_NAMES, &[&plan.last_admin_workspaces])
            .await?
    };
    let name_of = |id: &str| {
        names
            .iter()
            .find(|row| row.get::<_, &str>(0) == id)
            .and_then(|row| row.get::<_, Option<String>>(1))
    };
    let body = ErasurePreview {
        database: me.database_name(),
        subject_type: me.subject_type().to_owned(),
        subject_id: me.subject_id().to_owned(),
        state,
        cooling_off_days: app.config.me.subject_erasure_cooling_off_days,
        stored_files: plan.stored_objects,
        mentions_elsewhere: plan.mentions.iter().map(|m| m.rows).sum(),
        workspaces_needing_decision: plan
            .last_admin_workspaces
            .iter()
            .map(|id| WorkspaceNeedingDecision {
                workspace_id: id.clone(),
                name: name_of(id),
            })
            .collect(),
        items: plan.steps.into_iter().filter_map(item).collect(),
    };
    tx.commit().await?;
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(step: serde_json::Value) -> Option<PreviewItem> {
        item(serde_json::from_value::<PreviewStep>(step).unwrap())
    }

    #[test]
    fn steps_become_outcomes_in_words() {
        let retained = step(json!({
            "table": "app.invoices", "label": "Invoices", "action": "retained", "rows": 12,
            "legal_basis": "Tax law", "retain_for": "7 years"
        }))
        .unwrap();
        assert_eq!(retained.outcome, Outcome::Retained);
        assert_eq!(retained.retained_for.as_deref(), Some("7 years"));
        assert!(
            retained.explanation.contains("7 years") && retained.explanation.contains("Tax law")
        );

        let account = step(json!({
            "table": "app.users", "label": "Users", "action": "anonymized", "rows": 1, "reason": SUBJECT_ROW,
            "columns": ["email", "name"]
        }))
        .unwrap();
        assert_eq!(account.outcome, Outcome::Anonymized);
        assert_eq!(account.fields, ["email", "name"]);
        assert!(account.explanation.starts_with("Your account"));

        for (action, outcome) in [
            ("deleted", Outcome::Deleted),
            ("kept", Outcome::Kept),
            ("detached", Outcome::Detached),
            ("redacted", Outcome::Redacted),
            ("ownership transferred", Outcome::Transferred),
            ("not transferred", Outcome::NotTransferred),
        ] {
            let it =
                step(json!({"table": "app.x", "label": "X", "action": action, "rows": 3})).unwrap();
            assert_eq!(it.outcome, outcome, "{action}");
            assert_eq!(it.rows, 3);
        }
        assert!(step(json!({
            "table": "app.files", "label": "Files", "action": "objects deleted", "rows": 2
        }))
        .is_none());
    }
}
