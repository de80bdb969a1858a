//! One proxied TCP session: pick a server (queueing if needed), connect with retries and
//! redispatch, forward, then log the way HAProxy's `option tcplog` does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use switchyard_log::{SessionState, TcpLogRecord, TerminationCause};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::forward::{self, ByteSink, Ending, Limits, Relayed, Side};
use crate::select::{self, Lease, NoServer};
use crate::state::{Backend, Frontend, KillCause, Process, Server, SessionGuard, SessionInfo};

/// Turns (changes of the sending side) a session of a `kernel-forward` proxy makes in user
/// space before it moves to the kernel. A database session passes them in its first few
/// queries (pgbench -S: startup, then two a transaction); a connection per query (pgbench
/// -C: about six) or a short exchange never moves, and the move's cost (~20 system calls)
/// is not paid where it cannot be won back (docs/performance.md, "In-kernel forwarding").
const KERNEL_FORWARD_AFTER_TURNS: u32 = 16;

/// Everything a session needs, owned so the task is `'static`.
pub struct Session {
    pub process: Arc<Process>,
    pub frontend: Arc<Frontend>,
    /// `None` once handed to the kernel (`option kernel-forward`), which closes it.
    pub client: Option<TcpStream>,
    pub client_addr: SocketAddr,
    pub local_addr: SocketAddr,
    pub accepted_at: SystemTime,
    pub accepted: Instant,
    /// The connection starts with a PROXY protocol header (`accept-proxy`).
    pub accept_proxy: bool,
    /// TLS to terminate (`bind ... ssl`), after the PROXY header if any.
    pub tls: Option<crate::tls::TlsListener>,
    pub _slots: Slots,
}

/// Held for a session's whole life: its global and frontend `maxconn` slots, and the client
/// socket's place in the descriptor count that pooling yields to.
pub type Slots = (
    crate::state::ProcessSlot,
    OwnedSemaphorePermit,
    crate::pool::Descriptor,
);

/// What the log line needs to know about how the session went.
struct Outcome {
    backend: Option<Arc<Backend>>,
    server: Option<Arc<Server>>,
    queue_wait: Option<Duration>,
    connect_time: Option<Duration>,
    upstream: u64,
    downstream: u64,
    cause: TerminationCause,
    state: SessionState,
    retries: u32,
    redispatched: bool,
    srv_queue: u32,
    backend_queue: u32,
    /// The server slot and the backend's session count are released only after the session
    /// is logged, so the log's `beconn`/`srv_conn` include this session, as in HAProxy.
    lease: Option<Lease>,
    backend_session: Option<BackendSession>,
}

/// Counts a session on a backend for as long as it lives.
pub(crate) struct BackendSession(Arc<Backend>);

impl BackendSession {
    pub(crate) fn start(backend: &Arc<Backend>) -> Self {
        backend.counters.session_started();
        BackendSession(Arc::clone(backend))
    }
}

impl Drop for BackendSession {
    fn drop(&mut self) {
        self.0.counters.session_ended();
    }
}

/// Counts bytes on the frontend, backend and server at once, live.
struct Sinks<'a> {
    frontend: &'a Frontend,
    backend: &'a Backend,
    server: &'a Server,
}

