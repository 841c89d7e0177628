//! The audit log: query as JSON pages or one streamed CSV, verify the hash
//! chains (admin tokens).
//!
//! A tenant admin sees only the events of their tenant (not the events of
//! no tenant: those are the platform's). The CSV holds every
//! matching event and is streamed: each database is read through a
//! server-side portal, a batch at a time, and the batches of several
//! databases are merged in list order as the client reads, so memory does
//! not grow with the log (a seven-year log is gigabytes).
//!
//! Verifying walks every tenant's events, so it is for platform admins; a
//! tenant admin is refused with 403 (the refusal is about the route, not
//! about another tenant's object, and says nothing about other tenants).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Object;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::anchors::{self, AnchorCheck};
use super::extract::{Json, Query};
use super::fanout::{self, bound_params, Position, Positioned};
use super::{Page, PageQuery};
use crate::auth::Admin;
use crate::db::UnavailableDatabase;
use crate::error::{ApiError, ApiResult, CODE_INVALID_PARAMETER};
use crate::state::AppState;

/// The events matching a selection, newest first. `$1`..`$9` are
/// [`Selection::params`]; the JSON list adds `LIMIT $10`.
const SELECT_EVENTS: &str = "\
    SELECT id, occurred_at, event_type, actor, subject_type, subject_id, tenant_id, \
           ip, user_agent, reason, details, redacted_at \
      FROM lifecycle.audit_log \
     WHERE ($1::text IS NULL OR subject_type = $1) \
       AND ($2::text IS NULL OR subject_id = $2) \
       AND ($3::text IS NULL OR tenant_id = $3) \
       AND ($4::text IS NULL OR tenant_id = $4) \
       AND ($5::text IS NULL OR event_type = $5) \
       AND ($6::timestamptz IS NULL OR occurred_at >= $6) \
       AND ($7::timestamptz IS NULL OR occurred_at < $7) \
       AND ($8::timestamptz IS NULL OR (occurred_at, id) < ($8, $9::bigint)) \
     ORDER BY occurred_at DESC, id DESC";

/// Rows fetched from a portal at a time while streaming the CSV.
const CSV_BATCH_ROWS: i32 = 1000;
/// Bytes of CSV gathered before they are handed to the connection.
const CSV_CHUNK_BYTES: usize = 64 * 1024;
/// Columns of the CSV, in order (the names of the JSON fields).
const CSV_HEADER: [&str; 13] = [
    "database",
    "id",
    "occurred_at",
    "event_type",
    "actor",
    "subject_type",
    "subject_id",
    "tenant_id",
    "ip",
    "user_agent",
    "reason",
    "details",
    "redacted_at",
];

/// One audit event. Personal data of an erased subject reads `null`
/// (`redacted_at` says when it was made unreadable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 1207, "database": "default", "occurred_at": "2026-11-02T09:30:00.123456Z",
    "event_type": "legal_hold.placed", "actor": "legal@corp",
    "subject_type": "user", "subject_id": "42", "tenant_id": "acme",
    "ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "reason": "Litigation 2026-17",
    "details": {"hold_id": "0b7a4c1e-5f27-4d0e-9a57-1f6f3c1d2e90"}, "redacted_at": null
}))]
pub struct AuditEvent {
    /// The event's id in its database.
    pub id: i64,
    /// The configured name of the event's database.
    pub database: String,
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub actor: Option<String>,
    pub subject_type: Option<String>,
    pub subject_id: Option<String>,
    pub tenant_id: Option<String>,
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub redacted_at: Option<DateTime<Utc>>,
}

