//! Section and keyword parsing, `defaults` inheritance and cross-proxy validation.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::addr;
use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::lexer::split_line;
use crate::model::*;
use crate::units::parse_duration;

mod checks;
mod http;
mod resolvers;
mod stats;
mod stick;
mod vrrp;

/// One configuration text and the name used in diagnostics (usually its path).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// A successfully parsed configuration and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and parses files in order, like `haproxy -f a -f b`. An unreadable file is reported
/// as an error at line 0 of that file; the other files are still checked.
pub fn parse_files(paths: &[impl AsRef<Path>]) -> Result<Parsed, Diagnostics> {
    let mut sources = Vec::new();
    let mut read_errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        match std::fs::read(path) {
            // HAProxy accepts arbitrary bytes; invalid UTF-8 only matters inside words.
            Ok(bytes) => sources.push(Source {
                name,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            }),
            Err(e) => read_errors.push(Diagnostic {
                severity: Severity::Error,
                span: Span {
                    file: Arc::from(name.as_str()),
                    line: 0,
                },
                message: format!("cannot read configuration file '{name}': {e}"),
            }),
        }
    }
    let result = parse_sources(&sources);
    if read_errors.is_empty() {
        return result;
    }
    let mut all = read_errors;
    match result {
        Ok(parsed) => all.extend(parsed.warnings),
        Err(Diagnostics(d)) => all.extend(d),
    }
    Err(Diagnostics(all))
}

/// Parses configuration texts in order as one logical configuration. On failure every error
/// (and every warning) is returned, not just the first.
pub fn parse_sources(sources: &[Source]) -> Result<Parsed, Diagnostics> {
    let mut p = Parser::default();
    for source in sources {
        p.parse_source(source);
    }
    p.finish()
}

#[derive(Default)]
struct Sink {
    diags: Vec<Diagnostic>,
}

impl Sink {
    fn err(&mut self, span: &Span, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            span: span.clone(),
            message: message.into(),
        });
    }
    fn warn(&mut self, span: &Span, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            span: span.clone(),
            message: message.into(),
        });
    }
    fn not_implemented(&mut self, span: &Span, what: &str) {
        self.warn(span, format!("'{what}' is not implemented yet, ignored"));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Global,
    Defaults,
    Proxy,
    Resolvers,
    VrrpInstance,
    VrrpScript,
    /// A section Switchyard does not implement: its body is skipped.
    Skipped,
}

/// A proxy (or a `defaults` section) being built, with parse-time facts the model omits.
#[derive(Clone)]
struct Draft {
    proxy: Proxy,
    /// Template for later `server` lines (`default-server`).
    default_server: Server,
    /// Line of the `mode` keyword in effect, to point errors about the mode at it.
    mode_span: Option<Span>,
    default_backend_span: Option<Span>,
    /// Where `log global` sits among `proxy.logs`; the global targets are inserted there at
    /// the end, since a `global` section may come later in another file.
    log_global_at: Option<usize>,
    /// `http-check`/`tcp-check` rules, folded into `proxy.health_check` at the end.
    checks: checks::CheckRules,
    /// `stick-table` and `stick` rules, checked against each other at the end.
    stick: stick::Draft,
}

impl Draft {
    /// HAProxy's built-in defaults.
    fn builtin(span: &Span) -> Draft {
        Draft {
            proxy: Proxy {
                span: span.clone(),
                kind: ProxyKind::Listen,
                name: String::new(),
                mode: Mode::Tcp,
                health_check: HealthCheck::Tcp,
                log_health_checks: false,
                binds: Vec::new(),
                default_backend: None,
                use_backends: Vec::new(),
                balance: Balance::RoundRobin,
                hash_type: HashType::default(),
                servers: Vec::new(),
                maxconn: None,
                fullconn: None,
                retries: 3,
                http_reuse: HttpReuse::Safe,
                max_session_srv_conns: 5,
                options: ProxyOptions::default(),
                timeouts: Timeouts::default(),
                logs: Vec::new(),
                disabled: false,
                id: 0,
                description: None,
                stick: None,
                cookie: None,
                stats: Stats::default(),
            },
            default_server: Server::new(
                span.clone(),
                String::new(),
                Host::Name(String::new()),
                None,
            ),
            mode_span: None,
            default_backend_span: None,
            log_global_at: None,
            checks: checks::CheckRules::default(),
            stick: stick::Draft::default(),
        }
    }
}

struct Parser {
    sink: Sink,
    global: Global,
    /// Variables set by `setenv`/`presetenv`/`unsetenv`/`resetenv`, consulted before the
    /// process environment (`None` = explicitly unset).
    env_overlay: HashMap<String, Option<String>>,
    env_reset: bool,
    section: Section,
    defaults: Draft,
    defaults_name: Option<String>,
    named_defaults: HashMap<String, Draft>,
    proxies: Vec<Draft>,
    resolvers: Vec<Resolvers>,
    vrrp_instances: Vec<crate::vrrp::VrrpInstance>,
    vrrp_scripts: Vec<crate::vrrp::VrrpScript>,
    file_order: HashMap<Arc<str>, usize>,
}

impl Default for Parser {
    fn default() -> Self {
        let span = Span {
            file: Arc::from("<built-in>"),
            line: 0,
        };
        Parser {
            sink: Sink::default(),
            global: Global::default(),
            env_overlay: HashMap::new(),
            env_reset: false,
            section: Section::None,
            defaults: Draft::builtin(&span),
            defaults_name: None,
            named_defaults: HashMap::new(),
            proxies: Vec::new(),
            resolvers: Vec::new(),
            vrrp_instances: Vec::new(),
            vrrp_scripts: Vec::new(),
            file_order: HashMap::new(),
        }
    }
}

/// Sections accepted but not implemented: one warning, body skipped.
const SKIPPED_SECTIONS: &[&str] = &[
    "userlist",
    "peers",
    "cache",
    "program",
    "mailers",
    "ring",
    "http-errors",
    "log-forward",
    "fcgi-app",
    "crt-store",
    "traces",
    "acme",
];

impl Parser {
    fn lookup_env(&self, name: &str) -> Option<String> {
        match self.env_overlay.get(name) {
            Some(v) => v.clone(),
            None if self.env_reset => None,
            None => std::env::var(name).ok(),
        }
    }

    fn parse_source(&mut self, source: &Source) {
        let file: Arc<str> = Arc::from(source.name.as_str());
        let next = self.file_order.len();
        self.file_order.entry(file.clone()).or_insert(next);
        // Each file starts outside any section, as with `haproxy -f a -f b`; the current
        // `defaults` carry over.
        self.close_section();
        for (idx, line) in source.text.split('\n').enumerate() {
            let span = Span {
                file: file.clone(),
                line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
            };
            let words = match split_line(line, &|n| self.lookup_env(n)) {
                Ok(w) => w,
                Err(e) => {
                    self.sink.err(&span, e);
                    continue;
                }
            };
            if words.is_empty() {
                continue;
            }
            self.line(&words, &span);
        }
        self.close_section();
    }

    /// Ends the current section; a named `defaults` is saved for `from NAME` only now, once
    /// its body is complete.
    fn close_section(&mut self) {
        if self.section == Section::Defaults {
            if let Some(name) = self.defaults_name.take() {
                self.named_defaults.insert(name, self.defaults.clone());
            }
        }
        self.section = Section::None;
    }

    fn line(&mut self, w: &[String], span: &Span) {
        let kw = w[0].as_str();
        match kw {
            "global" => {
                self.close_section();
                if w.len() > 1 {
                    self.sink
                        .warn(span, "'global' takes no argument, extra words ignored");
                }
                self.section = Section::Global;
            }
            "defaults" => {
                self.close_section();
                self.start_defaults(w, span);
            }
            "frontend" | "backend" | "listen" => {
                self.close_section();
                self.start_proxy(w, span);
            }
            "resolvers" => {
                self.close_section();
                let section = resolvers::start(&mut self.sink, w, span);
                if self.resolvers.iter().any(|r| r.name == section.name) {
                    self.sink.err(
                        span,
                        format!("'resolvers {}' is defined twice", section.name),
                    );
                }
                self.resolvers.push(section);
                self.section = Section::Resolvers;
            }
            "vrrp_instance" => {
                self.close_section();
                let section = vrrp::start_instance(&mut self.sink, w, span);
                self.vrrp_instances.push(section);
                self.section = Section::VrrpInstance;
            }
            "vrrp_script" => {
                self.close_section();
                let section = vrrp::start_script(&mut self.sink, w, span);
                self.vrrp_scripts.push(section);
                self.section = Section::VrrpScript;
            }
            _ if SKIPPED_SECTIONS.contains(&kw) => {
                self.close_section();
                self.sink.warn(
                    span,
                    format!("'{kw}' sections are not implemented yet, section ignored"),
                );
                self.section = Section::Skipped;
            }
            _ => match self.section {
                Section::None => self
                    .sink
                    .err(span, format!("unknown keyword '{kw}' out of section")),
                Section::Skipped => {}
                Section::Global => self.global_keyword(w, span),
                Section::Defaults => {
                    proxy_keyword(&mut self.sink, &mut self.defaults, true, w, span);
                }
                Section::Proxy => {
                    if let Some(d) = self.proxies.last_mut() {
                        proxy_keyword(&mut self.sink, d, false, w, span);
                    }
                }
                Section::Resolvers => {
                    if let Some(r) = self.resolvers.last_mut() {
                        resolvers::keyword(&mut self.sink, r, w, span);
                    }
                }
                Section::VrrpInstance => {
                    if let Some(v) = self.vrrp_instances.last_mut() {
                        vrrp::instance_keyword(&mut self.sink, v, w, span);
                    }
                }
                Section::VrrpScript => {
                    if let Some(s) = self.vrrp_scripts.last_mut() {
                        vrrp::script_keyword(&mut self.sink, s, w, span);
                    }
                }
            },
        }
    }

