//! The PostgreSQL server: connections, benchmark databases, pgbench runs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;
use tokio_postgres::config::Host;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

/// Errors seen while the extension's files are being reinstalled (a
/// library rewritten in place can take the server through crash recovery);
/// the operation is retried.
const TRANSIENT: [&str; 11] = [
    "connection closed",
    "error communicating with the server",
    "could not access file",
    "unrecognized function API version",
    "could not load library",
    "crash of another server process",
    "server closed the connection unexpectedly",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is starting up",
    "Connection refused",
];

pub fn is_transient(message: &str) -> bool {
    TRANSIENT.iter().any(|t| message.contains(t))
}

/// The full text of a database error (message, detail, hint).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => e.to_string(),
    }
}

pub struct Server {
    admin: Config,
    pgbench: PathBuf,
}

/// The result of one pgbench run.
pub struct PgbenchRun {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
}

impl Server {
    pub fn new(admin_url: &str, pgbench: PathBuf) -> Result<Self> {
        let admin = Config::from_str(admin_url).context("parsing the admin URL")?;
        Ok(Server { admin, pgbench })
    }

    pub fn pgbench_path(&self) -> &Path {
        &self.pgbench
    }

    /// Whether the server runs on this machine (its files can be inspected).
    pub fn is_local(&self) -> bool {
        self.admin.get_hosts().iter().all(|h| match h {
            Host::Tcp(name) => matches!(name.as_str(), "127.0.0.1" | "localhost" | "::1"),
            _ => true,
        })
    }

    pub async fn connect(&self, dbname: &str) -> Result<Client> {
        Ok(self.connect_inner(dbname, false).await?.0)
    }

    /// A connection whose notices (`NOTICE`, `LOG` sent to the client...)
    /// arrive, in order, on the returned channel, each as its message and,
    /// on the next lines, its detail: for `auto_explain` with
    /// `auto_explain.log_level = notice` and the `log_*_stats` settings.
    pub async fn connect_with_notices(
        &self,
        dbname: &str,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>)> {
        let (client, rx) = self.connect_inner(dbname, true).await?;
        Ok((client, rx.expect("a notice channel was asked for")))
    }

