//! Full-duplex forwarding between a client and a server connection, with half-close and
//! HAProxy's inactivity timeouts.
//!
//! Both directions run in the same task and share the two sockets by reference, so there is
//! no `Arc` per connection and no cross-task wake-up. A buffer is taken from a small
//! per-thread pool only once a socket is readable and is given back as soon as the bytes are
//! written: an idle connection holds no buffer at all.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Size of one forwarding buffer (HAProxy's default `tune.bufsize`).
const BUFFER_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse; more than this are freed.
const POOL_LIMIT: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    POOL.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
}

fn give_buffer(buffer: Box<[u8]>) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_LIMIT {
            pool.push(buffer);
        }
    });
}

/// Which side a failure or timeout belongs to (first letter of HAProxy's termination state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// How forwarding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Both directions were closed cleanly (FIN both ways).
    Closed,
    /// A socket error (reset, broken pipe) on that side.
    Aborted(Side),
    /// The inactivity timeout of that side expired.
    TimedOut(Side),
}

/// Inactivity limits for the session, resolved from the proxy timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
    pub tunnel: Option<Duration>,
}

impl Limits {
    /// The inactivity limit that applies now, and the side to blame when it expires.
    /// Once a direction is shut, the `*-fin` timeouts take over for a half-closed session.
    fn current(&self, half_closed: bool) -> Option<(Duration, Side)> {
        let pick = |client: Option<Duration>, server: Option<Duration>| match (client, server) {
            (Some(c), Some(s)) if s < c => Some((s, Side::Server)),
            (Some(c), _) => Some((c, Side::Client)),
            (None, Some(s)) => Some((s, Side::Server)),
            (None, None) => None,
        };
        if half_closed {
            let client = self.client_fin.or(self.tunnel).or(self.client);
            let server = self.server_fin.or(self.tunnel).or(self.server);
            return pick(client, server);
        }
        // In TCP mode the tunnel timeout supersedes both sides once data flows both ways.
        if let Some(tunnel) = self.tunnel {
            return Some((tunnel, Side::Client));
        }
        pick(self.client, self.server)
    }
}

/// Byte counts of a finished forwarding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transferred {
    /// Client to server.
    pub upstream: u64,
    /// Server to client.
    pub downstream: u64,
}

/// Live byte counters the caller can read while forwarding runs (stats).
pub trait ByteSink: Sync {
    fn add_upstream(&self, bytes: u64);
    fn add_downstream(&self, bytes: u64);
}

/// Forwards until both directions are closed, an error occurs, or a timeout expires.
pub async fn forward(
    client: &TcpStream,
    server: &TcpStream,
    limits: Limits,
    sink: &dyn ByteSink,
) -> (Ending, Transferred) {
    let epoch = Instant::now();
    let last_activity = AtomicU64::new(0);
    let half_closed = std::sync::atomic::AtomicBool::new(false);
    let up_bytes = AtomicU64::new(0);
    let down_bytes = AtomicU64::new(0);

    let up = pump(
        client,
        server,
        Side::Client,
        &last_activity,
        &half_closed,
        epoch,
        &up_bytes,
        |n| sink.add_upstream(n),
    );
    let down = pump(
        server,
        client,
        Side::Server,
        &last_activity,
        &half_closed,
        epoch,
        &down_bytes,
        |n| sink.add_downstream(n),
    );
    // Pinned here, once: handing the futures to `join_pumps` by value would store each twice
    // in the session's task (argument and pinned copy), and an idle session is mostly this.
    tokio::pin!(up);
    tokio::pin!(down);
    let watchdog = watchdog(limits, &last_activity, &half_closed, epoch);

    let ending = tokio::select! {
        biased;
        ending = join_pumps(up.as_mut(), down.as_mut()) => ending,
        side = watchdog => Ending::TimedOut(side),
    };
    let transferred = Transferred {
        upstream: up_bytes.load(Ordering::Relaxed),
        downstream: down_bytes.load(Ordering::Relaxed),
    };
    (ending, transferred)
}

/// Runs both directions; the first error ends the session at once, as HAProxy closes both
/// sides on an error in either.
async fn join_pumps(
    mut up: std::pin::Pin<&mut impl std::future::Future<Output = Result<(), Side>>>,
    mut down: std::pin::Pin<&mut impl std::future::Future<Output = Result<(), Side>>>,
) -> Ending {
    let mut up_done = false;
    let mut down_done = false;
    while !(up_done && down_done) {
        tokio::select! {
            result = up.as_mut(), if !up_done => {
                if let Err(side) = result { return Ending::Aborted(side); }
                up_done = true;
            }
            result = down.as_mut(), if !down_done => {
                if let Err(side) = result { return Ending::Aborted(side); }
                down_done = true;
            }
        }
    }
    Ending::Closed
}

