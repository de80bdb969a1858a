//! Prometheus text exposition (format 0.0.4) of the stats snapshot, with the metric families
//! of HAProxy's built-in exporter (`http-request use-service prometheus-exporter`): the same
//! names (`haproxy_process_*`, `haproxy_frontend_*`, `haproxy_backend_*`,
//! `haproxy_server_*`), types, `proxy`/`server` labels, and `state` labels on
//! `*_status` and `haproxy_server_check_status` (one series per state, 1 for the current one),
//! so existing dashboards and alerts keep working.
//!
//! Differences, all deliberate:
//! - a value HAProxy prints as `NaN` (a limit that is not set) is left out;
//! - of the HTTP-only families, `mode http` proxies get the request and response counts
//!   (`http_requests_total`, `http_requests_rate_max`, `http_responses_total{code}`); the
//!   cache, compression and `intercepted_requests_total` ones are not printed, as
//!   Switchyard has none of those features;
//! - `haproxy_process_failed_resolutions` is a counter and is named
//!   `haproxy_process_failed_resolutions_total`, as Prometheus' conventions (and `promtool
//!   check metrics`) require;
//! - `haproxy_backend_up` (0/1, the shape of the standalone `haproxy_exporter`) is printed
//!   next to `haproxy_backend_status`, for alerts written against that exporter.
//!
//! The query string selects like HAProxy's: `scope=global|frontend|backend|server|listener|
//! sticktable|*` (repeatable; `scope=` alone selects nothing) and `no-maint` (skip servers
//! in maintenance).

use std::fmt::{self, Write as _};

use switchyard_api::model::{
    BackendStats, CheckStatus, FrontendStats, FrontendStatus, Info, Mode, OpState, Proxy, Server,
    Stats,
};

/// Which metrics a scrape asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub global: bool,
    pub frontend: bool,
    pub backend: bool,
    pub server: bool,
    /// `no-maint`: servers in maintenance are left out.
    pub no_maint: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        global: true,
        frontend: true,
        backend: true,
        server: true,
        no_maint: false,
    };

    /// The scope of a query string (`None`: no query). Unknown scopes are an error (HAProxy
    /// answers 400); other parameters are ignored.
    pub fn from_query(query: Option<&str>) -> Result<Scope, String> {
        let mut scope = Scope::ALL;
        let mut explicit: Option<Scope> = None;
        for (key, value) in crate::request::parse_pairs(query.unwrap_or(""))? {
            match key.as_str() {
                "scope" => {
                    let s = explicit.get_or_insert(Scope {
                        global: false,
                        frontend: false,
                        backend: false,
                        server: false,
                        no_maint: false,
                    });
                    match value.as_deref() {
                        None => return Err("'scope' expects a value".into()),
                        Some("") => {}
                        Some("*") => {
                            s.global = true;
                            s.frontend = true;
                            s.backend = true;
                            s.server = true;
                        }
                        Some("global") => s.global = true,
                        Some("frontend") => s.frontend = true,
                        Some("backend") => s.backend = true,
                        Some("server") => s.server = true,
                        // Valid in HAProxy; Switchyard has no listener or stick-table metrics.
                        Some("listener" | "sticktable") => {}
                        Some(other) => return Err(format!("unknown scope '{other}'")),
                    }
                }
                "no-maint" => scope.no_maint = true,
                _ => {}
            }
        }
        if let Some(s) = explicit {
            scope = Scope {
                no_maint: scope.no_maint,
                ..s
            };
        }
        Ok(scope)
    }
}

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::U(v) => write!(f, "{v}"),
            Num::I(v) => write!(f, "{v}"),
            Num::F(v) if v.is_nan() => f.write_str("NaN"),
            Num::F(v) if v.is_infinite() => f.write_str(if *v > 0.0 { "+Inf" } else { "-Inf" }),
            Num::F(v) => write!(f, "{v}"),
        }
    }
}

fn u(v: impl Into<u64>) -> Option<Num> {
    Some(Num::U(v.into()))
}

fn secs(ms: impl Into<u64>) -> Option<Num> {
    Some(Num::F(ms.into() as f64 / 1000.0))
}

/// Label values are escaped as the exposition format requires (`\\`, `\"`, `\n`).
fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

/// The exposition being written: one family at a time, all its samples together.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: Kind, samples: &[(String, Num)]) {
        if samples.is_empty() {
            return;
        }
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.text, "{name}{labels} {value}");
        }
    }
}

type InfoMetric = (&'static str, &'static str, Kind, fn(&Info) -> Option<Num>);

