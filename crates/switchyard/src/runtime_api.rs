//! The Runtime API over the engine: turns parsed commands into engine operations and engine
//! state into the plain snapshots the HAProxy-compatible formatters print.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_api::command::{
    self, AdminState as CliAdmin, Command, Format, HealthState, Level, ProxySelector, ServerRef,
    SetServer, ShowSess, Weight as CliWeight,
};
use switchyard_api::format::{self, replies};
use switchyard_api::model::{self, FormatKind};
use switchyard_config::{Balance, Host, Span};
use switchyard_engine::state::{AdminState, Backend, Counters, Frontend, Server};
use switchyard_engine::{Runtime, Weight};

use crate::state_file::StateFile;

/// Answers Runtime API commands against a running engine.
pub struct Executor {
    runtime: Arc<Runtime>,
    started: SystemTime,
    /// Where changes are persisted (`runtime-state-file`), if configured.
    state_file: Option<Arc<StateFile>>,
}

impl Executor {
    pub fn new(runtime: Arc<Runtime>, state_file: Option<Arc<StateFile>>) -> Self {
        Executor {
            runtime,
            started: SystemTime::now(),
            state_file,
        }
    }

    /// The engine this executor works on.
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime)
    }

    pub fn state_file(&self) -> Option<Arc<StateFile>> {
        self.state_file.clone()
    }

    fn nbthread(&self) -> u32 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    }
}

impl switchyard_api::server::Executor for Executor {
    async fn execute(&self, command: Command, _level: Level) -> String {
        let persist = crate::state_file::changes_state(&command);
        let reply = self.run(command).await;
        // Written before the reply goes out: once an operator sees the answer, the change
        // survives a crash. A failed command is harmless to write (nothing changed).
        if let (true, Some(file)) = (persist, &self.state_file) {
            if let Err(error) = file.save(&self.runtime) {
                tracing::error!("{error:#}");
                return format!("{reply}Warning: the change is not saved: {error:#}\n");
            }
        }
        reply
    }
}

fn kind(format: Format) -> FormatKind {
    match format {
        Format::Default => FormatKind::Csv,
        Format::Typed => FormatKind::Typed,
        Format::Json => FormatKind::Json,
    }
}

impl Executor {
    /// Runs a command without persisting its effect (the caller decides).
    pub(crate) async fn run(&self, command: Command) -> String {
        let rt = &self.runtime;
        match command {
            Command::ShowInfo(show) => format::show_info(&self.info(), kind(show.format)),
            Command::ShowStat(show) => {
                let mut filter = model::StatFilter {
                    up: show.up,
                    no_maint: show.no_maint,
                    ..Default::default()
                };
                if let Some(f) = show.filter {
                    filter.proxy = match f.proxy {
                        ProxySelector::Id(id) if id < 0 => model::ProxyFilter::All,
                        ProxySelector::Id(id) => model::ProxyFilter::Id(id as u32),
                        ProxySelector::Name(name) => model::ProxyFilter::Name(name),
                    };
                    if f.types >= 0 {
                        filter.types = (f.types & 0x7) as u8;
                    }
                    if f.server_id >= 0 {
                        filter.sid = Some(f.server_id as u32);
                    }
                }
                format::show_stat(&self.stats(), &filter, kind(show.format))
            }
            Command::ShowServersState(backend) => {
                format::show_servers_state(&self.stats(), backend.as_deref())
            }
            Command::ShowServersConn(backend) => {
                format::show_servers_conn(&self.stats(), backend.as_deref(), self.nbthread())
            }
            Command::ShowBackend => format::show_backend(&self.stats()),
            Command::ShowSess(which) => self.show_sess(which),
            Command::ShowVersion => format!("{}\n", env!("CARGO_PKG_VERSION")),
            Command::GetWeight(server) => format::get_weight(&self.stats(), &server.to_string()),
            Command::AddServer {
                server,
                addr,
                keywords,
            } => self.add_server(server, &addr, &keywords).await,
            Command::DelServer(server) => match rt.del_server(&server.backend, &server.server) {
                Ok(()) => replies::DEL_SERVER_OK.to_string(),
                Err(e) => e.to_string(),
            },
            Command::SetServer(server, change) => self.set_server(&server, change),
            Command::EnableServer(s) => {
                with_newline(rt.set_admin_state(&s.backend, &s.server, AdminState::Ready))
            }
            Command::DisableServer(s) => {
                with_newline(rt.set_admin_state(&s.backend, &s.server, AdminState::Maint))
            }
            Command::EnableHealth(s) => {
                with_newline(rt.set_checks_enabled(&s.backend, &s.server, true))
            }
            Command::DisableHealth(s) => {
                with_newline(rt.set_checks_enabled(&s.backend, &s.server, false))
            }
            Command::EnableAgent(s) => {
                with_newline(rt.set_agent_enabled(&s.backend, &s.server, true))
            }
            Command::DisableAgent(s) => {
                with_newline(rt.set_agent_enabled(&s.backend, &s.server, false))
            }
            Command::SetWeight(s, weight) => {
                with_newline(rt.set_weight(&s.backend, &s.server, engine_weight(weight)))
            }
            Command::SetMaxconnServer(s, n) => {
                with_newline(rt.set_server_maxconn(&s.backend, &s.server, n))
            }
            Command::ShutdownSessionsServer(s) => {
                with_newline(rt.shutdown_server_sessions(&s.backend, &s.server))
            }
            Command::ShutdownSession(id) => with_newline(rt.shutdown_session(id)),
            Command::ClearCounters { all } => {
                self.clear_counters(all);
                String::new()
            }
            Command::SetMaxconnFrontend { frontend, maxconn } => {
                with_newline(rt.set_frontend_maxconn(&frontend, maxconn))
            }
            Command::SetMaxconnGlobal(maxconn) => with_newline(rt.set_global_maxconn(maxconn)),
            Command::Other { .. } => {
                "This command is not supported by Switchyard yet.\n".to_string()
            }
            // Answered by the socket server itself; kept total for the compiler.
            Command::Help(_)
            | Command::Reload
            | Command::Prompt
            | Command::Quit
            | Command::LowerLevel(_)
            | Command::SetTimeoutCli(_) => String::new(),
        }
    }

