//! Full-duplex forwarding between a client and a server connection, with half-close and
//! HAProxy's inactivity timeouts.
//!
//! The relay is one hand-written state machine polled by the session's task: both
//! directions, the inactivity deadline and the byte counters live in ~190 bytes, and
//! the two sockets are shared by reference, so there is no `Arc` per connection and no
//! cross-task wake-up. An idle connection holds no buffer and no pipe: a buffer is taken
//! from a small per-thread pool only once a socket is readable and given back as soon as
//! its bytes are written.
//!
//! Bulk flows move with `splice(2)` (as HAProxy's `option splice-auto`): once a read fills
//! a whole buffer, that direction goes socket → pipe → socket inside the kernel, without
//! copying the bytes through user space. Small request/response traffic (database
//! queries) never fills a buffer and keeps the cheaper plain read/write path.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::wheel::Alarm;

/// Size of one forwarding buffer (HAProxy's default `tune.bufsize`).
const BUFFER_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse; more than this are freed.
const POOL_LIMIT: usize = 256;
/// Capacity asked for each pipe, and bytes moved by one `splice` into it.
const PIPE_CHUNK: usize = 256 * 1024;
/// Pipes kept per thread for reuse (each is two descriptors).
const PIPE_POOL_LIMIT: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Kernel splicing for bulk flows; `global nosplice` turns it off process-wide.
static SPLICE_ENABLED: AtomicBool = AtomicBool::new(true);

/// Bytes forwarded with `splice` since start (lets tests see which path was taken).
static SPLICED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Enables or disables `splice(2)` for sessions that start forwarding from now on.
pub fn set_splice(enabled: bool) {
    SPLICE_ENABLED.store(enabled, Ordering::Relaxed);
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

/// A non-blocking pipe used as the kernel-side buffer of a spliced direction.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

fn take_pipe() -> io::Result<Pipe> {
    if let Some(pipe) = PIPES.with(|pipes| pipes.borrow_mut().pop()) {
        return Ok(pipe);
    }
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // Larger than the default 64 KiB: fewer splice calls per byte. Refused past the user's
    // pipe quota, then the pipe keeps its default size.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&write),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_CHUNK as i32),
    );
    Ok(Pipe { read, write })
}

/// Only empty pipes go back to the pool; one still holding bytes is closed with them.
fn give_pipe(pipe: Pipe) {
    PIPES.with(|pipes| {
        let mut pipes = pipes.borrow_mut();
        if pipes.len() < PIPE_POOL_LIMIT {
            pipes.push(pipe);
        }
    });
}

fn splice_between(from: impl AsFd, to: impl AsFd, length: usize) -> io::Result<usize> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    Ok(splice(from, None, to, None, length, flags)?)
}

/// Milliseconds of a cheap monotonic clock (`CLOCK_MONOTONIC_COARSE`, a few ms of
/// resolution): the relay stamps activity on every chunk, and timeouts need no better.
fn coarse_now_ms() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// The coarse clock's resolution in ms, added to limits so a timeout never fires early.
fn coarse_resolution_ms() -> u64 {
    static RESOLUTION: OnceLock<u64> = OnceLock::new();
    *RESOLUTION.get_or_init(|| {
        use nix::time::{clock_getres, ClockId};
        clock_getres(ClockId::CLOCK_MONOTONIC_COARSE)
            .map(|t| (t.tv_sec() as u64 * 1000 + (t.tv_nsec() as u64).div_ceil(1_000_000)).max(1))
            .unwrap_or(10)
    })
}

/// Which side a failure or timeout belongs to (first letter of HAProxy's termination state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
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
    pub(crate) fn current(&self, half_closed: bool) -> Option<(Duration, Side)> {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Client to server.
    pub upstream: u64,
    /// Server to client.
    pub downstream: u64,
}

impl Transferred {
    /// These counts followed by `then`'s (a session relayed in two stages).
    pub fn then(self, then: Transferred) -> Transferred {
        Transferred {
            upstream: self.upstream + then.upstream,
            downstream: self.downstream + then.downstream,
        }
    }
}

