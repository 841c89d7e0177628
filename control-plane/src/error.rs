//! The single API error type and the SQLSTATE -> HTTP status mapping.
//!
//! Every handler returns [`ApiResult`]. Database errors are converted with
//! `?`: the SQLSTATE raised by PostgreSQL (including the extension's own
//! `LC` class) decides the HTTP status and the machine-readable `code`, and
//! the database message, detail and hint are passed through to the client.
//! Both come from the product's error codes, [`lifecycle_core::Code`]
//! (documented in `docs/sqlstates.md`). SQLSTATEs that are not there, and
//! `XX000`, are treated as internal errors: the client only sees
//! `"internal error"`, the full error is logged with the request id (the
//! log line is inside the request's span).
//!
//! Errors that axum or a middleware produce on their own (a malformed path
//! or query, a wrong content type, a body too large, a timeout) get the same
//! JSON shape: through the extractors of `api::extract`, and through
//! [`json_errors`] for anything else.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use deadpool_postgres::PoolError;
use lifecycle_core::Code;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::DbError;
use utoipa::ToSchema;

/// Result type of every API handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// Code used for database errors whose SQLSTATE is not in the mapping table.
pub const CODE_DATABASE_ERROR: &str = "database_error";
/// Code used for internal (non-database) errors.
pub const CODE_INTERNAL: &str = "internal";
/// Code used when no database connection can be obtained.
pub const CODE_DATABASE_UNAVAILABLE: &str = "database_unavailable";
/// Message sent to clients for every error whose details are hidden.
pub const INTERNAL_MESSAGE: &str = "internal error";
/// Code of a request body larger than `--max-body-bytes` (413).
pub const CODE_PAYLOAD_TOO_LARGE: &str = "payload_too_large";
/// Code of a body that is not `application/json` where JSON is expected (415).
pub const CODE_UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
/// Code of a body that is not valid JSON (400) or not the expected shape (422).
pub const CODE_INVALID_REQUEST_BODY: &str = "invalid_request_body";
/// Code of a malformed query string or path parameter (400).
pub const CODE_INVALID_PARAMETER: &str = "invalid_parameter";
/// Code of a request that took longer than `--request-timeout-secs` (503).
pub const CODE_REQUEST_TIMEOUT: &str = "request_timeout";
/// Seconds a client should wait after a 503 unless the error says otherwise.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// How the control plane answers one SQLSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlStateMapping {
    /// Five-character SQLSTATE (`08000` for every SQLSTATE of class `08`).
    pub sqlstate: &'static str,
    /// Machine-readable error code sent to clients (snake_case).
    pub code: &'static str,
    /// HTTP status sent to clients.
    pub status: StatusCode,
}

impl SqlStateMapping {
    /// The mapping of one of the product's codes; `None` for a code whose
    /// status is 500, which is answered as an internal error (text hidden).
    fn of(code: Code) -> Option<Self> {
        let status = StatusCode::from_u16(code.http_status()).ok()?;
        (status != StatusCode::INTERNAL_SERVER_ERROR).then_some(SqlStateMapping {
            sqlstate: code.sqlstate(),
            code: code.name(),
            status,
        })
    }
}

/// Every SQLSTATE with a dedicated HTTP status, in the order of
/// [`Code::ALL`].
pub fn sqlstate_table() -> impl Iterator<Item = SqlStateMapping> {
    Code::ALL.iter().copied().filter_map(SqlStateMapping::of)
}

/// Look up the mapping of a SQLSTATE (class `08` is mapped as a whole, see
/// [`Code::from_sqlstate`]). `None` means "internal error".
pub fn sqlstate_mapping(sqlstate: &str) -> Option<SqlStateMapping> {
    Code::from_sqlstate(sqlstate).and_then(SqlStateMapping::of)
}

/// HTTP status for a SQLSTATE (500 for anything not in the table).
pub fn status_for_sqlstate(sqlstate: &str) -> StatusCode {
    sqlstate_mapping(sqlstate).map_or(StatusCode::INTERNAL_SERVER_ERROR, |m| m.status)
}

/// Machine-readable error code for a SQLSTATE (`database_error` for
/// anything not in the table).
pub fn code_for_sqlstate(sqlstate: &str) -> &'static str {
    sqlstate_mapping(sqlstate).map_or(CODE_DATABASE_ERROR, |m| m.code)
}

/// JSON body of every error response: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "held_row_modification", "message": "row is under legal hold", "sqlstate": "LC001"}}))]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// The `error` object of an error response. Absent fields are omitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable name of the error (snake_case).
    pub code: String,
    /// What went wrong, for a person (PostgreSQL's message for database refusals).
    pub message: String,
    /// What blocked the request (a hold's id and reason, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The SQLSTATE of a database refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// The API error type. Renders as an [`ErrorResponse`] JSON body.
