//! HAProxy 2.6 Runtime API command grammar: one command (already split from its line on `;`)
//! into a [`Command`], with the exact texts HAProxy prints for malformed forms, the level each
//! command needs, and HAProxy's "Unknown command" suggestion list.
//!
//! Output convention: every text here (and every text an executor returns) is the command's
//! *body* exactly as HAProxy emits it; the server appends HAProxy's post-command "\n" (or
//! "\n> " in prompt mode). So `"Require 'backend/server'.\n"` ends in an empty line on the wire,
//! while `"Require 'backend/server'."` (what `add server` prints) does not — as in HAProxy.
//!
//! Errors that depend on runtime state ("No such backend.", "No such server.", "Can't find
//! backend.", ...) belong to the executor; this module only reports what HAProxy reports for the
//! text of the command, with the object assumed to exist.

use std::fmt;

/// Access level of a CLI session or required by a command (HAProxy's `level` on
/// `stats socket`): user < operator < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    User,
    Operator,
    Admin,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::User => "user",
            Level::Operator => "operator",
            Level::Admin => "admin",
        })
    }
}

/// HAProxy's answer when the session's level is below the command's.
pub const PERMISSION_DENIED: &str = "Permission denied\n";

/// HAProxy's request buffer (`tune.bufsize`). HAProxy reads its CLI request one command at a
/// time, so each command with its LF or `;` must fit in it, less one byte kept for the NUL
/// (see [`crate::server::MAX_COMMAND`]); a longer one makes HAProxy close the connection
/// without answering.
pub const MAX_LINE: usize = 16384;

/// `backend/server` as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub backend: String,
    pub server: String,
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

/// Output format of `show info` / `show stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `show info` "Name: value" lines / `show stat` CSV.
    #[default]
    Default,
    Typed,
    Json,
}

/// `show info [typed|json] [desc] [float]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShowInfo {
    pub format: Format,
    pub desc: bool,
    pub float: bool,
}

/// `show stat domain <proxy|dns>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatDomain {
    #[default]
    Proxy,
    Dns,
}

/// Proxy selector of `show stat <iid> <type> <sid>`: a numeric id (-1 = all) or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySelector {
    Id(i32),
    Name(String),
}

/// `<iid> <type> <sid>` filter of `show stat`. `types` is HAProxy's bit field: 1 frontends,
/// 2 backends, 4 servers; -1 = everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFilter {
    pub proxy: ProxySelector,
    pub types: i32,
    pub server_id: i32,
}

/// `show stat [domain D] [IID TYPE SID] [typed|json] [desc] [up] [no-maint]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShowStat {
    pub domain: StatDomain,
    pub filter: Option<StatFilter>,
    pub format: Format,
    pub desc: bool,
    pub up: bool,
    pub no_maint: bool,
}

/// `show sess [ID|all]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowSess {
    /// One line per session (no argument, or an id that reads as 0 like HAProxy's `strtoul`).
    List,
    /// `all`: every session in full detail.
    All,
    /// One session in full detail (the pointer printed by `show sess`).
    Id(u64),
}

/// A weight as `set server ... weight` / `set weight` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// 0..=256.
    Absolute(u32),
    /// Percent of the server's initial weight.
    Percent(u32),
}

/// `set server BE/SRV state ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

/// `set server BE/SRV health ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Up,
    Stopping,
    Down,
}

/// One keyword of `add server`, as written (`value` is the following word for keywords taking
/// one; HAProxy 2.6 accepts a missing value, so it is `None` then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyword {
    pub name: String,
    pub value: Option<String>,
}

/// `set server BE/SRV <what>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetServer {
    State(AdminState),
    Weight(Weight),
    /// Address and optional port exactly as written (HAProxy resolves and validates them
    /// against the server, and its messages depend on the current address).
    Addr {
        addr: String,
        port: Option<String>,
    },
    Health(HealthState),
    /// `agent up` = true.
    Agent(bool),
    CheckPort(u16),
}

/// `shutdown session ID` takes HAProxy's session pointer; `clear counters [all]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help [words...]`.
    Help(Vec<String>),
    /// `prompt`: toggle interactive mode.
    Prompt,
    /// `quit`.
    Quit,
    /// `operator` / `user`: lower this session's level.
    LowerLevel(Level),
    /// `set timeout cli N` (seconds, 1..=2147483).
    SetTimeoutCli(u32),
    ShowInfo(ShowInfo),
    ShowStat(ShowStat),
    ShowServersState(Option<String>),
    ShowServersConn(Option<String>),
    ShowBackend,
    ShowSess(ShowSess),
    ShowVersion,
    /// `reload` (Switchyard extension, admin): re-read the configuration files and apply
    /// them without dropping connections; answered like HAProxy's master CLI `reload`.
    Reload,
    AddServer {
        server: ServerRef,
        /// `ADDR[:PORT]` as written.
        addr: String,
        keywords: Vec<ServerKeyword>,
    },
    DelServer(ServerRef),
    SetServer(ServerRef, SetServer),
    EnableServer(ServerRef),
    DisableServer(ServerRef),
    EnableHealth(ServerRef),
    DisableHealth(ServerRef),
    EnableAgent(ServerRef),
    DisableAgent(ServerRef),
    GetWeight(ServerRef),
    SetWeight(ServerRef, Weight),
    SetMaxconnServer(ServerRef, u32),
    /// Value as HAProxy's `atoi` reads it (garbage reads as 0).
    SetMaxconnFrontend {
        frontend: String,
        maxconn: i64,
    },
    /// Value as HAProxy's `atoi` reads it; 0 means "back to the hard limit".
    SetMaxconnGlobal(i64),
    ShutdownSessionsServer(ServerRef),
    ShutdownSession(u64),
    /// `clear counters` (false, operator) or `clear counters all` (true, admin).
    ClearCounters {
        all: bool,
    },
    /// A command HAProxy 2.6 knows that Switchyard does not model (ssl, maps, acls, ...):
    /// its keywords and the remaining arguments. The executor answers it.
    Other {
        keywords: Vec<String>,
        args: Vec<String>,
    },
}

