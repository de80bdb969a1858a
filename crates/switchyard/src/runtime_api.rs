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
use switchyard_engine::state::{AdminState, Backend, Counters, Frontend, Server, ServerOrigin};
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

    /// What `show stat` prints, for the stats page and the Prometheus exporter.
    pub(crate) fn stats_snapshot(&self) -> model::Stats {
        self.stats()
    }

    /// What `show info` prints, for the stats page and the Prometheus exporter.
    pub(crate) fn info_snapshot(&self) -> model::Info {
        self.info()
    }

    /// Threads carrying sessions: `nbthread` from the configuration, or one per CPU (what
    /// HAProxy prints in `Nbthread` and `idle_per_thr[]`).
    fn nbthread(&self) -> u32 {
        u32::try_from(switchyard_engine::workers::count()).unwrap_or(u32::MAX)
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
            Command::EnableHealth(s) => self.set_checks(&s, true),
            Command::DisableHealth(s) => self.set_checks(&s, false),
            Command::EnableAgent(s) => {
                with_newline(rt.set_agent_enabled(&s.backend, &s.server, true))
            }
            Command::DisableAgent(s) => self.disable_agent(&s),
            Command::SetWeight(s, weight) => self.set_weight(&s, weight),
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
            SetServer::Weight(weight) => self.set_weight(s, weight),
            SetServer::Addr { addr, port } => self.set_addr(s, &addr, port.as_deref()),
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
            Ok(parts) => parts,
            Err(message) => return message,
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
            // HAProxy ends this one without a newline of its own.
            Err(e) if e.0.starts_with("Backend must use a dynamic") => e.0,
            Err(e) => format!("{e}\n"),
        }
    }

    /// `set weight B/S N[%]` and `set server B/S weight N[%]`: as in HAProxy, `N%` is relative
    /// to the configured weight (capped at 256), and the result becomes the new user weight.
    fn set_weight(&self, s: &ServerRef, weight: CliWeight) -> String {
        let rt = &self.runtime;
        let weight = match weight {
            CliWeight::Absolute(n) => n,
            CliWeight::Percent(p) => match rt.server(&s.backend, &s.server) {
                Ok((_, server)) => {
                    let scaled = u64::from(server.initial.weight) * u64::from(p.min(25600)) / 100;
                    scaled.min(256) as u32
                }
                Err(e) => return format!("{e}\n"),
            },
        };
        with_newline(rt.set_weight(&s.backend, &s.server, Weight::Absolute(weight)))
    }

    /// `set server B/S addr IP [port PORT]`, with HAProxy's messages: a port that is not a
    /// number is reported after the address part (which still applies), a number wraps to
    /// 16 bits as in HAProxy.
    fn set_addr(&self, s: &ServerRef, addr: &str, port: Option<&str>) -> String {
        let rt = &self.runtime;
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return format!("Invalid addr '{addr}' by '{}'\n", replies::UPDATER_CLI);
        };
        let old = match rt.server(&s.backend, &s.server) {
            Ok((_, server)) => server.addr(),
            Err(e) => return format!("{e}\n"),
        };
        let new_port = match port {
            None => Ok(None),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(p.parse::<u64>().map_or(u16::MAX, |n| n as u16)))
            }
            Some(p) => Err(p),
        };
        if let Err(e) = rt.set_addr(&s.backend, &s.server, ip, new_port.unwrap_or(None)) {
            return format!("{e}\n");
        }
        match new_port {
            Ok(new_port) => replies::set_server_addr(
                &old.ip().to_string(),
                &ip.to_string(),
                new_port.map(|p| (old.port(), p)),
            ),
            Err(bad) => {
                let ip_part = if old.ip() == ip {
                    "no need to change the addr".to_string()
                } else {
                    format!("IP changed from '{}' to '{ip}'", old.ip())
                };
                format!(
                    "{ip_part}, problem converting port '{bad}' to an int by '{}'\n",
                    replies::UPDATER_CLI
                )
            }
        }
    }

    /// `enable|disable health B/S`: HAProxy refuses to enable checks a server does not
    /// have, and silently accepts disabling them.
    fn set_checks(&self, s: &ServerRef, enabled: bool) -> String {
        match self.runtime.server(&s.backend, &s.server) {
            Err(e) => format!("{e}\n"),
            Ok((_, server)) if !server.check.enabled => {
                if enabled {
                    "Health check was not configured on this server, cannot enable.\n".into()
                } else {
                    String::new()
                }
            }
            Ok(_) => with_newline(
                self.runtime
                    .set_checks_enabled(&s.backend, &s.server, enabled),
            ),
        }
    }

    /// `disable agent B/S`: a no-op on a server without an agent, as in HAProxy.
    fn disable_agent(&self, s: &ServerRef) -> String {
        match self.runtime.server(&s.backend, &s.server) {
            Err(e) => format!("{e}\n"),
            Ok((_, server)) if server.check.agent.is_none() => String::new(),
            Ok(_) => with_newline(self.runtime.set_agent_enabled(&s.backend, &s.server, false)),
        }
    }

    fn show_sess(&self, which: ShowSess) -> String {
        let mut out = String::new();
        for session in self.runtime.process.sessions.list() {
            if let ShowSess::Id(id) = which {
                if id != session.id {
                    continue;
                }
            }
            // Before a backend is chosen (and between the requests of an HTTP connection),
            // HAProxy shows the frontend itself when it is a `listen` section.
            let (be, srv) = session.server_names().unwrap_or_else(|| {
                let frontend = &session.frontend;
                let be = if frontend.listen {
                    frontend.name.clone()
                } else {
                    "<NONE>".into()
                };
                (be, "<none>".into())
            });
            let proto = if session.client.is_ipv4() {
                "tcpv4"
            } else {
                "tcpv6"
            };
            out.push_str(&format!(
                "0x{:x}: proto={proto} src={} fe={} be={be} srv={srv} ts=00 age={}s\n",
                session.id,
                session.client,
                session.frontend.name,
                session.age().as_secs()
            ));
        }
        // HAProxy's answer for an ID that names no session (gone, or never was).
        if out.is_empty() && matches!(which, ShowSess::Id(_)) {
            out.push_str("Session not found.\n");
        }
        out
    }

    fn clear_counters(&self, all: bool) {
        let reset = |c: &Counters| {
            c.max
                .store(c.current.load(Ordering::Relaxed), Ordering::Relaxed);
            c.queue_max
                .store(c.queue_current.load(Ordering::Relaxed), Ordering::Relaxed);
            // HAProxy zeroes the rate maxima; the rates themselves are not counters.
            c.session_rate.clear_max();
            c.connection_rate.clear_max();
            c.request_rate.clear_max();
            if all {
                c.last_session.clear();
                for counter in c.http_responses.iter().chain([
                    &c.requests,
                    &c.request_errors,
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
                ]) {
                    counter.store(0, Ordering::Relaxed);
                }
            }
        };
        let process = &self.runtime.process;
        process.session_rate.clear_max();
        process.connection_rate.clear_max();
        for frontend in &self.runtime.frontends {
            reset(&frontend.counters);
        }
        for backend in &self.runtime.backends {
            reset(&backend.counters);
            for server in backend.servers.load().iter() {
                reset(&server.counters);
                if all {
                    // `chkfail` and `chkdown` are counters too in HAProxy.
                    let mut health = server.health();
                    health.failed_checks = 0;
                    health.down_transitions = 0;
                }
            }
        }
    }

    fn info(&self) -> model::Info {
        let process = &self.runtime.process;
        let uptime = process.started.elapsed().as_secs() as u32;
        let now_ms = switchyard_engine::rate::now_ms();
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
        // The engine exposes neither its bind lines nor the stats sockets: one listener per
        // frontend, plus the socket answering this command.
        let listeners = self.runtime.frontends.len() as u32 + 1;
        let nofile = nofile_limit();
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
            conn_rate: process.connection_rate.rate(now_ms),
            max_conn_rate: process.connection_rate.max(),
            sess_rate: process.session_rate.rate(now_ms),
            max_sess_rate: process.session_rate.max(),
            idle_pct: switchyard_engine::idle::percent(),
            node: hostname(),
            ulimit_n: nofile,
            maxsock: nofile,
            // HAProxy counts listeners, sessions and CLI connections (this one included).
            jobs: listeners + process.active.load(Ordering::Relaxed) + 1,
            listeners,
            total_bytes_out: bytes_out,
            busy_polling: switchyard_engine::busy::is_on(),
            ..Default::default()
        }
    }

    /// The proxies in configuration order, as HAProxy lists them. The engine keeps frontends
    /// and backends in two lists, each in declaration order; they are merged by id (ids grow
    /// in declaration order unless forced with `id`), and a `listen` (a frontend and a backend
    /// with the same id) is one proxy with both parts.
    fn stats(&self) -> model::Stats {
        let rt = &self.runtime;
        let uptime = rt.process.started.elapsed().as_secs() as u32;
        let now_ms = switchyard_engine::rate::now_ms();
        let mut frontends = rt.frontends.iter().peekable();
        let mut backends = rt.backends.iter().peekable();
        let mut proxies = Vec::new();
        loop {
            let (frontend, backend) = match (frontends.peek(), backends.peek()) {
                (None, None) => break,
                (Some(f), Some(b)) if f.id == b.id => (frontends.next(), backends.next()),
                (Some(f), Some(b)) if f.id < b.id => (frontends.next(), None),
                (_, Some(_)) => (None, backends.next()),
                (Some(_), None) => (frontends.next(), None),
            };
            let (name, iid) = match (frontend, backend) {
                (Some(f), _) => (f.name.clone(), f.id),
                (None, Some(b)) => (b.name.clone(), b.id),
                (None, None) => break,
            };
            proxies.push(model::Proxy {
                name,
                iid,
                // The engine does not keep whether the id came from the `id` keyword.
                forced_id: false,
                // A frontend and its backend agree on the mode (the configuration checks).
                mode: if frontend.is_some_and(|f| f.http.is_some())
                    || backend.is_some_and(|b| b.http.is_some())
                {
                    model::Mode::Http
                } else {
                    model::Mode::Tcp
                },
                frontend: frontend.map(|f| frontend_stats(f, now_ms)),
                backend: backend.map(|b| backend_stats(b, fullconn(rt, b), uptime, now_ms)),
            });
        }
        model::Stats { proxies }
    }
}