/// How a relay stopped.
#[derive(Debug, Clone, Copy)]
pub enum Relayed {
    /// The session is over.
    Ended(Ending, Transferred),
    /// The session settled into small request/response turns (see
    /// [`Forward::settle_after`]): nothing is buffered, both sides are open, and the caller
    /// may carry on forwarding it another way. The bytes carried so far.
    Settled(Transferred),
}

/// Live byte counters the caller can read while forwarding runs (stats).
pub trait ByteSink: Sync {
    fn add_upstream(&self, bytes: u64);
    fn add_downstream(&self, bytes: u64);
}

/// Forwards until both directions are closed, an error occurs, or a timeout expires.
///
/// A named future rather than an `async fn`: an async fn keeps its arguments next to the
/// locals made from them, and an idle session is mostly this state.
pub fn forward<'a>(
    client: &'a TcpStream,
    server: &'a TcpStream,
    limits: Limits,
    sink: &'a dyn ByteSink,
) -> Forward<'a> {
    let open = IdleLimit::from(limits.current(false));
    let half_closed = IdleLimit::from(limits.current(true));
    Forward {
        alarm: Alarm::default(),
        relay: Relay {
            open,
            half_closed,
            up: Direction::new(),
            down: Direction::new(),
            last_activity_ms: coarse_now_ms(),
            is_half_closed: false,
            splice: SPLICE_ENABLED.load(Ordering::Relaxed),
            turns: 0,
            last_sender: None,
            settle_after: 0,
        },
        client,
        server,
        sink,
    }
}

/// The relay of one session, see [`forward`].
pub struct Forward<'a> {
    /// The inactivity deadline on the thread's timer wheel: activity moves it later with a
    /// clock read, not a timer update (`crate::wheel`).
    alarm: Alarm,
    relay: Relay,
    client: &'a TcpStream,
    server: &'a TcpStream,
    sink: &'a dyn ByteSink,
}

impl Forward<'_> {
    /// Bytes carried each way so far (for a session ended from outside, by a kill order).
    pub fn transferred(&self) -> Transferred {
        self.relay.transferred()
    }

    /// Stops with [`Relayed::Settled`] once the session has made `turns` turns (the sending
    /// side changed that often) without a read ever filling a buffer, and nothing waits to
    /// be written. A database session settles after a few queries; a bulk flow, or a short
    /// session, never does. `0` (the default) never stops.
    pub fn settle_after(mut self, turns: u32) -> Self {
        self.relay.settle_after = turns;
        self
    }
}

impl Future for Forward<'_> {
    type Output = Relayed;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.relay
            .poll(cx, this.client, this.server, this.sink, &mut this.alarm)
    }
}

/// An inactivity limit in ms and the side blamed when it expires; `ms == 0` is none.
#[derive(Debug, Clone, Copy)]
struct IdleLimit {
    ms: u32,
    side: Side,
}

impl IdleLimit {
    fn from(limit: Option<(Duration, Side)>) -> IdleLimit {
        match limit {
            // HAProxy's timeouts stop at 2^31 - 1 ms; at least 1 ms keeps 0 meaning none.
            Some((limit, side)) => IdleLimit {
                ms: limit.as_millis().clamp(1, i32::MAX as u128) as u32,
                side,
            },
            None => IdleLimit {
                ms: 0,
                side: Side::Client,
            },
        }
    }

    /// How long to wait, in coarse-clock ms: the coarse clock may lag by its resolution at
    /// both stamps, so waiting that much longer keeps a timeout from firing early.
    fn wait_ms(self) -> Option<u64> {
        (self.ms > 0).then(|| u64::from(self.ms) + coarse_resolution_ms())
    }
}

struct Relay {
    /// The limit while both directions are open, and once one is half-closed.
    open: IdleLimit,
    half_closed: IdleLimit,
    /// Client to server.
    up: Direction,
    /// Server to client.
    down: Direction,
    /// Last time bytes moved either way, from `coarse_now_ms`.
    last_activity_ms: u64,
    /// One direction has seen a FIN: the `*-fin` timeouts apply.
    is_half_closed: bool,
    splice: bool,
    /// How often the sending side changed, up to `settle_after`.
    turns: u32,
    last_sender: Option<Side>,
    /// See [`Forward::settle_after`]; 0: never.
    settle_after: u32,
}

