//! What the control plane reads and hears from the extension: the job list
//! (`lifecycle.list_jobs`: filters, search, tenant scope, keyset pages),
//! the counts by status and type (`lifecycle.job_stats`, kept by triggers:
//! exact after every kind of change, under concurrent sessions and after a
//! dump and restore), the oldest due jobs, the request context in audit
//! events, the NOTIFY that wakes workers and `lifecycle.release_lease`.

use std::collections::BTreeMap;
use std::process::Command;

use lifecycle_tests::cluster::pg_bin;
use lifecycle_tests::{count, describe, exec, expect_sqlstate, ok, within, Role, TestDb};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

const TENANTS: [&str; 3] = ["acme", "globex", "tea"];

/// Three workspaces with names (one with the characters LIKE would read
/// as patterns), 300 users spread over them.
const SCHEMA: &str = "
    CREATE SCHEMA app;
    CREATE TABLE app.workspaces (id text PRIMARY KEY, name text NOT NULL);
    CREATE TABLE app.users (
        id           bigint PRIMARY KEY,
        workspace_id text NOT NULL REFERENCES app.workspaces,
        email        text NOT NULL
    );
    CREATE INDEX ON app.users (workspace_id);
    INSERT INTO app.workspaces VALUES ('acme', 'Acme Corp'), ('globex', 'Globex'),
                                      ('tea', '100% Pure_Tea');
    INSERT INTO app.users
    SELECT g, (ARRAY['acme', 'globex', 'tea'])[1 + g % 3], 'user' || g || '@example.com'
      FROM generate_series(1, 300) AS g;
    SELECT lifecycle.register_tenant('app.workspaces', 'id', 'name');
    SELECT lifecycle.register_subject('app.users', 'id', 'user', 'workspace_id');
";

fn tenant_of(user: i64) -> &'static str {
    TENANTS[(user % 3) as usize]
}

async fn setup(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let su = db.connect(&Role::Superuser).await.expect("superuser");
    exec(&su, SCHEMA).await;
    (db, su)
}

async fn request_export(c: &Client, user: i64, tenant: Option<&str>) -> Uuid {
    ok(
        c.query_one(
            "SELECT lifecycle.request_export('user', $1, $2, 'admin@example.com')",
            &[&user.to_string(), &tenant],
        )
        .await,
        "request_export",
    )
    .get(0)
}

async fn request_erasure(c: &Client, user: i64) -> Uuid {
    ok(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, $2, 'admin@example.com', 'GDPR Art. 17', \
                                              cooling_off => '0')",
            &[&user.to_string(), &tenant_of(user)],
        )
        .await,
        "request_erasure",
    )
    .get(0)
}

async fn approve(c: &Client, job: Uuid) {
    ok(
        c.execute("SELECT lifecycle.approve($1, 'dpo@example.com')", &[&job])
            .await,
        "approve",
    );
}

/// A mix of every status and type, in every tenant and in none.
async fn jobs_of_every_kind(su: &Client) {
    for user in 1..=12 {
        request_export(su, user, Some(tenant_of(user))).await;
    }
    request_export(su, 13, None).await;
    let mut erasures = Vec::new();
    for user in 20..=40 {
        erasures.push(request_erasure(su, user).await);
    }
    for (k, job) in erasures.iter().enumerate() {
        match k % 5 {
            0 | 1 => approve(su, *job).await,
            2 => {
                exec(
                    su,
                    &format!(
                    "SELECT lifecycle.reject('{job}', 'dpo@example.com', 'identity not verified')"
                ),
                )
                .await
            }
            3 => {
                exec(
                    su,
                    &format!("SELECT lifecycle.cancel('{job}', 'admin@example.com')"),
                )
                .await
            }
            _ => {}
        }
    }
    exec(su, "SELECT lifecycle.run_due_jobs(4)").await;
    // An export built by a worker, one failed.
    for outcome in ["complete", "fail"] {
        let claimed: serde_json::Value = ok(
            su.query_one(
                "SELECT lifecycle.claim_job('worker-1', job_types => ARRAY['export'])",
                &[],
            )
            .await,
            "claim_job",
        )
        .get(0);
        let id = Uuid::parse_str(claimed["id"].as_str().expect("claimed id")).expect("uuid");
        let sql = match outcome {
            "complete" => format!(
                "SELECT lifecycle.complete_job('{id}', 'worker-1', '{{\"bundle\": {{\"key\": \"exports/{id}.zip\", \"size\": 1}}}}')"
            ),
            _ => format!("SELECT lifecycle.fail_job('{id}', 'worker-1', 'disk full')"),
        };
        exec(su, &sql).await;
    }
}

