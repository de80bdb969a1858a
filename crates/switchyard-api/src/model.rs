//! Plain data the Runtime API formatters print: a snapshot of the process, its proxies and
//! their servers, in HAProxy's own terms. Nothing here refers to engine types; whoever answers
//! a command (the socket server, over the engine) fills these structs and hands them to
//! [`crate::format`].
//!
//! Field names follow HAProxy 2.6's `show stat` / `show servers state` / `show info` columns;
//! each field documents the HAProxy meaning. Times are in seconds unless said otherwise.

/// What `show info` prints (HAProxy's `INF_*` fields). Fields HAProxy has but Switchyard has no
/// notion of (SSL, compression, pipes, peers, zlib memory) are printed as HAProxy prints them
/// on a process without those features (0), and are not modelled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// `Name`: the product name; operators' scripts match `HAProxy`, so keep it.
    pub name: String,
    /// `Version` and `Build info`: the version string we print (e.g. `2.6.12-1+deb12u4`).
    pub version: String,
    /// `Release_date`: `YYYY/MM/DD`.
    pub release_date: String,
    /// `Nbthread`: worker threads.
    pub nbthread: u32,
    /// `Pid`: the process id.
    pub pid: u32,
    /// `Uptime` / `Uptime_sec`: seconds since start (`Uptime` is printed as `0d 1h00m53s`).
    pub uptime_sec: u32,
    /// `Start_time_sec`: start time, seconds since the Unix epoch.
    pub start_time_sec: u32,
    /// `PoolAlloc_bytes` (and `PoolAlloc_MB`): memory allocated in pools.
    pub pool_alloc_bytes: u64,
    /// `PoolUsed_bytes` (and `PoolUsed_MB`): memory used from pools.
    pub pool_used_bytes: u64,
    /// `PoolFailed`: failed pool allocations.
    pub pool_failed: u32,
    /// `Ulimit-n`: the file descriptor limit.
    pub ulimit_n: u32,
    /// `Maxsock`: the most sockets the process may hold.
    pub maxsock: u32,
    /// `Maxconn`: global `maxconn` (current).
    pub maxconn: u32,
    /// `Hard_maxconn`: global `maxconn` as configured.
    pub hard_maxconn: u32,
    /// `CurrConns`: connections currently open.
    pub curr_conns: u32,
    /// `CumConns`: connections accepted since start (HAProxy counts CLI ones too).
    pub cum_conns: u32,
    /// `CumReq`: requests since start (HTTP requests, plus one per CLI command).
    pub cum_req: u32,
    /// `ConnRate`: connections over the last second.
    pub conn_rate: u32,
    /// `ConnRateLimit`: global `maxconnrate` (0: none).
    pub conn_rate_limit: u32,
    /// `MaxConnRate`: highest `ConnRate` seen.
    pub max_conn_rate: u32,
    /// `SessRate`: sessions over the last second.
    pub sess_rate: u32,
    /// `SessRateLimit`: global `maxsessrate` (0: none).
    pub sess_rate_limit: u32,
    /// `MaxSessRate`: highest `SessRate` seen.
    pub max_sess_rate: u32,
    /// `Tasks`: scheduled tasks.
    pub tasks: u32,
    /// `Run_queue`: tasks ready to run.
    pub run_queue: u32,
    /// `Idle_pct`: percentage of idle time over the last period (100 when idle).
    pub idle_pct: u32,
    /// `node`: the node name (global `node`, default the host name).
    pub node: String,
    /// `description`: global `description`; not printed when absent.
    pub description: Option<String>,
    /// `Stopping`: 1 once a soft stop began.
    pub stopping: bool,
    /// `Jobs`: active jobs (listeners, sessions, CLI).
    pub jobs: u32,
    /// `Unstoppable Jobs`: jobs a soft stop waits for.
    pub unstoppable_jobs: u32,
    /// `Listeners`: bound listeners, the stats socket included.
    pub listeners: u32,
    /// `DroppedLogs`: log messages dropped (e.g. `EAGAIN` on the log socket).
    pub dropped_logs: u32,
    /// `BusyPolling`: whether the threads poll without sleeping now (global `busy-polling`,
    /// dropped once the process stops).
    pub busy_polling: bool,
    /// `FailedResolutions`: failed DNS resolutions.
    pub failed_resolutions: u32,
    /// `TotalBytesOut`: bytes sent to clients since start.
    pub total_bytes_out: u64,
    /// `BytesOutRate`: bytes per second sent over the last second.
    pub bytes_out_rate: u64,
    /// `Tainted`: HAProxy's taint flags (printed in hex, `0` when clean).
    pub tainted: u32,
}

