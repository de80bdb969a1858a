//! `mode http`: HTTP/1.1 between clients and servers, on hyper.
//!
//! A client connection is served by hyper's HTTP/1 server; every request is balanced on its
//! own (as HAProxy does in its default keep-alive mode): persistence (`cookie`, `stick on
//! src`) first, then the backend's algorithm, which for `uri`, `url_param` and `hdr` hashes
//! that part of the request. The server connection comes from the backend's pool of idle
//! keep-alive connections to the chosen server, else is opened with the same retries and
//! redispatch as a TCP session. A request on a reused connection that turns out closed
//! before any of it was written goes again on a fresh connection (hyper hands it back); once
//! written, only a safe request on a connection that had been idle for a second or more goes
//! again, from a copy of its headers kept for that case alone.
//!
//! The response streams back through [`ResponseBody`], which counts bytes, bounds server
//! silence with `timeout server`, and on drop (the response is complete, or the client left)
//! writes the `option httplog` line, releases the server slot and, if the exchange ended
//! cleanly and the mode allows it, returns the connection to the pool.
//!
//! `Upgrade` requests (WebSocket) that the server answers with `101` become a tunnel between
//! the two upgraded connections, bounded by `timeout tunnel` (else `timeout client`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::TrySendError;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchyard_config as config;
use switchyard_log::TerminationCause as Cause;
use switchyard_log::{ClientCookie, HttpLogRecord, ServerCookie, SessionState, TcpLogRecord};
use tokio::net::TcpStream;

use crate::select::{Hint, Lease};
use crate::session::{connect_server, BackendSession, ConnectReport};
use crate::state::{Backend, Counters, Frontend, Process, Server, SessionInfo};
use crate::stick::StickKey;

/// Idle server connections kept per backend; more are closed when released.
const POOL_LIMIT: usize = 256;
/// An idle server connection older than this is closed rather than reused (HAProxy's
/// `pool-purge-delay` default), so servers' own keep-alive timeouts rarely race a reuse.
const POOL_IDLE: Duration = Duration::from_secs(5);

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
}

/// A backend's HTTP settings and its pool of idle server connections.
#[derive(Debug)]
pub struct BackendHttp {
    pub forwardfor: Option<config::ForwardFor>,
    pub close: CloseMode,
    pub cookie: Option<config::Cookie>,
    /// Oldest first: connections are pushed as they become idle and never reordered.
    pool: Mutex<VecDeque<Idle>>,
}

