//! `mode http`: HTTP/1.x between clients and servers, forwarded by one task per client.
//!
//! The client's task reads a request head, balances the request on its own (as HAProxy does
//! in its default keep-alive mode: persistence by `cookie` or `stick`, then the backend's
//! algorithm, which for `uri`, `url_param` and `hdr` hashes that part of the request), writes
//! the head to the server connection with the proxy's edits (hop-by-hop headers out,
//! `X-Forwarded-For` and `Connection` in, the persistence cookie hidden), relays the body as
//! it is framed, then does the same for the response. Heads are parsed into offsets of the
//! buffer they arrived in ([`switchyard_h1`]) and the lines kept are copied in runs, so a
//! request that needs no edit costs one copy of its head. The same task drives the server
//! connection: no task, channel or waker between the two sides, which is most of what a
//! request costs in user space here (see docs/performance.md).
//!
//! Server connections come from the backend's pool of idle keep-alive connections (the
//! most recently used first; a client connection's first request takes only one that has
//! already carried a second request, as HAProxy's default `http-reuse safe`), else are
//! opened with the same retries and redispatch as a TCP session; each goes back to the pool
//! as soon as its response is over. Each exchange is a boxed future holding its request
//! head, so that a connection waiting for its next request keeps ~0.5 KB of task state
//! rather than an exchange's 3 KB; within an exchange, the paths that end it early (error
//! pages, tunnels) are boxed too, so that their state does not enlarge every exchange.
//! A request on a reused connection that fails before any response goes again on a fresh
//! connection when that is safe: when writing it failed (nothing reached the server), or
//! when it is idempotent, carried no body beyond what was buffered, and its connection had
//! been idle for a second or more (where servers' keep-alive timeouts strike).
//!
//! Timeouts (`http-request`, `http-keep-alive`, `client`, `server`) are deadlines on the
//! coarse clock, on the thread's timer wheel (`crate::wheel`): a deadline moved later by the
//! next request costs no timer operation, and a limit is enforced up to ~10 ms late.
//!
//! `Upgrade` requests (WebSocket) that the server answers with `101` become a tunnel between
//! the two connections, bounded by `timeout tunnel` (else `timeout client`).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use smallvec::SmallVec;
use switchyard_config::{self as config, HttpReuse};
use switchyard_log::TerminationCause as Cause;
use switchyard_log::{ClientCookie, HttpLogRecord, ServerCookie, SessionState, TcpLogRecord};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::pool::{InUse, Proven};
use crate::rate::now_ms;
use crate::select::{Hint, Lease};
use crate::session::{connect_server, BackendSession, ConnectReport, Connected};
use crate::state::{Backend, Counters, Frontend, Process, Server, SessionGuard};
use crate::stick::StickKey;
use switchyard_h1::{self as h1, Framing, Head, Version};

/// A connection idle this long may meet the server's keep-alive timeout (Apache's and
/// Node's are 5 s) just as a request goes out on it: a safe request written on it goes
/// again if the server closes without answering. On connections in steady use a server
/// that closes has seen the request, and it is not repeated (HAProxy's default
/// `retry-on conn-failure`).
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Bytes read at a time (HAProxy's `tune.bufsize`).
const BUF_SIZE: usize = 16 * 1024;

/// How connections close after a response (`option http-keep-alive|http-server-close|
/// httpclose`), the strictest of the frontend's and the backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseMode {
    KeepAlive,
    ServerClose,
    Close,
}

impl CloseMode {
    pub fn of(options: &config::ProxyOptions) -> CloseMode {
        if options.httpclose {
            CloseMode::Close
        } else if options.http_server_close {
            CloseMode::ServerClose
        } else {
            CloseMode::KeepAlive
        }
    }
}

/// A frontend's HTTP settings.
#[derive(Debug)]
pub struct FrontendHttp {
    pub forwardfor: Option<config::ForwardFor>,
    pub close: CloseMode,
    pub httplog: bool,
    /// `option http-ignore-probes`.
    pub ignore_probes: bool,
    /// `max-session-srv-conns`.
    pub max_session_srv_conns: u32,
}

/// A backend's HTTP settings.
#[derive(Debug)]
pub struct BackendHttp {
    pub forwardfor: Option<config::ForwardFor>,
    pub close: CloseMode,
    pub cookie: Option<config::Cookie>,
    pub reuse: HttpReuse,
}

impl BackendHttp {
    pub fn new(proxy: &config::Proxy) -> BackendHttp {
        BackendHttp {
            forwardfor: proxy.options.forwardfor.clone(),
            close: CloseMode::of(&proxy.options),
            cookie: proxy.cookie.clone(),
            reuse: proxy.http_reuse,
        }
    }
}

/// A server connection kept by its client connection between requests (`http-reuse
/// never`): still counted as used, as HAProxy counts a connection attached to a session.
#[derive(Debug)]
struct Private {
    server: Arc<Server>,
    idle: Idle,
}

/// The server connections a client connection keeps for its own next requests (`http-reuse
/// never`), to any of its servers, up to `max-session-srv-conns` (HAProxy's session
/// connection list). Boxed, so that a client keeping none holds one word where a `Vec`
/// would hold three in every idle keep-alive connection's state.
#[derive(Debug, Default)]
struct PrivateConns(Option<Box<KeptConns>>);

#[derive(Debug, Default)]
struct KeptConns(Vec<Private>);

impl PrivateConns {
    /// An open connection to `server`, taken out of the list (the oldest, as HAProxy walks
    /// its list); closed ones met on the way are dropped.
    fn take_for(&mut self, server: &Arc<Server>) -> Option<Idle> {
        let kept = &mut self.0.as_mut()?.0;
        while let Some(index) = kept.iter().position(|p| Arc::ptr_eq(&p.server, server)) {
            let private = kept.remove(index);
            if private.idle.conn.is_open() {
                return Some(private.idle);
            }
        }
        None
    }

    /// Keeps `private` unless `max` connections are kept already, counting only those
    /// still open; HAProxy then closes the one going idle, as is done here by dropping it.
    fn keep(&mut self, private: Private, max: u32) {
        let kept = &mut self.0.get_or_insert_with(Box::default).0;
        if kept.len() >= max as usize {
            kept.retain(|p| p.idle.conn.is_open());
        }
        if kept.len() < max as usize {
            kept.push(private);
        }
    }
}

/// An idle connection to `server` for a request (see [`crate::pool::Pool::take`]). As in
/// HAProxy, a connection goes back to its server's pool as soon as a response is over, for
/// another request: a client that stays idle holds no server connection. Which requests
/// may take one is `http-reuse`'s: with `safe` (the default) not a client connection's
/// first request, since a client cannot know to retry a first request that a server's
/// close cuts off, and browsers do not; with `aggressive` only a connection that has
/// already been kept alive after a response and carried another.
///
/// With several threads, a connection this thread's reactor watches comes first; one
/// from another thread is moved over (registered here, as HAProxy takes an idle
/// connection over from another thread), or every event of the exchange would have to
/// cross threads: seen by that thread's reactor, then waking this task.
fn take_idle(server: &Server, first_request: bool, reuse: HttpReuse) -> Option<Idle> {
    let here = crate::workers::current();
    let needs = match (reuse, first_request) {
        (HttpReuse::Never, _) | (HttpReuse::Safe, true) => return None,
        (HttpReuse::Aggressive, true) => Proven::Yes,
        _ => Proven::Any,
    };
    loop {
        let (idle, in_use) = server.pool.take(needs, here)?;
        let Idle {
            mut conn,
            since,
            thread,
        } = idle;
        if thread != here {
            // A connection that cannot be moved is closed; the next one is tried.
            match conn.moved_here() {
                Ok(moved) => conn = moved,
                Err(_) => continue,
            }
        }
        conn.in_use = Some(in_use);
        return Some(Idle {
            conn,
            since,
            thread: here,
        });
    }
}

/// A keep-alive server connection between two requests.
type Idle = crate::pool::Idle<Peer>;

/// One side's socket and the bytes read from it not yet used.
#[derive(Debug)]
pub(crate) struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Exchanges (request and response) completed over this connection.
    served: u32,
    /// A server connection counts as used (`show servers conn`) while it carries an
    /// exchange.
    in_use: Option<InUse>,
    /// A server connection's place in the descriptor count, idle or not (a client's is its
    /// session's).
    _socket: Option<crate::pool::Descriptor>,
}