    fn start_defaults(&mut self, w: &[String], span: &Span) {
        let mut name = None;
        let mut from = None;
        match w.len() {
            1 => {}
            2 if w[1] != "from" => name = Some(w[1].clone()),
            3 if w[1] == "from" => from = Some(w[2].clone()),
            4 if w[2] == "from" => {
                name = Some(w[1].clone());
                from = Some(w[3].clone());
            }
            _ => {
                self.sink
                    .err(span, "usage: defaults [NAME] [from DEFAULTS]");
            }
        }
        if let Some(n) = &name {
            if !valid_name(n) {
                self.sink
                    .err(span, format!("invalid character in defaults name '{n}'"));
            }
        }
        // Every `defaults` starts again from HAProxy's built-ins (or from its parent).
        let mut draft = Draft::builtin(span);
        if let Some(parent) = from {
            match self.named_defaults.get(&parent) {
                Some(p) => {
                    draft = p.clone();
                    draft.proxy.span = span.clone();
                }
                None => self.sink.err(
                    span,
                    format!("defaults section '{parent}' not found (for 'from')"),
                ),
            }
        }
        draft.checks.inherit();
        self.defaults = draft;
        self.defaults_name = name;
        self.section = Section::Defaults;
    }

    fn start_proxy(&mut self, w: &[String], span: &Span) {
        let kind = match w[0].as_str() {
            "frontend" => ProxyKind::Frontend,
            "backend" => ProxyKind::Backend,
            _ => ProxyKind::Listen,
        };
        let kw = kind.keyword();
        let name = match w.get(1) {
            Some(n) => n.clone(),
            None => {
                self.sink.err(span, format!("'{kw}' expects a name"));
                String::new()
            }
        };
        if !name.is_empty() && !valid_name(&name) {
            self.sink
                .err(span, format!("invalid character in {kw} name '{name}'"));
        }
        let mut base = &self.defaults;
        let mut old_bind = None;
        match &w[2.min(w.len())..] {
            [] => {}
            [from, parent] if from == "from" => match self.named_defaults.get(parent) {
                Some(p) => base = p,
                None => self.sink.err(
                    span,
                    format!("defaults section '{parent}' not found (for 'from')"),
                ),
            },
            // Old `listen NAME ADDR` form: the address is a bind.
            [address] if kind == ProxyKind::Listen => old_bind = Some(address.clone()),
            _ => self.sink.err(
                span,
                format!(
                    "usage: {kw} NAME [from DEFAULTS]{}",
                    if kind == ProxyKind::Listen {
                        " or listen NAME ADDR"
                    } else {
                        ""
                    }
                ),
            ),
        }
        let mut d = base.clone();
        d.checks.inherit();
        let p = &mut d.proxy;
        p.span = span.clone();
        p.kind = kind;
        p.name = name;
        p.id = 0;
        p.description = None;
        // Only settings apply from defaults; objects (binds, servers, rules) never do.
        p.binds.clear();
        p.servers.clear();
        p.use_backends.clear();
        if !kind.has_frontend() {
            p.maxconn = None;
            p.default_backend = None;
            d.default_backend_span = None;
        }
        if let Some(address) = old_bind {
            match addr::parse_bind_addresses(&address) {
                Ok(addresses) => d.proxy.binds.push(Bind {
                    span: span.clone(),
                    addresses,
                    name: None,
                    maxconn: None,
                    backlog: None,
                    v6only: None,
                    accept_proxy: false,
                    transparent: false,
                    ssl: false,
                    certificates: Vec::new(),
                    alpn: Vec::new(),
                    postgres_ssl: false,
                }),
                Err(e) => self.sink.err(span, e),
            }
        }
        self.proxies.push(d);
        self.section = Section::Proxy;
    }

    fn global_keyword(&mut self, w: &[String], span: &Span) {
        let kw = w[0].as_str();
        let sink = &mut self.sink;
        let g = &mut self.global;
        match kw {
            "maxconn" => {
                if let Some(n) = positive_arg(sink, w, span) {
                    g.maxconn = Some(n);
                }
            }
            "nbthread" => {
                if let Some(n) = positive_arg(sink, w, span) {
                    g.nbthread = Some(n);
                }
            }
            "log" => match parse_log(&w[1..], span) {
                Ok(LogLine::Target(t)) => g.logs.push(t),
                Ok(LogLine::Global) => sink.err(span, "'log global' is only valid in proxies"),
                Err(e) => sink.err(span, e),
            },
            "log-send-hostname" => match w.len() {
                1 => g.log_send_hostname = Some(system_hostname()),
                2 => g.log_send_hostname = Some(w[1].clone()),
                _ => sink.err(span, "'log-send-hostname' takes at most one argument"),
            },
            "log-tag" => {
                if let Some(v) = single_arg(sink, w, span) {
                    g.log_tag = Some(v.to_string());
                }
            }
            "user" => {
                if let Some(v) = single_arg(sink, w, span) {
                    g.user = Some(v.to_string());
                }
            }
            "group" => {
                if let Some(v) = single_arg(sink, w, span) {
                    g.group = Some(v.to_string());
                }
            }
            "pidfile" => {
                if let Some(v) = single_arg(sink, w, span) {
                    g.pidfile = Some(v.into());
                }
            }
            "daemon" => g.daemon = true,
            "noreuseport" => g.noreuseport = true,
            "nosplice" => g.nosplice = true,
            "busy-polling" => {
                if w.len() > 1 {
                    sink.err(span, "'busy-polling' takes no argument");
                } else {
                    g.busy_polling = true;
                }
            }
            // HAProxy accepts a negation for a few global keywords only.
            "no" => match w.get(1).map(String::as_str) {
                Some("busy-polling") if w.len() == 2 => g.busy_polling = false,
                Some("busy-polling") => sink.err(span, "'no busy-polling' takes no argument"),
                Some("log") if w.len() == 2 => g.logs.clear(),
                Some(
                    kw @ ("set-dumpable"
                    | "strict-limits"
                    | "insecure-fork-wanted"
                    | "numa-cpu-mapping"),
                ) => sink.not_implemented(span, &format!("no {kw}")),
                Some(other) => sink.err(
                    span,
                    format!(
                        "'no {other}': in 'global', only 'busy-polling', 'log', 'set-dumpable', \
                         'strict-limits', 'insecure-fork-wanted' and 'numa-cpu-mapping' \
                         accept 'no'"
                    ),
                ),
                None => sink.err(span, "'no' expects a keyword to negate"),
            },
            "grace" => {
                if let Some(v) = single_arg(sink, w, span) {
                    match parse_duration(v) {
                        Ok(d) => g.grace = Some(d),
                        Err(e) => sink.err(span, format!("'grace': {e}")),
                    }
                }
            }
            "runtime-state-file" => {
                if let Some(v) = single_arg(sink, w, span) {
                    g.runtime_state_file = Some(v.into());
                }
            }
            "hard-stop-after" => {
                if let Some(v) = single_arg(sink, w, span) {
                    match parse_duration(v) {
                        Ok(d) => g.hard_stop_after = Some(d),
                        Err(e) => sink.err(span, format!("'hard-stop-after': {e}")),
                    }
                }
            }
            "stats" => match w.get(1).map(String::as_str) {
                Some("socket") => match parse_stats_socket(&w[2..], span) {
                    Ok(s) => g.stats_sockets.push(s),
                    Err(e) => sink.err(span, format!("'stats socket': {e}")),
                },
                Some(sub @ ("timeout" | "maxconn" | "bind-process")) => {
                    sink.not_implemented(span, &format!("stats {sub}"))
                }
                Some(other) => sink.err(
                    span,
                    format!("unknown keyword 'stats {other}' in 'global' section"),
                ),
                None => sink.err(span, "'stats' expects 'socket', 'timeout' or 'maxconn'"),
            },
            "setenv" | "presetenv" => {
                if w.len() != 3 {
                    sink.err(span, format!("'{kw}' expects a name and a value"));
                } else {
                    let exists = self.lookup_env(&w[1]).is_some();
                    // presetenv only fills in variables not already set.
                    if kw == "setenv" || !exists {
                        self.env_overlay.insert(w[1].clone(), Some(w[2].clone()));
                    }
                }
            }
            "unsetenv" => {
                for name in &w[1..] {
                    self.env_overlay.insert(name.clone(), None);
                }
            }
            "resetenv" => {
                // Keep only the names listed.
                let keep: Vec<(String, Option<String>)> = w[1..]
                    .iter()
                    .map(|n| (n.clone(), self.lookup_env(n)))
                    .collect();
                self.env_overlay = keep.into_iter().collect();
                self.env_reset = true;
            }
            _ if is_unimplemented_global(kw) => sink.not_implemented(span, kw),
            _ => sink.err(span, format!("unknown keyword '{kw}' in 'global' section")),
        }
    }