// ----- the list -----------------------------------------------------------------------

/// A job as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    id: Uuid,
    status: String,
    job_type: String,
    target_id: String,
    tenant_id: Option<String>,
    tenant_name: Option<String>,
    requested_at: String,
}

/// Arguments of `list_jobs`, named as in SQL.
#[derive(Default, Clone)]
struct Filter {
    status: Option<&'static str>,
    job_type: Option<&'static str>,
    q: Option<String>,
    tenants: Option<Vec<String>>,
    lim: Option<i32>,
    after: Option<(String, Uuid)>,
}

async fn list(c: &Client, f: &Filter) -> Result<Vec<Job>, tokio_postgres::Error> {
    let (after_at, after_id) = match &f.after {
        Some((at, id)) => (Some(at.clone()), Some(*id)),
        None => (None, None),
    };
    let rows = c
        .query(
            "SELECT id, status, job_type, target_id, tenant_id, tenant_name, requested_at::text \
               FROM lifecycle.list_jobs(status => $1, job_type => $2, q => $3, tenants => $4, \
                                        lim => coalesce($5, 50), \
                                        after_requested_at => $6::text::timestamptz, after_id => $7)",
            &[
                &f.status,
                &f.job_type,
                &f.q,
                &f.tenants,
                &f.lim,
                &after_at,
                &after_id,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Job {
            id: r.get(0),
            status: r.get(1),
            job_type: r.get(2),
            target_id: r.get(3),
            tenant_id: r.get(4),
            tenant_name: r.get(5),
            requested_at: r.get(6),
        })
        .collect())
}

/// Every job, newest first, read directly, with the tenants' names.
async fn all_jobs(c: &Client) -> Vec<Job> {
    let rows = ok(
        c.query(
            "SELECT j.id, j.status, j.job_type, j.target_id, j.tenant_id, w.name, j.requested_at::text \
               FROM lifecycle.jobs j LEFT JOIN app.workspaces w ON w.id = j.tenant_id \
              ORDER BY j.requested_at DESC, j.id DESC",
            &[],
        )
        .await,
        "all jobs",
    );
    rows.iter()
        .map(|r| Job {
            id: r.get(0),
            status: r.get(1),
            job_type: r.get(2),
            target_id: r.get(3),
            tenant_id: r.get(4),
            tenant_name: r.get(5),
            requested_at: r.get(6),
        })
        .collect()
}

