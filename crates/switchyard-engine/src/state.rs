//! Runtime objects the data plane works on: frontends, backends, servers and their counters.
//!
//! Counters are plain atomics updated with `Relaxed` ordering: they are statistics, and no
//! decision depends on their exact ordering with other memory. Server membership of a backend
//! sits behind an `ArcSwap` so the control plane can add and remove servers without the data
//! path ever taking a lock.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use switchyard_balance::Algorithm;
use switchyard_config as config;
use switchyard_health::{CheckOutcome, HealthCounter};
use tokio::sync::{Notify, Semaphore};

use crate::rate::{FreqCtr, LastEvent};

/// Administrative state set by the operator (config `disabled`, later the Runtime API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    Ready = 0,
    /// Takes no new connections except persistent ones; existing ones continue.
    Drain = 1,
    /// Takes no connections at all.
    Maint = 2,
}

impl AdminState {
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

/// Counters shared by frontends, backends and servers (HAProxy's `show stat` columns).
#[derive(Debug, Default)]
pub struct Counters {
    /// Current sessions (`scur`).
    pub current: AtomicU32,
    /// Highest `current` seen (`smax`).
    pub max: AtomicU32,
    /// Cumulated sessions (`stot`).
    pub total: AtomicU64,
    /// Bytes received from clients (`bin`).
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients (`bout`).
    pub bytes_out: AtomicU64,
    /// Connection errors towards servers (`econ`).
    pub connect_errors: AtomicU64,
    /// Sessions aborted by an error on the server side (`eresp`).
    pub response_errors: AtomicU64,
    /// Retries (`wretr`) and redispatches (`wredis`).
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    /// Client aborts (`cli_abrt`) and server aborts (`srv_abrt`).
    pub client_aborts: AtomicU64,
    pub server_aborts: AtomicU64,
    /// Times this object was chosen by the balancer (`lbtot`).
    pub lb_total: AtomicU64,
    /// Current and max queued connections (`qcur`, `qmax`).
    pub queue_current: AtomicU32,
    pub queue_max: AtomicU32,
    /// New sessions per second (`rate`, `rate_max`), counted with `total`.
    pub session_rate: FreqCtr,
    /// Accepted connections per second (`conn_rate`, `conn_rate_max`): frontends only,
    /// counted at `accept`, before a PROXY header or a TLS handshake may drop them.
    pub connection_rate: FreqCtr,
    /// When a session was last given a server (`lastsess`): backends and servers only.
    pub last_session: LastEvent,
    /// HTTP requests (`req_tot`), counted as HAProxy does: a frontend when a request
    /// arrives, a backend with each response given for it (Switchyard's error pages
    /// included), a server with each response it sent.
    pub requests: AtomicU64,
    /// HTTP requests per second (`req_rate`, `req_rate_max`): frontends, with `requests`.
    pub request_rate: FreqCtr,
    /// Requests refused as invalid (`ereq`): frontends, for heads that do not parse, do not
    /// arrive whole within `timeout http-request` or frame their body wrongly.
    pub request_errors: AtomicU64,
    /// HTTP responses by status class, 1xx to 5xx then other (`hrsp_1xx`..`hrsp_other`):
    /// frontends and backends count every response, servers those they sent.
    pub http_responses: [AtomicU64; 6],
}

impl Counters {
    /// Counts a new session and returns the new current value.
    pub fn session_started(&self) -> u32 {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(now, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.session_rate.add(crate::rate::now_ms());
        now
    }

    pub fn session_ended(&self) {
        self.current.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn queue_entered(&self) -> u32 {
        let now = self.queue_current.fetch_add(1, Ordering::Relaxed) + 1;
        self.queue_max.fetch_max(now, Ordering::Relaxed);
        now
    }

    pub fn queue_left(&self) {
        self.queue_current.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One server of a backend.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub id: u32,
    /// Resolved address (port 0 with `port_from_client`); the Runtime API may change it.
    pub addr: ArcSwap<SocketAddr>,
    pub port_from_client: bool,
    pub backup: bool,
    /// `maxconn`: concurrent connections allowed, 0 = unlimited (settable at runtime).
    pub maxconn: AtomicU32,
    pub maxqueue: Option<u32>,
    pub send_proxy: Option<config::ProxyProtocol>,
    /// `cookie VALUE`: what the backend's persistence cookie holds for this server.
    pub cookie: Option<String>,
    /// Effective weight (`iweight`): what the balancer uses, 0..=256.
    pub weight: AtomicU32,
    /// User weight (`uweight`): configured or set by the operator; an agent's `N%` applies to it.
    pub uweight: AtomicU32,
    pub admin: AtomicU8,
    /// Operational state: false when health checks (or a failed address) say it is down.
    /// The data path reads only this flag; the health task keeps it in step with `health`.
    pub up: AtomicBool,
    /// `disable health` stops active checks at runtime; the server then counts as UP.
    pub checks_enabled: AtomicBool,
    /// `disable agent` stops the agent check at runtime.
    pub agent_enabled: AtomicBool,
    /// `set server B/S check-port N`: the port checks and the agent use from now on
    /// (0: as configured).
    pub check_port: AtomicU32,
    pub counters: Arc<Counters>,
    /// How the server is checked (`check`, `inter`, `rise`... on its `server` line).
    pub check: ServerCheck,
    /// Check state, shared by the check task and passive observation of live traffic.
    pub health: Mutex<HealthRecord>,
    /// Wakes the check task early (an `on-error` action asked for `fastinter`).
    pub recheck: Notify,
    /// The process's live sessions, to close this server's (`on-marked-down
    /// shutdown-sessions`, `shutdown sessions server`).
    pub sessions: Arc<SessionRegistry>,
    /// Where the server comes from: the configuration or an `add server` command.
    pub origin: ServerOrigin,
    /// The settings it was built with, so runtime changes can be told apart from them.
    pub initial: InitialSettings,
    /// `ssl`: TLS towards the server.
    pub tls: Option<crate::tls::TlsClient>,
    /// The host name the server was given by (`srv_fqdn`), if any.
    pub fqdn: Option<String>,
    /// A server given by name whose address follows DNS.
    pub resolution: Option<crate::resolve::Resolution>,
    /// Idle `mode http` connections, and the accounting of all its connections.
    pub(crate) pool: Arc<crate::pool::Pool<crate::http::Peer>>,
}

/// Where a server comes from; decides how its runtime state is saved and restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOrigin {
    /// A `server` line; `fingerprint` identifies its definition (see [`crate::persist`]).
    Config { fingerprint: u64 },
    /// Added at runtime; `spec` holds the `add server` arguments after the name, as typed.
    Runtime { spec: String },
}

/// Settings a server was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialSettings {
    pub addr: SocketAddr,
    pub weight: u32,
    pub maxconn: u32,
    pub admin: AdminState,
}

/// Check settings of one server.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    /// `check` was given: active checks run.
    pub enabled: bool,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    /// `port N` / `addr IP`: where checks connect instead of the traffic address.
    pub port: Option<u16>,
    pub addr: Option<IpAddr>,
    /// `observe layer4`: failed connections of live traffic count as errors.
    pub observe_layer4: bool,
    /// Consecutive live-traffic errors that trigger `on_error` (`error-limit`, default 10).
    pub error_limit: u32,
    pub on_error: config::OnError,
    pub shutdown_sessions_on_down: bool,
    pub shutdown_backup_sessions_on_up: bool,
    pub agent: Option<AgentCheck>,
}

/// `agent-check` settings.
#[derive(Debug, Clone)]
pub struct AgentCheck {
    pub port: u16,
    pub addr: Option<IpAddr>,
    pub inter: Duration,
    pub send: Option<String>,
}

/// Check state of one server.
#[derive(Debug, Clone)]
pub struct HealthRecord {
    pub counter: HealthCounter,
    /// The last active check's outcome (`check_status`, `check_code`, `check_duration`).
    pub last: Option<CheckOutcome>,
    /// The last agent reply's outcome.
    pub last_agent: Option<CheckOutcome>,
    /// Consecutive errors seen on live traffic (`observe layer4`).
    pub consecutive_errors: u32,
    /// When the operational state last changed (`lastchg`).
    pub last_change: Instant,
    /// Failed checks and UP-to-DOWN transitions (`chkfail`, `chkdown`).
    pub failed_checks: u64,
    pub down_transitions: u64,
    /// Time spent DOWN before the current state (`downtime`).
    pub downtime: Duration,
}

impl HealthRecord {
    pub fn new(check: &ServerCheck) -> Self {
        HealthRecord {
            counter: HealthCounter::new(check.rise, check.fall),
            last: None,
            last_agent: None,
            consecutive_errors: 0,
            last_change: Instant::now(),
            failed_checks: 0,
            down_transitions: 0,
            downtime: Duration::ZERO,
        }
    }
}

/// Why sessions are being closed by force: the first letter of their termination state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillCause {
    /// The server went DOWN (`D`).
    Down,
    /// An active server came back UP; backup sessions close (`U`).
    Up,
    /// An administrator asked for it (`K`).
    Admin,
}

