//! HAProxy-compatible log lines and syslog senders.
//!
//! * [`format_tcplog`] renders HAProxy's `option tcplog` line from a [`TcpLogRecord`];
//!   [`format_connect`] the accept-time line logged when no log format is set.
//! * [`Framing`] wraps a message in the syslog header of a target's [`LogFormat`]
//!   (`rfc3164`, `rfc5424`, `short`, `raw`) with HAProxy's truncation rules.
//! * [`Logger`] owns the non-blocking senders (UDP, unix datagram, stdout/stderr) for a list
//!   of [`LogTarget`]s and applies per-target level filtering.
//!
//! Dates are rendered in local time through libc, as HAProxy does; every formatter also has
//! a [`TimeZone::Utc`] variant for deterministic output.
//!
//! [`LogFormat`]: switchyard_config::LogFormat
//! [`LogTarget`]: switchyard_config::LogTarget

mod httplog;
mod logger;
mod syslog;
mod tcplog;
mod time;

pub use httplog::{format_httplog, format_httplog_in, ClientCookie, HttpLogRecord, ServerCookie};
pub use logger::Logger;
pub use syslog::{pri, Framing, Header, Transport, DEFAULT_MAX_LEN};
pub use tcplog::{
    format_connect, format_tcplog, format_tcplog_in, write_tcplog, SessionState, TcpLogRecord,
    TerminationCause, NO_SERVER,
};
pub use time::{reload_timezone, TimeZone};