    fn set_server(&self, s: &ServerRef, change: SetServer) -> String {
        let rt = &self.runtime;
        match change {
            SetServer::State(state) => {
                let state = match state {
                    CliAdmin::Ready => AdminState::Ready,
                    CliAdmin::Drain => AdminState::Drain,
                    CliAdmin::Maint => AdminState::Maint,
                };
                with_newline(rt.set_admin_state(&s.backend, &s.server, state))
            }
            SetServer::Weight(weight) => {
                with_newline(rt.set_weight(&s.backend, &s.server, engine_weight(weight)))
            }
            SetServer::Addr { addr, port } => {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    return "Invalid addr.\n".to_string();
                };
                let port = match port.map(|p| p.parse::<u16>()) {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(_)) => return "provided port is not an integer\n".to_string(),
                };
                let old = match rt.server(&s.backend, &s.server) {
                    Ok((_, server)) => server.addr(),
                    Err(e) => return format!("{e}\n"),
                };
                match rt.set_addr(&s.backend, &s.server, ip, port) {
                    Ok(_) => replies::set_server_addr(
                        &old.ip().to_string(),
                        &ip.to_string(),
                        port.map(|p| (old.port(), p)),
                    ),
                    Err(e) => format!("{e}\n"),
                }
            }
            SetServer::Health(state) => match rt.server(&s.backend, &s.server) {
                Ok((backend, server)) => {
                    set_health(backend, &server, state);
                    String::new()
                }
                Err(e) => format!("{e}\n"),
            },
            SetServer::Agent(up) => with_newline(rt.set_agent_state(&s.backend, &s.server, up)),
            // HAProxy answers this one as a notice: no empty line after it.
            SetServer::CheckPort(port) => match rt.set_check_port(&s.backend, &s.server, port) {
                Ok(()) => String::new(),
                Err(e) => e.to_string(),
            },
        }
    }

    async fn add_server(
        &self,
        s: ServerRef,
        addr: &str,
        keywords: &[command::ServerKeyword],
    ) -> String {
        let (host, port) = match split_addr(addr) {
            Some(parts) => parts,
            None => return format!("Invalid address '{addr}'.\n"),
        };
        let span = Span {
            file: "<runtime api>".into(),
            line: 0,
        };
        let mut server = switchyard_config::Server::new(span, s.server.clone(), host, port);
        for keyword in keywords {
            if let Err(message) = apply_keyword(&mut server, keyword) {
                return format!("{message}\n");
            }
        }
        match self
            .runtime
            .add_server(&s.backend, server, &add_server_spec(addr, keywords))
            .await
        {
            Ok(()) => replies::ADD_SERVER_OK.to_string(),
            Err(e) if e.0.starts_with("No such backend") => {
                replies::ADD_DEL_NO_SUCH_BACKEND.to_string()
            }
            Err(e) => format!("{e}\n"),
        }
    }

    fn show_sess(&self, which: ShowSess) -> String {
        let now = std::time::Instant::now();
        let mut out = String::new();
        for session in self.runtime.process.sessions.list() {
            if let ShowSess::Id(id) = which {
                if id != session.id {
                    continue;
                }
            }
            let (be, srv) = session
                .server
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_else(|| ("<NONE>".into(), "<none>".into()));
            let proto = if session.client.is_ipv4() {
                "tcpv4"
            } else {
                "tcpv6"
            };
            out.push_str(&format!(
                "0x{:x}: proto={proto} src={} fe={} be={be} srv={srv} ts=00 age={}s\n",
                session.id,
                session.client,
                session.frontend,
                now.duration_since(session.accepted).as_secs()
            ));
        }
        out
    }

    fn clear_counters(&self, all: bool) {
        let reset = |c: &Counters| {
            c.max
                .store(c.current.load(Ordering::Relaxed), Ordering::Relaxed);
            c.queue_max
                .store(c.queue_current.load(Ordering::Relaxed), Ordering::Relaxed);
            if all {
                for counter in [
                    &c.total,
                    &c.bytes_in,
                    &c.bytes_out,
                    &c.connect_errors,
                    &c.response_errors,
                    &c.retries,
                    &c.redispatches,
                    &c.client_aborts,
                    &c.server_aborts,
                    &c.lb_total,
                ] {
                    counter.store(0, Ordering::Relaxed);
                }
            }
        };
        for frontend in &self.runtime.frontends {
            reset(&frontend.counters);
        }
        for backend in &self.runtime.backends {
            reset(&backend.counters);
            for server in backend.servers.load().iter() {
                reset(&server.counters);
            }
        }
    }

    fn info(&self) -> model::Info {
        let process = &self.runtime.process;
        let uptime = process.started.elapsed().as_secs() as u32;
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as u32;
        let bytes_out = self
            .runtime
            .frontends
            .iter()
            .map(|f| f.counters.bytes_out.load(Ordering::Relaxed))
            .sum();
        model::Info {
            name: "Switchyard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            release_date: String::new(),
            nbthread: self.nbthread(),
            pid: std::process::id(),
            uptime_sec: uptime,
            start_time_sec: start,
            maxconn: process.maxconn.load(Ordering::Relaxed),
            hard_maxconn: process.hard_maxconn,
            curr_conns: process.active.load(Ordering::Relaxed),
            cum_conns: process.total.load(Ordering::Relaxed) as u32,
            idle_pct: 100,
            node: hostname(),
            jobs: process.active.load(Ordering::Relaxed),
            listeners: self.runtime.frontends.len() as u32,
            total_bytes_out: bytes_out,
            ..Default::default()
        }
    }

    /// The proxies in id order: a `listen` is one proxy with both parts.
    fn stats(&self) -> model::Stats {
        let rt = &self.runtime;
        let mut ids: Vec<(u32, String)> = rt
            .frontends
            .iter()
            .map(|f| (f.id, f.name.clone()))
            .chain(rt.backends.iter().map(|b| (b.id, b.name.clone())))
            .collect();
        ids.sort();
        ids.dedup();
        let proxies = ids
            .into_iter()
            .map(|(id, name)| model::Proxy {
                frontend: rt
                    .frontends
                    .iter()
                    .find(|f| f.id == id)
                    .map(|f| frontend_stats(f)),
                backend: rt
                    .backends
                    .iter()
                    .find(|b| b.id == id)
                    .map(|b| backend_stats(b)),
                name,
                iid: id,
                forced_id: false,
                mode: model::Mode::Tcp,
            })
            .collect();
        model::Stats { proxies }
    }
}

