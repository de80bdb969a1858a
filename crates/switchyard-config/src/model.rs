//! The typed configuration model produced by the parser.
//!
//! `defaults` sections are already folded into each proxy when the model is built, so the
//! engine never has to know about HAProxy's inheritance rules. Every item keeps the place
//! (`Span`) it came from, so later validation and runtime errors can point at a line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where an item was written: file name as given on the command line, and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The whole configuration: one `global` section and the proxies in declaration order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub global: Global,
    /// Frontends, backends and listens in the order they were declared. Proxies without an
    /// explicit `id N` get the lowest free id in declaration order, starting at 1 (so a
    /// backend declared after a frontend has id 2, as in `show servers state`).
    pub proxies: Vec<Proxy>,
    /// `resolvers` sections, for servers given by name.
    pub resolvers: Vec<Resolvers>,
    /// `vrrp_instance` sections: virtual addresses this balancer holds with VRRP.
    pub vrrp_instances: Vec<crate::vrrp::VrrpInstance>,
    /// `vrrp_script` sections tracked by the instances.
    pub vrrp_scripts: Vec<crate::vrrp::VrrpScript>,
}

/// A `stick-table`: what persistence rules remember, keyed by address or by string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickTable {
    pub kind: StickKind,
    /// Entries kept at most; the least recently used goes first.
    pub size: u64,
    /// An entry not matched for this long is forgotten (`None`: never).
    pub expire: Option<Duration>,
    /// `len N` of a string table: longer keys are cut (HAProxy's default: 32).
    pub key_len: usize,
}

/// `stick-table type ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickKind {
    Ip,
    Ipv6,
    String,
}

/// What a stick rule takes from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickSample {
    /// `src`: the client address.
    Src,
    /// `req.cook(NAME)` (`cookie(NAME)`): a request cookie (HTTP).
    RequestCookie(String),
    /// `req.hdr(NAME)` (`hdr(NAME)`): a request header (HTTP).
    Header(String),
    /// `url_param(NAME)` (`urlp(NAME)`): a query parameter (HTTP).
    UrlParam(String),
}

/// A section's `stick-table` and the rules that use it: `stick on X` is `stick match X`
/// plus `stick store-request X`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stick {
    pub table: StickTable,
    /// Looked up before balancing: a known key goes back to its server.
    pub match_on: Option<StickSample>,
    /// Stored once a server is chosen.
    pub store_request: Option<StickSample>,
    /// `stick store-response res.cook(NAME)`: the cookie a server sets is stored with it.
    pub store_response_cookie: Option<String>,
}

/// An address family preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

/// A `resolvers` section: where and how often servers' names are resolved at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolvers {
    pub span: Span,
    pub name: String,
    /// `nameserver NAME ADDR[:PORT]`.
    pub nameservers: Vec<(String, SocketAddr)>,
    /// `parse-resolv-conf`: also the nameservers of /etc/resolv.conf.
    pub parse_resolv_conf: bool,
    /// `resolve_retries` (default 3).
    pub resolve_retries: u32,
    /// `timeout resolve`: time between two resolutions of a name (default 1s).
    pub timeout_resolve: Duration,
    /// `timeout retry`: how long to wait for an answer before asking again (default 1s).
    pub timeout_retry: Duration,
    /// `hold valid`: how long an answer is trusted (default 10s).
    pub hold_valid: Duration,
}

impl Resolvers {
    /// HAProxy's defaults.
    pub fn new(span: Span, name: String) -> Self {
        Resolvers {
            span,
            name,
            nameservers: Vec::new(),
            parse_resolv_conf: false,
            resolve_retries: 3,
            timeout_resolve: Duration::from_secs(1),
            timeout_retry: Duration::from_secs(1),
            hold_valid: Duration::from_secs(10),
        }
    }
}

