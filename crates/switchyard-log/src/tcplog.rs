//! HAProxy's `option tcplog` line and the default accept-time "Connect from" line.
//!
//! The tcplog line is HAProxy's built-in format
//! `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`, e.g.
//! `10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use crate::time::{broken_down, split, TimeZone};

/// First character of the termination state: the event that ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TerminationCause {
    /// `-`: normal completion, both sides closed with nothing left in buffers.
    #[default]
    Normal,
    /// `C`: the client aborted the connection.
    ClientAbort,
    /// `S`: the server aborted the connection or refused it.
    ServerAbort,
    /// `P`: the proxy aborted (connection limit, deny rule, security check).
    Proxy,
    /// `L`: processed locally, never passed to a server.
    Local,
    /// `R`: a proxy resource was exhausted (memory, sockets, source ports).
    Resource,
    /// `I`: internal error detected by a self-check.
    Internal,
    /// `D`: killed because the server went down (`on-marked-down shutdown-sessions`).
    Down,
    /// `U`: killed on a backup server because an active server came up.
    Up,
    /// `K`: actively killed by an administrator.
    Killed,
    /// `c`: client-side timeout.
    ClientTimeout,
    /// `s`: server-side timeout.
    ServerTimeout,
}

impl TerminationCause {
    pub fn code(self) -> char {
        match self {
            Self::Normal => '-',
            Self::ClientAbort => 'C',
            Self::ServerAbort => 'S',
            Self::Proxy => 'P',
            Self::Local => 'L',
            Self::Resource => 'R',
            Self::Internal => 'I',
            Self::Down => 'D',
            Self::Up => 'U',
            Self::Killed => 'K',
            Self::ClientTimeout => 'c',
            Self::ServerTimeout => 's',
        }
    }
}

/// Second character of the termination state: where the session was when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionState {
    /// `-`: normal completion after the end of data transfer.
    #[default]
    Closed,
    /// `R`: waiting for a complete request from the client (HTTP only).
    Request,
    /// `Q`: waiting in a queue for a connection slot.
    Queue,
    /// `C`: waiting for the connection to the server to establish.
    Connect,
    /// `H`: waiting for response headers from the server (HTTP only).
    Headers,
    /// `D`: data phase.
    Data,
    /// `L`: still sending the last data to the client after the server finished.
    Last,
    /// `T`: tarpitted.
    Tarpit,
}

impl SessionState {
    pub fn code(self) -> char {
        match self {
            Self::Closed => '-',
            Self::Request => 'R',
            Self::Queue => 'Q',
            Self::Connect => 'C',
            Self::Headers => 'H',
            Self::Data => 'D',
            Self::Last => 'L',
            Self::Tarpit => 'T',
        }
    }
}

/// Name printed for the server when the session never reached one.
pub const NO_SERVER: &str = "<NOSRV>";

/// Everything `option tcplog` prints for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLogRecord<'a> {
    /// `%ci:%cp`. IPv6 is printed without brackets (`::1:40000`), like HAProxy.
    pub client: SocketAddr,
    /// `%t`: when the connection was accepted; printed in local time with milliseconds.
    pub accept_date: SystemTime,
    /// `%f`: frontend (or listen) name.
    pub frontend: &'a str,
    /// The listener uses TLS: HAProxy's `%ft` then appends `~` to the frontend name.
    pub frontend_ssl: bool,
    /// `%b`: backend that handled the session. `None` when no backend was selected, in which
    /// case the frontend name is printed (HAProxy's `%b` is the frontend until a backend is
    /// assigned, which is also the case of a `listen` section).
    pub backend: Option<&'a str>,
    /// `%s`: last server the session was sent to; `None` prints `<NOSRV>`.
    pub server: Option<&'a str>,
    /// `%Tw`: total ms spent in queues; `None` (printed `-1`) if never queued/reached.
    pub tw: Option<u64>,
    /// `%Tc`: ms to establish the server connection incl. retries; `None` prints `-1`.
    pub tc: Option<u64>,
    /// `%Tt`: total session time in ms (up to the log emission with `logasap`).
    pub tt: u64,
    /// `option logasap`: the log is emitted before the end, so `%Tt` and `%B` get a `+`.
    pub logasap: bool,
    /// `%B`: bytes sent from the server to the client.
    pub bytes_read: u64,
    /// `%ts`, first character.
    pub termination: TerminationCause,
    /// `%ts`, second character.
    pub state: SessionState,
    /// `%ac`: process-wide concurrent connections.
    pub actconn: u32,
    /// `%fc`: concurrent connections on the frontend.
    pub feconn: u32,
    /// `%bc`: concurrent connections on the backend (incl. queued).
    pub beconn: u32,
    /// `%sc`: concurrent connections on the server (0 when no server).
    pub srv_conn: u32,
    /// `%rc`: connection retries.
    pub retries: u32,
    /// The session was redispatched to another server: `%rc` gets a `+` prefix.
    pub redispatched: bool,
    /// `%sq`: position in the server queue (0 if not queued there).
    pub srv_queue: u32,
    /// `%bq`: position in the backend queue (0 if not queued there).
    pub backend_queue: u32,
}