/// What kind of object a `show stat` row describes (`type` column: 0, 1, 2; 3 is listeners,
/// which Switchyard does not report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjType {
    /// `FRONTEND` row, type 0, typed prefix `F`.
    Frontend = 0,
    /// `BACKEND` row, type 1, typed prefix `B`.
    Backend = 1,
    /// A server row, type 2, typed prefix `S`.
    Server = 2,
}

/// Everything `show stat`, `show backend`, `show servers state|conn` and `get weight` print:
/// the proxies in configuration order (HAProxy's proxy list order; the stats socket's
/// internal `GLOBAL` proxy is not one of them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub proxies: Vec<Proxy>,
}

/// The proxy mode (`mode` column). HTTP proxies have more columns filled (`hrsp_*`,
/// a backend's and server's `req_tot`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Http => "http",
        }
    }
}

/// A `frontend`, `backend` or `listen` section. A `listen` has both a frontend and a backend
/// part; HAProxy prints its FRONTEND row, its servers, then its BACKEND row, all under one
/// name and one `iid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `pxname`: the section name.
    pub name: String,
    /// `iid`: the proxy's unique id (`id` keyword or automatic: HAProxy numbers proxies from
    /// 1 in configuration order, its internal stats proxy taking the first ids, so the
    /// first user section of a config with a stats socket is 2).
    pub iid: u32,
    /// `bk_f_forced_id` in `show servers state`: the id was set with the `id` keyword.
    pub forced_id: bool,
    /// `mode`.
    pub mode: Mode,
    /// The frontend side (`frontend` or `listen`), `None` for a plain `backend`.
    pub frontend: Option<FrontendStats>,
    /// The backend side (`backend` or `listen`), `None` for a plain `frontend`.
    pub backend: Option<BackendStats>,
}

/// Traffic counters shared by every row type (`show stat` columns of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// `scur`: current sessions.
    pub scur: u32,
    /// `smax`: highest `scur` seen.
    pub smax: u32,
    /// `stot`: cumulated sessions.
    pub stot: u64,
    /// `bin`: bytes received from the client side.
    pub bin: u64,
    /// `bout`: bytes sent to the client side.
    pub bout: u64,
    /// `dreq`: requests denied (frontend/backend only).
    pub dreq: u64,
    /// `dresp`: responses denied.
    pub dresp: u64,
    /// `rate`: sessions over the last second.
    pub rate: u32,
    /// `rate_max`: highest `rate` seen.
    pub rate_max: u32,
    /// `wrew`: failed header rewrites.
    pub wrew: u64,
    /// `eint`: internal errors.
    pub eint: u64,
    /// `hrsp_1xx`..`hrsp_5xx`, `hrsp_other`: HTTP responses by status class, in that order
    /// (printed for `mode http` proxies only).
    pub hrsp: [u64; 6],
}

/// The frontend side of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrontendStats {
    pub counters: Counters,
    /// `slim`: the frontend's `maxconn`.
    pub slim: u32,
    /// `ereq`: request errors (client closed before a request, bad request...).
    pub ereq: u64,
    /// `status`: `OPEN`, `STOP` (disabled/stopped) or `FULL` (at maxconn).
    pub status: FrontendStatus,
    /// `rate_lim`: `rate-limit sessions` (0: none).
    pub rate_lim: u32,
    /// `req_rate`, `req_rate_max`, `req_tot`: HTTP requests received (HAProxy prints them
    /// for every frontend, 0 in TCP mode).
    pub req_rate: u32,
    pub req_rate_max: u32,
    pub req_tot: u64,
    /// `conn_rate`, `conn_rate_max`, `conn_tot`: accepted connections.
    pub conn_rate: u32,
    pub conn_rate_max: u32,
    pub conn_tot: u64,
    /// `dcon`: connections denied by `tcp-request connection` rules.
    pub dcon: u64,
    /// `dses`: sessions denied by `tcp-request session` rules.
    pub dses: u64,
}

/// A frontend's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrontendStatus {
    #[default]
    Open,
    Full,
    Stop,
}