impl ByteSink for Sinks<'_> {
    fn add_upstream(&self, bytes: u64) {
        self.frontend
            .counters
            .bytes_in
            .fetch_add(bytes, Ordering::Relaxed);
        self.backend
            .counters
            .bytes_in
            .fetch_add(bytes, Ordering::Relaxed);
        self.server
            .counters
            .bytes_in
            .fetch_add(bytes, Ordering::Relaxed);
    }
    fn add_downstream(&self, bytes: u64) {
        self.frontend
            .counters
            .bytes_out
            .fetch_add(bytes, Ordering::Relaxed);
        self.backend
            .counters
            .bytes_out
            .fetch_add(bytes, Ordering::Relaxed);
        self.server
            .counters
            .bytes_out
            .fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Session {
    /// A `mode http` connection, which [`Session::run_http`] serves; else a TCP session,
    /// which [`Session::into_tcp_task`] relays.
    pub(crate) fn is_http(&self) -> bool {
        self.frontend.http.is_some()
    }

    /// A TCP session's task, boxed: `tokio::spawn` then moves a pointer instead of copying
    /// the relay's state (~1.4 KB) through each layer of the spawn, which short connections
    /// pay for at every connection. HTTP connections live longer and take the other trade
    /// (`workers::dispatch`). The two are different futures: a task keeps the size of its
    /// largest state for its whole life, and one future for both made every HTTP
    /// connection carry a TCP relay's state beside its own.
    pub(crate) fn into_tcp_task(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.run_tcp())
    }

    /// What every session does first: the PROXY header, the TLS handshake, counters, the
    /// connection's log line, its registration. `None`: the connection ended there.
    ///
    /// Boxed: an `async fn` keeps a by-value argument twice in its state (the argument and
    /// the local it is moved into), and the session's fields would be both for its life.
    async fn start(mut self: Box<Self>) -> Option<(Box<Self>, SessionGuard)> {
        let process = Arc::clone(&self.process);
        let frontend = Arc::clone(&self.frontend);
        if self.accept_proxy {
            // Boxed, as the other setup steps below: a task's allocation is as large as its
            // largest state, and an idle session should not keep the size of its setup.
            let client = self.client.as_ref()?;
            match Box::pin(read_proxy_header(client, frontend.timeouts.client)).await {
                Ok(Some(addresses)) => {
                    self.client_addr = addresses.source;
                    self.local_addr = addresses.destination;
                }
                Ok(None) => {}
                Err(error) => {
                    // As HAProxy: the connection is closed without forwarding anything.
                    tracing::warn!(frontend = %frontend.name, client = %self.client_addr, %error, "PROXY protocol header rejected");
                    return None;
                }
            }
        }
        if let Some(tls) = self.tls.take() {
            let Session {
                process,
                frontend,
                client,
                client_addr,
                local_addr,
                accepted_at,
                accepted,
                accept_proxy,
                tls: _,
                _slots,
            } = *self;
            let timeout = frontend.timeouts.client.unwrap_or(Duration::from_secs(5));
            let client = match Box::pin(tls.accept(client?, timeout)).await {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(frontend = %frontend.name, client = %client_addr, %error, "TLS handshake failed");
                    return None;
                }
            };
            *self = Session {
                process,
                frontend,
                client: Some(client),
                client_addr,
                local_addr,
                accepted_at,
                accepted,
                accept_proxy,
                tls: None,
                _slots,
            };
        }
        process.total.fetch_add(1, Ordering::Relaxed);
        process.session_rate.add(crate::rate::now_ms());
        frontend.counters.session_started();
        if let Some(client) = &self.client {
            tune_client(client, frontend.tcpka);
        }
        let per_request_log = frontend.http.as_ref().is_some_and(|h| h.httplog);
        if !frontend.log.tcplog && !per_request_log {
            if let Some(logger) = &frontend.log.logger {
                logger.log(
                    switchyard_config::Level::Info,
                    &switchyard_log::format_connect(
                        self.client_addr,
                        self.local_addr,
                        &frontend.name,
                        "TCP",
                    ),
                );
            }
        }

        let registered = process
            .sessions
            .register(self.client_addr, self.local_addr, &frontend);
        Some((self, registered))
    }

    /// A `mode http` connection: HTTP logs one line per request (`option httplog`), not one
    /// per connection.
    pub(crate) async fn run_http(self: Box<Self>) {
        let tls = self.tls.is_some();
        let Some((session, registered)) = self.start().await else {
            return;
        };
        let Some((connection, client, slots)) = session.into_http(registered, tls) else {
            return;
        };
        crate::http::serve(&connection, client).await;
        let crate::http::Connection { session, .. } = connection;
        let frontend = Arc::clone(&session.info.frontend);
        drop(session);
        frontend.counters.session_ended();
        // Last: the process counts the connection until here (`ProcessSlot`).
        drop(slots);
    }

    /// What a `mode http` connection keeps once set up. A plain function, so that the box is
    /// freed here: taken apart in an `async fn`, it would stay allocated until the end.
    #[allow(clippy::boxed_local)] // the point: the caller's box ends here
    fn into_http(
        self: Box<Self>,
        session: SessionGuard,
        tls: bool,
    ) -> Option<(crate::http::Connection, TcpStream, Slots)> {
        let Session {
            process,
            client,
            _slots: slots,
            ..
        } = *self;
        let connection = crate::http::Connection {
            process,
            session,
            tls,
        };
        Some((connection, client?, slots))
    }

    /// A `mode tcp` session: relayed, then logged as `option tcplog` does.
    async fn run_tcp(self: Box<Self>) {
        let Some((mut session, registered)) = self.start().await else {
            return;
        };
        let outcome = session.proxy(&registered.info).await;
        let (process, frontend) = (&session.process, &session.frontend);
        drop(registered);

        if frontend.log.tcplog {
            if let Some(logger) = &frontend.log.logger {
                let quiet = frontend.log.dontlognull && outcome.upstream == 0;
                if !quiet {
                    let line = log_line(
                        process,
                        frontend,
                        &outcome,
                        session.client_addr,
                        session.accepted_at,
                        session.accepted.elapsed(),
                    );
                    logger.log(switchyard_config::Level::Info, &line);
                }
            }
        }
        drop(outcome);
        frontend.counters.session_ended();
        // The session's box goes next, the client socket closed before its `ProcessSlot`
        // uncounts it.
    }

    async fn proxy(&mut self, info: &SessionInfo) -> Outcome {
        let mut outcome = Outcome {
            backend: self.frontend.backend.clone(),
            server: None,
            queue_wait: None,
            connect_time: None,
            upstream: 0,
            downstream: 0,
            cause: TerminationCause::Proxy,
            state: SessionState::Request,
            retries: 0,
            redispatched: false,
            srv_queue: 0,
            backend_queue: 0,
            lease: None,
            backend_session: None,
        };
        let Some(backend) = self.frontend.backend.clone() else {
            // No backend to send to: HAProxy logs this as a proxy-side refusal.
            outcome.cause = TerminationCause::Proxy;
            outcome.state = SessionState::Request;
            return outcome;
        };
        outcome.backend_session = Some(BackendSession::start(&backend));
        if let Some((server_stream, socket, lease)) =
            Box::pin(self.connect(&backend, &mut outcome)).await
        {
            outcome.server = Some(Arc::clone(&lease.server));
            *crate::lock(&info.server) = Some((Arc::clone(&backend), Arc::clone(&lease.server)));
            self.relay(&backend, server_stream, &lease.server, info, &mut outcome)
                .await;
            drop(socket);
            outcome.lease = Some(lease);
        }
        outcome
    }

    /// Assigns a server and connects, retrying and redispatching as configured.
    async fn connect(
        &self,
        backend: &Arc<Backend>,
        outcome: &mut Outcome,
    ) -> Option<(TcpStream, crate::pool::Descriptor, Lease)> {
        // In TCP, only the client address can key a stick table (the parser sees to it).
        let stick_key = crate::stick::StickKey::Ip(self.client_addr.ip());
        let stick = backend.stick.as_ref().map(|t| &t.rules);
        let by_src = |rule: &Option<switchyard_config::StickSample>| {
            (*rule == Some(switchyard_config::StickSample::Src)).then_some(&stick_key)
        };
        let hint = select::Hint {
            client: Some(self.client_addr.ip()),
            stick_match: stick.and_then(|r| by_src(&r.match_on)),
            stick_store: stick.and_then(|r| by_src(&r.store_request)),
            ..select::Hint::default()
        };
        let mut report = ConnectReport::default();
        let connected = connect_server(
            backend,
            hint,
            (self.client_addr, self.local_addr),
            || client_closed(self.client.as_ref()),
            None::<&mut Reuse<'_, std::convert::Infallible>>,
            &mut report,
        )
        .await
        .map(|(connection, lease)| match connection {
            Connected::Fresh(stream, socket) => (stream, socket, lease),
            Connected::Reused(never) => match never {},
        });
        outcome.queue_wait = report.queue_wait;
        outcome.connect_time = report.connect_time;
        outcome.retries = report.retries;
        outcome.redispatched = report.redispatched;
        outcome.backend_queue = report.backend_queue;
        if let Some(failure) = report.failure {
            outcome.server = report.server;
            outcome.cause = failure.cause;
            outcome.state = failure.state;
        }
        connected
    }

    /// A plain `fn` around an `async move` block rather than an `async fn`: an async fn keeps
    /// each argument twice in its state (as passed, and moved into a local), 64 bytes of
    /// every TCP session's future here.
    #[allow(clippy::manual_async_fn)] // the point: see above
    fn relay<'a>(
        &'a mut self,
        backend: &'a Arc<Backend>,
        server_stream: TcpStream,
        server: &'a Server,
        info: &'a SessionInfo,
        outcome: &'a mut Outcome,
    ) -> impl Future<Output = ()> + Send + 'a {
        async move {
            let timeouts = &self.frontend.timeouts;
            let limits = Limits {
                client: timeouts.client,
                server: backend.timeouts.server,
                client_fin: timeouts.client_fin,
                server_fin: backend.timeouts.server_fin,
                tunnel: backend.timeouts.tunnel,
            };
            let sinks = Sinks {
                frontend: &self.frontend,
                backend,
                server,
            };
            let mut server_stream = server_stream;
            // `option kernel-forward`: the session starts in user space and moves to the
            // kernel once it has settled into small request/response turns.
            let mut settle_after = if self.frontend.kernel_forward || backend.kernel_forward {
                KERNEL_FORWARD_AFTER_TURNS
            } else {
                0
            };
            // Bytes carried in user space before a move to the kernel (which may refuse it).
            let mut carried = forward::Transferred::default();
            loop {
                let Some(client) = self.client.as_ref() else {
                    return;
                };
                // Kill orders (this server's, or this session's) are polled in place: an
                // idle session keeps no waiter future for them.
                let mut forwarding =
                    std::pin::pin!(forward::forward(client, &server_stream, limits, &sinks)
                        .settle_after(settle_after));
                let killed = tokio::select! {
                    biased;
                    cause = std::future::poll_fn(|cx| info.kill.poll_killed(cx)) => Err(cause),
                    relayed = &mut forwarding => Ok(relayed),
                };
                let (ending, transferred) = match killed {
                    Ok(Relayed::Ended(ending, transferred)) => (ending, transferred),
                    Ok(Relayed::Settled(so_far)) => {
                        let Some(client) = self.client.take() else {
                            return;
                        };
                        carried = carried.then(so_far);
                        let kernel = KernelRelay {
                            limits,
                            sinks: &sinks,
                            info,
                            capacity: self.process.hard_maxconn.saturating_mul(2),
                            carried,
                        };
                        // Boxed: a session relayed in user space keeps no room for it.
                        let back =
                            Box::pin(kernel.run(client, server_stream, backend, server, outcome));
                        let Some((client, server)) = back.await else {
                            return;
                        };
                        self.client = Some(client);
                        server_stream = server;
                        settle_after = 0;
                        continue;
                    }
                    Err(cause) => {
                        killed_by(cause, carried.then(forwarding.transferred()), outcome);
                        let _ =
                            socket2::SockRef::from(&server_stream).set_linger(Some(Duration::ZERO));
                        let _ = socket2::SockRef::from(client).set_linger(Some(Duration::ZERO));
                        return;
                    }
                };
                record(ending, carried.then(transferred), backend, server, outcome);
                if !matches!(ending, Ending::Closed) {
                    // Reset rather than linger on a broken or timed-out session.
                    let _ = socket2::SockRef::from(&server_stream).set_linger(Some(Duration::ZERO));
                }
                drop(server_stream);
                return;
            }
        }
    }
}