impl Relay {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &TcpStream,
        server: &TcpStream,
        sink: &dyn ByteSink,
        alarm: &mut Alarm,
    ) -> Poll<Relayed> {
        let moves = [
            (client, server, Side::Client),
            (server, client, Side::Server),
        ];
        for (from, to, from_side) in moves {
            let other_done = match from_side {
                Side::Client => self.down.is_done(),
                Side::Server => self.up.is_done(),
            };
            let direction = match from_side {
                Side::Client => &mut self.up,
                Side::Server => &mut self.down,
            };
            let before = direction.total;
            let progress = direction.poll(cx, from, to, from_side, self.splice, other_done);
            let moved = direction.total - before;
            if moved > 0 {
                match from_side {
                    Side::Client => sink.add_upstream(moved),
                    Side::Server => sink.add_downstream(moved),
                }
                self.last_activity_ms = coarse_now_ms();
                if self.last_sender != Some(from_side) && self.turns < self.settle_after {
                    self.turns += 1;
                    self.last_sender = Some(from_side);
                }
            }
            match progress {
                // As HAProxy, an error on either side closes both at once.
                Poll::Ready(Err(side)) => return self.ended(Ending::Aborted(side)),
                Poll::Ready(Ok(())) => self.is_half_closed = true,
                Poll::Pending => {}
            }
        }
        if self.up.is_done() && self.down.is_done() {
            return self.ended(Ending::Closed);
        }
        if self.is_settled() {
            return Poll::Ready(Relayed::Settled(self.transferred()));
        }
        match self.poll_deadline(cx, alarm) {
            Some(side) => self.ended(Ending::TimedOut(side)),
            None => Poll::Pending,
        }
    }

    fn ended(&self, ending: Ending) -> Poll<Relayed> {
        Poll::Ready(Relayed::Ended(ending, self.transferred()))
    }

    /// See [`Forward::settle_after`]. Called once both directions wait: an idle stage then
    /// means the source is drained and everything read was written.
    fn is_settled(&self) -> bool {
        self.settle_after > 0
            && self.turns >= self.settle_after
            && !self.is_half_closed
            && [&self.up, &self.down]
                .iter()
                .all(|direction| matches!(direction.stage, Stage::Idle) && !direction.bulk)
    }

    /// Returns the side to blame once the session has been idle longer than its limit (the
    /// `*-fin` one once half-closed, which may be shorter: the alarm then comes forward).
    fn poll_deadline(&mut self, cx: &mut Context<'_>, alarm: &mut Alarm) -> Option<Side> {
        let limit = if self.is_half_closed {
            self.half_closed
        } else {
            self.open
        };
        let deadline = self.last_activity_ms.saturating_add(limit.wait_ms()?);
        alarm
            .poll_deadline(deadline, cx)
            .is_ready()
            .then_some(limit.side)
    }

    fn transferred(&self) -> Transferred {
        Transferred {
            upstream: self.up.total,
            downstream: self.down.total,
        }
    }
}

/// One direction of the relay.
struct Direction {
    stage: Stage,
    /// Bytes written to the destination so far.
    total: u64,
    /// A read filled a whole buffer: this is a bulk flow, move it with `splice`.
    bulk: bool,
}

