//! Handing an export's bundle to the one who may download it: a redirect
//! to a URL presigned for a few minutes when the store is S3, the bytes
//! streamed from the store otherwise. The caller has checked and recorded
//! the download in a transaction; it commits only once the bundle is there.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::TryStreamExt;

use crate::error::{ApiError, ApiResult};
use crate::storage::Storage;

/// How long a presigned URL of a bundle in S3 is valid.
pub const PRESIGNED_FOR: Duration = Duration::from_secs(5 * 60);

/// The response that delivers the bundle at `key`; `commit` ends the
/// transaction that recorded the download (a bundle missing from storage
/// is no download: the transaction is then dropped, rolled back).
pub async fn deliver<E>(
    storage: &Storage,
    key: &str,
    commit: impl Future<Output = Result<(), E>>,
) -> ApiResult<Response>
where
    ApiError: From<E>,
{
    if let Some(url) = storage.presign_get(key, PRESIGNED_FOR).await? {
        commit.await?;
        let mut response = StatusCode::FOUND.into_response();
        let headers = response.headers_mut();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(&url).map_err(ApiError::internal)?,
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    let object = storage.get(key).await?;
    commit.await?;
    let file_name = format!("export-{}.zip", Utc::now().format("%Y-%m-%d"));
    let mut response =
        Body::from_stream(object.stream.map_err(std::io::Error::other)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(object.size));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
            .map_err(ApiError::internal)?,
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