///
/// Boxed so that `Result<T, ApiError>` stays pointer-sized on the error side.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
    sqlstate: Option<String>,
    /// Logged when the response is produced; never sent to the client.
    internal: Option<String>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, ...).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A new error with the given status, machine code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner {
            status,
            code: code.into(),
            message: message.into(),
            detail: None,
            hint: None,
            sqlstate: None,
            internal: None,
            headers: Vec::new(),
        }))
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 `unprocessable_entity`.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            message,
        )
    }

    /// 503 with the given code.
    pub fn service_unavailable(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 503 `database_unavailable`.
    pub fn database_unavailable(message: impl Into<String>) -> Self {
        Self::service_unavailable(CODE_DATABASE_UNAVAILABLE, message)
    }

    /// 500 `internal`. The cause is logged, the client sees `"internal error"`.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_INTERNAL,
            INTERNAL_MESSAGE,
        )
        .with_internal(cause.to_string())
    }

    /// Build an error from a PostgreSQL error report using the SQLSTATE
    /// table. Unmapped SQLSTATEs become a 500 `database_error` whose
    /// message, detail and hint are hidden (and logged).
    pub fn from_db_error(db: &DbError) -> Self {
        let sqlstate = db.code().code();
        match sqlstate_mapping(sqlstate) {
            Some(mapping) => {
                let error = Self(Box::new(Inner {
                    status: mapping.status,
                    code: Cow::Borrowed(mapping.code),
                    message: db.message().to_owned(),
                    detail: db.detail().map(str::to_owned),
                    hint: db.hint().map(str::to_owned),
                    sqlstate: Some(sqlstate.to_owned()),
                    internal: None,
                    headers: Vec::new(),
                }));
                match next_allowed(sqlstate, db.detail()) {
                    Some(at) => {
                        let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                        error.with_retry_after(wait)
                    }
                    None => error,
                }
            }
            None => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                CODE_DATABASE_ERROR,
                INTERNAL_MESSAGE,
            )
            .with_sqlstate(sqlstate)
            .with_internal(describe_db_error(db)),
        }
    }

    /// Error for a failure to establish a database connection. Always 503,
    /// whatever the SQLSTATE (e.g. `3D000` for a database that does not
    /// exist, `28P01` for bad credentials). The server's own message names
    /// databases and roles: it is logged, never sent.
    pub fn from_connect_error(err: &tokio_postgres::Error) -> Self {
        Self::database_unavailable("could not connect to the database")
            .with_internal(error_chain(err))
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            CODE_PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CODE_UNSUPPORTED_MEDIA_TYPE,
            "expected a request body with Content-Type: application/json",
        )
    }

    /// Add a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.retain(|(n, _)| *n != name);
        self.0.headers.push((name, value));
        self
    }

    /// Tell the client when to try again (`Retry-After`, whole seconds,
    /// rounded up, at least 1).
    pub fn with_retry_after(self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))
    }

    /// Replace the machine code.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.0.code = code.into();
        self
    }

    /// Set the `detail` field.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Set the `hint` field.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    /// Set the `sqlstate` field.
    pub fn with_sqlstate(mut self, sqlstate: impl Into<String>) -> Self {
        self.0.sqlstate = Some(sqlstate.into());
        self
    }

    /// Attach an internal description that is logged but never sent.
    pub fn with_internal(mut self, internal: impl Into<String>) -> Self {
        self.0.internal = Some(internal.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        &self.0.code
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    pub fn sqlstate(&self) -> Option<&str> {
        self.0.sqlstate.as_deref()
    }

    /// The value of a response header this error adds.
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0
            .headers
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// The JSON body this error renders as.
    pub fn to_body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                code: self.0.code.to_string(),
                message: self.0.message.clone(),
                detail: self.0.detail.clone(),
                hint: self.0.hint.clone(),
                sqlstate: self.0.sqlstate.clone(),
            },
        }
    }
}

/// `err` followed by its chain of sources, separated by `": "`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn describe_db_error(db: &DbError) -> String {
    let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        out.push_str("; detail: ");
        out.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        out.push_str("; hint: ");
        out.push_str(hint);
    }
    if let Some(where_) = db.where_() {
        out.push_str("; where: ");
        out.push_str(where_);
    }
    out
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.code,
            self.0.message
        )?;
        if let Some(internal) = &self.0.internal {
            write!(f, " ({internal})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Inner {
            status,
            code,
            message,
            sqlstate,
            internal,
            ..
        } = &*self.0;
        let status = *status;
        let sqlstate = sqlstate.as_deref();
        let internal = internal.as_deref();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(
                status = status.as_u16(),
                %code,
                sqlstate,
                error = %message,
                internal,
                "request failed: service unavailable"
            );
        } else if status.is_server_error() {
            tracing::error!(
                status = status.as_u16(),
                %code,
                sqlstate,
                error = %message,
                internal,
                "request failed"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                %code,
                sqlstate,
                error = %message,
                "request rejected"
            );
        }

        let mut response = (status, Json(self.to_body())).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(DEFAULT_RETRY_AFTER_SECS),
            );
        }
        for (name, value) in &self.0.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// The time a refusal of the rate of exports (`LC042`) allows the next