impl<'a> TcpLogRecord<'a> {
    /// A record for a session that has just been accepted: no backend, no server, timers
    /// not reached, all counters zero, normal termination state.
    pub fn new(client: SocketAddr, accept_date: SystemTime, frontend: &'a str) -> Self {
        TcpLogRecord {
            client,
            accept_date,
            frontend,
            frontend_ssl: false,
            backend: None,
            server: None,
            tw: None,
            tc: None,
            tt: 0,
            logasap: false,
            bytes_read: 0,
            termination: TerminationCause::Normal,
            state: SessionState::Closed,
            actconn: 0,
            feconn: 0,
            beconn: 0,
            srv_conn: 0,
            retries: 0,
            redispatched: false,
            srv_queue: 0,
            backend_queue: 0,
        }
    }

    /// `%ts`: the two-character termination state, e.g. `--`, `SC`, `cD`.
    pub fn termination_state(&self) -> [char; 2] {
        [self.termination.code(), self.state.code()]
    }
}

/// Formats a tcplog line with dates in local time (HAProxy's behaviour).
pub fn format_tcplog(rec: &TcpLogRecord<'_>) -> String {
    format_tcplog_in(rec, TimeZone::Local)
}

/// Formats a tcplog line with dates rendered in `tz`.
pub fn format_tcplog_in(rec: &TcpLogRecord<'_>, tz: TimeZone) -> String {
    let mut out = String::with_capacity(160);
    write_tcplog(&mut out, rec, tz);
    out
}

/// Appends a tcplog line (no trailing newline) to `out`.
pub fn write_tcplog(out: &mut String, rec: &TcpLogRecord<'_>, tz: TimeZone) {
    let plus = |b: bool| if b { "+" } else { "" };
    write_prefix(out, rec, tz);
    let _ = write!(
        out,
        " {}/{}/{}{} {}{} {}{} {}/{}/{}/{}/{}{} {}/{}",
        Timer(rec.tw),
        Timer(rec.tc),
        plus(rec.logasap),
        rec.tt,
        plus(rec.logasap),
        rec.bytes_read,
        rec.termination.code(),
        rec.state.code(),
        rec.actconn,
        rec.feconn,
        rec.beconn,
        rec.srv_conn,
        plus(rec.redispatched),
        rec.retries,
        rec.srv_queue,
        rec.backend_queue,
    );
}

/// `%ci:%cp [%t] %ft %b/%s`, the start that tcplog and httplog lines share.
pub(crate) fn write_prefix(out: &mut String, rec: &TcpLogRecord<'_>, tz: TimeZone) {
    write_addr(out, rec.client);
    out.push_str(" [");
    write_accept_date(out, rec.accept_date, tz);
    out.push_str("] ");
    out.push_str(rec.frontend);
    if rec.frontend_ssl {
        out.push('~');
    }
    out.push(' ');
    out.push_str(rec.backend.unwrap_or(rec.frontend));
    out.push('/');
    out.push_str(rec.server.unwrap_or(NO_SERVER));
}

/// A timer field: milliseconds, or `-1` when the step was never reached.
pub(crate) struct Timer(pub(crate) Option<u64>);

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ms) => write!(f, "{ms}"),
            None => f.write_str("-1"),
        }
    }
}

/// `ip:port`, IPv6 without brackets (HAProxy prints `inet_ntop` output then `:port`).
fn write_addr(out: &mut String, addr: SocketAddr) {
    let _ = match addr.ip() {
        IpAddr::V4(ip) => write!(out, "{ip}:{}", addr.port()),
        IpAddr::V6(ip) => write!(out, "{ip}:{}", addr.port()),
    };
}

