//! `switchyard ctl`: a client for the Runtime API (the HAProxy-compatible stats socket).
//!
//! It sends one command line, reads the reply until the server closes (HAProxy's
//! non-interactive mode), and prints it: as a readable table for `show stat`,
//! `show servers state` and `show info`, as JSON with `--json`, or byte for byte with `--raw`.
//! Exit status: 0 success, 1 the server answered with an error, 2 the socket could not be
//! reached (or found).

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use switchyard_api::model::{AdminState, CheckState, CheckStatus};
use switchyard_config::SocketAddress;

/// Environment variable naming the socket when neither `--socket` nor `-f` is given.
const SOCKET_ENV: &str = "SWITCHYARD_SOCKET";

/// `switchyard ctl [--socket ADDR | -f CONFIG] [--json | --raw] [--timeout SECS] COMMAND...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stats socket to talk to: a unix socket path (or `unix@PATH`), `ipv4@HOST:PORT`,
    /// `ipv6@[ADDR]:PORT` or `HOST:PORT`. Defaults to $SWITCHYARD_SOCKET.
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    socket: Option<String>,
    /// Take the socket from this configuration file's `stats socket` lines (the admin-level
    /// one if there are several).
    #[arg(short = 'f', value_name = "CONFIG")]
    config: Option<PathBuf>,
    /// Print the reply as JSON.
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// Print exactly the bytes received.
    #[arg(long)]
    raw: bool,
    /// Seconds to wait for the connection and for each read of the reply.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    timeout: Duration,
    /// The command, e.g. `show stat` (words are joined with spaces; `;` separates commands).
    #[arg(required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{s}' is not a positive number of seconds"))
}

/// Exit status when the reply is an error.
const EXIT_REPLY_ERROR: u8 = 1;
/// Exit status when the socket cannot be found or reached.
const EXIT_UNREACHABLE: u8 = 2;

pub fn run(args: Args) -> ExitCode {
    let target = match resolve_target(&args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("switchyard ctl: {message}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let line = args.command.join(" ");
    let reply = match exchange(&target, &line, args.timeout) {
        Ok(reply) => reply,
        Err(message) => {
            eprintln!("switchyard ctl: {message}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let text = String::from_utf8_lossy(&reply);
    let failed = is_error_reply(&line, &text);
    let (stdout, stderr) = if args.raw {
        (reply, Vec::new())
    } else if args.json {
        (render_json(&line, &text, failed).into_bytes(), Vec::new())
    } else if failed && !is_chain(&line) {
        // Errors go to stderr so scripts reading stdout see nothing to parse. A chain's
        // reply mixes results and errors, so it stays whole on stdout.
        (Vec::new(), verbatim(&text).into_bytes())
    } else {
        (render_human(&line, &text).into_bytes(), Vec::new())
    };
    // Write errors (a closed pipe, as in `ctl show stat | head`) are not worth a panic.
    let _ = std::io::stdout().lock().write_all(&stdout);
    let _ = std::io::stderr().lock().write_all(&stderr);
    if failed {
        ExitCode::from(EXIT_REPLY_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------
// Where to connect

/// A stats socket address as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Unix(PathBuf),
    /// Host (IP literal or name) and port; `family` is `Some` for `ipv4@`/`ipv6@`.
    Tcp {
        host: String,
        port: u16,
        family: Option<Family>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix socket {}", path.display()),
            Target::Tcp { host, port, family } => {
                let prefix = match family {
                    Some(Family::V4) => "ipv4@",
                    Some(Family::V6) => "ipv6@",
                    None => "",
                };
                if host.contains(':') {
                    write!(f, "{prefix}[{host}]:{port}")
                } else {
                    write!(f, "{prefix}{host}:{port}")
                }
            }
        }
    }
}

/// `--socket`, else `-f CONFIG`, else `$SWITCHYARD_SOCKET`.
fn resolve_target(args: &Args) -> Result<Target, String> {
    if let Some(socket) = &args.socket {
        return parse_target(socket);
    }
    if let Some(config) = &args.config {
        return target_from_config(config);
    }
    match std::env::var(SOCKET_ENV) {
        Ok(socket) if !socket.is_empty() => parse_target(&socket),
        _ => Err(format!(
            "no stats socket given: use --socket ADDR, -f CONFIG or set {SOCKET_ENV}"
        )),
    }
}

/// Parses what `stats socket` accepts: `unix@PATH`, `/path`, `ipv4@HOST:PORT`,
/// `ipv6@[ADDR]:PORT` (or `ipv6@ADDR:PORT`, split at the last colon like HAProxy) and
/// `HOST:PORT`. Anything without a `:PORT` suffix is taken as a unix socket path, so
/// relative paths like `run/admin.sock` work too.
fn parse_target(s: &str) -> Result<Target, String> {
    if s.is_empty() {
        return Err("empty socket address".into());
    }
    if let Some(path) = s.strip_prefix("unix@") {
        if path.is_empty() {
            return Err("missing path after 'unix@'".into());
        }
        return Ok(Target::Unix(path.into()));
    }
    if s.starts_with('/') || s.starts_with('.') {
        return Ok(Target::Unix(s.into()));
    }
    let (family, rest) = if let Some(rest) = s.strip_prefix("ipv4@") {
        (Some(Family::V4), rest)
    } else if let Some(rest) = s.strip_prefix("ipv6@") {
        (Some(Family::V6), rest)
    } else {
        (None, s)
    };
    let split = if let Some(inner) = rest.strip_prefix('[') {
        inner
            .split_once("]:")
            .ok_or_else(|| format!("invalid socket address '{s}' (expected [ADDR]:PORT)"))?
    } else {
        match rest.rsplit_once(':') {
            Some(parts) => parts,
            None if family.is_some() => {
                return Err(format!("missing port in socket address '{s}'"))
            }
            None => return Ok(Target::Unix(s.into())),
        }
    };
    let (host, port) = split;
    // A listener's wildcard (`*:9999`, `:9999`) is reached through the loopback.
    let host = match (host, family) {
        ("" | "*", Some(Family::V6)) => "::1",
        ("" | "*", _) => "127.0.0.1",
        (host, _) => host,
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("invalid port '{port}' in socket address '{s}'")),
    };
    Ok(Target::Tcp {
        host: host.to_string(),
        port,
        family,
    })
}

/// The `stats socket` of a configuration file: the first admin-level one, else the first.
fn target_from_config(path: &std::path::Path) -> Result<Target, String> {
    let parsed = switchyard_config::parse_files(&[path])
        .map_err(|errors| format!("cannot read {}:\n{errors}", path.display()))?;
    let sockets = &parsed.config.global.stats_sockets;
    let socket = sockets
        .iter()
        .find(|s| s.level.as_deref() == Some("admin"))
        .or_else(|| sockets.first())
        .ok_or_else(|| format!("{} has no 'stats socket' line", path.display()))?;
    Ok(match &socket.address {
        SocketAddress::Unix(path) => Target::Unix(path.clone()),
        SocketAddress::Inet(addr) => Target::Tcp {
            host: connectable(addr.ip()).to_string(),
            port: addr.port(),
            family: None,
        },
    })
}

/// A wildcard listening address (`*:9999`, `:::9999`) is reached through the loopback.
fn connectable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}

// ---------------------------------------------------------------------------------------
// Talking to the socket

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Sends `line` and reads the reply until the server closes the connection.
fn exchange(target: &Target, line: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut conn = connect(target, timeout)?;
    conn.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("cannot send the command to {target}: {e}"))?;
    let mut reply = Vec::new();
    match conn.read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "no complete reply from {target} within {:?} (got {} bytes)",
                timeout,
                reply.len()
            ))
        }
        Err(e) => Err(format!("cannot read the reply from {target}: {e}")),
    }
}

