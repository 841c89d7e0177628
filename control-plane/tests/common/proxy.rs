//! A TCP proxy in front of the PostgreSQL cluster that a test can cut and
//! restore, to see the service while "the database is down" without
//! stopping the cluster other tests share. Cutting it closes every open
//! connection and refuses new ones, as a stopped server does.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    running: Mutex<Option<CancellationToken>>,
}

impl Proxy {
    /// Start forwarding a free port of 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let proxy = Self {
            port,
            target,
            running: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// The URL `url` (a `postgres://` URL of the target) through the proxy.
    pub fn url(&self, url: &str) -> String {
        let mut config: tokio_postgres::Config = url.parse().expect("URL");
        config.port(self.port);
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let dbname = config.get_dbname().unwrap_or("postgres");
        format!(
            "postgres://{user}{password}@127.0.0.1:{}/{dbname}",
            self.port
        )
    }

    fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        *self.running.lock().expect("lock") = Some(stop.clone());
        let target = self.target;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
    }

    /// Close every connection and refuse new ones.
    pub fn cut(&self) {
        if let Some(stop) = self.running.lock().expect("lock").take() {
            stop.cancel();
        }
    }

    /// Accept connections again, on the same port.
    pub async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the proxy's port");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