impl AuditEvent {
    fn from_row(database: &str, row: &Row) -> ApiResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            database: database.to_owned(),
            occurred_at: row.try_get("occurred_at")?,
            event_type: row.try_get("event_type")?,
            actor: row.try_get("actor")?,
            subject_type: row.try_get("subject_type")?,
            subject_id: row.try_get("subject_id")?,
            tenant_id: row.try_get("tenant_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            reason: row.try_get("reason")?,
            details: row.try_get("details")?,
            redacted_at: row.try_get("redacted_at")?,
        })
    }

    /// The event as a CSV record, in [`CSV_HEADER`]'s order.
    fn csv_record(&self) -> [Cow<'_, str>; 13] {
        fn text(v: &Option<String>) -> Cow<'_, str> {
            neutralize(v.as_deref().unwrap_or(""))
        }
        let time = |t: DateTime<Utc>| Cow::Owned(t.to_rfc3339_opts(SecondsFormat::Micros, true));
        [
            Cow::Borrowed(self.database.as_str()),
            Cow::Owned(self.id.to_string()),
            time(self.occurred_at),
            neutralize(&self.event_type),
            text(&self.actor),
            text(&self.subject_type),
            text(&self.subject_id),
            text(&self.tenant_id),
            self.ip
                .map_or(Cow::Borrowed(""), |ip| Cow::Owned(ip.to_string())),
            text(&self.user_agent),
            text(&self.reason),
            self.details
                .as_ref()
                .map_or(Cow::Borrowed(""), |d| Cow::Owned(d.to_string())),
            self.redacted_at.map_or(Cow::Borrowed(""), time),
        ]
    }
}

/// A text cell that a spreadsheet would run as a formula (it starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`:
/// reasons and user agents are written by outsiders, and the CSV is opened
/// by auditors.
fn neutralize(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

impl Positioned for AuditEvent {
    type Id = i64;

    fn position(&self) -> Position<i64> {
        Position {
            at: self.occurred_at,
            database: self.database.clone(),
            id: self.id,
        }
    }
}

/// `format` of `GET /api/v1/audit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// Pages of `{"items", "next_cursor"}`.
    #[default]
    Json,
    /// Every matching event in one streamed `text/csv` body with a header row.
    Csv,
}

/// Filters of `GET /api/v1/audit`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    pub subject_type: Option<String>,
    pub subject_id: Option<String>,
    /// Events of this tenant only (a tenant admin sees only their own anyway).
    pub tenant_id: Option<String>,
    /// An event name such as `legal_hold.placed` (exact match).
    pub event_type: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`; `limit` and `cursor` do not apply to `csv`.
    #[param(inline)]
    pub format: Option<AuditFormat>,
}

/// What one query of [`SELECT_EVENTS`] selects in one database.
#[derive(Clone, Debug)]
struct Selection {
    filter: AuditFilter,
    /// A tenant admin's tenant.
    scope: Option<String>,
    after_at: Option<DateTime<Utc>>,
    after_id: Option<i64>,
}

impl Selection {
    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        let f = &self.filter;
        [
            &f.subject_type,
            &f.subject_id,
            &f.tenant_id,
            &self.scope,
            &f.event_type,
            &f.from,
            &f.to,
            &self.after_at,
            &self.after_id,
        ]
    }
}

/// Body of `GET /api/v1/audit/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    /// Every database answered and every chain of each verifies.
    pub ok: bool,
    /// Events checked, over the databases that answered.
    pub checked: i64,
    pub databases: Vec<DatabaseVerification>,
    /// Databases that did not answer (then `ok` is false).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<UnavailableDatabase>,
}

/// What `lifecycle.verify_audit_log()` and the anchors found in one
/// database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseVerification {
    pub database: String,
    /// The chains verify and agree with every anchor compared.
    pub ok: bool,
    pub checked: i64,
    /// The first event (by id) whose hash or chain link does not verify.
    pub first_bad_id: Option<i64>,
    /// The log compared with the chain heads anchored in object storage:
    /// events that no longer match or are missing since an anchor.
    pub anchors: AnchorCheck,
}

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_audit))
        .routes(routes!(verify_audit))
}

