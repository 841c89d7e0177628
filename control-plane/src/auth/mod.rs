//! Who is calling: admin tokens and subject tokens, both as
//! `Authorization: Bearer <token>`, and the per-token request rate limit.
//!
//! Handlers take [`Admin`] or [`Subject`] as an argument; the extractor
//! answers 401 (with `WWW-Authenticate: Bearer`) before the handler runs
//! when the token is missing, malformed, unknown, revoked, expired or of the
//! other kind, and 429 (with `Retry-After`) when the token sent too many
//! requests. An admin token on a `/me` route and a subject token on an admin
//! route are both 401: neither proves what the route needs, and a 403 would
//! only tell the caller that the token they tried is real.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub mod admin;
pub mod rate_limit;
pub mod subject;
pub mod token;

pub use admin::{Admin, AdminRole};
pub use rate_limit::{RateKey, RateLimiter};
pub use subject::{Subject, SubjectClaims, SubjectVerifier, SUBJECT_TOKEN_AUDIENCE};

/// Machine code of a request without a bearer token.
pub const CODE_UNAUTHORIZED: &str = "unauthorized";
/// Machine code of a token that is malformed, unknown, revoked, expired or
/// of the wrong kind for the route.
pub const CODE_INVALID_TOKEN: &str = "invalid_token";
/// Machine code of a token over its request rate.
pub const CODE_RATE_LIMITED: &str = "rate_limited";

/// What the extractors need, built once from the configuration.
#[derive(Debug)]
pub struct Auth {
    pub subjects: SubjectVerifier,
    pub limiter: RateLimiter,
}

impl Auth {
    pub fn new(config: &Config) -> Self {
        Self {
            subjects: SubjectVerifier::new(
                config.subject_token_secret.as_deref(),
                config.subject_token_leeway_secs,
            ),
            limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
        }
    }
}

/// Either kind of caller, for the few routes both may call (`whoami`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin(Admin),
    Subject(Subject),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        // The token's shape says which kind it claims to be.
        if token::lookup_of(bearer(parts)?).is_some() {
            Admin::from_request_parts(parts, state)
                .await
                .map(Principal::Admin)
        } else {
            Subject::from_request_parts(parts, state)
                .await
                .map(Principal::Subject)
        }
    }
}

/// The bearer token of the request, or 401 `unauthorized`.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized(CODE_UNAUTHORIZED, "a bearer token is required"))?;
    let value = value
        .to_str()
        .map_err(|_| invalid_token("the Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| invalid_token("expected Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid_token("expected Authorization: Bearer <token>"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(invalid_token("the bearer token is empty"));
    }
    Ok(token)
}

/// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`.
pub fn invalid_token(message: impl Into<String>) -> ApiError {
    unauthorized(CODE_INVALID_TOKEN, message)
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    let challenge = if code == CODE_INVALID_TOKEN {
        HeaderValue::from_static("Bearer error=\"invalid_token\"")
    } else {
        HeaderValue::from_static("Bearer")
    };
    ApiError::new(StatusCode::UNAUTHORIZED, code, message).with_header(WWW_AUTHENTICATE, challenge)
}

/// Record who is calling in the request's log span: the admin token's id,
/// or only the kind for a subject (a subject id is personal data).
fn record_principal(principal: &str) {
    tracing::Span::current().record("principal", principal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer(&parts(Some("Bearer abc"))).unwrap(), "abc");
        assert_eq!(bearer(&parts(Some("bearer  abc "))).unwrap(), "abc");
        let missing = bearer(&parts(None)).unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.code(), CODE_UNAUTHORIZED);
        assert_eq!(missing.header(&WWW_AUTHENTICATE).unwrap(), "Bearer");
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let err = bearer(&parts(Some(bad))).unwrap_err();
            assert_eq!(err.code(), CODE_INVALID_TOKEN, "{bad}");
            assert_eq!(
                err.header(&WWW_AUTHENTICATE).unwrap(),
                "Bearer error=\"invalid_token\""
            );
        }
    }
}