impl Server {
    /// Its connections as `show servers conn` counts them.
    pub fn pool_stats(&self) -> crate::pool::PoolStats {
        self.pool.stats()
    }

    /// Its `pool-max-conn`, `pool-purge-delay` and `pool-low-conn`.
    pub fn pool_settings(&self) -> crate::pool::PoolSettings {
        self.pool.settings()
    }

    /// Moves the server to `addr`. Its idle connections lead to the old address: they are
    /// closed (as HAProxy does on `set server addr` and DNS changes).
    pub fn move_to(&self, addr: SocketAddr) {
        self.addr.store(Arc::new(addr));
        self.pool.close_idle();
    }

    /// Sets the admin state; whether it changed. Entering maintenance closes the idle
    /// connections, as in HAProxy: nothing may reuse them now.
    pub fn set_admin(&self, state: AdminState) -> bool {
        let previous = self.admin.swap(state as u8, Ordering::Relaxed);
        if state == AdminState::Maint && previous != state as u8 {
            self.pool.close_idle();
        }
        previous != state as u8
    }

    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Usable for new traffic: up, ready and with a non-zero weight.
    pub fn usable(&self) -> bool {
        self.up.load(Ordering::Relaxed)
            && self.admin_state() == AdminState::Ready
            && self.weight.load(Ordering::Relaxed) > 0
    }