impl Command {
    /// The level HAProxy 2.6 requires for this command.
    pub fn level(&self) -> Level {
        use Command::*;
        match self {
            Help(_) | Prompt | Quit | SetTimeoutCli(_) => Level::User,
            LowerLevel(level) => *level,
            ShowInfo(_) | ShowStat(_) | ShowServersState(_) | ShowServersConn(_) | ShowBackend
            | ShowVersion | GetWeight(_) => Level::User,
            ShowSess(_) => Level::Operator,
            ClearCounters { all: false } => Level::Operator,
            ClearCounters { all: true } => Level::Admin,
            Other { keywords, .. } => other_level(keywords),
            _ => Level::Admin,
        }
    }
}

fn other_level(keywords: &[String]) -> Level {
    match keywords.first().map(String::as_str) {
        Some("show") | Some("get") => Level::User,
        _ => Level::Admin,
    }
}

/// A command HAProxy would refuse: `message` is HAProxy's exact text, printed only if the
/// session has `level` (otherwise HAProxy prints "Permission denied", checked first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub level: Level,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end())
    }
}

impl std::error::Error for ParseError {}

fn err(level: Level, message: impl Into<String>) -> ParseError {
    ParseError {
        level,
        message: message.into(),
    }
}

/// Splits a request line into commands on `;` not escaped by a backslash (the escape is kept
/// for [`tokenize`] to remove). A `\r` ending a command is dropped like HAProxy does, before
/// each `;` as before the LF (the socket server frames its input the same way, byte by byte,
/// with [`crate::server::next_command`]).
pub fn split_commands(line: &str) -> Vec<&str> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    fn cut(part: &str) -> &str {
        part.strip_suffix('\r').unwrap_or(part)
    }
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b';' => {
                out.push(cut(&line[start..i]));
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start <= line.len() {
        out.push(cut(&line[start..]));
    }
    out
}