impl FrontendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FrontendStatus::Open => "OPEN",
            FrontendStatus::Full => "FULL",
            FrontendStatus::Stop => "STOP",
        }
    }
}

/// Connection timing averages over the last 1024 sessions, in ms (`qtime`, `ctime`, `rtime`,
/// `ttime`) and their maxima (`*_max`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timings {
    pub qtime: u32,
    pub ctime: u32,
    pub rtime: u32,
    pub ttime: u32,
    pub qtime_max: u32,
    pub ctime_max: u32,
    pub rtime_max: u32,
    pub ttime_max: u32,
}

/// Counters of the backend side of a proxy and of each server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendCounters {
    pub counters: Counters,
    /// `qcur`: sessions waiting in the queue.
    pub qcur: u32,
    /// `qmax`: highest `qcur` seen.
    pub qmax: u32,
    /// `econ`: failed connection attempts.
    pub econ: u64,
    /// `eresp`: response errors (server closed/reset mid-session...).
    pub eresp: u64,
    /// `wretr`: connection retries.
    pub wretr: u64,
    /// `wredis`: redispatches to another server.
    pub wredis: u64,
    /// `lbtot`: times the object was selected by the load balancer (or a redispatch).
    pub lbtot: u64,
    /// `cli_abrt`: sessions aborted by the client.
    pub cli_abrt: u64,
    /// `srv_abrt`: sessions aborted by the server.
    pub srv_abrt: u64,
    /// `lastsess`: seconds since the last session was assigned, `None` if never (prints -1).
    pub lastsess: Option<u32>,
    /// `connect`: connection attempts.
    pub connect: u64,
    /// `reuse`: connection reuses.
    pub reuse: u64,
    /// `req_tot` (`mode http` only): HTTP requests answered, counted with their response
    /// (a backend counts every response, a server the ones it sent).
    pub req_tot: u64,
    pub timings: Timings,
}

/// The backend side of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendStats {
    pub counters: BackendCounters,
    /// `slim` of the BACKEND row: the backend's `fullconn` (HAProxy's default is 10% of the
    /// sum of the `maxconn` of the frontends that can reach it, 1 if none).
    pub fullconn: u32,
    /// `algo`: the `balance` algorithm as HAProxy names it (`roundrobin`, `static-rr`,
    /// `leastconn`, `first`, `source`, `random`...).
    pub algo: String,
    /// `chkdown` of the BACKEND row: times the backend went down.
    pub chkdown: u64,
    /// `lastchg`: seconds since the backend last changed state (UP/DOWN).
    pub lastchg: u32,
    /// `downtime`: total seconds the backend was down.
    pub downtime: u32,
    /// Servers in configuration order (dynamic ones appended).
    pub servers: Vec<Server>,
}

/// `srv_op_state` in `show servers state` (HAProxy's `enum srv_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpState {
    /// 0, `SRV_ST_STOPPED`: down.
    #[default]
    Stopped = 0,
    /// 1, `SRV_ST_STARTING`: up, in slowstart.
    Starting = 1,
    /// 2, `SRV_ST_RUNNING`: up.
    Running = 2,
    /// 3, `SRV_ST_STOPPING`: up but refusing new traffic (NOLB, e.g. a 404 with
    /// `http-check disable-on-404`).
    Stopping = 3,
}

/// `srv_admin_state`: HAProxy's `SRV_ADMF_*` bit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminState(pub u8);

impl AdminState {
    /// `SRV_ADMF_FMAINT`: forced into maintenance (CLI `state maint`, `disable server`).
    pub const FMAINT: u8 = 0x01;
    /// `SRV_ADMF_IMAINT`: inherited maintenance from a tracked server.
    pub const IMAINT: u8 = 0x02;
    /// `SRV_ADMF_CMAINT`: maintenance from the configuration (`disabled`).
    pub const CMAINT: u8 = 0x04;
    /// `SRV_ADMF_FDRAIN`: forced drain (CLI `state drain`).
    pub const FDRAIN: u8 = 0x08;
    /// `SRV_ADMF_IDRAIN`: inherited drain from a tracked server.
    pub const IDRAIN: u8 = 0x10;
    /// `SRV_ADMF_RMAINT`: maintenance because the name did not resolve.
    pub const RMAINT: u8 = 0x20;
    /// `SRV_ADMF_HMAINT`: maintenance because `set server ... addr`/`fqdn` from the CLI
    /// changed the FQDN.
    pub const HMAINT: u8 = 0x40;
    /// `SRV_ADMF_MAINT`: any kind of maintenance.
    pub const MAINT: u8 = Self::FMAINT | Self::IMAINT | Self::RMAINT | Self::CMAINT | Self::HMAINT;
    /// `SRV_ADMF_DRAIN`: any kind of drain.
    pub const DRAIN: u8 = Self::FDRAIN | Self::IDRAIN;