    /// Has a free connection slot under `maxconn`.
    pub fn has_slot(&self) -> bool {
        match self.maxconn.load(Ordering::Relaxed) {
            0 => true,
            limit => self.counters.current.load(Ordering::Relaxed) < limit,
        }
    }

    /// Takes a connection slot if one is free; the caller must release it with
    /// [`Server::release_slot`]. Atomic so two sessions cannot both take the last slot.
    pub fn try_take_slot(&self) -> bool {
        let current = &self.counters.current;
        let taken = match self.maxconn.load(Ordering::Relaxed) {
            0 => {
                current.fetch_add(1, Ordering::Relaxed);
                true
            }
            limit => current
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                    (c < limit).then_some(c + 1)
                })
                .is_ok(),
        };
        if taken {
            let now = current.load(Ordering::Relaxed);
            self.counters.max.fetch_max(now, Ordering::Relaxed);
            self.counters.total.fetch_add(1, Ordering::Relaxed);
            self.counters.lb_total.fetch_add(1, Ordering::Relaxed);
            // HAProxy's srv_inc_sess_ctr + srv_set_sess_last: with the session count.
            let now_ms = crate::rate::now_ms();
            self.counters.session_rate.add(now_ms);
            self.counters.last_session.record(now_ms);
        }
        taken
    }

    /// The current traffic address (port 0 when the client's port is used).
    pub fn addr(&self) -> SocketAddr {
        **self.addr.load()
    }

    /// Closes every live session of this server, with `cause` in their logs.
    pub fn kill_sessions(&self, cause: KillCause) {
        self.sessions.kill_server(self, cause);
    }

    /// Locks the health record; a poisoned lock still holds consistent plain data.
    pub fn health(&self) -> std::sync::MutexGuard<'_, HealthRecord> {
        crate::lock(&self.health)
    }

    pub fn release_slot(&self) {
        self.counters.session_ended();
    }

    /// The address to connect to for a client that connected to `local_port`.
    pub fn target(&self, local_port: u16) -> SocketAddr {
        let mut addr = self.addr();
        if self.port_from_client {
            addr.set_port(local_port);
        }
        addr
    }
}

