//! Switchyard's data plane: listeners, server selection, queueing, retries, forwarding and
//! per-session logging, built from a parsed configuration.
//!
//! [`Engine::build`] turns a [`switchyard_config::Config`] into runtime objects (resolving
//! server names and binding every listener, so configuration mistakes surface before any
//! traffic is accepted); [`Engine::run`] accepts until [`Engine::stop_accepting`] is called.

pub mod busy;
mod control;
mod forward;
mod health;
mod http;
pub mod idle;
mod kernel;
mod listener;
pub mod park;
pub mod persist;
pub mod pool;
pub mod rate;
pub mod resolve;
mod select;
mod session;
pub mod state;
pub mod stick;
mod tls;
mod wheel;
pub mod workers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use switchyard_config::{self as config, Config, Host, ProxyKind};
use tokio::sync::{watch, Notify, Semaphore};

pub use control::{ControlError, Weight};
pub use listener::Listener;
use state::{AdminState, AgentCheck, Backend, Frontend, LogSettings, Process, Server, ServerCheck};

/// Locks `mutex` even if a thread panicked while holding it. Every mutex here guards plain
/// data updated in single steps (lists, maps, records), never left half-changed by a
/// panic; refusing it would turn one failed task into every later session's failure.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connections allowed per process when `global maxconn` is not set, before the file
/// descriptor limit is taken into account.
const DEFAULT_MAXCONN: u32 = 4096;

/// A built engine: runtime objects plus bound listeners, ready to run.
pub struct Engine {
    runtime: Arc<Runtime>,
    listeners: Vec<(Listener, Arc<Frontend>)>,
    /// What a reload could not carry over (dynamic servers of a backend that became
    /// static...), for the operator.
    notices: Vec<String>,
}

/// The runtime objects of a running engine, shared with the control plane (Runtime API,
/// health checks): everything that can be looked at or changed while traffic flows.
pub struct Runtime {
    pub process: Arc<Process>,
    pub frontends: Vec<Arc<Frontend>>,
    pub backends: Vec<Arc<Backend>>,
    /// Turns true when the engine stops; background tasks (checks) watch it.
    stop: watch::Sender<bool>,
    /// Signalled when server state changes without an operator command (check
    /// transitions); the runtime state file writer waits on it.
    pub changes: Arc<Notify>,
    /// A second descriptor of every listening socket, by configured address, so that a
    /// reload can hand the very same sockets to the next engine: connections waiting in the
    /// kernel's queue are accepted by whichever engine is running, never refused.
    listen_sockets: std::sync::Mutex<Vec<(SocketAddr, socket2::Socket)>>,
    /// The `resolvers` sections, for servers added at runtime.
    pub resolvers: resolve::Sections,
}

impl Runtime {
    /// Closes this engine's hold on its listening sockets once a reload has taken over the
    /// ones it kept; the others (binds removed from the configuration) close for good.
    pub fn release_listeners(&self) {
        lock(&self.listen_sockets).clear();
    }

    /// The listening sockets (configured address, descriptor) for a replacing process; the
    /// descriptors stay valid while this runtime holds them (until `release_listeners`).
    pub fn listening_fds(&self) -> Vec<(SocketAddr, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd;
        lock(&self.listen_sockets)
            .iter()
            .map(|(addr, socket)| (*addr, socket.as_raw_fd()))
            .collect()
    }

    fn inherited_socket(&self, addr: SocketAddr) -> Option<std::io::Result<socket2::Socket>> {
        let sockets = lock(&self.listen_sockets);
        sockets
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, socket)| socket.try_clone())
    }
}

impl Engine {
    /// Builds runtime objects and binds all listeners. Must run inside a tokio runtime
    /// (listeners register with its reactor).
    pub async fn build(config: &Config) -> anyhow::Result<Engine> {
        Self::build_with(config, None, Vec::new()).await
    }

    /// Builds with listening sockets received from the process this one replaces (`-x`):
    /// an address found among them is used as is instead of being bound again.
    pub async fn build_inheriting(
        config: &Config,
        sockets: Vec<(SocketAddr, socket2::Socket)>,
    ) -> anyhow::Result<Engine> {
        Self::build_with(config, None, sockets).await
    }