/// request: the last timestamp of its DETAIL.
fn next_allowed(sqlstate: &str, detail: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    if sqlstate != Code::ExportRateLimited.sqlstate() {
        return None;
    }
    let detail = detail?;
    detail
        .split_whitespace()
        .rev()
        .find_map(|w| chrono::DateTime::parse_from_rfc3339(w.trim_end_matches('.')).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            return Self::from_db_error(db);
        }
        let io_failure = std::error::Error::source(&err)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
        if err.is_closed() || io_failure {
            return Self::database_unavailable("lost the connection to the database")
                .with_internal(error_chain(&err));
        }
        Self::internal(error_chain(&err))
    }
}

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => Self::from_connect_error(&err),
            PoolError::Timeout(kind) => {
                Self::database_unavailable("timed out waiting for a database connection")
                    .with_internal(format!("pool timeout: {kind:?}"))
            }
            PoolError::Closed => {
                Self::database_unavailable("the database connection pool is closed")
            }
            other => Self::internal(error_chain(&other)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => CODE_PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => CODE_UNSUPPORTED_MEDIA_TYPE,
            _ => CODE_INVALID_REQUEST_BODY,
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            CODE_INVALID_PARAMETER,
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // A path that does not parse names no resource: 404 would hide the
        // mistake, so it is a 400 like a bad query parameter.
        if rejection.status().is_server_error() {
            return Self::internal(rejection.body_text());
        }
        Self::new(
            StatusCode::BAD_REQUEST,
            CODE_INVALID_PARAMETER,
            rejection.body_text(),
        )
    }
}

/// Largest body of a non-JSON error response that [`json_errors`] reads to
/// use as the message.
const MAX_PLAIN_ERROR_BYTES: usize = 4096;