const PROCESS: &[InfoMetric] = &[
    ("nbthread", "Number of started threads (global.nbthread).", Kind::Gauge, |i| u(i.nbthread)),
    ("uptime_seconds", "How long ago this worker process was started (seconds).", Kind::Gauge, |i| u(i.uptime_sec)),
    ("start_time_seconds", "Start time in seconds.", Kind::Gauge, |i| u(i.start_time_sec)),
    ("pool_allocated_bytes", "Total amount of memory allocated in process pools (in bytes).", Kind::Gauge, |i| u(i.pool_alloc_bytes)),
    ("pool_used_bytes", "Total amount of memory used in process pools (in bytes).", Kind::Gauge, |i| u(i.pool_used_bytes)),
    ("pool_failures_total", "Number of failed pool allocations since this worker was started.", Kind::Counter, |i| u(i.pool_failed)),
    ("max_fds", "Hard system limit on the number of file descriptors (ulimit -n).", Kind::Gauge, |i| u(i.ulimit_n)),
    ("max_sockets", "Maximum number of sockets allowed for this process.", Kind::Gauge, |i| u(i.maxsock)),
    ("max_connections", "Maximum number of concurrent connections (global.maxconn).", Kind::Gauge, |i| u(i.maxconn)),
    ("hard_max_connections", "Initial maximum number of concurrent connections (global.maxconn).", Kind::Gauge, |i| u(i.hard_maxconn)),
    ("current_connections", "Current number of connections on this worker process.", Kind::Gauge, |i| u(i.curr_conns)),
    ("connections_total", "Total number of connections on this worker process since started.", Kind::Counter, |i| u(i.cum_conns)),
    ("requests_total", "Total number of requests on this worker process since started.", Kind::Counter, |i| u(i.cum_req)),
    ("current_connection_rate", "Number of front connections created on this worker process over the last second.", Kind::Gauge, |i| u(i.conn_rate)),
    ("limit_connection_rate", "Hard limit for ConnRate (global.maxconnrate).", Kind::Gauge, |i| u(i.conn_rate_limit)),
    ("max_connection_rate", "Highest ConnRate reached on this worker process since started (in connections per second).", Kind::Gauge, |i| u(i.max_conn_rate)),
    ("current_session_rate", "Number of sessions created on this worker process over the last second.", Kind::Gauge, |i| u(i.sess_rate)),
    ("limit_session_rate", "Hard limit for SessRate (global.maxsessrate).", Kind::Gauge, |i| u(i.sess_rate_limit)),
    ("max_session_rate", "Highest SessRate reached on this worker process since started (in sessions per second).", Kind::Gauge, |i| u(i.max_sess_rate)),
    ("current_tasks", "Total number of tasks in the current worker process (active + sleeping).", Kind::Gauge, |i| u(i.tasks)),
    ("current_run_queue", "Total number of active tasks+tasklets in the current worker process.", Kind::Gauge, |i| u(i.run_queue)),
    ("idle_time_percent", "Percentage of last second spent waiting in the current worker thread.", Kind::Gauge, |i| u(i.idle_pct)),
    ("stopping", "1 if the worker process is currently stopping, otherwise zero.", Kind::Gauge, |i| u(i.stopping)),
    ("jobs", "Current number of active jobs on the current worker process (frontend connections, master connections, listeners).", Kind::Gauge, |i| u(i.jobs)),
    ("unstoppable_jobs", "Current number of unstoppable jobs on the current worker process.", Kind::Gauge, |i| u(i.unstoppable_jobs)),
    ("listeners", "Current number of active listeners on the current worker process.", Kind::Gauge, |i| u(i.listeners)),
    ("dropped_logs_total", "Total number of dropped logs for current worker process since started.", Kind::Counter, |i| u(i.dropped_logs)),
    ("busy_polling_enabled", "1 if busy-polling is currently in use on the worker process, otherwise zero (config.busy-polling).", Kind::Gauge, |i| u(i.busy_polling)),
    ("failed_resolutions_total", "Total number of failed DNS resolutions in current worker process since started.", Kind::Counter, |i| u(i.failed_resolutions)),
    ("bytes_out_total", "Total number of bytes emitted by current worker process since started.", Kind::Counter, |i| u(i.total_bytes_out)),
    ("bytes_out_rate", "Number of bytes emitted by current worker process over the last second.", Kind::Gauge, |i| u(i.bytes_out_rate)),
];

type FrontendMetric = (
    &'static str,
    &'static str,
    Kind,
    fn(&FrontendStats) -> Option<Num>,
);

const FRONTEND: &[FrontendMetric] = &[
    ("current_sessions", "Number of current sessions on the frontend, backend or server.", Kind::Gauge, |f| u(f.counters.scur)),
    ("max_sessions", "Highest value of current sessions encountered since process started.", Kind::Gauge, |f| u(f.counters.smax)),
    ("limit_sessions", "Frontend/listener/server's maxconn, backend's fullconn.", Kind::Gauge, |f| u(f.slim)),
    ("sessions_total", "Total number of sessions since process started.", Kind::Counter, |f| u(f.counters.stot)),
    ("limit_session_rate", "Limit on the number of sessions accepted in a second (frontend only, 'rate-limit sessions' setting).", Kind::Gauge, |f| u(f.rate_lim)),
    ("max_session_rate", "Highest value of sessions per second observed since the worker process started.", Kind::Gauge, |f| u(f.counters.rate_max)),
    ("connections_rate_max", "Highest value of connections per second observed since the worker process started.", Kind::Gauge, |f| u(f.conn_rate_max)),
    ("connections_total", "Total number of new connections accepted on this frontend since the worker process started.", Kind::Counter, |f| u(f.conn_tot)),
    ("bytes_in_total", "Total number of request bytes since process started.", Kind::Counter, |f| u(f.counters.bin)),
    ("bytes_out_total", "Total number of response bytes since process started.", Kind::Counter, |f| u(f.counters.bout)),
    ("requests_denied_total", "Total number of denied requests since process started.", Kind::Counter, |f| u(f.counters.dreq)),
    ("responses_denied_total", "Total number of denied responses since process started.", Kind::Counter, |f| u(f.counters.dresp)),
    ("request_errors_total", "Total number of invalid requests since process started.", Kind::Counter, |f| u(f.ereq)),
    ("denied_connections_total", "Total number of incoming connections blocked on a listener/frontend by a tcp-request connection rule since the worker process started.", Kind::Counter, |f| u(f.dcon)),
    ("denied_sessions_total", "Total number of incoming sessions blocked on a listener/frontend by a tcp-request connection rule since the worker process started.", Kind::Counter, |f| u(f.dses)),
    ("failed_header_rewriting_total", "Total number of failed HTTP header rewrites since the worker process started.", Kind::Counter, |f| u(f.counters.wrew)),
    ("internal_errors_total", "Total number of internal errors since process started.", Kind::Counter, |f| u(f.counters.eint)),
];

