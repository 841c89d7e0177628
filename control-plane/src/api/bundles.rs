//! Handing an export's bundle to the one who may download it:
//! `lifecycle.export_download` checks and records the download, then a
//! redirect to a URL presigned for a few minutes when the store is S3, or
//! the bytes streamed from the store otherwise. The download's transaction
//! commits only once the bundle is there.

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

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::storage::Storage;

/// The checks, the count and the audit event of a download; answers where
/// the bundle is.
const DOWNLOAD: &str = "SELECT lifecycle.export_download($1, $2, $3, $4, $5::text::inet, $6)";

/// Whose export `id` is (target type and id) and who downloads it.
pub struct Downloader<'a> {
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub actor: &'a str,
}

/// Record the download of export `id` in `tx` (the request's context
/// applied) and deliver its bundle from `storage`.
pub async fn download(
    storage: &Storage,
    tx: Transaction<'_>,
    ctx: &RequestContext,
    id: Uuid,
    who: Downloader<'_>,
) -> ApiResult<Response> {
    let ip = ctx.ip.map(|ip| ip.to_string());
    let row = tx
        .query_one(
            DOWNLOAD,
            &[
                &id,
                &who.target_type,
                &who.target_id,
                &who.actor,
                &ip,
                &ctx.user_agent,
            ],
        )
        .await?;
    let bundle: serde_json::Value = row.get(0);
    let key = bundle["key"]
        .as_str()
        .ok_or_else(|| ApiError::internal(format!("export {id} has no bundle key")))?
        .to_owned();
    deliver(storage, &key, tx.commit()).await
}

/// How long a presigned URL of a bundle in S3 is valid.
pub const PRESIGNED_FOR: Duration = Duration::from_secs(5 * 60);

/// The response that delivers the bundle at `key`; `commit` ends the
/// transaction that recorded the download (a bundle missing from storage
/// is no download: the transaction is then dropped, rolled back).
async fn deliver<E>(
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