fn with_newline(result: Result<(), switchyard_engine::ControlError>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(e) => format!("{e}\n"),
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
/// now and on each restart). `Err` is the whole reply, with HAProxy's wording for bad ports.
fn split_addr(addr: &str) -> Result<(Host, Option<u16>), String> {
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), None));
    }
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Ok((Host::Ip(sock.ip()), Some(sock.port())));
    }
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, port)) => {
            if let Some(bad) = port.chars().find(|c| !c.is_ascii_digit()) {
                return Err(format!(
                    "invalid character '{bad}' in port number '{port}' in '{addr}'\n\n"
                ));
            }
            match port.parse::<u16>() {
                Ok(p) => (host, Some(p)),
                Err(_) => return Err(format!("invalid port '{port}'\n")),
            }
        }
        None => (addr, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), port));
    }
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("Invalid address '{addr}'.\n"));
    }
    Ok((Host::Name(host.to_string()), port))
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
                return Err(format!(
                    "weight of server {} is not within 0 and 256 ({weight})..",
                    server.name
                ));
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

/// `now_ms` is the rate clock ([`switchyard_engine::rate::now_ms`]), read once per snapshot
/// so that every row is seen at the same moment.
fn counters(c: &Counters, now_ms: u64) -> model::Counters {
    model::Counters {
        scur: c.current.load(Ordering::Relaxed),
        smax: c.max.load(Ordering::Relaxed),
        stot: c.total.load(Ordering::Relaxed),
        bin: c.bytes_in.load(Ordering::Relaxed),
        bout: c.bytes_out.load(Ordering::Relaxed),
        rate: c.session_rate.rate(now_ms),
        rate_max: c.session_rate.max(),
        hrsp: c
            .http_responses
            .each_ref()
            .map(|n| n.load(Ordering::Relaxed)),
        ..Default::default()
    }
}