/// Middleware: an error response that is not JSON (from axum itself, a
/// tower layer or a library) is rewritten into the API's error shape, so
/// that every error a client can see is `{"error": {...}}` as the OpenAPI
/// document says. A 5xx keeps nothing of the original body.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    let error = if status.is_server_error() {
        ApiError::new(status, code, INTERNAL_MESSAGE).with_internal("non-JSON error response")
    } else {
        let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        ApiError::new(status, code, text)
    };
    let mut rewritten = error.into_response();
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of docs/sqlstates.md: the control plane answers with the
    /// HTTP status and condition name the table documents.
    #[test]
    fn sqlstate_table_in_docs_matches_mapping() {
        let doc = include_str!("../../docs/sqlstates.md");
        let mut rows = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(|c| c.trim()).collect();
            let sqlstate = cells[1].trim_matches('`');
            let code = cells[2].trim_matches('`');
            let status: u16 = cells[4].parse().expect("HTTP column is a number");
            assert_eq!(status_for_sqlstate(sqlstate).as_u16(), status, "{sqlstate}");
            if sqlstate != "XX000" {
                assert_eq!(code_for_sqlstate(sqlstate), code, "{sqlstate}");
            }
            rows += 1;
        }
        assert!(rows >= 30, "only {rows} rows found in docs/sqlstates.md");
    }

    #[test]
    fn documented_sqlstates_map_to_documented_statuses() {
        let expected: &[(&str, u16, &str)] = &[
            ("LC001", 409, "held_row_modification"),
            ("LC002", 409, "held_table_truncate"),
            ("LC003", 409, "held_table_drop"),
            ("LC004", 403, "guard_tampering"),
            ("LC005", 403, "audit_log_append_only"),
            ("LC006", 403, "legal_hold_immutable"),
            ("LC007", 409, "held_table_alter"),
            ("LC008", 403, "extension_table_write"),
            ("LC010", 409, "data_map_conflict"),
            ("LC011", 409, "data_map_column_in_use"),
            ("LC012", 404, "not_registered"),
            ("LC020", 404, "hold_not_found"),
            ("LC021", 409, "hold_already_released"),
            ("LC022", 422, "unknown_scope_type"),
            ("LC030", 409, "invalid_job_transition"),
            ("LC031", 403, "approver_is_requester"),
            ("LC032", 422, "unknown_target_type"),
            ("LC033", 404, "target_not_found"),
            ("LC034", 409, "last_admin"),
            ("LC035", 404, "job_not_found"),
            ("LC036", 409, "duplicate_request"),
            ("LC037", 409, "target_already_erased"),
            ("LC038", 409, "target_not_erased"),
            ("LC039", 409, "job_lease_held"),
            ("LC040", 409, "unmapped_reference"),
            ("LC041", 409, "erasure_incomplete"),
            ("LC042", 429, "export_rate_limited"),
            ("LC043", 410, "export_expired"),
            ("LC044", 409, "row_security_hides_rows"),
            ("0A000", 409, "feature_not_supported"),
            ("22023", 422, "invalid_parameter_value"),
            ("22004", 422, "null_value_not_allowed"),
            ("22P02", 422, "invalid_text_representation"),
            ("42703", 422, "undefined_column"),
            ("42804", 422, "datatype_mismatch"),
            ("42P01", 404, "undefined_table"),
            ("22021", 422, "character_not_in_repertoire"),
            ("22P05", 422, "untranslatable_character"),
            ("22003", 422, "numeric_value_out_of_range"),
            ("22007", 422, "invalid_datetime_format"),
            ("22008", 422, "datetime_field_overflow"),
            ("42501", 403, "insufficient_privilege"),
            ("23505", 409, "unique_violation"),
            ("40001", 503, "serialization_failure"),
            ("40P01", 503, "deadlock_detected"),
            ("57014", 503, "query_canceled"),
            ("08000", 503, "connection_exception"),
            ("08001", 503, "connection_exception"),
            ("08003", 503, "connection_exception"),
            ("08006", 503, "connection_exception"),
            ("08P01", 503, "connection_exception"),
        ];
        for &(sqlstate, status, code) in expected {
            assert_eq!(status_for_sqlstate(sqlstate).as_u16(), status, "{sqlstate}");
            assert_eq!(code_for_sqlstate(sqlstate), code, "{sqlstate}");
        }
        // Every table row is covered above.
        for row in sqlstate_table() {
            assert!(
                expected.iter().any(|(s, _, _)| *s == row.sqlstate),
                "untested table row {row:?}"
            );
        }
    }

    #[test]
    fn unmapped_sqlstates_are_internal_errors() {
        for sqlstate in [
            "22012", "XX000", "P0001", "LC999", "23503", "0800", "080000", "",
        ] {
            assert_eq!(
                status_for_sqlstate(sqlstate),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{sqlstate}"
            );
            assert_eq!(code_for_sqlstate(sqlstate), CODE_DATABASE_ERROR);
        }
    }

    /// The table is the core's codes: each with its own status and name,
    /// except the internal error, which stays hidden.
    #[test]
    fn table_follows_the_core_codes() {
        for code in Code::ALL {
            let mapping = sqlstate_mapping(code.sqlstate());
            if *code == Code::InternalError {
                assert_eq!(mapping, None);
                continue;
            }
            let mapping = mapping.expect("mapped");
            assert_eq!(mapping.sqlstate, code.sqlstate());
            assert_eq!(mapping.code, code.name());
            assert_eq!(mapping.status.as_u16(), code.http_status());
        }
        assert_eq!(sqlstate_table().count(), Code::ALL.len() - 1);
        // The brief: a legal hold or a last-admin refusal is 409.
        for sqlstate in ["LC001", "LC002", "LC003", "LC007", "LC034"] {
            assert_eq!(
                status_for_sqlstate(sqlstate),
                StatusCode::CONFLICT,
                "{sqlstate}"
            );
        }
    }

    #[test]
    fn body_omits_absent_fields() {
        let err = ApiError::not_found("no such hold");
        let json = serde_json::to_value(err.to_body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "not_found", "message": "no such hold"}})
        );

        let err = ApiError::new(StatusCode::CONFLICT, "held_row_modification", "held")
            .with_detail("d")
            .with_hint("h")
            .with_sqlstate("LC001");
        let json = serde_json::to_value(err.to_body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "code": "held_row_modification",
                "message": "held",
                "detail": "d",
                "hint": "h",
                "sqlstate": "LC001"
            }})
        );
    }

    #[test]
    fn internal_errors_hide_the_cause() {
        let err = ApiError::internal("secret connection string");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.code(), CODE_INTERNAL);
        let body = serde_json::to_string(&err.to_body()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn unavailable_responses_carry_retry_after() {
        let response = ApiError::database_unavailable("down").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .with_retry_after(Duration::from_millis(2100))
            .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[tokio::test]
    async fn plain_error_responses_become_json() {
        let plain = (StatusCode::UNPROCESSABLE_ENTITY, "Failed to parse").into_response();
        let response = json_errors(plain).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: ErrorResponse = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.error.code, "unprocessable_entity");
        assert_eq!(body.error.message, "Failed to parse");

        let plain = (StatusCode::BAD_GATEWAY, "upstream secret").into_response();
        let response = json_errors(plain).await;
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));

        let ok = (StatusCode::OK, "fine").into_response();
        assert_eq!(json_errors(ok).await.status(), StatusCode::OK);
    }
}
