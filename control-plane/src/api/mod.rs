//! The HTTP API: every route, and the OpenAPI document generated from the
//! handlers themselves (utoipa registers each handler once, with its path,
//! so routes and document cannot drift apart).
//!
//! Each resource module exposes `pub fn routes() -> OpenApiRouter<AppState>`
//! whose handlers carry `#[utoipa::path(...)]` with paths relative to
//! `/api/v1`, their `security(("admin_token" = []))` or
//! `security(("subject_token" = []))`, and the responses specific to them.
//! The responses every operation shares (400, 401, 404, 413, 415, 422, 429,
//! 500, 503 in the error shape) are added to the document by
//! [`StandardErrors`], so handlers do not repeat them.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorResponse};
use crate::state::AppState;

pub mod anchors;
pub mod audit;
pub mod bundles;
pub mod context;
pub mod extract;
pub mod fanout;
pub mod health;
pub mod holds;
pub mod jobs;
pub mod me;
pub mod meta;
pub mod pagination;
pub mod preview;

pub use context::RequestContext;
pub use pagination::{Page, PageQuery};

/// Prefix of every resource route.
pub const API_PREFIX: &str = "/api/v1";
/// Security scheme of admin tokens in the OpenAPI document.
pub const ADMIN_TOKEN: &str = "admin_token";
/// Security scheme of subject tokens in the OpenAPI document.
pub const SUBJECT_TOKEN: &str = "subject_token";

/// The document's fixed parts; the paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "lifecycled",
        description = "Privacy data lifecycle (export, erasure, legal holds, audit) of the `lifecycle` PostgreSQL extension. Errors answer `{\"error\": {\"code\", \"message\", \"detail\", \"hint\"}}` with the HTTP status of the extension's SQLSTATE.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorResponse, ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "operations", description = "Health, readiness, metrics, version"),
        (name = "jobs", description = "Export, erasure and purge jobs"),
        (name = "holds", description = "Legal holds"),
        (name = "audit", description = "The audit log"),
        (name = "me", description = "The data subject's own data")
    )
)]
pub struct ApiDoc;

/// The two bearer schemes of the contract.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "Admin token (`lc_...`) made with `lifecycled token create`; a platform admin sees every tenant, a tenant admin only theirs".to_owned(),
        );
        components.add_security_scheme(ADMIN_TOKEN, SecurityScheme::Http(admin));
        let mut subject = Http::new(HttpAuthScheme::Bearer);
        subject.bearer_format = Some("JWT".to_owned());
        subject.description = Some(
            "HS256 JWT signed by the host application: sub, subject_type, tenant, exp, aud = \"lifecycle\"".to_owned(),
        );
        components.add_security_scheme(SUBJECT_TOKEN, SecurityScheme::Http(subject));
    }
}

/// Adds the error responses every operation can give, where the handler
/// did not document them itself. Runs after the paths are merged (see
/// [`router`]), so it sees every operation.
pub struct StandardErrors;

impl StandardErrors {
    fn error(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .build(),
        );
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::schema::Object::with_type(
                        utoipa::openapi::schema::Type::Integer,
                    ))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            );
        }
        RefOr::T(response.build())
    }

    fn add(operation: &mut Operation, api: bool) {
        let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
        let has_body = operation.request_body.is_some();
        let mut wanted: Vec<(&str, &str, bool)> = vec![
            ("500", "Internal error (nothing internal is shown; the cause is logged with the request id)", false),
            ("503", "A database is unavailable or the request timed out", true),
        ];
        if api {
            wanted.extend([
                ("400", "Malformed parameter, cursor or limit", false),
                (
                    "404",
                    "Not found (also another tenant's object, or an unknown database)",
                    false,
                ),
                (
                    "422",
                    "Refused by the database's rules or invalid input",
                    false,
                ),
            ]);
        }
        if secured {
            wanted.extend([
                (
                    "401",
                    "Missing, unknown, revoked, expired or wrong kind of token",
                    false,
                ),
                (
                    "403",
                    "The database refused the action (four eyes, privileges)",
                    false,
                ),
                ("429", "Too many requests for this token", true),
            ]);
        }
        if has_body {
            wanted.extend([
                ("413", "Request body too large", false),
                ("415", "Request body is not application/json", false),
            ]);
        }
        for (status, description, retry_after) in wanted {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| Self::error(description, retry_after));
        }
    }
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with(API_PREFIX);
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                Self::add(operation, api);
            }
        }
    }
}

/// The API's routes under `/api/v1`, one router per resource.
fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(meta::routes())
        .merge(jobs::routes())
        .merge(preview::routes())
        .merge(holds::routes())
        .merge(audit::routes())
        .merge(me::routes())
}

/// Every route and the finished OpenAPI document (served at `/openapi.json`).
pub fn router() -> (Router<AppState>, OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .routes(routes!(crate::metrics::metrics_endpoint))
        .nest(API_PREFIX, api_v1())
        .split_for_parts();
    // The modifiers ran on the fixed part only; the merged paths need them too.
    StandardErrors.modify(&mut doc);
    (router, doc)
}

/// [`router`] plus `/openapi.json` and the JSON 404/405 fallbacks.
pub fn router_with_document() -> Router<AppState> {
    let (router, doc) = router();
    let json: Arc<[u8]> = serde_json::to_vec(&doc)
        .expect("the OpenAPI document serializes")
        .into();
    router
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    let mut response = json.to_vec().into_response();
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    response
                }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The OpenAPI document alone (for tools and tests).
pub fn openapi() -> OpenApi {
    router().1
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed for this route"),
    )
    .into_response()
}
