//! HAProxy's `option httplog` line: one per HTTP request, HAProxy's built-in format
//! `%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc
//! %sq/%bq %hr %hs %{+Q}r`. Without header captures (`capture request/response header`, not
//! supported) `%hr` and `%hs` print nothing, and neither do their separators, so a line reads
//! `10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - -
//! ---- 1/1/1/1/0 0/0 "GET /index.html HTTP/1.1"`.

use std::fmt::Write as _;

use crate::tcplog::{write_prefix, Timer};
use crate::time::TimeZone;
use crate::TcpLogRecord;

/// The persistence cookie as the client sent it (third character of `%tsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCookie {
    /// `-`: no persistence cookie configured.
    #[default]
    NotConfigured,
    /// `N`: the client sent no persistence cookie.
    None,
    /// `I`: the cookie named no known server.
    Invalid,
    /// `D`: it named a server that was down, so another one was used.
    Down,
    /// `V`: it named a usable server, which was used.
    Valid,
}

/// What was done with the server-side cookie (fourth character of `%tsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerCookie {
    /// `-`: nothing done.
    #[default]
    Untouched,
    /// `I`: a cookie was inserted (`cookie ... insert`).
    Inserted,
    /// `P`: the server's cookie was prefixed (`cookie ... prefix`).
    Prefixed,
    /// `R`: the server's cookie was rewritten (`cookie ... rewrite`).
    Rewritten,
}

impl ClientCookie {
    pub fn code(self) -> char {
        match self {
            Self::NotConfigured => '-',
            Self::None => 'N',
            Self::Invalid => 'I',
            Self::Down => 'D',
            Self::Valid => 'V',
        }
    }
}

impl ServerCookie {
    pub fn code(self) -> char {
        match self {
            Self::Untouched => '-',
            Self::Inserted => 'I',
            Self::Prefixed => 'P',
            Self::Rewritten => 'R',
        }
    }
}

/// Everything `option httplog` prints for one request. `session` carries the fields the two
/// formats share; its `accept_date` is the request's date (`%tr`) and its `bytes_read` the
/// bytes sent to the client (`%B`, headers included); `tt` is not printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLogRecord<'a> {
    pub session: TcpLogRecord<'a>,
    /// `%TR`: ms to receive the request headers; `None` prints `-1`.
    pub tr_request: Option<u64>,
    /// `%Tr`: ms the server took to send its response headers; `None` prints `-1`.
    pub tr_response: Option<u64>,
    /// `%Ta`: ms from the request's start to the end of the response.
    pub ta: u64,
    /// `%ST`: the status sent to the client; `None` prints `-1`.
    pub status: Option<u16>,
    pub client_cookie: ClientCookie,
    pub server_cookie: ServerCookie,
    /// `%r`: the request line (`GET /x HTTP/1.1`), printed quoted and escaped.
    pub request_line: &'a str,
}

/// Formats an httplog line with dates in local time (HAProxy's behaviour).
pub fn format_httplog(rec: &HttpLogRecord<'_>) -> String {
    format_httplog_in(rec, TimeZone::Local)
}

/// Formats an httplog line with dates rendered in `tz`.
pub fn format_httplog_in(rec: &HttpLogRecord<'_>, tz: TimeZone) -> String {
    let mut out = String::with_capacity(200);
    let s = &rec.session;
    write_prefix(&mut out, s, tz);
    let plus = |b: bool| if b { "+" } else { "" };
    let status = rec.status.map_or(-1, i32::from);
    let _ = write!(
        out,
        " {}/{}/{}/{}/{}{} {} {}{} - - {}{}{}{} {}/{}/{}/{}/{}{} {}/{} \"",
        Timer(rec.tr_request),
        Timer(s.tw),
        Timer(s.tc),
        Timer(rec.tr_response),
        plus(s.logasap),
        rec.ta,
        status,
        plus(s.logasap),
        s.bytes_read,
        s.termination.code(),
        s.state.code(),
        rec.client_cookie.code(),
        rec.server_cookie.code(),
        s.actconn,
        s.feconn,
        s.beconn,
        s.srv_conn,
        plus(s.redispatched),
        s.retries,
        s.srv_queue,
        s.backend_queue,
    );
    write_escaped(&mut out, rec.request_line);
    out.push('"');
    out
}

/// HAProxy escapes the request line in logs: control characters, `"`, `#` and bytes past
/// ASCII become `#XX`, so a line cannot break the log format.
fn write_escaped(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'#' {
            let _ = write!(out, "#{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SessionState, TerminationCause};
    use std::time::{Duration, UNIX_EPOCH};

    fn record<'a>(request_line: &'a str) -> HttpLogRecord<'a> {
        // 06/Feb/2009:12:14:14.655 UTC, as in HAProxy's documentation.
        let date = UNIX_EPOCH + Duration::from_millis(1_233_922_454_655);
        let mut session = TcpLogRecord::new("10.0.1.2:33317".parse().unwrap(), date, "http-in");
        session.backend = Some("static");
        session.server = Some("srv1");
        session.tw = Some(0);
        session.tc = Some(30);
        session.bytes_read = 2750;
        session.actconn = 1;
        session.feconn = 1;
        session.beconn = 1;
        session.srv_conn = 1;
        HttpLogRecord {
            session,
            tr_request: Some(10),
            tr_response: Some(69),
            ta: 109,
            status: Some(200),
            client_cookie: ClientCookie::NotConfigured,
            server_cookie: ServerCookie::Untouched,
            request_line,
        }
    }

    #[test]
    fn the_documented_example() {
        let line = format_httplog_in(&record("GET /index.html HTTP/1.1"), TimeZone::Utc);
        assert_eq!(
            line,
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 \"GET /index.html HTTP/1.1\""
        );
    }

    #[test]
    fn errors_cookies_and_escaping() {
        let mut rec = record("GET /a\"b#c\u{e9} HTTP/1.1");
        rec.session.server = None;
        rec.session.tc = None;
        rec.tr_response = None;
        rec.status = Some(503);
        rec.session.termination = TerminationCause::ServerAbort;
        rec.session.state = SessionState::Connect;
        rec.client_cookie = ClientCookie::None;
        rec.server_cookie = ServerCookie::Inserted;
        rec.session.retries = 3;
        rec.session.redispatched = true;
        let line = format_httplog_in(&rec, TimeZone::Utc);
        assert!(
            line.ends_with(
                " http-in static/<NOSRV> 10/0/-1/-1/109 503 2750 - - SCNI 1/1/1/1/+3 0/0 \"GET /a#22b#23c#C3#A9 HTTP/1.1\""
            ),
            "{line}"
        );
    }
}
