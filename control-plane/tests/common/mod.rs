//! Helpers shared by the control plane's integration tests. Everything is
//! real: a PostgreSQL database per test (the `lifecycle-tests` crate's
//! [`TestDb`], dropped with the test), prepared with `lifecycled setup`,
//! the service role it creates, admin tokens stored as the CLI stores them,
//! subject tokens signed as a host application signs them, and the router
//! called in-process or served over TCP, or the real binary.
//!
//! ```ignore
//! let service = TestService::start("jobs").await;
//! let admin = service.create_token("platform-admin", None).await;
//! let response = call(service.router(), request(Method::GET, "/api/v1/jobs").bearer(&admin)).await;
//! ```

#![allow(dead_code)]

pub mod openapi;
pub mod proxy;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lifecycle_tests::{Role, TestDb};
use lifecycled::auth::token;
use lifecycled::auth::AdminRole;
use lifecycled::setup::{setup_database, SetupOptions};
use lifecycled::{AppState, Config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

#[allow(unused_imports)]
pub use lifecycle_tests::admin_url;

/// The subject-token secret every test service is configured with.
pub const SUBJECT_SECRET: &str = "test-subject-token-secret-0123456789abcdef";

/// A test database prepared by `lifecycled setup`, with its own service role.
pub struct TestService {
    pub db: TestDb,
    /// The service role (`lifecycled setup --service-role` for this test).
    pub service: Role,
    /// The local object store of this test's bundles and anchors.
    pub storage: TestStorage,
}

/// A directory of its own for a test's object store, removed with the test.
pub struct TestStorage {
    pub dir: std::path::PathBuf,
}

impl TestStorage {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join("lifecycled-tests").join(name);
        std::fs::create_dir_all(&dir).expect("test storage directory");
        Self { dir }
    }

    /// `file://` URL of the directory.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

impl Drop for TestStorage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestService {
    /// A fresh database with the extension, a service role of its own (roles
    /// are cluster-wide; tests run in parallel) and `lifecycled setup` run
    /// in it as the primary.
    pub async fn start(prefix: &str) -> Self {
        let mut db = TestDb::create(prefix).await.expect("test database");
        let service = db.create_role("svc").await.expect("service role");
        setup(&db, &service, true).await;
        let storage = TestStorage::new(&db.name);
        Self {
            db,
            service,
            storage,
        }
    }

    /// Superuser URL of this database.
    pub fn admin_url(&self) -> String {
        self.db.url_for(&Role::Superuser)
    }

    /// Service-role URL of this database (what `lifecycled serve` uses).
    pub fn service_url(&self) -> String {
        self.db.url_for(&self.service)
    }

    /// A configuration serving this database as the service role, with the
    /// test subject secret and no worker.
    pub fn config(&self) -> Config {
        let mut config = Config::with_database_url(self.service_url());
        config.subject_token_secret = Some(SUBJECT_SECRET.to_owned());
        config.no_worker = true;
        config.db.db_timeout_secs = 2;
        config.storage.storage_url = Some(self.storage.url());
        config
    }

    /// The state of [`Self::config`].
    pub fn state(&self) -> AppState {
        AppState::new(self.config()).expect("valid config")
    }

    /// The router of [`Self::config`].
    pub fn router(&self) -> Router {
        lifecycled::build_router(self.state())
    }

    /// A superuser session in this database.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        self.db
            .connect_superuser()
            .await
            .expect("superuser session")
    }

    /// Create an admin token as `lifecycled token create` does; returns the
    /// token. `role` is `platform-admin` or `tenant-admin`.
    pub async fn create_token(&self, role: &str, tenant: Option<&str>) -> String {
        let name = format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        self.create_named_token(&name, role, tenant).await.1
    }

    /// Create an admin token with this name; returns its id and the token.
    pub async fn create_named_token(
        &self,
        name: &str,
        role: &str,
        tenant: Option<&str>,
    ) -> (uuid::Uuid, String) {
        let role = AdminRole::from_parts(role, tenant.map(str::to_owned)).expect("valid role");
        let client = self.superuser().await;
        let (info, new) = token::create(&client, name, &role)
            .await
            .expect("create token");
        (info.id, new.token)
    }
}

/// Run `lifecycled setup` in `db` for `service` (keeping its password).
pub async fn setup(db: &TestDb, service: &Role, primary: bool) {
    let mut client = db.connect_superuser().await.expect("superuser session");
    setup_database(
        &mut client,
        &SetupOptions {
            role: service.name().expect("a login role"),
            password: None,
            own_schema: primary,
        },
    )
    .await
    .expect("lifecycled setup");
}