    pub fn is_maint(self) -> bool {
        self.0 & Self::MAINT != 0
    }
    pub fn is_drain(self) -> bool {
        self.0 & Self::DRAIN != 0
    }
}

/// `srv_check_status`: HAProxy's `enum healthcheck_status` (`HCHK_STATUS_*`); the names are
/// what `show stat` prints in `check_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckStatus {
    /// 0 `UNK`: unknown.
    Unknown = 0,
    /// 1 `INI`: initializing (no check ran yet).
    #[default]
    Ini = 1,
    /// 2 `START`: a check is running (never a result of its own).
    Start = 2,
    /// 4 `HANA`: health analyze (passive observation) detected too many errors.
    Hana = 4,
    /// 5 `SOCKERR`: socket error.
    SockErr = 5,
    /// 6 `L4OK`: layer 4 check passed (TCP connect).
    L4Ok = 6,
    /// 7 `L4TOUT`: layer 4 timeout.
    L4Tout = 7,
    /// 8 `L4CON`: layer 4 connection problem (refused, unreachable).
    L4Con = 8,
    /// 9 `L6OK`: layer 6 (SSL) check passed.
    L6Ok = 9,
    /// 10 `L6TOUT`: layer 6 timeout.
    L6Tout = 10,
    /// 11 `L6RSP`: layer 6 invalid response.
    L6Rsp = 11,
    /// 12 `L7TOUT`: layer 7 timeout.
    L7Tout = 12,
    /// 13 `L7RSP`: layer 7 invalid response.
    L7Rsp = 13,
    /// 15 `L7OK`: layer 7 check passed.
    L7Ok = 15,
    /// 16 `L7OKC`: layer 7 check conditionally passed.
    L7OkC = 16,
    /// 17 `L7STS`: layer 7 wrong status (e.g. HTTP 5xx).
    L7Sts = 17,
    /// 18 `PROCERR`: external check process error.
    ProcErr = 18,
    /// 19 `PROCTOUT`: external check timeout.
    ProcTout = 19,
    /// 20 `PROCOK`: external check passed.
    ProcOk = 20,
}

impl CheckStatus {
    /// Every status, in HAProxy's numbering order.
    pub const ALL: &'static [CheckStatus] = &[
        CheckStatus::Unknown,
        CheckStatus::Ini,
        CheckStatus::Start,
        CheckStatus::Hana,
        CheckStatus::SockErr,
        CheckStatus::L4Ok,
        CheckStatus::L4Tout,
        CheckStatus::L4Con,
        CheckStatus::L6Ok,
        CheckStatus::L6Tout,
        CheckStatus::L6Rsp,
        CheckStatus::L7Tout,
        CheckStatus::L7Rsp,
        CheckStatus::L7Ok,
        CheckStatus::L7OkC,
        CheckStatus::L7Sts,
        CheckStatus::ProcErr,
        CheckStatus::ProcTout,
        CheckStatus::ProcOk,
    ];

    /// The short name `show stat` prints in `check_status` (HAProxy's `check_statuses[].info`).
    pub fn name(self) -> &'static str {
        match self {
            CheckStatus::Unknown => "UNK",
            CheckStatus::Ini => "INI",
            CheckStatus::Start => "START",
            CheckStatus::Hana => "HANA",
            CheckStatus::SockErr => "SOCKERR",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Tout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L6Ok => "L6OK",
            CheckStatus::L6Tout => "L6TOUT",
            CheckStatus::L6Rsp => "L6RSP",
            CheckStatus::L7Tout => "L7TOUT",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7OkC => "L7OKC",
            CheckStatus::L7Sts => "L7STS",
            CheckStatus::ProcErr => "PROCERR",
            CheckStatus::ProcTout => "PROCTOUT",
            CheckStatus::ProcOk => "PROCOK",
        }
    }

    /// The long text `show stat` prints in `check_desc` (HAProxy's `check_statuses[].desc`).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Unknown => "Unknown",
            CheckStatus::Ini => "Initializing",
            CheckStatus::Start => "* starting *",
            CheckStatus::Hana => "Health analyze",
            CheckStatus::SockErr => "Socket error",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Tout => "Layer4 timeout",
            CheckStatus::L4Con => "Layer4 connection problem",
            CheckStatus::L6Ok => "Layer6 check passed",
            CheckStatus::L6Tout => "Layer6 timeout",
            CheckStatus::L6Rsp => "Layer6 invalid response",
            CheckStatus::L7Tout => "Layer7 timeout",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7OkC => "Layer7 check conditionally passed",
            CheckStatus::L7Sts => "Layer7 wrong status",
            CheckStatus::ProcErr => "External check error",
            CheckStatus::ProcTout => "External check timeout",
            CheckStatus::ProcOk => "External check passed",
        }
    }

    /// Whether the check finished (`>= HCHK_STATUS_CHECKED`): only then does HAProxy print
    /// `check_duration`.
    pub fn is_finished(self) -> bool {
        self as u8 >= 3
    }
}

