//! The `lifecycled` binary's commands end to end: `setup` against a real
//! database, then `token create|list|revoke`, and the tokens they print
//! used against the router.

mod common;

use axum::http::StatusCode;
use common::{get_as, run_cli, TestService};
use lifecycle_tests::{Role, TestDb};
use serde_json::Value;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn setup_prepares_the_service_role_with_exactly_its_grants() {
    let mut db = TestDb::create("cp_cli_setup").await.unwrap();
    let role = db.create_role("svc").await.unwrap();
    let name = role.name().unwrap().to_owned();
    let admin_url = db.url_for(&Role::Superuser);

    let output = run_cli(
        &[
            "setup",
            "--admin-url",
            &admin_url,
            "--service-role",
            &name,
            "--service-password",
            "new-password-1",
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains(&db.name), "{out}");
    assert!(out.contains("migrated to version 1"), "{out}");

    // The new password works; the one the role had before does not.
    let as_service = Role::Login {
        name: name.clone(),
        password: "new-password-1".into(),
    };
    let client = db
        .connect(&as_service)
        .await
        .expect("the new password works");
    assert!(db.connect(&role).await.is_err(), "the old password is gone");

    // What the API and the worker call: allowed.
    client
        .query_one("SELECT * FROM lifecycle.verify_audit_log()", &[])
        .await
        .unwrap();
    client
        .query("SELECT * FROM lifecycle.jobs LIMIT 1", &[])
        .await
        .unwrap();
    client
        .query("SELECT * FROM lifecycle.audit_log LIMIT 1", &[])
        .await
        .unwrap();
    client
        .query("SELECT id, name FROM lifecycled.admin_tokens", &[])
        .await
        .unwrap();
    // Anything else: refused.
    for refused in [
        "SELECT lifecycle.register_table('pg_class'::regclass, 'user', 'oid')",
        "SELECT * FROM lifecycle.unmapped_references()",
        "INSERT INTO lifecycle.jobs (job_type, target_type, target_id, requested_by, due_at) VALUES ('erase', 'user', '1', 'x', now())",
        "DELETE FROM lifecycled.admin_tokens",
        "CREATE TABLE lifecycled.mine (x int)",
    ] {
        let err = client.batch_execute(refused).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{refused}: {err}");
    }
    let attributes = client
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
               FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    for i in 0..5 {
        assert!(!attributes.get::<_, bool>(i), "attribute {i}");
    }

    // Again: nothing to migrate, same grants.
    let output = run_cli(
        &["setup", "--admin-url", &admin_url, "--service-role", &name],
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("schema lifecycled at version 1"),
        "{}",
        stdout(&output)
    );
    client
        .query_one("SELECT * FROM lifecycle.verify_audit_log()", &[])
        .await
        .unwrap();
    let versions: i64 = db
        .connect_superuser()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM lifecycled.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn setup_creates_a_missing_role_and_refuses_what_it_must_not_do() {
    let db = TestDb::create("cp_cli_newrole").await.unwrap();
    let admin_url = db.url_for(&Role::Superuser);
    let name = format!(
        "lc_it_cli_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let output = run_cli(
        &["setup", "--admin-url", &admin_url, "--service-role", &name],
        &[("LIFECYCLE_SERVICE_PASSWORD", "pw-from-env")],
    )
    .await;
    let created = output.status.success();
    let out = stdout(&output);
    let err = stderr(&output);

    // A superuser is never made the service role.
    let superuser = admin_url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_user()
        .unwrap()
        .to_owned();
    let refused = run_cli(
        &[
            "setup",
            "--admin-url",
            &admin_url,
            "--service-role",
            &superuser,
        ],
        &[],
    )
    .await;
    let empty = TestDb::create_empty("cp_cli_noext").await.unwrap();
    let no_extension = run_cli(
        &[
            "setup",
            "--admin-url",
            &empty.url_for(&Role::Superuser),
            "--service-role",
            &name,
        ],
        &[],
    )
    .await;
    let login = db
        .connect(&Role::Login {
            name: name.clone(),
            password: "pw-from-env".into(),
        })
        .await;

    // Clean up the cluster-wide role before asserting anything.
    empty.cleanup().await.unwrap();
    db.cleanup().await.unwrap();
    lifecycle_tests::connect_admin()
        .await
        .unwrap()
        .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
        .await
        .unwrap();

    assert!(created, "{err}");
    assert!(out.contains(&format!("role {name} created")), "{out}");
    assert!(login.is_ok(), "the password from the environment works");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("superuser"),
        "{}",
        stderr(&refused)
    );
    assert!(!no_extension.status.success());
    assert!(
        stderr(&no_extension).contains("CREATE EXTENSION lifecycle"),
        "{}",
        stderr(&no_extension)
    );
}

#[tokio::test]
async fn tokens_are_created_listed_used_and_revoked() {
    let service = TestService::start("cp_cli_tokens").await;
    let admin_url = service.admin_url();
    let db = ["--database-url", admin_url.as_str()];

    // Plain: the token alone on one line.
    let output = run_cli(
        &[
            &[
                "token",
                "create",
                "--name",
                "ops@corp",
                "--role",
                "platform-admin",
            ][..],
            &db[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out}");
    let platform = out.trim().to_owned();
    assert!(platform.starts_with("lc_"), "{platform}");

    // JSON: {id, name, role, tenant, token}.
    let output = run_cli(
        &[
            &[
                "token",
                "create",
                "--name",
                "acme-admin",
                "--role",
                "tenant-admin",
                "--tenant",
                "acme",
                "--json",
            ][..],
            &db[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["name"], "acme-admin");
    assert_eq!(created["role"], "tenant-admin");
    assert_eq!(created["tenant"], "acme");
    let tenant_token = created["token"].as_str().unwrap().to_owned();
    let tenant_id = created["id"].as_str().unwrap().to_owned();

    let response = get_as(service.router(), "/api/v1/whoami", &platform).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["name"], "ops@corp");
    let response = get_as(service.router(), "/api/v1/whoami", &tenant_token).await;
    assert_eq!(response.body["tenant"], "acme");

    // A name is never given twice.
    let output = run_cli(
        &[
            &[
                "token",
                "create",
                "--name",
                "ops@corp",
                "--role",
                "platform-admin",
            ][..],
            &db[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("exists already"),
        "{}",
        stderr(&output)
    );
    // A name of the form the extension records for a subject acting on
    // their own data is refused: the admin would pass for that subject.
    let output = run_cli(
        &[
            &[
                "token",
                "create",
                "--name",
                "user:4",
                "--role",
                "platform-admin",
            ][..],
            &db[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("may not contain ':'"),
        "{}",
        stderr(&output)
    );

    // The list shows everything but the tokens.
    let output = run_cli(&[&["token", "list"][..], &db[..]].concat(), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("ops@corp") && table.contains("acme-admin"),
        "{table}"
    );
    assert!(table.contains("LAST USED"), "{table}");
    assert!(
        !table.contains(&platform) && !table.contains(&tenant_token),
        "{table}"
    );
    let output = run_cli(&[&["token", "list", "--json"][..], &db[..]].concat(), &[]).await;
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["ops@corp", "acme-admin"]);
    assert!(
        list[0]["last_used_at"].is_string(),
        "used through whoami: {list}"
    );

    // Revoke by name and by id.
    let output = run_cli(
        &[&["token", "revoke", "ops@corp"][..], &db[..]].concat(),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("revoked ops@corp"),
        "{}",
        stdout(&output)
    );
    let output = run_cli(
        &[&["token", "revoke", &tenant_id][..], &db[..]].concat(),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    for token in [&platform, &tenant_token] {
        let response = get_as(service.router(), "/api/v1/whoami", token).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let output = run_cli(&[&["token", "revoke", "nobody"][..], &db[..]].concat(), &[]).await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no token"), "{}", stderr(&output));

    // The service role cannot mint tokens.
    let service_url = service.service_url();
    let output = run_cli(
        &[
            "token",
            "create",
            "--name",
            "mallory",
            "--role",
            "platform-admin",
            "--database-url",
            &service_url,
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("permission denied"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn help_lists_the_commands_and_settings() {
    let output = run_cli(&["--help"], &[]).await;
    assert!(output.status.success());
    let help = stdout(&output);
    for expected in [
        "serve",
        "setup",
        "token",
        "--database-url",
        "--database",
        "--listen",
        "--subject-token-secret",
        "--rate-limit-per-second",
        "--max-body-bytes",
        "--no-worker",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
    let output = run_cli(&["token", "create", "--help"], &[]).await;
    let help = stdout(&output);
    for expected in [
        "--name",
        "--role",
        "platform-admin",
        "tenant-admin",
        "--tenant",
        "--json",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
}