/// A session's relay in the kernel (`option kernel-forward`).
struct KernelRelay<'a> {
    limits: Limits,
    sinks: &'a Sinks<'a>,
    info: &'a SessionInfo,
    capacity: u32,
    /// Bytes carried in user space before.
    carried: forward::Transferred,
}

impl KernelRelay<'_> {
    /// Forwards in the kernel until the session ends; the sockets back if the kernel refused
    /// them (they are then relayed in user space).
    async fn run(
        self,
        client: TcpStream,
        server_stream: TcpStream,
        backend: &Backend,
        server: &Server,
        outcome: &mut Outcome,
    ) -> Option<(TcpStream, TcpStream)> {
        let mut linked = match crate::kernel::link(client, server_stream, self.capacity) {
            crate::kernel::Link::Linked(linked) => {
                tracing::debug!(
                    session = format_args!("{:#x}", self.info.id),
                    client = %self.info.client,
                    upstream = self.carried.upstream,
                    downstream = self.carried.downstream,
                    "session settled; forwarded in the kernel from now on"
                );
                linked
            }
            crate::kernel::Link::Refused(client, server) => return Some((client, server)),
            crate::kernel::Link::Lost => {
                outcome.cause = TerminationCause::Proxy;
                outcome.state = SessionState::Data;
                return None;
            }
        };
        let killed = tokio::select! {
            biased;
            cause = std::future::poll_fn(|cx| self.info.kill.poll_killed(cx)) => Err(cause),
            result = linked.run(self.limits, self.sinks) => Ok(result),
        };
        match killed {
            Ok((ending, transferred)) => {
                record(
                    ending,
                    self.carried.then(transferred),
                    backend,
                    server,
                    outcome,
                );
                // As in user space: a broken or timed-out session resets its server side.
                linked.reset_on_close(false, !matches!(ending, Ending::Closed));
            }
            Err(cause) => {
                killed_by(
                    cause,
                    self.carried.then(linked.carried(self.sinks)),
                    outcome,
                );
                linked.reset_on_close(true, true);
            }
        }
        None
    }
}

