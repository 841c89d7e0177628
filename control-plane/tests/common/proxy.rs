//! A TCP proxy in front of the PostgreSQL cluster that a test can cut,
//! stall and restore, to see the service while "the database is down" or
//! hangs without stopping the cluster other tests share. Cutting it closes
//! every open connection and refuses new ones, as a stopped server does;
//! stalling accepts connections and never answers.

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

    /// A proxy in front of the server of `url` (a `postgres://` URL).
    pub async fn in_front_of(url: &str) -> Self {
        let config: tokio_postgres::Config = url.parse().expect("URL");
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) if host == "localhost" => {
                "127.0.0.1".to_owned()
            }
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => panic!("the proxy needs a TCP server"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Self::start(format!("{host}:{port}").parse().expect("server address")).await
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

    /// Accept connections but never answer (a server that hangs, or a
    /// network that drops packets): connecting times out.
    pub async fn stall(&self) {
        self.cut();
        let listener = self.rebind().await;
        let stop = CancellationToken::new();
        *self.running.lock().expect("lock") = Some(stop.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((socket, _)) = accepted {
                            held.push(socket);
                        }
                    }
                }
            }
        });
    }

    /// Bind the proxy's port again (the listener that was cut is dropped by
    /// its own task, a moment later).
    async fn rebind(&self) -> TcpListener {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", self.port)).await {
                return listener;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("could not bind the proxy's port {} again", self.port);
    }

    /// Close every connection and refuse new ones.
    pub fn cut(&self) {
        if let Some(stop) = self.running.lock().expect("lock").take() {
            stop.cancel();
        }
    }

    /// Accept connections again, on the same port.
    pub async fn restore(&self) {
        let listener = self.rebind().await;
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