fn with_newline(result: Result<(), switchyard_engine::ControlError>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(e) => format!("{e}\n"),
    }
}

fn engine_weight(weight: CliWeight) -> Weight {
    match weight {
        CliWeight::Absolute(n) => Weight::Absolute(n),
        CliWeight::Percent(p) => Weight::Percent(p),
    }
}

/// `set server B/S health up|stopping|down`: force the check result, as HAProxy does.
fn set_health(backend: &Backend, server: &Server, state: HealthState) {
    let up = !matches!(state, HealthState::Down);
    {
        let mut health = server.health();
        if up {
            health.counter.force_up();
        } else {
            health.counter.force_down();
        }
    }
    server.up.store(up, Ordering::Relaxed);
    backend.bump_generation();
}

/// `ADDR[:PORT]` of `add server`: an IP, `[v6]:port`, or a hostname (our extension: resolved
/// now and on each restart).
fn split_addr(addr: &str) -> Option<(Host, Option<u16>)> {
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Some((Host::Ip(ip), None));
    }
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Some((Host::Ip(sock.ip()), Some(sock.port())));
    }
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
        None => (addr, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return None;
    }
    Some((Host::Name(host.to_string()), port))
}

/// The `add server` arguments after the name, re-parsable by the command grammar (spaces
/// and backslashes escaped as its tokenizer expects).
fn add_server_spec(addr: &str, keywords: &[command::ServerKeyword]) -> String {
    let escape = |word: &str| word.replace('\\', "\\\\").replace(' ', "\\ ");
    let mut spec = escape(addr);
    for keyword in keywords {
        spec.push(' ');
        spec.push_str(&escape(&keyword.name));
        if let Some(value) = &keyword.value {
            spec.push(' ');
            spec.push_str(&escape(value));
        }
    }
    spec
}