    fn finish(mut self) -> Result<Parsed, Diagnostics> {
        self.close_section();
        let Parser {
            mut sink,
            global,
            mut proxies,
            resolvers,
            vrrp_instances,
            vrrp_scripts,
            file_order,
            ..
        } = self;

        for d in &mut proxies {
            if let Some(at) = d.log_global_at {
                let at = at.min(d.proxy.logs.len());
                d.proxy.logs.splice(at..at, global.logs.iter().cloned());
            }
        }
        for d in &mut proxies {
            checks::resolve(&mut sink, d);
            stick::resolve(&mut sink, d);
        }
        // HAProxy's stats socket lives in an internal proxy that takes id 1 (captured from
        // haproxy 2.6: the first section is then id 2), which scripts see in `be_id`.
        let first_id = if global.stats_sockets.is_empty() {
            1
        } else {
            2
        };
        assign_proxy_ids(&mut sink, &mut proxies, first_id);
        for d in &mut proxies {
            assign_server_ids(&mut sink, &mut d.proxy);
        }
        validate(&mut sink, &proxies);
        validate_resolvers(&mut sink, &resolvers, &proxies);
        let backend_names: Vec<&str> = proxies
            .iter()
            .filter(|d| d.proxy.kind.has_backend())
            .map(|d| d.proxy.name.as_str())
            .collect();
        vrrp::validate(&mut sink, &vrrp_instances, &vrrp_scripts, &backend_names);

        let mut diags = sink.diags;
        // Report in reading order even though validation findings come last.
        diags.sort_by_key(|d| {
            (
                file_order.get(&d.span.file).copied().unwrap_or(0),
                d.span.line,
            )
        });
        let config = Config {
            global,
            proxies: proxies.into_iter().map(|d| d.proxy).collect(),
            resolvers,
            vrrp_instances,
            vrrp_scripts,
        };
        if diags.iter().any(|d| d.severity == Severity::Error) {
            Err(Diagnostics(diags))
        } else {
            Ok(Parsed {
                config,
                warnings: diags,
            })
        }
    }
}

/// Every `resolvers NAME` on a server names a section that can ask someone.
fn validate_resolvers(sink: &mut Sink, resolvers: &[Resolvers], proxies: &[Draft]) {
    for section in resolvers {
        if section.nameservers.is_empty() && !section.parse_resolv_conf {
            sink.err(
                &section.span,
                format!(
                    "resolvers '{}' has no 'nameserver' and no 'parse-resolv-conf'",
                    section.name
                ),
            );
        }
    }
    for d in proxies {
        for server in &d.proxy.servers {
            let Some(name) = &server.resolvers else {
                continue;
            };
            if !resolvers.iter().any(|r| &r.name == name) {
                sink.err(
                    &server.span,
                    format!(
                        "server '{}/{}' refers to unknown resolvers section '{name}'",
                        d.proxy.name, server.name
                    ),
                );
            }
        }
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// HAProxy's allowed characters for proxy and server names.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn is_unimplemented_global(kw: &str) -> bool {
    const LIST: &[&str] = &[
        "chroot",
        "ca-base",
        "crt-base",
        "nbproc",
        "cpu-map",
        "uid",
        "gid",
        "ulimit-n",
        "master-worker",
        "quiet",
        "lua-load",
        "lua-load-per-thread",
        "lua-prepend-path",
        "spread-checks",
        "max-spread-checks",
        "external-check",
        "insecure-fork-wanted",
        "insecure-setuid-wanted",
        "node",
        "description",
        "maxsslconn",
        "maxconnrate",
        "maxsessrate",
        "maxsslrate",
        "maxpipes",
        "maxcomprate",
        "maxcompcpuusage",
        "maxzlibmem",
        "noepoll",
        "nopoll",
        "nokqueue",
        "noevports",
        "nogetaddrinfo",
        "debug",
        "zero-warning",
        "server-state-file",
        "server-state-base",
        "localpeer",
        "pp2-never-send-local",
        "unix-bind",
        "set-dumpable",
        "strict-limits",
        "expose-experimental-directives",
        "expose-deprecated-directives",
        "numa-cpu-mapping",
        "mworker-max-reloads",
        "issuers-chain-path",
        "thread-groups",
        "thread-group",
        "fd-hard-limit",
        "log-send-hostname-tag",
        "stats-file",
        "cluster-secret",
        "set-var",
        "set-var-fmt",
        "ssl-server-verify",
        "ssl-engine",
        "ssl-mode-async",
        "ssl-load-extra-files",
        "ssl-load-extra-del-ext",
        "ssl-dh-param-file",
        "ssl-propquery",
        "ssl-provider",
        "ssl-provider-path",
        "ssl-skip-self-issued-ca",
        "ssl-security-level",
        "nbcores",
        "no-memory-trimming",
        "anonkey",
        "close-spread-time",
        "h2-workaround-bogus-websocket-clients",
        "prealloc-fd",
        "limited-quic",
        "cpu-policy",
        "dns-accept-family",
        "ocsp-update.mode",
        "h1-accept-payload-with-any-method",
        "h1-case-adjust",
        "h1-case-adjust-file",
        "h1-do-not-close-on-insecure-transfer-encoding",
        "log-tag-hostname",
        "daemon-mode",
        "warn-blocked-traffic-after",
        "harden.reject-privileged-ports.tcp",
        "harden.reject-privileged-ports.quic",
    ];
    const PREFIXES: &[&str] = &[
        "tune.",
        "ssl-default-bind-",
        "ssl-default-server-",
        "51degrees-",
        "deviceatlas-",
        "wurfl-",
        "httpclient.",
        "profiling.",
        "ocsp-update.",
        "quic.",
        "lua-",
        "nbthread-",
    ];
    LIST.contains(&kw) || PREFIXES.iter().any(|p| kw.starts_with(p))
}

fn single_arg<'a>(sink: &mut Sink, w: &'a [String], span: &Span) -> Option<&'a str> {
    match w {
        [_, v] => Some(v.as_str()),
        [kw] => {
            sink.err(span, format!("'{kw}' expects an argument"));
            None
        }
        _ => {
            sink.err(span, format!("'{}' expects exactly one argument", w[0]));
            None
        }
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a valid number"));
    }
    s.parse::<u32>().map_err(|_| format!("'{s}' is too large"))
}

fn parse_positive(s: &str) -> Result<u32, String> {
    match parse_u32(s)? {
        0 => Err(format!("'{s}': expects a positive number")),
        n => Ok(n),
    }
}

/// `KW N` with N ≥ 0.
fn count_arg(sink: &mut Sink, w: &[String], span: &Span) -> Option<u32> {
    number_arg(sink, w, span, parse_u32)
}

/// `KW N` with N > 0.
fn positive_arg(sink: &mut Sink, w: &[String], span: &Span) -> Option<u32> {
    number_arg(sink, w, span, parse_positive)
}

/// The keyword's one argument as `parse` reads it; an error names the keyword.
fn number_arg(
    sink: &mut Sink,
    w: &[String],
    span: &Span,
    parse: fn(&str) -> Result<u32, String>,
) -> Option<u32> {
    let v = single_arg(sink, w, span)?;
    match parse(v) {
        Ok(n) => Some(n),
        Err(e) => {
            sink.err(span, format!("'{}' {e}", w[0]));
            None
        }
    }
}

enum LogLine {
    Global,
    Target(LogTarget),
}

fn parse_facility(s: &str) -> Option<Facility> {
    use Facility::*;
    Some(match s {
        "kern" => Kern,
        "user" => User,
        "mail" => Mail,
        "daemon" => Daemon,
        "auth" => Auth,
        "syslog" => Syslog,
        "lpr" => Lpr,
        "news" => News,
        "uucp" => Uucp,
        "cron" => Cron,
        "auth2" => Auth2,
        "ftp" => Ftp,
        "ntp" => Ntp,
        "audit" => Audit,
        "alert" => Alert,
        "cron2" => Cron2,
        "local0" => Local0,
        "local1" => Local1,
        "local2" => Local2,
        "local3" => Local3,
        "local4" => Local4,
        "local5" => Local5,
        "local6" => Local6,
        "local7" => Local7,
        _ => return None,
    })
}

fn parse_level(s: &str) -> Option<Level> {
    use Level::*;
    Some(match s {
        "emerg" => Emerg,
        "alert" => Alert,
        "crit" => Crit,
        "err" => Err,
        "warning" => Warning,
        "notice" => Notice,
        "info" => Info,
        "debug" => Debug,
        _ => return None,
    })
}