impl crate::pool::Reusable for Peer {
    fn is_open(&self) -> bool {
        Peer::is_open(self)
    }
    fn proven(&self) -> bool {
        Peer::proven(self)
    }
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            buf: Vec::new(),
            served: 0,
            in_use: None,
            _socket: None,
        }
    }

    /// Reads what is there (at least one byte, waiting for it); `Ok(0)` at the end.
    ///
    /// Through `AsyncRead` rather than `try_read`: a read that does not fill the buffer
    /// clears the socket's readiness there, so the next read waits for epoll instead of
    /// spending a `recvfrom` on `EAGAIN` (one per request otherwise).
    fn read_more(&mut self) -> impl Future<Output = io::Result<usize>> + '_ {
        std::future::poll_fn(move |cx| self.poll_read_more(cx))
    }

    /// Reads what the socket has into the buffer, growing it first if little room is left.
    /// Each poll makes a fresh `read_buf` future (it keeps nothing between polls), so that
    /// the futures waiting on a read are a reference, not `read_buf`'s state: they are part
    /// of every idle connection.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < BUF_SIZE / 4 {
            self.buf.reserve(BUF_SIZE);
        }
        std::pin::pin!(self.stream.read_buf(&mut self.buf)).poll(cx)
    }

    /// Waits until the socket has something to read (or is closed), then reads it, without
    /// holding a buffer meanwhile: an idle keep-alive connection keeps no memory for its
    /// next request.
    fn wait_readable(&mut self) -> impl Future<Output = io::Result<usize>> + '_ {
        std::future::poll_fn(move |cx| {
            if self.buf.is_empty() {
                self.buf = Vec::new();
                std::task::ready!(self.stream.poll_read_ready(cx))?;
            }
            let read = self.poll_read_more(cx);
            if read.is_pending() {
                // Readable, yet nothing came: waiting again, still without a buffer.
                self.release();
            }
            read
        })
    }

    /// Whether an idle connection is still usable: not closed by its server, and with
    /// nothing unexpected to read. Costs a system call only when the socket was reported
    /// readable since its last read.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The same connection, registered with this thread's reactor instead of the one it
    /// was registered with (another thread's).
    fn moved_here(self) -> io::Result<Peer> {
        let Peer {
            stream,
            buf,
            served,
            in_use,
            _socket,
        } = self;
        let stream = TcpStream::from_std(stream.into_std()?)?;
        Ok(Peer {
            stream,
            buf,
            served,
            in_use,
            _socket,
        })
    }

    /// Whether the peer has kept this connection open after a response and carried
    /// another exchange on it: HAProxy's "safe" connections, fit for a client's first request.
    fn proven(&self) -> bool {
        self.served >= 2
    }

    /// Gives the buffer's memory back when nothing is left in it (between requests).
    fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::future::poll_fn(|cx| stream.poll_write_ready(cx)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The connection's timeouts, as deadlines on the coarse clock (ms), on this thread's
/// timer wheel.
#[derive(Default)]
struct Deadlines {
    alarm: crate::wheel::Alarm,
}

impl Deadlines {
    /// `future`'s output, or `None` once the coarse clock has passed `deadline` (ms).
    fn within<F: Future>(&mut self, deadline: Option<u64>, future: F) -> Within<'_, F> {
        Within {
            deadlines: self,
            deadline,
            future,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Deadlines::within`]'s future. Written out rather than `async`: an `async fn` keeps
    /// its argument future twice in its state (the argument and the pinned local), and the
    /// wait for a keep-alive connection's next request is part of every idle connection.
    struct Within<'d, F> {
        deadlines: &'d mut Deadlines,
        deadline: Option<u64>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        this.deadlines
            .alarm
            .poll_deadline(deadline, cx)
            .map(|()| None)
    }
}

/// The deadline `limit` from now on the coarse clock, if there is a limit.
fn deadline(limit: Option<Duration>) -> Option<u64> {
    limit.map(|limit| now_ms().saturating_add(millis(limit)))
}

/// Whole milliseconds, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, saturating at ~49 days.
fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// One client connection being served.
pub struct Connection {
    pub process: Arc<Process>,
    /// Its registration: frontend, addresses, kill order, `show sess`.
    pub session: SessionGuard,
    pub tls: bool,
}

impl Connection {
    fn frontend(&self) -> &Arc<Frontend> {
        &self.session.info.frontend
    }

    fn client_addr(&self) -> SocketAddr {
        self.session.info.client
    }

    fn local_addr(&self) -> SocketAddr {
        self.session.info.local
    }
}

/// Serves HTTP/1.x on `client` until it closes, times out or is shut down.
///
/// Not an `async fn`: those keep their arguments twice in their state (as arguments and as
/// the locals they are moved into), and this state is what every idle keep-alive connection
/// holds. The captures of an `async` block are kept once.
pub fn serve(conn: &Connection, client: TcpStream) -> impl Future<Output = ()> + '_ {
    let frontend = conn.frontend();
    let mut client = frontend.http.as_ref().map(|settings| {
        let timeouts = frontend.timeouts;
        let backend = frontend.backend.as_ref();
        let backend_http = backend.and_then(|b| b.http.as_ref());
        Client {
            conn,
            peer: Peer::new(client),
            private: PrivateConns::default(),
            // Headers of a request must arrive within `timeout http-request` (else `timeout
            // client`), counted from the end of the previous response (or the start).
            head_limit_ms: timeouts.http_request.or(timeouts.client).map(millis_u32),
            keep_alive_ms: timeouts
                .http_keep_alive
                .or(timeouts.http_request)
                .map(millis_u32),
            close: settings
                .close
                .max(backend_http.map_or(CloseMode::KeepAlive, |b| b.close)),
            deadlines: Deadlines::default(),
        }
    });
    async move {
        // Borrowed, not moved out: a move would keep a second copy in the state.
        let Some(client) = &mut client else {
            return;
        };
        let kill = &client.conn.session.info.kill;
        Killable {
            kill,
            work: client.run(),
        }
        .await;
    }
}

pin_project_lite::pin_project! {
    /// A connection's work, cut short by its kill order (`shutdown session`, server kill
    /// orders, hard-stop). The order is looked at on every wake-up of the task, as the TCP
    /// relay does: a load and, unchanged, the waker already registered, cheaper than a waker
    /// of its own that every idle connection would keep.
    struct Killable<'k, F> {
        kill: &'k crate::state::KillSwitch,
        #[pin]
        work: F,
    }
}

impl<F: Future<Output = ()>> Future for Killable<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.work.poll(cx).is_ready() || this.kill.poll_killed(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The client side of a connection and what lasts between its requests.
struct Client<'c> {
    conn: &'c Connection,
    peer: Peer,
    /// `http-reuse never`: the server connections this client keeps for itself.
    private: PrivateConns,
    /// The limits in milliseconds, half the room of a `Duration` in every idle connection
    /// (HAProxy's timeouts are 32-bit milliseconds too).
    head_limit_ms: Option<u32>,
    keep_alive_ms: Option<u32>,
    close: CloseMode,
    deadlines: Deadlines,
}

/// Which request a head is awaited for.
#[derive(Debug, Clone, Copy)]
enum Awaited {
    /// The connection's first, awaited since `opened`.
    First { opened: Instant },
    /// One after a response.
    Next,
}

/// What became of a request: whether the client connection goes on to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Request,
    Close,
}

/// How waiting for a server's response head ended, short of a response.
enum NoResponse {
    TimedOut,
    /// Closed or failed before any byte of a response.
    Failed(io::Error),
    Invalid(h1::Error),
}

impl<'c> Client<'c> {
    /// Serves requests until the connection ends. Not an `async fn`, for the reason given
    /// at `read_head`.
    #[allow(clippy::manual_async_fn)]
    fn run(&mut self) -> impl Future<Output = ()> + use<'_, 'c> {
        async move {
            let mut awaited = Awaited::First {
                opened: Instant::now(),
            };
            loop {
                let Some((head, began)) = self.read_head(awaited).await else {
                    return;
                };
                awaited = Awaited::Next;
                // Boxed with the head: an exchange's state is ~2.8 KB and a head 280 bytes,
                // and the connection's task would keep that size while it waits for the
                // next request (one allocation per request).
                let client = &mut *self;
                let next = Box::pin(async move { client.exchange(&head, began).await }).await;
                self.peer.served = self.peer.served.saturating_add(1);
                if next == Next::Close {
                    return;
                }
            }
        }
    }