/// Audit events, newest first, across every database: JSON pages, or with
/// `format=csv` every matching event in one streamed CSV (header row
/// first; columns as the JSON fields, `database` first).
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    security(("admin_token" = [])),
    params(AuditFilter, PageQuery),
    responses((status = 200,
        description = "A page of events (`unavailable` names the databases that did not answer), or the CSV (refused with 503 unless every database answers: an export is complete or not given)",
        content(
            (Page<AuditEvent> = "application/json"),
            (String = "text/csv")
        )))
)]
pub async fn query_audit(
    admin: Admin,
    axum::extract::State(state): axum::extract::State<AppState>,
    Query(filter): Query<AuditFilter>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Response> {
    let selection = Selection {
        scope: admin.tenant_scope().map(str::to_owned),
        filter,
        after_at: None,
        after_id: None,
    };
    match selection.filter.format.unwrap_or_default() {
        AuditFormat::Json => Ok(Json(list(&state, selection, &page).await?).into_response()),
        AuditFormat::Csv => {
            if page.limit.is_some() || page.cursor.is_some() {
                return Err(ApiError::bad_request(
                    "limit and cursor do not apply to format=csv, which returns every matching event",
                )
                .with_code(CODE_INVALID_PARAMETER));
            }
            csv(&state, selection).await
        }
    }
}

/// One JSON page.
async fn list(
    state: &AppState,
    selection: Selection,
    page: &PageQuery,
) -> ApiResult<Page<AuditEvent>> {
    let selection = &selection;
    fanout::list(&state.dbs, page, |name, client, bound, limit| async move {
        let (after_at, after_id) = bound_params(bound);
        let selection = Selection {
            after_at,
            after_id,
            ..selection.clone()
        };
        let mut params = selection.params().to_vec();
        params.push(&limit);
        let sql = format!("{SELECT_EVENTS} LIMIT $10");
        let rows = client.query(&sql, &params).await?;
        rows.iter()
            .map(|row| AuditEvent::from_row(&name, row))
            .collect()
    })
    .await
}

/// Every matching event as one streamed CSV. Every database must answer
/// before the first byte is sent; one that fails later cuts the body short
/// (the client sees an incomplete transfer, never a partial file that
/// looks whole).
async fn csv(state: &AppState, selection: Selection) -> ApiResult<Response> {
    let selection = Arc::new(selection);
    let answers = state
        .dbs
        .fan_out(|name, client| {
            let selection = selection.clone();
            async move { start_reader(name, client, selection).await }
        })
        .await;
    let mut sources = Vec::with_capacity(answers.len());
    for answer in answers {
        sources.push(Source {
            rows: answer.result?,
            buffer: VecDeque::new(),
            done: false,
        });
    }
    let span = tracing::Span::current();
    let body = futures::stream::unfold(Some((sources, true)), move |state| {
        let span = span.clone();
        async move {
            let (mut sources, first) = state?;
            let mut writer = csv::Writer::from_writer(Vec::with_capacity(CSV_CHUNK_BYTES * 2));
            if first {
                if let Err(err) = writer.write_record(CSV_HEADER) {
                    return Some((Err(cut(&span, ApiError::internal(err))), None));
                }
            }
            let more = loop {
                match next_event(&mut sources).await {
                    Some(Ok(event)) => {
                        let record = event.csv_record();
                        if let Err(err) = writer.write_record(record.iter().map(|c| c.as_bytes())) {
                            return Some((Err(cut(&span, ApiError::internal(err))), None));
                        }
                        if writer.get_ref().len() >= CSV_CHUNK_BYTES {
                            break true;
                        }
                    }
                    Some(Err(err)) => return Some((Err(cut(&span, err)), None)),
                    None => break false,
                }
            };
            let chunk = match writer.into_inner() {
                Ok(chunk) => chunk,
                Err(err) => return Some((Err(cut(&span, ApiError::internal(err))), None)),
            };
            if chunk.is_empty() && !more {
                return None;
            }
            Some((Ok(chunk), more.then_some((sources, false))))
        }
    });
    // Fused: a body may be polled again after its end (compression does).
    let mut response = Body::from_stream(body.fuse()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit-log.csv\""),
    );
    Ok(response)
}

/// Log why a CSV stream stops early; the error ends the body.
fn cut(span: &tracing::Span, err: ApiError) -> std::io::Error {
    span.in_scope(|| tracing::error!(error = %err, "audit CSV cut short"));
    std::io::Error::other("the audit CSV could not be completed")
}

/// One database's events for the CSV, in batches, in list order.
struct Source {
    rows: mpsc::Receiver<ApiResult<Vec<AuditEvent>>>,
    buffer: VecDeque<AuditEvent>,
    done: bool,
}