/// `log global` or `log <target> [len N] [format F] [sample R:S] <facility> [max [min]]`
/// (the words after `log`).
fn parse_log(w: &[String], span: &Span) -> Result<LogLine, String> {
    let Some(target) = w.first() else {
        return Err("'log' expects 'global' or <address> <facility> [level [minlevel]]".into());
    };
    if target == "global" {
        if w.len() > 1 {
            return Err("'log global' takes no other argument".into());
        }
        return Ok(LogLine::Global);
    }
    let address = addr::parse_log_address(target).map_err(|e| format!("'log': {e}"))?;
    let mut format = LogFormat::Rfc3164;
    let mut max_len = None;
    let mut i = 1;
    while let Some(opt @ ("len" | "format" | "sample")) = w.get(i).map(String::as_str) {
        let value = w
            .get(i + 1)
            .ok_or_else(|| format!("'log': '{opt}' expects an argument"))?;
        match opt {
            "len" => {
                let n = parse_positive(value).map_err(|e| format!("'log len' {e}"))?;
                max_len = Some(n as usize);
            }
            "format" => {
                format = match value.as_str() {
                    "rfc3164" | "legacy" => LogFormat::Rfc3164,
                    "rfc5424" => LogFormat::Rfc5424,
                    "raw" => LogFormat::Raw,
                    "short" => LogFormat::Short,
                    other => {
                        return Err(format!(
                        "'log': unknown format '{other}' (expected rfc3164, rfc5424, raw or short)"
                    ))
                    }
                }
            }
            // Sampling is rare; refusing the line would lose logging entirely.
            _ => return Err("'log ... sample' is not implemented yet".into()),
        }
        i += 2;
    }
    let fac = w
        .get(i)
        .ok_or_else(|| "'log' expects a facility (e.g. local0)".to_string())?;
    let facility = parse_facility(fac).ok_or_else(|| format!("'log': unknown facility '{fac}'"))?;
    let mut max_level = Level::Debug;
    let mut min_level = None;
    if let Some(l) = w.get(i + 1) {
        max_level = parse_level(l).ok_or_else(|| format!("'log': unknown level '{l}'"))?;
    }
    if let Some(l) = w.get(i + 2) {
        min_level = Some(parse_level(l).ok_or_else(|| format!("'log': unknown level '{l}'"))?);
    }
    if w.len() > i + 3 {
        return Err(format!("'log': unexpected argument '{}'", w[i + 3]));
    }
    Ok(LogLine::Target(LogTarget {
        span: span.clone(),
        address,
        facility,
        max_level,
        min_level,
        format,
        max_len,
    }))
}

/// Words after `stats socket`.
fn parse_stats_socket(w: &[String], span: &Span) -> Result<StatsSocket, String> {
    let Some(address) = w.first() else {
        return Err("expects an address".into());
    };
    let address = addr::parse_socket_address(address)?;
    let mut level = None;
    let mut mode = None;
    let mut params = Vec::new();
    let mut i = 1;
    while i < w.len() {
        match w[i].as_str() {
            "level" => {
                let v = w
                    .get(i + 1)
                    .ok_or("'level' expects user, operator or admin")?;
                if !matches!(v.as_str(), "user" | "operator" | "admin") {
                    return Err(format!(
                        "unknown level '{v}' (expected user, operator or admin)"
                    ));
                }
                level = Some(v.clone());
                i += 2;
            }
            "mode" => {
                let v = w.get(i + 1).ok_or("'mode' expects an octal file mode")?;
                let m = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("invalid octal mode '{v}'"))?;
                mode = Some(m);
                i += 2;
            }
            // The Runtime API owns these; kept verbatim.
            other => {
                params.push(other.to_string());
                i += 1;
            }
        }
    }
    Ok(StatsSocket {
        span: span.clone(),
        address,
        level,
        mode,
        params,
    })
}

/// Options stored in the model.
const IMPLEMENTED_OPTIONS: &[&str] = &[
    "redispatch",
    "forwardfor",
    "http-server-close",
    "httpclose",
    "http-keep-alive",
    "tcplog",
    "httplog",
    "tcpka",
    "clitcpka",
    "srvtcpka",
    "kernel-forward",
    "dontlognull",
    "allbackups",
    "logasap",
    "http-ignore-probes",
];

/// Options HAProxy knows that Switchyard accepts and ignores.
const KNOWN_OPTIONS: &[&str] = &[
    "abortonclose",
    "accept-invalid-http-request",
    "accept-invalid-http-response",
    "accept-unsafe-violations-in-http-request",
    "accept-unsafe-violations-in-http-response",
    "checkcache",
    "contstats",
    "disable-h2-upgrade",
    "dontlog-normal",
    "forwarded",
    "h1-case-adjust-bogus-client",
    "h1-case-adjust-bogus-server",
    "http-buffer-request",
    "http-drop-request-trailers",
    "http-drop-response-trailers",
    "http-no-delay",
    "http-pretend-keepalive",
    "http-restrict-req-hdr-names",
    "http-use-proxy-header",
    "http-use-htx",
    "http_proxy",
    "forceclose",
    "http-tunnel",
    "idle-close-on-response",
    "independent-streams",
    "log-separate-errors",
    "log-steps",
    "nolinger",
    "originalto",
    "persist",
    "prefer-last-server",
    "socket-stats",
    "splice-auto",
    "splice-request",
    "splice-response",
    "tcp-smart-accept",
    "tcp-smart-connect",
    "transparent",
    "use-small-buffers",
];

fn parse_option(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    negate: bool,
    w: &[String],
    span: &Span,
) {
    let prefix = if negate { "no option" } else { "option" };
    let Some(name) = w.get(1).map(String::as_str) else {
        sink.err(span, format!("'{prefix}' expects an option name"));
        return;
    };
    if checks::parse_check_option(sink, d, is_defaults, negate, w, span) {
        return;
    }
    let o = &mut d.proxy.options;
    let args = &w[2..];
    let on = !negate;
    if IMPLEMENTED_OPTIONS.contains(&name) {
        let extra_ok = match name {
            "redispatch" => args.len() <= 1,
            "forwardfor" => true,
            // `option httplog clf` selects a log format; only the flag is kept.
            "httplog" => args.len() <= 1,
            _ => args.is_empty(),
        };
        if !extra_ok || (negate && !args.is_empty()) {
            sink.err(
                span,
                format!("'{prefix} {name}': unexpected argument '{}'", args[0]),
            );
            return;
        }
    }
    match name {
        "redispatch" => {
            if negate {
                o.redispatch = None;
            } else {
                // HAProxy: -1 (default) redispatches on the last retry, 0 disables.
                let interval = match args.first() {
                    None => -1,
                    Some(v) => match v.parse::<i32>() {
                        Ok(n) => n,
                        Err(_) => {
                            sink.err(span, format!("'option redispatch': invalid interval '{v}'"));
                            return;
                        }
                    },
                };
                o.redispatch = Some(interval);
            }
        }
        "forwardfor" if negate => o.forwardfor = None,
        "forwardfor" => match http::parse_forwardfor(args) {
            Ok(forward) => o.forwardfor = Some(forward),
            Err(e) => sink.err(span, e),
        },
        // The three connection modes exclude each other; the last line wins, as in HAProxy.
        "http-server-close" => {
            o.http_server_close = on;
            o.httpclose &= !on;
        }
        "httpclose" => {
            o.httpclose = on;
            o.http_server_close &= !on;
        }
        "http-keep-alive" => {
            if on {
                o.http_server_close = false;
                o.httpclose = false;
            }
        }
        "tcplog" => o.tcplog = on,
        "httplog" => o.httplog = on,
        "tcpka" => o.tcpka = on,
        "clitcpka" => o.clitcpka = on,
        "srvtcpka" => o.srvtcpka = on,
        "kernel-forward" => o.kernel_forward = on,
        "dontlognull" => o.dontlognull = on,
        "allbackups" => o.allbackups = on,
        "logasap" => o.logasap = on,
        "http-ignore-probes" => o.http_ignore_probes = on,
        _ if KNOWN_OPTIONS.contains(&name) => {
            sink.not_implemented(span, &format!("{prefix} {name}"))
        }
        _ => sink.err(span, format!("unknown option '{name}'")),
    }
}

/// Accessor for one `Timeouts` field.
type TimeoutField = fn(&mut Timeouts) -> &mut Option<Duration>;

fn parse_timeout_kind(kind: &str) -> Option<(TimeoutField, bool)> {
    // (field, is a backend-side timeout)
    Some(match kind {
        "connect" => (|t| &mut t.connect, true),
        "client" => (|t| &mut t.client, false),
        "server" => (|t| &mut t.server, true),
        "queue" => (|t| &mut t.queue, true),
        "check" => (|t| &mut t.check, true),
        "http-request" => (|t| &mut t.http_request, false),
        "http-keep-alive" => (|t| &mut t.http_keep_alive, false),
        "client-fin" => (|t| &mut t.client_fin, false),
        "server-fin" => (|t| &mut t.server_fin, true),
        "tunnel" => (|t| &mut t.tunnel, true),
        "tarpit" => (|t| &mut t.tarpit, false),
        _ => return None,
    })
}

/// HAProxy refuses timers above 2^31-1 ms (~24.8 days).
const MAX_TIMER: Duration = Duration::from_millis(i32::MAX as u64);