/// `srv_check_result`: HAProxy's `enum chk_result` (`CHK_RES_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckResult {
    /// 0: not yet known.
    #[default]
    Unknown = 0,
    /// 1: neutral (no check, or a check that does not conclude).
    Neutral = 1,
    /// 2: failed.
    Failed = 2,
    /// 3: passed.
    Passed = 3,
    /// 4: conditionally passed (e.g. 404 with `disable-on-404`).
    CondPass = 4,
}

/// `srv_check_state` / `srv_agent_state`: HAProxy's `CHK_ST_*` bit flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckState(pub u16);

impl CheckState {
    /// `CHK_ST_INPROGRESS`: a check is running right now.
    pub const INPROGRESS: u16 = 0x0001;
    /// `CHK_ST_CONFIGURED`: the check is configured (`check`/`agent-check`).
    pub const CONFIGURED: u16 = 0x0002;
    /// `CHK_ST_ENABLED`: the check is enabled (not `disable health`).
    pub const ENABLED: u16 = 0x0004;
    /// `CHK_ST_PAUSED`: checks are paused (the server is in maintenance).
    pub const PAUSED: u16 = 0x0008;
    /// `CHK_ST_AGENT`: this is an agent check.
    pub const AGENT: u16 = 0x0010;

    pub fn is_enabled(self) -> bool {
        self.0 & Self::ENABLED != 0
    }
}

/// A health check's (or agent check's) state, as `show stat` and `show servers state` print it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Check {
    /// `srv_check_state`: `CHK_ST_*` flags. Without [`CheckState::ENABLED`] the stat columns
    /// `chkfail`, `chkdown`, `downtime`, `check_*` are empty and the status is `no check`.
    pub state: CheckState,
    /// `srv_check_status` / `check_status`: the last check's status.
    pub status: CheckStatus,
    /// `srv_check_result`.
    pub result: CheckResult,
    /// `check_code`: the L7 response code when there is one (e.g. the HTTP status).
    pub code: Option<u32>,
    /// `check_duration`: the last check's duration in ms.
    pub duration_ms: u64,
    /// `last_chk`: the last check's output text (`Connection refused`, the response line...);
    /// empty for a plain TCP success.
    pub desc: String,
    /// `check_rise`, `check_fall`.
    pub rise: u32,
    pub fall: u32,
    /// `srv_check_health` / `check_health`: HAProxy's counter, 0..rise+fall-1; UP at or above
    /// `rise`. A server without checks stays at `rise`.
    pub health: u32,
    /// `chkfail`: failed checks.
    pub failed: u64,
    /// `chkdown`: UP to DOWN transitions.
    pub down_transitions: u64,
    /// `srv_check_port`: `port` of the check when it differs from the server's, else 0.
    pub port: u16,
    /// `srv_check_addr` / `srv_agent_addr`: `addr` of the check, `None` prints `-`.
    pub addr: Option<String>,
}