    /// Builds the engine that replaces `previous` on a reload. Listening sockets whose
    /// address did not change are shared, not rebound; servers whose `server` line did not
    /// change are the very same objects (health, admin state, weight, counters and live
    /// sessions carry over); dynamic servers move to the new backend of the same name;
    /// frontend and backend counters carry over by name.
    pub async fn reload(config: &Config, previous: &Runtime) -> anyhow::Result<Engine> {
        Self::build_with(config, Some(previous), Vec::new()).await
    }

    async fn build_with(
        config: &Config,
        previous: Option<&Runtime>,
        mut received: Vec<(SocketAddr, socket2::Socket)>,
    ) -> anyhow::Result<Engine> {
        // Each session needs two descriptors: take all the process is allowed.
        let nofile = listener::raise_nofile_limit();
        forward::set_splice(!config.global.nosplice);
        let maxconn = config
            .global
            .maxconn
            .unwrap_or_else(|| default_maxconn(nofile));
        let process = Arc::new(Process {
            maxconn: AtomicU32::new(maxconn),
            hard_maxconn: maxconn,
            slots: Arc::new(Semaphore::new(maxconn as usize)),
            active: AtomicU32::new(0),
            total: AtomicU64::new(0),
            connection_rate: Default::default(),
            session_rate: Default::default(),
            started: Instant::now(),
            idle: Notify::new(),
            sessions: previous.map_or_else(Arc::default, |p| Arc::clone(&p.process.sessions)),
            generation: previous.map_or(0, |p| p.process.generation + 1),
        });
        let mut notices = Vec::new();

        let tag = config
            .global
            .log_tag
            .clone()
            .unwrap_or_else(|| "haproxy".to_string());
        let hostname = config.global.log_send_hostname.as_deref();

        let sections = resolve::sections(config)?;
        let changes = previous.map_or_else(|| Arc::new(Notify::new()), |p| Arc::clone(&p.changes));
        let mut backends_by_name: HashMap<&str, Arc<Backend>> = HashMap::new();
        let mut backends = Vec::new();
        for proxy in config
            .proxies
            .iter()
            // Stats-only proxies (`mode http`, `stats enable`, no servers) are served by the
            // stats HTTP server, not by the TCP data plane.
            .filter(|p| p.kind.has_backend() && !p.disabled && !p.is_stats_only())
        {
            let logger = open_logger(proxy, &tag, hostname)?;
            let before = previous.and_then(|p| p.backends.iter().find(|b| b.name == proxy.name));
            let backend = Arc::new(
                build_backend(
                    proxy,
                    logger,
                    Arc::clone(&changes),
                    before,
                    &sections,
                    &process.sessions,
                    &mut notices,
                )
                .await?,
            );
            backends_by_name.insert(proxy.name.as_str(), Arc::clone(&backend));
            backends.push(backend);
        }

        let mut frontends = Vec::new();
        let mut listeners = Vec::new();
        let mut listen_sockets = Vec::new();
        for proxy in config
            .proxies
            .iter()
            .filter(|p| p.kind.has_frontend() && !p.disabled && !p.is_stats_only())
        {
            let target = proxy
                .use_backends
                .first()
                .map(|rule| rule.backend.as_str())
                .or(proxy.default_backend.as_deref())
                .or((proxy.kind == ProxyKind::Listen).then_some(proxy.name.as_str()));
            let backend = match target {
                Some(name) => Some(Arc::clone(backends_by_name.get(name).ok_or_else(|| {
                    anyhow!(
                        "{}: proxy '{}' routes to unknown backend '{name}'",
                        proxy.span,
                        proxy.name
                    )
                })?)),
                None => None,
            };
            let logger = open_logger(proxy, &tag, hostname)?;
            let fe_maxconn = proxy.maxconn.unwrap_or(maxconn);
            let frontend = Arc::new(Frontend {
                name: proxy.name.clone(),
                id: proxy.id,
                listen: proxy.kind == ProxyKind::Listen,
                generation: process.generation,
                backend,
                slots: Arc::new(Semaphore::new(fe_maxconn as usize)),
                maxconn: AtomicU32::new(fe_maxconn),
                timeouts: proxy.timeouts,
                tcpka: proxy.options.tcpka || proxy.options.clitcpka,
                kernel_forward: proxy.options.kernel_forward,
                log: LogSettings {
                    logger,
                    tcplog: proxy.options.tcplog,
                    dontlognull: proxy.options.dontlognull,
                },
                counters: previous
                    .and_then(|p| p.frontends.iter().find(|f| f.name == proxy.name))
                    .map_or_else(Arc::default, |f| Arc::clone(&f.counters)),
                http: (proxy.mode == config::Mode::Http).then(|| http::FrontendHttp {
                    forwardfor: proxy.options.forwardfor.clone(),
                    close: http::CloseMode::of(&proxy.options),
                    httplog: proxy.options.httplog,
                    ignore_probes: proxy.options.http_ignore_probes,
                    max_session_srv_conns: proxy.max_session_srv_conns,
                }),
            });
            for bind in &proxy.binds {
                for address in &bind.addresses {
                    let config::SocketAddress::Inet(addr) = address else {
                        bail!(
                            "{}: unix listeners are not supported for proxies yet",
                            bind.span
                        );
                    };
                    let backlog = bind.backlog.unwrap_or(fe_maxconn.clamp(128, 65535));
                    let handed = received
                        .iter()
                        .position(|(a, _)| a == addr)
                        .map(|i| Ok(received.swap_remove(i).1));
                    let shared = previous.and_then(|p| p.inherited_socket(*addr)).or(handed);
                    let listener = match shared {
                        Some(socket) => socket.and_then(Listener::from_socket),
                        None => {
                            Listener::bind(*addr, backlog, bind.v6only, !config.global.noreuseport)
                        }
                    }
                    .with_context(|| {
                        format!("{}: cannot bind {addr} for '{}'", bind.span, proxy.name)
                    })?;
                    listen_sockets.push((
                        *addr,
                        listener.duplicate().with_context(|| {
                            format!("{}: cannot duplicate the socket of {addr}", bind.span)
                        })?,
                    ));
                    let mut listener = listener;
                    listener.accept_proxy = bind.accept_proxy;
                    listener.tls = tls::TlsListener::from_bind(bind)?;
                    listeners.push((listener, Arc::clone(&frontend)));
                }
            }
            frontends.push(frontend);
        }
        let (maxsock, listening) = haproxy_maxsock(config, maxconn, workers::count());
        pool::set_fd_budget(maxsock, listening);
        let (stop, _) = watch::channel(false);
        Ok(Engine {
            runtime: Arc::new(Runtime {
                process,
                frontends,
                backends,
                stop,
                changes,
                listen_sockets: std::sync::Mutex::new(listen_sockets),
                resolvers: sections,
            }),
            listeners,
            notices,
        })
    }