fn set_timeout(
    sink: &mut Sink,
    d: &mut Draft,
    is_defaults: bool,
    kind: &str,
    value: &str,
    span: &Span,
) {
    let Some((field, backend_side)) = parse_timeout_kind(kind) else {
        sink.err(
            span,
            format!(
                "unknown timeout '{kind}' (expected connect, client, server, queue, check, http-request, http-keep-alive, client-fin, server-fin, tunnel or tarpit)"
            ),
        );
        return;
    };
    let dur = match parse_duration(value) {
        Ok(v) if v > MAX_TIMER => {
            sink.err(
                span,
                format!("'timeout {kind}': timer overflow ('{value}' > 2147483647 ms)"),
            );
            return;
        }
        Ok(v) => v,
        Err(e) => {
            sink.err(span, format!("'timeout {kind}': {e}"));
            return;
        }
    };
    let kind_ = d.proxy.kind;
    let capable = is_defaults
        || if backend_side {
            kind_.has_backend()
        } else {
            kind_.has_frontend()
        };
    if !capable {
        sink.warn(
            span,
            format!(
                "'timeout {kind}' ignored because {} '{}' has no {} capability",
                kind_.keyword(),
                d.proxy.name,
                if backend_side { "backend" } else { "frontend" }
            ),
        );
        return;
    }
    *field(&mut d.proxy.timeouts) = Some(dur);
}

/// Proxy keywords Switchyard accepts and ignores (with a warning).
const UNIMPLEMENTED_PROXY_KEYWORDS: &[&str] = &[
    "acl",
    "tcp-request",
    "tcp-response",
    "http-request",
    "http-response",
    "http-after-response",
    "capture",
    "errorfile",
    "errorfiles",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "compression",
    "monitor-uri",
    "monitor",
    "monitor-net",
    "rate-limit",
    "unique-id-format",
    "unique-id-header",
    "log-format",
    "log-format-sd",
    "error-log-format",
    "log-tag",
    "email-alert",
    "persist",
    "source",
    "dispatch",
    "redirect",
    "filter",
    "declare",
    "use-server",
    "force-persist",
    "ignore-persist",
    "max-keep-alive-queue",
    "http-send-name-header",
    "bind-process",
    "external-check",
    "load-server-state-from-file",
    "server-state-file-name",
    "backlog",
    "grace",
    "hash-balance-factor",
    "retry-on",
    "http-error",
    "clitcpka-cnt",
    "clitcpka-idle",
    "clitcpka-intvl",
    "srvtcpka-cnt",
    "srvtcpka-idle",
    "srvtcpka-intvl",
    "log-steps",
    "hash-preserve-affinity",
    "guid",
    "use-fcgi-app",
    "log-tag",
    "http-fail",
    "quic-initial",
    "option-default",
];

fn cap_warning(sink: &mut Sink, d: &Draft, kw: &str, span: &Span, needs_backend: bool) {
    sink.warn(
        span,
        format!(
            "'{kw}' ignored because {} '{}' has no {} capability",
            d.proxy.kind.keyword(),
            d.proxy.name,
            if needs_backend { "backend" } else { "frontend" }
        ),
    );
}

/// One keyword line in a `defaults`, `frontend`, `backend` or `listen` section.
fn proxy_keyword(sink: &mut Sink, d: &mut Draft, is_defaults: bool, w: &[String], span: &Span) {
    let kw = w[0].as_str();
    let kind = d.proxy.kind;
    let section = if is_defaults {
        "defaults"
    } else {
        kind.keyword()
    };
    let fe = is_defaults || kind.has_frontend();
    let be = is_defaults || kind.has_backend();
    let not_allowed = |sink: &mut Sink, what: &str| {
        sink.err(span, format!("'{what}' not allowed in '{section}' section"));
    };
    match kw {
        "cookie" => {
            if !be {
                return cap_warning(sink, d, kw, span, true);
            }
            match http::parse_cookie(w, span) {
                Ok((cookie, ignored)) => {
                    for what in ignored {
                        sink.not_implemented(span, &what);
                    }
                    d.proxy.cookie = Some(cookie);
                }
                Err(e) => sink.err(span, e),
            }
        }
        "stick-table" if !is_defaults => stick::parse_table(sink, d, w, span),
        "stick" if !is_defaults => stick::parse_rule(sink, d, w, span),
        "bind" => {
            if is_defaults || !kind.has_frontend() {
                return not_allowed(sink, kw);
            }
            if let Some(b) = parse_bind(sink, w, span) {
                d.proxy.binds.push(b);
            }
        }
        "mode" => match w.get(1).map(String::as_str) {
            Some("tcp") if w.len() == 2 => {
                d.proxy.mode = Mode::Tcp;
                d.mode_span = Some(span.clone());
            }
            // Checked once the proxy is complete: an http proxy that starts nothing is fine.
            Some("http") if w.len() == 2 => {
                d.proxy.mode = Mode::Http;
                d.mode_span = Some(span.clone());
            }
            Some("health") => sink.err(
                span,
                "mode health is not supported (removed from HAProxy); use mode tcp",
            ),
            Some(m) if w.len() == 2 => {
                sink.err(span, format!("unknown mode '{m}' (expected tcp or http)"))
            }
            _ => sink.err(span, "'mode' expects one of tcp or http"),
        },
        "default_backend" => {
            if !fe {
                return not_allowed(sink, kw);
            }
            if let Some(v) = single_arg(sink, w, span) {
                d.proxy.default_backend = Some(v.to_string());
                d.default_backend_span = Some(span.clone());
            }
        }
        "use_backend" => {
            if is_defaults || !fe {
                return not_allowed(sink, kw);
            }
            let Some(name) = w.get(1) else {
                return sink.err(span, "'use_backend' expects a backend name");
            };
            match w.get(2).map(String::as_str) {
                None if name.contains("%[") => sink.warn(
                    span,
                    "dynamic backend names are not implemented yet; rule ignored",
                ),
                None => d.proxy.use_backends.push(UseBackend {
                    span: span.clone(),
                    backend: name.clone(),
                }),
                Some("if" | "unless") if w.len() > 3 => {
                    sink.warn(span, "conditions are not implemented yet; rule ignored")
                }
                Some(_) => sink.err(
                    span,
                    "'use_backend' expects 'if' or 'unless' followed by a condition",
                ),
            }
        }
        "balance" => match parse_balance(&w[1..]) {
            Ok(b) if be => d.proxy.balance = b,
            Ok(_) => cap_warning(sink, d, kw, span, true),
            Err(e) => sink.err(span, e),
        },
        "hash-type" => match parse_hash_type(&w[1..]) {
            Ok(h) if be => d.proxy.hash_type = h,
            Ok(_) => cap_warning(sink, d, kw, span, true),
            Err(e) => sink.err(span, e),
        },
        "server" => {
            if is_defaults || !be {
                return not_allowed(sink, kw);
            }
            if let Some(s) = parse_server(sink, &d.default_server, w, span) {
                d.proxy.servers.push(s);
            }
        }
        "default-server" => {
            if !be {
                return not_allowed(sink, kw);
            }
            let mut tmpl = d.default_server.clone();
            if server_settings(sink, &mut tmpl, w, 1, span, true) {
                d.default_server = tmpl;
            }
        }
        "server-template" => sink.err(span, "'server-template' is not implemented yet"),
        "maxconn" => {
            if let Some(n) = positive_arg(sink, w, span) {
                if fe {
                    d.proxy.maxconn = Some(n);
                } else {
                    cap_warning(sink, d, kw, span, false);
                }
            }
        }
        "fullconn" => {
            if let Some(n) = positive_arg(sink, w, span) {
                if be {
                    d.proxy.fullconn = Some(n);
                } else {
                    cap_warning(sink, d, kw, span, true);
                }
            }
        }
        "http-reuse" => {
            if let Some(v) = single_arg(sink, w, span) {
                let reuse = match v {
                    "never" => Some(HttpReuse::Never),
                    "safe" => Some(HttpReuse::Safe),
                    "aggressive" => Some(HttpReuse::Aggressive),
                    "always" => Some(HttpReuse::Always),
                    other => {
                        sink.err(
                            span,
                            format!(
                                "'http-reuse' expects 'never', 'safe', 'aggressive' or \
                                 'always', got '{other}'"
                            ),
                        );
                        None
                    }
                };
                match reuse {
                    Some(reuse) if be => d.proxy.http_reuse = reuse,
                    Some(_) => cap_warning(sink, d, kw, span, true),
                    None => {}
                }
            }
        }
        "max-session-srv-conns" => {
            if let Some(n) = count_arg(sink, w, span) {
                if fe {
                    d.proxy.max_session_srv_conns = n;
                } else {
                    cap_warning(sink, d, kw, span, false);
                }
            }
        }
        "retries" => {
            if let Some(n) = count_arg(sink, w, span) {
                if be {
                    d.proxy.retries = n;
                } else {
                    cap_warning(sink, d, kw, span, true);
                }
            }
        }
        "option" => parse_option(sink, d, is_defaults, false, w, span),
        "no" => match w.get(1).map(String::as_str) {
            Some("option") => parse_option(sink, d, is_defaults, true, &w[1..], span),
            Some("log") if w.len() == 2 => {
                d.proxy.logs.clear();
                d.log_global_at = None;
                d.proxy.options.log_global = false;
            }
            _ => sink.err(span, "'no' expects 'option NAME' or 'log'"),
        },
        "log" => match parse_log(&w[1..], span) {
            Ok(LogLine::Global) => {
                if d.log_global_at.is_none() {
                    d.log_global_at = Some(d.proxy.logs.len());
                    d.proxy.options.log_global = true;
                }
            }
            Ok(LogLine::Target(t)) => d.proxy.logs.push(t),
            Err(e) => sink.err(span, e),
        },
        "timeout" => match w {
            [_, kind, value] => set_timeout(sink, d, is_defaults, kind, value, span),
            _ => sink.err(
                span,
                "'timeout' expects a kind and a value (e.g. 'timeout connect 5s')",
            ),
        },
        "contimeout" | "clitimeout" | "srvtimeout" => {
            let modern = match kw {
                "contimeout" => "connect",
                "clitimeout" => "client",
                _ => "server",
            };
            sink.warn(
                span,
                format!("'{kw}' is deprecated, use 'timeout {modern}' instead"),
            );
            if let Some(v) = single_arg(sink, w, span) {
                set_timeout(sink, d, is_defaults, modern, v, span);
            }
        }
        "http-check" => checks::http_check(sink, d, is_defaults, w, span),
        "tcp-check" => checks::tcp_check(sink, d, is_defaults, w, span),
        "db-check" => checks::db_check(sink, d, is_defaults, w, span),
        "stats" => stats::keyword(sink, d, is_defaults, w, span),
        "http-request" if w.get(1).is_some_and(|a| a == "use-service") => {
            stats::use_service(sink, d, is_defaults, w, span)
        }
        "disabled" => d.proxy.disabled = true,
        "enabled" => d.proxy.disabled = false,
        "id" => {
            if is_defaults {
                return not_allowed(sink, kw);
            }
            if let Some(n) = positive_arg(sink, w, span) {
                d.proxy.id = n;
            }
        }
        "description" => {
            if w.len() < 2 {
                sink.err(span, "'description' expects a text");
            } else {
                d.proxy.description = Some(w[1..].join(" "));
            }
        }
        _ if UNIMPLEMENTED_PROXY_KEYWORDS.contains(&kw) => sink.not_implemented(span, kw),
        _ => sink.err(
            span,
            format!("unknown keyword '{kw}' in '{section}' section"),
        ),
    }
}