/// A backend: servers, algorithm, queue and counters.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub id: u32,
    pub servers: ArcSwap<Vec<Arc<Server>>>,
    pub algorithm: Box<dyn Algorithm>,
    /// The configured algorithm (decides whether weights and servers may change at runtime).
    pub balance: config::Balance,
    pub hash_method: config::HashMethod,
    /// Bumped on any change that affects eligibility other than connection counts.
    pub generation: AtomicU64,
    pub retries: u32,
    /// `option redispatch [interval]`.
    pub redispatch: Option<i32>,
    pub allbackups: bool,
    pub timeouts: config::Timeouts,
    pub tcpka: bool,
    /// `option kernel-forward`: its TCP sessions are forwarded by the kernel (`kernel`).
    pub kernel_forward: bool,
    pub counters: Arc<Counters>,
    /// Woken whenever a server slot frees up or eligibility changes, so queued sessions retry.
    pub slot_freed: Notify,
    /// Bound on queued sessions: the sum of the servers' `maxqueue` when every server has one.
    pub queue_limit: Option<u32>,
    /// The check kind servers with `check` get.
    pub health_check: config::HealthCheck,
    /// `timeout check` and `timeout connect`, which bound checks.
    pub check_timeout: Option<Duration>,
    pub log_health_checks: bool,
    /// Where server state changes are logged (the backend's `log` lines).
    pub logger: Option<Arc<switchyard_log::Logger>>,
    /// The configuration's servers (name, fingerprint): those missing from `servers` were
    /// deleted at runtime.
    pub configured: Vec<(String, u64)>,
    /// Signalled when a server's state changes by itself (a check transition), so the
    /// runtime state file can be rewritten.
    pub changes: Arc<Notify>,
    /// `stick on src`: where each client went.
    pub stick: Option<Arc<crate::stick::StickTable>>,
    /// `mode http`: cookie persistence, connection mode and idle server connections.
    pub http: Option<crate::http::BackendHttp>,
}

impl Backend {
    /// Signal that something changed that may let queued sessions proceed.
    pub fn wake_queue(&self) {
        self.slot_freed.notify_waiters();
    }

    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.wake_queue();
    }
}

/// A frontend: where connections are accepted and which backend they go to.
#[derive(Debug)]
pub struct Frontend {
    pub name: String,
    pub id: u32,
    /// A `listen` section: its own backend too, which HAProxy shows as a session's backend
    /// until another is chosen (`show sess`).
    pub listen: bool,
    /// The engine generation it belongs to (0 at start, +1 per reload): its sessions'.
    pub generation: u64,
    pub backend: Option<Arc<Backend>>,
    pub slots: Arc<Semaphore>,
    /// Size of `slots`: `maxconn`, changeable with `set maxconn frontend`.
    pub maxconn: AtomicU32,
    pub timeouts: config::Timeouts,
    pub tcpka: bool,
    /// `option kernel-forward`: its TCP sessions are forwarded by the kernel (`kernel`).
    pub kernel_forward: bool,
    pub log: LogSettings,
    pub counters: Arc<Counters>,
    /// `mode http`: requests are proxied one by one (see the `http` module).
    pub http: Option<crate::http::FrontendHttp>,
}