/// A kill order's cause, and the bytes carried until then, in the session's log line.
fn killed_by(cause: KillCause, transferred: forward::Transferred, outcome: &mut Outcome) {
    outcome.upstream = transferred.upstream;
    outcome.downstream = transferred.downstream;
    outcome.cause = match cause {
        KillCause::Down => TerminationCause::Down,
        KillCause::Up => TerminationCause::Up,
        KillCause::Admin => TerminationCause::Killed,
    };
    outcome.state = SessionState::Data;
}

/// How forwarding ended, in the log line and the server's and backend's counters.
fn record(
    ending: Ending,
    transferred: forward::Transferred,
    backend: &Backend,
    server: &Server,
    outcome: &mut Outcome,
) {
    outcome.upstream = transferred.upstream;
    outcome.downstream = transferred.downstream;
    outcome.state = SessionState::Data;
    match ending {
        Ending::Closed => {
            outcome.cause = TerminationCause::Normal;
            outcome.state = SessionState::Closed;
        }
        Ending::Aborted(Side::Client) => {
            outcome.cause = TerminationCause::ClientAbort;
            for counters in [&server.counters, &backend.counters] {
                counters.client_aborts.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ending::Aborted(Side::Server) => {
            outcome.cause = TerminationCause::ServerAbort;
            for counters in [&server.counters, &backend.counters] {
                counters.server_aborts.fetch_add(1, Ordering::Relaxed);
                counters.response_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ending::TimedOut(Side::Client) => outcome.cause = TerminationCause::ClientTimeout,
        Ending::TimedOut(Side::Server) => outcome.cause = TerminationCause::ServerTimeout,
    }
}

/// Gives an idle connection to a server, if there is one to reuse.
pub(crate) type Reuse<'a, T> = dyn FnMut(&Arc<Server>) -> Option<T> + Send + 'a;

/// A server connection: new, or an idle one `connect_server` was allowed to reuse.
pub(crate) enum Connected<T> {
    /// A new connection, and its socket's place in the descriptor count.
    Fresh(TcpStream, crate::pool::Descriptor),
    Reused(T),
}

/// The termination state a failure to get a server connection is logged with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed {
    pub cause: TerminationCause,
    pub state: SessionState,
}

/// How assigning a server and connecting to it went: what the log line reports.
#[derive(Debug, Default)]
pub(crate) struct ConnectReport {
    pub queue_wait: Option<Duration>,
    pub connect_time: Option<Duration>,
    pub retries: u32,
    pub redispatched: bool,
    pub backend_queue: u32,
    /// The server of the last failed attempt.
    pub server: Option<Arc<Server>>,
    pub failure: Option<Failed>,
}

impl ConnectReport {
    fn fail(&mut self, cause: TerminationCause, state: SessionState) {
        self.failure = Some(Failed { cause, state });
    }
}

/// Assigns a server of `backend` (queueing if needed) and connects to it, retrying and
/// redispatching as configured; sends the PROXY header and completes TLS when the server
/// asks for them. `addresses` are the client's and the local (frontend) address;
/// `client_gone` completes when the client leaves while waiting for a server.
pub(crate) async fn connect_server<F, G, T>(
    backend: &Arc<Backend>,
    hint: select::Hint<'_>,
    addresses: (SocketAddr, SocketAddr),
    client_gone: G,
    mut reuse: Option<&mut Reuse<'_, T>>,
    report: &mut ConnectReport,
) -> Option<(Connected<T>, Lease)>
where
    G: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    let connect_timeout = backend.timeouts.connect;
    // HAProxy falls back to the connect timeout when no queue timeout is set.
    let queue_timeout = backend.timeouts.queue.or(connect_timeout);
    let mut avoid: Option<Arc<Server>> = None;
    let mut lease: Option<Lease> = None;
    let mut attempt: u32 = 0;
    loop {
        let current = match lease.take() {
            Some(lease) => lease,
            None => {
                let assigned = tokio::select! {
                    // A server that is free right away wins over a client that already left.
                    biased;
                    assigned = select::assign(backend, hint, avoid.as_ref(), queue_timeout) => assigned,
                    () = client_gone() => {
                        report.fail(TerminationCause::ClientAbort, SessionState::Queue);
                        return None;
                    }
                };
                match assigned {
                    Ok((lease, waited)) => {
                        report.queue_wait = Some(report.queue_wait.unwrap_or_default() + waited);
                        lease
                    }
                    Err((reason, waited)) => {
                        report.queue_wait = Some(report.queue_wait.unwrap_or_default() + waited);
                        report.backend_queue =
                            backend.counters.queue_current.load(Ordering::Relaxed);
                        let (cause, state) = match reason {
                            NoServer::Unavailable => {
                                (TerminationCause::ServerAbort, SessionState::Connect)
                            }
                            NoServer::QueueTimeout => {
                                (TerminationCause::ServerTimeout, SessionState::Queue)
                            }
                            NoServer::QueueFull => {
                                (TerminationCause::Resource, SessionState::Queue)
                            }
                        };
                        report.fail(cause, state);
                        return None;
                    }
                }
            }
        };
        // An idle connection to the chosen server (HTTP keep-alive) spares a new one.
        let reused = reuse.as_mut().and_then(|reuse| reuse(&current.server));
        // Short of descriptors, an idle connection of the server closes, reused or not
        // (HAProxy's `connect_server`).
        current.server.pool.make_room(crate::workers::current());
        if let Some(reused) = reused {
            report.connect_time = Some(Duration::ZERO);
            return Some((Connected::Reused(reused), current));
        }
        // Counted as HAProxy counts a connection it allocates (`used_max`, `need_est`).
        current.server.pool.passing();
        let target = current.server.target(addresses.1.port());
        let started = Instant::now();
        let result = match connect_to(target, connect_timeout, backend.tcpka).await {
            Ok(stream) => match current.server.send_proxy {
                Some(version) => send_proxy_header(stream, version, addresses.0, addresses.1).await,
                None => Ok(stream),
            },
            Err(error) => Err(error),
        };
        let result = match (result, &current.server.tls) {
            // Boxed: the handshake's state is ~2.7 KB, and every session's and every HTTP
            // exchange's future would otherwise be that much larger, TLS or not.
            (Ok(stream), Some(tls)) => {
                Box::pin(tls.connect(stream, connect_timeout.unwrap_or(Duration::from_secs(5))))
                    .await
            }
            (result, _) => result,
        };
        match result {
            Ok(stream) => {
                crate::health::report_traffic_success(&current.server);
                report.connect_time = Some(started.elapsed());
                return Some((
                    Connected::Fresh(stream, crate::pool::Descriptor::open()),
                    current,
                ));
            }
            Err(error) => {
                tracing::debug!(server = %current.server.name, %target, %error, "connect failed");
                crate::health::report_traffic_error(backend, &current.server);
                current
                    .server
                    .counters
                    .connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                backend
                    .counters
                    .connect_errors
                    .fetch_add(1, Ordering::Relaxed);
                if attempt >= backend.retries {
                    report.server = Some(Arc::clone(&current.server));
                    report.connect_time = None;
                    let cause = if error.kind() == io::ErrorKind::TimedOut {
                        TerminationCause::ServerTimeout
                    } else {
                        TerminationCause::ServerAbort
                    };
                    report.fail(cause, SessionState::Connect);
                    return None;
                }
                attempt += 1;
                report.retries = attempt;
                current
                    .server
                    .counters
                    .retries
                    .fetch_add(1, Ordering::Relaxed);
                backend.counters.retries.fetch_add(1, Ordering::Relaxed);
                if redispatch_now(backend.redispatch, attempt, backend.retries) {
                    report.redispatched = true;
                    current
                        .server
                        .counters
                        .redispatches
                        .fetch_add(1, Ordering::Relaxed);
                    backend
                        .counters
                        .redispatches
                        .fetch_add(1, Ordering::Relaxed);
                    avoid = Some(Arc::clone(&current.server));
                    drop(current);
                } else {
                    // HAProxy's turn-around timer: do not hammer a restarting server.
                    let pause = connect_timeout
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(1));
                    if error.kind() != io::ErrorKind::TimedOut {
                        tokio::time::sleep(pause).await;
                    }
                    lease = Some(current);
                }
            }
        }
    }
}

/// HAProxy's redispatch rule: a positive interval P redispatches on every P-th retry; a
/// negative N redispatches on the N-th retry before the last (-1 = the last retry).
fn redispatch_now(interval: Option<i32>, attempt: u32, retries: u32) -> bool {
    match interval {
        None | Some(0) => false,
        Some(p) if p > 0 => attempt.is_multiple_of(p.unsigned_abs()),
        Some(n) => {
            let from_end = n.unsigned_abs();
            retries + 1 >= from_end && attempt == retries + 1 - from_end
        }
    }
}

fn tune_client(stream: &TcpStream, keepalive: bool) {
    let _ = stream.set_nodelay(true);
    if keepalive {
        let _ = socket2::SockRef::from(stream).set_keepalive(true);
    }
}

async fn connect_to(
    target: SocketAddr,
    timeout: Option<Duration>,
    keepalive: bool,
) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    if keepalive {
        socket.set_keepalive(true)?;
    }
    let connect = connect_nonblocking(socket, target);
    match timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timeout connect expired"))?,
        None => connect.await,
    }
}