/// Splits one command into words exactly like HAProxy 2.6's `cli_parse_request`: words are
/// separated by spaces and tabs only (a `\r` or any other byte belongs to its word); a
/// backslash makes the next character literal (`\;`, `\ `, `\\`); quotes are not special.
/// HAProxy works on C strings, so a NUL ends the word it is in, and a NUL where a word would
/// start ends the command (the words after it are ignored).
pub fn tokenize(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        while chars.next_if(|c| matches!(c, ' ' | '\t')).is_some() {}
        if matches!(chars.peek(), None | Some('\0')) {
            break;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                // The byte ending a word is consumed (HAProxy overwrites it with a NUL).
                ' ' | '\t' | '\0' => break,
                '\\' => match chars.next() {
                    None | Some('\0') => break,
                    Some(escaped) => word.push(escaped),
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

/// Parses one command (one `;`-separated part of a request line).
pub fn parse(command: &str) -> Result<Command, ParseError> {
    let words = tokenize(command);
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    parse_args(&args)
}

/// Parses the words of one command.
pub fn parse_args(args: &[&str]) -> Result<Command, ParseError> {
    use Level::*;
    let a = |i: usize| args.get(i).copied().unwrap_or("");
    let unknown = || err(User, usage_message(args));
    let cmd = match (a(0), a(1), a(2)) {
        ("help", _, _) => Command::Help(args[1..].iter().map(|s| s.to_string()).collect()),
        ("prompt", _, _) => Command::Prompt,
        ("quit", _, _) => Command::Quit,
        ("operator", _, _) => Command::LowerLevel(Operator),
        ("user", _, _) => Command::LowerLevel(User),
        ("set", "timeout", _) => {
            if a(2) != "cli" {
                return Err(err(User, "'set timeout' only supports 'cli'.\n"));
            }
            if a(3).is_empty() {
                return Err(err(User, "Expects an integer value.\n"));
            }
            let v = atoi(a(3));
            if v <= 0 || v > 2_147_483 {
                return Err(err(User, "Invalid timeout value.\n"));
            }
            Command::SetTimeoutCli(v as u32)
        }
        ("show", "info", _) => {
            let mut s = ShowInfo::default();
            for w in &args[2..] {
                match *w {
                    "typed" => s.format = Format::Typed,
                    "json" => s.format = Format::Json,
                    "desc" => s.desc = true,
                    "float" => s.float = true,
                    _ => {}
                }
            }
            Command::ShowInfo(s)
        }
        ("show", "stat", _) => Command::ShowStat(parse_show_stat(&args[2..])?),
        // Switchyard extension (HAProxy has it on the master CLI only).
        ("reload", "", _) => Command::Reload,
        ("show", "servers", "state") => Command::ShowServersState(opt(a(3))),
        ("show", "servers", "conn") => Command::ShowServersConn(opt(a(3))),
        ("show", "backend", _) => Command::ShowBackend,
        ("show", "version", _) => Command::ShowVersion,
        ("show", "sess", _) => Command::ShowSess(match a(2) {
            "all" => ShowSess::All,
            "" => ShowSess::List,
            id => match strtoul(id) {
                0 => ShowSess::List,
                n => ShowSess::Id(n),
            },
        }),
        ("add", "server", _) => {
            let server = server_ref(a(2)).ok_or_else(|| err(Admin, "Require 'backend/server'."))?;
            if a(3).is_empty() {
                return Err(err(
                    Admin,
                    "'server' expects <name> and <addr>[:<port>] as arguments.\n",
                ));
            }
            let mut keywords = Vec::new();
            let mut i = 4;
            while i < args.len() {
                let name = args[i];
                let takes = match SERVER_KEYWORDS.iter().find(|(k, _)| *k == name) {
                    Some((_, takes)) => *takes,
                    None => {
                        let msg = match best_keyword(name) {
                            Some(best) => {
                                format!("unknown keyword '{name}'; did you mean '{best}' maybe ?\n")
                            }
                            None => format!("unknown keyword '{name}'.\n"),
                        };
                        return Err(err(Admin, msg));
                    }
                };
                let value = if takes {
                    args.get(i + 1).map(|s| s.to_string())
                } else {
                    None
                };
                i += 1 + usize::from(takes);
                keywords.push(ServerKeyword {
                    name: name.to_string(),
                    value,
                });
            }
            Command::AddServer {
                server,
                addr: a(3).to_string(),
                keywords,
            }
        }
        ("del", "server", _) => Command::DelServer(
            server_ref(a(2)).ok_or_else(|| err(Admin, "Require 'backend/server'."))?,
        ),
        ("set", "server", _) => {
            let srv = require_server(a(2), Admin)?;
            let what = match a(3) {
                "state" => SetServer::State(match a(4) {
                    "ready" => AdminState::Ready,
                    "drain" => AdminState::Drain,
                    "maint" => AdminState::Maint,
                    _ => {
                        return Err(err(
                            Admin,
                            "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n",
                        ))
                    }
                }),
                "weight" => SetServer::Weight(parse_weight(a(4))?),
                "addr" => {
                    if a(4).is_empty() {
                        return Err(err(
                            Admin,
                            "set server <b>/<s> addr requires an address and optionally a port.\n",
                        ));
                    }
                    let port = (a(5) == "port").then(|| a(6).to_string());
                    SetServer::Addr {
                        addr: a(4).to_string(),
                        port,
                    }
                }
                "health" => SetServer::Health(match a(4) {
                    "up" => HealthState::Up,
                    "stopping" => HealthState::Stopping,
                    "down" => HealthState::Down,
                    _ => {
                        return Err(err(
                            Admin,
                            "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n",
                        ))
                    }
                }),
                "agent" => SetServer::Agent(match a(4) {
                    "up" => true,
                    "down" => false,
                    _ => {
                        return Err(err(
                            Admin,
                            "'set server <srv> agent' expects 'up' or 'down'.\n",
                        ))
                    }
                }),
                "check-port" => {
                    if a(4).is_empty() {
                        return Err(err(
                            Admin,
                            "set server <b>/<s> check-port requires a port.\n",
                        ));
                    }
                    let Some(p) = strict_int(a(4)) else {
                        return Err(err(Admin, "provided port is not an integer"));
                    };
                    if !(1..=65535).contains(&p) {
                        return Err(err(Admin, "provided port is invalid"));
                    }
                    SetServer::CheckPort(p as u16)
                }
                "agent-addr" | "agent-port" | "agent-send" | "check-addr" | "fqdn" | "ssl" => {
                    return Ok(Command::Other {
                        keywords: vec!["set".into(), "server".into()],
                        args: args[2..].iter().map(|s| s.to_string()).collect(),
                    })
                }
                _ => return Err(err(Admin, SET_SERVER_USAGE)),
            };
            Command::SetServer(srv, what)
        }
        ("enable", "server", _) => Command::EnableServer(require_server(a(2), Admin)?),
        ("disable", "server", _) => Command::DisableServer(require_server(a(2), Admin)?),
        ("enable", "health", _) => Command::EnableHealth(require_server(a(2), Admin)?),
        ("disable", "health", _) => Command::DisableHealth(require_server(a(2), Admin)?),
        ("enable", "agent", _) => Command::EnableAgent(require_server(a(2), Admin)?),
        ("disable", "agent", _) => Command::DisableAgent(require_server(a(2), Admin)?),
        // HAProxy's `get weight` splits the name itself and only requires a server part: an
        // empty backend (`get weight /s1`) is left to the lookup ("No such backend.").
        ("get", "weight", _) => Command::GetWeight(match a(2).split_once('/') {
            Some((backend, server)) if !server.is_empty() => ServerRef {
                backend: backend.to_string(),
                server: server.to_string(),
            },
            _ => return Err(err(User, "Require 'backend/server'.\n")),
        }),
        ("set", "weight", _) => {
            let srv = require_server(a(2), Admin)?;
            Command::SetWeight(srv, parse_weight(a(3))?)
        }
        ("set", "maxconn", "server") => {
            let srv = require_server(a(3), Admin)?;
            if a(4).is_empty() {
                return Err(err(Admin, "Require <maxconn>.\n"));
            }
            match strict_int(a(4)) {
                Some(v) if (0..=i64::from(u32::MAX)).contains(&v) => {
                    Command::SetMaxconnServer(srv, v as u32)
                }
                _ => return Err(err(Admin, "maxconn string empty or preceded by garbage")),
            }
        }
        ("set", "maxconn", "frontend") => {
            if a(3).is_empty() {
                return Err(err(Admin, "A frontend name is expected.\n"));
            }
            if a(4).is_empty() {
                return Err(err(Admin, "Integer value expected.\n"));
            }
            Command::SetMaxconnFrontend {
                frontend: a(3).to_string(),
                maxconn: atoi(a(4)),
            }
        }
        ("set", "maxconn", "global") => {
            if a(3).is_empty() {
                return Err(err(Admin, "Expects an integer value.\n"));
            }
            Command::SetMaxconnGlobal(atoi(a(3)))
        }
        ("shutdown", "sessions", "server") => {
            Command::ShutdownSessionsServer(require_server(a(3), Admin)?)
        }
        ("shutdown", "session", _) => match strtoul(a(2)) {
            0 => return Err(err(Admin, "Session pointer expected (use 'show sess').\n")),
            id => Command::ShutdownSession(id),
        },
        ("clear", "counters", _) => Command::ClearCounters { all: a(2) == "all" },
        _ => {
            // Another command of HAProxy's table, or nothing known at all.
            let Some(kw) = find_keyword(args) else {
                return Err(unknown());
            };
            Command::Other {
                keywords: kw.iter().map(|s| s.to_string()).collect(),
                args: args[kw.len()..].iter().map(|s| s.to_string()).collect(),
            }
        }
    };
    Ok(cmd)
}

const SET_SERVER_USAGE: &str = "usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n";

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// `backend/server`; like HAProxy, both names must be non-empty (`be/`, `/srv` and `/` get
/// "Require 'backend/server'.", not "No such server.").
fn server_ref(s: &str) -> Option<ServerRef> {
    let (b, srv) = s.split_once('/')?;
    if b.is_empty() || srv.is_empty() {
        return None;
    }
    Some(ServerRef {
        backend: b.to_string(),
        server: srv.to_string(),
    })
}

fn require_server(s: &str, level: Level) -> Result<ServerRef, ParseError> {
    server_ref(s).ok_or_else(|| err(level, "Require 'backend/server'.\n"))
}

fn parse_weight(s: &str) -> Result<Weight, ParseError> {
    if s.is_empty() {
        return Err(err(Level::Admin, "Require <weight> or <weight%>.\n"));
    }
    // HAProxy 2.6 reads the number with strtol() and then looks at what follows, in this
    // order, and scripts match on the message: no digits, `N%` exactly, range, trailing text.
    let Some((w, rest)) = strtol_prefix(s) else {
        return Err(err(
            Level::Admin,
            "Empty weight string empty or preceded by garbage",
        ));
    };
    if rest == "%" {
        if w < 0 {
            return Err(err(Level::Admin, "Relative weight must be positive.\n"));
        }
        Ok(Weight::Percent(w.min(i64::from(u32::MAX)) as u32))
    } else if !(0..=256).contains(&w) {
        Err(err(
            Level::Admin,
            "Absolute weight can only be between 0 and 256 inclusive.\n",
        ))
    } else if !rest.is_empty() {
        // HAProxy ends this one without a newline of its own.
        Err(err(Level::Admin, "Trailing garbage in weight string"))
    } else {
        Ok(Weight::Absolute(w as u32))
    }
}

/// What C's `strtol(s, &end, 10)` reads: leading white space, a sign and decimal digits
/// (saturating), with the text after them; `None` when there is no digit (`end == s`).
fn strtol_prefix(s: &str) -> Option<(i64, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let v = t[..digits].bytes().fold(0i64, |v, b| {
        v.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some((if neg { -v } else { v }, &t[digits..]))
}

/// An optionally signed decimal integer and nothing else (saturating).
fn strict_int(s: &str) -> Option<i64> {
    let (neg, d) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = d.bytes().fold(0i64, |v, b| {
        v.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if neg { -v } else { v })
}

/// C's `atoi`: leading blanks, optional sign, digits; garbage reads as 0.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = rest
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |v, b| {
            v.saturating_mul(10).saturating_add(i64::from(b - b'0'))
        })
        .min(i64::from(i32::MAX));
    if neg {
        -v
    } else {
        v
    }
}

/// C's `strtoul(s, NULL, 0)`: `0x` hex, leading `0` octal, else decimal; garbage reads as 0.
fn strtoul(s: &str) -> u64 {
    let s = s.trim_start();
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    u64::from_str_radix(&digits[..end], radix).unwrap_or(if end == 0 { 0 } else { u64::MAX })
}

fn parse_show_stat(args: &[&str]) -> Result<ShowStat, ParseError> {
    let mut s = ShowStat::default();
    let mut args = args;
    if args.first() == Some(&"domain") {
        s.domain = match args.get(1).copied() {
            Some("proxy") => StatDomain::Proxy,
            Some("dns") => StatDomain::Dns,
            _ => return Err(err(Level::User, "Invalid statistics domain.\n")),
        };
        args = &args[2..];
    }
    if args.len() >= 3 && args[..3].iter().all(|a| !a.is_empty()) {
        let proxy = match strict_int(args[0]) {
            Some(id) => ProxySelector::Id(id.clamp(-1, i64::from(i32::MAX)) as i32),
            None => ProxySelector::Name(args[0].to_string()),
        };
        s.filter = Some(StatFilter {
            proxy,
            types: atoi(args[1]) as i32,
            server_id: atoi(args[2]) as i32,
        });
        args = &args[3..];
    }
    for w in args {
        match *w {
            "typed" => s.format = Format::Typed,
            "json" => s.format = Format::Json,
            "desc" => s.desc = true,
            "up" => s.up = true,
            "no-maint" => s.no_maint = true,
            _ => {}
        }
    }
    Ok(s)
}

/// `add server` keywords Switchyard knows: (name, takes a value).
pub const SERVER_KEYWORDS: &[(&str, bool)] = &[
    ("addr", true),
    ("agent-addr", true),
    ("agent-check", false),
    ("agent-inter", true),
    ("agent-port", true),
    ("agent-send", true),
    ("backup", false),
    ("check", false),
    ("disabled", false),
    ("downinter", true),
    ("enabled", false),
    ("error-limit", true),
    ("fall", true),
    ("fastinter", true),
    ("id", true),
    ("inter", true),
    ("maxconn", true),
    ("maxqueue", true),
    ("minconn", true),
    ("no-agent-check", false),
    ("no-backup", false),
    ("no-check", false),
    ("no-send-proxy", false),
    ("no-send-proxy-v2", false),
    ("observe", true),
    ("on-error", true),
    ("on-marked-down", true),
    ("on-marked-up", true),
    ("pool-low-conn", true),
    ("pool-max-conn", true),
    ("pool-purge-delay", true),
    ("port", true),
    ("resolve-prefer", true),
    ("resolvers", true),
    ("rise", true),
    ("send-proxy", false),
    ("send-proxy-v2", false),
    ("slowstart", true),
    ("tfo", false),
    ("track", true),
    ("weight", true),
];

fn best_keyword(word: &str) -> Option<&'static str> {
    let fw = fingerprint(&[word]);
    let mut best: Option<(u32, &str)> = None;
    for (k, _) in SERVER_KEYWORDS {
        let d = distance(&fw, &fingerprint(&[k]));
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    // Like HAProxy, only propose something reasonably close.
    best.filter(|(d, k)| (*d as usize) < word.len() + k.len())
        .map(|(_, k)| k)
}

/// HAProxy 2.6's command table as `help` prints it (usage padded to 40 columns, then the
/// description), in `help` order. The keywords of an entry are its leading plain words.
pub const HELP_TABLE: &[&str] = &[
    "abort ssl ca-file <cafile>              : abort a transaction for a CA file",
    "abort ssl cert <certfile>               : abort a transaction for a certificate file",
    "abort ssl crl-file <crlfile>            : abort a transaction for a CRL file",
    "add acl [@<ver>] <acl> <pattern>        : add an acl entry",
    "add map [@<ver>] <map> <key> <val>      : add a map entry (payload supported instead of key/val)",
    "add server <bk>/<srv>                   : create a new server",
    "add ssl crt-list <list> <cert> [opts]*  : add to crt-list file <list> a line <cert> or a payload",
    "clear acl [@<ver>] <acl>                : clear the contents of this acl",
    "clear counters [all]                    : clear max statistics counters (or all counters)",
    "clear map [@<ver>] <map>                : clear the contents of this map",
    "clear table <table> [<filter>]*         : remove an entry from a table (filter: data/key)",
    "commit acl @<ver> <acl>                 : commit the ACL at this version",
    "commit map @<ver> <map>                 : commit the map at this version",
    "commit ssl ca-file <cafile>             : commit a CA file",
    "commit ssl cert <certfile>              : commit a certificate file",
    "commit ssl crl-file <crlfile>           : commit a CRL file",
    "del acl <acl> [<key>|#<ref>]            : delete acl entries matching <key>",
    "del map <map> [<key>|#<ref>]            : delete map entries matching <key>",
    "del server <bk>/<srv>                   : remove a dynamically added server",
    "del ssl ca-file <cafile>                : delete an unused CA file",
    "del ssl cert <certfile>                 : delete an unused certificate file",
    "del ssl crl-file <crlfile>              : delete an unused CRL file",
    "del ssl crt-list <list> <cert[:line]>   : delete a line <cert> from crt-list file <list>",
    "disable agent                           : disable agent checks",
    "disable dynamic-cookie backend <bk>     : disable dynamic cookies on a specific backend",
    "disable frontend <frontend>             : temporarily disable specific frontend",
    "disable health                          : disable health checks",
    "disable server (DEPRECATED)             : disable a server for maintenance (use 'set server' instead)",
    "enable agent                            : enable agent checks",
    "enable dynamic-cookie backend <bk>      : enable dynamic cookies on a specific backend",
    "enable frontend <frontend>              : re-enable specific frontend",
    "enable health                           : enable health checks",
    "enable server  (DEPRECATED)             : enable a disabled server (use 'set server' instead)",
    "get acl <acl> <value>                   : report the patterns matching a sample for an ACL",
    "get map <acl> <value>                   : report the keys and values matching a sample for a map",
    "get var <name>                          : retrieve contents of a process-wide variable",
    "get weight <bk>/<srv>                   : report a server's current weight",
    "new ssl ca-file <cafile>                : create a new CA file to be used in a crt-list",
    "new ssl cert <certfile>                 : create a new certificate file to be used in a crt-list or a directory",
    "new ssl crlfile <crlfile>               : create a new CRL file to be used in a crt-list",
    "operator                                : lower the level of the current CLI session to operator",
    "prepare acl <acl>                       : prepare a new version for atomic ACL replacement",
    "prepare map <acl>                       : prepare a new version for atomic map replacement",
    "set dynamic-cookie-key backend <bk> <k> : change a backend secret key for dynamic cookies",
    "set map <map> [<key>|#<ref>] <value>    : modify a map entry",
    "set maxconn frontend <frontend> <value> : change a frontend's maxconn setting",
    "set maxconn global <value>              : change the per-process maxconn setting",
    "set maxconn server <bk>/<srv>           : change a server's maxconn setting",
    "set profiling <what> {auto|on|off}      : enable/disable resource profiling (tasks,memory)",
    "set rate-limit <setting> <value>        : change a rate limiting value",
    "set server <bk>/<srv> [opts]            : change a server's state, weight, address or ssl",
    "set severity-output [none|number|string]: set presence of severity level in feedback information",
    "set ssl ca-file <cafile> <payload>      : replace a CA file",
    "set ssl cert <certfile> <payload>       : replace a certificate file",
    "set ssl crl-file <crlfile> <payload>    : replace a CRL file",
    "set ssl ocsp-response <resp|payload>    : update a certificate's OCSP Response from a base64-encode DER",
    "set ssl tls-key [id|file] <key>         : set the next TLS key for the <id> or <file> listener to <key>",
    "set table <table> key <k> [data.* <v>]* : update or create a table entry's data",
    "set timeout [cli] <delay>               : change a timeout setting",
    "set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use 'set server' instead)",
    "show acl [@<ver>] <acl>]                : report available acls or dump an acl's contents",
    "show activity                           : show per-thread activity stats (for support/developers)",
    "show backend                            : list backends in the current running config",
    "show cache                              : show cache status",
    "show cli level                          : display the level of the current CLI session",
    "show cli sockets                        : dump list of cli sockets",
    "show env [var]                          : dump environment variables known to the process",
    "show errors [<px>] [request|response]   : report last request and/or response errors for each proxy",
    "show events [<sink>] [-w] [-n]          : show event sink state",
    "show fd [num]                           : dump list of file descriptors in use or a specific one",
    "show info [desc|json|typed|float]*      : report information about the running process",
    "show libs                               : show loaded object files and libraries",
    "show map [@ver] [map]                   : report available maps or dump a map's contents",
    "show peers [dict|-] [section]           : dump some information about all the peers or this peers section",
    "show pools                              : report information about the memory pools usage",
    "show profiling [<what>|<#lines>|byaddr]*: show profiling state (all,status,tasks,memory)",
    "show resolvers [id]                     : dumps counters from all resolvers section and associated name servers",
    "show schema json                        : report schema used for stats",
    "show servers conn [<backend>]           : dump server connections status (all or for a single backend)",
    "show servers state [<backend>]          : dump volatile server information (all or for a single backend)",
    "show sess [id]                          : report the list of current sessions or dump this exact session",
    "show ssl ca-file [<cafile>[:<index>]]   : display the SSL CA files used in memory, or the details of a <cafile>, or a single certificate of index <index> of a CA file <cafile>",
    "show ssl cert [<certfile>]              : display the SSL certificates used in memory, or the details of a file",
    "show ssl crl-file [<crlfile[:<index>>]] : display the SSL CRL files used in memory, or the details of a <crlfile>, or a single CRL of index <index> of CRL file <crlfile>",
    "show ssl crt-list [-n] [<list>]         : show the list of crt-lists or the content of a crt-list file <list>",
    "show ssl ocsp-response [id]             : display the IDs of the OCSP responses used in memory, or the details of a single OCSP response",
    "show ssl providers                      : show loaded SSL providers",
    "show startup-logs                       : report logs emitted during HAProxy startup",
    "show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server",
    "show table <table> [<filter>]*          : report table usage stats or dump this table's contents (filter: data/key)",
    "show tasks                              : show running tasks",
    "show threads                            : show some threads debugging information",
    "show tls-keys [id|*]                    : show tls keys references or dump tls ticket keys when id specified",
    "show trace [<module>]                   : show live tracing state",
    "show version                            : show version of the current process",
    "shutdown frontend <frontend>            : stop a specific frontend",
    "shutdown session [id]                   : kill a specific session",
    "shutdown sessions server <bk>/<srv>     : kill sessions on a server",
    "trace [<module>|0] [cmd [args...]]      : manage live tracing (empty to list, 0 to stop all)",
    "user                                    : lower the level of the current CLI session to user",];

/// HAProxy 2.6's keywords for the [`HELP_TABLE`] entries, in the order it registers them: the
/// link order of its object files (Makefile `OPTIONS_OBJS` for Debian's build options, then
/// `OBJS`), then their order in each file. Among suggestions equally close to an unknown
/// command HAProxy keeps the one registered first, so its lists are only reproduced in this
/// order (checked against the golden transcripts and a few hundred typos sent to haproxy
/// 2.6.12).
const REGISTRATION_ORDER: &[&str] = &[
    // src/ssl_sock.c
    "show tls-keys",
    "set ssl tls-key",
    "set ssl ocsp-response",
    "show ssl ocsp-response",
    "show ssl providers",
    // src/ssl_crtlist.c
    "add ssl crt-list",
    "del ssl crt-list",
    "show ssl crt-list",
    // src/ssl_ckch.c
    "new ssl cert",
    "set ssl cert",
    "commit ssl cert",
    "abort ssl cert",
    "del ssl cert",
    "show ssl cert",
    "new ssl ca-file",
    "set ssl ca-file",
    "commit ssl ca-file",
    "abort ssl ca-file",
    "del ssl ca-file",
    "show ssl ca-file",
    "new ssl crl-file",
    "set ssl crl-file",
    "commit ssl crl-file",
    "abort ssl crl-file",
    "del ssl crl-file",
    "show ssl crl-file",
    // src/stream.c
    "show sess",
    "shutdown session",
    "shutdown sessions server",
    // src/stats.c
    "clear counters",
    "show info",
    "show stat",
    "show schema json",
    // src/server.c
    "disable agent",
    "disable health",
    "disable server",
    "enable agent",
    "enable health",
    "enable server",
    "set maxconn server",
    "set server",
    "get weight",
    "set weight",
    "add server",
    "del server",
    // src/stick_table.c
    "clear table",
    "set table",
    "show table",
    // src/peers.c
    "show peers",
    // src/resolvers.c
    "show resolvers",
    // src/cli.c
    "set maxconn global",
    "set rate-limit",
    "set severity-output",
    "set timeout",
    "show env",
    "show cli sockets",
    "show cli level",
    "show fd",
    "show activity",
    "show version",
    "operator",
    "user",
    // src/proxy.c
    "disable frontend",
    "enable frontend",
    "set maxconn frontend",
    "show servers conn",
    "show servers state",
    "show backend",
    "shutdown frontend",
    "set dynamic-cookie-key backend",
    "enable dynamic-cookie backend",
    "disable dynamic-cookie backend",
    "show errors",
    // src/cache.c
    "show cache",
    // src/vars.c
    "get var",
    // src/debug.c
    "show libs",
    "show threads",
    // src/sink.c
    "show events",
    // src/map.c
    "add acl",
    "clear acl",
    "commit acl",
    "del acl",
    "get acl",
    "prepare acl",
    "show acl",
    "add map",
    "clear map",
    "commit map",
    "del map",
    "get map",
    "prepare map",
    "set map",
    "show map",
    // src/pool.c
    "show pools",
    // src/trace.c
    "trace",
    "show trace",
    // src/activity.c
    "set profiling",
    "show profiling",
    "show tasks",
    // src/errors.c
    "show startup-logs",
];

/// The [`HELP_TABLE`] entry of registered keywords `kw` (HAProxy prints `new ssl crl-file`
/// as `new ssl crlfile`).
fn registered_entry(kw: &str) -> Option<&'static str> {
    HELP_TABLE.iter().copied().find(|u| {
        entry_keywords(u).join(" ") == kw
            || (kw == "new ssl crl-file" && u.starts_with("new ssl crlfile "))
    })
}

const HELP_TRAILER: &str = "  help [<command>]                        : list matching or all commands\n  prompt                                  : toggle interactive mode with prompt\n  quit                                    : disconnect\n";

/// Keywords of a help entry: the leading words before an argument placeholder.
fn entry_keywords(usage: &str) -> Vec<&str> {
    let head = usage.split(" : ").next().unwrap_or(usage);
    head.split_whitespace()
        .take_while(|w| !w.starts_with(['<', '[', '(', '{', '@']))
        .map(|w| w.trim_end_matches(':'))
        .filter(|w| !w.is_empty())
        .take(MAX_KEYWORDS)
        .collect()
}

const MAX_KEYWORDS: usize = 5;
const MAX_MATCHES: usize = 5;

/// The entry of [`HELP_TABLE`] whose keywords all start `args`, if any.
fn find_keyword<'a>(args: &[&'a str]) -> Option<Vec<&'a str>> {
    HELP_TABLE.iter().find_map(|u| {
        let kw = entry_keywords(u);
        (args.len() >= kw.len() && kw.iter().zip(args).all(|(k, a)| k == a))
            .then(|| args[..kw.len()].to_vec())
    })
}