type BackendMetric = (
    &'static str,
    &'static str,
    Kind,
    fn(&BackendStats) -> Option<Num>,
);

const BACKEND: &[BackendMetric] = &[
    ("current_queue", "Number of current queued connections.", Kind::Gauge, |b| u(b.counters.qcur)),
    ("max_queue", "Highest value of queued connections encountered since process started.", Kind::Gauge, |b| u(b.counters.qmax)),
    ("current_sessions", "Number of current sessions on the frontend, backend or server.", Kind::Gauge, |b| u(b.counters.counters.scur)),
    ("max_sessions", "Highest value of current sessions encountered since process started.", Kind::Gauge, |b| u(b.counters.counters.smax)),
    ("limit_sessions", "Frontend/listener/server's maxconn, backend's fullconn.", Kind::Gauge, |b| u(b.fullconn)),
    ("sessions_total", "Total number of sessions since process started.", Kind::Counter, |b| u(b.counters.counters.stot)),
    ("max_session_rate", "Highest value of sessions per second observed since the worker process started.", Kind::Gauge, |b| u(b.counters.counters.rate_max)),
    ("last_session_seconds", "How long ago some traffic was seen on this object on this worker process, in seconds.", Kind::Gauge, |b| last_session(b.counters.lastsess)),
    ("bytes_in_total", "Total number of request bytes since process started.", Kind::Counter, |b| u(b.counters.counters.bin)),
    ("bytes_out_total", "Total number of response bytes since process started.", Kind::Counter, |b| u(b.counters.counters.bout)),
    ("requests_denied_total", "Total number of denied requests since process started.", Kind::Counter, |b| u(b.counters.counters.dreq)),
    ("responses_denied_total", "Total number of denied responses since process started.", Kind::Counter, |b| u(b.counters.counters.dresp)),
    ("connection_errors_total", "Total number of failed connections to server since the worker process started.", Kind::Counter, |b| u(b.counters.econ)),
    ("response_errors_total", "Total number of invalid responses since the worker process started.", Kind::Counter, |b| u(b.counters.eresp)),
    ("retry_warnings_total", "Total number of server connection retries since the worker process started.", Kind::Counter, |b| u(b.counters.wretr)),
    ("redispatch_warnings_total", "Total number of server redispatches due to connection failures since the worker process started.", Kind::Counter, |b| u(b.counters.wredis)),
    ("failed_header_rewriting_total", "Total number of failed HTTP header rewrites since the worker process started.", Kind::Counter, |b| u(b.counters.counters.wrew)),
    ("internal_errors_total", "Total number of internal errors since process started.", Kind::Counter, |b| u(b.counters.counters.eint)),
    ("client_aborts_total", "Total number of requests or connections aborted by the client since the worker process started.", Kind::Counter, |b| u(b.counters.cli_abrt)),
    ("server_aborts_total", "Total number of requests or connections aborted by the server since the worker process started.", Kind::Counter, |b| u(b.counters.srv_abrt)),
    ("weight", "Server's effective weight, or sum of active servers' effective weights for a backend.", Kind::Gauge, |b| u(total_weight(b, |s| s.eweight))),
    ("uweight", "Server's user weight, or sum of active servers' user weights for a backend.", Kind::Gauge, |b| u(total_weight(b, |s| s.uweight))),
    ("active_servers", "Total number of active UP servers with a non-zero weight.", Kind::Gauge, |b| u(usable_count(b, false))),
    ("backup_servers", "Total number of backup UP servers with a non-zero weight.", Kind::Gauge, |b| u(usable_count(b, true))),
    ("check_up_down_total", "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the worker process started.", Kind::Counter, |b| u(b.chkdown)),
    ("check_last_change_seconds", "How long ago the last server state changed, in seconds.", Kind::Gauge, |b| u(b.lastchg)),
    ("downtime_seconds_total", "Total time spent in DOWN state, for server or backend.", Kind::Counter, |b| (!b.servers.is_empty()).then_some(Num::U(b.downtime.into()))),
    ("loadbalanced_total", "Total number of requests routed by load balancing since the worker process started (ignores queue pop and stickiness).", Kind::Counter, |b| u(b.counters.lbtot)),
    ("connection_attempts_total", "Total number of outgoing connection attempts on this backend/server since the worker process started.", Kind::Counter, |b| u(b.counters.connect)),
    ("connection_reuses_total", "Total number of reused connection on this backend/server since the worker process started.", Kind::Counter, |b| u(b.counters.reuse)),
    ("queue_time_average_seconds", "Avg. queue time for last 1024 successful connections.", Kind::Gauge, |b| secs(b.counters.timings.qtime)),
    ("connect_time_average_seconds", "Avg. connect time for last 1024 successful connections.", Kind::Gauge, |b| secs(b.counters.timings.ctime)),
    ("response_time_average_seconds", "Avg. response time for last 1024 successful connections.", Kind::Gauge, |b| secs(b.counters.timings.rtime)),
    ("total_time_average_seconds", "Avg. total time for last 1024 successful connections.", Kind::Gauge, |b| secs(b.counters.timings.ttime)),
    ("max_queue_time_seconds", "Maximum observed time spent in the queue.", Kind::Gauge, |b| secs(b.counters.timings.qtime_max)),
    ("max_connect_time_seconds", "Maximum observed time spent waiting for a connection to complete.", Kind::Gauge, |b| secs(b.counters.timings.ctime_max)),
    ("max_response_time_seconds", "Maximum observed time spent waiting for a server response.", Kind::Gauge, |b| secs(b.counters.timings.rtime_max)),
    ("max_total_time_seconds", "Maximum observed total request+response time (request+queue+connect+response+processing).", Kind::Gauge, |b| secs(b.counters.timings.ttime_max)),
];