    async fn connect_inner(
        &self,
        dbname: &str,
        notices: bool,
    ) -> Result<(Client, Option<mpsc::UnboundedReceiver<String>>)> {
        let mut config = self.admin.clone();
        config.dbname(dbname);
        config.application_name("lifecycle-bench");
        let mut attempt = 0;
        let (client, connection) = loop {
            attempt += 1;
            match config.connect(NoTls).await {
                Ok(c) => break c,
                Err(e) => {
                    let msg = format!("{} {e:?}", describe(&e));
                    if attempt < 30 && is_transient(&msg) {
                        eprintln!("  connecting to {dbname}: {}; retrying", describe(&e));
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                    return Err(e).with_context(|| format!("connecting to database {dbname}"));
                }
            }
        };
        if !notices {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("connection error: {e}");
                }
            });
            return Ok((client, None));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut connection = connection;
        tokio::spawn(async move {
            // A notice is handed out before the messages that follow it are
            // routed to the client, so that a query's notices are in the
            // channel by the time the query returns.
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notice(n))) => {
                        let text = match n.detail() {
                            Some(d) => format!("{}\n{d}", n.message()),
                            None => n.message().to_string(),
                        };
                        let _ = tx.send(text);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        eprintln!("connection error: {e}");
                        break;
                    }
                    None => break,
                }
            }
        });
        Ok((client, Some(rx)))
    }

    pub async fn connect_admin(&self) -> Result<Client> {
        let db = self.admin.get_dbname().unwrap_or("postgres").to_string();
        self.connect(&db).await
    }

    /// Drop (forcing out other sessions) and create `name`; set
    /// `synchronous_commit` for it.
    /// Drop and recreate `name`, connect to it and create the extension.
    pub async fn fresh_database_with_extension(
        &self,
        name: &str,
        synchronous_commit: &str,
    ) -> Result<Client> {
        self.recreate_database(name, synchronous_commit).await?;
        let client = self.connect(name).await?;
        batch(
            &client,
            "CREATE EXTENSION lifecycle",
            "CREATE EXTENSION lifecycle",
        )
        .await?;
        Ok(client)
    }

    pub async fn recreate_database(&self, name: &str, synchronous_commit: &str) -> Result<()> {
        let admin = self.connect_admin().await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|e| anyhow!("dropping database {name}: {}", describe(&e)))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| anyhow!("creating database {name}: {}", describe(&e)))?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} SET synchronous_commit = {synchronous_commit}"
            ))
            .await
            .map_err(|e| anyhow!("configuring database {name}: {}", describe(&e)))?;
        Ok(())
    }

    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let admin = self.connect_admin().await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|e| anyhow!("dropping database {name}: {}", describe(&e)))?;
        Ok(())
    }

    /// Environment that points pgbench (a libpq client) at the server.
    fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(host) = self.admin.get_hosts().first() {
            let h = match host {
                Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                Host::Unix(p) => p.display().to_string(),
            };
            env.push(("PGHOST", h));
        }
        if let Some(port) = self.admin.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        if let Some(user) = self.admin.get_user() {
            env.push(("PGUSER", user.to_string()));
        }
        if let Some(pw) = self.admin.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(pw).into_owned()));
        }
        env.push(("PGAPPNAME", "lifecycle-bench".to_string()));
        env
    }

    /// `pgbench --version`.
    pub async fn pgbench_version(&self) -> Result<String> {
        let out = tokio::process::Command::new(&self.pgbench)
            .arg("--version")
            .output()
            .await
            .with_context(|| format!("running {}", self.pgbench.display()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// One pgbench run: `-n -M prepared -c clients -j threads -T seconds -f script`.
    pub async fn pgbench(
        &self,
        dbname: &str,
        script: &Path,
        clients: u32,
        threads: u32,
        seconds: u32,
    ) -> Result<PgbenchRun> {
        self.pgbench_with(dbname, script, clients, threads, seconds, &[])
            .await
    }

    /// One pgbench run as [`Server::pgbench`] that also logs every
    /// transaction (`-l`) into `log_dir`; returns the run and the
    /// transactions' latencies in milliseconds.
    pub async fn pgbench_latencies(
        &self,
        dbname: &str,
        script: &Path,
        clients: u32,
        threads: u32,
        seconds: u32,
        log_dir: &Path,
    ) -> Result<(PgbenchRun, Vec<f64>)> {
        let _ = std::fs::remove_dir_all(log_dir);
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let prefix = format!("--log-prefix={}", log_dir.join("tx").display());
        let run = self
            .pgbench_with(dbname, script, clients, threads, seconds, &["-l", &prefix])
            .await?;
        let mut latencies = Vec::with_capacity(run.transactions as usize);
        for entry in std::fs::read_dir(log_dir)? {
            let text = std::fs::read_to_string(entry?.path())?;
            // client_id transaction_no time_us script_no time_epoch time_us
            latencies.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                    .map(|us| us / 1000.0),
            );
        }
        let _ = std::fs::remove_dir_all(log_dir);
        Ok((run, latencies))
    }

    async fn pgbench_with(
        &self,
        dbname: &str,
        script: &Path,
        clients: u32,
        threads: u32,
        seconds: u32,
        extra: &[&str],
    ) -> Result<PgbenchRun> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = tokio::process::Command::new(&self.pgbench)
                .envs(self.libpq_env())
                .args(["-n", "-M", "prepared"])
                .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
                .args(["-T", &seconds.to_string()])
                .args(extra)
                .arg("-f")
                .arg(script)
                .arg(dbname)
                .output()
                .await
                .with_context(|| format!("running {}", self.pgbench.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                if attempt < 10 && is_transient(&stderr) {
                    eprintln!(
                        "  pgbench {}: {}; retrying",
                        script.display(),
                        stderr.lines().last().unwrap_or("").trim()
                    );
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                bail!(
                    "pgbench {} failed ({}):\n{}\n{}",
                    script.display(),
                    out.status,
                    stdout.trim(),
                    stderr.trim()
                );
            }
            return parse_pgbench(&stdout)
                .with_context(|| format!("reading pgbench output:\n{stdout}\n{stderr}"));
        }
    }
}

fn parse_pgbench(out: &str) -> Result<PgbenchRun> {
    let mut tps = None;
    let mut transactions = None;
    let mut failed = 0;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            transactions = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            failed = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    Ok(PgbenchRun {
        tps: tps.ok_or_else(|| anyhow!("no tps line"))?,
        transactions: transactions.ok_or_else(|| anyhow!("no transaction count"))?,
        failed,
    })
}

/// Run `sql` (several statements), retrying while the extension's files are
/// being reinstalled.
pub async fn batch(client: &Client, sql: &str, what: &str) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.batch_execute(sql).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let msg = describe(&e);
                if attempt < 10 && is_transient(&msg) {
                    eprintln!("  {what}: {msg}; retrying");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    continue;
                }
                bail!("{what}: {msg}");
            }
        }
    }
}

/// Replace every `@KEY@` in `template`.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("@{k}@"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_15_output() {
        let out = "pgbench (15.20 (Debian 15.20-0+deb12u1))\n\
transaction type: update.pgbench\n\
scaling factor: 1\n\
query mode: prepared\n\
number of clients: 2\n\
number of threads: 2\n\
maximum number of tries: 1\n\
duration: 10 s\n\
number of transactions actually processed: 123456\n\
number of failed transactions: 0 (0.000%)\n\
latency average = 0.162 ms\n\
initial connection time = 4.321 ms\n\
tps = 12345.678901 (without initial connection time)\n";
        let r = parse_pgbench(out).unwrap();
        assert_eq!(r.transactions, 123456);
        assert_eq!(r.failed, 0);
        assert!((r.tps - 12345.678901).abs() < 1e-6);
    }

    #[test]
    fn renders_placeholders() {
        assert_eq!(
            render(
                "UPDATE bench.@TABLE@ WHERE id <= @ROWS@",
                &[("TABLE", "t".into()), ("ROWS", "9".into())]
            ),
            "UPDATE bench.t WHERE id <= 9"
        );
    }
}
