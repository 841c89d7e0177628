//! The real HTTP server on an ephemeral port, called over TCP.

mod common;

use std::time::Duration;

use axum::routing::get;
use lifecycled::{build_router, serve, AppState, Config};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn serves_healthz_over_http_and_shuts_down_gracefully() {
    let state = AppState::new(Config::with_database_url(common::admin_url())).unwrap();
    let router = build_router(state).route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));

    // A request in flight when shutdown starts still completes.
    let slow = tokio::spawn(
        reqwest::Client::new()
            .get(format!("http://{address}/test/slow"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();

    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), reqwest::StatusCode::OK);
    assert_eq!(slow.text().await.unwrap(), "done");
    drop(client);

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .unwrap()
        .unwrap();

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// The real binary as the service role: JSON logs carry the request id on
/// every request line and never the token; SIGTERM ends it cleanly.
#[tokio::test]
async fn the_binary_logs_json_with_request_ids_and_stops_on_sigterm() {
    let service = common::TestService::start("cp_server_bin").await;
    let token = service.create_token("platform-admin", None).await;
    let url = service.service_url();
    let binary = common::Binary::serve(
        &["--log-format", "json", "--no-worker"],
        &[
            ("LIFECYCLE_DATABASE_URL", url.as_str()),
            ("LIFECYCLE_SUBJECT_TOKEN_SECRET", common::SUBJECT_SECRET),
            ("RUST_LOG", "info"),
        ],
    )
    .await;

    let client = reqwest::Client::new();
    let response = client
        .get(binary.url("/api/v1/whoami"))
        .bearer_auth(&token)
        .header("x-request-id", "req-json-1")
        .header("user-agent", "test-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let response = client
        .get(binary.url("/api/v1/whoami"))
        .bearer_auth("lc_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ready = client.get(binary.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);

    let (status, output) = binary.terminate().await;
    assert!(status.success(), "{status}: {output}");
    assert!(!output.contains(&token), "a token reached the log");
    assert!(
        !output.contains(&token[16..]),
        "a token's secret reached the log"
    );
    assert!(
        !output.contains("AAAAAAAAAAAAAAAA"),
        "a presented token reached the log"
    );
    assert!(!output.to_ascii_lowercase().contains("bearer "), "{output}");
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    let completed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "request completed")
        .collect();
    assert!(completed.len() >= 3, "{output}");
    for line in &completed {
        let span = &line["span"];
        assert!(span["request_id"].is_string(), "{line}");
        assert!(span["route"].is_string(), "{line}");
    }
    assert!(completed
        .iter()
        .any(|l| l["span"]["request_id"] == "req-json-1"));
    assert!(completed
        .iter()
        .any(|l| l["span"]["request_id"] == generated.as_str()));
    let admin = completed
        .iter()
        .find(|l| l["span"]["request_id"] == "req-json-1")
        .unwrap();
    assert!(
        admin["span"]["principal"]
            .as_str()
            .is_some_and(|p| p.starts_with("admin:")),
        "{admin}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "shut down"),
        "{output}"
    );
}

#[tokio::test]
async fn the_binary_refuses_to_serve_as_a_superuser() {
    let service = common::TestService::start("cp_server_su").await;
    let url = service.admin_url();
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let output = common::run_cli(
        &["serve", "--no-worker", "--listen", &listen],
        &[("LIFECYCLE_DATABASE_URL", url.as_str())],
    )
    .await;
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("superuser"), "{text}");
    assert!(text.contains("lifecycled setup"), "{text}");
    assert!(
        !text.contains("lifecycle@") && !text.contains(":lifecycle@"),
        "no password in the output: {text}"
    );
}

/// With its worker (the default), SIGTERM stops the server first and the
/// worker after it, then the process exits cleanly.
#[tokio::test]
async fn sigterm_stops_the_server_then_the_worker() {
    let service = common::TestService::start("cp_server_worker").await;
    let url = service.service_url();
    let binary = common::Binary::serve(
        &["--worker-poll-secs", "1"],
        &[
            ("LIFECYCLE_DATABASE_URL", url.as_str()),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let ready = reqwest::get(binary.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let (status, output) = binary.terminate().await;
    assert!(status.success(), "{status}: {output}");
    let position = |needle: &str| {
        output
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{output}"))
    };
    let started = position("worker started");
    let signal = position("received SIGTERM");
    let stopped = position("worker stopped");
    let down = position("shut down");
    assert!(
        started < signal && signal < stopped && stopped < down,
        "{output}"
    );
}
