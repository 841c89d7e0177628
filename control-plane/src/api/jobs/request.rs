//! The body of `POST /api/v1/jobs` and the call of the extension's
//! request function it becomes. The extension decides everything about
//! the request (the target exists, no duplicate, last-admin decisions, the
//! deadline); the API only types the input and names the requester.

use std::collections::BTreeMap;
use std::fmt;

use lifecycle_core::jobs::JobType;
use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::types::{Json, ToSql};
use utoipa::ToSchema;

use super::names::{JurisdictionName, TypeName};
use crate::error::{ApiError, ApiResult};

/// A new export, erasure or purge.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "type": "erase", "target_type": "user", "target_id": "42", "tenant_id": "acme",
    "reason": "GDPR Art. 17, ticket 991", "cooling_off": "P30D", "jurisdiction": "gdpr",
    "workspaces": {"acme": {"transfer_to": "7"}}
}))]
pub struct NewJob {
    #[serde(rename = "type")]
    pub job_type: TypeName,
    /// `user` (or another registered subject type), or `tenant` for a workspace.
    pub target_type: String,
    pub target_id: String,
    /// The tenant the request is made in; a tenant admin's own by default
    /// (and only theirs).
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Erasure only: how long the job waits before it may run, as an ISO
    /// 8601 duration (`P30D`, `PT0S` for none). The extension's default
    /// (30 days) when absent.
    #[serde(default)]
    pub cooling_off: Option<IsoDuration>,
    /// Erasure only: whose deadline applies (`gdpr`: 30 days, `ccpa`: 45).
    #[serde(default)]
    pub jurisdiction: Option<JurisdictionName>,
    /// Whether a second person must approve the job first (the
    /// extension's default when absent: erasures and purges do, exports
    /// do not).
    #[serde(default)]
    pub requires_approval: Option<bool>,
    /// Erasure of a user only: a decision for each workspace where the user
    /// is the last admin, by workspace id.
    #[serde(default)]
    pub workspaces: Option<BTreeMap<String, WorkspaceDecision>>,
    /// The database to create the job in (see `GET /api/v1/jobs`); needed
    /// when several are configured and the tenant does not decide it.
    #[serde(default)]
    pub database: Option<String>,
}

/// What happens to a workspace whose last admin is erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WorkspaceDecision {
    /// `"erase"`: the workspace is erased with its last admin.
    Erase(EraseWorkspace),
    /// `{"transfer_to": "<member id>"}`: the admin role goes to this member.
    Transfer(TransferWorkspace),
}

/// The decision to erase the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EraseWorkspace {
    Erase,
}

/// The decision to hand the workspace over to a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferWorkspace {
    pub transfer_to: String,
}

/// An ISO 8601 duration with designators (`P1Y2M3W4DT5H6M7.5S`, `P30D`,
/// `PT0S`): at least one component, each at most six digits, a fraction on
/// the seconds only. PostgreSQL reads this form as an interval exactly.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^P(?:\d{1,6}Y)?(?:\d{1,6}M)?(?:\d{1,6}W)?(?:\d{1,6}D)?(?:T(?:\d{1,6}H)?(?:\d{1,6}M)?(?:\d{1,6}(?:\.\d{1,6})?S)?)?$",
    example = "P30D"
)]
pub struct IsoDuration(String);

impl IsoDuration {
    /// The duration, checked; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "cooling_off \"{text}\" is not an ISO 8601 duration such as P30D or PT0S: {why}"
            )
        };
        let rest = text
            .strip_prefix('P')
            .ok_or_else(|| bad("it must start with P"))?;
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(bad("T must be followed by hours, minutes or seconds")),
            Some((date, time)) => (date, Some(time)),
            None => (rest, None),
        };
        let mut components = 0;
        components += Self::components(date, &['Y', 'M', 'W', 'D'], None).map_err(|e| bad(&e))?;
        if let Some(time) = time {
            components +=
                Self::components(time, &['H', 'M', 'S'], Some('S')).map_err(|e| bad(&e))?;
        }
        if components == 0 {
            return Err(bad("it names no component"));
        }
        Ok(Self(text.to_owned()))
    }

    /// Check `part` as numbers each followed by one of `designators`, in
    /// their order, each at most once; a fraction only before `fraction`.
    /// Answers how many components there were.
    fn components(
        mut part: &str,
        designators: &[char],
        fraction: Option<char>,
    ) -> Result<usize, String> {
        let mut allowed = designators;
        let mut count = 0;
        while !part.is_empty() {
            let end = part
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("\"{part}\" has no designator"))?;
            let (number, designator) = (&part[..end], part[end..].chars().next().unwrap_or(' '));
            let position = allowed
                .iter()
                .position(|d| *d == designator)
                .ok_or_else(|| format!("unexpected \"{designator}\""))?;
            let (whole, frac) = match number.split_once('.') {
                Some((whole, frac)) if fraction == Some(designator) => (whole, Some(frac)),
                Some(_) => {
                    return Err(format!(
                        "only seconds may have a fraction, not {designator}"
                    ))
                }
                None => (number, None),
            };
            let digits_ok =
                |d: &str| (1..=6).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
            if !digits_ok(whole) || !frac.is_none_or(digits_ok) {
                return Err(format!(
                    "\"{number}{designator}\" needs 1 to 6 digits (and at most 6 decimals)"
                ));
            }
            allowed = &allowed[position + 1..];
            part = &part[end + designator.len_utf8()..];
            count += 1;
        }
        Ok(count)
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A call of one of the extension's functions with named arguments, only
/// those given (the others keep the function's defaults).
#[derive(Default)]
pub struct Call {
    args: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Call {
    /// Pass `value` as `name`, cast to `sql_type`.
    pub fn arg(
        mut self,
        name: &str,
        value: impl ToSql + Sync + Send + 'static,
        sql_type: &str,
    ) -> Self {
        self.params.push(Box::new(value));
        self.args
            .push(format!("{name} => ${}::{sql_type}", self.params.len()));
        self
    }

    /// Pass `value` as `name` when it is given.
    pub fn arg_opt<T: ToSql + Sync + Send + 'static>(
        self,
        name: &str,
        value: Option<T>,
        sql_type: &str,
    ) -> Self {
        match value {
            Some(value) => self.arg(name, value, sql_type),
            None => self,
        }
    }

