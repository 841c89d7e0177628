//! One `LISTEN lifecycle_jobs` session per database, outside the pool (a
//! pooled connection drops notifications): each notification wakes the
//! database's queue at once instead of at its next poll. The session is
//! opened again whenever it breaks, and the queue is woken then too, since
//! notifications sent while nobody listened are lost.

use std::convert::Infallible;
use std::pin::pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::calls::{CallError, CHANNEL};
use super::reach::Reach;
use super::{Queue, Shared};

/// TCP keepalive probes notice a server that vanished without closing the
/// connection (a host gone, a cut network) within about a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Listen for `queue`'s notifications until the worker stops.
pub async fn run(shared: std::sync::Arc<Shared>, queue: std::sync::Arc<Queue>) {
    let mut reach = Reach::new(queue.name.clone(), "notifications");
    let mut config = queue.connect.clone();
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    loop {
        let ended = tokio::select! {
            ended = session(&config, &queue.wake, &mut reach) => ended,
            () = shared.stop.cancelled() => return,
        };
        let Err(error) = ended;
        let pause = reach.down(&error);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}

/// One session: connect, `LISTEN`, then forward notifications until the
/// connection ends (which is always an error here).
async fn session(
    config: &tokio_postgres::Config,
    wake: &Notify,
    reach: &mut Reach,
) -> Result<Infallible, CallError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection makes progress only while it is polled, so it is
    // drained while LISTEN is sent and answered.
    let mut messages = pin!(futures::stream::poll_fn(
        move |cx| connection.poll_message(cx)
    ));
    let listen = format!("LISTEN {CHANNEL}");
    tokio::select! {
        listened = client.batch_execute(&listen) => listened?,
        ended = forward(&mut messages, wake) => return ended,
    }
    reach.up();
    tracing::debug!(channel = CHANNEL, "listening for runnable jobs");
    wake.notify_one();
    forward(&mut messages, wake).await
}

/// Wake the queue at each notification until the connection ends.
async fn forward<S>(messages: &mut S, wake: &Notify) -> Result<Infallible, CallError>
where
    S: Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Unpin,
{
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            wake.notify_one();
        }
    }
    Err(CallError::Closed)
}