const KNOWN_BALANCE: &str =
    "roundrobin, static-rr, leastconn, first, source, random[(N)], uri, url_param, hdr(NAME), rdp-cookie[(NAME)]";

/// `NAME(ARG)` → `Some(ARG)`, `NAME` → `None`, else `Err`.
fn paren_arg<'a>(word: &'a str, name: &str) -> Option<Option<&'a str>> {
    let rest = word.strip_prefix(name)?;
    if rest.is_empty() {
        return Some(None);
    }
    rest.strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(Some)
}

fn parse_balance(w: &[String]) -> Result<Balance, String> {
    let Some(algo) = w.first() else {
        return Err(format!("'balance' expects an algorithm ({KNOWN_BALANCE})"));
    };
    let args = &w[1..];
    let no_args = |b: Balance| {
        if args.is_empty() {
            Ok(b)
        } else {
            Err(format!(
                "'balance {algo}': unexpected argument '{}'",
                args[0]
            ))
        }
    };
    match algo.as_str() {
        "roundrobin" => return no_args(Balance::RoundRobin),
        "static-rr" => return no_args(Balance::StaticRr),
        "leastconn" => return no_args(Balance::LeastConn),
        "first" => return no_args(Balance::First),
        "source" => return no_args(Balance::Source),
        // `uri [whole] [len N] [depth N] [path-only]` tuning only affects HTTP hashing.
        "uri" => return Ok(Balance::Uri),
        "url_param" => {
            return match args.first() {
                Some(p) => Ok(Balance::UrlParam(p.clone())),
                None => Err("'balance url_param' expects a parameter name".into()),
            }
        }
        _ => {}
    }
    if let Some(arg) = paren_arg(algo, "random") {
        let draws = match arg {
            None => 2,
            Some(n) => parse_positive(n).map_err(|e| format!("'balance random': {e}"))?,
        };
        return no_args(Balance::Random { draws });
    }
    if let Some(arg) = paren_arg(algo, "hdr") {
        return match arg {
            Some(h) if !h.is_empty() => Ok(Balance::Hdr(h.to_string())),
            _ => Err("'balance hdr' expects a header name: hdr(NAME)".into()),
        };
    }
    if let Some(arg) = paren_arg(algo, "rdp-cookie") {
        return no_args(Balance::RdpCookie(
            arg.filter(|a| !a.is_empty()).map(str::to_string),
        ));
    }
    Err(format!(
        "unknown balance algorithm '{algo}' (known: {KNOWN_BALANCE})"
    ))
}

fn parse_hash_type(w: &[String]) -> Result<HashType, String> {
    let mut h = HashType::default();
    let Some(method) = w.first() else {
        return Err("'hash-type' expects map-based or consistent".into());
    };
    h.method = match method.as_str() {
        "map-based" => HashMethod::MapBased,
        "consistent" => HashMethod::Consistent,
        other => {
            return Err(format!(
                "unknown hash-type method '{other}' (expected map-based or consistent)"
            ))
        }
    };
    let mut rest = &w[1..];
    if let Some(f) = rest.first() {
        if f != "avalanche" {
            h.function = match f.as_str() {
                "sdbm" => HashFunction::Sdbm,
                "djb2" => HashFunction::Djb2,
                "wt6" => HashFunction::Wt6,
                "crc32" => HashFunction::Crc32,
                other => {
                    return Err(format!(
                        "unknown hash function '{other}' (expected sdbm, djb2, wt6 or crc32)"
                    ))
                }
            };
            rest = &rest[1..];
        }
    }
    match rest {
        [] => {}
        [a] if a == "avalanche" => h.avalanche = true,
        _ => return Err(format!("'hash-type': unexpected argument '{}'", rest[0])),
    }
    Ok(h)
}