/// One server line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Server {
    /// `svname` / `srv_name`.
    pub name: String,
    /// `sid` / `srv_id`: the server's id within its backend (from 1).
    pub id: u32,
    /// `srv_f_forced_id`: the id came from the `id` keyword.
    pub forced_id: bool,
    /// `srv_addr`: the address (without port).
    pub addr: String,
    /// `srv_port`: the port.
    pub port: u16,
    /// `srv_fqdn`: the configured host name, `None` when given as an address (prints `-`).
    pub fqdn: Option<String>,
    /// `srvrecord`: the SRV record, `None` prints `-`.
    pub srvrecord: Option<String>,
    /// `srv_use_ssl`.
    pub use_ssl: bool,
    /// `srv_op_state`.
    pub op_state: OpState,
    /// `srv_admin_state`.
    pub admin_state: AdminState,
    /// `srv_uweight` / `uweight`: the user weight (`set weight` changes it).
    pub uweight: u32,
    /// `srv_iweight`: the weight from the configuration (`get weight`'s "initial").
    pub iweight: u32,
    /// `weight`: the effective weight (0 when draining; scaled during slowstart).
    pub eweight: u32,
    /// `bck` vs `act`: a `backup` server.
    pub backup: bool,
    /// `slim`: the server's `maxconn`, `None` when unlimited (empty column).
    pub maxconn: Option<u32>,
    /// `qlimit`: the server's `maxqueue`, `None` when unlimited.
    pub maxqueue: Option<u32>,
    /// `lastchg` / `srv_time_since_last_change`: seconds since the last state change.
    pub last_change: u32,
    /// `downtime`: total seconds down (printed only with checks).
    pub downtime: u32,
    /// `tracked`: `backend/server` this one tracks.
    pub tracked: Option<String>,
    /// Traffic counters.
    pub counters: BackendCounters,
    /// `srv_icur`: idle connections kept for reuse.
    pub idle_conns: u32,
    /// `safe_conn_cur`, `used_conn_cur`: safe idle and used connections.
    pub safe_conns: u32,
    pub used_conns: u32,
    /// `need_conn_est`: HAProxy's estimate of connections needed (0 or 1 in TCP mode: 1 when
    /// checked and up at the last check).
    pub need_conn_est: u32,
    /// `used_max` of `show servers conn`: most connections used at once.
    pub used_max: u32,
    /// `unsafe_nb` of `show servers conn`: idle connections not safe to reuse.
    pub unsafe_conns: u32,
    /// `purge_delay` of `show servers conn`: `pool-purge-delay` in ms (HAProxy's default
    /// is 5000).
    pub pool_purge_delay_ms: u32,
    /// `idle_lim` of `show servers conn` and `src_ilim` of `show stat`: `pool-max-conn`,
    /// `None` when unlimited (HAProxy's default for configured servers: -1 and an empty
    /// column). HAProxy 2.6 gives servers added with `add server` `Some(0)`.
    pub pool_max_conn: Option<u32>,
    /// `idle_per_thr[]` of `show servers conn`: idle connections per thread (missing
    /// threads print 0).
    pub idle_per_thread: Vec<u32>,
    /// The health check.
    pub check: Check,
    /// The agent check (`srv_agent_state` etc.).
    pub agent: Check,
}

/// `show stat`'s output kind (`show stat`, `show stat typed`, `show stat json`; same for
/// `show info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatKind {
    #[default]
    Csv,
    Typed,
    Json,
}

/// Which proxy `show stat` restricts to (its first argument).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxyFilter {
    /// `-1`: every proxy.
    #[default]
    All,
    /// A proxy id.
    Id(u32),
    /// A proxy name.
    Name(String),
}

/// `show stat [{<iid>|<proxy>} <type> <sid>] [typed|json] [desc] [up|no-maint]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFilter {
    pub proxy: ProxyFilter,
    /// Bit mask of row types: 1 frontends, 2 backends, 4 servers (`-1` = all = 7).
    pub types: u8,
    /// Server id to restrict to, `None` for all (`-1`).
    pub sid: Option<u32>,
    /// `up`: only servers that are UP (op state not stopped, not in maintenance).
    pub up: bool,
    /// `no-maint`: skip servers in maintenance.
    pub no_maint: bool,
}

impl Default for StatFilter {
    fn default() -> Self {
        StatFilter {
            proxy: ProxyFilter::All,
            types: StatFilter::FRONTEND | StatFilter::BACKEND | StatFilter::SERVER,
            sid: None,
            up: false,
            no_maint: false,
        }
    }
}

impl StatFilter {
    pub const FRONTEND: u8 = 1;
    pub const BACKEND: u8 = 2;
    pub const SERVER: u8 = 4;
}
