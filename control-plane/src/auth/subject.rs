//! The [`Subject`] extractor: a data subject authenticated by a JWT that the
//! host application signs with the shared secret.
//!
//! Only HS256 is accepted (a token naming `none`, RS256 or anything else is
//! refused before its signature is looked at), `exp` and `aud = "lifecycle"`
//! are required, and the clock leeway is at most a minute. Whether the
//! subject is registered is for the `/me` handlers to check: the extractor
//! only proves who signed the claim.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{bearer, invalid_token, record_principal, token, RateKey};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The audience every subject token must name.
pub const SUBJECT_TOKEN_AUDIENCE: &str = "lifecycle";

/// The claims of a subject token (other claims are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectClaims {
    /// The subject id.
    pub sub: String,
    pub subject_type: String,
    /// The workspace the person is signed in to.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    pub aud: String,
}

/// A data subject acting on their own data through `/api/v1/me/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub subject_type: String,
    pub subject_id: String,
    /// The workspace the person is signed in to, if the token names one.
    pub tenant: Option<String>,
}

/// Checks subject tokens; refuses all of them when no secret is configured.
pub struct SubjectVerifier {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl fmt::Debug for SubjectVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectVerifier")
            .field("configured", &self.key.is_some())
            .field("leeway", &self.validation.leeway)
            .finish()
    }
}

impl SubjectVerifier {
    pub fn new(secret: Option<&str>, leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[SUBJECT_TOKEN_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway_secs.min(crate::config::MAX_SUBJECT_TOKEN_LEEWAY_SECS);
        Self {
            key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            validation,
        }
    }

    /// The subject a token proves, or 401 `invalid_token`.
    pub fn verify(&self, presented: &str) -> ApiResult<Subject> {
        if token::lookup_of(presented).is_some() {
            return Err(invalid_token("a subject token is required"));
        }
        let Some(key) = &self.key else {
            return Err(
                invalid_token("subject tokens are not accepted by this server")
                    .with_hint("start lifecycled with --subject-token-secret"),
            );
        };
        let claims = jsonwebtoken::decode::<SubjectClaims>(presented, key, &self.validation)
            .map_err(|err| {
                tracing::debug!(error = %err, "subject token refused");
                invalid_token(describe(&err))
            })?
            .claims;
        let non_empty = |value: String, what: &str| {
            if value.trim().is_empty() {
                Err(invalid_token(format!(
                    "the subject token's {what} is empty"
                )))
            } else {
                Ok(value)
            }
        };
        Ok(Subject {
            subject_type: non_empty(claims.subject_type, "subject_type")?,
            subject_id: non_empty(claims.sub, "sub")?,
            tenant: claims.tenant.filter(|t| !t.trim().is_empty()),
        })
    }
}

/// A short public reason: enough for the host application's developer, no
/// more than the token's own content reveals.
fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "the subject token has expired",
        ErrorKind::ImmatureSignature => "the subject token is not valid yet",
        ErrorKind::InvalidAudience => "the subject token's audience is not \"lifecycle\"",
        ErrorKind::InvalidAlgorithm => "subject tokens must be signed with HS256",
        ErrorKind::InvalidSignature => "the subject token's signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => {
            "the subject token lacks a required claim (sub, subject_type, exp, aud)"
        }
        _ => "the subject token is malformed",
    }
}

impl FromRequestParts<AppState> for Subject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let subject = state.auth.subjects.verify(bearer(parts)?)?;
        record_principal("subject");
        state.auth.limiter.check(&RateKey::Subject {
            subject_type: subject.subject_type.clone(),
            subject_id: subject.subject_id.clone(),
        })?;
        Ok(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"sub": "42", "subject_type": "user", "tenant": "acme", "exp": now() + 300, "aud": "lifecycle"})
    }

    fn verifier() -> SubjectVerifier {
        SubjectVerifier::new(Some(SECRET), 30)
    }

    #[test]
    fn a_good_token_names_its_subject() {
        let subject = verifier()
            .verify(&sign(claims(), Algorithm::HS256, SECRET))
            .unwrap();
        assert_eq!(
            subject,
            Subject {
                subject_type: "user".into(),
                subject_id: "42".into(),
                tenant: Some("acme".into())
            }
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let v = verifier();
        let with = |key: &str, value: serde_json::Value| {
            let mut c = claims();
            c[key] = value;
            c
        };
        let without = |key: &str| {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(key);
            c
        };
        let cases = [
            (
                "wrong key",
                sign(claims(), Algorithm::HS256, &"x".repeat(32)),
            ),
            ("HS512", sign(claims(), Algorithm::HS512, SECRET)),
            (
                "expired",
                sign(with("exp", json!(now() - 120)), Algorithm::HS256, SECRET),
            ),
            (
                "audience",
                sign(with("aud", json!("other")), Algorithm::HS256, SECRET),
            ),
            ("no exp", sign(without("exp"), Algorithm::HS256, SECRET)),
            ("no aud", sign(without("aud"), Algorithm::HS256, SECRET)),
            ("no sub", sign(without("sub"), Algorithm::HS256, SECRET)),
            (
                "no type",
                sign(without("subject_type"), Algorithm::HS256, SECRET),
            ),
            (
                "empty sub",
                sign(with("sub", json!(" ")), Algorithm::HS256, SECRET),
            ),
            ("garbage", "not.a.token".to_owned()),
        ];
        for (what, token) in cases {
            let err = v.verify(&token).unwrap_err();
            assert_eq!(err.code(), super::super::CODE_INVALID_TOKEN, "{what}");
        }
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(verifier().verify(&token).is_err(), "{token}");
        }
    }

    #[test]
    fn leeway_is_at_most_a_minute() {
        let v = SubjectVerifier::new(Some(SECRET), 600);
        let mut c = claims();
        c["exp"] = json!(now() - 90);
        assert!(v.verify(&sign(c, Algorithm::HS256, SECRET)).is_err());
        let mut c = claims();
        c["exp"] = json!(now() - 10);
        assert!(v.verify(&sign(c, Algorithm::HS256, SECRET)).is_ok());
    }

    #[test]
    fn without_a_secret_every_token_is_refused() {
        let v = SubjectVerifier::new(None, 30);
        let err = v
            .verify(&sign(claims(), Algorithm::HS256, SECRET))
            .unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
    }
}