/// What and how a frontend logs.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub logger: Option<Arc<switchyard_log::Logger>>,
    /// `option tcplog`: one line per session at its end; otherwise HAProxy's short
    /// "Connect from" line at accept time.
    pub tcplog: bool,
    pub dontlognull: bool,
}

/// Process-wide state.
#[derive(Debug)]
pub struct Process {
    /// Size of `slots`: `maxconn`, changeable with `set maxconn global` up to `hard_maxconn`.
    pub maxconn: AtomicU32,
    /// The configured (or derived) limit.
    pub hard_maxconn: u32,
    pub slots: Arc<Semaphore>,
    /// Connections held across all frontends (`actconn`), from accept to close: those still
    /// in a PROXY header or TLS handshake, or waiting for the thread they were handed to,
    /// included, as a graceful stop must wait for them too. Kept by [`ProcessSlot`].
    pub active: AtomicU32,
    pub total: AtomicU64,
    /// Connections accepted by frontends per second (`ConnRate`, `MaxConnRate`); stats
    /// sockets do not count, as HAProxy's unlimited CLI listeners do not.
    pub connection_rate: FreqCtr,
    /// Sessions per second (`SessRate`, `MaxSessRate`), counted with `total`.
    pub session_rate: FreqCtr,
    pub started: Instant,
    /// Woken when `active` drops to zero (graceful stop waits on it).
    pub idle: Notify,
    /// Live sessions, for `show sess` and `shutdown session`; shared by the engines a
    /// reload leaves running, so old sessions stay visible until they end.
    pub sessions: Arc<SessionRegistry>,
    /// Which engine this is: 0 at start, +1 per reload. Tags sessions so the ones a
    /// reloaded-away engine still carries can be told apart (and closed at hard-stop-after).
    pub generation: u64,
}

/// A connection's place in the process from accept to close: one of the global `maxconn`
/// slots and its count in `active`. An `Arc` rather than the semaphore's own permit: 8
/// bytes of every session instead of 16, and dropping it does what the permit's drop did.
#[derive(Debug)]
pub struct ProcessSlot(Arc<Process>);

impl ProcessSlot {
    /// Counts an accepted connection, in the slot `permit` reserved for it.
    pub(crate) fn admit(process: &Arc<Process>, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        permit.forget();
        process.active.fetch_add(1, Ordering::Relaxed);
        ProcessSlot(Arc::clone(process))
    }
}

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle.notify_waiters();
        }
        self.0.slots.add_permits(1);
    }
}

/// What the control plane can see of, and do to, one live session.
#[derive(Debug)]
pub struct SessionInfo {
    /// Unique for the life of the process; shown in hexadecimal like HAProxy's session ids.
    pub id: u64,
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// Its frontend, which also tells the engine generation that accepted it.
    pub frontend: Arc<Frontend>,
    /// When it was accepted, on the coarse clock (ms): 144 bytes in all, the allocator's
    /// 160-byte class with the `Arc`'s counts instead of 192.
    accepted_ms: u64,
    /// The backend and server once connected (shared, so registering costs no copy).
    pub server: Mutex<Option<(Arc<Backend>, Arc<Server>)>>,
    /// Closes the session (`shutdown session ID`, server kill orders, hard-stop).
    pub kill: KillSwitch,
}

impl SessionInfo {
    /// How long ago it was accepted (to the coarse clock's few milliseconds).
    pub fn age(&self) -> std::time::Duration {
        std::time::Duration::from_millis(crate::rate::now_ms().saturating_sub(self.accepted_ms))
    }

    /// `backend/server` names once connected.
    pub fn server_names(&self) -> Option<(String, String)> {
        let server = crate::lock(&self.server);
        server
            .as_ref()
            .map(|(backend, server)| (backend.name.clone(), server.name.clone()))
    }

