//! The small middleware functions of the router (the layers themselves are
//! put together in `build_router`).

use std::any::Any;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body::Body as _;
use http_body_util::{BodyStream, StreamBody};

use crate::error::{self, ApiError};
use crate::state::AppState;

/// API answers carry personal data and depend on the token: no cache
/// (shared or the browser's) may keep them. Other routes (pages, static
/// files) set their own policy.
pub async fn no_store(uri: Uri, mut response: Response) -> Response {
    if uri.path().starts_with(crate::api::API_PREFIX) {
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

/// A streamed body (the audit CSV, an export) is read to its end at most
/// once: compression polls a body again after it ended, which a stream
/// built with `futures::stream::unfold` answers with a panic that cuts the
/// response. Bodies of known size are left as they are (their
/// `Content-Length` stays).
pub async fn fuse_streams(response: Response) -> Response {
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    response.map(|body| Body::new(StreamBody::new(BodyStream::new(body).fuse())))
}

/// A handler that panicked answers 500 `internal` (the panic's message is
/// logged, never sent).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// Answer 503 `request_timeout` when a handler takes longer than
/// `--request-timeout-secs`; a streamed body that has started is not cut.
pub async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.request_timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::service_unavailable(
            error::CODE_REQUEST_TIMEOUT,
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use http_body_util::BodyExt;

    #[test]
    fn panics_become_internal_errors() {
        let response = panic_response(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = panic_response(Box::new(String::from("boom")));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_fused_stream_is_not_polled_after_its_end() {
        // An unfold stream panics when polled after it returned None.
        let stream = futures::stream::unfold(0, |n| async move {
            (n < 2).then(|| (Ok::<_, std::io::Error>(format!("{n}")), n + 1))
        });
        let response = fuse_streams(Body::from_stream(stream).into_response()).await;
        let mut body = response.into_body();
        let mut text = String::new();
        while let Some(frame) = body.frame().await {
            text.push_str(std::str::from_utf8(&frame.unwrap().into_data().unwrap()).unwrap());
        }
        assert_eq!(text, "01");
        // Polled again, as compression does: still the end, no panic.
        assert!(body.frame().await.is_none());
        assert!(body.frame().await.is_none());

        let fixed = fuse_streams("fixed".into_response()).await;
        assert_eq!(fixed.body().size_hint().exact(), Some(5));
    }
}