/// Copies `from` to `to` until `from` sends FIN (then propagates it) or an error occurs.
/// Errors are attributed to the side whose socket failed.
#[allow(clippy::too_many_arguments)]
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    from_side: Side,
    last_activity: &AtomicU64,
    half_closed: &std::sync::atomic::AtomicBool,
    epoch: Instant,
    total: &AtomicU64,
    count: impl Fn(u64),
) -> Result<(), Side> {
    let to_side = match from_side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    loop {
        // `poll_read_ready` rather than `readable()`: it waits in the socket's own waker slot
        // instead of keeping a waiter in this future, which an idle session holds for its
        // whole life. Each (socket, direction) has one pump, so the single slot suffices.
        if std::future::poll_fn(|cx| from.poll_read_ready(cx))
            .await
            .is_err()
        {
            return Err(from_side);
        }
        let mut buffer = take_buffer();
        let read = match from.try_read(&mut buffer) {
            Ok(0) => {
                give_buffer(buffer);
                half_closed.store(true, Ordering::Relaxed);
                // Propagate the half-close; the other direction keeps flowing.
                return match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    Err(_) => Err(to_side),
                };
            }
            Ok(n) => {
                if n < buffer.len() {
                    // A short read means the socket is drained: drop the readiness now instead
                    // of paying one more read() that would only return EAGAIN. Tokio keeps
                    // readiness that arrived after we observed it, so no wake-up is lost.
                    let _ = from.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                n
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give_buffer(buffer);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                give_buffer(buffer);
                continue;
            }
            Err(_) => {
                give_buffer(buffer);
                return Err(from_side);
            }
        };
        let result = write_all(to, &buffer[..read]).await;
        give_buffer(buffer);
        if result.is_err() {
            return Err(to_side);
        }
        total.fetch_add(read as u64, Ordering::Relaxed);
        count(read as u64);
        last_activity.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::future::poll_fn(|cx| to.poll_write_ready(cx)).await?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Completes with the side to blame when the session has been idle longer than allowed.
async fn watchdog(
    limits: Limits,
    last_activity: &AtomicU64,
    half_closed: &std::sync::atomic::AtomicBool,
    epoch: Instant,
) -> Side {
    loop {
        let Some((limit, side)) = limits.current(half_closed.load(Ordering::Relaxed)) else {
            // No timeout configured: wait until a half-close may bring a *-fin timeout.
            if limits.client_fin.is_none() && limits.server_fin.is_none() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let idle_since = Duration::from_millis(last_activity.load(Ordering::Relaxed));
        let deadline = epoch + idle_since + limit;
        let now = Instant::now();
        if now >= deadline {
            return side;
        }
        // Re-check at the deadline, or sooner so a half-close switches to the fin timeout.
        let mut wait = deadline - now;
        if !half_closed.load(Ordering::Relaxed)
            && (limits.client_fin.is_some() || limits.server_fin.is_some())
        {
            wait = wait.min(Duration::from_millis(500));
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    struct NoSink;
    impl ByteSink for NoSink {
        fn add_upstream(&self, _: u64) {}
        fn add_downstream(&self, _: u64) {}
    }

    /// A connected pair of sockets: (accepted side, connecting side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.unwrap().0, connected.unwrap())
    }

    fn no_limits() -> Limits {
        Limits {
            client: None,
            server: None,
            client_fin: None,
            server_fin: None,
            tunnel: None,
        }
    }

    #[tokio::test]
    async fn forwards_both_ways_and_propagates_half_close() {
        let (proxy_client, mut client) = pair().await;
        let (mut server, proxy_server) = pair().await;
        let task = tokio::spawn(async move {
            forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await
        });
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        // Client half-closes: the server sees EOF but can still answer.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
        let big = vec![7u8; 1 << 20];
        server.write_all(&big).await.unwrap();
        server.shutdown().await.unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), big.len());
        let (ending, transferred) = task.await.unwrap();
        assert_eq!(ending, Ending::Closed);
        assert_eq!(transferred.upstream, 5);
        assert_eq!(transferred.downstream, 1 << 20);
    }

    #[tokio::test]
    async fn idle_timeout_blames_the_shorter_side() {
        let (proxy_client, _client) = pair().await;
        let (_server, proxy_server) = pair().await;
        let limits = Limits {
            client: Some(Duration::from_millis(300)),
            server: Some(Duration::from_millis(100)),
            ..no_limits()
        };
        let started = Instant::now();
        let (ending, _) = forward(&proxy_client, &proxy_server, limits, &NoSink).await;
        assert_eq!(ending, Ending::TimedOut(Side::Server));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn reset_is_attributed_to_its_side() {
        let (proxy_client, client) = pair().await;
        let (_server, proxy_server) = pair().await;
        // Linger 0 turns close into a reset.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let (ending, _) = forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await;
        assert_eq!(ending, Ending::Aborted(Side::Client));
    }
}