impl Config {
    pub fn proxy(&self, name: &str) -> Option<&Proxy> {
        self.proxies.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Global {
    /// Process-wide connection limit (`maxconn`); `None` means the built-in default.
    pub maxconn: Option<u32>,
    pub logs: Vec<LogTarget>,
    pub stats_sockets: Vec<StatsSocket>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub daemon: bool,
    pub nbthread: Option<u32>,
    pub pidfile: Option<PathBuf>,
    /// `log-send-hostname [NAME]`: hostname put in syslog headers.
    pub log_send_hostname: Option<String>,
    /// `log-tag`: program name in syslog headers (default "haproxy" for compatibility with
    /// existing log pipelines that match on it).
    pub log_tag: Option<String>,
    pub hard_stop_after: Option<Duration>,
    /// `runtime-state-file PATH` (Switchyard extension): where Runtime API changes and check
    /// states are kept so they survive reloads and restarts.
    pub runtime_state_file: Option<PathBuf>,
    /// `noreuseport`: listeners without `SO_REUSEPORT` (then a new process cannot bind next
    /// to a running one; `-x` socket transfer still works).
    pub noreuseport: bool,
    /// `nosplice`: never forward with `splice(2)` (bulk flows are copied through user space).
    pub nosplice: bool,
    /// `busy-polling`: session threads poll for events without ever sleeping, trading a
    /// spinning CPU for the wake-up latency (`no busy-polling` turns it back off).
    pub busy_polling: bool,
    /// `grace`: after a stop signal, keep accepting this long before stopping (time for a
    /// front load balancer's checks to notice and move traffic away).
    pub grace: Option<Duration>,
}

/// `log <target> [len N] [format F] <facility> [max level [min level]]`, or `log stdout ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTarget {
    pub span: Span,
    pub address: LogAddress,
    pub facility: Facility,
    /// Messages above this level (less severe) are not sent.
    pub max_level: Level,
    pub min_level: Option<Level>,
    pub format: LogFormat,
    pub max_len: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAddress {
    /// UDP syslog server (`127.0.0.1`, `127.0.0.1:514`, `udp@...`); port defaults to 514.
    Udp(SocketAddr),
    /// Unix datagram socket (`/dev/log`).
    Unix(PathBuf),
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// RFC 3164 style header (HAProxy's default).
    Rfc3164,
    Rfc5424,
    /// Only the message, no syslog header (`format raw`).
    Raw,
    /// Header without date/host (`format short`): `<PRI>` then the message.
    Short,
}

/// Syslog facility, numbered as in RFC 5424.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Auth2 = 10,
    Ftp = 11,
    Ntp = 12,
    Audit = 13,
    Alert = 14,
    Cron2 = 15,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

/// Syslog severity, numbered as in RFC 5424.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// `stats socket <addr> [level L] [mode M] ...`: parsed and kept for the Runtime API.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSocket {
    pub span: Span,
    pub address: SocketAddress,
    pub level: Option<String>,
    /// File mode for unix sockets, as written in octal.
    pub mode: Option<u32>,
    /// Remaining `name [value]` settings, kept verbatim.
    pub params: Vec<String>,
}

/// An address as HAProxy writes it for listeners: `ipv4@`, `ipv6@`, `unix@` or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    Inet(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Frontend,
    Backend,
    Listen,
}