    /// What a reload could not carry over.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Addresses actually bound (useful when a config asked for port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, f)| l.local_addr().ok().map(|a| (f.name.clone(), a)))
            .collect()
    }

    /// A handle that stops the accept loops when triggered.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: self.runtime.stop.clone(),
            process: Arc::clone(&self.runtime.process),
        }
    }

    /// Turns true when the engine stops accepting: background services stop with it.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.runtime.stop.subscribe()
    }

    /// The runtime objects, for the control plane and for tests.
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime)
    }

    /// Runs every accept loop until stopped. Sessions in flight keep running after this
    /// returns; use [`Stopper::drained`] to wait for them.
    pub async fn run(self) {
        let runtime = self.runtime;
        health::spawn_checks(&runtime.backends, &runtime.stop);
        let floor = tokio::spawn(timer_floor());
        let mut tasks = Vec::new();
        for (listener, frontend) in self.listeners {
            let process = Arc::clone(&runtime.process);
            let stop = runtime.stop.subscribe();
            tasks.push(tokio::spawn(listener.accept_loop(process, frontend, stop)));
        }
        for task in tasks {
            let _ = task.await;
        }
        floor.abort();
    }
}

/// Keeps a timer due within the next half second at all times. Tokio wakes its own driver
/// (an eventfd write, then one more `epoll_wait`) whenever a new timer is due before every
/// pending one; under this floor the connect and inactivity timeouts each session arms,
/// seconds away, never are: two system calls fewer per connection, for two wake-ups a
/// second.
pub(crate) async fn timer_floor() {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle::sample();
        if let Some(work) = HOUSEKEEPING.get() {
            work();
        }
    }
}

