//! Admin tokens and subject tokens through the real router and a real
//! database: who is let in, who is refused and how, what the database keeps.

mod common;

use axum::http::{header, Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::openapi::OpenApiDoc;
use common::{
    call, get, get_as, now, request, sign_claims, subject_token, TestService, SUBJECT_SECRET,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use lifecycled::auth::token;
use serde_json::json;

const WHOAMI: &str = "/api/v1/whoami";

#[tokio::test]
async fn admin_tokens_say_who_they_are() {
    let service = TestService::start("cp_auth_admin").await;
    let doc = OpenApiDoc::load().await;
    let (_, platform) = service
        .create_named_token("alice@corp", "platform-admin", None)
        .await;
    let (_, tenant) = service
        .create_named_token("bob@acme", "tenant-admin", Some("acme"))
        .await;

    let response = get_as(service.router(), WHOAMI, &platform).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.body,
        json!({"kind": "admin", "name": "alice@corp", "role": "platform-admin", "tenant": null})
    );
    doc.check(&Method::GET, WHOAMI, &response);

    let response = get_as(service.router(), WHOAMI, &tenant).await;
    assert_eq!(
        response.body,
        json!({"kind": "admin", "name": "bob@acme", "role": "tenant-admin", "tenant": "acme"})
    );
    doc.check(&Method::GET, WHOAMI, &response);
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_admin_tokens_are_401() {
    let service = TestService::start("cp_auth_refused").await;
    let doc = OpenApiDoc::load().await;
    let (id, token) = service
        .create_named_token("carol", "platform-admin", None)
        .await;
    assert_eq!(
        get_as(service.router(), WHOAMI, &token).await.status,
        StatusCode::OK
    );

    let response = get(service.router(), WHOAMI).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.code(), "unauthorized");
    assert_eq!(response.headers[header::WWW_AUTHENTICATE], "Bearer");
    doc.check(&Method::GET, WHOAMI, &response);

    let unknown = token::NewToken::generate().token;
    let lookup = token::lookup_of(&token).unwrap();
    // Right lookup prefix, wrong secret: the hash decides.
    let forged = format!("lc_{lookup}_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    let basic = format!("Basic {}", URL_SAFE_NO_PAD.encode("carol:x"));
    for (what, header_value) in [
        ("unknown", format!("Bearer {unknown}")),
        ("forged secret", format!("Bearer {forged}")),
        ("truncated", format!("Bearer {}", &token[..token.len() - 2])),
        ("not a bearer", basic),
        ("empty", "Bearer ".to_owned()),
    ] {
        let response = call(
            service.router(),
            request(Method::GET, WHOAMI).header("authorization", &header_value),
        )
        .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.code(), "invalid_token", "{what}");
        assert_eq!(
            response.headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\"",
            "{what}"
        );
        doc.check(&Method::GET, WHOAMI, &response);
    }

    let client = service.superuser().await;
    let revoked = token::revoke(&client, &id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let response = get_as(service.router(), WHOAMI, &token).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.code(), "invalid_token");
    assert!(
        response.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        response.body
    );
    // Revoking again keeps the first time.
    let again = token::revoke(&client, "carol").await.unwrap().unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
}

#[tokio::test]
async fn the_database_never_holds_a_token_and_records_its_use_once_a_minute() {
    let service = TestService::start("cp_auth_hash").await;
    let (id, token) = service
        .create_named_token("dave", "tenant-admin", Some("acme"))
        .await;
    let secret = token["lc_".len() + 12 + 1..].to_owned();
    let client = service.superuser().await;

    let row = client
        .query_one(
            "SELECT t::text, secret_hash, last_used_at IS NULL FROM lifecycled.admin_tokens t WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let text: String = row.get(0);
    let hash: Vec<u8> = row.get(1);
    assert!(!text.contains(&secret), "the row holds the secret: {text}");
    assert!(!text.contains(&token), "the row holds the token: {text}");
    assert_eq!(hash, token::hash(&token));
    assert!(row.get::<_, bool>(2), "not used yet");

    assert_eq!(
        get_as(service.router(), WHOAMI, &token).await.status,
        StatusCode::OK
    );
    let first: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT last_used_at FROM lifecycled.admin_tokens WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        get_as(service.router(), WHOAMI, &token).await.status,
        StatusCode::OK
    );
    let second: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT last_used_at FROM lifecycled.admin_tokens WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        first, second,
        "a second use within the minute writes nothing"
    );
}

