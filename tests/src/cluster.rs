//! A PostgreSQL cluster of a test's own: for tests that may take a server
//! down (a crash attempt) or must stop and start it, without touching the
//! cluster every other test shares.
//!
//! `initdb` refuses to run as root, so as root the cluster belongs to the
//! `postgres` user (through `sudo -u postgres`, which the setup script
//! installs); otherwise it belongs to the user running the tests. It listens
//! on 127.0.0.1 on a free port with `trust` authentication for its
//! superuser `postgres`, and is stopped and removed when dropped. The
//! extension is the one installed in PostgreSQL's own directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, Config, NoTls};

/// Directory of PostgreSQL 15's server programs (`PG_BIN` overrides it).
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Whether the tests run as root (`/proc/self` belongs to the process's user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Run a PostgreSQL program as the cluster's owner.
fn run_as_owner(program: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = if is_root() {
        let mut c = Command::new("sudo");
        c.args(["-n", "-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {:?} failed ({}): {}{}",
            program.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A running cluster of one test.
pub struct OwnCluster {
    dir: PathBuf,
    port: u16,
    stopped: bool,
}

impl OwnCluster {
    /// `initdb` and start a new cluster.
    pub fn start(name: &str) -> Result<OwnCluster> {
        let dir = std::env::temp_dir().join(format!(
            "lc-cluster-{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).context("creating the cluster directory")?;
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()?;
            if !status.success() {
                bail!("chown postgres {} failed", dir.display());
            }
        }
        let port = free_port()?;
        let cluster = OwnCluster {
            dir,
            port,
            stopped: true,
        };
        let data = cluster.data_dir();
        run_as_owner(
            &pg_bin().join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        )?;
        let mut cluster = cluster;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        run_as_owner(
            &pg_bin().join("pg_ctl"),
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )?;
        self.stopped = false;
        Ok(())
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection configuration for `database` as the superuser `postgres`.
    pub fn config(&self, database: &str) -> Config {
        let mut c = Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(database);
        c
    }

    /// Connection URL of `database` as `user` (trust authentication).
    pub fn url(&self, database: &str, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// A new session in `database` as `user`.
    pub async fn connect_as(&self, database: &str, user: &str) -> Result<Client> {
        let mut c = self.config(database);
        c.user(user);
        let (client, connection) = c
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to the test cluster on port {}", self.port))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A new superuser session in `database`.
    pub async fn connect(&self, database: &str) -> Result<Client> {
        self.connect_as(database, "postgres").await
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stop the server (`fast`), keeping its data.
    pub fn stop(&mut self) -> Result<()> {
        if !self.stopped {
            run_as_owner(
                &pg_bin().join("pg_ctl"),
                &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
            )?;
            self.stopped = true;
        }
        Ok(())
    }

    /// Start it again after [`OwnCluster::stop`], on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.pg_ctl_start()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = run_as_owner(
                &pg_bin().join("pg_ctl"),
                &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