/// What each thread does at every tick of its timer floor, besides waking: set once by the
/// binary, which knows the allocator (the engine does not).
static HOUSEKEEPING: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the work every session thread does twice a second (the first call wins). The binary
/// gives its allocator's collection of freed memory: an allocator that returns freed pages
/// to the system only on its next allocations keeps, once a burst of connections is over
/// and the process falls idle, the memory of everything the burst freed.
pub fn set_thread_housekeeping(work: fn()) {
    let _ = HOUSEKEEPING.set(work);
}

/// Stops accepting and waits for sessions to finish.
#[derive(Clone)]
pub struct Stopper {
    stop: watch::Sender<bool>,
    process: Arc<Process>,
}

impl Stopper {
    pub fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    pub fn active_sessions(&self) -> u32 {
        self.process.active.load(Ordering::Relaxed)
    }

    /// Closes the sessions this engine still carries (`hard-stop-after` expired); returns
    /// how many were asked to close.
    pub fn kill_remaining(&self) -> usize {
        self.process
            .sessions
            .kill_generation(self.process.generation)
    }

    /// Completes when no session is left.
    pub async fn drained(&self) {
        loop {
            let idle = self.process.idle.notified();
            if self.active_sessions() == 0 {
                return;
            }
            // Re-check periodically in case the wake-up raced with registration.
            let _ = tokio::time::timeout(Duration::from_millis(200), idle).await;
        }
    }
}

async fn build_backend(
    proxy: &config::Proxy,
    logger: Option<Arc<switchyard_log::Logger>>,
    changes: Arc<Notify>,
    previous: Option<&Arc<Backend>>,
    sections: &resolve::Sections,
    sessions: &Arc<state::SessionRegistry>,
    notices: &mut Vec<String>,
) -> anyhow::Result<Backend> {
    let before = previous.map(|b| b.servers.load_full());
    let mut servers = Vec::with_capacity(proxy.servers.len());
    let mut configured = Vec::with_capacity(proxy.servers.len());
    for server in &proxy.servers {
        let fingerprint = persist::fingerprint(server);
        configured.push((server.name.clone(), fingerprint));
        let origin = state::ServerOrigin::Config { fingerprint };
        if let (Some(previous), Some(before)) = (previous, &before) {
            // Deleted at runtime and unchanged in the configuration: stays deleted.
            let deleted = previous
                .configured
                .contains(&(server.name.clone(), fingerprint))
                && !before.iter().any(|s| s.name == server.name);
            if deleted {
                continue;
            }
            let same = before
                .iter()
                .find(|s| s.name == server.name && s.origin == origin && s.id == server.id);
            if let Some(same) = same {
                servers.push(Arc::clone(same));
                continue;
            }
        }
        let built = new_server(server, origin, sections, sessions)
            .await
            .with_context(|| format!("{}: server '{}/{}'", server.span, proxy.name, server.name))?;
        servers.push(Arc::new(built));
    }
    for added in before.iter().flat_map(|b| b.iter()) {
        if !matches!(added.origin, state::ServerOrigin::Runtime { .. }) {
            continue;
        }
        let label = format!("{}/{}", proxy.name, added.name);
        if proxy.servers.iter().any(|s| s.name == added.name) {
            notices.push(format!(
                "server '{label}' added at runtime is now in the configuration: the configuration wins"
            ));
        } else if !control::accepts_dynamic_servers(&proxy.balance, proxy.hash_type.method) {
            notices.push(format!(
                "server '{label}' added at runtime is dropped: the backend no longer uses a dynamic algorithm"
            ));
        } else {
            servers.push(Arc::clone(added));
        }
    }
    let queue_limit = if !servers.is_empty() && servers.iter().all(|s| s.maxqueue.is_some()) {
        Some(servers.iter().filter_map(|s| s.maxqueue).sum())
    } else {
        None
    };
    Ok(Backend {
        name: proxy.name.clone(),
        id: proxy.id,
        servers: ArcSwap::from_pointee(servers),
        algorithm: switchyard_balance::build(&proxy.balance, &proxy.hash_type),
        balance: proxy.balance.clone(),
        hash_method: proxy.hash_type.method,
        generation: AtomicU64::new(0),
        retries: proxy.retries,
        redispatch: proxy.options.redispatch,
        allbackups: proxy.options.allbackups,
        timeouts: proxy.timeouts,
        tcpka: proxy.options.tcpka || proxy.options.srvtcpka,
        kernel_forward: proxy.options.kernel_forward,
        counters: previous.map_or_else(Arc::default, |b| Arc::clone(&b.counters)),
        slot_freed: Notify::new(),
        queue_limit,
        health_check: proxy.health_check.clone(),
        check_timeout: proxy.timeouts.check,
        log_health_checks: proxy.log_health_checks,
        logger,
        configured,
        changes,
        // Same table settings: the clients keep their servers across a reload.
        stick: proxy
            .stick
            .as_ref()
            .map(|rules| match previous.and_then(|b| b.stick.as_ref()) {
                Some(table) if table.rules == *rules => Arc::clone(table),
                _ => Arc::new(stick::StickTable::new(rules.clone())),
            }),
        http: (proxy.mode == config::Mode::Http).then(|| http::BackendHttp::new(proxy)),
    })
}