fn connect(target: &Target, timeout: Duration) -> Result<Box<dyn Conn>, String> {
    let fail = |e: std::io::Error| format!("cannot connect to {target}: {e}");
    match target {
        Target::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(fail)?;
            stream.set_read_timeout(Some(timeout)).map_err(fail)?;
            stream.set_write_timeout(Some(timeout)).map_err(fail)?;
            Ok(Box::new(stream))
        }
        Target::Tcp { host, port, family } => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {target}: {e}"))?
                .filter(|a| match family {
                    Some(Family::V4) => a.is_ipv4(),
                    Some(Family::V6) => a.is_ipv6(),
                    None => true,
                })
                .map(|a| SocketAddr::new(connectable(a.ip()), a.port()))
                .collect();
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(timeout)).map_err(fail)?;
                        stream.set_write_timeout(Some(timeout)).map_err(fail)?;
                        return Ok(Box::new(stream));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(match last {
                Some(e) => fail(e),
                None => format!("cannot resolve {target}: no address of that family"),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Error replies

/// How HAProxy 2.6 (and Switchyard, which words its replies the same) starts the replies of
/// failed commands. The CLI has no status code, so this list is the only signal; it is kept
/// to messages that only ever mean failure (captured in `switchyard-api/tests/golden`), and
/// half-failures such as `set server ... addr` with a bad port are deliberately not listed.
const ERROR_PREFIXES: &[&str] = &[
    "Unknown command",
    "Permission denied",
    "No such ", // backend, server, frontend, proxy, session
    "Can't find backend",
    "Require ", // 'backend/server', <weight>, <maxconn>
    "Invalid ", // addr, address, timeout value, statistics domain
    "Already exists a server",
    "Only servers in maintenance mode can be deleted",
    "Server still has connections attached",
    "Backend must use a dynamic load balancing",
    "Backend is using a static LB algorithm",
    "Absolute weight can only be",
    "Relative weight must be positive",
    "Empty weight string",
    "maxconn string empty",
    "Expects an integer value",
    "Integer value expected",
    "A frontend name is expected",
    "Session pointer expected",
    "'set server <srv> ",
    "'set timeout' only supports",
    "'server' expects",
    "set server <b>/<s> ",
    "usage: ",
    "unknown keyword '",
    "unable to find required server",
    "provided port is",
    "this id is already used",
    "This command is not supported by Switchyard",
];

/// Whether the reply reports a failure. A single command's error is its first line; with
/// `;`-chained commands every reply follows the previous one, so each line is checked
/// (names cannot contain spaces, so no data line starts like these messages).
fn is_error_reply(line: &str, reply: &str) -> bool {
    let is_error = |l: &str| ERROR_PREFIXES.iter().any(|p| l.starts_with(p));
    if is_chain(line) {
        reply.lines().any(is_error)
    } else {
        reply.lines().next().is_some_and(is_error)
    }
}

/// A `;` not escaped with a backslash separates commands (HAProxy's CLI rule).
fn is_chain(line: &str) -> bool {
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            ';' if !escaped => return true,
            _ => escaped = false,
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Recognizing replies

/// What a reply is, from the command that asked for it and the reply's own shape (both must
/// agree, so an unexpected reply falls back to verbatim output).
enum Reply {
    /// `show stat` CSV: header names and rows.
    Stat(Records),
    /// `show servers state`: header names and rows.
    ServersState(Records),
    /// `show info`: `Name: value` pairs in order.
    Info(Vec<(String, String)>),
    /// `show backend`: names.
    Backends(Vec<String>),
    Other,
}

/// Rows of named fields (`show stat`, `show servers state`).
struct Records {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// One row with access by header name (missing fields read as empty).
struct Row<'a> {
    header: &'a [String],
    cells: &'a [String],
}

impl<'a> Row<'a> {
    fn get(&self, name: &str) -> &'a str {
        self.header
            .iter()
            .position(|h| h == name)
            .and_then(|i| self.cells.get(i))
            .map_or("", String::as_str)
    }
}

impl Records {
    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|cells| Row {
            header: &self.header,
            cells,
        })
    }
}