/// Connects a non-blocking socket and waits until the connection is made. Tokio's
/// `TcpSocket::connect` asks the socket for its error (`getsockopt(SO_ERROR)`) once it is
/// writable, every time; as HAProxy, this asks only when the poller reported an error or a
/// hang-up with it: a socket that became writable without either is connected. One system
/// call fewer per server connection.
async fn connect_nonblocking(socket: socket2::Socket, target: SocketAddr) -> io::Result<TcpStream> {
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    // Resolves writable or write-closed; mio reports EPOLLERR and EPOLLHUP as write-closed.
    if stream.ready(Interest::WRITABLE).await?.is_write_closed() {
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
    }
    Ok(stream)
}

/// Reads a PROXY protocol header (`accept-proxy`) and consumes exactly its bytes: it peeks
/// at what arrived so the payload that follows stays in the socket for the server.
/// `Ok(None)`: a header without addresses (LOCAL, UNKNOWN), the real ones stand.
async fn read_proxy_header(
    client: &TcpStream,
    timeout: Option<Duration>,
) -> io::Result<Option<switchyard_proxyproto::Addresses>> {
    let read = async {
        let mut buf = vec![0u8; switchyard_proxyproto::MAX_HEADER];
        let mut seen = 0;
        loop {
            let n = client.peek(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the PROXY header",
                ));
            }
            match switchyard_proxyproto::parse(&buf[..n]) {
                Ok(Some(header)) => {
                    consume(client, header.length).await?;
                    return Ok(header.addresses);
                }
                Ok(None) if n == buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "PROXY header too long",
                    ))
                }
                Ok(None) => {
                    if n == seen {
                        // `peek` returns at once while data is queued: wait for more.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    seen = n;
                }
                Err(error) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        error.to_string(),
                    ))
                }
            }
        }
    };
    // HAProxy bounds the handshake by `timeout client`.
    match tokio::time::timeout(timeout.unwrap_or(Duration::from_secs(5)), read).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no complete PROXY header in time",
        )),
    }
}