/// Runtime state of one `server` line (resolving its address).
pub(crate) async fn new_server(
    server: &config::Server,
    origin: state::ServerOrigin,
    sections: &resolve::Sections,
    sessions: &Arc<state::SessionRegistry>,
) -> anyhow::Result<Server> {
    let dynamic = matches!(origin, state::ServerOrigin::Runtime { .. });
    let resolution = resolve::resolution_for(server, dynamic, sections)?;
    // A name with its own resolvers may exist only there.
    let ip = match &resolution {
        Some(r) => r
            .resolver
            .resolve(&r.fqdn, r.prefer)
            .await?
            .first()
            .copied()
            .ok_or_else(|| anyhow!("'{}' resolves to no address", r.fqdn))?,
        None => resolve(&server.host).await?,
    };
    let addr = SocketAddr::new(ip, server.port.unwrap_or(0));
    let admin = if server.disabled {
        AdminState::Maint
    } else {
        AdminState::Ready
    };
    let check = server_check(server);
    let health = state::HealthRecord::new(&check);
    let up = !check.enabled || health.counter.is_up();
    Ok(Server {
        name: server.name.clone(),
        id: server.id,
        addr: ArcSwap::from_pointee(addr),
        port_from_client: server.port.is_none(),
        backup: server.backup,
        maxconn: AtomicU32::new(server.maxconn.unwrap_or(0)),
        maxqueue: server.maxqueue,
        send_proxy: server.send_proxy,
        cookie: server.cookie.clone(),
        weight: AtomicU32::new(server.weight),
        uweight: AtomicU32::new(server.weight),
        admin: AtomicU8::new(admin as u8),
        up: AtomicBool::new(up),
        checks_enabled: AtomicBool::new(true),
        agent_enabled: AtomicBool::new(true),
        check_port: AtomicU32::new(0),
        counters: Arc::default(),
        check,
        health: std::sync::Mutex::new(health),
        recheck: Notify::new(),
        sessions: Arc::clone(sessions),
        origin,
        initial: state::InitialSettings {
            addr,
            weight: server.weight,
            maxconn: server.maxconn.unwrap_or(0),
            admin,
        },
        tls: tls::TlsClient::from_server(server, ip)?,
        fqdn: match &server.host {
            Host::Name(name) => Some(name.clone()),
            Host::Ip(_) => None,
        },
        resolution,
        pool: Arc::new(pool::Pool::new(pool::PoolSettings::of(server, dynamic))),
    })
}