impl ProxyKind {
    pub fn has_frontend(self) -> bool {
        matches!(self, ProxyKind::Frontend | ProxyKind::Listen)
    }
    pub fn has_backend(self) -> bool {
        matches!(self, ProxyKind::Backend | ProxyKind::Listen)
    }
    pub fn keyword(self) -> &'static str {
        match self {
            ProxyKind::Frontend => "frontend",
            ProxyKind::Backend => "backend",
            ProxyKind::Listen => "listen",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

/// One `frontend`, `backend` or `listen` section with its `defaults` applied.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub span: Span,
    pub kind: ProxyKind,
    pub name: String,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub default_backend: Option<String>,
    /// Unconditional `use_backend NAME` rules, in order (conditions are not supported yet).
    pub use_backends: Vec<UseBackend>,
    pub balance: Balance,
    pub hash_type: HashType,
    pub servers: Vec<Server>,
    /// Frontend: max concurrent connections accepted; backend: `fullconn` is separate.
    pub maxconn: Option<u32>,
    /// Backend-side `fullconn`, kept for dynamic maxconn (`minconn`).
    pub fullconn: Option<u32>,
    pub retries: u32,
    /// `http-reuse`: which requests may go over another client's idle server connection.
    pub http_reuse: HttpReuse,
    /// `max-session-srv-conns`: server connections a client connection keeps idle for its
    /// next requests when they are its own (`http-reuse never`); HAProxy's default is 5.
    pub max_session_srv_conns: u32,
    pub options: ProxyOptions,
    pub timeouts: Timeouts,
    /// Log targets of this proxy (`log global` expands to the global ones).
    pub logs: Vec<LogTarget>,
    pub disabled: bool,
    /// How servers of this backend are health-checked when they have `check`.
    pub health_check: HealthCheck,
    /// `option log-health-checks`: log every check status change, not only UP/DOWN.
    pub log_health_checks: bool,
    /// HAProxy's proxy id (`id N`), or assigned in declaration order.
    pub id: u32,
    /// `description TEXT` (words joined by single spaces), shown by the stats page.
    pub description: Option<String>,
    /// `stick-table` with `stick on|match|store-request|store-response` rules: clients stay on
    /// the server they were sent to.
    pub stick: Option<Stick>,
    /// `cookie NAME ...`: cookie-based persistence (HTTP).
    pub cookie: Option<Cookie>,
    /// `stats ...` lines and the Prometheus exporter rule (see [`Stats`]).
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UseBackend {
    pub span: Span,
    pub backend: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// `option redispatch [interval]`: `Some(interval)`, default interval -1 (last retry).
    pub redispatch: Option<i32>,
    pub tcplog: bool,
    pub httplog: bool,
    pub tcpka: bool,
    pub clitcpka: bool,
    pub srvtcpka: bool,
    /// `option kernel-forward` (Switchyard extension): `mode tcp` sessions are forwarded by
    /// the kernel (a BPF sockhash) instead of through the process.
    pub kernel_forward: bool,
    pub dontlognull: bool,
    pub allbackups: bool,
    pub logasap: bool,
    pub log_global: bool,
    /// `option forwardfor [except NET] [header NAME] [if-none]` (HTTP).
    pub forwardfor: Option<ForwardFor>,
    /// `option http-server-close`: the server connection closes after each response while
    /// the client's stays open (HTTP).
    pub http_server_close: bool,
    /// `option httpclose`: both connections close after each response (HTTP).
    pub httpclose: bool,
    /// `option http-ignore-probes`: a connection closed or timed out before its first byte
    /// is neither answered, counted nor logged (HTTP; browsers open such connections ahead).
    pub http_ignore_probes: bool,
}

/// `option forwardfor`: the client's address goes to the server in a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardFor {
    /// `except NET`: clients from this network (address, prefix length) get no header.
    pub except: Option<(IpAddr, u8)>,
    /// `header NAME` (default `X-Forwarded-For`).
    pub header: String,
    /// `if-none`: add the header only when the request has none.
    pub if_none: bool,
}

/// How the persistence cookie is managed (`cookie NAME insert|rewrite|prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// Switchyard sets the cookie in responses.
    Insert,
    /// The server sets it; its value is replaced by the server's `cookie` value.
    Rewrite,
    /// The server's own cookie gets the server's `cookie` value and `~` as a prefix.
    Prefix,
}

/// `cookie NAME insert|rewrite|prefix [indirect] [nocache] [postonly] [preserve] [httponly]
/// [secure] [domain D]... [attr A]...`: requests carrying the cookie go back to the server it
/// names (the servers' `cookie VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub span: Span,
    pub name: String,
    pub mode: CookieMode,
    /// Insert only when the client lacks a valid cookie, and strip it from requests.
    pub indirect: bool,
    /// Responses carrying an inserted cookie get `Cache-Control: private`.
    pub nocache: bool,
    /// Insert only in responses to POST requests.
    pub postonly: bool,
    /// Keep a cookie the server set itself instead of inserting one.
    pub preserve: bool,
    pub httponly: bool,
    pub secure: bool,
    pub domains: Vec<String>,
    pub attrs: Vec<String>,
}

/// Every `timeout` kind HAProxy knows; `None` when not set (no default is invented here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub queue: Option<Duration>,
    pub check: Option<Duration>,
    pub http_request: Option<Duration>,
    pub http_keep_alive: Option<Duration>,
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
    pub tunnel: Option<Duration>,
    pub tarpit: Option<Duration>,
}

