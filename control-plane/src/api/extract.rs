//! Extractors for request input whose refusals answer in the API's error
//! shape (axum's own answer plain text): a body that is not JSON, too large
//! or of the wrong shape, a malformed path parameter or query string.
//!
//! They also refuse text PostgreSQL cannot store: a NUL character
//! (`%00` in a URL, `\u0000` in JSON) is a 400 here rather than a
//! database error (SQLSTATE 22021) once a handler passes it on.
//!
//! Handlers use these instead of axum's `Json`, `Path` and `Query`:
//! `use crate::api::extract::{Json, Path, Query};`. `Json` is also the
//! response wrapper, so one name serves both directions.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, CODE_INVALID_PARAMETER, CODE_INVALID_REQUEST_BODY};

/// A JSON request body (415 without `Content-Type: application/json`, 413
/// above `--max-body-bytes`, 400 for invalid JSON or a NUL character, 422
/// for the wrong shape), or a JSON response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // Content type, size and syntax as axum checks them; then the text,
        // then the shape.
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        if holds_nul(&value) {
            return Err(nul_refused(CODE_INVALID_REQUEST_BODY, "the request body"));
        }
        serde_json::from_value(value).map(Json).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                CODE_INVALID_REQUEST_BODY,
                format!("Failed to deserialize the JSON body into the target type: {err}"),
            )
        })
    }
}

/// Path parameters (400 `invalid_parameter` when they do not parse).
#[derive(Clone, Copy, Debug, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path()) {
            return Err(nul_refused(CODE_INVALID_PARAMETER, "the path"));
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// Query parameters (400 `invalid_parameter` when they do not parse).
/// Several `Query` extractors may read the same query string, for example a
/// resource's filters and [`super::pagination::PageQuery`]; unknown keys are
/// ignored by each.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encodes_nul) {
            return Err(nul_refused(CODE_INVALID_PARAMETER, "the query string"));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Whether URL text carries a percent-encoded NUL.
fn encodes_nul(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Whether a string anywhere in a JSON value (keys included) holds a NUL.
fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        _ => false,
    }
}

fn nul_refused(code: &'static str, what: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{what} contains a NUL character, which no text stored in PostgreSQL may hold"
    ))
    .with_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Thing {
        name: String,
    }

    fn json_request(body: &str) -> Request {
        axum::http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn json_bodies_are_checked_in_order() {
        let Json(thing) = Json::<Thing>::from_request(json_request(r#"{"name":"a"}"#), &())
            .await
            .unwrap();
        assert_eq!(thing.name, "a");

        let err = Json::<Thing>::from_request(json_request("{nope"), &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = Json::<Thing>::from_request(json_request(r#"{"name":"a\u0000b"}"#), &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("NUL"), "{}", err.message());
        let err = Json::<Thing>::from_request(json_request(r#"{"name":1}"#), &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code(), CODE_INVALID_REQUEST_BODY);

        let plain = axum::http::Request::builder()
            .method("POST")
            .uri("/")
            .body(Body::from(r#"{"name":"a"}"#))
            .unwrap();
        let err = Json::<Thing>::from_request(plain, &()).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn nul_characters_are_found_anywhere() {
        assert!(encodes_nul("a=%00"));
        assert!(!encodes_nul("a=%20b%10"));
        assert!(holds_nul(&json!({"a": [1, {"b": "x\u{0}"}]})));
        assert!(holds_nul(&json!({"a\u{0}": 1})));
        assert!(!holds_nul(&json!({"a": ["b", 1, null]})));
    }

    #[tokio::test]
    async fn query_and_path_refuse_nul() {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/x?name=a%00b")
            .body(())
            .unwrap()
            .into_parts();
        let err = Query::<Thing>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), CODE_INVALID_PARAMETER);

        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/x?name=ab")
            .body(())
            .unwrap()
            .into_parts();
        let Query(thing) = Query::<Thing>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(thing.name, "ab");
    }
}