/// Reads and drops exactly `length` bytes (already known to be queued).
async fn consume(client: &TcpStream, length: usize) -> io::Result<()> {
    let mut header = vec![0u8; length];
    let mut taken = 0;
    while taken < length {
        client.readable().await?;
        match client.try_read(&mut header[taken..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the PROXY header",
                ))
            }
            Ok(k) => taken += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the PROXY header (`send-proxy`, `send-proxy-v2`) before anything else on a fresh
/// server connection.
async fn send_proxy_header(
    mut stream: TcpStream,
    version: switchyard_config::ProxyProtocol,
    client: SocketAddr,
    local: SocketAddr,
) -> io::Result<TcpStream> {
    use tokio::io::AsyncWriteExt;
    let header = match version {
        switchyard_config::ProxyProtocol::V1 => switchyard_proxyproto::encode_v1(client, local),
        switchyard_config::ProxyProtocol::V2 => switchyard_proxyproto::encode_v2(client, local),
    };
    stream.write_all(&header).await?;
    Ok(stream)
}

/// Completes when the client closes or resets while we are still choosing a server.
async fn client_closed(client: Option<&TcpStream>) {
    let Some(client) = client else {
        return;
    };
    let mut probe = [0u8; 1];
    loop {
        if client.readable().await.is_err() {
            return;
        }
        match client.peek(&mut probe).await {
            // Data waiting is fine: it will be forwarded once connected. Stop polling so we
            // don't spin on a readable socket; only a close matters here.
            Ok(0) | Err(_) => return,
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

fn log_line(
    process: &Process,
    frontend: &Frontend,
    outcome: &Outcome,
    client: SocketAddr,
    accepted_at: SystemTime,
    total: Duration,
) -> String {
    let backend_name = outcome
        .backend
        .as_ref()
        .map_or(frontend.name.as_str(), |b| b.name.as_str());
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let record = TcpLogRecord {
        backend: Some(backend_name),
        server: outcome.server.as_ref().map(|s| s.name.as_str()),
        tw: outcome.queue_wait.map(millis),
        tc: outcome.connect_time.map(millis),
        tt: millis(total),
        logasap: false,
        bytes_read: outcome.downstream,
        termination: outcome.cause,
        state: outcome.state,
        actconn: process.active.load(Ordering::Relaxed),
        feconn: frontend.counters.current.load(Ordering::Relaxed),
        beconn: outcome
            .backend
            .as_ref()
            .map_or(0, |b| b.counters.current.load(Ordering::Relaxed)),
        srv_conn: outcome
            .server
            .as_ref()
            .map_or(0, |s| s.counters.current.load(Ordering::Relaxed)),
        retries: outcome.retries,
        redispatched: outcome.redispatched,
        srv_queue: outcome.srv_queue,
        backend_queue: outcome.backend_queue,
        ..TcpLogRecord::new(client, accepted_at, &frontend.name)
    };
    switchyard_log::format_tcplog(&record)
}

#[cfg(test)]
mod tests {
    use super::{connect_to, redispatch_now};
    use std::time::Duration;

    /// The connect without `SO_ERROR` on success still tells a refused connection from a
    /// made one, for IPv4 and IPv6, and data flows over the made one.
    #[tokio::test]
    async fn connect_to_reports_refusals_and_makes_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = tokio::net::TcpListener::bind(loopback).await else {
                continue; // no IPv6 on this host
            };
            let open = listener.local_addr().unwrap();
            let accepting = tokio::spawn(async move {
                let (mut peer, _) = listener.accept().await.unwrap();
                peer.write_all(b"hello").await.unwrap();
            });
            let mut stream = connect_to(open, Some(Duration::from_secs(5)), true)
                .await
                .unwrap();
            assert_eq!(stream.peer_addr().unwrap(), open);
            let mut hello = [0; 5];
            stream.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            accepting.await.unwrap();

            // The port of a listener just closed: nothing listens there.
            let closed = {
                let gone = std::net::TcpListener::bind(loopback).unwrap();
                gone.local_addr().unwrap()
            };
            let error = connect_to(closed, Some(Duration::from_secs(5)), false)
                .await
                .unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{error}"
            );
        }
    }

    #[test]
    fn redispatch_default_is_last_retry() {
        let hits: Vec<u32> = (1..=3)
            .filter(|&a| redispatch_now(Some(-1), a, 3))
            .collect();
        assert_eq!(hits, vec![3]);
    }

    #[test]
    fn redispatch_every_pth_retry() {
        let hits: Vec<u32> = (1..=6).filter(|&a| redispatch_now(Some(2), a, 6)).collect();
        assert_eq!(hits, vec![2, 4, 6]);
    }

    #[test]
    fn redispatch_nth_before_last() {
        let hits: Vec<u32> = (1..=5)
            .filter(|&a| redispatch_now(Some(-2), a, 5))
            .collect();
        assert_eq!(hits, vec![4]);
        assert!(!(1..=3).any(|a| redispatch_now(None, a, 3)));
    }
}