/// Seconds since the epoch, for `exp`.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A subject token as a host application signs it. `alg` `None` makes an
/// unsigned `alg: none` token; `key` is the HMAC secret.
pub fn subject_token(
    sub: &str,
    subject_type: &str,
    tenant: Option<&str>,
    exp: i64,
    aud: &str,
    alg: Option<Algorithm>,
    key: &str,
) -> String {
    let claims = serde_json::json!({
        "sub": sub, "subject_type": subject_type, "tenant": tenant, "exp": exp, "aud": aud,
    });
    sign_claims(&claims, alg, key)
}

/// Sign any claims (to leave one out, say).
pub fn sign_claims(claims: &serde_json::Value, alg: Option<Algorithm>, key: &str) -> String {
    match alg {
        Some(alg) => jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .expect("sign"),
        None => format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ),
    }
}

/// A valid subject token for `user`/`sub` in `tenant`, five minutes long.
pub fn user_token(sub: &str, tenant: Option<&str>) -> String {
    subject_token(
        sub,
        "user",
        tenant,
        now() + 300,
        "lifecycle",
        Some(Algorithm::HS256),
        SUBJECT_SECRET,
    )
}

/// A request being built: `request(Method::POST, "/api/v1/jobs").bearer(&t).json(&body)`.
pub struct RequestBuilder {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
}

pub fn request(method: Method, path: &str) -> RequestBuilder {
    RequestBuilder {
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: Body::empty(),
    }
}

impl RequestBuilder {
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.headers
            .push(("content-type".to_owned(), "application/json".to_owned()));
        self.body = Body::from(body.to_string());
        self
    }

    pub fn raw_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub fn build(self) -> Request<Body> {
        let mut builder = Request::builder().method(self.method).uri(self.path);
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder.body(self.body).expect("request")
    }
}

impl From<RequestBuilder> for Request<Body> {
    fn from(builder: RequestBuilder) -> Self {
        builder.build()
    }
}

/// A response with its body read (and parsed as JSON when it is JSON).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Assert a response's status and, unless `code` is empty, its error code.
pub fn expect(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    if !code.is_empty() {
        assert_eq!(response.code(), code, "{}", response.text());
    }
}

/// Backwards-compatible name.
pub type JsonResponse = TestResponse;

/// Send `request` through `router` (no network).
pub async fn call(router: Router, request: impl Into<Request<Body>>) -> TestResponse {
    let response = router.oneshot(request.into()).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    TestResponse {
        status,
        headers,
        bytes,
        body,
    }
}

/// `GET path` through `router`.
pub async fn get(router: Router, path: &str) -> TestResponse {
    call(router, request(Method::GET, path)).await
}

/// `GET path` with a bearer token through `router`.
pub async fn get_as(router: Router, path: &str, token: &str) -> TestResponse {
    call(router, request(Method::GET, path).bearer(token)).await
}

/// A router served over TCP on a free port of 127.0.0.1; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lifecycled::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop accepting, finish in-flight requests, and wait for the end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops")
                .expect("server task")
                .expect("server");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// The real `lifecycled` binary, serving on a free port; killed when dropped.
/// Its output is collected as it comes (a full pipe would block it).
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

/// Copy a child's stream into `sink` until it closes.
fn drain(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, sink: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = sink.lock().expect("output lock");
            sink.push_str(&line);
            sink.push('\n');
        }
    });
}

impl Binary {
    /// Start `lifecycled serve` with `args` (and `--listen` on a free port)
    /// and wait until `/healthz` answers.
    pub async fn serve(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifecycled"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .env_remove("LIFECYCLE_DATABASE_URL")
            .env_remove("LIFECYCLE_DATABASES")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn lifecycled");
        let output = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().expect("stdout"), output.clone());
        drain(child.stderr.take().expect("stderr"), output.clone());
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "lifecycled exited with {status}: {}",
                    output.lock().expect("output lock")
                );
            }
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok()
            {
                return Self {
                    child,
                    addr,
                    output,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lifecycled did not answer /healthz");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the process wrote so far (stdout and stderr, by lines).
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }

    /// Send SIGTERM and wait for the exit; returns the status and the output.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("running");
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill -TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("lifecycled exits after SIGTERM")
            .expect("exit status");
        // Let the readers take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, self.output())
    }
}

/// Run the `lifecycled` binary to completion with `args`.
pub async fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lifecycled"))
        .args(args)
        .env_remove("LIFECYCLE_DATABASE_URL")
        .env_remove("LIFECYCLE_DATABASES")
        .env_remove("LIFECYCLE_ADMIN_URL")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run lifecycled")
}