    /// The next request's head, with when its first byte was seen if the frontend logs
    /// requests (HAProxy's `TR` runs from there to the head's end); `None` when the
    /// connection ends instead (closed, timed out, or a bad request answered with
    /// `400`/`408`).
    ///
    /// Not an `async fn`, which would keep its arguments twice: this is the state of every
    /// connection waiting for its next request.
    fn read_head<'s>(
        &'s mut self,
        awaited: Awaited,
    ) -> impl Future<Output = Option<(Head, Option<Instant>)>> + use<'s, 'c> {
        let logging = logs_requests(self.conn.frontend());
        let idle_start = now_ms();
        let ms = |limit: Option<u32>| limit.map(|l| idle_start.saturating_add(u64::from(l)));
        let head_deadline = ms(self.head_limit_ms);
        // Between requests `timeout http-keep-alive` applies until the first byte.
        let idle_deadline = match awaited {
            Awaited::First { .. } => head_deadline,
            Awaited::Next => ms(self.keep_alive_ms)
                .into_iter()
                .chain(head_deadline)
                .min(),
        };
        async move {
            // Pipelined bytes already here began this request now.
            let mut began = (logging && !self.peer.buf.is_empty()).then(Instant::now);
            loop {
                if !self.peer.buf.is_empty() {
                    // The parse result is not kept across the reply's write: it would take
                    // room in every idle connection's state.
                    let bad = match h1::parse_request(&self.peer.buf) {
                        Ok(Some(head)) => return Some((head, began)),
                        Ok(None) => false,
                        Err(error) => {
                            tracing::debug!(frontend = %self.conn.frontend().name, client = %self.conn.client_addr(), %error, "bad request");
                            true
                        }
                    };
                    if bad {
                        self.log_refused(400, Cause::Proxy, began);
                        Box::pin(self.local_reply(400, None)).await;
                        return None;
                    }
                }
                let waiting = self.peer.buf.is_empty();
                let limit = if waiting {
                    idle_deadline
                } else {
                    head_deadline
                };
                let read = if waiting {
                    self.deadlines
                        .within(limit, self.peer.wait_readable())
                        .await
                } else {
                    self.deadlines.within(limit, self.peer.read_more()).await
                };
                match read {
                    // Closed (or reset) before the head's end: HAProxy's 400, `CR--`.
                    Some(Ok(0)) | Some(Err(_)) => {
                        Box::pin(self.refuse_unfinished(400, Cause::ClientAbort, awaited, began))
                            .await;
                        return None;
                    }
                    Some(Ok(_)) => {
                        if logging && began.is_none() {
                            began = Some(Instant::now());
                        }
                    }
                    // Not finished in time: HAProxy's 408, `cR--`.
                    None => {
                        Box::pin(self.refuse_unfinished(408, Cause::ClientTimeout, awaited, began))
                            .await;
                        return None;
                    }
                }
            }
        }
    }

    /// Ends a connection whose request head did not come whole (`status` 400: closed
    /// first; 408: timed out), as HAProxy does: a head cut short is answered, counted and
    /// logged. So is a connection that never sent a byte, except that it is not logged
    /// with `option dontlognull`, and is only closed with `option http-ignore-probes`
    /// (browsers open connections ahead of need). Between requests, a client that sent
    /// nothing is only closed.
    async fn refuse_unfinished(
        &mut self,
        status: u16,
        cause: Cause,
        awaited: Awaited,
        mut began: Option<Instant>,
    ) {
        if self.peer.buf.is_empty() {
            let Awaited::First { opened } = awaited else {
                return;
            };
            let frontend = self.conn.frontend();
            if frontend
                .http
                .as_ref()
                .is_some_and(|http| http.ignore_probes)
            {
                return;
            }
            began = (logs_requests(frontend) && !frontend.log.dontlognull).then_some(opened);
        }
        self.log_refused(status, cause, began);
        self.local_reply(status, None).await;
    }

    /// Counts a request refused while its head was read, and writes its `option httplog`
    /// line as HAProxy
    /// writes it: no server (`<NOSRV>`), no timers but the total since the request's first
    /// byte, `<BADREQ>` for the request line. `began` is `None` unless the frontend logs.
    fn log_refused(&self, status: u16, cause: Cause, began: Option<Instant>) {
        let frontend = self.conn.frontend();
        // HAProxy counts a refused head as a request, and an invalid one.
        frontend.counters.requests.fetch_add(1, Ordering::Relaxed);
        frontend.counters.request_rate.add(now_ms());
        frontend
            .counters
            .request_errors
            .fetch_add(1, Ordering::Relaxed);
        let (Some(logger), Some(began)) = (frontend.log.logger.as_ref(), began) else {
            return;
        };
        let since = began.elapsed();
        let date = SystemTime::now()
            .checked_sub(since)
            .unwrap_or_else(SystemTime::now);
        let record = HttpLogRecord {
            session: TcpLogRecord {
                frontend_ssl: self.conn.tls,
                backend: Some(frontend.name.as_str()),
                termination: cause,
                state: SessionState::Request,
                actconn: self.conn.process.active.load(Ordering::Relaxed),
                feconn: frontend.counters.current.load(Ordering::Relaxed),
                ..TcpLogRecord::new(self.conn.client_addr(), date, &frontend.name)
            },
            tr_request: None,
            tr_response: None,
            ta: millis(since),
            status: Some(status),
            client_cookie: ClientCookie::NotConfigured,
            server_cookie: ServerCookie::Untouched,
            request_line: "<BADREQ>",
        };
        logger.log(
            switchyard_config::Level::Info,
            &switchyard_log::format_httplog(&record),
        );
    }

    /// Serves one request whose head is at the start of the client's buffer.
    async fn exchange(&mut self, head: &Head, began: Option<Instant>) -> Next {
        let conn = self.conn;
        let frontend = conn.frontend();
        frontend.counters.requests.fetch_add(1, Ordering::Relaxed);
        frontend.counters.request_rate.add(now_ms());
        let buf = &self.peer.buf;
        let mut exchange = Exchange {
            conn,
            backend: frontend.backend.clone(),
            logged: logs_requests(frontend).then(|| {
                let now = Instant::now();
                let began = began.unwrap_or(now);
                let head_time = now.saturating_duration_since(began);
                Logged {
                    date: SystemTime::now()
                        .checked_sub(head_time)
                        .unwrap_or_else(SystemTime::now),
                    started: began,
                    head_time,
                    request_line: String::from_utf8_lossy(head.start_line_text(buf)).into_owned(),
                }
            }),
            report: ConnectReport::default(),
            server: None,
            response_time: None,
            status: None,
            cause: Cause::Normal,
            state: SessionState::Closed,
            client_cookie: ClientCookie::NotConfigured,
            server_cookie: ServerCookie::Untouched,
            bytes_out: 0,
            lease: None,
            backend_session: None,
            done: false,
        };
        exchange.count_in(head.len as u64);
        let framing = match h1::request_framing(head) {
            Ok(framing) => framing,
            Err(error) => return Box::pin(self.refuse(exchange, error)).await,
        };
        let semantics = &head.semantics;
        let method = &buf[head.method.range()];
        let to_head = method == b"HEAD";
        let is_post = method == b"POST";
        let replayable = idempotent(method);
        let client_http11 = head.version == Version::Http11;
        // A request framed ambiguously closes its connection after it (RFC 9112 section
        // 6.1): it is forwarded with one framing, but a hop before us may have seen another.
        let client_keep_alive = !semantics.close
            && (client_http11 || semantics.keep_alive)
            && !head.closes_after()
            && self.close != CloseMode::Close;
        let Some(backend) = exchange.backend.clone() else {
            exchange.cause = Cause::Proxy;
            exchange.state = SessionState::Request;
            return Box::pin(self.error_page(
                503,
                exchange,
                framing == Framing::Empty && client_keep_alive,
            ))
            .await;
        };
        let Some(settings) = backend.http.as_ref() else {
            exchange.cause = Cause::Internal;
            exchange.state = SessionState::Request;
            return Box::pin(self.error_page(500, exchange, false)).await;
        };
        exchange.backend_session = Some(BackendSession::start(&backend));
        let close = self.close.max(settings.close);

        // Persistence by cookie, then what the algorithm and stick rules take from the request.
        let servers = backend.servers.load_full();
        let persistent = settings
            .cookie
            .as_ref()
            .map(|cookie| persistence(cookie, head, buf, &servers));
        let mut prefer = None;
        if let Some((state, server)) = &persistent {
            exchange.client_cookie = *state;
            prefer = server.clone();
        }
        let client_had = prefer.clone();
        let key = balance_key(&backend.balance, head, buf);
        let stick = |sample: &Option<config::StickSample>| {
            let table = backend.stick.as_ref()?;
            stick_key(
                sample.as_ref()?,
                head,
                buf,
                conn.client_addr().ip(),
                table.settings.key_len,
            )
        };
        let (stick_match, stick_store) = match backend.stick.as_ref() {
            Some(table) => (
                stick(&table.rules.match_on),
                stick(&table.rules.store_request),
            ),
            None => (None, None),
        };
        let upgrade = semantics.upgrade && semantics.upgrade_token;
        // A client waiting for `100 Continue` before its body gets it from here; the server
        // then gets the body without being asked.
        let expects_continue = framing != Framing::Empty
            && client_http11
            && head
                .get(buf, "expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));

        // The request as the server gets it.
        let mut out = Vec::with_capacity(head.len + 128);
        let cookie_edit = settings
            .cookie
            .as_ref()
            .and_then(|cookie| request_cookie_edit(cookie, head, buf));
        let forwardfor = frontend
            .http
            .as_ref()
            .and_then(|f| f.forwardfor.as_ref())
            .or(settings.forwardfor.as_ref());
        let add_forwardfor = forwardfor.and_then(|forward| {
            let excepted = forward
                .except
                .is_some_and(|(net, len)| in_network(conn.client_addr().ip(), net, len));
            let theirs = forward.if_none && head.get(buf, &forward.header).is_some();
            (!excepted && !theirs).then_some(forward.header.as_str())
        });
        let drop_length = semantics.transfer_encoding;
        h1::copy_head(&mut out, buf, head, |field| {
            let name = &buf[field.name.range()];
            !(head.hop_by_hop(buf, field, upgrade)
                || (drop_length && name.eq_ignore_ascii_case(b"content-length"))
                || (cookie_edit.is_some() && name.eq_ignore_ascii_case(b"cookie"))
                || (expects_continue && name.eq_ignore_ascii_case(b"expect")))
        });
        if let Some(Some(value)) = &cookie_edit {
            push_line(&mut out, "Cookie", value.as_bytes());
        }
        if upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        } else if close != CloseMode::KeepAlive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if !client_http11 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        if let Some(name) = add_forwardfor {
            push_line(
                &mut out,
                name,
                client_text(conn.client_addr().ip()).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");

        // What of the body is already here goes with the head.
        let mut body = Body::new(framing);
        let buffered = match body.take(&buf[head.len..]) {
            Ok(n) => n,
            Err(error) => return Box::pin(self.refuse(exchange, error)).await,
        };
        out.extend_from_slice(&buf[head.len..head.len + buffered]);
        exchange.count_in(buffered as u64);
        self.peer.buf.drain(..head.len + buffered);
        let whole_request_buffered = body.done();

        if expects_continue
            && !whole_request_buffered
            && write_all(&self.peer.stream, b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            exchange.cause = Cause::ClientAbort;
            exchange.state = SessionState::Request;
            exchange.finish();
            return Next::Close;
        }

        let hint = Hint {
            client: Some(conn.client_addr().ip()),
            key: key.as_deref(),
            prefer: prefer.as_ref(),
            stick_match: stick_match.as_ref(),
            stick_store: stick_store.as_ref(),
        };
        let mut fresh_only = false;
        let (mut server_conn, response, lease) = loop {
            let mut report = std::mem::take(&mut exchange.report);
            let first_request = self.peer.served == 0;
            let mut private = std::mem::take(&mut self.private);
            let mut reuse = |server: &Arc<Server>| {
                if fresh_only || close != CloseMode::KeepAlive {
                    return None;
                }
                if settings.reuse == HttpReuse::Never {
                    // One of the client's own connections, if it has one to this server.
                    return private.take_for(server);
                }
                take_idle(server, first_request, settings.reuse)
            };
            let connected = connect_server(
                &backend,
                hint,
                (conn.client_addr(), conn.local_addr()),
                std::future::pending,
                Some(&mut reuse),
                &mut report,
            )
            .await;
            // The client's other connections stay for its later requests.
            self.private = private;
            exchange.report = report;
            let Some((connection, lease)) = connected else {
                let failed = exchange.report.failure.unwrap_or(crate::session::Failed {
                    cause: Cause::Internal,
                    state: SessionState::Connect,
                });
                exchange.server = exchange.report.server.take();
                exchange.cause = failed.cause;
                exchange.state = failed.state;
                // No server, a full or timed-out queue, every attempt refused: 503.
                return Box::pin(self.error_page(
                    503,
                    exchange,
                    whole_request_buffered && client_keep_alive,
                ))
                .await;
            };
            exchange.server = Some(Arc::clone(&lease.server));
            let (mut server_conn, idle_since) = match connection {
                Connected::Reused(idle) => (idle.conn, Some(idle.since)),
                Connected::Fresh(stream, socket) => {
                    let mut conn = Peer::new(stream);
                    conn.in_use = Some(lease.server.pool.fresh());
                    conn._socket = Some(socket);
                    (conn, None)
                }
            };
            let reused = idle_since.is_some();
            let sent_at = (exchange.logged.is_some() || reused).then(Instant::now);
            let server_timeout = backend.timeouts.server;
            // The head, with what was buffered of the body.
            let written = self
                .deadlines
                .within(
                    deadline(server_timeout),
                    write_all(&server_conn.stream, &out),
                )
                .await;
            let unsent = match written {
                Some(Ok(())) => false,
                Some(Err(error)) => {
                    tracing::debug!(server = %lease.server.name, %error, reused, "HTTP request not written");
                    true
                }
                None => {
                    exchange.cause = Cause::ServerTimeout;
                    exchange.state = SessionState::Request;
                    return Box::pin(self.error_page(504, exchange, false)).await;
                }
            };
            if !unsent && !body.done() {
                let relayed = relay(
                    &mut self.deadlines,
                    &mut self.peer,
                    &server_conn.stream,
                    &mut body,
                    false,
                    (frontend.timeouts.client, server_timeout),
                )
                .await;
                exchange.count_in(relayed.bytes);
                if let Err(failure) = relayed.result {
                    // The client stopped sending its body, or the server taking it.
                    let (cause, status) = match failure {
                        Relay::ReadTimeout => (Cause::ClientTimeout, Some(408)),
                        Relay::ReadClosed | Relay::ReadError | Relay::Framing => {
                            (Cause::ClientAbort, None)
                        }
                        Relay::WriteTimeout => (Cause::ServerTimeout, Some(504)),
                        Relay::WriteError => (Cause::ServerAbort, Some(502)),
                    };
                    exchange.cause = cause;
                    exchange.state = SessionState::Data;
                    exchange.lease = Some(lease);
                    return match status {
                        Some(status) => Box::pin(self.error_page(status, exchange, false)).await,
                        None => {
                            exchange.finish();
                            Next::Close
                        }
                    };
                }
            }
            let result = if unsent {
                Err(NoResponse::Failed(io::ErrorKind::BrokenPipe.into()))
            } else {
                self.response_head(&mut server_conn, server_timeout, client_http11)
                    .await
            };
            match result {
                Ok(response) => {
                    exchange.response_time = sent_at
                        .filter(|_| exchange.logged.is_some())
                        .map(|sent| sent.elapsed());
                    break (server_conn, response, lease);
                }
                Err(failure @ (NoResponse::TimedOut | NoResponse::Invalid(_))) => {
                    let cause = match failure {
                        NoResponse::Invalid(error) => {
                            tracing::debug!(server = %lease.server.name, %error, "invalid response");
                            Cause::ServerAbort
                        }
                        _ => Cause::ServerTimeout,
                    };
                    exchange.lease = Some(lease);
                    return Box::pin(self.no_response(exchange, &backend, cause, false)).await;
                }
                Err(NoResponse::Failed(error)) => {
                    tracing::debug!(server = %lease.server.name, %error, reused, "HTTP request failed");
                    // A reused connection the server had closed: a request that never went
                    // out goes again, whatever its method; one that did, only if it is safe,
                    // was all in one piece and its connection had been idle long.
                    let idle_long = idle_since.zip(sent_at).is_some_and(|(since, sent)| {
                        sent.saturating_duration_since(since) >= REPLAY_AFTER_IDLE
                    });
                    let again = reused
                        && whole_request_buffered
                        && (unsent || (replayable && idle_long))
                        && exchange.report.retries < backend.retries.max(1);
                    if again {
                        exchange.report.retries += 1;
                        backend.counters.retries.fetch_add(1, Ordering::Relaxed);
                        fresh_only = true;
                        continue;
                    }
                    exchange.lease = Some(lease);
                    let keep = body.done() && client_keep_alive;
                    return Box::pin(self.no_response(
                        exchange,
                        &backend,
                        Cause::ServerAbort,
                        keep,
                    ))
                    .await;
                }
            }
        };
        let server = Arc::clone(&lease.server);
        exchange.lease = Some(lease);
        let status = response.status;
        exchange.status = Some(status);
        count_response(frontend, Some(&backend), Some(&server), status);

        if status == 101 && upgrade {
            return Box::pin(self.tunnel(server_conn, exchange, &backend)).await;
        }
        let framing = match h1::response_framing(&response, to_head) {
            Ok(framing) if status != 101 => framing,
            result => {
                let error = result
                    .err()
                    .unwrap_or(h1::Error::Malformed("101 without upgrade"));
                tracing::debug!(server = %server.name, %error, "invalid response");
                return Box::pin(self.no_response(exchange, &backend, Cause::ServerAbort, false))
                    .await;
            }
        };
        let sbuf = &server_conn.buf;
        if let Some(table) = backend.stick.as_ref() {
            if let Some(name) = table.rules.store_response_cookie.as_deref() {
                if let Some(value) = response_cookie(&response, sbuf, name) {
                    table.store(&StickKey::text(value, table.settings.key_len), &server.name);
                }
            }
        }
        let cookie_edit = settings.cookie.as_ref().map(|cookie| {
            set_cookie_edit(
                cookie,
                &response,
                sbuf,
                &server,
                client_had.as_ref(),
                is_post,
            )
        });
        if let Some(edit) = &cookie_edit {
            exchange.server_cookie = edit.verdict;
        }
        let rs = &response.semantics;
        let server_closes = rs.close || (response.version == Version::Http10 && !rs.keep_alive);
        let reusable = close == CloseMode::KeepAlive
            && !server_closes
            && !response.closes_after()
            && framing != Framing::UntilClose;
        // HTTP/1.0 clients do not take chunks (RFC 9112 section 6.1): theirs is decoded and
        // delimited by the close.
        let dechunk = !client_http11 && framing == Framing::Chunked;
        let client_continues =
            client_keep_alive && framing != Framing::UntilClose && !dechunk && body.done();

        let mut out = Vec::with_capacity(response.len + 64);
        let drop_length = rs.transfer_encoding;
        h1::copy_head(&mut out, sbuf, &response, |field| {
            let name = &sbuf[field.name.range()];
            !(response.hop_by_hop(sbuf, field, false)
                || (drop_length && name.eq_ignore_ascii_case(b"content-length"))
                || (dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
                || cookie_edit.as_ref().is_some_and(|edit| edit.drops(field)))
        });
        if let Some(edit) = &cookie_edit {
            for (name, value) in &edit.add {
                push_line(&mut out, name, value.as_bytes());
            }
        }
        if !client_continues {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if !client_http11 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let mut response_body = Body::new(framing);
        let buffered = match response_body.take_into(&sbuf[response.len..], dechunk, &mut out) {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(server = %server.name, %error, "invalid response body");
                exchange.cause = Cause::ServerAbort;
                exchange.state = SessionState::Data;
                return Box::pin(self.error_page(502, exchange, false)).await;
            }
        };
        exchange.count_out(out.len() as u64);
        let response_len = response.len;
        drop(response);
        server_conn.buf.drain(..response_len + buffered);
        // A response that came whole frees its server connection before it goes to the
        // client: another request can have it at once, and a client that reads the response
        // and then asks `show servers conn` finds it idle, as HAProxy shows it.
        let mut unfinished = Some(server_conn);
        if response_body.done() {
            if let Some(conn) = unfinished.take() {
                self.release_server_conn(settings.reuse, &server, conn, reusable);
            }
        }
        let written = self
            .deadlines
            .within(
                deadline(frontend.timeouts.client),
                write_all(&self.peer.stream, &out),
            )
            .await;
        drop(out);
        let failed = match written {
            Some(Ok(())) => None,
            Some(Err(_)) => Some(Cause::ClientAbort),
            None => Some(Cause::ClientTimeout),
        };
        if let Some(cause) = failed {
            exchange.cause = cause;
            exchange.state = SessionState::Data;
            exchange.finish();
            return Next::Close;
        }
        if let Some(mut server_conn) = unfinished {
            let relayed = relay(
                &mut self.deadlines,
                &mut server_conn,
                &self.peer.stream,
                &mut response_body,
                dechunk,
                (backend.timeouts.server, frontend.timeouts.client),
            )
            .await;
            exchange.count_out(relayed.bytes);
            if let Err(failure) = relayed.result {
                exchange.cause = match failure {
                    Relay::ReadTimeout => Cause::ServerTimeout,
                    Relay::ReadClosed | Relay::ReadError | Relay::Framing => Cause::ServerAbort,
                    Relay::WriteTimeout => Cause::ClientTimeout,
                    Relay::WriteError => Cause::ClientAbort,
                };
                exchange.state = SessionState::Data;
                exchange.finish();
                return Next::Close;
            }
            self.release_server_conn(settings.reuse, &server, server_conn, reusable);
        }
        exchange.finish();
        if client_continues {
            Next::Request
        } else {
            Next::Close
        }
    }

    /// A server connection whose response is over: kept by this client (`http-reuse
    /// never`) or offered to the server's pool if `reusable` and nothing follows the
    /// response (bytes after it are a broken server); closed otherwise.
    fn release_server_conn(
        &mut self,
        reuse: HttpReuse,
        server: &Arc<Server>,
        mut conn: Peer,
        reusable: bool,
    ) {
        if !reusable || !conn.buf.is_empty() {
            return;
        }
        conn.release();
        conn.served = conn.served.saturating_add(1);
        let here = crate::workers::current();
        if reuse == HttpReuse::Never {
            let max = self
                .conn
                .frontend()
                .http
                .as_ref()
                .map_or(0, |http| http.max_session_srv_conns);
            let private = Private {
                server: Arc::clone(server),
                idle: Idle {
                    conn,
                    since: Instant::now(),
                    thread: here,
                },
            };
            self.private.keep(private, max);
        } else if let Some(in_use) = conn.in_use.take() {
            // Refused (the server has all the connections it needs): closed here.
            let _ = server.pool.put(conn, in_use, here);
        }
    }

    /// The server's response head, after passing any interim (`1xx` other than `101`)
    /// responses on to an HTTP/1.1 client.
    async fn response_head(
        &mut self,
        server: &mut Peer,
        limit: Option<Duration>,
        client_http11: bool,
    ) -> Result<Head, NoResponse> {
        let mut seen_any = false;
        loop {
            if !server.buf.is_empty() {
                // The head is not kept across the write, so that it takes no room in this
                // future while the interim response goes out.
                let interim = match h1::parse_response(&server.buf) {
                    Ok(Some(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                        // Interim heads follow the final head's rules: hop-by-hop
                        // fields stay on this hop, line ends go on as CRLF.
                        let mut interim = Vec::new();
                        if client_http11 {
                            let sbuf = &server.buf;
                            interim.reserve(head.len + 2);
                            h1::copy_head(&mut interim, sbuf, &head, |field| {
                                !head.hop_by_hop(sbuf, field, false)
                            });
                            interim.extend_from_slice(b"\r\n");
                        }
                        server.buf.drain(..head.len);
                        seen_any = true;
                        Some(interim)
                    }
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => None,
                    Err(error) => return Err(NoResponse::Invalid(error)),
                };
                if let Some(interim) = interim {
                    if !interim.is_empty() {
                        let written = self
                            .deadlines
                            .within(
                                deadline(self.conn.frontend().timeouts.client),
                                write_all(&self.peer.stream, &interim),
                            )
                            .await;
                        if !matches!(written, Some(Ok(()))) {
                            return Err(NoResponse::Failed(io::ErrorKind::BrokenPipe.into()));
                        }
                    }
                    continue;
                }
            }
            match self
                .deadlines
                .within(deadline(limit), server.read_more())
                .await
            {
                None => return Err(NoResponse::TimedOut),
                Some(Ok(0)) if server.buf.is_empty() && !seen_any => {
                    return Err(NoResponse::Failed(io::ErrorKind::UnexpectedEof.into()))
                }
                Some(Ok(0)) => {
                    return Err(NoResponse::Invalid(h1::Error::Malformed(
                        "response cut short",
                    )))
                }
                Some(Ok(_)) => {}
                Some(Err(error)) if server.buf.is_empty() && !seen_any => {
                    return Err(NoResponse::Failed(error))
                }
                Some(Err(_)) => {
                    return Err(NoResponse::Invalid(h1::Error::Malformed(
                        "response cut short",
                    )))
                }
            }
        }
    }

    /// The server switched protocols: its `101` goes to the client as it is, then bytes flow
    /// both ways until either side closes or `timeout tunnel` (else `timeout client`) ends
    /// the whole of it.
    async fn tunnel(
        &mut self,
        mut server: Peer,
        mut exchange: Exchange<'_>,
        backend: &Backend,
    ) -> Next {
        let limit = backend
            .timeouts
            .tunnel
            .or(self.conn.frontend().timeouts.client)
            .unwrap_or(Duration::from_secs(3600));
        exchange.count_out(server.buf.len() as u64);
        let to_client = std::mem::take(&mut server.buf);
        let to_server = std::mem::take(&mut self.peer.buf);
        exchange.count_in(to_server.len() as u64);
        exchange.finish();
        let relay = async {
            write_all(&self.peer.stream, &to_client).await?;
            write_all(&server.stream, &to_server).await?;
            tokio::io::copy_bidirectional(&mut self.peer.stream, &mut server.stream).await
        };
        let _ = tokio::time::timeout(limit, relay).await;
        Next::Close
    }

    /// A page of Switchyard's own for an exchange that got no response from a server;
    /// `keep`: the client connection can go on (the request was read whole).
    async fn error_page(&mut self, status: u16, mut exchange: Exchange<'_>, keep: bool) -> Next {
        let keep = keep && self.close != CloseMode::Close;
        let page = error_page(status, keep);
        exchange.own_page(status, page.len());
        let written = self
            .deadlines
            .within(
                deadline(self.conn.frontend().timeouts.client),
                write_all(&self.peer.stream, &page),
            )
            .await;
        exchange.finish();
        if keep && matches!(written, Some(Ok(()))) {
            Next::Request
        } else {
            Next::Close
        }
    }

    /// `504` (the server timed out) or `502` for a request whose response did not come or
    /// cannot be relayed, counted against the leased server.
    async fn no_response(
        &mut self,
        mut exchange: Exchange<'_>,
        backend: &Backend,
        cause: Cause,
        keep: bool,
    ) -> Next {
        if let Some(lease) = &exchange.lease {
            count_response_error(&lease.server, backend);
        }
        let status = if cause == Cause::ServerTimeout {
            504
        } else {
            502
        };
        exchange.cause = cause;
        exchange.state = SessionState::Headers;
        self.error_page(status, exchange, keep).await
    }

    /// `400` for a request that cannot be forwarded as it is framed; the connection closes.
    async fn refuse(&mut self, mut exchange: Exchange<'_>, error: h1::Error) -> Next {
        tracing::debug!(frontend = %self.conn.frontend().name, client = %self.conn.client_addr(), %error, "bad request");
        self.conn
            .frontend()
            .counters
            .request_errors
            .fetch_add(1, Ordering::Relaxed);
        exchange.cause = Cause::Proxy;
        exchange.state = SessionState::Request;
        self.local_reply(400, Some(&mut exchange)).await;
        Next::Close
    }

    /// `400`/`408` for a request that could not be read, then the connection closes.
    async fn local_reply(&mut self, status: u16, exchange: Option<&mut Exchange<'_>>) {
        let page = error_page(status, false);
        match exchange {
            Some(exchange) => {
                exchange.own_page(status, page.len());
                exchange.finish();
            }
            None => count_response(self.conn.frontend(), None, None, status),
        }
        let _ = self
            .deadlines
            .within(
                deadline(Some(Duration::from_secs(1))),
                write_all(&self.peer.stream, &page),
            )
            .await;
    }
}

/// A body on its way: how much of it is left.
enum Body {
    Done,
    Length(u64),
    Chunked(h1::ChunkScanner),
    UntilClose,
}

impl Body {
    fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(h1::ChunkScanner::default()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many of `bytes` (the next ones read) belong to the body.
    fn take(&mut self, bytes: &[u8]) -> Result<usize, h1::Error> {
        let taken = match self {
            Body::Done => 0,
            Body::Length(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                n
            }
            Body::Chunked(scanner) => {
                let n = scanner.scan(bytes)?;
                if scanner.done() {
                    *self = Body::Done;
                }
                n
            }
            Body::UntilClose => bytes.len(),
        };
        Ok(taken)
    }

    /// As [`Body::take`], appending to `out` what goes on: the bytes taken, or with
    /// `decode` the data of a chunked body's chunks.
    fn take_into(
        &mut self,
        bytes: &[u8],
        decode: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, h1::Error> {
        if let (true, Body::Chunked(scanner)) = (decode, &mut *self) {
            let taken = scanner.scan_into(bytes, out)?;
            if scanner.done() {
                *self = Body::Done;
            }
            return Ok(taken);
        }
        let taken = self.take(bytes)?;
        out.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }
}

/// Why relaying a body stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    ReadTimeout,
    /// The sender closed before the body's end.
    ReadClosed,
    ReadError,
    /// The body's framing was broken.
    Framing,
    WriteTimeout,
    WriteError,
}

struct Relayed {
    bytes: u64,
    result: Result<(), Relay>,
}

/// Relays the rest of `body` from `from` to `to`, with `decode` the chunks' data only;
/// `limits`: the read and the write timeout. Bytes read past the body's end stay in
/// `from.buf`.
async fn relay(
    deadlines: &mut Deadlines,
    from: &mut Peer,
    to: &TcpStream,
    body: &mut Body,
    decode: bool,
    limits: (Option<Duration>, Option<Duration>),
) -> Relayed {
    let mut bytes = 0u64;
    let mut decoded = Vec::new();
    let result = loop {
        if body.done() {
            break Ok(());
        }
        if from.buf.is_empty() {
            match deadlines.within(deadline(limits.0), from.read_more()).await {
                None => break Err(Relay::ReadTimeout),
                Some(Ok(0)) => {
                    if matches!(body, Body::UntilClose) {
                        *body = Body::Done;
                        break Ok(());
                    }
                    break Err(Relay::ReadClosed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => break Err(Relay::ReadError),
            }
        }
        let taken = if decode {
            decoded.clear();
            body.take_into(&from.buf, true, &mut decoded)
        } else {
            body.take(&from.buf)
        };
        let Ok(n) = taken else {
            break Err(Relay::Framing);
        };
        let going = if decode { &decoded[..] } else { &from.buf[..n] };
        match deadlines
            .within(deadline(limits.1), write_all(to, going))
            .await
        {
            Some(Ok(())) => {}
            Some(Err(_)) => break Err(Relay::WriteError),
            None => break Err(Relay::WriteTimeout),
        }
        bytes += going.len() as u64;
        from.buf.drain(..n);
    };
    Relayed { bytes, result }
}

/// What the log line and counters learn about one request as it goes.
struct Exchange<'c> {
    conn: &'c Connection,
    backend: Option<Arc<Backend>>,
    /// What only the `option httplog` line needs; `None` when no line will be written, so
    /// that requests without logging neither format the request line nor read the clocks.
    logged: Option<Logged>,
    report: ConnectReport,
    server: Option<Arc<Server>>,
    response_time: Option<Duration>,
    status: Option<u16>,
    cause: Cause,
    state: SessionState,
    client_cookie: ClientCookie,
    server_cookie: ServerCookie,
    /// Bytes sent to the client, headers included.
    bytes_out: u64,
    lease: Option<Lease>,
    backend_session: Option<BackendSession>,
    /// Logged and released already.
    done: bool,
}

/// The log line's request line and times, taken when the request arrives.
struct Logged {
    /// When the request's first byte was seen: the log's date and the start of `Ta`.
    date: SystemTime,
    started: Instant,
    /// From the first byte to the end of the head (`TR`).
    head_time: Duration,
    request_line: String,
}

/// The frontend writes an `option httplog` line per request.
fn logs_requests(frontend: &Frontend) -> bool {
    frontend.log.logger.is_some() && frontend.http.as_ref().is_some_and(|h| h.httplog)
}

impl Exchange<'_> {
    fn log(&self) {
        let frontend = self.conn.frontend();
        let (Some(logger), Some(logged)) = (frontend.log.logger.as_ref(), self.logged.as_ref())
        else {
            return;
        };
        let process = &self.conn.process;
        let session = TcpLogRecord {
            frontend_ssl: self.conn.tls,
            backend: Some(
                self.backend
                    .as_ref()
                    .map_or(frontend.name.as_str(), |b| b.name.as_str()),
            ),
            server: self.server.as_ref().map(|s| s.name.as_str()),
            tw: self.report.queue_wait.map(millis),
            tc: self.report.connect_time.map(millis),
            tt: 0,
            bytes_read: self.bytes_out,
            termination: self.cause,
            state: self.state,
            actconn: process.active.load(Ordering::Relaxed),
            feconn: frontend.counters.current.load(Ordering::Relaxed),
            beconn: self
                .backend
                .as_ref()
                .map_or(0, |b| b.counters.current.load(Ordering::Relaxed)),
            srv_conn: self
                .server
                .as_ref()
                .map_or(0, |s| s.counters.current.load(Ordering::Relaxed)),
            retries: self.report.retries,
            redispatched: self.report.redispatched,
            backend_queue: self.report.backend_queue,
            ..TcpLogRecord::new(self.conn.client_addr(), logged.date, &frontend.name)
        };
        let record = HttpLogRecord {
            session,
            tr_request: Some(millis(logged.head_time)),
            tr_response: self.response_time.map(millis),
            ta: millis(logged.started.elapsed()),
            status: self.status,
            client_cookie: self.client_cookie,
            server_cookie: self.server_cookie,
            request_line: &logged.request_line,
        };
        logger.log(
            switchyard_config::Level::Info,
            &switchyard_log::format_httplog(&record),
        );
    }

    /// Records a page of Switchyard's own as the response.
    fn own_page(&mut self, status: u16, len: usize) {
        self.status = Some(status);
        count_response(self.conn.frontend(), self.backend.as_deref(), None, status);
        self.count_out(len as u64);
    }

    fn count_out(&mut self, bytes: u64) {
        self.bytes_out += bytes;
        self.count(bytes, |c| &c.bytes_out);
    }

    fn count_in(&self, bytes: u64) {
        if bytes > 0 {
            self.count(bytes, |c| &c.bytes_in);
        }
    }

    /// Adds to one byte counter of the frontend, the backend and the server.
    fn count(&self, bytes: u64, field: fn(&Counters) -> &AtomicU64) {
        let backend = self.backend.as_ref().map(|b| &b.counters);
        let server = self.server.as_ref().map(|s| &s.counters);
        for counters in [Some(&self.conn.frontend().counters), backend, server]
            .into_iter()
            .flatten()
        {
            field(counters).fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The exchange is over: log, release the server slot and the backend's count.
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.log();
        self.lease.take();
        self.backend_session.take();
    }
}

impl Drop for Exchange<'_> {
    /// An exchange dropped before its end was cut by a kill order (`shutdown sessions`,
    /// a server's `on-marked-down shutdown-sessions`, hard-stop).
    fn drop(&mut self) {
        if !self.done {
            if self.cause == Cause::Normal {
                self.cause = Cause::Killed;
            }
            self.finish();
        }
    }
}

/// No usable response from the server (`eresp`).
fn count_response_error(server: &Server, backend: &Backend) {
    for counters in [&server.counters, &backend.counters] {
        counters.response_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a response as HAProxy 2.6 does: the frontend and the backend count every response
/// (their `hrsp_*`, the backend's `req_tot`), whoever produced it, so Switchyard's own error
/// pages show there; a server counts only what it sent.
fn count_response(
    frontend: &Frontend,
    backend: Option<&Backend>,
    server: Option<&Server>,
    status: u16,
) {
    let class = status_class(status);
    frontend.counters.http_responses[class].fetch_add(1, Ordering::Relaxed);
    for counters in backend
        .map(|b| &b.counters)
        .into_iter()
        .chain(server.map(|s| &s.counters))
    {
        counters.http_responses[class].fetch_add(1, Ordering::Relaxed);
        counters.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// Index in `http_responses`: 1xx..5xx are 0..4; anything else is "other" (5).
fn status_class(status: u16) -> usize {
    match status / 100 {
        class @ 1..=5 => usize::from(class) - 1,
        _ => 5,
    }
}

/// RFC 9110 idempotent methods: safe to send twice.
fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
    )
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// IPv4-mapped clients are shown as IPv4, as HAProxy does.
fn client_text(client: IpAddr) -> String {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `name=value` pairs of the request's `Cookie` headers.
fn request_cookies<'b>(head: &'b Head, buf: &'b [u8]) -> impl Iterator<Item = (&'b str, &'b str)> {
    head.all(buf, "cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// The persistence cookie's verdict and the server it names, if usable.
fn persistence(
    cookie: &config::Cookie,
    head: &Head,
    buf: &[u8],
    servers: &[Arc<Server>],
) -> (ClientCookie, Option<Arc<Server>>) {
    let Some((_, value)) = request_cookies(head, buf).find(|(name, _)| *name == cookie.name) else {
        return (ClientCookie::None, None);
    };
    let wanted = match cookie.mode {
        config::CookieMode::Prefix => value.split_once('~').map_or(value, |(prefix, _)| prefix),
        _ => value,
    };
    match servers.iter().find(|s| s.cookie.as_deref() == Some(wanted)) {
        Some(server) if server.usable() => (ClientCookie::Valid, Some(Arc::clone(server))),
        Some(_) => (ClientCookie::Down, None),
        None => (ClientCookie::Invalid, None),
    }
}

/// `insert` + `indirect` hides the cookie from servers; `prefix` gives the server back its
/// own value. `Some(new)`: the request's `Cookie` lines go, replaced by `new` if any pair is
/// left; `None`: they stay as they are.
fn request_cookie_edit(cookie: &config::Cookie, head: &Head, buf: &[u8]) -> Option<Option<String>> {
    let strip = match cookie.mode {
        config::CookieMode::Insert => cookie.indirect,
        config::CookieMode::Prefix => true,
        config::CookieMode::Rewrite => false,
    };
    if !strip || !request_cookies(head, buf).any(|(name, _)| name == cookie.name) {
        return None;
    }
    let pairs: Vec<String> = request_cookies(head, buf)
        .filter_map(|(name, value)| {
            if name != cookie.name {
                return Some(format!("{name}={value}"));
            }
            match cookie.mode {
                config::CookieMode::Prefix => value
                    .split_once('~')
                    .map(|(_, own)| format!("{name}={own}")),
                _ => None,
            }
        })
        .collect();
    Some((!pairs.is_empty()).then(|| pairs.join("; ")))
}

/// What the cookie mode changes in a response: `Set-Cookie` (and `Cache-Control`) lines
/// that go, and lines added.
struct SetCookieEdit {
    verdict: ServerCookie,
    /// Starts of the lines that go.
    drop: SmallVec<[u16; 4]>,
    add: Vec<(&'static str, String)>,
}

impl SetCookieEdit {
    fn drops(&self, field: &h1::Field) -> bool {
        self.drop.contains(&field.line.start)
    }
}

/// Applies the cookie mode to the response's `Set-Cookie` headers for `server`.
fn set_cookie_edit(
    cookie: &config::Cookie,
    head: &Head,
    buf: &[u8],
    server: &Arc<Server>,
    client_had: Option<&Arc<Server>>,
    is_post: bool,
) -> SetCookieEdit {
    let mut edit = SetCookieEdit {
        verdict: ServerCookie::Untouched,
        drop: SmallVec::new(),
        add: Vec::new(),
    };
    let Some(value) = server.cookie.as_deref() else {
        return edit;
    };
    let set_cookies = || {
        head.fields
            .iter()
            .filter(|f| buf[f.name.range()].eq_ignore_ascii_case(b"set-cookie"))
    };
    let text = |f: &h1::Field| std::str::from_utf8(&buf[f.value.range()]).ok();
    let ours = |f: &h1::Field| {
        text(f).is_some_and(|text| {
            text.split_once('=')
                .is_some_and(|(name, _)| name.trim() == cookie.name)
        })
    };
    match cookie.mode {
        config::CookieMode::Insert => {
            let server_set = set_cookies().any(&ours);
            if server_set && cookie.preserve {
                return edit;
            }
            edit.drop
                .extend(set_cookies().filter(|f| ours(f)).map(|f| f.line.start));
            let already = client_had.is_some_and(|s| Arc::ptr_eq(s, server));
            if already || (cookie.postonly && !is_post) {
                return edit;
            }
            let mut text = format!("{}={value}; path=/", cookie.name);
            for domain in &cookie.domains {
                text.push_str("; domain=");
                text.push_str(domain);
            }
            if cookie.httponly {
                text.push_str("; HttpOnly");
            }
            if cookie.secure {
                text.push_str("; Secure");
            }
            for attr in &cookie.attrs {
                text.push_str("; ");
                text.push_str(attr);
            }
            edit.add.push(("Set-Cookie", text));
            if cookie.nocache {
                edit.drop.extend(
                    head.fields
                        .iter()
                        .filter(|f| buf[f.name.range()].eq_ignore_ascii_case(b"cache-control"))
                        .map(|f| f.line.start),
                );
                edit.add.push(("Cache-Control", "private".to_string()));
            }
            edit.verdict = ServerCookie::Inserted;
        }
        config::CookieMode::Rewrite | config::CookieMode::Prefix => {
            for field in set_cookies().filter(|f| ours(f)) {
                let Some(text) = text(field) else { continue };
                let (pair, attributes) = text.split_once(';').map_or((text, ""), |(p, a)| (p, a));
                let own = pair.split_once('=').map_or("", |(_, v)| v.trim());
                let new_value = match cookie.mode {
                    config::CookieMode::Prefix => format!("{value}~{own}"),
                    _ => value.to_string(),
                };
                let sep = if attributes.is_empty() { "" } else { ";" };
                edit.drop.push(field.line.start);
                edit.add.push((
                    "Set-Cookie",
                    format!("{}={new_value}{sep}{attributes}", cookie.name),
                ));
            }
            if !edit.add.is_empty() {
                edit.verdict = if cookie.mode == config::CookieMode::Prefix {
                    ServerCookie::Prefixed
                } else {
                    ServerCookie::Rewritten
                };
            }
        }
    }
    edit
}

/// What `balance uri|url_param|hdr` hashes, if the request has it.
fn balance_key(balance: &config::Balance, head: &Head, buf: &[u8]) -> Option<Vec<u8>> {
    let target = &buf[head.target.range()];
    match balance {
        config::Balance::Uri => Some(h1::target_path(target).to_vec()),
        config::Balance::UrlParam(name) => h1::target_query(target)
            .and_then(|query| std::str::from_utf8(query).ok())
            .and_then(|query| query_param(query, name))
            .map(|value| value.as_bytes().to_vec()),
        config::Balance::Hdr(name) => head.get(buf, name).map(<[u8]>::to_vec),
        _ => None,
    }
}

/// The key a stick rule takes from the request; `None` when the request lacks it.
fn stick_key(
    sample: &config::StickSample,
    head: &Head,
    buf: &[u8],
    client: IpAddr,
    len: usize,
) -> Option<StickKey> {
    match sample {
        config::StickSample::Src => Some(StickKey::Ip(client)),
        config::StickSample::RequestCookie(name) => request_cookies(head, buf)
            .find(|(n, _)| n == name)
            .map(|(_, value)| StickKey::text(value, len)),
        config::StickSample::Header(name) => head
            .get(buf, name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|value| StickKey::text(value, len)),
        config::StickSample::UrlParam(name) => {
            let query = std::str::from_utf8(h1::target_query(&buf[head.target.range()])?).ok()?;
            query_param(query, name).map(|value| StickKey::text(value, len))
        }
    }
}

/// The value of `name` in a `key=value&...` query string.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The value of cookie `name` set by a response's `Set-Cookie` headers.
fn response_cookie<'b>(head: &Head, buf: &'b [u8], name: &str) -> Option<&'b str> {
    head.all(buf, "set-cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|text| {
            let pair = text.split(';').next()?;
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| value.trim())
        })
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A short local HTML page, whole response, for errors Switchyard answers itself.
fn error_page(status: u16, keep_alive: bool) -> Vec<u8> {
    let reason = reason(status);
    let detail = match status {
        503 => "No server is available to handle this request.",
        502 => "The server returned an invalid or incomplete response.",
        504 => "The server didn't respond in time.",
        408 => "The request was not received in time.",
        400 => "The request is invalid.",
        _ => "The request could not be processed.",
    };
    let page = format!("<html><body><h1>{status} {reason}</h1>\n{detail}\n</body></html>\n");
    let connection = if keep_alive {
        ""
    } else {
        "connection: close\r\n"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html\r\ncache-control: no-cache\r\n\
         content-length: {}\r\n{connection}\r\n{page}",
        page.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(101), 0);
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(404), 3);
        assert_eq!(status_class(599), 4);
        assert_eq!(status_class(600), 5);
        assert_eq!(status_class(99), 5);
    }

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_network(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_network(ip("::ffff:127.0.0.1"), ip("127.0.0.0"), 8));
        assert!(in_network(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("2001:db8::1"), ip("2001:db8::"), 32));
        assert!(!in_network(ip("2001:db9::1"), ip("2001:db8::"), 32));
        assert!(!in_network(ip("::1"), ip("127.0.0.1"), 32));
    }

    fn request(text: &str) -> (Vec<u8>, Head) {
        let buf = text.as_bytes().to_vec();
        let head = h1::parse_request(&buf).unwrap().unwrap();
        (buf, head)
    }

    #[test]
    fn balance_keys_from_the_request() {
        let (buf, head) = request("GET /orders/42?user=ann&x=1 HTTP/1.1\r\nX-Tenant: blue\r\n\r\n");
        assert_eq!(
            balance_key(&config::Balance::Uri, &head, &buf).unwrap(),
            b"/orders/42"
        );
        assert_eq!(
            balance_key(&config::Balance::UrlParam("user".into()), &head, &buf).unwrap(),
            b"ann"
        );
        assert_eq!(
            balance_key(&config::Balance::UrlParam("y".into()), &head, &buf),
            None
        );
        assert_eq!(
            balance_key(&config::Balance::Hdr("x-tenant".into()), &head, &buf).unwrap(),
            b"blue"
        );
        assert_eq!(balance_key(&config::Balance::RoundRobin, &head, &buf), None);
    }

    #[test]
    fn bodies_take_what_is_theirs() {
        let mut length = Body::new(Framing::Length(5));
        assert_eq!(length.take(b"abc"), Ok(3));
        assert_eq!(length.take(b"defGET"), Ok(2));
        assert!(length.done());
        let mut chunked = Body::new(Framing::Chunked);
        assert_eq!(chunked.take(b"2\r\nab\r\n0\r\n\r\nGET"), Ok(12));
        assert!(chunked.done());
        let mut until_close = Body::new(Framing::UntilClose);
        assert_eq!(until_close.take(b"anything"), Ok(8));
        assert!(!until_close.done());
        assert!(Body::new(Framing::Empty).done());
    }

    #[test]
    fn error_pages_are_whole_responses() {
        let page = error_page(503, true);
        let response = h1::parse_response(&page).unwrap().unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(
            h1::response_framing(&response, false),
            Ok(Framing::Length((page.len() - response.len) as u64))
        );
        assert!(!response.semantics.close);
        let closing = error_page(400, false);
        assert!(
            h1::parse_response(&closing)
                .unwrap()
                .unwrap()
                .semantics
                .close
        );
    }
}