/// Applies one `add server` keyword to the new server.
fn apply_keyword(
    server: &mut switchyard_config::Server,
    keyword: &command::ServerKeyword,
) -> Result<(), String> {
    let value = || keyword.value.clone().unwrap_or_default();
    let number = || {
        value()
            .parse::<u32>()
            .map_err(|_| format!("'{}' expects an integer argument.", keyword.name))
    };
    let duration = || {
        switchyard_config::parse_duration(&value()).map_err(|e| format!("'{}': {e}", keyword.name))
    };
    match keyword.name.as_str() {
        "weight" => {
            let weight = number()?;
            if weight > 256 {
                return Err("weight must be between 0 and 256.".into());
            }
            server.weight = weight;
        }
        "check" => server.check = true,
        "no-check" => server.check = false,
        "backup" => server.backup = true,
        "no-backup" => server.backup = false,
        "maxconn" => server.maxconn = Some(number()?),
        "maxqueue" => server.maxqueue = Some(number()?),
        "disabled" => server.disabled = true,
        "enabled" => server.disabled = false,
        "inter" => server.inter = duration()?,
        "fastinter" => server.fastinter = Some(duration()?),
        "downinter" => server.downinter = Some(duration()?),
        "rise" => server.rise = number()?.max(1),
        "fall" => server.fall = number()?.max(1),
        "port" => {
            server.check_port = Some(
                value()
                    .parse()
                    .map_err(|_| "'port' expects a port.".to_string())?,
            )
        }
        "addr" => {
            let ip = value()
                .parse::<IpAddr>()
                .map_err(|_| "'addr' expects an IP address.".to_string())?;
            server.check_addr = Some(Host::Ip(ip));
        }
        "observe" => server.observe_layer4 = value() == "layer4",
        "error-limit" => server.error_limit = Some(number()?),
        "id" => server.id = number()?,
        "agent-check" => server.agent_check = true,
        "agent-port" => {
            server.agent_port = Some(
                value()
                    .parse()
                    .map_err(|_| "'agent-port' expects a port.".to_string())?,
            )
        }
        "agent-inter" => server.agent_inter = Some(duration()?),
        // Switchyard extensions: a name is re-resolved with this section (or, without it,
        // with the system resolver).
        "resolvers" => server.resolvers = Some(value()),
        "resolve-prefer" => match value().as_str() {
            "ipv4" => server.resolve_prefer = Some(switchyard_config::IpFamily::Ipv4),
            "ipv6" => server.resolve_prefer = Some(switchyard_config::IpFamily::Ipv6),
            other => {
                return Err(format!(
                    "'resolve-prefer' expects 'ipv4' or 'ipv6', got '{other}'."
                ))
            }
        },
        other => {
            return Err(format!(
                "'{other}' is not supported for dynamic servers by Switchyard yet."
            ))
        }
    }
    Ok(())
}

fn counters(c: &Counters) -> model::Counters {
    model::Counters {
        scur: c.current.load(Ordering::Relaxed),
        smax: c.max.load(Ordering::Relaxed),
        stot: c.total.load(Ordering::Relaxed),
        bin: c.bytes_in.load(Ordering::Relaxed),
        bout: c.bytes_out.load(Ordering::Relaxed),
        ..Default::default()
    }
}

fn backend_counters(c: &Counters) -> model::BackendCounters {
    model::BackendCounters {
        counters: counters(c),
        qcur: c.queue_current.load(Ordering::Relaxed),
        qmax: c.queue_max.load(Ordering::Relaxed),
        econ: c.connect_errors.load(Ordering::Relaxed),
        eresp: c.response_errors.load(Ordering::Relaxed),
        wretr: c.retries.load(Ordering::Relaxed),
        wredis: c.redispatches.load(Ordering::Relaxed),
        lbtot: c.lb_total.load(Ordering::Relaxed),
        cli_abrt: c.client_aborts.load(Ordering::Relaxed),
        srv_abrt: c.server_aborts.load(Ordering::Relaxed),
        connect: c.total.load(Ordering::Relaxed),
        ..Default::default()
    }
}