/// Check settings of a `server` line; `check` addresses given as names are not supported yet.
fn server_check(server: &config::Server) -> ServerCheck {
    let ip_of = |host: &Option<Host>| match host {
        Some(Host::Ip(ip)) => Some(*ip),
        _ => None,
    };
    ServerCheck {
        enabled: server.check,
        inter: server.inter,
        fastinter: server.fastinter,
        downinter: server.downinter,
        rise: server.rise,
        fall: server.fall,
        port: server.check_port,
        addr: ip_of(&server.check_addr),
        observe_layer4: server.observe_layer4,
        error_limit: server.error_limit.unwrap_or(10).max(1),
        on_error: server.on_error,
        shutdown_sessions_on_down: server.shutdown_sessions_on_down,
        shutdown_backup_sessions_on_up: server.shutdown_backup_sessions_on_up,
        agent: server.agent_check.then(|| AgentCheck {
            port: server.agent_port.unwrap_or(0),
            addr: ip_of(&server.agent_addr),
            inter: server.agent_inter.unwrap_or(server.inter),
            send: server.agent_send.clone(),
        }),
    }
}

fn open_logger(
    proxy: &config::Proxy,
    tag: &str,
    hostname: Option<&str>,
) -> anyhow::Result<Option<Arc<switchyard_log::Logger>>> {
    if proxy.logs.is_empty() {
        return Ok(None);
    }
    let logger = switchyard_log::Logger::new(&proxy.logs, tag, hostname)
        .with_context(|| format!("{}: cannot open log targets", proxy.span))?;
    Ok(Some(Arc::new(logger)))
}

async fn resolve(host: &Host) -> anyhow::Result<IpAddr> {
    match host {
        Host::Ip(ip) => Ok(*ip),
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), 0))
            .await
            .with_context(|| format!("cannot resolve '{name}'"))?
            .map(|addr| addr.ip())
            .next()
            .ok_or_else(|| anyhow!("'{name}' resolves to no address")),
    }
}

/// HAProxy 2.6's `global.maxsock` for `config` (`compute_ideal_maxsock`): ten reserved, one
/// per listening socket (stats sockets included, and ten more for the CLI's own `maxconn`
/// when there is one), one per health and agent check, two per `maxconn`, three per thread.
/// Its idle-connection thresholds are fractions of it. HAProxy also counts two per pipe
/// when `option splice-*` or `maxpipes` ask for pipes; Switchyard splices without them
/// (and ignores those keywords), so no pipes are counted. Also returns the listening
/// sockets, which count as descriptors in use.
fn haproxy_maxsock(config: &Config, maxconn: u32, threads: usize) -> (u64, u32) {
    let binds: usize = config
        .proxies
        .iter()
        .filter(|proxy| proxy.kind.has_frontend() && !proxy.disabled)
        .flat_map(|proxy| &proxy.binds)
        .map(|bind| bind.addresses.len())
        .sum();
    let stats_sockets = config.global.stats_sockets.len();
    let listening = binds + stats_sockets;
    let checks: usize = config
        .proxies
        .iter()
        .flat_map(|proxy| &proxy.servers)
        .map(|server| usize::from(server.check) + usize::from(server.agent_check))
        .sum();
    let cli = if stats_sockets > 0 { 10 } else { 0 };
    let maxsock =
        10 + (listening + cli + checks) as u64 + 2 * u64::from(maxconn) + 3 * threads as u64;
    (maxsock, u32::try_from(listening).unwrap_or(u32::MAX))
}

/// HAProxy derives its default from the file descriptor limit: each session needs two.
fn default_maxconn(limit: u64) -> u32 {
    let by_fds = (limit.saturating_sub(100) / 2).max(1);
    DEFAULT_MAXCONN.min(u32::try_from(by_fds).unwrap_or(u32::MAX))
}