/// `bind ADDR[,ADDR...] [options]`.
fn parse_bind(sink: &mut Sink, w: &[String], span: &Span) -> Option<Bind> {
    let Some(list) = w.get(1) else {
        sink.err(span, "'bind' expects an address (e.g. ':5432')");
        return None;
    };
    let mut ok = true;
    let addresses = match addr::parse_bind_addresses(list) {
        Ok(a) => a,
        Err(e) => {
            sink.err(span, format!("'bind': {e}"));
            ok = false;
            Vec::new()
        }
    };
    let mut b = Bind {
        span: span.clone(),
        addresses,
        name: None,
        maxconn: None,
        backlog: None,
        v6only: None,
        accept_proxy: false,
        transparent: false,
        ssl: false,
        certificates: Vec::new(),
        alpn: Vec::new(),
        postgres_ssl: false,
    };
    const FLAGS_IGNORED: &[&str] = &[
        "defer-accept",
        "tfo",
        "strict-sni",
        "prefer-client-ciphers",
        "no-sslv3",
        "no-tlsv10",
        "no-tlsv11",
        "no-tlsv12",
        "no-tlsv13",
        "force-sslv3",
        "force-tlsv10",
        "force-tlsv11",
        "force-tlsv12",
        "force-tlsv13",
        "allow-0rtt",
        "generate-certificates",
        "no-ca-names",
        "no-tls-tickets",
        "tls-tickets",
        "quic-force-retry",
        "expose-fd",
        "no-alpn",
        "npn",
        "ocsp-update",
    ];
    const VALUED_IGNORED: &[&str] = &[
        "crt-list",
        "interface",
        "process",
        "thread",
        "ciphers",
        "ciphersuites",
        "ca-file",
        "crl-file",
        "verify",
        "curves",
        "ecdhe",
        "id",
        "nice",
        "mss",
        "tcp-ut",
        "mode",
        "uid",
        "gid",
        "user",
        "group",
        "level",
        "severity-output",
        "ssl-min-ver",
        "ssl-max-ver",
        "ca-sign-file",
        "ca-sign-pass",
        "quic-cc-algo",
        "proto",
        "namespace",
        "label",
        "shards",
        "guid-prefix",
        "ca-ignore-err",
        "crt-ignore-err",
        "ca-verify-file",
        "sigalgs",
        "client-sigalgs",
        "idle-ping",
        "accept-netscaler-cip",
    ];
    let mut i = 2;
    while i < w.len() {
        let kw = w[i].as_str();
        let value = w.get(i + 1).map(String::as_str);
        let take_value = |sink: &mut Sink| -> Option<&str> {
            if value.is_none() {
                sink.err(span, format!("'bind': '{kw}' expects an argument"));
            }
            value
        };
        match kw {
            "v4v6" => b.v6only = Some(false),
            "v6only" => b.v6only = Some(true),
            "accept-proxy" => b.accept_proxy = true,
            "transparent" => b.transparent = true,
            "ssl" => b.ssl = true,
            "postgres-ssl" => b.postgres_ssl = true,
            "crt" => {
                if let Some(v) = take_value(sink) {
                    b.certificates.push(v.into());
                }
                i += 1;
            }
            "alpn" => {
                if let Some(v) = take_value(sink) {
                    b.alpn = v
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                i += 1;
            }
            "name" => {
                b.name = take_value(sink).map(str::to_string);
                i += 1;
            }
            "maxconn" | "backlog" => {
                if let Some(v) = take_value(sink) {
                    match parse_positive(v) {
                        Ok(n) if kw == "maxconn" => b.maxconn = Some(n),
                        Ok(n) => b.backlog = Some(n),
                        Err(e) => {
                            sink.err(span, format!("'bind {kw}' {e}"));
                            ok = false;
                        }
                    }
                }
                i += 1;
            }
            _ if FLAGS_IGNORED.contains(&kw) => sink.not_implemented(span, &format!("bind {kw}")),
            _ if VALUED_IGNORED.contains(&kw) => {
                take_value(sink);
                sink.not_implemented(span, &format!("bind {kw}"));
                i += 1;
            }
            _ => {
                sink.err(span, format!("'bind': unknown keyword '{kw}'"));
                ok = false;
            }
        }
        i += 1;
    }
    if b.ssl && b.certificates.is_empty() {
        sink.err(span, "'bind ... ssl' needs at least one 'crt FILE'");
        ok = false;
    }
    if !b.ssl && (!b.certificates.is_empty() || b.postgres_ssl) {
        sink.err(
            span,
            "'crt' and 'postgres-ssl' need 'ssl' on the same 'bind' line",
        );
        ok = false;
    }
    ok.then_some(b)
}

/// `server NAME ADDR[:PORT] [settings]`, starting from the `default-server` template.
fn parse_server(sink: &mut Sink, tmpl: &Server, w: &[String], span: &Span) -> Option<Server> {
    let (Some(name), Some(address)) = (w.get(1), w.get(2)) else {
        sink.err(span, "'server' expects <name> and <address>[:<port>]");
        return None;
    };
    if !valid_name(name) {
        sink.err(span, format!("invalid character in server name '{name}'"));
    }
    let (host, port) = match addr::parse_server_address(address) {
        Ok(hp) => hp,
        Err(e) => {
            sink.err(span, format!("server '{name}': {e}"));
            // Still check the settings so every bad word is reported.
            let mut scratch = tmpl.clone();
            server_settings(sink, &mut scratch, w, 3, span, false);
            return None;
        }
    };
    let mut s = tmpl.clone();
    s.span = span.clone();
    s.name = name.clone();
    s.host = host;
    s.port = port;
    s.id = 0;
    server_settings(sink, &mut s, w, 3, span, false).then_some(s)
}

/// Applies `server`/`default-server` settings from `w[start..]`; false if any was invalid.
fn server_settings(
    sink: &mut Sink,
    s: &mut Server,
    w: &[String],
    start: usize,
    span: &Span,
    is_default: bool,
) -> bool {
    const FLAGS_IGNORED: &[&str] = &[
        "check-ssl",
        "no-check-ssl",
        "check-send-proxy",
        "no-check-send-proxy",
        "tfo",
        "no-tfo",
        "send-proxy-v2-ssl",
        "send-proxy-v2-ssl-cn",
        "non-stick",
        "stick",
        "no-verifyhost",
        "allow-0rtt",
        "ssl-reuse",
        "no-ssl-reuse",
        "tls-tickets",
        "no-tls-tickets",
        "no-sslv3",
        "no-tlsv10",
        "no-tlsv11",
        "no-tlsv12",
        "no-tlsv13",
        "force-sslv3",
        "force-tlsv10",
        "force-tlsv11",
        "force-tlsv12",
        "force-tlsv13",
        "check-via-socks4",
        "no-check-via-socks4",
        "strict-maxconn",
        "no-agent-check-ssl",
        "no-send-proxy-v2-ssl",
        "no-send-proxy-v2-ssl-cn",
        "check-reuse-pool",
        "check-pool-conn-name",
        "no-renegotiate",
        "renegotiate",
    ];
    const VALUED_IGNORED: &[&str] = &[
        "verifyhost",
        "crl-file",
        "crt",
        "init-addr",
        "resolve-net",
        "resolve-opts",
        "track",
        "redir",
        "source",
        "usesrc",
        "interface",
        "check-sni",
        "check-alpn",
        "check-proto",
        "alpn",
        "proto",
        "npn",
        "ciphers",
        "ciphersuites",
        "namespace",
        "pool-conn-name",
        "max-reuse",
        "proxy-v2-options",
        "socks4",
        "tcp-ut",
        "ws",
        "log-proto",
        "sigalgs",
        "client-sigalgs",
        "curves",
        "ssl-min-ver",
        "ssl-max-ver",
        "shard",
        "hash-key",
        "guid",
        "set-proxy-v2-tlv-fmt",
        "log-bufsize",
        "check-pool-conn-name",
        "idle-ping",
        "cc",
    ];
    let mut ok = true;
    let mut i = start;
    while i < w.len() {
        let kw = w[i].as_str();
        let value = w.get(i + 1).map(String::as_str);
        let mut bad = |sink: &mut Sink, msg: String| {
            sink.err(span, format!("server setting '{kw}': {msg}"));
            ok = false;
        };
        let valued = |sink: &mut Sink| -> Option<&str> {
            if value.is_none() {
                sink.err(span, format!("server setting '{kw}' expects an argument"));
            }
            value
        };
        // Every valued keyword consumes its argument, even when invalid, so the rest of
        // the line is still read as keywords.
        let mut consumed = 1;
        match kw {
            "check" => s.check = true,
            "no-check" => s.check = false,
            "backup" => s.backup = true,
            "no-backup" => s.backup = false,
            "disabled" => s.disabled = true,
            "enabled" => s.disabled = false,
            "send-proxy" => s.send_proxy = Some(ProxyProtocol::V1),
            "send-proxy-v2" => s.send_proxy = Some(ProxyProtocol::V2),
            "no-send-proxy" | "no-send-proxy-v2" => s.send_proxy = None,
            "agent-check" => s.agent_check = true,
            "no-agent-check" => s.agent_check = false,
            "ssl" => s.ssl = true,
            "no-ssl" => s.ssl = false,
            "verify" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some("none") => s.verify_none = true,
                    Some("required") => s.verify_none = false,
                    Some(other) => {
                        bad(sink, format!("expects 'none' or 'required', got '{other}'"))
                    }
                }
            }
            "ca-file" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some(path) => s.ca_file = Some(path.into()),
                }
            }
            "sni" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some(expr) => match expr.strip_prefix("str(").and_then(|e| e.strip_suffix(')'))
                    {
                        Some(name) if !name.is_empty() => s.sni = Some(name.to_string()),
                        _ => bad(sink, format!("only 'str(NAME)' is supported, got '{expr}'")),
                    },
                }
            }
            "inter" | "fastinter" | "downinter" | "agent-inter" | "slowstart" => {
                consumed = 2;
                match valued(sink).map(parse_duration) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(d)) if d > MAX_TIMER => bad(sink, "timer overflow".into()),
                    Some(Ok(d)) if d.is_zero() && kw != "slowstart" => {
                        bad(sink, "expects a positive delay".into())
                    }
                    Some(Ok(d)) => match kw {
                        "inter" => s.inter = d,
                        "fastinter" => s.fastinter = Some(d),
                        "downinter" => s.downinter = Some(d),
                        "agent-inter" => s.agent_inter = Some(d),
                        _ => s.slowstart = (!d.is_zero()).then_some(d),
                    },
                }
            }
            "rise" | "fall" => {
                consumed = 2;
                match valued(sink).map(parse_positive) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(n)) if kw == "rise" => s.rise = n,
                    Some(Ok(n)) => s.fall = n,
                }
            }
            "weight" => {
                consumed = 2;
                match valued(sink).map(parse_u32) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(n)) if n > 256 => bad(sink, format!("{n} is out of range (0-256)")),
                    Some(Ok(n)) => s.weight = n,
                }
            }
            // For these HAProxy treats 0 as "no limit".
            "maxconn" | "maxqueue" | "minconn" => {
                consumed = 2;
                match valued(sink).map(parse_u32) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(n)) => {
                        let v = (n != 0).then_some(n);
                        match kw {
                            "maxconn" => s.maxconn = v,
                            "maxqueue" => s.maxqueue = v,
                            _ => s.minconn = v,
                        }
                    }
                }
            }
            "pool-max-conn" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some("-1") => s.pool_max_conn = Some(None),
                    Some(v) => match parse_u32(v) {
                        Ok(n) => s.pool_max_conn = Some(Some(n)),
                        Err(e) => bad(sink, format!("{e} (expects -1 or more)")),
                    },
                }
            }
            "pool-low-conn" => {
                consumed = 2;
                match valued(sink).map(parse_u32) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(n)) => s.pool_low_conn = n,
                }
            }
            "pool-purge-delay" => {
                consumed = 2;
                match valued(sink).map(parse_duration) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(d)) if d > MAX_TIMER => bad(sink, "timer overflow".into()),
                    Some(Ok(d)) => s.pool_purge_delay = Some(d),
                }
            }
            "port" | "agent-port" => {
                consumed = 2;
                match valued(sink).map(addr::parse_port) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(p)) if kw == "port" => s.check_port = Some(p),
                    Some(Ok(p)) => s.agent_port = Some(p),
                }
            }
            "addr" => {
                consumed = 2;
                match valued(sink).map(addr::parse_host) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(h)) => s.check_addr = Some(h),
                }
            }
            "cookie" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some(v) => s.cookie = Some(v.to_string()),
                }
            }
            "agent-send" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some(v) => s.agent_send = Some(v.to_string()),
                }
            }
            "resolvers" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some(name) => s.resolvers = Some(name.to_string()),
                }
            }
            "resolve-prefer" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some("ipv4") => s.resolve_prefer = Some(IpFamily::Ipv4),
                    Some("ipv6") => s.resolve_prefer = Some(IpFamily::Ipv6),
                    Some(other) => bad(
                        sink,
                        format!("'resolve-prefer' expects 'ipv4' or 'ipv6', got '{other}'"),
                    ),
                }
            }
            "agent-addr" => {
                consumed = 2;
                match valued(sink).map(addr::parse_host) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(h)) => s.agent_addr = Some(h),
                }
            }
            "observe" => {
                consumed = 2;
                match valued(sink) {
                    None => ok = false,
                    Some("layer4") => s.observe_layer4 = true,
                    Some("layer7") => sink.not_implemented(span, "observe layer7"),
                    Some(other) => bad(
                        sink,
                        format!("unknown mode '{other}' (expected layer4 or layer7)"),
                    ),
                }
            }
            "error-limit" => {
                consumed = 2;
                match valued(sink).map(parse_positive) {
                    None => ok = false,
                    Some(Err(e)) => bad(sink, e),
                    Some(Ok(n)) => s.error_limit = Some(n),
                }
            }
            "on-error" | "on-marked-down" | "on-marked-up" => {
                consumed = 2;
                let allowed: &[&str] = match kw {
                    "on-error" => &["fastinter", "fail-check", "sudden-death", "mark-down"],
                    "on-marked-down" => &["shutdown-sessions"],
                    _ => &["shutdown-backup-sessions"],
                };
                match valued(sink) {
                    None => ok = false,
                    Some(v) if allowed.contains(&v) => match (kw, v) {
                        ("on-error", "fail-check") => s.on_error = OnError::FailCheck,
                        ("on-error", "sudden-death") => s.on_error = OnError::SuddenDeath,
                        ("on-error", "mark-down") => s.on_error = OnError::MarkDown,
                        ("on-error", _) => s.on_error = OnError::FastInter,
                        ("on-marked-down", _) => s.shutdown_sessions_on_down = true,
                        _ => s.shutdown_backup_sessions_on_up = true,
                    },
                    Some(v) => bad(
                        sink,
                        format!("unknown action '{v}' (expected {})", allowed.join(", ")),
                    ),
                }
            }
            "id" => {
                consumed = 2;
                if is_default {
                    bad(sink, "not allowed in 'default-server'".into());
                } else {
                    match valued(sink).map(parse_positive) {
                        None => ok = false,
                        Some(Err(e)) => bad(sink, e),
                        Some(Ok(n)) => s.id = n,
                    }
                }
            }
            _ if FLAGS_IGNORED.contains(&kw) => sink.warn(
                span,
                format!("server setting '{kw}' is not implemented yet, ignored"),
            ),
            _ if VALUED_IGNORED.contains(&kw) => {
                consumed = 2;
                if valued(sink).is_some() {
                    sink.warn(
                        span,
                        format!("server setting '{kw}' is not implemented yet, ignored"),
                    );
                } else {
                    ok = false;
                }
            }
            _ => {
                let which = if is_default {
                    "default-server"
                } else {
                    "server"
                };
                sink.err(span, format!("unknown keyword '{kw}' in '{which}' line"));
                ok = false;
            }
        }
        i += consumed;
    }
    ok
}