type ServerMetric = (&'static str, &'static str, Kind, fn(&Server) -> Option<Num>);

const SERVER: &[ServerMetric] = &[
    ("current_queue", "Number of current queued connections.", Kind::Gauge, |s| u(s.counters.qcur)),
    ("max_queue", "Highest value of queued connections encountered since process started.", Kind::Gauge, |s| u(s.counters.qmax)),
    ("queue_limit", "Limit on the number of connections in queue, for servers only (maxqueue argument).", Kind::Gauge, |s| s.maxqueue.map(|q| Num::U(q.into()))),
    ("current_sessions", "Number of current sessions on the frontend, backend or server.", Kind::Gauge, |s| u(s.counters.counters.scur)),
    ("max_sessions", "Highest value of current sessions encountered since process started.", Kind::Gauge, |s| u(s.counters.counters.smax)),
    ("limit_sessions", "Frontend/listener/server's maxconn, backend's fullconn.", Kind::Gauge, |s| s.maxconn.map(|m| Num::U(m.into()))),
    ("sessions_total", "Total number of sessions since process started.", Kind::Counter, |s| u(s.counters.counters.stot)),
    ("max_session_rate", "Highest value of sessions per second observed since the worker process started.", Kind::Gauge, |s| u(s.counters.counters.rate_max)),
    ("last_session_seconds", "How long ago some traffic was seen on this object on this worker process, in seconds.", Kind::Gauge, |s| last_session(s.counters.lastsess)),
    ("bytes_in_total", "Total number of request bytes since process started.", Kind::Counter, |s| u(s.counters.counters.bin)),
    ("bytes_out_total", "Total number of response bytes since process started.", Kind::Counter, |s| u(s.counters.counters.bout)),
    ("responses_denied_total", "Total number of denied responses since process started.", Kind::Counter, |s| u(s.counters.counters.dresp)),
    ("connection_errors_total", "Total number of failed connections to server since the worker process started.", Kind::Counter, |s| u(s.counters.econ)),
    ("response_errors_total", "Total number of invalid responses since the worker process started.", Kind::Counter, |s| u(s.counters.eresp)),
    ("retry_warnings_total", "Total number of server connection retries since the worker process started.", Kind::Counter, |s| u(s.counters.wretr)),
    ("redispatch_warnings_total", "Total number of server redispatches due to connection failures since the worker process started.", Kind::Counter, |s| u(s.counters.wredis)),
    ("failed_header_rewriting_total", "Total number of failed HTTP header rewrites since the worker process started.", Kind::Counter, |s| u(s.counters.counters.wrew)),
    ("internal_errors_total", "Total number of internal errors since process started.", Kind::Counter, |s| u(s.counters.counters.eint)),
    ("client_aborts_total", "Total number of requests or connections aborted by the client since the worker process started.", Kind::Counter, |s| u(s.counters.cli_abrt)),
    ("server_aborts_total", "Total number of requests or connections aborted by the server since the worker process started.", Kind::Counter, |s| u(s.counters.srv_abrt)),
    ("weight", "Server's effective weight, or sum of active servers' effective weights for a backend.", Kind::Gauge, |s| u(s.eweight)),
    ("uweight", "Server's user weight, or sum of active servers' user weights for a backend.", Kind::Gauge, |s| u(s.uweight)),
    ("check_failures_total", "Total number of failed individual health checks per server/backend, since the worker process started.", Kind::Counter, |s| s.check.state.is_enabled().then_some(Num::U(s.check.failed))),
    ("check_up_down_total", "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the worker process started.", Kind::Counter, |s| s.check.state.is_enabled().then_some(Num::U(s.check.down_transitions))),
    ("check_last_change_seconds", "How long ago the last server state changed, in seconds.", Kind::Gauge, |s| u(s.last_change)),
    ("downtime_seconds_total", "Total time spent in DOWN state, for server or backend.", Kind::Counter, |s| s.check.state.is_enabled().then_some(Num::U(s.downtime.into()))),
    ("check_code", "layer5-7 code, if available of the last health check.", Kind::Gauge, |s| checking(s).then(|| Num::U(if (s.check.status as u8) < 14 { 0 } else { s.check.code.unwrap_or(0).into() }))),
    ("check_duration_seconds", "Total duration of the latest server health check, in seconds.", Kind::Gauge, |s| (s.check.state.is_enabled() && s.check.status.is_finished()).then(|| Num::F(s.check.duration_ms as f64 / 1000.0))),
    ("loadbalanced_total", "Total number of requests routed by load balancing since the worker process started (ignores queue pop and stickiness).", Kind::Counter, |s| u(s.counters.lbtot)),
    ("connection_attempts_total", "Total number of outgoing connection attempts on this backend/server since the worker process started.", Kind::Counter, |s| u(s.counters.connect)),
    ("connection_reuses_total", "Total number of reused connection on this backend/server since the worker process started.", Kind::Counter, |s| u(s.counters.reuse)),
    ("queue_time_average_seconds", "Avg. queue time for last 1024 successful connections.", Kind::Gauge, |s| secs(s.counters.timings.qtime)),
    ("connect_time_average_seconds", "Avg. connect time for last 1024 successful connections.", Kind::Gauge, |s| secs(s.counters.timings.ctime)),
    ("response_time_average_seconds", "Avg. response time for last 1024 successful connections.", Kind::Gauge, |s| secs(s.counters.timings.rtime)),
    ("total_time_average_seconds", "Avg. total time for last 1024 successful connections.", Kind::Gauge, |s| secs(s.counters.timings.ttime)),
    ("max_queue_time_seconds", "Maximum observed time spent in the queue.", Kind::Gauge, |s| secs(s.counters.timings.qtime_max)),
    ("max_connect_time_seconds", "Maximum observed time spent waiting for a connection to complete.", Kind::Gauge, |s| secs(s.counters.timings.ctime_max)),
    ("max_response_time_seconds", "Maximum observed time spent waiting for a server response.", Kind::Gauge, |s| secs(s.counters.timings.rtime_max)),
    ("max_total_time_seconds", "Maximum observed total request+response time (request+queue+connect+response+processing).", Kind::Gauge, |s| secs(s.counters.timings.ttime_max)),
    ("idle_connections_current", "Current number of idle connections available for reuse on this server.", Kind::Gauge, |s| u(s.idle_conns)),
    ("idle_connections_limit", "Limit on the number of available idle connections on this server (server 'pool_max_conn' directive).", Kind::Gauge, |s| s.pool_max_conn.map(|m| Num::U(m.into()))),
    ("unsafe_idle_connections_current", "Current number of unsafe idle connections.", Kind::Gauge, |s| u(s.unsafe_conns)),
    ("safe_idle_connections_current", "Current number of safe idle connections.", Kind::Gauge, |s| u(s.safe_conns)),
    ("used_connections_current", "Current number of connections in use.", Kind::Gauge, |s| u(s.used_conns)),
    ("need_connections_current", "Estimated needed number of connections.", Kind::Gauge, |s| u(s.need_conn_est)),
];