/// `06/Feb/2009:12:12:51.443` (HAProxy's `date2str_log`; milliseconds are truncated).
fn write_accept_date(out: &mut String, date: SystemTime, tz: TimeZone) {
    let (secs, micros) = split(date);
    let tm = broken_down(secs, tz);
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02}.{:03}",
        tm.mday,
        tm.month_name(),
        tm.year,
        tm.hour,
        tm.min,
        tm.sec,
        micros / 1000
    );
}

/// The line HAProxy logs at accept time when no log format is set:
/// `Connect from 10.0.1.2:33312 to 10.0.3.31:8012 (www/TCP)`.
///
/// `local` is the address the client connected to; `mode_label` is `TCP` or `HTTP`.
pub fn format_connect(
    client: SocketAddr,
    local: SocketAddr,
    frontend: &str,
    mode_label: &str,
) -> String {
    let mut out = String::with_capacity(96);
    out.push_str("Connect from ");
    write_addr(&mut out, client);
    out.push_str(" to ");
    write_addr(&mut out, local);
    let _ = write!(out, " ({frontend}/{mode_label})");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2009-02-06 12:12:51.443 UTC
    fn accept() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_233_922_371_443) + Duration::from_micros(999)
    }

    fn example() -> TcpLogRecord<'static> {
        TcpLogRecord {
            backend: Some("bck"),
            server: Some("srv1"),
            tw: Some(0),
            tc: Some(0),
            tt: 5007,
            bytes_read: 212,
            retries: 3,
            ..TcpLogRecord::new("10.0.1.2:33313".parse().unwrap(), accept(), "fnt")
        }
    }

    #[test]
    fn manual_example() {
        assert_eq!(
            format_tcplog_in(&example(), TimeZone::Utc),
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0"
        );
    }

    #[test]
    fn all_counters_and_flags() {
        let rec = TcpLogRecord {
            frontend_ssl: true,
            tw: Some(12),
            tc: Some(3),
            tt: 60_015,
            bytes_read: 18_446_744_073_709_551_615,
            termination: TerminationCause::ClientTimeout,
            state: SessionState::Data,
            actconn: 120,
            feconn: 44,
            beconn: 40,
            srv_conn: 7,
            retries: 1,
            redispatched: true,
            srv_queue: 5,
            backend_queue: 9,
            ..example()
        };
        assert_eq!(
            format_tcplog_in(&rec, TimeZone::Utc),
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt~ bck/srv1 12/3/60015 \
             18446744073709551615 cD 120/44/40/7/+1 5/9"
        );
    }

    #[test]
    fn nosrv_and_no_backend() {
        // Rejected before a backend was selected: %b is the frontend, %s is <NOSRV>.
        let rec = TcpLogRecord {
            termination: TerminationCause::Proxy,
            state: SessionState::Request,
            actconn: 1,
            feconn: 1,
            ..TcpLogRecord::new("192.0.2.7:5000".parse().unwrap(), accept(), "pg_rw")
        };
        assert_eq!(
            format_tcplog_in(&rec, TimeZone::Utc),
            "192.0.2.7:5000 [06/Feb/2009:12:12:51.443] pg_rw pg_rw/<NOSRV> -1/-1/0 0 PR 1/1/0/0/0 0/0"
        );
        // Reached the backend queue but no server: backend printed, still <NOSRV>.
        let rec = TcpLogRecord {
            backend: Some("pg_primary"),
            tw: Some(2000),
            tt: 2001,
            termination: TerminationCause::ServerTimeout,
            state: SessionState::Queue,
            backend_queue: 3,
            ..rec
        };
        assert_eq!(
            format_tcplog_in(&rec, TimeZone::Utc),
            "192.0.2.7:5000 [06/Feb/2009:12:12:51.443] pg_rw pg_primary/<NOSRV> 2000/-1/2001 0 sQ 1/1/0/0/0 0/3"
        );
    }

    #[test]
    fn ipv6_client_without_brackets() {
        let rec = TcpLogRecord {
            termination: TerminationCause::ServerAbort,
            state: SessionState::Connect,
            tc: None,
            tt: 1,
            ..TcpLogRecord::new("[::1]:40000".parse().unwrap(), accept(), "fe")
        };
        let line = format_tcplog_in(&rec, TimeZone::Utc);
        assert!(
            line.starts_with("::1:40000 [06/Feb/2009:12:12:51.443] fe fe/<NOSRV>"),
            "{line}"
        );
        let mapped = TcpLogRecord {
            client: "[::ffff:10.1.2.3]:5432".parse().unwrap(),
            ..rec
        };
        assert!(format_tcplog_in(&mapped, TimeZone::Utc).starts_with("::ffff:10.1.2.3:5432 ["));
        let full = TcpLogRecord {
            client: "[2001:db8::17%3]:65535".parse().unwrap(),
            ..rec
        };
        assert!(format_tcplog_in(&full, TimeZone::Utc).starts_with("2001:db8::17:65535 ["));
    }

    #[test]
    fn logasap_prefixes_tt_and_bytes() {
        let rec = TcpLogRecord {
            logasap: true,
            tt: 10,
            bytes_read: 0,
            termination: TerminationCause::Normal,
            state: SessionState::Closed,
            ..example()
        };
        assert_eq!(
            format_tcplog_in(&rec, TimeZone::Utc),
            "10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/+10 +0 -- 0/0/0/0/3 0/0"
        );
    }

    #[test]
    fn retries_with_redispatch() {
        let rec = TcpLogRecord {
            retries: 1,
            redispatched: true,
            ..example()
        };
        assert!(format_tcplog_in(&rec, TimeZone::Utc).ends_with(" 0/0/0/0/+1 0/0"));
        let rec = TcpLogRecord {
            retries: 0,
            redispatched: false,
            ..example()
        };
        assert!(format_tcplog_in(&rec, TimeZone::Utc).ends_with(" 0/0/0/0/0 0/0"));
    }

    #[test]
    fn date_padding() {
        // 2024-01-02 03:04:05.007 UTC
        let rec = TcpLogRecord::new(
            "10.0.0.1:1".parse().unwrap(),
            UNIX_EPOCH + Duration::from_millis(1_704_164_645_007),
            "f",
        );
        assert!(format_tcplog_in(&rec, TimeZone::Utc)
            .starts_with("10.0.0.1:1 [02/Jan/2024:03:04:05.007] "));
    }

    #[test]
    fn termination_codes() {
        use SessionState as S;
        use TerminationCause as T;
        let causes = [
            (T::Normal, '-'),
            (T::ClientAbort, 'C'),
            (T::ServerAbort, 'S'),
            (T::Proxy, 'P'),
            (T::Local, 'L'),
            (T::Resource, 'R'),
            (T::Internal, 'I'),
            (T::Down, 'D'),
            (T::Up, 'U'),
            (T::Killed, 'K'),
            (T::ClientTimeout, 'c'),
            (T::ServerTimeout, 's'),
        ];
        for (c, code) in causes {
            assert_eq!(c.code(), code, "{c:?}");
        }
        let states = [
            (S::Closed, '-'),
            (S::Request, 'R'),
            (S::Queue, 'Q'),
            (S::Connect, 'C'),
            (S::Headers, 'H'),
            (S::Data, 'D'),
            (S::Last, 'L'),
            (S::Tarpit, 'T'),
        ];
        for (s, code) in states {
            assert_eq!(s.code(), code, "{s:?}");
        }
        let rec = TcpLogRecord {
            termination: T::ServerAbort,
            state: S::Connect,
            ..example()
        };
        assert_eq!(rec.termination_state(), ['S', 'C']);
        assert!(format_tcplog_in(&rec, TimeZone::Utc).contains(" 212 SC 0/0/0/0/3 "));
    }

    #[test]
    fn connect_line() {
        assert_eq!(
            format_connect(
                "10.0.1.2:33312".parse().unwrap(),
                "10.0.3.31:8012".parse().unwrap(),
                "www",
                "HTTP"
            ),
            "Connect from 10.0.1.2:33312 to 10.0.3.31:8012 (www/HTTP)"
        );
        assert_eq!(
            format_connect(
                "[2001:db8::1]:40000".parse().unwrap(),
                "[::]:5432".parse().unwrap(),
                "pg",
                "TCP"
            ),
            "Connect from 2001:db8::1:40000 to :::5432 (pg/TCP)"
        );
    }
}