/// Letter-transition fingerprint of some words (HAProxy's `update_word_fingerprint`): counts
/// of each (previous, next) character class pair at `32 * from + to`, classes being the 26
/// letters (1..=26), digits (27) and "other" (28, which also marks a word's start and end),
/// plus row 0 marking which classes occur at all. Two texts with the same transitions have
/// distance 0.
/// A character's class: letters 1..=26, digits 27, anything else 28.
fn class(b: u8) -> usize {
    match b.to_ascii_lowercase() {
        c @ b'a'..=b'z' => usize::from(c - b'a') + 1,
        b'0'..=b'9' => 27,
        _ => 28,
    }
}

fn fingerprint(words: &[&str]) -> [u8; 1024] {
    let mut fp = [0u8; 1024];
    for w in words {
        let mut from = 28usize;
        for b in w.bytes() {
            let to = class(b);
            // The presence row: without it, ties (and so suggestions) differ from HAProxy's.
            fp[to] = 1;
            fp[32 * from + to] = fp[32 * from + to].wrapping_add(1);
            from = to;
        }
        fp[32 * from + 28] = fp[32 * from + 28].wrapping_add(1);
    }
    fp
}

/// [`fingerprint`] of a few short keywords as (index, count) pairs: a keyword has a few
/// dozen transitions, so comparing against it need not walk 1,024 cells.
fn sparse_fingerprint(words: &[&str]) -> Vec<(usize, u8)> {
    let mut cells: Vec<(usize, u8)> = Vec::with_capacity(48);
    let mut bump = |index: usize, presence: bool| match cells.iter_mut().find(|(i, _)| *i == index)
    {
        Some((_, count)) if !presence => *count = count.wrapping_add(1),
        Some(_) => {}
        None => cells.push((index, 1)),
    };
    for w in words {
        let mut from = 28usize;
        for b in w.bytes() {
            let to = class(b);
            bump(to, true);
            bump(32 * from + to, false);
            from = to;
        }
        bump(32 * from + 28, false);
    }
    cells
}