/// HAProxy prints -1 for "never".
fn last_session(lastsess: Option<u32>) -> Option<Num> {
    Some(lastsess.map_or(Num::I(-1), |s| Num::U(s.into())))
}

/// HAProxy's `srv_is_usable`: may take new traffic.
fn usable(s: &Server) -> bool {
    s.eweight > 0
        && !s.admin_state.is_maint()
        && !s.admin_state.is_drain()
        && matches!(s.op_state, OpState::Running | OpState::Starting)
}

fn usable_count(b: &BackendStats, backup: bool) -> u32 {
    b.servers
        .iter()
        .filter(|s| s.backup == backup && usable(s))
        .count() as u32
}

/// The weight HAProxy's load balancer sees: usable active servers, else usable backups
/// (the BACKEND row of `show stat`).
fn total_weight(b: &BackendStats, weight: fn(&Server) -> u32) -> u32 {
    let active: u32 = b
        .servers
        .iter()
        .filter(|s| !s.backup && usable(s))
        .map(weight)
        .sum();
    if active > 0 {
        return active;
    }
    b.servers
        .iter()
        .filter(|s| s.backup && usable(s))
        .map(weight)
        .sum()
}

fn backend_up(b: &BackendStats) -> bool {
    total_weight(b, |s| s.eweight) > 0 || b.servers.is_empty()
}

/// A health check that runs (enabled, not paused by maintenance): HAProxy prints its status
/// and code only then.
fn checking(s: &Server) -> bool {
    use switchyard_api::model::CheckState;
    s.check.state.0 & (CheckState::ENABLED | CheckState::PAUSED) == CheckState::ENABLED
}

/// HAProxy's `promex_srv_status`.
fn server_state(s: &Server) -> &'static str {
    if s.admin_state.is_maint() {
        return "MAINT";
    }
    match s.op_state {
        OpState::Running | OpState::Starting if s.admin_state.is_drain() => "DRAIN",
        OpState::Running | OpState::Starting => "UP",
        OpState::Stopping => "NOLB",
        OpState::Stopped => "DOWN",
    }
}