/// The next event in list order over every source (refilling the ones
/// whose batch is used up); `None` when all are exhausted.
async fn next_event(sources: &mut [Source]) -> Option<ApiResult<AuditEvent>> {
    for source in sources.iter_mut() {
        if source.buffer.is_empty() && !source.done {
            match source.rows.recv().await {
                Some(Ok(batch)) => source.buffer.extend(batch),
                Some(Err(err)) => return Some(Err(err)),
                None => source.done = true,
            }
        }
    }
    let first = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.buffer.front().map(|e| (i, e.position())))
        .min_by(|(_, a), (_, b)| a.list_order(b))?
        .0;
    sources[first].buffer.pop_front().map(Ok)
}

/// Start reading one database's matching events through a portal of a
/// read-only transaction, on a task that owns the connection and sends
/// batches of [`CSV_BATCH_ROWS`] as the client takes them (a channel of
/// one batch: the database is read no faster than the client reads).
/// Answers once the query runs, so that a refusal is an HTTP error rather
/// than a broken body. When the client goes away, the task ends and the
/// transaction rolls back.
async fn start_reader(
    name: Arc<str>,
    client: Object,
    selection: Arc<Selection>,
) -> ApiResult<mpsc::Receiver<ApiResult<Vec<AuditEvent>>>> {
    let (started_tx, started) = oneshot::channel();
    let (batches, rows) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut client = client;
        let opened = async {
            let tx = client.build_transaction().read_only(true).start().await?;
            let statement = tx.prepare(SELECT_EVENTS).await?;
            let portal = tx.bind(&statement, &selection.params()).await?;
            Ok::<_, ApiError>((tx, portal))
        }
        .await;
        let (tx, portal) = match opened {
            Ok(opened) => {
                let _ = started_tx.send(Ok(()));
                opened
            }
            Err(err) => {
                let _ = started_tx.send(Err(err));
                return;
            }
        };
        loop {
            let batch = match tx.query_portal(&portal, CSV_BATCH_ROWS).await {
                Ok(rows) => rows,
                Err(err) => {
                    let _ = batches.send(Err(err.into())).await;
                    return;
                }
            };
            let last = batch.len() < CSV_BATCH_ROWS as usize;
            if !batch.is_empty() {
                let events = batch
                    .iter()
                    .map(|row| AuditEvent::from_row(&name, row))
                    .collect();
                if batches.send(events).await.is_err() {
                    return; // the client went away
                }
            }
            if last {
                return;
            }
        }
    });
    started
        .await
        .map_err(|_| ApiError::internal("the audit reader stopped before it started"))??;
    Ok(rows)
}

/// Verify the audit log's hash chains in every database, and compare them
/// with the newest chain heads anchored in object storage (platform admins).
#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "audit",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "What each database's verification found", body = AuditVerification),
        (status = 403, description = "A tenant admin: verification reads every tenant's events (`forbidden`)", body = crate::error::ErrorResponse)
    )
)]
pub async fn verify_audit(
    admin: Admin,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> ApiResult<Json<AuditVerification>> {
    if admin.tenant_scope().is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "verifying the audit log is for platform admins",
        )
        .with_detail("Verification reads the events of every tenant.")
        .with_hint("ask a platform admin; the events of your tenant are at GET /api/v1/audit"));
    }
    let storage = &state.storage;
    let answers = state
        .dbs
        .fan_out(|name, client| async move {
            let row = client
                .query_one(
                    "SELECT ok, checked, first_bad_id FROM lifecycle.verify_audit_log()",
                    &[],
                )
                .await?;
            let anchors = anchors::check(storage, &name, &**client).await?;
            let ok: bool = row.try_get(0)?;
            Ok(DatabaseVerification {
                database: name.to_string(),
                ok: ok && anchors.mismatches.is_empty() && anchors.unreadable.is_empty(),
                checked: row.try_get(1)?,
                first_bad_id: row.try_get(2)?,
                anchors,
            })
        })
        .await;
    let (values, unavailable) = fanout::answered(answers)?;
    let databases: Vec<DatabaseVerification> = values.into_iter().map(|(_, v)| v).collect();
    Ok(Json(AuditVerification {
        ok: unavailable.is_empty() && databases.iter().all(|d| d.ok),
        checked: databases.iter().map(|d| d.checked).sum(),
        databases,
        unavailable,
    }))
}