/// `bind addr:port[,addr:port...] [options]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub span: Span,
    /// Every concrete address this line listens on (port ranges expanded).
    pub addresses: Vec<SocketAddress>,
    pub name: Option<String>,
    pub maxconn: Option<u32>,
    pub backlog: Option<u32>,
    /// `v4v6`: an IPv6 wildcard also accepts IPv4; `v6only`: it does not.
    pub v6only: Option<bool>,
    pub accept_proxy: bool,
    pub transparent: bool,
    /// `ssl`: terminate TLS on this listener (with the `crt` certificates).
    pub ssl: bool,
    /// `crt FILE|DIR` (repeatable): PEM files with a certificate chain and its key; the
    /// first is the default, the others are chosen by SNI.
    pub certificates: Vec<PathBuf>,
    /// `alpn h2,http/1.1`: protocols offered in the TLS handshake.
    pub alpn: Vec<String>,
    /// `postgres-ssl` (Switchyard extension): clients speak PostgreSQL and ask for TLS
    /// in-protocol (SSLRequest), as `sslmode=require` clients do.
    pub postgres_ssl: bool,
}

/// `http-reuse`: which requests may take an idle server connection another client's
/// exchange left (HAProxy's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpReuse {
    /// A server connection serves only the client connection it was opened for.
    Never,
    /// A client connection's first request gets a new connection (the client could not
    /// know to retry it if a server's close cut it off); later ones take any idle one.
    #[default]
    Safe,
    /// First requests take idle connections the server has already kept open after a
    /// response and used again; later ones take any.
    Aggressive,
    /// Every request takes any idle connection.
    Always,
}

/// Load-balancing algorithm named by `balance`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    StaticRr,
    LeastConn,
    First,
    Source,
    /// `random[(draws)]`: power-of-`draws` choices, default 2.
    Random {
        draws: u32,
    },
    /// L7 algorithms: only meaningful in `mode http`; in tcp mode they act as roundrobin.
    Uri,
    UrlParam(String),
    Hdr(String),
    RdpCookie(Option<String>),
}

/// `hash-type map-based|consistent [function] [avalanche]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashType {
    pub method: HashMethod,
    pub function: HashFunction,
    pub avalanche: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashMethod {
    #[default]
    MapBased,
    Consistent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashFunction {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
}

/// A server's address as written: an IP literal or a hostname resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// `server NAME ADDR[:PORT] [settings...]` after `default-server` settings were applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub span: Span,
    pub name: String,
    pub host: Host,
    /// `None` when the address has no port (HAProxy then uses the client's destination port).
    pub port: Option<u16>,
    /// `id N`, or assigned in declaration order starting at 1.
    pub id: u32,
    pub check: bool,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    /// `port N` for checks.
    pub check_port: Option<u16>,
    /// `addr IP` for checks.
    pub check_addr: Option<Host>,
    /// 0..=256, default 1.
    pub weight: u32,
    pub backup: bool,
    pub maxconn: Option<u32>,
    pub maxqueue: Option<u32>,
    pub minconn: Option<u32>,
    pub disabled: bool,
    pub send_proxy: Option<ProxyProtocol>,
    pub agent_check: bool,
    pub agent_port: Option<u16>,
    pub agent_inter: Option<Duration>,
    pub slowstart: Option<Duration>,
    pub cookie: Option<String>,
    /// `ssl`: TLS towards the server.
    pub ssl: bool,
    /// `verify none|required` (HAProxy's default: required, which needs `ca-file`).
    pub verify_none: bool,
    /// `ca-file FILE`: the CAs the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// `sni str(NAME)`: the name sent in SNI and checked in the certificate.
    pub sni: Option<String>,
    pub observe_layer4: bool,
    pub error_limit: Option<u32>,
    pub on_error: OnError,
    /// `on-marked-down shutdown-sessions`: kill the server's sessions when it goes DOWN.
    pub shutdown_sessions_on_down: bool,
    /// `on-marked-up shutdown-backup-sessions`: kill backup sessions when it comes back UP.
    pub shutdown_backup_sessions_on_up: bool,
    /// `agent-send STRING`, `agent-addr HOST`.
    pub agent_send: Option<String>,
    pub agent_addr: Option<Host>,
    /// `resolvers NAME`: re-resolve the server's name at runtime with that section.
    pub resolvers: Option<String>,
    /// `resolve-prefer ipv4|ipv6`; unset, DNS answers prefer IPv6 (as HAProxy) and the
    /// system resolver keeps its own order.
    pub resolve_prefer: Option<IpFamily>,
    /// `pool-max-conn N`: idle connections kept for reuse; `Some(None)` is `-1`, no limit.
    /// Unset, HAProxy gives configured servers no limit and `add server` ones 0 (no pool).
    pub pool_max_conn: Option<Option<u32>>,
    /// `pool-purge-delay T`: how often idle connections are weighed against the need and
    /// the surplus closed; 0 keeps none. Unset: 5 s, or 0 for `add server`.
    pub pool_purge_delay: Option<Duration>,
    /// `pool-low-conn N`: below this many idle connections a thread opens its own rather
    /// than take another thread's.
    pub pool_low_conn: u32,
}