/// `distance(dense, fingerprint of sparse)`, where `weight` is the sum of `dense`: the cells
/// `sparse` leaves at zero contribute their own value, so only its cells need a look.
fn distance_to_sparse(dense: &[u8; 1024], weight: u32, sparse: &[(usize, u8)]) -> u32 {
    sparse.iter().fold(weight, |d, &(index, count)| {
        let own = dense.get(index).copied().unwrap_or(0);
        d - u32::from(own) + u32::from(own.abs_diff(count))
    })
}

fn distance(a: &[u8; 1024], b: &[u8; 1024]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .sum()
}

/// HAProxy's answer to an unknown command `args` (or to `help args` via [`help_message`]):
/// the entries whose keywords match the longest exact prefix of `args`, and among those, when
/// words remain, the closest ones by [`fingerprint`] distance (at most 5, and none more than
/// 2.5 times as far as the best; ties go to the first in [`REGISTRATION_ORDER`]), listed in
/// `help` order, followed by help/prompt/quit.
pub fn usage_message(args: &[&str]) -> String {
    build_usage(args, false)
}

/// The answer to `help [words...]`.
pub fn help_message(words: &[&str]) -> String {
    build_usage(words, true)
}

fn build_usage(args: &[&str], is_help: bool) -> String {
    let args: Vec<&str> = args.iter().copied().take_while(|a| !a.is_empty()).collect();
    // In registration order, with HAProxy's own keywords: both decide ties. Built once: an
    // unknown-command flood on the socket must not cost a table build per command.
    static TABLE: std::sync::OnceLock<Vec<(Vec<&'static str>, &'static str)>> =
        std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        REGISTRATION_ORDER
            .iter()
            .filter_map(|kw| Some((kw.split(' ').collect(), registered_entry(kw)?)))
            .collect()
    });
    let prefix = |kw: &[&str]| kw.iter().zip(&args).take_while(|(k, a)| k == a).count();
    let length = table.iter().map(|(kw, _)| prefix(kw)).max().unwrap_or(0);
    let mut out = String::from(if is_help {
        "The following commands are valid at this level:\n"
    } else if length == 0 && args.is_empty() {
        "Unknown command. Please enter one of the following commands only:\n"
    } else {
        "Unknown command, but maybe one of the following ones is a better match:\n"
    });
    let candidates = table
        .iter()
        .filter(|(kw, _)| prefix(kw) >= length && kw.len() >= length);
    let mut entries: Vec<&str> = Vec::new();
    if length < args.len() {
        let rest: Vec<&str> = args[length..]
            .iter()
            .copied()
            .take(MAX_KEYWORDS.saturating_sub(length))
            .collect();
        let rest_fp = fingerprint(&rest);
        let rest_weight: u32 = rest_fp.iter().map(|&c| u32::from(c)).sum();
        let rest_len: usize = rest.iter().map(|w| w.len()).sum();
        let mut matches: Vec<(u32, &str)> = Vec::new();
        for (kw, usage) in candidates.clone() {
            let tail = &kw[length..];
            let total = rest_len + tail.iter().map(|w| w.len()).sum::<usize>();
            let d = distance_to_sparse(&rest_fp, rest_weight, &sparse_fingerprint(tail));
            let worst = if matches.len() < MAX_MATCHES {
                u32::MAX
            } else {
                matches[MAX_MATCHES - 1].0
            };
            if (d as usize) < 5 * total / 2 && d < worst {
                // Keep the best five; among equals the first registered stays ahead.
                let pos = matches
                    .iter()
                    .position(|(md, _)| *md > d)
                    .unwrap_or(matches.len());
                matches.insert(pos, (d, usage));
                matches.truncate(MAX_MATCHES);
            }
        }
        if let Some(&(best, _)) = matches.first() {
            entries = matches
                .iter()
                .take_while(|(d, _)| *d <= 5 * best / 2)
                .map(|(_, u)| *u)
                .collect();
        }
    }
    if entries.is_empty() {
        entries = candidates.map(|(_, u)| *u).collect();
    }
    entries.sort_unstable();
    for e in entries {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(HELP_TRAILER);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sparse comparison gives exactly the dense distance, wrapped counts included.
    #[test]
    fn sparse_distance_is_the_dense_distance() {
        let long = "z".repeat(300);
        let texts: [&[&str]; 6] = [
            &["show", "stat"],
            &["shwo", "sevrers", "state"],
            &["a"],
            &[""],
            &[long.as_str(), "x9-"],
            &["set", "server", "weight", "be/s1", "10%"],
        ];
        for a in texts {
            let dense = fingerprint(a);
            let weight: u32 = dense.iter().map(|&c| u32::from(c)).sum();
            for b in texts {
                assert_eq!(
                    distance_to_sparse(&dense, weight, &sparse_fingerprint(b)),
                    distance(&dense, &fingerprint(b)),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    /// Each help entry has exactly one place in the registration order.
    #[test]
    fn registration_order_covers_the_help_table() {
        let mut found: Vec<&str> = REGISTRATION_ORDER
            .iter()
            .map(|kw| registered_entry(kw).unwrap_or_else(|| panic!("no help entry for {kw}")))
            .collect();
        found.sort_unstable();
        let mut help = HELP_TABLE.to_vec();
        help.sort_unstable();
        assert_eq!(found, help);
    }
}