fn classify(line: &str, reply: &str) -> Reply {
    if is_chain(line) {
        return Reply::Other;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["show", "stat", ..] => parse_stat(reply).map_or(Reply::Other, Reply::Stat),
        ["show", "servers", "state", ..] => {
            parse_servers_state(reply).map_or(Reply::Other, Reply::ServersState)
        }
        // `show info json|typed|desc` are other formats.
        ["show", "info"] => parse_info(reply).map_or(Reply::Other, Reply::Info),
        ["show", "backend", ..] => match reply.strip_prefix("# name\n") {
            Some(rest) => Reply::Backends(
                rest.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            None => Reply::Other,
        },
        _ => Reply::Other,
    }
}

/// `# pxname,svname,...` then CSV rows (HAProxy quotes fields holding commas, quotes or
/// line breaks, so a record may span lines).
fn parse_stat(reply: &str) -> Option<Records> {
    let body = reply.strip_prefix("# ")?;
    if !body.starts_with("pxname,") {
        return None;
    }
    let mut records = parse_csv(body).into_iter();
    let header = records.next()?;
    let rows = records
        .filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .collect();
    Some(Records { header, rows })
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => record.push(std::mem::take(&mut field)),
            '\n' if !quoted => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// `1` (the format version), `# be_id be_name ...`, then space-separated rows.
fn parse_servers_state(reply: &str) -> Option<Records> {
    let mut lines = reply.lines();
    if lines.next()? != "1" {
        return None;
    }
    let header = lines.next()?.strip_prefix("# ")?;
    Some(Records {
        header: header.split_whitespace().map(str::to_string).collect(),
        rows: lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect(),
    })
}

fn parse_info(reply: &str) -> Option<Vec<(String, String)>> {
    let pairs: Option<Vec<_>> = reply
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    pairs.filter(|p| !p.is_empty())
}

// ---------------------------------------------------------------------------------------
// Human output

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Where a table cell comes from.
#[derive(Clone, Copy)]
enum Cell {
    /// The field as is.
    Field(&'static str),
    /// A field in seconds, shown as `3m12s`.
    Age(&'static str),
    /// A field in bytes, shown as `1.5M`.
    Bytes(&'static str),
    /// Computed from the whole row.
    With(fn(&Row) -> String),
}

struct Column {
    title: &'static str,
    align: Align,
    cell: Cell,
}

const fn left(title: &'static str, cell: Cell) -> Column {
    Column {
        title,
        align: Align::Left,
        cell,
    }
}

const fn right(title: &'static str, cell: Cell) -> Column {
    Column {
        title,
        align: Align::Right,
        cell,
    }
}

/// `show stat`: what an operator looks at first; `--json` has every field.
const STAT_COLUMNS: &[Column] = &[
    left("PROXY", Cell::Field("pxname")),
    left("NAME", Cell::Field("svname")),
    left("STATUS", Cell::Field("status")),
    right("WEIGHT", Cell::Field("weight")),
    right("QCUR", Cell::Field("qcur")),
    right("SCUR", Cell::Field("scur")),
    right("SMAX", Cell::Field("smax")),
    right("SLIM", Cell::Field("slim")),
    right("STOT", Cell::Field("stot")),
    right("BIN", Cell::Bytes("bin")),
    right("BOUT", Cell::Bytes("bout")),
    right("CHKFAIL", Cell::Field("chkfail")),
    left("CHECK", Cell::Field("check_status")),
    right("LASTCHG", Cell::Age("lastchg")),
    left("ADDR", Cell::Field("addr")),
];

/// `show servers state`, with HAProxy's numeric codes decoded.
const SERVERS_STATE_COLUMNS: &[Column] = &[
    left("BACKEND", Cell::Field("be_name")),
    left("SERVER", Cell::Field("srv_name")),
    left("ADDRESS", Cell::With(server_address)),
    left("STATE", Cell::With(|r| op_state(r.get("srv_op_state")))),
    left(
        "ADMIN",
        Cell::With(|r| admin_state(r.get("srv_admin_state"))),
    ),
    right(
        "WEIGHT",
        Cell::With(|r| format!("{}/{}", r.get("srv_uweight"), r.get("srv_iweight"))),
    ),
    left("CHECK", Cell::With(server_check)),
    right("LASTCHG", Cell::Age("srv_time_since_last_change")),
];

fn render_human(line: &str, reply: &str) -> String {
    match classify(line, reply) {
        Reply::Stat(records) => table(STAT_COLUMNS, &records, "pxname"),
        Reply::ServersState(records) => table(SERVERS_STATE_COLUMNS, &records, "be_name"),
        Reply::Info(pairs) => {
            let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            pairs
                .iter()
                .map(|(k, v)| format!("{}\n", format!("{k:<width$}  {v}").trim_end()))
                .collect()
        }
        Reply::Backends(_) | Reply::Other => verbatim(reply),
    }
}

/// The reply without the CLI's trailing blank line (`--raw` keeps it).
fn verbatim(reply: &str) -> String {
    let text = reply.trim_end_matches('\n');
    if text.is_empty() {
        String::new()
    } else {
        format!("{text}\n")
    }
}

/// An aligned table; a blank line separates groups of rows with a different `group` field
/// (one group per proxy, its FRONTEND, servers and BACKEND rows together).
fn table(columns: &[Column], records: &Records, group: &str) -> String {
    let mut lines: Vec<Option<Vec<String>>> =
        vec![Some(columns.iter().map(|c| c.title.to_string()).collect())];
    let mut previous: Option<&str> = None;
    for row in records.rows() {
        let key = row.get(group);
        if previous.is_some_and(|p| p != key) {
            lines.push(None);
        }
        previous = Some(key);
        lines.push(Some(columns.iter().map(|c| cell(c.cell, &row)).collect()));
    }
    let mut widths = vec![0; columns.len()];
    for cells in lines.iter().flatten() {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let Some(cells) = cells else {
            out.push('\n');
            continue;
        };
        let mut text = String::new();
        for ((column, width), c) in columns.iter().zip(&widths).zip(cells) {
            if !text.is_empty() {
                text.push_str("  ");
            }
            match column.align {
                Align::Left => text.push_str(&format!("{c:<width$}")),
                Align::Right => text.push_str(&format!("{c:>width$}")),
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn cell(cell: Cell, row: &Row) -> String {
    match cell {
        Cell::Field(name) => row.get(name).to_string(),
        Cell::Age(name) => {
            let raw = row.get(name);
            raw.parse().map_or_else(|_| raw.to_string(), human_duration)
        }
        Cell::Bytes(name) => {
            let raw = row.get(name);
            raw.parse().map_or_else(|_| raw.to_string(), human_bytes)
        }
        Cell::With(f) => f(row),
    }
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`: the two largest units are enough to judge a state age.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `812`, `1.5K`, `20.0M` (powers of 1024).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

fn server_address(row: &Row) -> String {
    let (addr, port) = (row.get("srv_addr"), row.get("srv_port"));
    match (addr.contains(':'), port) {
        (_, "" | "0") => addr.to_string(),
        (true, port) => format!("[{addr}]:{port}"),
        (false, port) => format!("{addr}:{port}"),
    }
}

/// `srv_op_state` (HAProxy's `SRV_ST_*`) as a word.
fn op_state(code: &str) -> String {
    match code {
        "0" => "DOWN",
        "1" => "STARTING",
        "2" => "UP",
        "3" => "STOPPING",
        other => other,
    }
    .to_string()
}

/// `srv_admin_state` flags (HAProxy's `SRV_ADMF_*`) in the order HAProxy defines them.
const ADMIN_FLAGS: &[(u8, &str)] = &[
    (AdminState::FMAINT, "FMAINT"),
    (AdminState::IMAINT, "IMAINT"),
    (AdminState::CMAINT, "CMAINT"),
    (AdminState::FDRAIN, "FDRAIN"),
    (AdminState::IDRAIN, "IDRAIN"),
    (AdminState::RMAINT, "RMAINT"),
    (AdminState::HMAINT, "HMAINT"),
];

/// `ready`, or `maint`/`drain` followed by the flags that say why: `maint (FMAINT|CMAINT)`.
fn admin_state(code: &str) -> String {
    let Ok(bits) = code.parse::<u8>() else {
        return code.to_string();
    };
    let state = AdminState(bits);
    if bits == 0 {
        return "ready".into();
    }
    let word = if state.is_maint() {
        "maint"
    } else if state.is_drain() {
        "drain"
    } else {
        "?"
    };
    let mut flags: Vec<String> = ADMIN_FLAGS
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    let known = ADMIN_FLAGS.iter().fold(0, |acc, (bit, _)| acc | bit);
    if bits & !known != 0 {
        flags.push(format!("{:#04x}", bits & !known));
    }
    format!("{word} ({})", flags.join("|"))
}

/// `no check` when no check is configured, else the `show stat` name of the last status
/// (`L4OK`, `L7STS`, ...), marked when checks are disabled (`disable health`).
fn server_check(row: &Row) -> String {
    let state: u16 = row.get("srv_check_state").parse().unwrap_or(0);
    if state & CheckState::CONFIGURED == 0 {
        return "no check".into();
    }
    let code = row.get("srv_check_status");
    let name = CheckStatus::ALL
        .iter()
        .find(|s| code.parse::<u8>() == Ok(**s as u8))
        .map_or(code, |s| s.name());
    if state & CheckState::ENABLED == 0 {
        format!("{name} (disabled)")
    } else {
        name.to_string()
    }
}

// ---------------------------------------------------------------------------------------
// JSON output

/// `show stat` fields that hold text even when they look like numbers (names, addresses).
const STAT_TEXT_FIELDS: &[&str] = &[
    "pxname",
    "svname",
    "status",
    "check_status",
    "last_chk",
    "last_agt",
    "agent_status",
    "check_desc",
    "agent_desc",
    "addr",
    "cookie",
    "mode",
    "algo",
    "-",
];

/// `show servers state` fields that hold text.
const SERVERS_STATE_TEXT_FIELDS: &[&str] = &[
    "be_name",
    "srv_name",
    "srv_addr",
    "srv_fqdn",
    "srvrecord",
    "srv_check_addr",
    "srv_agent_addr",
];

/// `show info` fields that hold text.
const INFO_TEXT_FIELDS: &[&str] = &[
    "Name",
    "Version",
    "Release_date",
    "Uptime",
    "node",
    "description",
    "Build info",
];

/// A field's JSON value: an integer as a number, unless the field is text.
fn json_field(name: &str, raw: &str, text_fields: &[&str]) -> Value {
    if !text_fields.contains(&name) {
        // Only canonical integers (no `+`, no leading zeros) so nothing is silently changed.
        if let Ok(n) = raw.parse::<i64>() {
            if n.to_string() == raw {
                return Value::from(n);
            }
        }
        if let Ok(n) = raw.parse::<u64>() {
            if n.to_string() == raw {
                return Value::from(n);
            }
        }
    }
    Value::from(raw)
}

/// An object's fields in the server's order (serde_json's `Map` sorts keys, which would
/// bury `pxname`/`svname` among a hundred counters).
type Fields = Vec<(String, Value)>;

/// What `--json` prints.
enum Json {
    Value(Value),
    Object(Fields),
    Array(Vec<Fields>),
}

impl Json {
    /// Pretty-printed like `serde_json::to_string_pretty`, keeping field order.
    fn render(&self) -> String {
        match self {
            // Display of a `Value` is its compact JSON and cannot fail.
            Json::Value(value) => {
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            }
            Json::Object(fields) => object_text(fields, ""),
            Json::Array(rows) if rows.is_empty() => "[]".into(),
            Json::Array(rows) => {
                let items: Vec<String> = rows
                    .iter()
                    .map(|fields| format!("  {}", object_text(fields, "  ")))
                    .collect();
                format!("[\n{}\n]", items.join(",\n"))
            }
        }
    }
}

fn object_text(fields: &Fields, indent: &str) -> String {
    if fields.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{indent}  {}: {value}", Value::from(name.as_str())))
        .collect();
    format!("{{\n{}\n{indent}}}", items.join(",\n"))
}

/// One JSON object per row. `show stat` leaves fields empty when they do not apply, and
/// those are omitted; `show servers state` writes `-` for "none", which becomes null.
/// `show stat`'s `-` column is a placeholder HAProxy always fills with `-`: left out.
fn records_json(records: &Records, text_fields: &[&str], dash_is_null: bool) -> Json {
    let rows = records.rows().map(|row| {
        let mut fields = Fields::new();
        for (name, raw) in row.header.iter().zip(row.cells) {
            if name.is_empty() || name == "-" || raw.is_empty() {
                continue;
            }
            let value = if dash_is_null && raw == "-" {
                Value::Null
            } else {
                json_field(name, raw, text_fields)
            };
            fields.push((name.clone(), value));
        }
        fields
    });
    Json::Array(rows.collect())
}

fn to_json(line: &str, reply: &str, failed: bool) -> Json {
    let text = || Value::from(reply.trim_end_matches('\n'));
    if failed {
        return Json::Object(vec![("error".into(), text())]);
    }
    match classify(line, reply) {
        Reply::Stat(records) => records_json(&records, STAT_TEXT_FIELDS, false),
        Reply::ServersState(records) => records_json(&records, SERVERS_STATE_TEXT_FIELDS, true),
        Reply::Info(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), json_field(k, v, INFO_TEXT_FIELDS)))
                .collect(),
        ),
        Reply::Backends(names) => Json::Value(Value::from(names)),
        // `show stat json` / `show info json` already are JSON: keep them as values.
        Reply::Other => match serde_json::from_str::<Value>(reply.trim()) {
            Ok(value) if value.is_array() || value.is_object() => Json::Value(value),
            _ => Json::Object(vec![("reply".into(), text())]),
        },
    }
}

fn render_json(line: &str, reply: &str, failed: bool) -> String {
    format!("{}\n", to_json(line, reply, failed).render())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../switchyard-api/tests/golden/"
    );

    /// `--json` output, parsed back.
    fn json(line: &str, reply: &str, failed: bool) -> Value {
        let text = render_json(line, reply, failed);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
    }

    fn golden(name: &str) -> String {
        std::fs::read_to_string(format!("{GOLDEN}{name}"))
            .unwrap_or_else(|e| panic!("reading golden file {name}: {e}"))
    }

    #[test]
    fn socket_addresses() {
        let tcp = |host: &str, port, family| Target::Tcp {
            host: host.into(),
            port,
            family,
        };
        assert_eq!(
            parse_target("ipv4@127.0.0.1:9999"),
            Ok(tcp("127.0.0.1", 9999, Some(Family::V4)))
        );
        assert_eq!(
            parse_target("ipv6@[::1]:9999"),
            Ok(tcp("::1", 9999, Some(Family::V6)))
        );
        // HAProxy splits an unbracketed IPv6 address at the last colon.
        assert_eq!(
            parse_target("ipv6@::1:9999"),
            Ok(tcp("::1", 9999, Some(Family::V6)))
        );
        assert_eq!(parse_target(":9999"), Ok(tcp("127.0.0.1", 9999, None)));
        assert_eq!(
            parse_target("ipv6@*:9999"),
            Ok(tcp("::1", 9999, Some(Family::V6)))
        );
        assert_eq!(
            parse_target("localhost:9999"),
            Ok(tcp("localhost", 9999, None))
        );
        assert_eq!(
            parse_target("/run/switchyard/admin.sock"),
            Ok(Target::Unix("/run/switchyard/admin.sock".into()))
        );
        assert_eq!(
            parse_target("unix@/run/a.sock"),
            Ok(Target::Unix("/run/a.sock".into()))
        );
        assert_eq!(
            parse_target("admin.sock"),
            Ok(Target::Unix("admin.sock".into()))
        );
        assert!(parse_target("ipv4@127.0.0.1").is_err());
        assert!(parse_target("127.0.0.1:http").is_err());
        assert!(parse_target("127.0.0.1:0").is_err());
        assert!(parse_target("ipv6@[::1]").is_err());
        assert!(parse_target("").is_err());
        assert_eq!(
            tcp("::1", 9999, Some(Family::V6)).to_string(),
            "ipv6@[::1]:9999"
        );
    }

    #[test]
    fn socket_from_config_prefers_admin() {
        let dir = switchyard_testkit::TempDir::new("switchyard-ctl-unit").unwrap();
        let path = dir.path().join("a.cfg");
        std::fs::write(
            &path,
            "global\n    stats socket ipv4@127.0.0.1:9001 level user\n    stats socket /tmp/x.sock level admin\n",
        )
        .unwrap();
        assert_eq!(
            target_from_config(&path),
            Ok(Target::Unix("/tmp/x.sock".into()))
        );
        std::fs::write(&path, "global\n    stats socket *:9002\n").unwrap();
        assert_eq!(
            target_from_config(&path).map(|t| t.to_string()),
            Ok("127.0.0.1:9002".to_string())
        );
        std::fs::write(&path, "global\n    maxconn 10\n").unwrap();
        let err = target_from_config(&path).unwrap_err();
        assert!(err.contains("has no 'stats socket'"), "{err}");
    }

    #[test]
    fn stat_csv_to_table() {
        // One group per proxy; empty fields stay blank; bytes and ages are humanized.
        assert_eq!(
            render_human("show stat", &golden("haproxy_show_stat.txt")),
            "\
PROXY       NAME      STATUS    WEIGHT  QCUR  SCUR  SMAX  SLIM  STOT  BIN  BOUT  CHKFAIL  CHECK  LASTCHG  ADDR
fe_pg       FRONTEND  OPEN                       0     0  4000     0    0     0

be_pg       pg1       UP            10     0     0     0           0    0     0        0  L4OK        5s  127.0.0.1:53999
be_pg       pg2       DOWN          20     0     0     0           0    0     0        1  L4CON       5s  127.0.0.1:36653
be_pg       pg3       no check       5     0     0     0           0    0     0                       5s  127.0.0.1:53999
be_pg       pg4       MAINT          3     0     0     0           0    0     0                       5s  127.0.0.1:53999
be_pg       BACKEND   UP            10     0     0     0   400     0    0     0                       5s

li_mysql    FRONTEND  OPEN                       0     0  4000     0    0     0
li_mysql    my1       UP             1     0     0     0           0    0     0        0  L4OK        5s  127.0.0.1:53999
li_mysql    BACKEND   UP             1     0     0     0   400     0    0     0                       5s

be_dynamic  BACKEND   UP             0     0     0     0     1     0    0     0                       5s
"
        );
        // `show stat` filtered to nothing: the header alone.
        assert_eq!(
            render_human("show stat", &golden("haproxy_show_stat_empty.txt")),
            "PROXY  NAME  STATUS  WEIGHT  QCUR  SCUR  SMAX  SLIM  STOT  BIN  BOUT  CHKFAIL  CHECK  LASTCHG  ADDR\n"
        );
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            parse_csv("a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\"\nx,y\n"),
            vec![vec!["a", "b,c", "say \"hi\"", "two\nlines"], vec!["x", "y"]]
        );
    }

    #[test]
    fn stat_json() {
        let value = json("show stat", &golden("haproxy_show_stat.txt"), false);
        let rows = value.as_array().unwrap();
        assert_eq!(rows.len(), 10);
        let pg2 = &rows[2];
        assert_eq!(pg2["pxname"], "be_pg");
        assert_eq!(pg2["svname"], "pg2");
        assert_eq!(pg2["status"], "DOWN");
        assert_eq!(pg2["weight"], 20);
        assert_eq!(pg2["chkfail"], 1);
        assert_eq!(pg2["lastsess"], -1);
        assert_eq!(pg2["check_status"], "L4CON");
        assert_eq!(pg2["last_chk"], "Connection refused");
        assert_eq!(pg2["addr"], "127.0.0.1:36653");
        // Empty fields are left out rather than given as "".
        assert!(pg2.get("slim").is_none());
        assert!(pg2.get("").is_none());
        assert_eq!(rows[0]["slim"], 4000);
        // Fields keep the CSV's order, and the `-` placeholder column is left out.
        let text = render_json("show stat", &golden("haproxy_show_stat.txt"), false);
        assert!(
            text.starts_with("[\n  {\n    \"pxname\": \"fe_pg\",\n    \"svname\": \"FRONTEND\",\n    \"scur\": 0,\n"),
            "{text}"
        );
        assert!(pg2.get("-").is_none());
    }

    #[test]
    fn servers_state_table() {
        let out = render_human(
            "show servers state",
            &golden("haproxy_show_servers_state.txt"),
        );
        assert_eq!(
            out,
            "\
BACKEND   SERVER  ADDRESS          STATE  ADMIN                  WEIGHT  CHECK     LASTCHG
be_pg     pg1     127.0.0.1:53999  UP     ready                   10/10  L4OK           5s
be_pg     pg2     127.0.0.1:36653  DOWN   ready                   20/20  L4CON          5s
be_pg     pg3     127.0.0.1:53999  UP     ready                     5/5  no check       5s
be_pg     pg4     127.0.0.1:53999  DOWN   maint (FMAINT|CMAINT)     3/3  no check       5s

li_mysql  my1     127.0.0.1:53999  UP     ready                     1/1  L4OK           5s
"
        );
    }

    #[test]
    fn admin_bits() {
        assert_eq!(admin_state("0"), "ready");
        assert_eq!(admin_state("1"), "maint (FMAINT)");
        assert_eq!(admin_state("5"), "maint (FMAINT|CMAINT)");
        assert_eq!(admin_state("8"), "drain (FDRAIN)");
        assert_eq!(admin_state("24"), "drain (FDRAIN|IDRAIN)");
        assert_eq!(admin_state("9"), "maint (FMAINT|FDRAIN)");
        assert_eq!(admin_state("32"), "maint (RMAINT)");
        assert_eq!(admin_state("64"), "maint (HMAINT)");
        assert_eq!(admin_state("130"), "maint (IMAINT|0x80)");
        assert_eq!(admin_state("x"), "x");
        assert_eq!(op_state("3"), "STOPPING");
        assert_eq!(op_state("7"), "7");
    }

    #[test]
    fn servers_state_json() {
        let value = json(
            "show servers state be_dynamic",
            &golden("haproxy_show_servers_state_maint.txt"),
            false,
        );
        assert_eq!(
            value,
            serde_json::json!([{
                "be_id": 5, "be_name": "be_dynamic", "srv_id": 1, "srv_name": "s1",
                "srv_addr": "127.0.0.3", "srv_op_state": 0, "srv_admin_state": 1,
                "srv_uweight": 7, "srv_iweight": 1, "srv_time_since_last_change": 1,
                "srv_check_status": 1, "srv_check_result": 0, "srv_check_health": 0,
                "srv_check_state": 0, "srv_agent_state": 0, "bk_f_forced_id": 0,
                "srv_f_forced_id": 0, "srv_fqdn": null, "srv_port": 15002, "srvrecord": null,
                "srv_use_ssl": 0, "srv_check_port": 0, "srv_check_addr": null,
                "srv_agent_addr": null, "srv_agent_port": 0
            }])
        );
        // An empty backend is an empty array, not an error.
        let empty = format!("1\n{}\n", switchyard_api::format::SERVERS_STATE_HEADER);
        assert_eq!(
            json("show servers state", &empty, false),
            serde_json::json!([])
        );
    }

    #[test]
    fn info_table_and_json() {
        let reply = golden("haproxy_show_info.txt");
        let out = render_human("show info", &reply);
        // Aligned on the longest name (SslFrontendSessionReuse_pct).
        assert!(
            out.starts_with("Name                         HAProxy\n"),
            "{out}"
        );
        assert!(
            out.contains("\nPid                          25745\n"),
            "{out}"
        );
        assert!(out.contains("\nSslFrontendSessionReuse_pct  0\n"), "{out}");
        let value = json("show info", &reply, false);
        assert_eq!(value["Name"], "HAProxy");
        assert_eq!(value["Pid"], 25745);
        assert_eq!(value["Uptime"], "0d 0h00m05s");
        assert_eq!(value["Version"], "2.6.12-1+deb12u4");
        assert_eq!(value["Build info"], "2.6.12-1+deb12u4");
        // `show info json` is HAProxy's own JSON: passed through as a value.
        let typed = golden("haproxy_show_info_json.txt");
        assert!(json("show info json", &typed, false).is_array());
    }

    #[test]
    fn other_replies() {
        let reply = golden("haproxy_add_server.txt");
        assert_eq!(
            render_human("add server be/x 127.0.0.1:1", &reply),
            "New server registered.\n"
        );
        assert_eq!(
            json("add server be/x 127.0.0.1:1", &reply, false),
            serde_json::json!({ "reply": "New server registered." })
        );
        assert_eq!(render_human("set server be/x state ready", ""), "");
        assert_eq!(
            json("show backend", &golden("haproxy_show_backend.txt"), false),
            serde_json::json!(["be_pg", "li_mysql", "be_dynamic"])
        );
        assert_eq!(
            json("get weight be/x", "No such server.\n\n", true),
            serde_json::json!({ "error": "No such server." })
        );
        // A chain is shown as is, even when it starts like a known reply.
        let chain = "# name\nbe\n\n1 (initial 1)\n\n";
        assert_eq!(
            render_human("show backend; get weight be/s", chain),
            "# name\nbe\n\n1 (initial 1)\n"
        );
    }

    #[test]
    fn error_replies() {
        for (line, file) in [
            (
                "set server be/x state ready",
                "haproxy_set_server_unknown_server.txt",
            ),
            ("foo", "haproxy_unknown_command.txt"),
            ("set weight be_pg/pg1 abc", "haproxy_set_weight_invalid.txt"),
            ("del server be_pg/pg1", "haproxy_del_server_not_maint.txt"),
            (
                "add server be/x 1.1.1.1:1",
                "haproxy_add_server_duplicate.txt",
            ),
            (
                "show servers state nope",
                "haproxy_show_servers_state_unknown.txt",
            ),
            ("show stat nope", "haproxy_show_stat_unknown.txt"),
            ("show sess", "cli_perm_user_show_sess.txt"),
        ] {
            let reply = golden(file);
            // The `cli_*` captures start with "level<TAB>command".
            let reply = if file.starts_with("cli_") {
                reply.split_once('\n').map_or("", |(_, r)| r).to_string()
            } else {
                reply
            };
            assert!(is_error_reply(line, &reply), "{file}: {reply:?}");
        }
        for (line, file) in [
            ("show stat", "haproxy_show_stat.txt"),
            ("show servers state", "haproxy_show_servers_state.txt"),
            ("show info", "haproxy_show_info.txt"),
            ("add server be/x 1.1.1.1:1", "haproxy_add_server.txt"),
            ("get weight be/x", "haproxy_get_weight.txt"),
            ("help", "haproxy_help.txt"),
            (
                "set server be/s addr 1.1.1.1",
                "haproxy_set_server_addr.txt",
            ),
        ] {
            assert!(!is_error_reply(line, &golden(file)), "{file}");
        }
        assert!(is_error_reply(
            "get weight a/b; foo",
            "5 (initial 10)\n\nUnknown command, but\n"
        ));
        assert!(!is_error_reply(
            "get weight a/b",
            "5 (initial 10)\n\nUnknown command\n"
        ));
        assert!(is_chain("a;b"));
        assert!(!is_chain("get weight be1/s1\\;x"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3600 + 5 * 60 + 9), "1h05m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d04h");
        assert_eq!(human_bytes(812), "812");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(20 * 1024 * 1024), "20.0M");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("abc").is_err());
        assert!(parse_timeout("1e300").is_err());
    }
}
