//! Shared helpers for the integration tests. They run against a real
//! PostgreSQL cluster (see `admin_url`); every test that needs a database
//! creates its own, uniquely named, and drops it when done.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use lifecycled::{AppState, Config};
use tokio_postgres::NoTls;
use tower::ServiceExt;

/// Admin (superuser) URL used when `LIFECYCLE_TEST_DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://lifecycle_admin:lifecycle@127.0.0.1:5432/postgres";

/// Superuser connection URL of the test cluster.
pub fn admin_url() -> String {
    std::env::var("LIFECYCLE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `dbname`. Supports both
/// `postgres://` URLs and `key=value` connection strings.
pub fn url_with_database(url: &str, dbname: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={dbname}");
    };
    let after_scheme = scheme_end + 3;
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_part = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{host_part}/{dbname}{query}")
}

/// A fresh, uniquely named database name.
pub fn unique_database_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}_{}", std::process::id(), &id[..12])
}

/// Open a plain connection (the connection task runs on the current runtime).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test cluster: {err}"));
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("test connection error: {err}");
        }
    });
    client
}

/// A database created for one test and dropped (forcibly) when this value
/// is dropped, even if the test panics.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let name = unique_database_name("lc_cp_test");
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        Self {
            url: url_with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Application state whose pool points at this database.
    pub fn state(&self) -> AppState {
        AppState::new(Config::with_database_url(&self.url)).expect("valid config")
    }

    /// A direct connection to this database.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime: use a separate thread with
        // its own runtime so blocking on the DROP is allowed.
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let admin = connect(&admin_url).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
        })
        .join();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop test database {}: {err}", self.name),
            Err(_) => eprintln!("could not drop test database {}: panic", self.name),
        }
    }
}

/// A response with its body parsed as JSON.
pub struct JsonResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// Send `request` through `router` (no network) and parse the JSON body.
pub async fn call(router: Router, request: Request<Body>) -> JsonResponse {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    JsonResponse {
        status,
        headers,
        body,
    }
}

/// `GET path` through `router`.
pub async fn get(router: Router, path: &str) -> JsonResponse {
    call(
        router,
        Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request"),
    )
    .await
}