    /// `SELECT lifecycle.<function>(...)`.
    pub fn sql(&self, function: &str) -> String {
        format!("SELECT lifecycle.{function}({})", self.args.join(", "))
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

impl NewJob {
    /// The extension's function for this request and its arguments, with
    /// `tenant` (already scoped to the caller) and `requested_by` (the
    /// token's name). Options that only an erasure takes are refused for
    /// the other types (the functions have no such parameter).
    pub fn call(self, tenant: Option<String>, requested_by: String) -> ApiResult<(String, Call)> {
        let erase_only = [
            ("cooling_off", self.cooling_off.is_some()),
            ("jurisdiction", self.jurisdiction.is_some()),
            ("workspaces", self.workspaces.is_some()),
        ];
        let function = match self.job_type.0 {
            JobType::Export => "request_export",
            JobType::Erase => "request_erasure",
            JobType::Purge => "request_purge",
        };
        if self.job_type.0 != JobType::Erase {
            if let Some((field, _)) = erase_only.iter().find(|(_, given)| *given) {
                return Err(ApiError::unprocessable(format!(
                    "{field} applies to erasures only, not to a {}",
                    self.job_type.name()
                ))
                .with_code(crate::error::CODE_INVALID_REQUEST_BODY));
            }
        }
        let call = Call::default()
            .arg("target_type", self.target_type, "text")
            .arg("target_id", self.target_id, "text")
            .arg("tenant_id", tenant, "text")
            .arg("requested_by", requested_by, "text")
            .arg("reason", self.reason, "text")
            // Sent as text, read by PostgreSQL's interval input.
            .arg_opt(
                "cooling_off",
                self.cooling_off.map(|c| c.0),
                "text::interval",
            )
            .arg_opt(
                "jurisdiction",
                self.jurisdiction.map(|j| j.name().to_owned()),
                "text",
            )
            .arg_opt("requires_approval", self.requires_approval, "boolean")
            // Serialized straight into the parameter (no JSON value between).
            .arg_opt("workspaces", self.workspaces.map(Json), "jsonb");
        Ok((function.to_owned(), call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_are_read_strictly() {
        for ok in [
            "P30D",
            "PT0S",
            "P0D",
            "P1Y2M3W4DT5H6M7.5S",
            "PT36H",
            "P2W",
            "PT1M",
            "P1M",
            "PT0.000001S",
            "P999999D",
        ] {
            assert!(IsoDuration::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "P",
            "PT",
            "30 days",
            "p30d",
            "P30",
            "P30DT",
            "PT1.5H",
            "P1D2Y",
            "P1D1D",
            "P1234567D",
            "P-1D",
            "P1.D",
            "P.5D",
            "PT.5S",
            "P30DX",
            "PT1S1M",
            "P 1D",
            "P1DT1D",
            "P1W1Y",
            "P١D",
        ] {
            let err = IsoDuration::parse(bad).unwrap_err();
            assert!(err.contains("ISO 8601"), "{bad}: {err}");
        }
    }

    #[test]
    fn calls_pass_only_what_is_given() {
        let job: NewJob = serde_json::from_value(serde_json::json!({
            "type": "erase", "target_type": "user", "target_id": "42",
            "cooling_off": "PT0S", "workspaces": {"w1": "erase", "w2": {"transfer_to": "7"}}
        }))
        .unwrap();
        let (function, call) = job.call(Some("acme".into()), "alice".into()).unwrap();
        assert_eq!(function, "request_erasure");
        assert_eq!(
            call.sql(&function),
            "SELECT lifecycle.request_erasure(target_type => $1::text, target_id => $2::text, \
             tenant_id => $3::text, requested_by => $4::text, reason => $5::text, \
             cooling_off => $6::text::interval, workspaces => $7::jsonb)"
        );
        assert_eq!(call.params().len(), 7);

        let export: NewJob = serde_json::from_value(serde_json::json!({
            "type": "export", "target_type": "user", "target_id": "42", "cooling_off": "P1D"
        }))
        .unwrap();
        let err = export.call(None, "alice".into()).err().unwrap();
        assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.message().contains("cooling_off"), "{}", err.message());
    }

    #[test]
    fn bodies_are_typed() {
        for bad in [
            serde_json::json!({"type": "delete", "target_type": "user", "target_id": "1"}),
            serde_json::json!({"type": "erase", "target_type": "user", "target_id": "1", "requested_by": "x"}),
            serde_json::json!({"type": "erase", "target_type": "user", "target_id": "1", "jurisdiction": "eu"}),
            serde_json::json!({"type": "erase", "target_type": "user", "target_id": "1", "workspaces": {"w": "keep"}}),
            serde_json::json!({"type": "erase", "target_type": "user", "target_id": "1", "workspaces": {"w": {"transfer_to": "7", "x": 1}}}),
            serde_json::json!({"type": "erase", "target_type": "user", "target_id": "1", "cooling_off": "30 days"}),
            serde_json::json!({"type": "erase", "target_type": "user"}),
        ] {
            assert!(
                serde_json::from_value::<NewJob>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