fn backend_counters(c: &Counters, now_ms: u64) -> model::BackendCounters {
    model::BackendCounters {
        counters: counters(c, now_ms),
        qcur: c.queue_current.load(Ordering::Relaxed),
        qmax: c.queue_max.load(Ordering::Relaxed),
        econ: c.connect_errors.load(Ordering::Relaxed),
        eresp: c.response_errors.load(Ordering::Relaxed),
        wretr: c.retries.load(Ordering::Relaxed),
        wredis: c.redispatches.load(Ordering::Relaxed),
        lbtot: c.lb_total.load(Ordering::Relaxed),
        cli_abrt: c.client_aborts.load(Ordering::Relaxed),
        srv_abrt: c.server_aborts.load(Ordering::Relaxed),
        lastsess: c.last_session.seconds_ago(now_ms),
        connect: c.total.load(Ordering::Relaxed),
        req_tot: c.requests.load(Ordering::Relaxed),
        ..Default::default()
    }
}

fn frontend_stats(f: &Frontend, now_ms: u64) -> model::FrontendStats {
    model::FrontendStats {
        counters: counters(&f.counters, now_ms),
        slim: f.maxconn.load(Ordering::Relaxed),
        conn_rate: f.counters.connection_rate.rate(now_ms),
        conn_rate_max: f.counters.connection_rate.max(),
        conn_tot: f.counters.total.load(Ordering::Relaxed),
        req_rate: f.counters.request_rate.rate(now_ms),
        req_rate_max: f.counters.request_rate.max(),
        req_tot: f.counters.requests.load(Ordering::Relaxed),
        ereq: f.counters.request_errors.load(Ordering::Relaxed),
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

/// `fullconn` as HAProxy derives it when not configured: 10% (rounded up) of the `maxconn`
/// of the frontends that lead to the backend (a `listen` leads to itself), at least 1. The
/// engine only records each frontend's default (or first `use_backend`) target.
fn fullconn(rt: &Runtime, backend: &Arc<Backend>) -> u32 {
    let total: u64 = rt
        .frontends
        .iter()
        .filter(|f| f.backend.as_ref().is_some_and(|b| Arc::ptr_eq(b, backend)))
        .map(|f| u64::from(f.maxconn.load(Ordering::Relaxed)))
        .sum();
    u32::try_from(total.div_ceil(10)).unwrap_or(u32::MAX).max(1)
}

/// HAProxy's `srv_is_usable` over a snapshot: takes new traffic.
fn usable(s: &model::Server) -> bool {
    s.eweight > 0
        && s.admin_state.0 & (MAINT | model::AdminState::DRAIN) == 0
        && s.op_state != model::OpState::Stopped
}

/// HAProxy's `SRV_ADMF_MAINT`: the maintenance flags that stop a server. `CMAINT` alone
/// only records that the configuration said `disabled`.
const MAINT: u8 = model::AdminState::FMAINT | model::AdminState::IMAINT | model::AdminState::RMAINT;

/// The engine keeps no per-backend history (when it last went DOWN or UP, how often): a
/// backend is taken to have changed state when its servers last did while it is DOWN, and
/// at start otherwise; `chkdown` is the fewest DOWN transitions of its servers (exact for a
/// single server, and 0 as long as one server never went DOWN).
fn backend_stats(b: &Backend, fullconn: u32, uptime: u32, now_ms: u64) -> model::BackendStats {
    let servers: Vec<model::Server> = b
        .servers
        .load()
        .iter()
        .map(|s| server_stats(s, now_ms))
        .collect();
    let down = !servers.is_empty() && !servers.iter().any(usable);
    let lastchg = if down {
        servers
            .iter()
            .map(|s| s.last_change)
            .min()
            .unwrap_or(uptime)
    } else {
        uptime
    };
    model::BackendStats {
        counters: backend_counters(&b.counters, now_ms),
        fullconn,
        algo: algo(&b.balance).to_string(),
        chkdown: servers
            .iter()
            .map(|s| s.check.down_transitions)
            .min()
            .unwrap_or(0),
        lastchg,
        downtime: if down { lastchg } else { 0 },
        servers,
    }
}

fn server_stats(s: &Server, now_ms: u64) -> model::Server {
    use model::CheckState as St;
    let health = s.health().clone();
    let admin_state = s.admin_state();
    let forced_maint = admin_state == AdminState::Maint;
    // `disabled` (in the configuration, or on `add server`): HAProxy keeps CMAINT for the
    // server's life, and checks stay paused while they are not enabled.
    let disabled = s.initial.admin == AdminState::Maint;
    let dynamic = matches!(s.origin, ServerOrigin::Runtime { .. });
    let mut admin = match admin_state {
        AdminState::Ready => 0,
        AdminState::Drain => model::AdminState::FDRAIN,
        AdminState::Maint => model::AdminState::FMAINT,
    };
    if disabled {
        admin |= model::AdminState::CMAINT;
    }
    let op = if forced_maint || !s.up.load(Ordering::Relaxed) {
        model::OpState::Stopped
    } else {
        model::OpState::Running
    };
    let addr = s.addr();

    let checks_on = s.check.enabled && s.checks_enabled.load(Ordering::Relaxed);
    let mut state = 0;
    if s.check.enabled {
        state |= St::CONFIGURED;
    }
    if checks_on {
        state |= St::ENABLED;
    }
    // Entering maintenance pauses enabled checks; `disabled` pauses them from the start.
    if (forced_maint && checks_on) || (disabled && !checks_on) {
        state |= St::PAUSED;
    }
    // HAProxy zeroes the counter on entering maintenance (a server without checks never
    // gets it back) and starts `disabled` and dynamic servers without checks at 0; with
    // checks, leaving maintenance restarts it at `rise`, and checks take it on from there.
    let counter = health.counter.health();
    let rise = health.counter.rise();
    let check_health = if forced_maint {
        0
    } else if s.check.enabled {
        counter
    } else if disabled || dynamic {
        0
    } else {
        rise
    };
    let (status, result, code, duration_ms, desc) = outcome(health.last.as_ref().map(|l| {
        (
            l.status.code(),
            l.status.passed(),
            l.code,
            l.duration,
            l.info.as_str(),
        )
    }));
    let check = model::Check {
        state: St(state),
        status,
        result,
        code,
        duration_ms,
        desc,
        rise,
        fall: health.counter.fall(),
        health: check_health,
        failed: health.failed_checks,
        down_transitions: health.down_transitions,
        port: s.check.port.unwrap_or(0),
        addr: s.check.addr.map(|a| a.to_string()),
    };

    let agent = match &s.check.agent {
        None => model::Check::default(),
        Some(agent) => {
            // Unlike health checks, HAProxy keeps agents running in maintenance.
            let mut state = St::CONFIGURED | St::AGENT;
            if s.agent_enabled.load(Ordering::Relaxed) {
                state |= St::ENABLED;
            }
            let (status, result, code, duration_ms, desc) =
                outcome(health.last_agent.as_ref().map(|l| {
                    (
                        l.status.code(),
                        l.status.passed(),
                        l.code,
                        l.duration,
                        l.info.as_str(),
                    )
                }));
            // HAProxy's agent counter: rise 1, fall 1; 0 once the agent said down.
            let said_down = ["down", "fail", "stopped"].iter().any(|word| {
                desc.to_ascii_lowercase()
                    .starts_with(&format!("via agent : {word}"))
            });
            model::Check {
                state: St(state),
                status,
                result,
                code: code.or(Some(0)),
                duration_ms,
                desc,
                rise: 1,
                fall: 1,
                health: u32::from(!said_down),
                port: agent.port,
                addr: agent.addr.map(|a| a.to_string()),
                ..model::Check::default()
            }
        }
    };

    let conns = s.pool_stats();
    let pool = s.pool_settings();
    let last_change = health.last_change.elapsed().as_secs() as u32;
    let weight = s.weight.load(Ordering::Relaxed);
    let maxconn = s.maxconn.load(Ordering::Relaxed);
    model::Server {
        name: s.name.clone(),
        id: s.id,
        addr: addr.ip().to_string(),
        port: addr.port(),
        op_state: op,
        admin_state: model::AdminState(admin),
        // The engine's effective weight is what HAProxy calls the user weight (what
        // `set weight` and agents change); the initial one is the configured weight.
        uweight: weight,
        iweight: s.initial.weight,
        eweight: weight,
        backup: s.backup,
        maxconn: (maxconn > 0).then_some(maxconn),
        maxqueue: s.maxqueue,
        last_change,
        // HAProxy adds the current DOWN period to the past ones.
        downtime: (health.downtime.as_secs() as u32)
            + if op == model::OpState::Stopped {
                last_change
            } else {
                0
            },
        counters: backend_counters(&s.counters, now_ms),
        used_conns: conns.used,
        used_max: conns.used_max,
        need_conn_est: conns.need_est,
        unsafe_conns: conns.idle_unsafe,
        safe_conns: conns.idle_safe,
        idle_conns: conns.idle_unsafe + conns.idle_safe,
        idle_per_thread: conns.idle_per_thread,
        pool_purge_delay_ms: u32::try_from(pool.purge_delay.as_millis()).unwrap_or(u32::MAX),
        pool_max_conn: pool.max_idle,
        check,
        agent,
        fqdn: s.fqdn.clone(),
        ..Default::default()
    }
}

/// A check's last outcome (status code, passed, L7 code, duration, text) as `show stat` and
/// `show servers state` print it: status, result, code, duration in ms and the `last_chk` /
/// `last_agt` text.
type Outcome<'a> = (u8, bool, Option<u32>, Duration, &'a str);

fn outcome(
    last: Option<Outcome<'_>>,
) -> (
    model::CheckStatus,
    model::CheckResult,
    Option<u32>,
    u64,
    String,
) {
    match last {
        Some((status, passed, code, duration, info)) => (
            check_status(status),
            if status == model::CheckStatus::L7OkC as u8 {
                model::CheckResult::CondPass
            } else if passed {
                model::CheckResult::Passed
            } else {
                model::CheckResult::Failed
            },
            code,
            duration.as_millis() as u64,
            info.to_string(),
        ),
        None => (
            model::CheckStatus::Ini,
            model::CheckResult::Unknown,
            None,
            0,
            String::new(),
        ),
    }
}

/// The soft `RLIMIT_NOFILE` the engine raised at start (HAProxy's `Ulimit-n`), 0 if unknown.
fn nofile_limit() -> u32 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))?
                .to_string();
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0)
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