enum Stage {
    /// Waiting for the source to become readable; holds nothing.
    Idle,
    /// Bytes `start..end` of `buffer` are still to be written.
    Buffered {
        buffer: Box<[u8]>,
        start: usize,
        end: usize,
    },
    /// `pending` bytes wait in the pipe to be spliced to the destination.
    Piped { pipe: Pipe, pending: usize },
    /// The source sent FIN and it was passed on.
    Done,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            stage: Stage::Idle,
            total: 0,
            bulk: false,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// Moves bytes from `from` to `to` until one of them would block (`Pending`), the source
    /// ended and the FIN was passed on (`Ok`), or a socket failed (`Err`, the side to blame).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
        from_side: Side,
        splice_allowed: bool,
        other_done: bool,
    ) -> Poll<Result<(), Side>> {
        let to_side = from_side.other();
        loop {
            match &mut self.stage {
                Stage::Done => return Poll::Ready(Ok(())),
                Stage::Idle => {
                    // `poll_read_ready` waits in the socket's own waker slot; each
                    // (socket, direction) has one reader, so the single slot suffices.
                    if ready!(from.poll_read_ready(cx)).is_err() {
                        return Poll::Ready(Err(from_side));
                    }
                    let read = if self.bulk && splice_allowed {
                        self.splice_in(from)
                    } else {
                        self.read_in(from)
                    };
                    match read {
                        Ok(true) => {}
                        Ok(false) => {
                            self.stage = Stage::Done;
                            if other_done {
                                // Both directions are over: the caller closes both sockets
                                // now, and the close sends the FIN (HAProxy saves this
                                // shutdown() too).
                                return Poll::Ready(Ok(()));
                            }
                            // FIN: pass on the half-close; the other direction keeps flowing.
                            return Poll::Ready(match shutdown_write(to) {
                                Ok(()) => Ok(()),
                                Err(_) => Err(to_side),
                            });
                        }
                        Err(e) if is_retry(&e) => {}
                        Err(_) => return Poll::Ready(Err(from_side)),
                    }
                }
                Stage::Buffered { buffer, start, end } => match to.try_write(&buffer[*start..*end])
                {
                    Ok(0) => return Poll::Ready(Err(to_side)),
                    Ok(written) => {
                        *start += written;
                        self.total += written as u64;
                        if *start == *end {
                            if let Stage::Buffered { buffer, .. } =
                                std::mem::replace(&mut self.stage, Stage::Idle)
                            {
                                give_buffer(buffer);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if ready!(to.poll_write_ready(cx)).is_err() {
                            return Poll::Ready(Err(to_side));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Poll::Ready(Err(to_side)),
                },
                Stage::Piped { pipe, pending } => {
                    let moved = to.try_io(Interest::WRITABLE, || {
                        splice_between(&pipe.read, to, *pending)
                    });
                    match moved {
                        Ok(0) => return Poll::Ready(Err(to_side)),
                        Ok(written) => {
                            *pending -= written;
                            self.total += written as u64;
                            SPLICED_BYTES.fetch_add(written as u64, Ordering::Relaxed);
                            if *pending == 0 {
                                if let Stage::Piped { pipe, .. } =
                                    std::mem::replace(&mut self.stage, Stage::Idle)
                                {
                                    give_pipe(pipe);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if ready!(to.poll_write_ready(cx)).is_err() {
                                return Poll::Ready(Err(to_side));
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Poll::Ready(Err(to_side)),
                    }
                }
            }
        }
    }

    /// Reads into a pooled buffer. `Ok(false)` is end of stream.
    fn read_in(&mut self, from: &TcpStream) -> io::Result<bool> {
        let mut buffer = take_buffer();
        let capacity = buffer.len();
        // A short read means the socket is drained. It is reported to tokio as "would
        // block" from inside `try_io`, so tokio drops the readiness it observed *before*
        // the read and keeps any that arrived since: no extra read() that would only return
        // EAGAIN, and no wake-up lost (clearing after the read returned could drop the
        // event of bytes that arrived in between).
        let mut drained = 0;
        let read = from.try_io(Interest::READABLE, || {
            let read = (&*socket2::SockRef::from(from)).read(&mut buffer)?;
            if read > 0 && read < capacity {
                drained = read;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(read)
        });
        match read {
            Err(_) if drained > 0 => self.buffered(buffer, drained),
            Ok(0) => {
                give_buffer(buffer);
                Ok(false)
            }
            Ok(read) => {
                self.bulk = true;
                self.buffered(buffer, read)
            }
            Err(e) => {
                give_buffer(buffer);
                Err(e)
            }
        }
    }

    fn buffered(&mut self, buffer: Box<[u8]>, end: usize) -> io::Result<bool> {
        self.stage = Stage::Buffered {
            buffer,
            start: 0,
            end,
        };
        Ok(true)
    }

    /// Splices from the socket into a pooled pipe. `Ok(false)` is end of stream.
    fn splice_in(&mut self, from: &TcpStream) -> io::Result<bool> {
        let pipe = match take_pipe() {
            Ok(pipe) => pipe,
            Err(_) => {
                // Out of descriptors for a pipe: this direction copies through user space.
                self.bulk = false;
                return self.read_in(from);
            }
        };
        match from.try_io(Interest::READABLE, || {
            splice_between(from, &pipe.write, PIPE_CHUNK)
        }) {
            Ok(0) => {
                give_pipe(pipe);
                Ok(false)
            }
            Ok(read) => {
                self.stage = Stage::Piped {
                    pipe,
                    pending: read,
                };
                Ok(true)
            }
            Err(e) => {
                give_pipe(pipe);
                Err(e)
            }
        }
    }
}

/// Errors after which the read is simply tried again (tokio has cleared the readiness).
fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Half-closes the write side, treating an already disconnected socket as done (also for
/// the sockets the kernel forwards, `kernel`).
pub(crate) fn shutdown_write(to: &impl AsFd) -> io::Result<()> {
    match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
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

    /// A relay that is not asked to settle only stops when the session ends.
    fn ended(relayed: Relayed) -> (Ending, Transferred) {
        match relayed {
            Relayed::Ended(ending, transferred) => (ending, transferred),
            Relayed::Settled(_) => panic!("settled without being asked to"),
        }
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
            ended(forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await)
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
    async fn request_response_turns_settle_with_nothing_buffered() {
        let (proxy_client, mut client) = pair().await;
        let (mut server, proxy_server) = pair().await;
        let task = tokio::spawn(async move {
            let relayed = forward(&proxy_client, &proxy_server, no_limits(), &NoSink)
                .settle_after(6)
                .await;
            (relayed, proxy_client, proxy_server)
        });
        // Three queries and their answers: six turns.
        for turn in 0..3u8 {
            client.write_all(&[turn; 100]).await.unwrap();
            let mut query = [0u8; 100];
            server.read_exact(&mut query).await.unwrap();
            assert_eq!(query, [turn; 100]);
            server.write_all(&[turn; 300]).await.unwrap();
            let mut answer = [0u8; 300];
            client.read_exact(&mut answer).await.unwrap();
        }
        let (relayed, proxy_client, proxy_server) =
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the relay did not stop once settled")
                .unwrap();
        let Relayed::Settled(so_far) = relayed else {
            panic!("not settled: {relayed:?}");
        };
        assert_eq!((so_far.upstream, so_far.downstream), (300, 900));
        // Nothing was held back: a relay taking over (here, another one in user space) sees
        // the next query first.
        client.write_all(b"next").await.unwrap();
        client.shutdown().await.unwrap();
        let next = tokio::spawn(async move {
            ended(forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await)
        });
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"next");
        server.shutdown().await.unwrap();
        let (ending, after) = next.await.unwrap();
        assert_eq!(ending, Ending::Closed);
        assert_eq!((after.upstream, after.downstream), (4, 0));
    }

    #[tokio::test]
    async fn a_bulk_flow_never_settles() {
        let (proxy_client, mut client) = pair().await;
        let (mut server, proxy_server) = pair().await;
        let task = tokio::spawn(async move {
            forward(&proxy_client, &proxy_server, no_limits(), &NoSink)
                .settle_after(4)
                .await
        });
        let bulk = vec![1u8; 1 << 20];
        client.write_all(&bulk).await.unwrap();
        let mut received = vec![0u8; bulk.len()];
        server.read_exact(&mut received).await.unwrap();
        // Small turns after it do not make it a request/response session.
        for _ in 0..10 {
            server.write_all(b"ok").await.unwrap();
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).await.unwrap();
            client.write_all(b"more").await.unwrap();
            let mut query = [0u8; 4];
            server.read_exact(&mut query).await.unwrap();
        }
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
        let (ending, transferred) = ended(task.await.unwrap());
        assert_eq!(ending, Ending::Closed);
        assert_eq!(transferred.upstream, (1 << 20) + 40);
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
        let (ending, _) = ended(forward(&proxy_client, &proxy_server, limits, &NoSink).await);
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
        let (ending, _) = ended(forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await);
        assert_eq!(ending, Ending::Aborted(Side::Client));
    }
    /// A pattern that does not repeat at any power-of-two period, so a misplaced, dropped
    /// or duplicated chunk shows.
    fn pattern(length: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..length)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect()
    }

    #[tokio::test]
    async fn bulk_flows_are_spliced_intact_both_ways() {
        let (proxy_client, client) = pair().await;
        let (server, proxy_server) = pair().await;
        let spliced_before = SPLICED_BYTES.load(Ordering::Relaxed);
        let task = tokio::spawn(async move {
            ended(forward(&proxy_client, &proxy_server, no_limits(), &NoSink).await)
        });
        let up = pattern(8 << 20, 1);
        let down = pattern(6 << 20, 2);
        // Each end writes and reads at once, so neither direction stalls the other.
        let exchange = |stream: TcpStream, send: Vec<u8>| async move {
            let (mut read, mut write) = stream.into_split();
            let writer = async move {
                write.write_all(&send).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let reader = async move {
                let mut received = Vec::new();
                read.read_to_end(&mut received).await.unwrap();
                received
            };
            tokio::join!(writer, reader).1
        };
        let (at_server, at_client) =
            tokio::join!(exchange(server, down.clone()), exchange(client, up.clone()));
        assert!(at_server == up, "upstream bytes differ");
        assert!(at_client == down, "downstream bytes differ");
        let (ending, transferred) = task.await.unwrap();
        assert_eq!(ending, Ending::Closed);
        assert_eq!(transferred.upstream, up.len() as u64);
        assert_eq!(transferred.downstream, down.len() as u64);
        let spliced = SPLICED_BYTES.load(Ordering::Relaxed) - spliced_before;
        assert!(
            spliced > (up.len() + down.len()) as u64 / 2,
            "only {spliced} bytes went through splice"
        );
    }

    #[tokio::test]
    async fn half_close_switches_to_the_fin_timeout() {
        let (proxy_client, mut client) = pair().await;
        let (_server, proxy_server) = pair().await;
        let limits = Limits {
            client: Some(Duration::from_secs(30)),
            server: Some(Duration::from_secs(30)),
            client_fin: Some(Duration::from_millis(150)),
            ..no_limits()
        };
        let task = tokio::spawn(async move {
            ended(forward(&proxy_client, &proxy_server, limits, &NoSink).await)
        });
        client.shutdown().await.unwrap();
        let shut = Instant::now();
        let (ending, _) = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the fin timeout did not end the session")
            .unwrap();
        assert_eq!(ending, Ending::TimedOut(Side::Client));
        let waited = shut.elapsed();
        assert!(
            waited >= Duration::from_millis(150),
            "ended after {waited:?}"
        );
    }

    #[tokio::test]
    async fn activity_postpones_the_timeout() {
        let (proxy_client, mut client) = pair().await;
        let (mut server, proxy_server) = pair().await;
        let limits = Limits {
            client: Some(Duration::from_millis(200)),
            server: Some(Duration::from_millis(200)),
            ..no_limits()
        };
        let started = Instant::now();
        let task = tokio::spawn(async move {
            ended(forward(&proxy_client, &proxy_server, limits, &NoSink).await)
        });
        // Traffic every 50 ms for 600 ms: three limits' worth, never idle for one.
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            server.read_exact(&mut byte).await.unwrap();
        }
        assert!(!task.is_finished(), "timed out despite traffic");
        let (ending, _) = task.await.unwrap();
        assert_eq!(ending, Ending::TimedOut(Side::Client));
        assert!(started.elapsed() >= Duration::from_millis(800));
    }
}