/// What `list_jobs` must answer, computed from every job independently.
fn expected(all: &[Job], f: &Filter) -> Vec<Job> {
    let in_scope = |j: &Job| match &f.tenants {
        None => true,
        Some(t) => j.tenant_id.as_ref().is_some_and(|id| t.contains(id)),
    };
    let matches = |j: &Job| match &f.q {
        None => true,
        Some(q) => {
            let q = q.trim();
            j.id.to_string() == q.to_lowercase()
                || j.target_id == q
                || j.tenant_id.as_deref() == Some(q)
                || j.tenant_name
                    .as_ref()
                    .is_some_and(|n| n.to_lowercase().contains(&q.to_lowercase()))
        }
    };
    all.iter()
        .filter(|j| f.status.is_none_or(|s| j.status == s))
        .filter(|j| f.job_type.is_none_or(|t| j.job_type == t))
        .filter(|j| in_scope(j))
        .filter(|j| matches(j))
        .take(f.lim.unwrap_or(50) as usize)
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_filter_search_and_scope_answers_what_the_jobs_say() {
    let (db, su) = setup("jl_filters").await;
    jobs_of_every_kind(&su).await;
    let all = all_jobs(&su).await;
    assert!(all.len() > 30, "fixture: {} jobs", all.len());
    let some_job = all[all.len() / 2].clone();

    let statuses = [None, Some("pending"), Some("approved"), Some("completed")];
    let types = [None, Some("erase"), Some("export")];
    let scopes = [
        None,
        Some(vec!["acme".to_string()]),
        Some(vec!["acme".to_string(), "tea".to_string()]),
    ];
    let searches = [
        None,
        Some("acme".to_string()),
        Some("  GLOBEX ".to_string()),
        Some("corp".to_string()),
        Some("%".to_string()),
        Some("_".to_string()),
        Some("P%re".to_string()),
        Some("25".to_string()),
        // A target id and part of a tenant's name at once.
        Some("1".to_string()),
        Some(some_job.id.to_string()),
        Some(some_job.id.to_string().to_uppercase()),
        Some("'); DROP TABLE lifecycle.jobs; --".to_string()),
    ];
    let mut checked = 0;
    for status in statuses {
        for job_type in types {
            for tenants in &scopes {
                for q in &searches {
                    for lim in [None, Some(3)] {
                        let f = Filter {
                            status,
                            job_type,
                            q: q.clone(),
                            tenants: tenants.clone(),
                            lim,
                            after: None,
                        };
                        let got = list(&su, &f)
                            .await
                            .unwrap_or_else(|e| panic!("list_jobs: {}", describe(&e)));
                        assert_eq!(
                            got,
                            expected(&all, &f),
                            "status {status:?}, type {job_type:?}, tenants {tenants:?}, q {q:?}, lim {lim:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 3 * 3 * 12 * 2);

    // The search reads no patterns and is scoped: '%' finds the tenant
    // whose name has one, and a tenant admin's search stays in the tenant.
    let pct = list(
        &su,
        &Filter {
            q: Some("%".into()),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert!(!pct.is_empty() && pct.iter().all(|j| j.tenant_id.as_deref() == Some("tea")));
    let scoped = list(
        &su,
        &Filter {
            q: Some("acme".into()),
            tenants: Some(vec!["globex".into()]),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(scoped, Vec::new(), "a search never leaves the tenant scope");
    // A job id finds that job whatever its letter case; names come along.
    let by_id = list(
        &su,
        &Filter {
            q: Some(some_job.id.to_string().to_uppercase()),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(by_id, vec![some_job.clone()]);
    let named = list(&su, &Filter::default()).await.expect("list");
    assert!(named
        .iter()
        .any(|j| j.tenant_name.as_deref() == Some("100% Pure_Tea")));
    assert!(named
        .iter()
        .any(|j| j.tenant_id.is_none() && j.tenant_name.is_none()));
    // No scope at all: no rows.
    let none = list(
        &su,
        &Filter {
            tenants: Some(Vec::new()),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(none, Vec::new());
    assert_eq!(
        count(&su, "SELECT 1 FROM lifecycle.jobs").await,
        all.len() as i64
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn pages_neither_repeat_nor_skip_while_jobs_are_inserted() {
    let (db, su) = setup("jl_pages").await;
    let other = db.connect(&Role::Superuser).await.expect("second session");
    // Jobs of one transaction share requested_at: the id breaks the tie.
    exec(
        &su,
        "BEGIN; \
         SELECT lifecycle.request_export('user', g::text, (ARRAY['acme', 'globex', 'tea'])[1 + g % 3], 'a') \
           FROM generate_series(1, 10) g; \
         COMMIT;",
    )
    .await;
    for user in 11..=30 {
        request_export(&su, user, Some(tenant_of(user))).await;
    }
    let before = all_jobs(&su).await;
    let mut seen: Vec<Job> = Vec::new();
    let mut after = None;
    let mut user = 100;
    loop {
        let page = list(
            &su,
            &Filter {
                lim: Some(4),
                after: after.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("page");
        // Another session inserts between pages.
        user += 1;
        request_export(&other, user, Some(tenant_of(user))).await;
        let Some(last) = page.last() else { break };
        after = Some((last.requested_at.clone(), last.id));
        seen.extend(page);
    }
    assert_eq!(
        seen, before,
        "the pages are the jobs of the first page's time, once each"
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn bad_arguments_are_refused_and_the_list_is_not_public() {
    let (mut db, su) = setup("jl_bad").await;
    request_export(&su, 1, Some("acme")).await;
    let bad = [
        (
            Filter {
                status: Some("exploded"),
                ..Default::default()
            },
            "22023",
        ),
        (
            Filter {
                job_type: Some("delete"),
                ..Default::default()
            },
            "22023",
        ),
        (
            Filter {
                lim: Some(0),
                ..Default::default()
            },
            "22023",
        ),
        (
            Filter {
                lim: Some(501),
                ..Default::default()
            },
            "22023",
        ),
    ];
    for (f, code) in bad {
        let e = expect_sqlstate(list(&su, &f).await, code, "bad list_jobs argument");
        assert!(e.hint().is_some(), "no HINT: {}", e.message());
    }
    expect_sqlstate(
        su.query(
            "SELECT * FROM lifecycle.list_jobs(after_requested_at => now())",
            &[],
        )
        .await,
        "22023",
        "half a cursor",
    );
    let (page, largest) = (
        list(&su, &Filter::default()).await.expect("default limit"),
        list(
            &su,
            &Filter {
                lim: Some(500),
                ..Default::default()
            },
        )
        .await
        .expect("largest page"),
    );
    assert_eq!((page.len(), largest.len()), (1, 1));

    let nobody = db.create_role("nobody").await.expect("role");
    let c = db.connect(&nobody).await.expect("nobody");
    for sql in [
        "SELECT * FROM lifecycle.list_jobs()",
        "SELECT * FROM lifecycle.job_stats()",
        "SELECT * FROM lifecycle.oldest_due_jobs()",
        "SELECT lifecycle.recount_jobs()",
        "SELECT lifecycle.release_lease(gen_random_uuid(), 'w')",
    ] {
        expect_sqlstate(c.query(sql, &[]).await, "42501", sql);
    }
    db.cleanup().await.expect("cleanup");
}

// ----- counts -------------------------------------------------------------------------

/// (status, type) -> jobs, from `job_stats` (all 21 pairs) and from the jobs.
type Counts = BTreeMap<(String, String), i64>;

async fn stats(c: &Client, tenants: Option<&[&str]>) -> Counts {
    let tenants: Option<Vec<String>> = tenants.map(|t| t.iter().map(|s| s.to_string()).collect());
    let rows = ok(
        c.query(
            "SELECT status, job_type, jobs FROM lifecycle.job_stats($1)",
            &[&tenants],
        )
        .await,
        "job_stats",
    );
    assert_eq!(rows.len(), 21, "every status and type, zeros included");
    rows.iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

async fn counted(c: &Client, tenants: Option<&[&str]>) -> Counts {
    let mut out = Counts::new();
    for s in [
        "pending",
        "approved",
        "processing",
        "completed",
        "failed",
        "rejected",
        "cancelled",
    ] {
        for t in ["export", "erase", "purge"] {
            out.insert((s.into(), t.into()), 0);
        }
    }
    let tenants: Option<Vec<String>> = tenants.map(|t| t.iter().map(|s| s.to_string()).collect());
    for r in ok(
        c.query(
            "SELECT status, job_type, count(*) FROM lifecycle.jobs \
              WHERE $1::text[] IS NULL OR tenant_id = ANY ($1) GROUP BY 1, 2",
            &[&tenants],
        )
        .await,
        "count jobs",
    ) {
        out.insert((r.get(0), r.get(1)), r.get(2));
    }
    out
}

async fn assert_counts_exact(c: &Client, what: &str) {
    for scope in [
        None,
        Some(&["acme"][..]),
        Some(&["globex", "tea"][..]),
        Some(&["nobody"][..]),
    ] {
        assert_eq!(
            stats(c, scope).await,
            counted(c, scope).await,
            "{what}: job_stats({scope:?})"
        );
    }
}

#[tokio::test]
async fn counts_follow_every_change_and_recount_repairs_them() {
    let (db, su) = setup("jl_counts").await;
    assert_counts_exact(&su, "no jobs").await;
    jobs_of_every_kind(&su).await;
    assert_counts_exact(&su, "every kind").await;
    let total: i64 = stats(&su, None).await.values().sum();
    assert!(total > 30);
    // Rolled back changes count nothing.
    exec(
        &su,
        "BEGIN; SELECT lifecycle.request_export('user', '200', 'acme', 'a'); \
         SELECT lifecycle.approve(id, 'dpo') FROM lifecycle.jobs WHERE status = 'pending'; ROLLBACK;",
    )
    .await;
    assert_counts_exact(&su, "after a rollback").await;
    // A superuser can break the counts by hand; recount_jobs repairs them.
    exec(
        &su,
        "DELETE FROM lifecycle.job_totals WHERE status = 'completed'",
    )
    .await;
    assert_ne!(stats(&su, None).await, counted(&su, None).await);
    let recounted: i64 = ok(
        su.query_one("SELECT lifecycle.recount_jobs()", &[]).await,
        "recount",
    )
    .get(0);
    assert_eq!(recounted, total);
    assert_counts_exact(&su, "after recount_jobs").await;
    // What the state machine refuses to everyone, a superuser who disables
    // it can still do: the counts follow a deleted job and a job moved to
    // another tenant and type, and a TRUNCATE.
    exec(
        &su,
        "ALTER TABLE lifecycle.jobs DISABLE TRIGGER jobs_state_machine;          DELETE FROM lifecycle.jobs WHERE id = (SELECT id FROM lifecycle.jobs WHERE status = 'completed' LIMIT 1);          UPDATE lifecycle.jobs SET tenant_id = 'globex', job_type = 'purge'           WHERE id = (SELECT id FROM lifecycle.jobs WHERE tenant_id = 'acme' AND status = 'pending' LIMIT 1);          UPDATE lifecycle.jobs SET tenant_id = NULL WHERE tenant_id = 'tea' AND status = 'approved';          ALTER TABLE lifecycle.jobs ENABLE ALWAYS TRIGGER jobs_state_machine;",
    )
    .await;
    assert_counts_exact(&su, "after a delete and tenant and type changes").await;
    exec(&su, "TRUNCATE lifecycle.jobs CASCADE").await;
    assert_counts_exact(&su, "after TRUNCATE").await;
    assert_eq!(stats(&su, None).await.values().sum::<i64>(), 0);
    db.cleanup().await.expect("cleanup");
}

/// A small deterministic sequence, so that a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One session's work: requests, approvals, cancellations, runs and
/// worker claims, each in a transaction that commits or rolls back.
async fn churn(c: Client, session: i64) {
    let mut rng = Lcg(session as u64 + 1);
    for round in 0..25 {
        let user = 1 + session * 40 + round;
        let commit = rng.next(4) != 0;
        c.batch_execute("BEGIN").await.expect("BEGIN");
        let step = match rng.next(5) {
            0 => c
                .query_one(
                    "SELECT lifecycle.request_export('user', $1, $2, 'a')",
                    &[&user.to_string(), &tenant_of(user)],
                )
                .await
                .map(drop),
            1 | 2 => {
                let job = c
                    .query_one(
                        "SELECT lifecycle.request_erasure('user', $1, $2, 'a', cooling_off => '0')",
                        &[&user.to_string(), &tenant_of(user)],
                    )
                    .await
                    .map(|r| r.get::<_, Uuid>(0));
                match (job, rng.next(3)) {
                    (Ok(job), 0) => c
                        .execute("SELECT lifecycle.approve($1, 'dpo')", &[&job])
                        .await
                        .map(drop),
                    (Ok(job), 1) => c
                        .execute("SELECT lifecycle.cancel($1, 'a')", &[&job])
                        .await
                        .map(drop),
                    (job, _) => job.map(drop),
                }
            }
            3 => c.batch_execute("SELECT lifecycle.run_due_jobs(2)").await,
            _ => {
                c.batch_execute(&format!(
                    "SELECT lifecycle.complete_job((j->>'id')::uuid, 'w{session}', \
                            '{{\"bundle\": {{\"key\": \"exports/x.zip\", \"size\": 1}}}}') \
                       FROM lifecycle.claim_job('w{session}', job_types => ARRAY['export']) j \
                      WHERE j IS NOT NULL"
                ))
                .await
            }
        };
        if let Err(e) = step {
            // Two sessions may race for one job: the database says so.
            eprintln!("session {session}: {}", describe(&e));
            c.batch_execute("ROLLBACK").await.expect("ROLLBACK");
            continue;
        }
        c.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await
            .expect("end of transaction");
    }
}

#[tokio::test]
async fn counts_stay_exact_under_concurrent_sessions() {
    let (db, su) = setup("jl_concurrent").await;
    exec(
        &su,
        "INSERT INTO app.users SELECT g, (ARRAY['acme', 'globex', 'tea'])[1 + g % 3], 'u' || g \
           FROM generate_series(301, 400) AS g",
    )
    .await;
    let mut tasks = Vec::new();
    for session in 0..6 {
        let c = db.connect(&Role::Superuser).await.expect("session");
        tasks.push(tokio::spawn(churn(c, session)));
    }
    for t in tasks {
        within("a session's work", t).await.expect("session");
    }
    assert!(count(&su, "SELECT 1 FROM lifecycle.jobs").await > 50);
    assert_counts_exact(&su, "after six concurrent sessions").await;
    // The ledgers stay short: statements fold what they touch.
    let ledger = count(&su, "SELECT 1 FROM lifecycle.job_totals").await;
    assert!(ledger < 21 * 40, "job_totals has {ledger} rows");
    db.cleanup().await.expect("cleanup");
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(pg_bin().join(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn counts_are_rebuilt_by_a_restore_in_both_formats() {
    let (src, su) = setup("jl_dump").await;
    jobs_of_every_kind(&su).await;
    let before = stats(&su, None).await;
    let before_acme = stats(&su, Some(&["acme"])).await;
    for (format, restore) in [("-Fc", "pg_restore"), ("-Fp", "psql")] {
        let file = std::env::temp_dir().join(format!("{}{format}.dump", src.name));
        let file_arg = file.display().to_string();
        let (dumped, out) = run(
            "pg_dump",
            &[
                format,
                "-d",
                &src.url_for(&Role::Superuser),
                "-f",
                &file_arg,
            ],
        );
        assert!(dumped, "pg_dump {format}: {out}");
        let target = TestDb::create_empty("jl_restored").await.expect("target");
        let url = target.url_for(&Role::Superuser);
        let (restored, out) = match restore {
            "pg_restore" => run("pg_restore", &["--exit-on-error", "-d", &url, &file_arg]),
            _ => run(
                "psql",
                &[
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &url,
                    "-f",
                    &file_arg,
                ],
            ),
        };
        let _ = std::fs::remove_file(&file);
        assert!(restored && !out.contains("ERROR"), "{restore}: {out}");
        let c = target.connect(&Role::Superuser).await.expect("restored");
        assert_eq!(stats(&c, None).await, before, "{restore}: all tenants");
        assert_eq!(
            stats(&c, Some(&["acme"])).await,
            before_acme,
            "{restore}: acme"
        );
        assert_counts_exact(&c, restore).await;
        // And the copy keeps counting.
        request_export(&c, 250, Some(tenant_of(250))).await;
        assert_counts_exact(&c, &format!("{restore}, then a request")).await;
        drop(c);
        target.cleanup().await.expect("cleanup");
    }
    src.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn oldest_due_jobs_name_the_longest_waiting_job_of_each_type() {
    let (db, su) = setup("jl_due").await;
    let none: Vec<(String, Option<Uuid>)> = ok(
        su.query(
            "SELECT job_type, job_id FROM lifecycle.oldest_due_jobs()",
            &[],
        )
        .await,
        "oldest_due_jobs",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        none,
        vec![
            ("export".to_string(), None),
            ("erase".to_string(), None),
            ("purge".to_string(), None)
        ]
    );
    let first = request_export(&su, 1, Some("acme")).await;
    request_export(&su, 2, Some("globex")).await;
    let pending = request_erasure(&su, 3).await;
    let later: Uuid = ok(
        su.query_one(
            "SELECT lifecycle.request_erasure('user', '4', 'acme', 'a', cooling_off => '1 day')",
            &[],
        )
        .await,
        "erasure in its cooling-off",
    )
    .get(0);
    approve(&su, later).await;
    let rows = ok(
        su.query(
            "SELECT job_type, job_id, age_seconds >= 0 FROM lifecycle.oldest_due_jobs()",
            &[],
        )
        .await,
        "oldest_due_jobs",
    );
    let got: Vec<(String, Option<Uuid>, Option<bool>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // The pending erasure waits for approval, the approved one for its
    // cooling-off: neither is due.
    assert_eq!(
        got,
        vec![
            ("export".to_string(), Some(first), Some(true)),
            ("erase".to_string(), None, None),
            ("purge".to_string(), None, None)
        ]
    );
    approve(&su, pending).await;
    let erase: Option<Uuid> = ok(
        su.query_one(
            "SELECT job_id FROM lifecycle.oldest_due_jobs() WHERE job_type = 'erase'",
            &[],
        )
        .await,
        "due erasure",
    )
    .get(0);
    assert_eq!(erase, Some(pending));
    db.cleanup().await.expect("cleanup");
}

// ----- audit context ------------------------------------------------------------------

#[tokio::test]
async fn audit_events_carry_the_request_context_of_their_transaction() {
    let (db, su) = setup("jl_context").await;
    let first = request_erasure(&su, 1).await;
    let second = request_erasure(&su, 2).await;
    let third = request_erasure(&su, 4).await;
    exec(
        &su,
        &format!(
            "BEGIN; \
             SELECT set_config('lifecycle.request_ip', '203.0.113.9', true), \
                    set_config('lifecycle.request_user_agent', 'Mozilla/5.0 (console)', true); \
             SELECT lifecycle.approve('{first}', 'dpo@example.com'); \
             SELECT lifecycle.record_event('console.viewed', 'dpo', 'user', '1', 'acme', '{{}}', \
                                           '198.51.100.1', 'own agent'); \
             COMMIT;"
        ),
    )
    .await;
    // Outside that transaction the settings are gone.
    approve(&su, second).await;
    // An IP that is not one is left out with a WARNING; the approval holds.
    exec(
        &su,
        &format!(
            "BEGIN; \
             SELECT set_config('lifecycle.request_ip', 'not-an-ip', true), \
                    set_config('lifecycle.request_user_agent', 'curl/8', true); \
             SELECT lifecycle.approve('{third}', 'dpo@example.com'); \
             COMMIT;"
        ),
    )
    .await;
    let rows = ok(
        su.query(
            "SELECT details->>'job_id', host(ip), user_agent FROM lifecycle.audit_log \
              WHERE event_type = 'job.approved' ORDER BY id",
            &[],
        )
        .await,
        "approval events",
    );
    let got: Vec<(Option<String>, Option<String>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some(first.to_string()),
                Some("203.0.113.9".to_string()),
                Some("Mozilla/5.0 (console)".to_string())
            ),
            (Some(second.to_string()), None, None),
            (Some(third.to_string()), None, Some("curl/8".to_string())),
        ]
    );
    let own: (Option<String>, Option<String>) = {
        let r = ok(
            su.query_one(
                "SELECT host(ip), user_agent FROM lifecycle.audit_log WHERE event_type = 'console.viewed'",
                &[],
            )
            .await,
            "own event",
        );
        (r.get(0), r.get(1))
    };
    assert_eq!(
        own,
        (Some("198.51.100.1".into()), Some("own agent".into())),
        "a caller's own IP and agent win"
    );
    assert!(lifecycle_tests::verify_audit_log(&su).await.0);
    db.cleanup().await.expect("cleanup");
}

// ----- wake-ups and hand-backs ---------------------------------------------------------

/// A session that listens on `lifecycle_jobs`; its notifications' payloads
/// arrive on the channel.
async fn listener(db: &TestDb) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = db
        .config_for(&Role::Superuser)
        .connect(NoTls)
        .await
        .expect("listener");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                if n.channel() == "lifecycle_jobs" && tx.send(n.payload().to_string()).is_err() {
                    break;
                }
            }
        }
    });
    exec(&client, "LISTEN lifecycle_jobs").await;
    (client, rx)
}

/// Wait for the notification naming `job`, skipping others.
async fn woken(rx: &mut mpsc::UnboundedReceiver<String>, job: Uuid, why: &str) {
    within(why, async {
        loop {
            let payload = rx.recv().await.expect("listener ended");
            if payload == job.to_string() {
                return;
            }
        }
    })
    .await
}

/// Consume every notification sent so far: they arrive in commit order,
/// so once a new job's has come, the earlier ones have too.
async fn drain(c: &Client, rx: &mut mpsc::UnboundedReceiver<String>, user: i64) {
    let sentinel = request_export(c, user, Some(tenant_of(user))).await;
    woken(rx, sentinel, "the sentinel's notification").await;
}

#[tokio::test]
async fn workers_are_woken_when_a_job_becomes_runnable() {
    let (db, su) = setup("jl_notify").await;
    let (_listening, mut rx) = listener(&db).await;
    let export = request_export(&su, 1, Some("acme")).await;
    woken(&mut rx, export, "an approved export is inserted").await;
    let erasure = request_erasure(&su, 2).await;
    woken(&mut rx, erasure, "an erasure is requested").await;
    approve(&su, erasure).await;
    woken(&mut rx, erasure, "the erasure is approved").await;

    // Blocked by a hold, then freed by its release.
    let held = request_erasure(&su, 5).await;
    let hold: Uuid = ok(
        su.query_one(
            "SELECT lifecycle.place_hold('user', '5', 'tea', 'Case 9', 'legal@example.com')",
            &[],
        )
        .await,
        "place_hold",
    )
    .get(0);
    approve(&su, held).await;
    exec(&su, &format!("SELECT lifecycle.run_job('{held}')")).await;
    let blocked: bool = ok(
        su.query_one(
            "SELECT blocked_by_hold FROM lifecycle.jobs WHERE id = $1",
            &[&held],
        )
        .await,
        "blocked",
    )
    .get(0);
    assert!(blocked, "the hold blocks the erasure");
    drain(&su, &mut rx, 6).await;
    exec(
        &su,
        &format!("SELECT lifecycle.release_hold('{hold}', 'legal@example.com', 'Case closed')"),
    )
    .await;
    woken(
        &mut rx,
        held,
        "the hold that blocked the erasure is released",
    )
    .await;
    db.cleanup().await.expect("cleanup");
}

async fn job_state(c: &Client, job: Uuid) -> (String, Option<String>, bool, i32) {
    let r = ok(
        c.query_one(
            "SELECT status, worker, lease_expires_at IS NULL, attempts FROM lifecycle.jobs WHERE id = $1",
            &[&job],
        )
        .await,
        "job state",
    );
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[tokio::test]
async fn a_worker_hands_back_what_it_has_not_started() {
    let (db, su) = setup("jl_release").await;
    let (_listening, mut rx) = listener(&db).await;
    let export = request_export(&su, 1, Some("acme")).await;
    woken(&mut rx, export, "the export is inserted").await;
    let before = job_state(&su, export).await;
    let claimed: serde_json::Value = ok(
        su.query_one("SELECT lifecycle.claim_job('worker-a')", &[])
            .await,
        "claim",
    )
    .get(0);
    assert_eq!(claimed["id"].as_str(), Some(export.to_string().as_str()));
    assert_eq!(job_state(&su, export).await.0, "processing");

    for (worker, job, code, what) in [
        ("worker-b", export, "LC039", "another worker's lease"),
        ("worker-a", Uuid::new_v4(), "LC035", "an unknown job"),
    ] {
        expect_sqlstate(
            su.execute("SELECT lifecycle.release_lease($1, $2)", &[&job, &worker])
                .await,
            code,
            what,
        );
    }
    exec(
        &su,
        &format!("SELECT lifecycle.release_lease('{export}', 'worker-a')"),
    )
    .await;
    woken(&mut rx, export, "the export is handed back").await;
    assert_eq!(job_state(&su, export).await, before, "as before the claim");
    let event = count(
        &su,
        &format!(
            "SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'job.lease_released' \
              AND actor = 'worker-a' AND details->>'job_id' = '{export}'"
        ),
    )
    .await;
    assert_eq!(event, 1, "the hand-back is audited");
    expect_sqlstate(
        su.execute("SELECT lifecycle.release_lease($1, 'worker-a')", &[&export])
            .await,
        "LC030",
        "a job nobody holds",
    );
    // Handed back, it is claimed again, by anyone.
    let again: serde_json::Value = ok(
        su.query_one("SELECT lifecycle.claim_job('worker-b')", &[])
            .await,
        "claim again",
    )
    .get(0);
    assert_eq!(again["id"].as_str(), Some(export.to_string().as_str()));
    assert_counts_exact(&su, "after the hand-back").await;
    db.cleanup().await.expect("cleanup");
}