/// Lowest free id starting at `from`.
fn next_free(used: &HashSet<u32>, mut from: u32) -> u32 {
    while used.contains(&from) {
        from = from.saturating_add(1);
    }
    from
}

/// Explicit `id N` first, then the lowest free ids in declaration order, as HAProxy does.
fn assign_proxy_ids(sink: &mut Sink, proxies: &mut [Draft], first_id: u32) {
    let mut used: HashMap<u32, String> = HashMap::new();
    for d in proxies.iter() {
        let p = &d.proxy;
        if p.id != 0 {
            if let Some(other) = used.get(&p.id) {
                sink.err(
                    &p.span,
                    format!(
                        "{} '{}' has the same id {} as '{other}'",
                        p.kind.keyword(),
                        p.name,
                        p.id
                    ),
                );
            } else {
                used.insert(p.id, p.name.clone());
            }
        }
    }
    let mut used: HashSet<u32> = used.into_keys().collect();
    let mut next = first_id;
    for d in proxies.iter_mut() {
        if d.proxy.id == 0 {
            next = next_free(&used, next);
            d.proxy.id = next;
            used.insert(next);
        }
    }
}

fn assign_server_ids(sink: &mut Sink, p: &mut Proxy) {
    let mut used: HashMap<u32, String> = HashMap::new();
    for s in &p.servers {
        if s.id != 0 {
            if let Some(other) = used.get(&s.id) {
                sink.err(
                    &s.span,
                    format!(
                        "server '{}' has the same id {} as server '{other}' in {} '{}'",
                        s.name,
                        s.id,
                        p.kind.keyword(),
                        p.name
                    ),
                );
            } else {
                used.insert(s.id, s.name.clone());
            }
        }
    }
    let mut used: HashSet<u32> = used.into_keys().collect();
    let mut next = 1;
    for s in &mut p.servers {
        if s.id == 0 {
            next = next_free(&used, next);
            s.id = next;
            used.insert(next);
        }
    }
}

/// Cross-proxy checks that need the whole configuration.
fn validate(sink: &mut Sink, proxies: &[Draft]) {
    // Names: a frontend and a backend may share one (their capabilities do not overlap).
    for (i, d) in proxies.iter().enumerate() {
        let p = &d.proxy;
        if p.name.is_empty() {
            continue;
        }
        let clash = proxies[..i].iter().map(|o| &o.proxy).find(|o| {
            o.name == p.name
                && ((o.kind.has_frontend() && p.kind.has_frontend())
                    || (o.kind.has_backend() && p.kind.has_backend()))
        });
        if let Some(o) = clash {
            sink.err(
                &p.span,
                format!(
                    "{} '{}' has the same name as {} '{}' declared at {}",
                    p.kind.keyword(),
                    p.name,
                    o.kind.keyword(),
                    o.name,
                    o.span
                ),
            );
        }
    }

    let find_backend = |name: &str| {
        proxies
            .iter()
            .map(|d| &d.proxy)
            .find(|o| o.name == name && o.kind.has_backend())
    };
    for d in proxies {
        let p = &d.proxy;
        let kw = p.kind.keyword();

        let mut seen: HashMap<&str, &Span> = HashMap::new();
        for s in &p.servers {
            if let Some(first) = seen.get(s.name.as_str()) {
                sink.err(
                    &s.span,
                    format!(
                        "{kw} '{}': another server named '{}' was already declared at {first}",
                        p.name, s.name
                    ),
                );
            } else {
                seen.insert(&s.name, &s.span);
            }
        }

        let check_target =
            |sink: &mut Sink, name: &str, span: &Span, what: &str| match find_backend(name) {
                Some(b) => {
                    if b.mode != p.mode {
                        let m = |m: Mode| if m == Mode::Http { "http" } else { "tcp" };
                        sink.err(
                            span,
                            format!(
                            "{kw} '{}' in {} mode cannot use backend '{name}' in {} mode ({what})",
                            p.name,
                            m(p.mode),
                            m(b.mode)
                        ),
                        );
                    }
                }
                None if proxies.iter().any(|o| o.proxy.name == name) => sink.err(
                    span,
                    format!("{what}: '{name}' is a frontend, not a backend"),
                ),
                None => sink.err(span, format!("{what}: no backend named '{name}'")),
            };
        if let Some(name) = &p.default_backend {
            let span = d.default_backend_span.as_ref().unwrap_or(&p.span);
            check_target(sink, name, span, "default_backend");
        }
        for u in &p.use_backends {
            check_target(sink, &u.backend, &u.span, "use_backend");
        }

        let stats_only = p.is_stats_only();
        stats::validate(sink, p);

        if p.kind == ProxyKind::Frontend && p.binds.is_empty() {
            sink.warn(&p.span, format!("frontend '{}' has no 'bind' directive; declare it as a backend if this was intended", p.name));
        }
        let routes = p.default_backend.is_some() || !p.use_backends.is_empty();
        let accepts = p.kind == ProxyKind::Frontend || !p.binds.is_empty();
        if p.kind.has_frontend() && accepts && !routes && p.servers.is_empty() && !stats_only {
            sink.warn(&p.span, format!("{kw} '{}' has no backend (no default_backend, use_backend or server); connections will be rejected", p.name));
        }
        if p.mode == Mode::Http && p.options.kernel_forward && !stats_only {
            sink.warn(
                &p.span,
                format!("{kw} '{}': 'option kernel-forward' applies to 'mode tcp' only; ignored in 'mode http'", p.name),
            );
        }
    }
}