fn frontend_stats(f: &Frontend) -> model::FrontendStats {
    model::FrontendStats {
        counters: counters(&f.counters),
        slim: f.maxconn.load(Ordering::Relaxed),
        conn_tot: f.counters.total.load(Ordering::Relaxed),
        ..Default::default()
    }
}

fn algo(balance: &Balance) -> &'static str {
    match balance {
        Balance::RoundRobin => "roundrobin",
        Balance::StaticRr => "static-rr",
        Balance::LeastConn => "leastconn",
        Balance::First => "first",
        Balance::Source => "source",
        Balance::Random { .. } => "random",
        Balance::Uri => "uri",
        Balance::UrlParam(_) => "url_param",
        Balance::Hdr(_) => "hdr",
        Balance::RdpCookie(_) => "rdp-cookie",
    }
}

fn backend_stats(b: &Backend) -> model::BackendStats {
    let servers: Vec<model::Server> = b.servers.load().iter().map(|s| server_stats(s)).collect();
    model::BackendStats {
        counters: backend_counters(&b.counters),
        algo: algo(&b.balance).to_string(),
        chkdown: servers.iter().map(|s| s.check.down_transitions).sum(),
        servers,
        ..Default::default()
    }
}

fn server_stats(s: &Server) -> model::Server {
    let health = s.health().clone();
    let admin = match s.admin_state() {
        AdminState::Ready => 0,
        AdminState::Drain => model::AdminState::FDRAIN,
        AdminState::Maint => model::AdminState::FMAINT,
    };
    let op = if admin & model::AdminState::FMAINT != 0 || !s.up.load(Ordering::Relaxed) {
        model::OpState::Stopped
    } else {
        model::OpState::Running
    };
    let addr = s.addr();
    let mut state = 0;
    if s.check.enabled {
        state |= model::CheckState::CONFIGURED;
        if s.checks_enabled.load(Ordering::Relaxed) {
            state |= model::CheckState::ENABLED;
        }
    }
    if admin & model::AdminState::FMAINT != 0 {
        state |= model::CheckState::PAUSED;
    }
    let (status, result, code, duration_ms, desc) = match &health.last {
        Some(last) => (
            check_status(last.status.code()),
            if last.status.passed() {
                model::CheckResult::Passed
            } else {
                model::CheckResult::Failed
            },
            last.code,
            last.duration.as_millis() as u64,
            last.status.description().to_string(),
        ),
        None => (
            model::CheckStatus::Ini,
            model::CheckResult::Unknown,
            None,
            0,
            String::new(),
        ),
    };
    let maxconn = s.maxconn.load(Ordering::Relaxed);
    model::Server {
        name: s.name.clone(),
        id: s.id,
        addr: addr.ip().to_string(),
        port: addr.port(),
        op_state: op,
        admin_state: model::AdminState(admin),
        uweight: s.uweight.load(Ordering::Relaxed),
        iweight: s.weight.load(Ordering::Relaxed),
        eweight: s.weight.load(Ordering::Relaxed),
        backup: s.backup,
        maxconn: (maxconn > 0).then_some(maxconn),
        maxqueue: s.maxqueue,
        last_change: health.last_change.elapsed().as_secs() as u32,
        downtime: health.downtime.as_secs() as u32,
        counters: backend_counters(&s.counters),
        check: model::Check {
            state: model::CheckState(state),
            status,
            result,
            code,
            duration_ms,
            desc,
            rise: health.counter.rise(),
            fall: health.counter.fall(),
            health: health.counter.health(),
            failed: health.failed_checks,
            down_transitions: health.down_transitions,
            port: s.check.port.unwrap_or(0),
            addr: s.check.addr.map(|a| a.to_string()),
        },
        fqdn: s.fqdn.clone(),
        ..Default::default()
    }
}

/// HAProxy's HCHK_STATUS numbers are shared by both crates.
fn check_status(code: u8) -> model::CheckStatus {
    use model::CheckStatus::*;
    match code {
        1 => Ini,
        4 => Hana,
        5 => SockErr,
        6 => L4Ok,
        7 => L4Tout,
        8 => L4Con,
        9 => L6Ok,
        10 => L6Tout,
        11 => L6Rsp,
        12 => L7Tout,
        13 => L7Rsp,
        15 => L7Ok,
        16 => L7OkC,
        17 => L7Sts,
        _ => Unknown,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