#[tokio::test]
async fn the_service_role_cannot_mint_or_revoke_tokens() {
    let service = TestService::start("cp_auth_grants").await;
    let (id, _) = service
        .create_named_token("erin", "platform-admin", None)
        .await;
    let client = service.db.connect(&service.service).await.unwrap();
    let role = lifecycled::auth::AdminRole::Platform;
    let err = token::create(&client, "mallory", &role).await.unwrap_err();
    assert!(format!("{err:#}").contains("permission denied"), "{err:#}");
    let err = client
        .execute(
            "UPDATE lifecycled.admin_tokens SET revoked_at = NULL, role = 'platform-admin' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    // What it may do: read tokens and record their use.
    client
        .execute(
            "UPDATE lifecycled.admin_tokens SET last_used_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn subject_tokens_prove_a_subject() {
    let service = TestService::start("cp_auth_subject").await;
    let doc = OpenApiDoc::load().await;
    let token = common::user_token("42", Some("acme"));
    let response = get_as(service.router(), WHOAMI, &token).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.body,
        json!({"kind": "subject", "subject_type": "user", "subject_id": "42", "tenant": "acme"})
    );
    doc.check(&Method::GET, WHOAMI, &response);

    // Within the leeway (30 s by default) an expired token still passes.
    let token = subject_token(
        "42",
        "user",
        None,
        now() - 5,
        "lifecycle",
        Some(Algorithm::HS256),
        SUBJECT_SECRET,
    );
    assert_eq!(
        get_as(service.router(), WHOAMI, &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_subject_tokens_are_401() {
    let service = TestService::start("cp_auth_subject_bad").await;
    let doc = OpenApiDoc::load().await;
    let good = json!({"sub": "42", "subject_type": "user", "tenant": "acme", "exp": now() + 300, "aud": "lifecycle"});
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let hs256 = Some(Algorithm::HS256);
    // An RS256 header over an HMAC signature made with the shared secret:
    // the key-confusion attack against verifiers that trust the header.
    let confused = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(good.to_string());
        let message = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SUBJECT_SECRET.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    let cases = [
        (
            "wrong key",
            sign_claims(&good, hs256, "another-secret-that-is-long-enough-0123"),
        ),
        ("alg none", sign_claims(&good, None, SUBJECT_SECRET)),
        (
            "HS384",
            sign_claims(&good, Some(Algorithm::HS384), SUBJECT_SECRET),
        ),
        ("RS256 header", confused),
        (
            "expired",
            sign_claims(&with("exp", json!(now() - 120)), hs256, SUBJECT_SECRET),
        ),
        (
            "wrong audience",
            sign_claims(&with("aud", json!("billing")), hs256, SUBJECT_SECRET),
        ),
        (
            "no exp",
            sign_claims(&without("exp"), hs256, SUBJECT_SECRET),
        ),
        (
            "no aud",
            sign_claims(&without("aud"), hs256, SUBJECT_SECRET),
        ),
        (
            "no sub",
            sign_claims(&without("sub"), hs256, SUBJECT_SECRET),
        ),
        (
            "no subject_type",
            sign_claims(&without("subject_type"), hs256, SUBJECT_SECRET),
        ),
        (
            "empty sub",
            sign_claims(&with("sub", json!("")), hs256, SUBJECT_SECRET),
        ),
        (
            "not yet valid",
            sign_claims(&with("nbf", json!(now() + 600)), hs256, SUBJECT_SECRET),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in cases {
        let response = get_as(service.router(), WHOAMI, &token).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            response.text()
        );
        assert_eq!(response.code(), "invalid_token", "{what}");
        assert!(
            response.headers.contains_key(header::WWW_AUTHENTICATE),
            "{what}"
        );
        doc.check(&Method::GET, WHOAMI, &response);
    }

    // A service without a secret refuses every subject token.
    let mut config = service.config();
    config.subject_token_secret = None;
    let router = lifecycled::build_router(lifecycled::AppState::new(config).unwrap());
    let response = get_as(router, WHOAMI, &common::user_token("42", None)).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_over_its_rate_is_429_with_retry_after_and_others_are_not() {
    let service = TestService::start("cp_auth_rate").await;
    let doc = OpenApiDoc::load().await;
    let mut config = service.config();
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 3;
    let router = lifecycled::build_router(lifecycled::AppState::new(config).unwrap());
    let busy = service.create_token("platform-admin", None).await;
    let quiet = service.create_token("platform-admin", None).await;

    for _ in 0..3 {
        assert_eq!(
            get_as(router.clone(), WHOAMI, &busy).await.status,
            StatusCode::OK
        );
    }
    let response = get_as(router.clone(), WHOAMI, &busy).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.code(), "rate_limited");
    let retry: u64 = response.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    doc.check(&Method::GET, WHOAMI, &response);

    assert_eq!(
        get_as(router.clone(), WHOAMI, &quiet).await.status,
        StatusCode::OK,
        "another token is not slowed down"
    );
    // Subjects are counted apart from each other, too.
    let subject = common::user_token("7", None);
    for _ in 0..3 {
        assert_eq!(
            get_as(router.clone(), WHOAMI, &subject).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get_as(router.clone(), WHOAMI, &subject).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
