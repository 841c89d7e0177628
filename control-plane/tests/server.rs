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