impl Server {
    /// HAProxy's defaults for a server line with no settings.
    pub fn new(span: Span, name: String, host: Host, port: Option<u16>) -> Self {
        Server {
            span,
            name,
            host,
            port,
            id: 0,
            check: false,
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            check_port: None,
            check_addr: None,
            weight: 1,
            backup: false,
            maxconn: None,
            maxqueue: None,
            minconn: None,
            disabled: false,
            send_proxy: None,
            agent_check: false,
            agent_port: None,
            agent_inter: None,
            slowstart: None,
            cookie: None,
            ssl: false,
            verify_none: false,
            ca_file: None,
            sni: None,
            observe_layer4: false,
            error_limit: None,
            on_error: OnError::FastInter,
            shutdown_sessions_on_down: false,
            shutdown_backup_sessions_on_up: false,
            agent_send: None,
            agent_addr: None,
            resolvers: None,
            resolve_prefer: None,
            pool_max_conn: None,
            pool_purge_delay: None,
            pool_low_conn: 0,
        }
    }
}

/// A backend's health check: HAProxy's kinds plus Switchyard's database-role checks.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum HealthCheck {
    /// A TCP connect (HAProxy's default when a server has `check`).
    #[default]
    Tcp,
    /// `option httpchk` with `http-check send/expect`.
    Http(HttpCheck),
    /// `option mysql-check [user NAME [post-41]]`.
    Mysql { user: Option<String>, post_41: bool },
    /// `option pgsql-check user NAME`.
    Pgsql { user: String },
    /// `option tcp-check` with its `tcp-check` rules in order.
    TcpCheck(Vec<TcpCheckRule>),
    /// Switchyard extension: log in to the database and check its role (`db-check ...`).
    Database(DatabaseCheck),
}

/// `option httpchk [METHOD] [URI] [VERSION]` + `http-check send`/`expect`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// Default "OPTIONS".
    pub method: String,
    /// Default "/".
    pub uri: String,
    /// Default "HTTP/1.0".
    pub version: String,
    /// `http-check send hdr NAME VALUE` and the legacy `\r\n`-embedded headers.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// `http-check expect`; `None` means any 2xx or 3xx status is good (HAProxy's default).
    pub expect: Option<HttpExpect>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            version: "HTTP/1.0".into(),
            headers: Vec::new(),
            body: None,
            expect: None,
        }
    }
}

/// `http-check expect [!] status|rstatus|string|rstring PATTERN`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpExpect {
    pub negate: bool,
    pub matcher: HttpMatch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpMatch {
    /// `status 200` or `status 200-399`, several separated by commas.
    Status(Vec<(u16, u16)>),
    /// Regular expression over the status code text.
    RStatus(String),
    /// Substring of the body.
    String(String),
    /// Regular expression over the body.
    RString(String),
}

/// One `tcp-check` rule.
#[derive(Debug, Clone, PartialEq)]
pub enum TcpCheckRule {
    Connect {
        port: Option<u16>,
        send_proxy: bool,
        ssl: bool,
    },
    /// `send STRING` (with HAProxy escapes already decoded) or `send-binary HEX`.
    Send(Vec<u8>),
    /// `send-lf` and other rules not implemented are refused by the parser.
    Expect(TcpExpect),
    Comment(String),
}

/// `tcp-check expect [!] string|binary|rstring|rbinary PATTERN`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpExpect {
    pub negate: bool,
    pub matcher: TcpMatch,
    /// `min-recv N`: bytes to wait for before matching.
    pub min_recv: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TcpMatch {
    String(String),
    Binary(Vec<u8>),
    RString(String),
    RBinary(String),
}

/// `db-check postgres|mysql|galera user NAME [password ...|password-file F|password-env V]
/// [dbname NAME] [role primary|standby|any] [max-lag DURATION] [allow-donor]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseCheck {
    pub engine: DatabaseEngine,
    pub user: String,
    pub password: Option<Secret>,
    pub database: Option<String>,
    /// What the server must be to count as UP.
    pub role: DatabaseRole,
    /// Maximum replication lag of a standby/replica to count as UP.
    pub max_lag: Option<Duration>,
    /// Galera: a Donor/Desynced (2) node still counts as UP.
    pub allow_donor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseEngine {
    Postgres,
    Mysql,
    Galera,
}