impl BackendHttp {
    pub fn new(proxy: &config::Proxy) -> BackendHttp {
        BackendHttp {
            forwardfor: proxy.options.forwardfor.clone(),
            close: CloseMode::of(&proxy.options),
            cookie: proxy.cookie.clone(),
            pool: Mutex::new(VecDeque::new()),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle, still open connection to `server`: the most recently used, the least
    /// likely to meet the server's own keep-alive timeout. Expired connections leave from
    /// the front of the pool, so a request looks at a few entries rather than all.
    fn take_idle(&self, server: &Arc<Server>) -> Option<Idle> {
        let mut pool = self.pool();
        if let Some(cutoff) = Instant::now().checked_sub(POOL_IDLE) {
            while pool.front().is_some_and(|idle| idle.since <= cutoff) {
                pool.pop_front();
            }
        }
        // A closed connection found on the way goes; others wait for their turn (their
        // task has already ended, so holding them only holds memory).
        loop {
            let index = pool
                .iter()
                .rposition(|idle| Arc::ptr_eq(&idle.server, server))?;
            let idle = pool.remove(index)?;
            if !idle.sender.is_closed() {
                return Some(idle);
            }
        }
    }

    /// `idle.since` is when the connection's last response ended; a connection the server
    /// has closed meanwhile is dropped instead.
    fn put_idle(&self, idle: Idle) {
        if idle.sender.is_closed() {
            return;
        }
        let mut pool = self.pool();
        if pool.len() >= POOL_LIMIT {
            pool.retain(|idle| !idle.sender.is_closed());
        }
        if pool.len() < POOL_LIMIT {
            // Pushed in the order of `since` as long as the clock read comes before the
            // lock; a request finishing a few nanoseconds earlier on another thread may
            // come after one later: it only expires that much later.
            pool.push_back(idle);
        }
    }
}

#[derive(Debug)]
struct Idle {
    server: Arc<Server>,
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// A connection idle this long may meet the server's keep-alive timeout (Apache's and
/// Node's are 5 s) just as a request goes out on it: a safe request sent on it keeps a copy
/// of its headers, to go again if the server closes without answering. Connections in
/// steady use skip the copy (~300 instructions per request).
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

type RequestBody = BoxBody<Bytes, hyper::Error>;

/// One client connection being served.
pub struct Connection {
    pub process: Arc<Process>,
    pub frontend: Arc<Frontend>,
    pub client_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub tls: bool,
}

/// What the connection's requests share.
struct Shared {
    conn: Connection,
    /// When the last response ended (`None`: a request is in progress): the keep-alive
    /// watchdog closes the connection once it has been idle for `timeout http-keep-alive`.
    idle_since: Mutex<Option<Instant>>,
    /// `timeout server` for the response headers.
    response_timer: ReusedTimer,
    /// The server connection the last response came over, kept for this client's next
    /// request to the same server (as HAProxy's default `http-reuse safe` keeps a session's
    /// connection): a client's requests stay on one server connection instead of taking
    /// whichever idle one the backend's pool offers.
    own: Mutex<Option<Idle>>,
}

impl Drop for Shared {
    /// The client is gone: its server connection goes to the backend's pool.
    fn drop(&mut self) {
        let own = self
            .own
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let pool = self
            .conn
            .frontend
            .backend
            .as_ref()
            .and_then(|b| b.http.as_ref());
        if let (Some(idle), Some(pool)) = (own, pool) {
            pool.put_idle(idle);
        }
    }
}

impl Shared {
    fn own(&self) -> std::sync::MutexGuard<'_, Option<Idle>> {
        self.own
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This client's own idle connection to `server`, if it has one still open.
    fn take_own(&self, server: &Arc<Server>) -> Option<Idle> {
        let mut own = self.own();
        if !own
            .as_ref()
            .is_some_and(|idle| Arc::ptr_eq(&idle.server, server))
        {
            return None;
        }
        own.take().filter(|idle| !idle.sender.is_closed())
    }

    /// Keeps `sender` for this client's next request; a connection kept before, to another
    /// server, goes to the pool.
    fn keep_own(
        &self,
        pool: &BackendHttp,
        server: Arc<Server>,
        sender: SendRequest<RequestBody>,
        now: Instant,
    ) {
        let previous = self.own().replace(Idle {
            server,
            sender,
            since: now,
        });
        if let Some(previous) = previous {
            pool.put_idle(previous);
        }
    }

    fn set_idle(&self, idle: Option<Instant>) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = idle;
    }

    fn idle_for(&self) -> Option<Duration> {
        self.idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .map(|since| since.elapsed())
    }
}

/// One timer re-armed for each of a connection's requests, which come one at a time.
/// Moving a registered timer's deadline later is one atomic update, where a timer per
/// request is inserted into and removed from the runtime's timer wheel under its lock.
#[derive(Default)]
struct ReusedTimer(Mutex<Option<Pin<Box<tokio::time::Sleep>>>>);

impl ReusedTimer {
    /// `future`'s output, or `None` if `limit` passes first (as `tokio::time::timeout`),
    /// counted from `now` (the caller's clock read, shared with its other uses).
    async fn within<F: Future>(
        &self,
        now: Instant,
        limit: Duration,
        future: F,
    ) -> Option<F::Output> {
        let deadline = tokio::time::Instant::from_std(now + limit);
        let mut future = std::pin::pin!(future);
        let mut armed = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            let mut timer = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let sleep = match timer.as_mut() {
                Some(sleep) => {
                    if !armed {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            armed = true;
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }
}

/// Serves HTTP/1.1 on `client` until it closes, times out or is shut down.
pub async fn serve(conn: Connection, client: TcpStream, info: &SessionInfo) {
    let frontend = Arc::clone(&conn.frontend);
    let Some(settings) = frontend.http.as_ref() else {
        return;
    };
    let timeouts = frontend.timeouts;
    // Headers of a request must arrive within `timeout http-request` (else `timeout client`),
    // counted from the end of the previous response (or the connection's start), so idle
    // keep-alive connections included. The tick below enforces it rather than hyper's
    // `header_read_timeout`, which allocates, registers and cancels a timer per request.
    let head_limit = timeouts.http_request.or(timeouts.client);
    let keep_alive = timeouts.http_keep_alive.or(timeouts.http_request);
    let close = settings.close.max(
        frontend
            .backend
            .as_ref()
            .and_then(|b| b.http.as_ref())
            .map_or(CloseMode::KeepAlive, |b| b.close),
    );
    let shared = Arc::new(Shared {
        conn,
        idle_since: Mutex::new(Some(Instant::now())),
        response_timer: ReusedTimer::default(),
        own: Mutex::new(None),
    });
    let service_shared = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&service_shared);
        async move { Ok::<_, Infallible>(handle(shared, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        // A proxy passes the server's headers on; it does not add a `date` the server did
        // not send (HAProxy neither).
        .auto_date_header(false)
        .keep_alive(close != CloseMode::Close);
    let connection = builder
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades();
    tokio::pin!(connection);
    let tick = keep_alive
        .into_iter()
        .chain(head_limit)
        .min()
        .map_or(Duration::from_secs(3600), |k| {
            (k / 4).max(Duration::from_millis(10))
        });
    // The connection is polled at every wake-up of the task (a few per request); the kill
    // order and the keep-alive tick only when their own waker fired, where `select!` would
    // poll all three each time.
    let side = Arc::new(SideWake::default());
    let side_waker = Waker::from(Arc::clone(&side));
    let kill = info.kill.notified();
    tokio::pin!(kill);
    let ticker = tokio::time::sleep(tick);
    tokio::pin!(ticker);
    let mut closing = false;
    let ended = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if !side.woken(cx.waker()) {
            return Poll::Pending;
        }
        let mut side_cx = Context::from_waker(&side_waker);
        if kill.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(None);
        }
        while ticker.as_mut().poll(&mut side_cx).is_ready() {
            // `None` while a request is being served: neither limit applies then.
            let idle = shared.idle_for();
            let past = |limit: Option<Duration>| {
                limit.zip(idle).is_some_and(|(limit, idle)| idle >= limit)
            };
            if past(head_limit) {
                // No complete request head in time, idle or arriving slowly: cut.
                return Poll::Ready(None);
            }
            if !closing && past(keep_alive) {
                // Closes now if idle; a request that just started still completes.
                connection.as_mut().graceful_shutdown();
                closing = true;
                if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
            }
            ticker.as_mut().reset(tokio::time::Instant::now() + tick);
        }
        Poll::Pending
    })
    .await;
    if let Some(Err(error)) = ended {
        tracing::debug!(frontend = %frontend.name, client = %shared.conn.client_addr, %error, "HTTP connection ended");
    }
}

/// The waker `serve` gives the kill order and the keep-alive tick: it notes that one of
/// them fired, then wakes the connection's task.
struct SideWake {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Default for SideWake {
    fn default() -> SideWake {
        SideWake {
            // Polled once at the start, to register.
            fired: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }
}

impl SideWake {
    /// Keeps `task` as the waker to wake, then says whether a side waker fired since the
    /// last call (the waker is stored first, so a wake-up in between is not lost).
    fn woken(&self, task: &Waker) -> bool {
        {
            let mut current = self
                .task
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !current.as_ref().is_some_and(|c| c.will_wake(task)) {
                *current = Some(task.clone());
            }
        }
        self.fired.swap(false, Ordering::AcqRel)
    }
}

impl std::task::Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// What the log line and counters learn about one request as it goes.
struct Exchange {
    shared: Arc<Shared>,
    backend: Option<Arc<Backend>>,
    /// What only the `option httplog` line needs; `None` when no line will be written, so
    /// that requests without logging neither format the request line nor read the clocks.
    logged: Option<Logged>,
    method: Method,
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
    /// The server connection, to pool again once the response is complete.
    reusable: Option<SendRequest<RequestBody>>,
}

/// The log line's request line and times, taken when the request arrives.
struct Logged {
    date: SystemTime,
    started: Instant,
    request_line: String,
}

/// The frontend writes an `option httplog` line per request.
fn logs_requests(frontend: &Frontend) -> bool {
    frontend.log.logger.is_some() && frontend.http.as_ref().is_some_and(|h| h.httplog)
}

impl Exchange {
    fn log(&self) {
        let frontend = &self.shared.conn.frontend;
        let (Some(logger), Some(logged)) = (frontend.log.logger.as_ref(), self.logged.as_ref())
        else {
            return;
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let process = &self.shared.conn.process;
        let session = TcpLogRecord {
            frontend_ssl: self.shared.conn.tls,
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
            ..TcpLogRecord::new(self.shared.conn.client_addr, logged.date, &frontend.name)
        };
        let record = HttpLogRecord {
            session,
            // hyper hands over complete requests only: the wait for their headers is part
            // of the idle time, not measured separately.
            tr_request: Some(0),
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

    fn count_out(&mut self, bytes: u64) {
        self.bytes_out += bytes;
        self.count(bytes, |c| &c.bytes_out);
    }

    fn count_in(&self, bytes: u64) {
        self.count(bytes, |c| &c.bytes_in);
    }

    /// Adds to one byte counter of the frontend, the backend and the server.
    fn count(&self, bytes: u64, field: fn(&Counters) -> &AtomicU64) {
        let backend = self.backend.as_ref().map(|b| &b.counters);
        let server = self.server.as_ref().map(|s| &s.counters);
        for counters in [Some(&self.shared.conn.frontend.counters), backend, server]
            .into_iter()
            .flatten()
        {
            field(counters).fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The response is complete (or abandoned): log, release, pool.
    fn finish(mut self, complete: bool) {
        let now = Instant::now();
        if complete {
            if let (Some(sender), Some(server), Some(backend)) = (
                self.reusable.take(),
                self.server.clone(),
                self.backend.as_ref(),
            ) {
                if let Some(http) = backend.http.as_ref() {
                    self.shared.keep_own(http, server, sender, now);
                }
            }
        }
        self.log();
        self.lease.take();
        self.backend_session.take();
        self.shared.set_idle(Some(now));
    }
}

/// The response body sent to the client: the server's, or a local page.
pub struct ResponseBody {
    inner: Inner,
    exchange: Option<Exchange>,
    /// `timeout server` between two pieces of the server's body.
    idle_limit: Option<Duration>,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    complete: bool,
}

enum Inner {
    Server(Incoming),
    Local(Option<Bytes>),
}

impl ResponseBody {
    fn local(page: Bytes, exchange: Exchange) -> ResponseBody {
        ResponseBody {
            inner: Inner::Local(Some(page)),
            exchange: Some(exchange),
            idle_limit: None,
            idle: None,
            complete: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Local(page) => Poll::Ready(page.take().map(|bytes| Ok(Frame::data(bytes)))),
            Inner::Server(body) => Pin::new(body).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(exchange)) = (frame.data_ref(), this.exchange.as_mut()) {
                    exchange.count_out(data.len() as u64);
                }
                this.idle = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(exchange) = this.exchange.as_mut() {
                    exchange.cause = Cause::ServerAbort;
                    exchange.state = SessionState::Data;
                    exchange.reusable = None;
                }
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.complete = true;
                if let Some(exchange) = this.exchange.take() {
                    exchange.finish(true);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(limit) = this.idle_limit else {
                    return Poll::Pending;
                };
                let timer = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    // The server went silent mid-body: end the response (the client sees a
                    // truncated body, as with HAProxy) and log `sD`.
                    if let Some(mut exchange) = this.exchange.take() {
                        exchange.cause = Cause::ServerTimeout;
                        exchange.state = SessionState::Data;
                        exchange.reusable = None;
                        exchange.finish(false);
                    }
                    this.inner = Inner::Local(None);
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local(page) => page.is_none(),
            Inner::Server(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local(Some(page)) => SizeHint::with_exact(page.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            Inner::Server(body) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(mut exchange) = self.exchange.take() {
            let from_server = matches!(self.inner, Inner::Server(_));
            // hyper stops polling once the body says it is at its end (its length is
            // reached), so a body may be complete without having returned its end.
            self.complete |= self.is_end_stream();
            if !self.complete && from_server && exchange.cause == Cause::Normal {
                // hyper dropped the body before its end: the client went away.
                exchange.cause = Cause::ClientAbort;
                exchange.state = SessionState::Data;
            }
            let complete = self.complete || !from_server;
            exchange.finish(complete);
        }
    }
}

/// Why a server connection gave no response, with the request back when none of it was
/// written (so it can go again elsewhere without keeping a copy).
struct SendFailure {
    error: hyper::Error,
    unsent: Option<Request<RequestBody>>,
}

impl From<TrySendError<Request<RequestBody>>> for SendFailure {
    fn from(mut failure: TrySendError<Request<RequestBody>>) -> Self {
        let unsent = failure.take_message();
        Self {
            error: failure.into_error(),
            unsent,
        }
    }
}

/// Serves one request: choose a server, forward, and return its response (or an error page).
async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>) -> Response<ResponseBody> {
    shared.set_idle(None);
    let conn = &shared.conn;
    let frontend = Arc::clone(&conn.frontend);
    frontend.counters.requests.fetch_add(1, Ordering::Relaxed);
    frontend.counters.request_rate.add(crate::rate::now_ms());
    let backend = frontend.backend.clone();
    let mut exchange = Exchange {
        shared: Arc::clone(&shared),
        backend: backend.clone(),
        logged: logs_requests(&frontend).then(|| Logged {
            date: SystemTime::now(),
            started: Instant::now(),
            request_line: request_line(&request),
        }),
        method: request.method().clone(),
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
        reusable: None,
    };
    exchange.count_in(head_size_of_request(&request));
    let Some(backend) = backend else {
        exchange.cause = Cause::Proxy;
        exchange.state = SessionState::Request;
        return error_page(StatusCode::SERVICE_UNAVAILABLE, exchange);
    };
    let Some(settings) = backend.http.as_ref() else {
        exchange.cause = Cause::Internal;
        exchange.state = SessionState::Request;
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, exchange);
    };
    exchange.backend_session = Some(BackendSession::start(&backend));
    let close = frontend
        .http
        .as_ref()
        .map_or(CloseMode::KeepAlive, |f| f.close)
        .max(settings.close);

    // Persistence by cookie.
    let servers = backend.servers.load_full();
    let persistent = settings
        .cookie
        .as_ref()
        .map(|cookie| persistence(cookie, request.headers(), &servers));
    let mut prefer = None;
    if let Some((state, server)) = &persistent {
        exchange.client_cookie = *state;
        prefer = server.clone();
    }
    let key = balance_key(&backend.balance, &request);
    let stick_key = |sample: &Option<config::StickSample>| {
        let table = backend.stick.as_ref()?;
        stick_key(
            sample.as_ref()?,
            &request,
            conn.client_addr.ip(),
            table.settings.key_len,
        )
    };
    let (stick_match, stick_store) = match backend.stick.as_ref() {
        Some(table) => (
            stick_key(&table.rules.match_on),
            stick_key(&table.rules.store_request),
        ),
        None => (None, None),
    };
    let upgrade = client_upgrade(&request);
    let client_upgraded = upgrade.then(|| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    let headers = forward_headers(
        std::mem::take(&mut parts.headers),
        conn.client_addr.ip(),
        frontend
            .http
            .as_ref()
            .and_then(|f| f.forwardfor.as_ref())
            .or(settings.forwardfor.as_ref()),
        settings.cookie.as_ref(),
        close,
        upgrade,
    );
    let build = |body: RequestBody, headers: HeaderMap| {
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = parts.method.clone();
        *outgoing.uri_mut() = parts.uri.clone();
        *outgoing.version_mut() = parts.version;
        *outgoing.headers_mut() = headers;
        outgoing
    };
    let retryable = body.is_end_stream() && idempotent(&parts.method);
    // Request bodies count as bytes in for the frontend and the backend as they stream.
    let sinks = [
        Arc::clone(&frontend.counters),
        Arc::clone(&backend.counters),
    ];
    let counted = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            for counters in &sinks {
                counters
                    .bytes_in
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        frame
    });
    // The request goes out once; if a reused connection turns out closed before any of it
    // was written, hyper hands it back and it goes again on a fresh connection.
    let mut request = build(counted.boxed(), headers);

    let hint = Hint {
        client: Some(conn.client_addr.ip()),
        key: key.as_deref(),
        prefer: prefer.as_ref(),
        stick_match: stick_match.as_ref(),
        stick_store: stick_store.as_ref(),
    };
    let mut fresh_only = false;
    let (response, lease, sender) = loop {
        let mut report = std::mem::take(&mut exchange.report);
        let reuse = |server: &Arc<Server>| {
            if fresh_only || close != CloseMode::KeepAlive {
                None
            } else {
                shared
                    .take_own(server)
                    .or_else(|| settings.take_idle(server))
            }
        };
        let connected = connect_server(
            &backend,
            hint,
            (conn.client_addr, conn.local_addr),
            std::future::pending,
            Some(&reuse),
            &mut report,
        )
        .await;
        exchange.report = report;
        let Some((connection, lease)) = connected else {
            let failed = exchange.report.failure.unwrap_or(crate::session::Failed {
                cause: Cause::Internal,
                state: SessionState::Connect,
            });
            exchange.server = exchange.report.server.take();
            exchange.cause = failed.cause;
            exchange.state = failed.state;
            // No server, a full or timed-out queue, every attempt refused: HAProxy's 503.
            return error_page(StatusCode::SERVICE_UNAVAILABLE, exchange);
        };
        exchange.server = Some(Arc::clone(&lease.server));
        let (mut sender, idle_since) = match connection {
            crate::session::Connected::Reused(idle) => (idle.sender, Some(idle.since)),
            crate::session::Connected::Fresh(stream) => match handshake(stream).await {
                Ok(sender) => (sender, None),
                Err(error) => {
                    tracing::debug!(server = %lease.server.name, %error, "HTTP handshake failed");
                    exchange.cause = Cause::ServerAbort;
                    exchange.state = SessionState::Connect;
                    return error_page(StatusCode::BAD_GATEWAY, exchange);
                }
            },
        };
        let response_timeout = backend.timeouts.server;
        let reused = idle_since.is_some();
        // One clock read for the response timer and the idle time.
        let now = (response_timeout.is_some() || (retryable && reused)).then(Instant::now);
        let replay = (retryable
            && idle_since.zip(now).is_some_and(|(since, now)| {
                now.saturating_duration_since(since) >= REPLAY_AFTER_IDLE
            }))
        .then(|| request.headers().clone());
        // `%Tr` is only logged: no clock read without a log line.
        let sent = exchange
            .logged
            .is_some()
            .then(|| now.unwrap_or_else(Instant::now));
        let result = async {
            if let Err(error) = sender.ready().await {
                // Closed while idle: nothing was written.
                return Err(SendFailure {
                    error,
                    unsent: Some(request),
                });
            }
            sender
                .try_send_request(request)
                .await
                .map_err(SendFailure::from)
        };
        let result = match response_timeout {
            Some(limit) => match shared
                .response_timer
                .within(now.unwrap_or_else(Instant::now), limit, result)
                .await
            {
                Some(result) => result.map_err(Some),
                None => Err(None),
            },
            None => result.await.map_err(Some),
        };
        match result {
            Ok(response) => {
                exchange.response_time = sent.map(|sent| sent.elapsed());
                break (response, lease, sender);
            }
            Err(None) => {
                exchange.cause = Cause::ServerTimeout;
                exchange.state = SessionState::Headers;
                count_response_error(&lease.server, &backend);
                return error_page(StatusCode::GATEWAY_TIMEOUT, exchange);
            }
            Err(Some(failure)) => {
                let SendFailure { error, unsent } = failure;
                tracing::debug!(server = %lease.server.name, %error, reused, "HTTP request failed");
                // A reused connection the server had closed: if the request never went
                // out, nothing reached the server and it goes again (whatever its method)
                // on a connection of its own; if it did, only a safe request on a
                // connection that had been idle long goes again, from its copy.
                let again = unsent.or_else(|| {
                    replay.map(|headers| {
                        build(
                            Empty::new().map_err(|never| match never {}).boxed(),
                            headers,
                        )
                    })
                });
                if let Some(again) = again.filter(|_| reused) {
                    if exchange.report.retries < backend.retries.max(1) {
                        exchange.report.retries += 1;
                        backend.counters.retries.fetch_add(1, Ordering::Relaxed);
                        fresh_only = true;
                        request = again;
                        continue;
                    }
                }
                exchange.cause = Cause::ServerAbort;
                exchange.state = SessionState::Headers;
                count_response_error(&lease.server, &backend);
                return error_page(StatusCode::BAD_GATEWAY, exchange);
            }
        }
    };
    exchange.lease = Some(lease);
    let server = exchange.server.clone();
    let (mut head, server_body) = response.into_parts();
    exchange.status = Some(head.status.as_u16());
    count_response(&frontend, Some(&backend), server.as_deref(), head.status);

    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgraded) = client_upgraded {
            let response = Response::from_parts(head.clone(), server_body);
            tunnel(&frontend, &backend, client_upgraded, response);
            let mut reply = Response::from_parts(head, ResponseBody::local(Bytes::new(), exchange));
            *reply.version_mut() = Version::HTTP_11;
            return reply;
        }
    }

    if let (Some(table), Some(server)) = (backend.stick.as_ref(), server.as_ref()) {
        if let Some(name) = table.rules.store_response_cookie.as_deref() {
            if let Some(value) = response_cookie(&head.headers, name) {
                table.store(&StickKey::text(value, table.settings.key_len), &server.name);
            }
        }
    }
    if let (Some(cookie), Some(server)) = (settings.cookie.as_ref(), server.as_ref()) {
        exchange.server_cookie = set_cookie(
            cookie,
            &mut head.headers,
            server,
            persistent.as_ref().and_then(|(_, s)| s.as_ref()),
            &exchange.method,
        );
    }
    // The server may say it closes, in the hop-by-hop headers that go here.
    let connection_close = strip_hop_by_hop(&mut head.headers, false);
    let server_closes = head.version == Version::HTTP_10 || connection_close;
    exchange.count_out(head_size_of_response(&head));
    if close == CloseMode::KeepAlive && !server_closes {
        exchange.reusable = Some(sender);
    }
    let body = ResponseBody {
        inner: Inner::Server(server_body),
        exchange: Some(exchange),
        idle_limit: backend.timeouts.server,
        idle: None,
        complete: false,
    };
    Response::from_parts(head, body)
}

/// No usable response from the server (`eresp`).
fn count_response_error(server: &Server, backend: &Backend) {
    for counters in [&server.counters, &backend.counters] {
        counters.response_errors.fetch_add(1, Ordering::Relaxed);
    }
}

async fn handshake(stream: TcpStream) -> hyper::Result<SendRequest<RequestBody>> {
    // Requests are mostly a head without a body: one flat buffer and write(2) cost less
    // than hyper's queue of buffers for writev(2). Responses keep the queue, which sends
    // large bodies without copying them.
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "server connection ended");
        }
    });
    Ok(sender)
}

/// Relays an upgraded (WebSocket) connection until either side closes.
fn tunnel(
    frontend: &Arc<Frontend>,
    backend: &Arc<Backend>,
    client: hyper::upgrade::OnUpgrade,
    mut server: Response<Incoming>,
) {
    let limit = backend
        .timeouts
        .tunnel
        .or(frontend.timeouts.client)
        .unwrap_or(Duration::from_secs(3600));
    let server = hyper::upgrade::on(&mut server);
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = tokio::join!(client, server) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut server = TokioIo::new(server);
        let relay = tokio::io::copy_bidirectional(&mut client, &mut server);
        // A tunnel lives while traffic flows; `timeout tunnel` bounds the whole of it here.
        let _ = tokio::time::timeout(limit, relay).await;
    });
}

/// Counts a response as HAProxy 2.6 does: the frontend and the backend count every response
/// (their `hrsp_*`, the backend's `req_tot`), whoever produced it, so Switchyard's own error
/// pages show there; a server counts only what it sent.
fn count_response(
    frontend: &Frontend,
    backend: Option<&Backend>,
    server: Option<&Server>,
    status: StatusCode,
) {
    let class = status_class(status.as_u16());
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

/// `GET /path HTTP/1.1`.
fn request_line<B>(request: &Request<B>) -> String {
    format!(
        "{} {} {}",
        request.method(),
        request.uri(),
        version_text(request.version())
    )
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn head_size_of_request<B>(request: &Request<B>) -> u64 {
    let line = request.method().as_str().len() + uri_len(request.uri()) + 12;
    (line + headers_size(request.headers())) as u64
}

/// The length of `uri` as its `Display` writes it (`scheme://authority/path?query`), from
/// its parts rather than by formatting it.
fn uri_len(uri: &http::Uri) -> usize {
    uri.scheme().map_or(0, |s| s.as_str().len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
}

fn head_size_of_response(head: &http::response::Parts) -> u64 {
    let line = 15 + head.status.canonical_reason().map_or(0, str::len);
    (line + headers_size(&head.headers)) as u64
}

fn headers_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + 2
}

/// RFC 9110 idempotent methods: safe to send twice.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// The client asks to switch protocols (WebSocket): `Connection: upgrade` with `Upgrade`.
fn client_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
        && connection_tokens(request.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and those the `Connection` header names.
/// Returns whether `Connection` said `close`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    let fixed = |name: &HeaderName| {
        *name == header::CONNECTION
            || *name == header::TE
            || *name == header::TRAILER
            || *name == header::TRANSFER_ENCODING
            || (*name == header::UPGRADE && !keep_upgrade)
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection"
    };
    // Most messages carry none of these: one walk over the names present settles that
    // without hashing a lookup or allocating. Only `Connection` can name others.
    let mut connection = false;
    let mut any = false;
    for name in headers.keys() {
        if *name == header::CONNECTION {
            connection = true;
            any = true;
            break;
        }
        any |= fixed(name);
    }
    if !any {
        return false;
    }
    let mut closes = false;
    let named: Vec<HeaderName> = if connection {
        connection_tokens(headers)
            .inspect(|t| closes |= t.eq_ignore_ascii_case("close"))
            .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
    // One walk over the names present rather than a hashed removal per candidate.
    let hop_by_hop = |name: &HeaderName| fixed(name) || named.contains(name);
    let present: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for name in present {
        headers.remove(name);
    }
    closes
}

/// The request headers as the server gets them.
fn forward_headers(
    mut headers: HeaderMap,
    client: IpAddr,
    forwardfor: Option<&config::ForwardFor>,
    cookie: Option<&config::Cookie>,
    close: CloseMode,
    upgrade: bool,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers, upgrade);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if close != CloseMode::KeepAlive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(forward) = forwardfor {
        let excepted = forward
            .except
            .is_some_and(|(net, len)| in_network(client, net, len));
        if let Ok(name) = HeaderName::from_bytes(forward.header.as_bytes()) {
            let keep_theirs = forward.if_none && headers.contains_key(&name);
            if !excepted && !keep_theirs {
                if let Ok(value) = HeaderValue::from_str(&client_text(client)) {
                    headers.append(name, value);
                }
            }
        }
    }
    if let Some(cookie) = cookie {
        strip_request_cookie(&mut headers, cookie);
    }
    headers
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
fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// The persistence cookie's verdict and the server it names, if usable.
fn persistence(
    cookie: &config::Cookie,
    headers: &HeaderMap,
    servers: &[Arc<Server>],
) -> (ClientCookie, Option<Arc<Server>>) {
    let Some((_, value)) = request_cookies(headers).find(|(name, _)| *name == cookie.name) else {
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
/// own value.
fn strip_request_cookie(headers: &mut HeaderMap, cookie: &config::Cookie) {
    let strip = match cookie.mode {
        config::CookieMode::Insert => cookie.indirect,
        config::CookieMode::Prefix => true,
        config::CookieMode::Rewrite => false,
    };
    if !strip || !headers.contains_key(header::COOKIE) {
        return;
    }
    let pairs: Vec<String> = request_cookies(headers)
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
    headers.remove(header::COOKIE);
    if !pairs.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&pairs.join("; ")) {
            headers.insert(header::COOKIE, value);
        }
    }
}

/// Applies the cookie mode to the response's `Set-Cookie` headers for `server`.
fn set_cookie(
    cookie: &config::Cookie,
    headers: &mut HeaderMap,
    server: &Arc<Server>,
    client_had: Option<&Arc<Server>>,
    method: &Method,
) -> ServerCookie {
    let Some(value) = server.cookie.as_deref() else {
        return ServerCookie::Untouched;
    };
    let ours = |v: &HeaderValue| {
        v.to_str().ok().and_then(|text| {
            let (name, _) = text.split_once('=')?;
            (name.trim() == cookie.name).then_some(())
        })
    };
    match cookie.mode {
        config::CookieMode::Insert => {
            let server_set = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|v| ours(v).is_some());
            if server_set && cookie.preserve {
                return ServerCookie::Untouched;
            }
            if server_set {
                let kept: Vec<HeaderValue> = headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter(|v| ours(v).is_none())
                    .cloned()
                    .collect();
                headers.remove(header::SET_COOKIE);
                for v in kept {
                    headers.append(header::SET_COOKIE, v);
                }
            }
            let already = client_had.is_some_and(|s| Arc::ptr_eq(s, server));
            if already || (cookie.postonly && *method != Method::POST) {
                return ServerCookie::Untouched;
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
            let Ok(header_value) = HeaderValue::from_str(&text) else {
                return ServerCookie::Untouched;
            };
            headers.append(header::SET_COOKIE, header_value);
            if cookie.nocache {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
            }
            ServerCookie::Inserted
        }
        config::CookieMode::Rewrite | config::CookieMode::Prefix => {
            let mut changed = false;
            let rewritten: Vec<HeaderValue> = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| {
                    let Some(text) = v.to_str().ok().filter(|_| ours(v).is_some()) else {
                        return v.clone();
                    };
                    let (pair, attributes) =
                        text.split_once(';').map_or((text, ""), |(p, a)| (p, a));
                    let own = pair.split_once('=').map_or("", |(_, v)| v.trim());
                    let new_value = match cookie.mode {
                        config::CookieMode::Prefix => format!("{value}~{own}"),
                        _ => value.to_string(),
                    };
                    let sep = if attributes.is_empty() { "" } else { ";" };
                    match HeaderValue::from_str(&format!(
                        "{}={new_value}{sep}{attributes}",
                        cookie.name
                    )) {
                        Ok(updated) => {
                            changed = true;
                            updated
                        }
                        Err(_) => v.clone(),
                    }
                })
                .collect();
            if !changed {
                return ServerCookie::Untouched;
            }
            headers.remove(header::SET_COOKIE);
            for v in rewritten {
                headers.append(header::SET_COOKIE, v);
            }
            if cookie.mode == config::CookieMode::Prefix {
                ServerCookie::Prefixed
            } else {
                ServerCookie::Rewritten
            }
        }
    }
}

/// What `balance uri|url_param|hdr` hashes, if the request has it.
fn balance_key<B>(balance: &config::Balance, request: &Request<B>) -> Option<Vec<u8>> {
    match balance {
        config::Balance::Uri => Some(request.uri().path().as_bytes().to_vec()),
        config::Balance::UrlParam(name) => request
            .uri()
            .query()
            .and_then(|query| query_param(query, name))
            .map(|value| value.as_bytes().to_vec()),
        config::Balance::Hdr(name) => request
            .headers()
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec()),
        _ => None,
    }
}

/// The key a stick rule takes from the request; `None` when the request lacks it.
fn stick_key<B>(
    sample: &config::StickSample,
    request: &Request<B>,
    client: IpAddr,
    len: usize,
) -> Option<StickKey> {
    match sample {
        config::StickSample::Src => Some(StickKey::Ip(client)),
        config::StickSample::RequestCookie(name) => request_cookies(request.headers())
            .find(|(n, _)| n == name)
            .map(|(_, value)| StickKey::text(value, len)),
        config::StickSample::Header(name) => request
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|value| StickKey::text(value, len)),
        config::StickSample::UrlParam(name) => {
            query_param(request.uri().query()?, name).map(|value| StickKey::text(value, len))
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
fn response_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|text| {
            let pair = text.split(';').next()?;
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| value.trim())
        })
}

/// A short local HTML page for errors Switchyard answers itself.
fn error_page(status: StatusCode, exchange: Exchange) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = match status {
        StatusCode::SERVICE_UNAVAILABLE => "No server is available to handle this request.",
        StatusCode::BAD_GATEWAY => "The server returned an invalid or incomplete response.",
        StatusCode::GATEWAY_TIMEOUT => "The server didn't respond in time.",
        _ => "The request could not be processed.",
    };
    let page = Bytes::from(format!(
        "<html><body><h1>{} {reason}</h1>\n{detail}\n</body></html>\n",
        status.as_u16()
    ));
    let mut exchange = exchange;
    exchange.status = Some(status.as_u16());
    exchange.reusable = None;
    count_response(
        &exchange.shared.conn.frontend,
        exchange.backend.as_deref(),
        None,
        status,
    );
    let head_len = 17 + reason.len() + 90;
    exchange.count_out((head_len + page.len()) as u64);
    let len = page.len();
    let mut response = Response::new(ResponseBody::local(page, exchange));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
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

    #[test]
    fn hop_by_hop_headers_go_and_forwardfor_is_added() {
        let mut original = HeaderMap::new();
        original.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        original.insert("x-secret", HeaderValue::from_static("1"));
        original.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        original.insert(header::HOST, HeaderValue::from_static("db.example"));
        original.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        let forward = config::ForwardFor {
            except: None,
            header: "X-Forwarded-For".into(),
            if_none: false,
        };
        let client: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        let headers = forward_headers(
            original.clone(),
            client,
            Some(&forward),
            None,
            CloseMode::KeepAlive,
            false,
        );
        assert!(!headers.contains_key("x-secret") && !headers.contains_key("keep-alive"));
        assert!(!headers.contains_key(header::CONNECTION));
        let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["192.0.2.1", "10.0.0.7"]);
        let headers = forward_headers(
            original.clone(),
            client,
            None,
            None,
            CloseMode::ServerClose,
            false,
        );
        assert_eq!(headers[header::CONNECTION], "close");
        let if_none = config::ForwardFor {
            if_none: true,
            ..forward.clone()
        };
        let headers = forward_headers(
            original.clone(),
            client,
            Some(&if_none),
            None,
            CloseMode::KeepAlive,
            false,
        );
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        let except = config::ForwardFor {
            except: Some(("10.0.0.0".parse().unwrap(), 8)),
            ..forward
        };
        let headers = forward_headers(
            original.clone(),
            client,
            Some(&except),
            None,
            CloseMode::KeepAlive,
            false,
        );
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn connection_close_is_reported_and_its_named_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert!(!strip_hop_by_hop(&mut headers, false));
        assert_eq!(headers.len(), 1);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Trace, Close"),
        );
        headers.insert("x-trace", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        assert!(strip_hop_by_hop(&mut headers, false));
        assert_eq!(headers.len(), 1);
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(!strip_hop_by_hop(&mut headers, false));
        assert_eq!(headers.len(), 1);
    }

    #[tokio::test]
    async fn a_reused_timer_times_each_request_on_its_own() {
        let timer = ReusedTimer::default();
        let limit = Duration::from_millis(100);
        let times_out = || async {
            let started = Instant::now();
            let late = tokio::time::sleep(Duration::from_secs(5));
            assert_eq!(timer.within(Instant::now(), limit, late).await, None);
            let took = started.elapsed();
            assert!(took >= limit && took < Duration::from_secs(5), "{took:?}");
        };
        assert_eq!(
            timer.within(Instant::now(), limit, async { 1 }).await,
            Some(1)
        );
        times_out().await; // a new timer
        let quick = tokio::time::sleep(Duration::from_millis(20));
        assert_eq!(timer.within(Instant::now(), limit, quick).await, Some(())); // a fired one, re-armed
        times_out().await; // one still armed for an earlier deadline, pushed later
        tokio::time::sleep(limit).await;
        times_out().await;
    }

    #[test]
    fn uri_lengths_match_their_text() {
        for text in [
            "/",
            "/orders/42?user=ann&x=1",
            "/?",
            "*",
            "db.example:443",
            "http://db.example/a?b",
            "https://db.example:8443",
            "http://user@db.example:80/p/q?",
        ] {
            let uri: http::Uri = text.parse().unwrap();
            assert_eq!(uri_len(&uri), uri.to_string().len(), "{text}");
        }
    }

    #[test]
    fn balance_keys_from_the_request() {
        let request = Request::builder()
            .uri("/orders/42?user=ann&x=1")
            .header("x-tenant", "blue")
            .body(())
            .unwrap();
        assert_eq!(
            balance_key(&config::Balance::Uri, &request).unwrap(),
            b"/orders/42"
        );
        assert_eq!(
            balance_key(&config::Balance::UrlParam("user".into()), &request).unwrap(),
            b"ann"
        );
        assert_eq!(
            balance_key(&config::Balance::UrlParam("y".into()), &request),
            None
        );
        assert_eq!(
            balance_key(&config::Balance::Hdr("X-Tenant".into()), &request).unwrap(),
            b"blue"
        );
        assert_eq!(balance_key(&config::Balance::RoundRobin, &request), None);
    }
}