    fn is_on(&self, server: &Server) -> bool {
        let current = crate::lock(&self.server);
        current
            .as_ref()
            .is_some_and(|(_, on)| std::ptr::eq(Arc::as_ptr(on), server))
    }
}

/// A one-shot order to close a session, readable without keeping a waiter future: the
/// session's relay polls it in place, so an idle session holds one word and one waker.
#[derive(Debug, Default)]
pub struct KillSwitch {
    /// 0 while alive, else 1 + the `KillCause`.
    cause: AtomicU8,
    waker: atomic_waker::AtomicWaker,
}

impl KillSwitch {
    /// Orders the close; the first cause given is the one logged.
    pub fn kill(&self, cause: KillCause) {
        let _ =
            self.cause
                .compare_exchange(0, cause as u8 + 1, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    fn cause(&self) -> Option<KillCause> {
        match self.cause.load(Ordering::Acquire) {
            0 => None,
            n if n == KillCause::Down as u8 + 1 => Some(KillCause::Down),
            n if n == KillCause::Up as u8 + 1 => Some(KillCause::Up),
            _ => Some(KillCause::Admin),
        }
    }

    /// Ready once killed. One task polls a session's switch (its own).
    pub fn poll_killed(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<KillCause> {
        if let Some(cause) = self.cause() {
            return std::task::Poll::Ready(cause);
        }
        self.waker.register(cx.waker());
        // A kill between the check and the registration found no waker: look again.
        match self.cause() {
            Some(cause) => std::task::Poll::Ready(cause),
            None => std::task::Poll::Pending,
        }
    }

    /// Completes once killed (an order given before the call counts).
    pub fn notified(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_killed(cx).map(|_| ()))
    }
}

/// Registry of live sessions: one short lock on open and close, nothing in between.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    next_id: AtomicU64,
    live: Mutex<std::collections::HashMap<u64, Arc<SessionInfo>>>,
}

impl SessionRegistry {
    fn live(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<SessionInfo>>> {
        crate::lock(&self.live)
    }

    /// Registers a new session; it is removed when the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        client: SocketAddr,
        local: SocketAddr,
        frontend: &Arc<Frontend>,
    ) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(SessionInfo {
            id,
            client,
            local,
            frontend: Arc::clone(frontend),
            accepted_ms: crate::rate::now_ms(),
            server: Mutex::new(None),
            kill: KillSwitch::default(),
        });
        self.live().insert(id, Arc::clone(&info));
        SessionGuard {
            registry: Arc::clone(self),
            info,
        }
    }

    /// Live sessions, oldest first.
    pub fn list(&self) -> Vec<Arc<SessionInfo>> {
        let mut sessions: Vec<_> = self.live().values().cloned().collect();
        sessions.sort_by_key(|s| s.id);
        sessions
    }

    /// Closes every session accepted by engine `generation`; returns how many.
    pub fn kill_generation(&self, generation: u64) -> usize {
        let live = self.live();
        let doomed: Vec<_> = live
            .values()
            .filter(|s| s.frontend.generation == generation)
            .collect();
        for session in &doomed {
            session.kill.kill(KillCause::Admin);
        }
        doomed.len()
    }

    /// Closes every session connected to `server`.
    pub fn kill_server(&self, server: &Server, cause: KillCause) {
        for session in self.live().values().filter(|s| s.is_on(server)) {
            session.kill.kill(cause);
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<SessionInfo>> {
        self.live().get(&id).cloned()
    }
}

/// Keeps a session registered while it lives.
#[derive(Debug)]
pub struct SessionGuard {
    registry: Arc<SessionRegistry>,
    pub info: Arc<SessionInfo>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.live().remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    /// Every connection keeps one in an `Arc` (16 bytes of counts): up to 144 bytes it is
    /// in the allocator's 160-byte class, one more byte and it takes 192.
    #[test]
    fn session_info_fits_in_144_bytes() {
        let size = std::mem::size_of::<super::SessionInfo>();
        assert!(size <= 144, "SessionInfo is {size} bytes");
    }
}
