//! A real S3-compatible server for the tests: `s3s-fs` (installed by
//! `scripts/setup.sh`), started on a free port of 127.0.0.1 over a
//! directory of its own, with an access key and secret, and one bucket.
//! It is stopped and its directory removed when the value is dropped.
//!
//! The binary is `$LIFECYCLE_S3S_FS` when set, else `s3s-fs` on the `PATH`,
//! else the one `cargo install` put in `$CARGO_HOME/bin`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "lifecycle-test-access";
/// Its secret.
pub const SECRET_KEY: &str = "lifecycle-test-secret-0123456789";
/// The region the clients name (the server ignores it).
pub const REGION: &str = "us-east-1";

/// How long the server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `s3s-fs`.
pub struct S3Server {
    child: Child,
    root: PathBuf,
    port: u16,
    bucket: String,
}

/// The `s3s-fs` program to run.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LIFECYCLE_S3S_FS").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("s3s-fs"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    if let Some(path) = on_path {
        return path;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    cargo_home.join("bin").join("s3s-fs")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Wait until `child` listens on `port` of 127.0.0.1.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("s3s-fs exited with {status} before listening on {address}");
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("s3s-fs did not listen on {address} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl S3Server {
    /// Start a server with the bucket `bucket` (an empty directory under
    /// its root, which is how `s3s-fs` keeps buckets).
    pub fn start(bucket: &str) -> Result<S3Server> {
        let root = std::env::temp_dir().join(format!(
            "lc-s3-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(root.join(bucket)).context("creating the server's directory")?;
        let program = binary();
        let mut last_error = None;
        // A free port may be taken between the probe and the bind: try
        // again with another.
        for _ in 0..5 {
            let port = free_port()?;
            let spawned = Command::new(&program)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&root);
                    return Err(e).with_context(|| {
                        format!(
                            "cannot run {} (scripts/setup.sh installs it; LIFECYCLE_S3S_FS names another)",
                            program.display()
                        )
                    });
                }
            };
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    return Ok(S3Server {
                        child,
                        root,
                        port,
                        bucket: bucket.to_owned(),
                    })
                }
                Err(e) => {
                    last_error = Some(e);
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("s3s-fs did not start")))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<bucket>`.
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The directory that holds the bucket's objects (one file per key).
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }

    /// The server's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The environment a client of this server needs: the keys, the
    /// region, and the endpoint as `lifecycled` takes it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("LIFECYCLE_S3_ENDPOINT", self.endpoint()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