const SERVER_STATES: &[&str] = &["DOWN", "UP", "MAINT", "DRAIN", "NOLB"];

/// The `code` label of `*_http_responses_total`, in the order of `hrsp`.
const RESPONSE_CODES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

const HTTP_RESPONSES_HELP: &str = "Total number of HTTP responses with status 100-199 returned by this object since the worker process started.";
const HTTP_REQUESTS_HELP: &str =
    "Total number of HTTP requests processed by this object since the worker process started.";

/// `*_http_responses_total` samples of `mode http` objects: every object's `1xx`, then every
/// object's `2xx`..., as HAProxy's exporter orders them.
fn http_responses<'a>(
    objects: impl Iterator<Item = (Vec<(&'a str, &'a str)>, &'a [u64; 6])> + Clone,
) -> Vec<(String, Num)> {
    let mut samples = Vec::new();
    for (i, code) in RESPONSE_CODES.iter().enumerate() {
        for (mut pairs, hrsp) in objects.clone() {
            pairs.push(("code", code));
            samples.push((labels(&pairs), Num::U(hrsp[i])));
        }
    }
    samples
}

/// The whole exposition.
pub fn render(stats: &Stats, info: &Info, scope: Scope) -> String {
    let mut out = Exposition {
        text: String::with_capacity(16 * 1024),
    };
    if scope.global {
        for (name, help, kind, get) in PROCESS {
            if let Some(v) = get(info) {
                out.family(
                    &format!("haproxy_process_{name}"),
                    help,
                    *kind,
                    &[(String::new(), v)],
                );
            }
        }
        out.family(
            "haproxy_process_build_info",
            "Build info.",
            Kind::Gauge,
            &[(labels(&[("version", &info.version)]), Num::U(1))],
        );
    }
    let frontends: Vec<(&Proxy, &FrontendStats)> = stats
        .proxies
        .iter()
        .filter_map(|p| p.frontend.as_ref().map(|f| (p, f)))
        .collect();
    let backends: Vec<(&Proxy, &BackendStats)> = stats
        .proxies
        .iter()
        .filter_map(|p| p.backend.as_ref().map(|b| (p, b)))
        .collect();
    if scope.frontend {
        let mut samples = Vec::new();
        for (p, f) in &frontends {
            let up = f.status != FrontendStatus::Stop;
            for (state, on) in [("DOWN", !up), ("UP", up)] {
                samples.push((
                    labels(&[("proxy", &p.name), ("state", state)]),
                    Num::U(on.into()),
                ));
            }
        }
        out.family(
            "haproxy_frontend_status",
            "Current status of the service, per state label value.",
            Kind::Gauge,
            &samples,
        );
        for (name, help, kind, get) in FRONTEND {
            let samples: Vec<_> = frontends
                .iter()
                .filter_map(|(p, f)| get(f).map(|v| (labels(&[("proxy", &p.name)]), v)))
                .collect();
            out.family(&format!("haproxy_frontend_{name}"), help, *kind, &samples);
        }
        // HTTP families only for `mode http` frontends, as HAProxy's exporter does.
        let http: Vec<_> = frontends
            .iter()
            .filter(|(p, _)| p.mode == Mode::Http)
            .collect();
        let samples: Vec<_> = http
            .iter()
            .map(|(p, f)| (labels(&[("proxy", &p.name)]), Num::U(f.req_rate_max.into())))
            .collect();
        out.family(
            "haproxy_frontend_http_requests_rate_max",
            "Highest value of http requests observed since the worker process started.",
            Kind::Gauge,
            &samples,
        );
        let samples: Vec<_> = http
            .iter()
            .map(|(p, f)| (labels(&[("proxy", &p.name)]), Num::U(f.req_tot)))
            .collect();
        out.family(
            "haproxy_frontend_http_requests_total",
            HTTP_REQUESTS_HELP,
            Kind::Counter,
            &samples,
        );
        out.family(
            "haproxy_frontend_http_responses_total",
            HTTP_RESPONSES_HELP,
            Kind::Counter,
            &http_responses(
                http.iter()
                    .map(|(p, f)| (vec![("proxy", p.name.as_str())], &f.counters.hrsp)),
            ),
        );
    }
    if scope.backend {
        let mut samples = Vec::new();
        for (p, b) in &backends {
            let up = backend_up(b);
            for (state, on) in [("DOWN", !up), ("UP", up)] {
                samples.push((
                    labels(&[("proxy", &p.name), ("state", state)]),
                    Num::U(on.into()),
                ));
            }
        }
        out.family(
            "haproxy_backend_status",
            "Current status of the service, per state label value.",
            Kind::Gauge,
            &samples,
        );
        let samples: Vec<_> = backends
            .iter()
            .map(|(p, b)| (labels(&[("proxy", &p.name)]), Num::U(backend_up(b).into())))
            .collect();
        out.family(
            "haproxy_backend_up",
            "Current health status of the backend (1 = UP, 0 = DOWN).",
            Kind::Gauge,
            &samples,
        );
        for (name, help, kind, get) in BACKEND {
            let samples: Vec<_> = backends
                .iter()
                .filter_map(|(p, b)| get(b).map(|v| (labels(&[("proxy", &p.name)]), v)))
                .collect();
            out.family(&format!("haproxy_backend_{name}"), help, *kind, &samples);
        }
        let http: Vec<_> = backends
            .iter()
            .filter(|(p, _)| p.mode == Mode::Http)
            .collect();
        let samples: Vec<_> = http
            .iter()
            .map(|(p, b)| (labels(&[("proxy", &p.name)]), Num::U(b.counters.req_tot)))
            .collect();
        out.family(
            "haproxy_backend_http_requests_total",
            HTTP_REQUESTS_HELP,
            Kind::Counter,
            &samples,
        );
        out.family(
            "haproxy_backend_http_responses_total",
            HTTP_RESPONSES_HELP,
            Kind::Counter,
            &http_responses(
                http.iter()
                    .map(|(p, b)| (vec![("proxy", p.name.as_str())], &b.counters.counters.hrsp)),
            ),
        );
    }
    if scope.server {
        let servers: Vec<(&Proxy, &Server)> = backends
            .iter()
            .flat_map(|(p, b)| b.servers.iter().map(move |s| (*p, s)))
            .filter(|(_, s)| !(scope.no_maint && s.admin_state.is_maint()))
            .collect();
        let mut samples = Vec::new();
        for (p, s) in &servers {
            let current = server_state(s);
            for state in SERVER_STATES {
                samples.push((
                    labels(&[("proxy", &p.name), ("server", &s.name), ("state", state)]),
                    Num::U((*state == current).into()),
                ));
            }
        }
        out.family(
            "haproxy_server_status",
            "Current status of the service, per state label value.",
            Kind::Gauge,
            &samples,
        );
        let mut samples = Vec::new();
        for (p, s) in servers.iter().filter(|(_, s)| checking(s)) {
            // The statuses that conclude a check, as HAProxy's exporter lists them.
            let concluding = CheckStatus::ALL.iter().filter(|s| {
                !matches!(
                    s,
                    CheckStatus::Unknown | CheckStatus::Ini | CheckStatus::Start
                )
            });
            for status in concluding {
                samples.push((
                    labels(&[
                        ("proxy", &p.name),
                        ("server", &s.name),
                        ("state", status.name()),
                    ]),
                    Num::U((s.check.status == *status).into()),
                ));
            }
        }
        out.family(
            "haproxy_server_check_status",
            "Status of last health check, per state label value.",
            Kind::Gauge,
            &samples,
        );
        for (name, help, kind, get) in SERVER {
            let samples: Vec<_> = servers
                .iter()
                .filter_map(|(p, s)| {
                    get(s).map(|v| (labels(&[("proxy", &p.name), ("server", &s.name)]), v))
                })
                .collect();
            out.family(&format!("haproxy_server_{name}"), help, *kind, &samples);
        }
        // HAProxy 2.6's exporter has no per-server `http_requests_total`.
        out.family(
            "haproxy_server_http_responses_total",
            HTTP_RESPONSES_HELP,
            Kind::Counter,
            &http_responses(
                servers
                    .iter()
                    .filter(|(p, _)| p.mode == Mode::Http)
                    .map(|(p, s)| {
                        (
                            vec![("proxy", p.name.as_str()), ("server", s.name.as_str())],
                            &s.counters.counters.hrsp,
                        )
                    }),
            ),
        );
    }
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_api::model::{AdminState, BackendCounters, Check, CheckState, Counters, Mode};

    fn server(name: &str, op: OpState, admin: u8, checked: bool) -> Server {
        Server {
            name: name.into(),
            id: 1,
            addr: "127.0.0.1".into(),
            port: 5432,
            op_state: op,
            admin_state: AdminState(admin),
            uweight: 1,
            iweight: 1,
            eweight: 1,
            maxconn: Some(100),
            counters: BackendCounters {
                counters: Counters {
                    scur: 2,
                    stot: 40,
                    bin: 1000,
                    bout: 2000,
                    ..Default::default()
                },
                econ: 3,
                wretr: 4,
                wredis: 1,
                ..Default::default()
            },
            check: if checked {
                Check {
                    // The runtime pauses the checks of a server in maintenance.
                    state: CheckState(
                        CheckState::CONFIGURED
                            | CheckState::ENABLED
                            | if admin & AdminState::FMAINT != 0 {
                                CheckState::PAUSED
                            } else {
                                0
                            },
                    ),
                    status: CheckStatus::L4Ok,
                    duration_ms: 5,
                    failed: 7,
                    rise: 2,
                    fall: 3,
                    health: 4,
                    ..Default::default()
                }
            } else {
                Check::default()
            },
            downtime: 12,
            ..Default::default()
        }
    }

    fn snapshot() -> (Stats, Info) {
        let stats = Stats {
            proxies: vec![Proxy {
                name: "pg \"main\"".into(),
                iid: 2,
                forced_id: false,
                mode: Mode::Tcp,
                frontend: Some(FrontendStats {
                    counters: Counters {
                        scur: 1,
                        stot: 9,
                        bin: 10,
                        bout: 20,
                        ..Default::default()
                    },
                    slim: 2000,
                    ..Default::default()
                }),
                backend: Some(BackendStats {
                    algo: "roundrobin".into(),
                    servers: vec![
                        server("db1", OpState::Running, 0, true),
                        server("db2", OpState::Running, AdminState::FDRAIN, false),
                        server("db3", OpState::Stopped, AdminState::FMAINT, true),
                    ],
                    ..Default::default()
                }),
            }],
        };
        let info = Info {
            name: "Switchyard".into(),
            version: "0.1.0".into(),
            uptime_sec: 60,
            curr_conns: 1,
            busy_polling: true,
            ..Default::default()
        };
        (stats, info)
    }

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| l[series.len() + 1..].to_string())
    }

    #[test]
    fn families_and_values() {
        let (stats, info) = snapshot();
        let text = render(&stats, &info, Scope::ALL);
        let px = "proxy=\"pg \\\"main\\\"\"";
        assert_eq!(
            value(&text, "haproxy_process_uptime_seconds").as_deref(),
            Some("60")
        );
        assert_eq!(
            value(&text, "haproxy_process_build_info{version=\"0.1.0\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "haproxy_process_busy_polling_enabled").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, &format!("haproxy_frontend_current_sessions{{{px}}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, &format!("haproxy_frontend_bytes_in_total{{{px}}}")).as_deref(),
            Some("10")
        );
        assert_eq!(
            value(
                &text,
                &format!("haproxy_backend_status{{{px},state=\"UP\"}}")
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, &format!("haproxy_backend_up{{{px}}}")).as_deref(),
            Some("1")
        );
        // db2 drains, db3 is in maintenance: one usable active server.
        assert_eq!(
            value(&text, &format!("haproxy_backend_active_servers{{{px}}}")).as_deref(),
            Some("1")
        );
        let s1 = format!("{px},server=\"db1\"");
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_status{{{s1},state=\"UP\"}}")
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_status{{{s1},state=\"DOWN\"}}")
            )
            .as_deref(),
            Some("0")
        );
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_status{{{px},server=\"db2\",state=\"DRAIN\"}}")
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_status{{{px},server=\"db3\",state=\"MAINT\"}}")
            )
            .as_deref(),
            Some("1")
        );
        for (family, expected) in [
            ("haproxy_server_sessions_total", "40"),
            ("haproxy_server_bytes_in_total", "1000"),
            ("haproxy_server_bytes_out_total", "2000"),
            ("haproxy_server_connection_errors_total", "3"),
            ("haproxy_server_retry_warnings_total", "4"),
            ("haproxy_server_redispatch_warnings_total", "1"),
            ("haproxy_server_check_failures_total", "7"),
            ("haproxy_server_downtime_seconds_total", "12"),
            ("haproxy_server_weight", "1"),
            ("haproxy_server_limit_sessions", "100"),
            ("haproxy_server_check_duration_seconds", "0.005"),
            ("haproxy_server_last_session_seconds", "-1"),
        ] {
            assert_eq!(
                value(&text, &format!("{family}{{{s1}}}")).as_deref(),
                Some(expected),
                "{family}\n{text}"
            );
        }
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_check_status{{{s1},state=\"L4OK\"}}")
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &text,
                &format!("haproxy_server_check_status{{{s1},state=\"L4CON\"}}")
            )
            .as_deref(),
            Some("0")
        );
        // No check: no check metrics; in maintenance: checks are paused.
        assert!(!text.contains(
            "haproxy_server_check_failures_total{proxy=\"pg \\\"main\\\"\",server=\"db2\"}"
        ));
        assert!(
            !text.contains("haproxy_server_check_status{proxy=\"pg \\\"main\\\"\",server=\"db3\"")
        );
        assert!(!text.contains("NaN"));
    }

    #[test]
    fn every_family_has_help_and_type_once_and_contiguous_samples() {
        let (stats, info) = snapshot();
        let text = render(&stats, &info, Scope::ALL);
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split(' ');
                assert_eq!(words.next(), Some(current.as_str()));
                let kind = words.next().unwrap();
                assert!(kind == "gauge" || kind == "counter");
                assert_eq!(kind == "counter", current.ends_with("_total"), "{current}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line}");
            }
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::from_query(None).unwrap(), Scope::ALL);
        let s = Scope::from_query(Some("scope=server&scope=backend&no-maint")).unwrap();
        assert!(s.server && s.backend && !s.global && !s.frontend && s.no_maint);
        let s = Scope::from_query(Some("scope=")).unwrap();
        assert!(!s.server && !s.backend && !s.global && !s.frontend);
        assert_eq!(Scope::from_query(Some("scope=*")).unwrap(), Scope::ALL);
        assert!(Scope::from_query(Some("scope=nope")).is_err());
        assert!(Scope::from_query(Some("scope")).is_err());
        assert!(Scope::from_query(Some("scope=%zz")).is_err());
        let (stats, info) = snapshot();
        let only = render(
            &stats,
            &info,
            Scope::from_query(Some("scope=frontend")).unwrap(),
        );
        assert!(only.contains("haproxy_frontend_status"));
        assert!(!only.contains("haproxy_process_") && !only.contains("haproxy_server_"));
        let no_maint = render(&stats, &info, Scope::from_query(Some("no-maint")).unwrap());
        assert!(!no_maint.contains("server=\"db3\""));
        assert!(no_maint.contains("server=\"db2\""));
    }

    #[test]
    fn label_escaping() {
        let mut out = String::new();
        escape_label("a\\b\"c\nd", &mut out);
        assert_eq!(out, "a\\\\b\\\"c\\nd");
    }
}