/// PostgreSQL: primary = not in recovery, standby = in recovery. MySQL: primary = writable
/// (`read_only` off), standby = read-only replica. Galera ignores it (Synced is what counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatabaseRole {
    Primary,
    Standby,
    #[default]
    Any,
}

/// A credential given inline, in a file, or in an environment variable. Its `Debug` output
/// never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(<redacted>)"),
            Secret::File(path) => write!(f, "Secret::File({})", path.display()),
            Secret::Env(name) => write!(f, "Secret::Env({name})"),
        }
    }
}

impl Secret {
    /// Reads the secret now (files and variables may change between checks). A file's
    /// trailing newline is not part of the secret.
    pub fn resolve(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::File(path) => {
                let text = std::fs::read_to_string(path)?;
                Ok(text.trim_end_matches(['\r', '\n']).to_string())
            }
            Secret::Env(name) => std::env::var(name).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("environment variable {name} is not set"),
                )
            }),
        }
    }
}

/// `on-error` of a server: what a passive or active check error does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Run checks at `fastinter` (HAProxy's default).
    #[default]
    FastInter,
    /// Count the error as a failed check, then `fastinter`.
    FailCheck,
    /// Count it as `fall - 1` failed checks (one more failure marks the server down).
    SuddenDeath,
    /// Mark the server down at once.
    MarkDown,
}

/// The HTTP services of a `frontend`/`listen`: HAProxy's stats page (`stats enable`, `stats
/// uri`, ...) and its Prometheus exporter (`http-request use-service prometheus-exporter if {
/// path /metrics }`). A section in `mode http` that has one of them and routes nowhere is
/// served by Switchyard's stats server instead of the TCP engine ([`Proxy::is_stats_only`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Any `stats` line of a proxy enables the page, as in HAProxy (`stats auth`, `stats uri`,
    /// `stats refresh`... all imply `stats enable`).
    pub enabled: bool,
    /// The first `stats` line, to point warnings at.
    pub span: Option<Span>,
    /// `stats uri PREFIX`: requests whose target starts with it get the page (HAProxy's
    /// default is `/haproxy?stats`).
    pub uri: String,
    /// `stats refresh DELAY`: how often the page updates itself (`None`: the default).
    pub refresh: Option<Duration>,
    /// `stats realm REALM`: the basic-authentication realm (`None`: the default).
    pub realm: Option<String>,
    /// `stats auth USER:PASSWORD` lines; when there are some, every request needs one.
    pub auths: Vec<StatsAuth>,
    /// `stats hide-version`.
    pub hide_version: bool,
    /// `stats admin if TRUE|LOCALHOST`: who may change servers from the page.
    pub admin: Option<StatsAdmin>,
    /// The path of `http-request use-service prometheus-exporter if { path PATH }`.
    pub prometheus_uri: Option<String>,
}

impl Stats {
    /// HAProxy's `stats uri` default.
    pub const DEFAULT_URI: &'static str = "/haproxy?stats";
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            enabled: false,
            span: None,
            uri: Stats::DEFAULT_URI.to_string(),
            refresh: None,
            realm: None,
            auths: Vec::new(),
            hide_version: false,
            admin: None,
            prometheus_uri: None,
        }
    }
}

/// `stats auth USER:PASSWORD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsAuth {
    pub user: String,
    /// Always [`Secret::Inline`] (as written); redacted in `Debug` output.
    pub password: Secret,
}

/// `stats admin if ...`: the conditions Switchyard understands (HAProxy's predefined ACLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAdmin {
    /// `if TRUE`: every client allowed to see the page.
    Always,
    /// `if LOCALHOST`: clients connecting from a loopback address.
    Localhost,
}

impl Proxy {
    /// A `mode http` frontend or listen that serves only the stats page and/or the
    /// Prometheus exporter: no server, no backend to route to. The TCP engine skips it; the
    /// stats server listens on its `bind` lines.
    pub fn is_stats_only(&self) -> bool {
        self.mode == Mode::Http
            && self.kind.has_frontend()
            && (self.stats.enabled || self.stats.prometheus_uri.is_some())
            && self.servers.is_empty()
            && self.default_backend.is_none()
            && self.use_backends.is_empty()
    }
}
