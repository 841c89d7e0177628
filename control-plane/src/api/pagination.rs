//! Keyset pagination shared by every list: `?limit=&cursor=` in,
//! `{"items": [...], "next_cursor": ...}` out.
//!
//! The cursor is opaque to clients: URL-safe base64 of a small JSON value
//! each list chooses (typically the sort key of the last item, such as
//! `(requested_at, id)`), so that the next page starts after it and stays
//! stable while new rows arrive. A cursor that does not decode to the list's
//! own cursor type is a 400, never a 500. Forging one gains nothing: it is
//! only a position, and every list still applies the caller's tenant scope.
//!
//! A list handler takes its filters and the page as two extractors:
//! `Query(filter): Query<JobFilter>, Query(page): Query<PageQuery>` and
//! lists both in `params(JobFilter, PageQuery)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::UnavailableDatabase;
use crate::error::{ApiError, ApiResult};

/// Items per page when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`; above is a 400 rather than a silent cap, so a
/// client that asked for 10,000 rows learns it gets fewer per page.
pub const MAX_LIMIT: u32 = 500;
/// Longest accepted cursor text (a real one is far shorter).
pub const MAX_CURSOR_CHARS: usize = 1024;
/// Machine code of a malformed cursor.
pub const CODE_INVALID_CURSOR: &str = "invalid_cursor";

/// `?limit=&cursor=` of every list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 1024)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size: 50 when absent, 400 outside 1..=500.
    pub fn limit(&self) -> ApiResult<u32> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
            Some(limit) => Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {limit}"
            ))
            .with_code("invalid_limit")),
        }
    }

    /// The position to continue after, as the list's own cursor type.
    pub fn cursor<C: DeserializeOwned>(&self) -> ApiResult<Option<C>> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// Encode a position as an opaque cursor.
pub fn encode_cursor<C: Serialize>(position: &C) -> String {
    // Serializing plain data (numbers, strings, timestamps, uuids) to JSON
    // cannot fail.
    let json = serde_json::to_vec(position).expect("cursor positions serialize to JSON");
    URL_SAFE_NO_PAD.encode(json)
}

/// Decode a cursor made by [`encode_cursor`] with the same type; 400
/// `invalid_cursor` for anything else.
pub fn decode_cursor<C: DeserializeOwned>(cursor: &str) -> ApiResult<C> {
    let invalid = || {
        ApiError::bad_request("the cursor is not one this list returned")
            .with_code(CODE_INVALID_CURSOR)
            .with_hint(
                "pass next_cursor of the previous page unchanged, or no cursor for the first page",
            )
    };
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(invalid());
    }
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// Newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Databases that did not answer (their items are missing from this
    /// page); absent when every database answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<UnavailableDatabase>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` fetched items: the extra one only says
    /// that there is a next page, whose cursor `position` makes from the
    /// last item kept.
    pub fn from_overfetch<C: Serialize>(
        mut items: Vec<T>,
        limit: u32,
        position: impl Fn(&T) -> C,
    ) -> Self {
        let limit = limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| encode_cursor(&position(last)))
        } else {
            None
        };
        Self {
            items,
            next_cursor,
            unavailable: Vec::new(),
        }
    }

    /// Say which databases did not answer.
    pub fn with_unavailable(mut self, unavailable: Vec<UnavailableDatabase>) -> Self {
        self.unavailable = unavailable;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Position {
        at: i64,
        id: String,
    }

    #[test]
    fn limits_default_and_refuse_out_of_range() {
        assert_eq!(PageQuery::default().limit().unwrap(), DEFAULT_LIMIT);
        for ok in [1, 50, 500] {
            let q = PageQuery {
                limit: Some(ok),
                cursor: None,
            };
            assert_eq!(q.limit().unwrap(), ok);
        }
        for bad in [0, 501, u32::MAX] {
            let q = PageQuery {
                limit: Some(bad),
                cursor: None,
            };
            assert_eq!(q.limit().unwrap_err().status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400() {
        let position = Position {
            at: 42,
            id: "x".into(),
        };
        let cursor = encode_cursor(&position);
        assert_eq!(decode_cursor::<Position>(&cursor).unwrap(), position);
        let q = PageQuery {
            limit: None,
            cursor: Some(cursor),
        };
        assert_eq!(q.cursor::<Position>().unwrap(), Some(position));

        let wrong_shape = encode_cursor(&serde_json::json!({"at": "yesterday"}));
        let too_long = "A".repeat(MAX_CURSOR_CHARS + 1);
        for bad in ["", "!!!", "e30", wrong_shape.as_str(), too_long.as_str()] {
            let err = decode_cursor::<Position>(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err.code(), CODE_INVALID_CURSOR);
        }
    }

    #[test]
    fn overfetch_makes_the_next_cursor_from_the_last_item_kept() {
        let page = Page::from_overfetch(vec![5, 4, 3], 2, |n| *n);
        assert_eq!(page.items, [5, 4]);
        assert_eq!(
            decode_cursor::<i32>(page.next_cursor.as_deref().unwrap()).unwrap(),
            4
        );
        let page = Page::from_overfetch(vec![5, 4], 2, |n| *n);
        assert_eq!(page.next_cursor, None);
    }
}
